#include "common/auth.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/secret_file.h"

namespace chat4all::auth {

void init_crypto() {
  if (sodium_init() < 0) {
    std::fprintf(stderr, "fatal: libsodium failed to initialise\n");
    std::abort();
  }
}

const char* token_error_message(TokenError error) {
  switch (error) {
    case TokenError::kNone:
      return "ok";
    case TokenError::kMissing:
      return "missing bearer token";
    case TokenError::kMalformed:
      return "malformed token";
    case TokenError::kBadAlgorithm:
      return "token algorithm is not accepted";
    case TokenError::kBadSignature:
      return "token signature is invalid";
    case TokenError::kExpired:
      return "token has expired";
    case TokenError::kMissingClaim:
      return "token lacks a required claim";
  }
  return "invalid token";
}

std::string base64url_encode(std::string_view bytes) {
  const std::size_t length =
      sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  std::string out(length, '\0');
  sodium_bin2base64(out.data(), length, reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(length - 1);  // drop the terminating NUL
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  std::string out(text.size() * 3 / 4 + 3, '\0');
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &length, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(length);
  return out;
}

namespace {

const std::string& encoded_header() {
  static const std::string header = base64url_encode(R"({"alg":"HS256","typ":"JWT"})");
  return header;
}

std::string sign(const TokenKey& key, std::string_view signing_input) {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, key.data(), key.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return std::string(reinterpret_cast<char*>(mac), sizeof mac);
}

}  // namespace

std::string TokenSigner::issue(std::string_view subject, std::int64_t now_s, std::uint32_t ttl_s,
                               std::string_view tenant, std::string_view role) const {
  const nlohmann::json claims = {
      {"iss", "chat4all"}, {"sub", subject},
      {"iat", now_s},      {"exp", now_s + static_cast<std::int64_t>(ttl_s)},
      {"ten", tenant},     {"role", role}};
  std::string signing_input = encoded_header() + "." + base64url_encode(claims.dump());
  const std::string signature = sign(key_, signing_input);
  return signing_input + "." + base64url_encode(signature);
}

VerifiedToken TokenSigner::verify(std::string_view token, std::int64_t now_s) const {
  VerifiedToken result;
  if (token.empty()) {
    result.error = TokenError::kMissing;
    return result;
  }
  const auto first_dot = token.find('.');
  const auto second_dot =
      first_dot == std::string_view::npos ? first_dot : token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != token.npos) {
    result.error = TokenError::kMalformed;
    return result;
  }
  const auto header_text = base64url_decode(token.substr(0, first_dot));
  const auto claims_text =
      base64url_decode(token.substr(first_dot + 1, second_dot - first_dot - 1));
  const auto signature = base64url_decode(token.substr(second_dot + 1));
  if (!header_text || !claims_text || !signature) {
    result.error = TokenError::kMalformed;
    return result;
  }
  // The algorithm is fixed by the verifier, never chosen by the token: only an
  // HS256 header is considered at all ("none", RS256, ... are refused).
  const auto header = nlohmann::json::parse(*header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    result.error = TokenError::kMalformed;
    return result;
  }
  const auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || alg->get<std::string>() != "HS256") {
    result.error = TokenError::kBadAlgorithm;
    return result;
  }
  if (signature->size() != crypto_auth_hmacsha256_BYTES ||
      sodium_memcmp(signature->data(), sign(key_, token.substr(0, second_dot)).data(),
                    crypto_auth_hmacsha256_BYTES) != 0) {
    result.error = TokenError::kBadSignature;
    return result;
  }
  const auto claims = nlohmann::json::parse(*claims_text, nullptr, false);
  if (claims.is_discarded() || !claims.is_object()) {
    result.error = TokenError::kMalformed;
    return result;
  }
  const auto sub = claims.find("sub");
  const auto exp = claims.find("exp");
  if (sub == claims.end() || !sub->is_string() || sub->get<std::string>().empty() ||
      exp == claims.end() || !exp->is_number_integer()) {
    result.error = TokenError::kMissingClaim;
    return result;
  }
  result.claims.subject = sub->get<std::string>();
  result.claims.expires_at_s = exp->get<std::int64_t>();
  if (const auto iat = claims.find("iat"); iat != claims.end() && iat->is_number_integer())
    result.claims.issued_at_s = iat->get<std::int64_t>();
  result.claims.role = "user";
  if (const auto ten = claims.find("ten"); ten != claims.end() && ten->is_string())
    result.claims.tenant = ten->get<std::string>();
  if (const auto role = claims.find("role"); role != claims.end() && role->is_string())
    result.claims.role = role->get<std::string>();
  if (now_s >= result.claims.expires_at_s) result.error = TokenError::kExpired;
  return result;
}

TokenKey load_or_create_token_key(const std::filesystem::path& path) {
  auto read_key = [&]() -> std::optional<TokenKey> {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::string hex;
    in >> hex;
    TokenKey key{};
    std::size_t length = 0;
    if (sodium_hex2bin(key.data(), key.size(), hex.data(), hex.size(), nullptr, &length, nullptr) !=
            0 ||
        length != key.size())
      throw std::runtime_error(path.string() + ": token key must be 64 hex characters");
    return key;
  };
  if (auto key = read_key()) return *key;

  TokenKey fresh{};
  randombytes_buf(fresh.data(), fresh.size());
  char hex[fresh.size() * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, fresh.data(), fresh.size());
  create_secret_file_once(path, std::string(hex) + "\n");
  if (auto key = read_key()) return *key;
  throw std::runtime_error(path.string() + ": token key vanished after creation");
}

std::string hash_password(std::string_view password) {
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, password.data(), password.size(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
    throw std::runtime_error("password hashing ran out of memory");
  return hash;
}

bool verify_password(const std::string& password_hash, std::string_view password) {
  return crypto_pwhash_str_verify(password_hash.c_str(), password.data(), password.size()) == 0;
}

}  // namespace chat4all::auth
