// A small fixed pool of threads for password verification (argon2id costs
// ~100 ms and 64 MiB each), so logins never run on the HTTP event loop and
// never take more than `concurrency` cores or `concurrency` x 64 MiB.
//
// try_submit() is thread-safe; it refuses (returns false) when `queue_max`
// jobs are already waiting, and the caller answers 429 with Retry-After.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace chat4all::frontend {

class LoginPool {
 public:
  LoginPool(std::uint32_t concurrency, std::uint32_t queue_max);
  ~LoginPool();  // finishes running jobs, drops queued ones, joins
  LoginPool(const LoginPool&) = delete;
  LoginPool& operator=(const LoginPool&) = delete;

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

}  // namespace chat4all::frontend
