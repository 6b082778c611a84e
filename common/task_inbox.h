// Work handed to one thread's loop from other threads (storage answers, which
// arrive on the RouterClient's thread): post() from any thread, take() on the
// loop's thread, which waits there until a task comes or `until` passes.
//
// Bounded: at `tasks_max` waiting, post() refuses the task and returns false;
// the owner says what that means (its loops read the durable outbox again, so
// a refused completion is redone, not lost).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <utility>

namespace chat4all {

class TaskInbox {
 public:
  using Clock = std::chrono::steady_clock;

  explicit TaskInbox(std::size_t tasks_max) : tasks_max_(tasks_max) {}

  bool post(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    if (tasks_.size() >= tasks_max_) return false;
    tasks_.push_back(std::move(task));
    ready_.notify_one();
    return true;
  }

  // Everything posted so far, after waiting (at most until `until`) for one task.
  std::deque<std::function<void()>> take(Clock::time_point until) {
    std::unique_lock lock(mutex_);
    ready_.wait_until(lock, until, [&] { return !tasks_.empty(); });
    return std::exchange(tasks_, {});
  }

 private:
  const std::size_t tasks_max_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;  // guarded by mutex_
};

}  // namespace chat4all
