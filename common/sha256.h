// SHA-256 (libsodium) as files use it: the digest of a chunk names the chunk,
// the digest of a whole file is its ETag, and the running state of an upload's
// digest is kept in its replicated record so that any frontend can go on with it.
//
// Thread-safety: a Sha256 is a value; use one from one thread at a time.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace chat4all {

class Sha256 {
 public:
  Sha256();
  // Goes on from a state() saved before; nullopt if `saved` is not one.
  static std::optional<Sha256> resume(std::string_view saved);

  void update(std::string_view bytes);
  // The state so far, to resume() later (an opaque byte string).
  std::string state() const;
  // The digest of everything given so far, 32 bytes; the object can go on.
  std::string digest() const;
  std::string hex_digest() const;

 private:
  alignas(16) unsigned char state_[128];
};

// Lowercase hex of `bytes`.
std::string to_hex(std::string_view bytes);
std::string sha256_hex(std::string_view bytes);
// A lowercase hex sha256 digest (64 characters), as chunk names are.
bool is_sha256_hex(std::string_view text);

}  // namespace chat4all
