// Webhook signatures in the Standard Webhooks scheme (https://www.standardwebhooks.com):
// HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}" with the secret's bytes, sent as
// `webhook-signature: v1,<base64>`. Receivers verify with any Standard Webhooks library.
//
// Secrets are shown to users as "whsec_" + standard base64 (with padding) of the key bytes.
//
// Every function is pure apart from generate_secret()'s randomness and safe from any thread;
// libsodium must have been initialised (auth::init_crypto()). Nothing here reads the clock:
// the caller passes the timestamp and checks its freshness itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chat4all::webhook {

inline constexpr std::string_view kSecretPrefix = "whsec_";
// Bytes of a generated secret (the spec asks for at least 24).
inline constexpr std::size_t kSecretGeneratedBytes = 24;
// Bounds on the key bytes of a secret a user supplies. The spec recommends 24..64; 16 is still
// accepted so that 128-bit secrets from other providers can be reused.
inline constexpr std::size_t kSecretBytesMin = 16;
inline constexpr std::size_t kSecretBytesMax = 64;

// A fresh secret: "whsec_" + base64 of kSecretGeneratedBytes random bytes.
std::string generate_secret();

// The key bytes of `secret` ("whsec_" + standard base64 with padding), or nullopt when the
// prefix is missing, the base64 is malformed, or it decodes to fewer than kSecretBytesMin or
// more than kSecretBytesMax bytes.
std::optional<std::string> secret_bytes(std::string_view secret);

// "v1," + base64(HMAC-SHA256(secret_bytes, msg_id + "." + timestamp_s + "." + body)).
// `secret_bytes` is the decoded key (see secret_bytes()), of any length. `msg_id` must not
// contain '.' (the spec's rule: "a.b" + "." + ts could otherwise be re-split); ours are generated.
std::string sign(std::string_view secret_bytes, std::string_view msg_id, std::int64_t timestamp_s,
                 std::string_view body);

// True when one of the space-separated entries of `signature_header` is the "v1" signature of
// (msg_id, timestamp_s, body) under `secret_bytes`. Entries of other versions ("v1a,...") and
// malformed entries are skipped. Compares in constant time.
bool verify(std::string_view secret_bytes, std::string_view msg_id, std::int64_t timestamp_s,
            std::string_view body, std::string_view signature_header);

}  // namespace chat4all::webhook
