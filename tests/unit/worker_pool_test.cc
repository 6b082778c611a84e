// The bounded worker pool (common/worker_pool.h): at most `concurrency`
// jobs run, at most `queue_max` wait, and the next one is refused.
#include "common/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace chat4all {
namespace {

TEST(WorkerPoolTest, RefusesBeyondTheQueueBoundAndRunsTheRest) {
  std::mutex mutex;
  std::condition_variable changed;
  bool release = false;
  int running = 0;
  std::atomic<int> finished{0};
  auto blocking_job = [&] {
    std::unique_lock lock(mutex);
    ++running;
    changed.notify_all();
    changed.wait(lock, [&] { return release; });
    ++finished;
  };
  {
    WorkerPool pool(/*concurrency=*/1, /*queue_max=*/2);
    ASSERT_TRUE(pool.try_submit(blocking_job));
    {
      // Wait (bounded) until the one worker holds the first job.
      std::unique_lock lock(mutex);
      ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(5), [&] { return running == 1; }));
    }
    EXPECT_TRUE(pool.try_submit(blocking_job));
    EXPECT_TRUE(pool.try_submit(blocking_job));
    EXPECT_FALSE(pool.try_submit(blocking_job)) << "a third waiting job is over queue_max";
    {
      std::lock_guard lock(mutex);
      release = true;
    }
    changed.notify_all();
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(5), [&] { return running == 3; }));
    lock.unlock();
    EXPECT_TRUE(pool.try_submit([&] { ++finished; })) << "room again once the queue drained";
    // The destructor joins; queued jobs that did not start are dropped.
  }
  EXPECT_GE(finished.load(), 3);
}

}  // namespace
}  // namespace chat4all
