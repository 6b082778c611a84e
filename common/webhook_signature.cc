#include "common/webhook_signature.h"

#include <sodium.h>

#include <array>
#include <string>

namespace chat4all::webhook {
namespace {

constexpr std::string_view kSignatureVersion = "v1,";

// Standard base64 with padding: the alphabet the Standard Webhooks libraries use for both the
// secret and the signature.
std::string base64_encode(const unsigned char* bytes, std::size_t size) {
  const std::size_t length = sodium_base64_encoded_len(size, sodium_base64_VARIANT_ORIGINAL);
  std::string out(length, '\0');
  sodium_bin2base64(out.data(), length, bytes, size, sodium_base64_VARIANT_ORIGINAL);
  out.resize(length - 1);  // drop the terminating NUL
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out(text.size() / 4 * 3 + 3, '\0');
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &length, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  out.resize(length);
  return out;
}

using Mac = std::array<unsigned char, crypto_auth_hmacsha256_BYTES>;

Mac mac_of(std::string_view key, std::string_view msg_id, std::int64_t timestamp_s,
           std::string_view body) {
  const auto update = [](crypto_auth_hmacsha256_state& state, std::string_view part) {
    crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(part.data()),
                                  part.size());
  };
  // The init/update/final form takes a key of any length (the one-shot form wants 32 bytes),
  // and streaming the three parts avoids copying the body into one signed string.
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()),
                              key.size());
  update(state, msg_id);
  update(state, ".");
  update(state, std::to_string(timestamp_s));
  update(state, ".");
  update(state, body);
  Mac mac;
  crypto_auth_hmacsha256_final(&state, mac.data());
  sodium_memzero(&state, sizeof state);
  return mac;
}

}  // namespace

std::string generate_secret() {
  std::array<unsigned char, kSecretGeneratedBytes> key;
  randombytes_buf(key.data(), key.size());
  std::string secret = std::string(kSecretPrefix) + base64_encode(key.data(), key.size());
  sodium_memzero(key.data(), key.size());
  return secret;
}

std::optional<std::string> secret_bytes(std::string_view secret) {
  if (!secret.starts_with(kSecretPrefix)) return std::nullopt;
  auto key = base64_decode(secret.substr(kSecretPrefix.size()));
  if (!key || key->size() < kSecretBytesMin || key->size() > kSecretBytesMax) return std::nullopt;
  return key;
}

std::string sign(std::string_view secret_bytes, std::string_view msg_id, std::int64_t timestamp_s,
                 std::string_view body) {
  const Mac mac = mac_of(secret_bytes, msg_id, timestamp_s, body);
  return std::string(kSignatureVersion) + base64_encode(mac.data(), mac.size());
}

bool verify(std::string_view secret_bytes, std::string_view msg_id, std::int64_t timestamp_s,
            std::string_view body, std::string_view signature_header) {
  const Mac expected = mac_of(secret_bytes, msg_id, timestamp_s, body);
  bool matched = false;
  std::size_t start = 0;
  while (start <= signature_header.size()) {
    const std::size_t space = signature_header.find(' ', start);
    const std::string_view entry = signature_header.substr(
        start, space == std::string_view::npos ? std::string_view::npos : space - start);
    if (entry.starts_with(kSignatureVersion)) {
      const auto candidate = base64_decode(entry.substr(kSignatureVersion.size()));
      // Every entry is compared (no early exit) so the time taken does not say which matched.
      if (candidate && candidate->size() == expected.size() &&
          sodium_memcmp(candidate->data(), expected.data(), expected.size()) == 0)
        matched = true;
    }
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return matched;
}

}  // namespace chat4all::webhook
