// A thread that runs one loop until stop(): the loop watches the flag it is
// given and returns once it is set. An exception that ends the loop is logged
// (`stopped_by_error`) instead of ending the process; the loop is then over
// until the process restarts.
//
// Threading: start() and stop() are called by the owner's thread; stop()
// joins, and the destructor stops.
#pragma once

#include <atomic>
#include <exception>
#include <functional>
#include <thread>
#include <utility>

#include "common/json_log.h"

namespace chat4all {

class LoopThread {
 public:
  using Loop = std::function<void(const std::atomic<bool>& stopping)>;

  LoopThread() = default;
  ~LoopThread() { stop(); }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // `log` must outlive the thread.
  void start(Log& log, Loop loop) {
    thread_ = std::thread([this, &log, loop = std::move(loop)] {
      try {
        loop(stopping_);
      } catch (const std::exception& e) {
        log.error("stopped_by_error", {{"error", e.what()}});
      }
    });
  }

  void stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace chat4all
