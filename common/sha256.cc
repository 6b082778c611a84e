#include "common/sha256.h"

#include <sodium.h>

#include <cstring>

namespace chat4all {

static_assert(sizeof(crypto_hash_sha256_state) <= 128);

namespace {
crypto_hash_sha256_state& as_state(unsigned char* bytes) {
  return *reinterpret_cast<crypto_hash_sha256_state*>(bytes);
}
}  // namespace

Sha256::Sha256() {
  std::memset(state_, 0, sizeof(state_));
  crypto_hash_sha256_init(&as_state(state_));
}

std::optional<Sha256> Sha256::resume(std::string_view saved) {
  if (saved.size() != sizeof(crypto_hash_sha256_state)) return std::nullopt;
  Sha256 hash;
  std::memcpy(hash.state_, saved.data(), saved.size());
  return hash;
}

void Sha256::update(std::string_view bytes) {
  crypto_hash_sha256_update(&as_state(state_), reinterpret_cast<const unsigned char*>(bytes.data()),
                            bytes.size());
}

std::string Sha256::state() const {
  return std::string(reinterpret_cast<const char*>(state_), sizeof(crypto_hash_sha256_state));
}

std::string Sha256::digest() const {
  Sha256 copy = *this;
  std::string out(crypto_hash_sha256_BYTES, '\0');
  crypto_hash_sha256_final(&as_state(copy.state_), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string Sha256::hex_digest() const {
  return to_hex(digest());
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 0xf];
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 hash;
  hash.update(bytes);
  return hash.hex_digest();
}

bool is_sha256_hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace chat4all
