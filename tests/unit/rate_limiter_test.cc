// Per-token token buckets: nodes/frontend/rate_limiter.h, driven by a hand-set clock.
#include "nodes/frontend/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace chat4all::frontend {
namespace {

TEST(RateLimiterTest, BurstThenRate) {
  RateLimiter limiter(10, 5);  // 10/s, bursts of 5
  std::int64_t now_ms = 1000;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.acquire("t/user/alice", now_ms).allowed) << i;
  const auto refused = limiter.acquire("t/user/alice", now_ms);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_s, 1u);
  now_ms += 99;  // 0.99 of a token
  EXPECT_FALSE(limiter.acquire("t/user/alice", now_ms).allowed);
  now_ms += 1;
  EXPECT_TRUE(limiter.acquire("t/user/alice", now_ms).allowed);
  EXPECT_FALSE(limiter.acquire("t/user/alice", now_ms).allowed);
  // A long pause refills to the burst, not beyond.
  now_ms += 60000;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.acquire("t/user/alice", now_ms).allowed);
  EXPECT_FALSE(limiter.acquire("t/user/alice", now_ms).allowed);
}

TEST(RateLimiterTest, KeysAreIndependent) {
  RateLimiter limiter(1, 1);
  EXPECT_TRUE(limiter.acquire("a/user/x", 0).allowed);
  EXPECT_FALSE(limiter.acquire("a/user/x", 0).allowed);
  EXPECT_TRUE(limiter.acquire("b/user/x", 0).allowed);
  EXPECT_TRUE(limiter.acquire("a/admin/x", 0).allowed);
  EXPECT_EQ(limiter.bucket_count(), 3u);
}

TEST(RateLimiterTest, RetryAfterComesFromTheBucket) {
  RateLimiter limiter(1, 3);  // one per second
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("k", 0).allowed);
  EXPECT_EQ(limiter.acquire("k", 0).retry_after_s, 1u);
  RateLimiter slow(1, 1);
  EXPECT_TRUE(slow.acquire("k", 0).allowed);
  EXPECT_EQ(slow.acquire("k", 100).retry_after_s, 1u);  // 0.9 s to go, rounded up
  // Refused requests take nothing: the wait does not grow with retries.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(slow.acquire("k", 500).allowed);
  EXPECT_TRUE(slow.acquire("k", 1000).allowed);
}

TEST(RateLimiterTest, AClockThatStepsBackRefillsNothing) {
  RateLimiter limiter(10, 1);
  EXPECT_TRUE(limiter.acquire("k", 5000).allowed);
  EXPECT_FALSE(limiter.acquire("k", 1000).allowed);
  EXPECT_FALSE(limiter.acquire("k", 5050).allowed);
  EXPECT_TRUE(limiter.acquire("k", 5100).allowed);
}

TEST(RateLimiterTest, BoundedByEvictingIdleThenOldestBuckets) {
  RateLimiter limiter(1, 2, /*buckets_max=*/16);  // one bucket per shard
  // Many keys at once: never more buckets than the bound.
  for (int i = 0; i < 1000; ++i) limiter.acquire("key-" + std::to_string(i), 0);
  EXPECT_LE(limiter.bucket_count(), 16u);
  // A drained bucket stays drained while its shard has room ...
  RateLimiter roomy(1, 1, 1000);
  EXPECT_TRUE(roomy.acquire("k", 0).allowed);
  for (int i = 0; i < 100; ++i) roomy.acquire("other-" + std::to_string(i), 0);
  EXPECT_FALSE(roomy.acquire("k", 0).allowed);
}

TEST(RateLimiterTest, ConcurrentAcquiresGrantExactlyTheBurst) {
  RateLimiter limiter(1, 1000);
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i)
        if (limiter.acquire("shared", 0).allowed) granted.fetch_add(1);
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(granted.load(), 1000);
}

TEST(RateLimiterTest, ZeroRateIsNoLimit) {
  RateLimiter limiter(0, 1);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(limiter.acquire("k", 0).allowed);
  EXPECT_EQ(limiter.bucket_count(), 0u);
}

}  // namespace
}  // namespace chat4all::frontend
