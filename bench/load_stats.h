// What one I/O thread of the load generator counts: one per thread, merged at the end, so the
// hot path shares nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/ack_log_client.h"
#include "bench/latency_histogram.h"

namespace chat4all::bench {

// Bytes of the first error body kept per HTTP status, to show why.
inline constexpr std::size_t kErrorSampleBytes = 300;

struct RunStats {
  std::uint64_t warmup_sent = 0;
  std::uint64_t sent = 0;  // measured requests written
  std::uint64_t accepted = 0;
  std::map<std::string, std::uint64_t, std::less<>> errors;
  std::map<int, std::string> first_error_body;  // per HTTP status, to show why
  LatencyHistogram latency;                     // of accepted requests
  std::optional<std::chrono::steady_clock::time_point> last_measured_answer;
  std::vector<Outcome> outcomes;  // --ack-log only
  std::uint64_t retries = 0;      // attempts beyond each message's first

  void count_error(std::string_view kind) {
    auto it = errors.find(kind);
    if (it == errors.end()) it = errors.emplace(std::string(kind), 0).first;
    ++it->second;
  }

  void count_status(int status) { count_error("http_" + std::to_string(status)); }

  void keep_error_sample(int status, std::string_view body) {
    if (!first_error_body.contains(status))
      first_error_body.emplace(status, std::string(body.substr(0, kErrorSampleBytes)));
  }

  void merge(const RunStats& other) {
    warmup_sent += other.warmup_sent;
    sent += other.sent;
    accepted += other.accepted;
    for (const auto& [kind, count] : other.errors) errors[kind] += count;
    for (const auto& [status, body] : other.first_error_body)
      first_error_body.emplace(status, body);
    latency.merge(other.latency);
    outcomes.insert(outcomes.end(), other.outcomes.begin(), other.outcomes.end());
    retries += other.retries;
    if (other.last_measured_answer &&
        (!last_measured_answer || *other.last_measured_answer > *last_measured_answer))
      last_measured_answer = other.last_measured_answer;
  }
};

}  // namespace chat4all::bench
