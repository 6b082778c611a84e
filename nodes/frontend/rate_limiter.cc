#include "nodes/frontend/rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <functional>

namespace chat4all::frontend {

RateLimiter::RateLimiter(std::uint32_t rate_per_s, std::uint32_t burst, std::size_t buckets_max)
    : rate_per_ms_(rate_per_s / 1000.0),
      burst_(std::max<double>(1, burst)),
      shard_buckets_max_(std::max<std::size_t>(1, buckets_max / kShards)) {
  for (std::size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

double RateLimiter::refilled(const Bucket& bucket, std::int64_t now_ms) const {
  // A clock that steps back refills nothing rather than draining.
  const auto elapsed_ms =
      static_cast<double>(std::max<std::int64_t>(0, now_ms - bucket.updated_ms));
  return std::min(burst_, bucket.tokens + elapsed_ms * rate_per_ms_);
}

void RateLimiter::evict(Shard& shard, std::int64_t now_ms) const {
  std::erase_if(shard.buckets,
                [&](const auto& entry) { return refilled(entry.second, now_ms) >= burst_; });
  if (shard.buckets.size() < shard_buckets_max_) return;
  const auto oldest = std::min_element(
      shard.buckets.begin(), shard.buckets.end(),
      [](const auto& a, const auto& b) { return a.second.updated_ms < b.second.updated_ms; });
  shard.buckets.erase(oldest);
}

RateLimiter::Decision RateLimiter::acquire(std::string_view key, std::int64_t now_ms) {
  if (rate_per_ms_ <= 0) return {};
  Shard& shard = *shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard lock(shard.mutex);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= shard_buckets_max_) evict(shard, now_ms);
    it = shard.buckets.emplace(std::string(key), Bucket{burst_, now_ms}).first;
  }
  Bucket& bucket = it->second;
  bucket.tokens = refilled(bucket, now_ms);
  bucket.updated_ms = std::max(bucket.updated_ms, now_ms);
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return {};
  }
  const double wait_ms = (1 - bucket.tokens) / rate_per_ms_;
  return {false, static_cast<std::uint32_t>(std::max(1.0, std::ceil(wait_ms / 1000)))};
}

std::size_t RateLimiter::bucket_count() const {
  std::size_t count = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    count += shard->buckets.size();
  }
  return count;
}

}  // namespace chat4all::frontend
