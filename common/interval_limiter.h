// At most one event per key in `interval_ms`: the typing indicator's rule
// (one notice per user and conversation every few seconds), kept by the
// storage leader of the conversation and, to spare it a request per
// keystroke, by each stream session too. Time is passed in (milliseconds of
// any monotonic clock), so tests drive it by hand.
//
// Bounded: at most `keys_max` keys. A key older than the interval is the same
// as no key, so a full limiter forgets those (one pass at most every
// interval); if none can go, the event is refused (the limit errs towards
// dropping an indicator, never towards growing).
//
// Not thread-safe: one owner (the storage node's loop, a session's strand).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace chat4all {

class IntervalLimiter {
 public:
  IntervalLimiter(std::int64_t interval_ms, std::size_t keys_max)
      : interval_ms_(interval_ms), keys_max_(keys_max) {}

  // True (and remembered) if `key` had no event within the interval before `now_ms`.
  bool allow(std::string_view key, std::int64_t now_ms);

  std::size_t size() const { return last_ms_.size(); }

 private:
  void forget_older_than(std::int64_t now_ms);

  std::int64_t interval_ms_;
  std::size_t keys_max_;
  std::unordered_map<std::string, std::int64_t> last_ms_;  // key -> its last allowed event
  std::optional<std::int64_t> swept_at_ms_;
};

}  // namespace chat4all
