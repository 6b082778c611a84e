// Per-token request rate limit: one token bucket per key (a token's tenant,
// role and subject), refilled at `rate_per_s` up to `burst`. Time is passed
// in (milliseconds of any monotonic clock), so tests drive it by hand.
//
// Thread-safe: acquire() may run on several HTTP threads at once; the keys
// are spread over shards with a mutex each.
//
// Bounded: at most `buckets_max` buckets in all. A bucket that has been idle
// long enough to refill completely is the same as no bucket, so a shard that
// is full first drops those; if every bucket of the shard is still refilling,
// it drops the one used least recently, whose owner then starts again with a
// full bucket. At the bound the limiter thus errs towards serving a request
// rather than growing or refusing a stranger.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace chat4all::frontend {

class RateLimiter {
 public:
  // rate_per_s == 0 turns the limit off.
  RateLimiter(std::uint32_t rate_per_s, std::uint32_t burst, std::size_t buckets_max = 100000);

  struct Decision {
    bool allowed = true;
    std::uint32_t retry_after_s = 0;  // when refused: seconds until a request fits (>= 1)
  };
  Decision acquire(std::string_view key, std::int64_t now_ms);

  std::size_t bucket_count() const;

 private:
  struct Bucket {
    double tokens = 0;
    std::int64_t updated_ms = 0;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Bucket> buckets;  // guarded by mutex
  };
  static constexpr std::size_t kShards = 16;

  // Tokens of `bucket` at `now_ms`, refilled since it was last updated.
  double refilled(const Bucket& bucket, std::int64_t now_ms) const;
  // Makes room for one more bucket in a full shard (mutex held).
  void evict(Shard& shard, std::int64_t now_ms) const;

  double rate_per_ms_;
  double burst_;
  std::size_t shard_buckets_max_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace chat4all::frontend
