// Bearer tokens (HS256 JWT signed with libsodium's HMAC-SHA256) and password
// hashes (argon2id).
//
// TokenSigner is immutable after construction and safe to use from any
// thread. Time is passed in, never read here, so expiry is testable.
// Password hashing is deliberately slow (~100 ms, 64 MiB): callers keep it
// off event loops and cap its concurrency (see common/worker_pool.h).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace chat4all::auth {

// Initialises libsodium; aborts the process if it cannot. Idempotent.
void init_crypto();

using TokenKey = std::array<unsigned char, 32>;

struct TokenClaims {
  std::string subject;  // user id, or client id for a service token
  std::string tenant;   // "ten": the tenant everything the token touches belongs to
  std::string role;     // "role": "user" or "admin"; "user" when absent
  std::int64_t issued_at_s = 0;
  std::int64_t expires_at_s = 0;
};

enum class TokenError {
  kNone,
  kMissing,       // no Authorization header / empty token
  kMalformed,     // not three base64url parts of JSON
  kBadAlgorithm,  // header names anything but HS256
  kBadSignature,  // signature does not match (forged or other key)
  kExpired,
  kMissingClaim,  // no sub or exp
};

const char* token_error_message(TokenError error);

struct VerifiedToken {
  TokenError error = TokenError::kNone;
  TokenClaims claims;
  bool ok() const { return error == TokenError::kNone; }
};

class TokenSigner {
 public:
  explicit TokenSigner(const TokenKey& key) : key_(key) {}

  std::string issue(std::string_view subject, std::int64_t now_s, std::uint32_t ttl_s,
                    std::string_view tenant = {}, std::string_view role = "user") const;
  VerifiedToken verify(std::string_view token, std::int64_t now_s) const;

 private:
  TokenKey key_;
};

// Reads the 32-byte key (hex) from `path`, creating it with fresh random
// bytes (mode 0600, atomically: concurrent creators agree on one key) if it
// does not exist. Throws std::runtime_error on I/O failure or a bad file.
TokenKey load_or_create_token_key(const std::filesystem::path& path);

// argon2id at libsodium's INTERACTIVE limits.
std::string hash_password(std::string_view password);
bool verify_password(const std::string& password_hash, std::string_view password);

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace chat4all::auth
