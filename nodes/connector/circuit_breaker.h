// A circuit breaker for one channel on one connector: after a run of failed sends it stops
// sending for a while, then lets a single probe find out whether the platform is back.
//
// Why: when a platform is down or refusing us, every send ties up a worker for the whole
// channel timeout and then fails anyway, and the retries pile load on a platform that is
// trying to recover. Failing fast while it is down keeps the workers free for the channels
// that work, and the deliveries wait in their retry schedule instead.
//
// States (ZeroMQ guide's bstar.c style: explicit states and events, time passed in):
//   closed     sends go through; `failures_to_open` failures in a row open the breaker; a
//              success resets the run.
//   open       sends are refused until next_probe_at_ms().
//   half-open  from next_probe_at_ms() on: allow() lets exactly one probe through and refuses
//              everything else until that probe reports. Its success closes the breaker; its
//              failure opens it again for twice as long as last time (capped at
//              kOpenFactorMax × open_ms, so that a platform that is back is noticed within a
//              bounded time); a probe that ended without a verdict (on_abandoned: the send was
//              cancelled, the node is stopping) frees the slot for the next allow().
//
// Pure: no clock, no I/O, no threads inside. Every call takes the caller's `now_ms` (any
// monotonic millisecond clock, the same one for every call), so tests drive it step by step.
//
// Contract: every allow() that returned true ends in exactly one of on_success, on_failure or
// on_abandoned. While the breaker is open with no probe out, verdicts are ignored: they belong
// to sends allowed before it opened, and only a probe decides. While a probe is out, the first
// verdict is taken as the probe's; the breaker cannot tell it from a late verdict of a send
// allowed before it opened, so the host bounds each send by the channel's timeout and keeps that
// below open_ms: then every such send has reported before the first probe goes.
//
// Thread-safety: none; the owner serialises calls (one breaker per channel, under the host's
// lock for that channel).
#pragma once

#include <cstdint>

namespace chat4all::connector {

class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };

  // The longest open period, as a multiple of open_ms.
  static constexpr std::int64_t kOpenFactorMax = 16;

  // `failures_to_open` 0 acts as 1; `open_ms` below 1 acts as 1.
  CircuitBreaker(std::uint32_t failures_to_open, std::int64_t open_ms);

  // May a send go now? In half-open, true hands out the probe slot.
  bool allow(std::int64_t now_ms);
  // The verdict of a send that allow() let through.
  void on_success(std::int64_t now_ms);
  void on_failure(std::int64_t now_ms);
  // A send that allow() let through ended without a verdict: if it was the probe, the next
  // allow() may send another one; otherwise nothing changes.
  void on_abandoned();

  State state(std::int64_t now_ms) const;
  // "closed", "open", "half_open" (for logs and metrics labels).
  static const char* state_name(State state);
  const char* state_name(std::int64_t now_ms) const { return state_name(state(now_ms)); }

  // When the open period ends (meaningful while not closed).
  std::int64_t next_probe_at_ms() const { return next_probe_at_ms_; }
  // How long the current (or, when closed, the next) open period lasts.
  std::int64_t open_period_ms() const { return open_period_ms_; }
  std::uint32_t consecutive_failures() const { return failures_; }
  bool probe_out() const { return probe_out_; }
  std::uint32_t failures_to_open() const { return failures_to_open_; }
  std::int64_t open_ms() const { return open_ms_; }

 private:
  void open(std::int64_t now_ms, std::int64_t period_ms);

  const std::uint32_t failures_to_open_;
  const std::int64_t open_ms_;
  bool closed_ = true;
  bool probe_out_ = false;  // only while not closed
  std::uint32_t failures_ = 0;
  std::int64_t open_period_ms_;
  std::int64_t next_probe_at_ms_ = 0;
};

}  // namespace chat4all::connector
