// Tasks run after a delay on a thread of their own (common/delayed_tasks.h).
#include "common/delayed_tasks.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <vector>

namespace chat4all {
namespace {

using std::chrono::milliseconds;

TEST(DelayedTasksTest, RunsTasksInTheOrderTheyFallDue) {
  DelayedTasks tasks(10);
  std::mutex mutex;
  std::vector<int> ran;
  std::promise<void> done;
  ASSERT_TRUE(tasks.schedule(milliseconds(30), [&] {
    std::lock_guard lock(mutex);
    ran.push_back(2);
    done.set_value();
  }));
  ASSERT_TRUE(tasks.schedule(milliseconds(0), [&] {
    std::lock_guard lock(mutex);
    ran.push_back(1);
  }));
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  std::lock_guard lock(mutex);
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
}

TEST(DelayedTasksTest, RefusesBeyondItsBoundAndDropsUnrunTasksWhenDestroyed) {
  bool ran = false;
  {
    DelayedTasks tasks(2);
    EXPECT_TRUE(tasks.schedule(std::chrono::hours(1), [&] { ran = true; }));
    EXPECT_TRUE(tasks.schedule(std::chrono::hours(1), [&] { ran = true; }));
    EXPECT_FALSE(tasks.schedule(std::chrono::hours(1), [&] { ran = true; }));
    EXPECT_EQ(tasks.waiting(), 2u);
  }
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace chat4all
