#include "common/delayed_tasks.h"

#include <utility>

namespace chat4all {

DelayedTasks::DelayedTasks(std::size_t tasks_max)
    : tasks_max_(tasks_max), thread_([this] { run(); }) {}

DelayedTasks::~DelayedTasks() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool DelayedTasks::schedule(std::chrono::milliseconds delay, std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || tasks_.size() >= tasks_max_) return false;
    tasks_.emplace(Clock::now() + delay, std::move(task));
  }
  wake_.notify_one();
  return true;
}

std::size_t DelayedTasks::waiting() const {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

void DelayedTasks::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (tasks_.empty()) {
      wake_.wait(lock);
      continue;
    }
    const auto due = tasks_.begin()->first;
    if (Clock::now() < due) {
      wake_.wait_until(lock, due);
      continue;
    }
    auto task = std::move(tasks_.begin()->second);
    tasks_.erase(tasks_.begin());
    lock.unlock();
    task();
    lock.lock();
  }
}

}  // namespace chat4all
