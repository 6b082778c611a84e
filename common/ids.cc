#include "common/ids.h"

#include <sodium.h>

#include <atomic>
#include <chrono>

namespace chat4all::ids {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string new_trace_id() {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  char hex[sizeof bytes * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  return hex;
}

std::string new_message_id(std::int64_t now_ms) {
  unsigned char bytes[16];
  randombytes_buf(bytes, sizeof bytes);
  const auto millis = static_cast<std::uint64_t>(now_ms);
  for (int i = 0; i < 6; ++i) bytes[i] = static_cast<unsigned char>(millis >> (40 - 8 * i));
  bytes[6] = static_cast<unsigned char>(0x70 | (bytes[6] & 0x0f));  // version 7
  bytes[8] = static_cast<unsigned char>(0x80 | (bytes[8] & 0x3f));  // RFC 4122 variant
  char hex[33];
  sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
  std::string text(hex);
  text.insert(20, "-");
  text.insert(16, "-");
  text.insert(12, "-");
  text.insert(8, "-");
  return text;
}

std::uint64_t next_request_id() {
  static std::atomic<std::uint64_t> counter{[] {
    std::uint64_t start = 0;
    randombytes_buf(&start, sizeof start);
    return start >> 16;  // leaves room to count without wrapping
  }()};
  return counter.fetch_add(1, std::memory_order_relaxed);
}

bool is_valid_id(std::string_view id) {
  if (id.empty() || id.size() > kIdLengthMax) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > kNameLengthMax) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string new_random_id(std::string_view prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string id(prefix);
  for (int i = 0; i < 26; ++i) id.push_back(kAlphabet[randombytes_uniform(36)]);
  return id;
}

}  // namespace chat4all::ids
