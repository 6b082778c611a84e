// Tasks run once after a delay, on one thread of their own: for short waits
// that must not hold an event-loop or client thread (the frontend's retries of
// a locator lookup). A task runs on that thread and must be quick: post longer
// work elsewhere.
//
// Bounded: schedule() refuses (returns false) when `tasks_max` tasks wait, and
// the caller decides what that means. Destruction drops the tasks not yet due,
// unrun (as RouterClient drops the callbacks of requests still pending), and
// joins the thread.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace chat4all {

class DelayedTasks {
 public:
  explicit DelayedTasks(std::size_t tasks_max);
  ~DelayedTasks();
  DelayedTasks(const DelayedTasks&) = delete;
  DelayedTasks& operator=(const DelayedTasks&) = delete;

  bool schedule(std::chrono::milliseconds delay, std::function<void()> task);
  std::size_t waiting() const;

 private:
  using Clock = std::chrono::steady_clock;
  void run();

  const std::size_t tasks_max_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::multimap<Clock::time_point, std::function<void()>> tasks_;  // guarded by mutex_
  bool stopping_ = false;                                          // guarded by mutex_
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace chat4all
