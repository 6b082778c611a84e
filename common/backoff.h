// Exponential backoff with "full jitter" (AWS Architecture Blog, "Exponential
// Backoff And Jitter"): the wait after attempt n is uniform in
// [0, min(max_ms, initial_ms * 2^(n-1))], so that many deliveries failing
// together (a receiver or platform restarting) do not retry in lockstep. A
// wait the other side asked for (Retry-After) raises it to at least that,
// capped at max_ms so that one answer cannot park a delivery indefinitely.
//
// Pure: the caller passes a uniformly distributed 64-bit `random`, so a
// schedule is reproducible in tests. Webhook retries and channel deliveries
// both use it.
#pragma once

#include <algorithm>
#include <cstdint>

namespace chat4all {

// min(max_ms, initial_ms * 2^(attempt - 1)) without overflow: past 32
// doublings any 32-bit initial value is beyond any 32-bit cap.
inline std::uint64_t backoff_ceiling_ms(std::uint32_t attempt, std::uint32_t initial_ms,
                                        std::uint32_t max_ms) {
  const std::uint32_t doublings =
      std::min<std::uint32_t>(std::max<std::uint32_t>(attempt, 1) - 1, 32);
  return std::min<std::uint64_t>(std::uint64_t{initial_ms} << doublings, max_ms);
}

// The wait before the attempt after `attempt` (1-based).
inline std::uint32_t full_jitter_backoff_ms(std::uint32_t attempt, std::uint32_t initial_ms,
                                            std::uint32_t max_ms, std::uint64_t random,
                                            std::uint64_t asked_ms = 0) {
  const std::uint64_t ceiling_ms = backoff_ceiling_ms(attempt, initial_ms, max_ms);
  // The modulo's bias is below 2^-32 for any ceiling that fits in 32 bits.
  std::uint64_t delay_ms = random % (ceiling_ms + 1);
  delay_ms = std::max(delay_ms, std::min<std::uint64_t>(asked_ms, max_ms));
  return static_cast<std::uint32_t>(delay_ms);
}

}  // namespace chat4all
