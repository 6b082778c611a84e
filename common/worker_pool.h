// A small fixed pool of threads for blocking work that must stay off an event
// loop: password hashing (argon2id costs ~100 ms and 64 MiB each, so the
// frontend's pool never takes more than `concurrency` cores or `concurrency`
// x 64 MiB) and DNS lookups of webhook URLs (getaddrinfo may wait seconds).
//
// try_submit() is thread-safe; it refuses (returns false) when `queue_max`
// jobs are already waiting, and the caller decides what that means (the
// frontend answers 429 with Retry-After, the connector tries again later).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace chat4all {

class WorkerPool {
 public:
  WorkerPool(std::uint32_t concurrency, std::uint32_t queue_max);
  ~WorkerPool();  // finishes running jobs, drops queued ones, joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool try_submit(std::function<void()> job);

 private:
  void work();

  std::uint32_t queue_max_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace chat4all
