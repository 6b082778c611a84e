#include "nodes/connector/circuit_breaker.h"

#include <algorithm>

namespace chat4all::connector {

CircuitBreaker::CircuitBreaker(std::uint32_t failures_to_open, std::int64_t open_ms)
    : failures_to_open_(std::max<std::uint32_t>(failures_to_open, 1)),
      open_ms_(std::max<std::int64_t>(open_ms, 1)),
      open_period_ms_(open_ms_) {}

bool CircuitBreaker::allow(std::int64_t now_ms) {
  if (closed_) return true;
  if (now_ms < next_probe_at_ms_ || probe_out_) return false;
  probe_out_ = true;
  return true;
}

void CircuitBreaker::on_success(std::int64_t now_ms) {
  if (closed_) {
    failures_ = 0;
    return;
  }
  if (!probe_out_) return;  // a send from before the breaker opened: only the probe decides
  closed_ = true;
  probe_out_ = false;
  failures_ = 0;
  open_period_ms_ = open_ms_;
}

void CircuitBreaker::on_failure(std::int64_t now_ms) {
  if (closed_) {
    failures_ += failures_ < failures_to_open_ ? 1 : 0;
    if (failures_ >= failures_to_open_) open(now_ms, open_ms_);
    return;
  }
  if (!probe_out_) return;  // already open
  probe_out_ = false;
  open(now_ms, std::min(open_period_ms_ * 2, open_ms_ * kOpenFactorMax));
}

void CircuitBreaker::on_abandoned() {
  probe_out_ = false;
}

void CircuitBreaker::open(std::int64_t now_ms, std::int64_t period_ms) {
  closed_ = false;
  open_period_ms_ = period_ms;
  next_probe_at_ms_ = now_ms + period_ms;
}

CircuitBreaker::State CircuitBreaker::state(std::int64_t now_ms) const {
  if (closed_) return State::kClosed;
  if (probe_out_ || now_ms >= next_probe_at_ms_) return State::kHalfOpen;
  return State::kOpen;
}

const char* CircuitBreaker::state_name(State state) {
  switch (state) {
    case State::kClosed:
      return "closed";
    case State::kOpen:
      return "open";
    case State::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

}  // namespace chat4all::connector
