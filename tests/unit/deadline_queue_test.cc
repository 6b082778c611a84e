#include "common/deadline_queue.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace chat4all {
namespace {

using std::chrono::milliseconds;

TEST(DeadlineQueueTest, ExpiresInPushOrderUpToNow) {
  DeadlineQueue queue;
  const auto t0 = DeadlineQueue::Clock::time_point{} + std::chrono::hours(1);
  for (std::uint64_t id = 1; id <= 5; ++id) queue.push(t0 + milliseconds(10 * id), id);
  std::vector<std::uint64_t> expired;
  queue.expire(t0 + milliseconds(30), [&](std::uint64_t id) { expired.push_back(id); });
  EXPECT_EQ(expired, (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(queue.size(), 2u);
}

TEST(DeadlineQueueTest, WaitTimeIsBoundedByTheEarliestDeadlineAndTheCap) {
  DeadlineQueue queue;
  const auto now = DeadlineQueue::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(queue.wait_time(now, milliseconds(100)), milliseconds(100));
  queue.push(now + milliseconds(20), 1);
  EXPECT_EQ(queue.wait_time(now, milliseconds(100)), milliseconds(21));
  EXPECT_EQ(queue.wait_time(now + milliseconds(50), milliseconds(100)), milliseconds(0));
}

TEST(DeadlineQueueTest, CompactDropsAnsweredIdsOnceTheyDominate) {
  DeadlineQueue queue;
  const auto now = DeadlineQueue::Clock::time_point{};
  std::set<std::uint64_t> live = {7, 4000};
  for (std::uint64_t id = 0; id < 5000; ++id) queue.push(now, id);
  queue.compact(live.size(), [&](std::uint64_t id) { return live.count(id) > 0; });
  EXPECT_EQ(queue.size(), 2u);
  // Few answered ids: left in place (compaction is amortised).
  for (std::uint64_t id = 0; id < 10; ++id) queue.push(now, 10000 + id);
  queue.compact(live.size(), [&](std::uint64_t id) { return live.count(id) > 0; });
  EXPECT_EQ(queue.size(), 12u);
}

}  // namespace
}  // namespace chat4all
