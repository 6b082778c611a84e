// Deadlines of in-flight requests that all share one timeout, so they expire
// in the order they were pushed (a FIFO, not a heap).
//
// Answered requests are not removed one by one (that would need a search);
// expire() skips ids the caller no longer holds, and compact() drops them in
// bulk so the queue stays bounded by the number of live requests. Not
// thread-safe: owned by one event loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <utility>

namespace chat4all {

class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;

  void push(Clock::time_point deadline, std::uint64_t id) { entries_.emplace_back(deadline, id); }

  // How long a poll may wait: until the earliest deadline, at most `cap`.
  std::chrono::milliseconds wait_time(Clock::time_point now, std::chrono::milliseconds cap) const {
    if (entries_.empty()) return cap;
    const auto until =
        std::chrono::duration_cast<std::chrono::milliseconds>(entries_.front().first - now) +
        std::chrono::milliseconds(1);
    return std::clamp(until, std::chrono::milliseconds(0), cap);
  }

  // Calls on_expired(id) for every id whose deadline is <= now, oldest first.
  template <typename OnExpired>
  void expire(Clock::time_point now, OnExpired&& on_expired) {
    while (!entries_.empty() && entries_.front().first <= now) {
      const std::uint64_t id = entries_.front().second;
      entries_.pop_front();
      on_expired(id);
    }
  }

  // Drops ids that are no longer live once they outnumber the live ones.
  template <typename IsLive>
  void compact(std::size_t live_count, IsLive&& is_live) {
    if (entries_.size() <= 2 * live_count + 1024) return;
    std::erase_if(entries_, [&](const auto& entry) { return !is_live(entry.second); });
  }

  std::size_t size() const { return entries_.size(); }

 private:
  std::deque<std::pair<Clock::time_point, std::uint64_t>> entries_;
};

}  // namespace chat4all
