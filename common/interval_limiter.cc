#include "common/interval_limiter.h"

namespace chat4all {

bool IntervalLimiter::allow(std::string_view key, std::int64_t now_ms) {
  auto it = last_ms_.find(std::string(key));
  if (it != last_ms_.end()) {
    if (now_ms - it->second < interval_ms_) return false;
    it->second = now_ms;
    return true;
  }
  if (last_ms_.size() >= keys_max_) forget_older_than(now_ms);
  if (last_ms_.size() >= keys_max_) return false;
  last_ms_.emplace(key, now_ms);
  return true;
}

void IntervalLimiter::forget_older_than(std::int64_t now_ms) {
  // At most one pass per interval, so that a limiter full of young keys costs
  // O(1) per refusal, not a pass over every key.
  if (swept_at_ms_ && now_ms - *swept_at_ms_ < interval_ms_) return;
  swept_at_ms_ = now_ms;
  std::erase_if(last_ms_, [&](const auto& entry) { return now_ms - entry.second >= interval_ms_; });
}

}  // namespace chat4all
