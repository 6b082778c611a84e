// chat4all-http-load's generator: the connections that send POST /v1/messages, one request in
// flight each, on I/O threads (Worker) that share nothing but the Plan.
//
// Each connection keeps one request in flight. Closed loop (rate 0) sends the next request as
// soon as the answer arrives. Open loop (rate R) gives every message a due time on a global
// schedule of R messages/s and measures latency from that due time, so a stalled server is
// charged for the requests it delayed (no coordinated omission). With the ack log on, each
// connection is a careful client (ack_log_client.h).
//
// The generator shares the machine with the server, so the hot path avoids allocation: the
// request line and fixed headers are built once, bodies are written into per-connection
// buffers, answers are parsed in place (http_response_head.h), and latencies go into a
// fixed-size histogram (latency_histogram.h).
#pragma once

// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/http_client.h"
#include "bench/load_stats.h"

namespace chat4all::bench {

// How often each I/O thread looks for requests past --timeout-s. A sweep instead of a timer
// per request keeps timer bookkeeping off the hot path; timeouts are late by at most this.
inline constexpr auto kSweepInterval = std::chrono::milliseconds(100);

// The plan every connection follows. Read-only during the run except for the two atomics.

struct Plan {
  boost::asio::ip::tcp::endpoint endpoint;
  Target target;             // with https, each connection makes a TLS session from target.tls
  std::string request_head;  // request line and fixed headers, up to Content-Length
  std::string run_id;
  std::uint32_t connections = 0;
  std::uint64_t conversations = 0;
  std::vector<std::string> conversation_ids;  // `conversations` of them, made before the run
  double rate = 0;
  double ns_per_message = 0;  // open loop: 1e9 / rate
  std::uint64_t message_cap = 0;
  std::chrono::steady_clock::duration request_timeout{};
  std::chrono::steady_clock::time_point start, warmup_end, send_end, drain_end;
  bool ack_mode = false;                               // --ack-log: retry, and record outcomes
  std::chrono::steady_clock::duration retry_window{};  // per message, from its first attempt
  std::uint32_t retry_attempts = 0;
  std::atomic<std::uint64_t> claimed{0};  // messages started, for --messages
  std::atomic<bool> stop_requested{false};
};

class Connection;

// One I/O thread: its own io_context, connections and statistics.
class Worker {
 public:
  explicit Worker(Plan& plan);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void add_connection(std::uint32_t index);
  // Runs until every connection has finished; the drain deadline bounds that.
  void run();
  // Any thread: end sooner (Ctrl-C). Sending has already stopped by plan_.stop_requested.
  void hurry(std::chrono::steady_clock::time_point drain_by);
  void connection_finished();

  const RunStats& stats() const { return stats_; }

 private:
  void arm_drain(std::chrono::steady_clock::time_point deadline);
  void arm_sweep();

  boost::asio::io_context io_;  // first: outlives the sockets and timers below
  boost::asio::steady_timer drain_timer_;
  boost::asio::steady_timer sweep_timer_;
  Plan& plan_;
  RunStats stats_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::size_t live_connections_ = 0;
};

}  // namespace chat4all::bench
