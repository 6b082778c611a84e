#include "bench/load_generator.h"

// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "bench/http_response_head.h"

namespace chat4all::bench {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;

constexpr int kMaxConsecutiveFailures = 5;      // per connection, then it gives up
constexpr std::size_t kReadBufferBytes = 4096;  // answers are ~250 bytes; bodies beyond are skipped

// Exactly 100 bytes, JSON-safe (no quotes or backslashes).
constexpr std::string_view kMessageText =
    "Chat4All load test message: the quick brown fox jumps over the lazy dog, then naps in the "
    "sun. 01234";
static_assert(kMessageText.size() == 100);

}  // namespace

// One keep-alive connection with one request in flight. Exactly one asynchronous operation is
// pending at any time (connect, write, read or a timer), until finish().
class Connection {
 public:
  Connection(asio::io_context& io, Plan& plan, RunStats& stats, Worker& worker, std::uint32_t index)
      : socket_(io),
        timer_(io),
        plan_(plan),
        stats_(stats),
        worker_(worker),
        index_(index),
        message_id_prefix_(plan.run_id + "-" + std::to_string(index) + "-") {
    body_.reserve(192 + message_id_prefix_.size() + kMessageText.size());
  }

  void start() { connect(); }

  // Called by the worker's sweep: a request past --timeout-s loses its connection; the
  // pending write or read then fails and counts a timeout.
  void expire_if_overdue(Clock::time_point now) {
    if (finished_ || !in_flight_ || timed_out_ || now - written_at_ < plan_.request_timeout) return;
    timed_out_ = true;
    close_socket();
  }

  // The drain deadline passed: drop whatever is pending; its handler then finishes.
  void abort() {
    if (finished_) return;
    aborted_ = true;
    ErrorCode ignored;
    socket_.close(ignored);
    timer_.cancel();
  }

 private:
  bool stopping(Clock::time_point now) const {
    return now >= plan_.send_end || plan_.stop_requested.load(std::memory_order_relaxed);
  }

  // A message still owed an outcome keeps the connection going past send_end: a real client
  // does not drop a message it has already tried to send.
  bool done_sending(Clock::time_point now) const {
    if (outstanding_) return plan_.stop_requested.load(std::memory_order_relaxed);
    return stopping(now);
  }

  bool can_retry(Clock::time_point now) const {
    return plan_.ack_mode && attempts_ < plan_.retry_attempts &&
           now - first_attempt_at_ < plan_.retry_window &&
           !plan_.stop_requested.load(std::memory_order_relaxed);
  }

  // The current message is settled: acknowledged, or given up on with its outcome unknown.
  void settle(bool acknowledged, std::uint64_t seq, std::string_view detail) {
    if (!outstanding_) return;
    outstanding_ = false;
    if (!plan_.ack_mode) return;
    stats_.outcomes.push_back(Outcome{index_, message_sequence_, conversation_of(message_sequence_),
                                      seq, attempts_, acknowledged, std::string(detail)});
  }

  void connect() {
    if (done_sending(Clock::now())) return finish();
    tls_.reset();  // nothing is pending on it now; a new connection needs a new session
    socket_.async_connect(plan_.endpoint, [this](const ErrorCode& error) {
      if (finish_if_aborted()) return;
      if (error) {
        stats_.count_error("connect_failed");
        return reconnect_later();
      }
      ErrorCode ignored;
      socket_.set_option(tcp::no_delay(true), ignored);
      if (!plan_.target.https) return send_next(Clock::now());
      // The handshake belongs to the connection, not to a request: it is not in the latency.
      tls_ = tls_client(socket_, plan_.target);
      tls_->async_handshake(asio::ssl::stream_base::client, [this](const ErrorCode& error) {
        if (finish_if_aborted()) return;
        if (error) {
          stats_.count_error("tls_handshake_failed");
          return reconnect_later();
        }
        send_next(Clock::now());
      });
    });
  }

  // Writes and reads go through the TLS session when there is one.
  // Over TLS the pieces are joined first: asio's TLS stream writes one buffer per record, and
  // three records (and sends) per request would measure that instead of the server.
  template <typename Buffers, typename Handler>
  void write_all(const Buffers& buffers, Handler&& handler) {
    if (!tls_) return asio::async_write(socket_, buffers, std::forward<Handler>(handler));
    joined_.clear();  // keeps its capacity: no allocation per request
    for (const auto& buffer : buffers)
      joined_.append(static_cast<const char*>(buffer.data()), buffer.size());
    asio::async_write(*tls_, asio::buffer(joined_), std::forward<Handler>(handler));
  }
  template <typename Handler>
  void read_some(asio::mutable_buffer buffer, Handler&& handler) {
    if (tls_) return tls_->async_read_some(buffer, std::forward<Handler>(handler));
    socket_.async_read_some(buffer, std::forward<Handler>(handler));
  }

  void send_next(Clock::time_point now) {
    if (outstanding_ && !can_retry(now)) settle(false, 0, last_error_);
    if (outstanding_) return send(now, now);  // a retry: its backoff has already passed
    if (stopping(now)) return finish();
    if (plan_.rate <= 0) return send(now, now);
    const Clock::time_point due = due_time(sequence_);
    if (due >= plan_.send_end) return finish();
    if (due <= now)
      return send(due, now);  // behind schedule: send at once, latency counts from due
    timer_.expires_at(due);
    timer_.async_wait([this, due](const ErrorCode&) {
      if (finish_if_aborted()) return;
      if (plan_.stop_requested.load(std::memory_order_relaxed)) return finish();
      send(due, due);
    });
  }

  // Global message k is due at start + k / rate; connection i owns k = i, i + C, i + 2C, ...
  // so the connections interleave evenly.
  Clock::time_point due_time(std::uint64_t sequence) const {
    const double k = static_cast<double>(index_) +
                     static_cast<double>(sequence) * static_cast<double>(plan_.connections);
    return plan_.start +
           std::chrono::nanoseconds(static_cast<std::int64_t>(k * plan_.ns_per_message));
  }

  void send(Clock::time_point intended, Clock::time_point now) {
    if (outstanding_) {
      ++stats_.retries;
    } else {
      if (plan_.message_cap != 0 &&
          plan_.claimed.fetch_add(1, std::memory_order_relaxed) >= plan_.message_cap)
        return finish();
      message_sequence_ = sequence_++;
      outstanding_ = true;
      attempts_ = 0;
      first_attempt_at_ = now;
      last_error_.clear();
    }
    ++attempts_;
    build_request(message_sequence_);
    intended_ = intended;
    written_at_ = now;
    measured_ = intended >= plan_.warmup_end;
    ++(measured_ ? stats_.sent : stats_.warmup_sent);
    in_flight_ = true;
    const std::array<asio::const_buffer, 3> buffers{
        asio::buffer(plan_.request_head), asio::buffer(length_line_.data(), length_line_size_),
        asio::buffer(body_)};
    write_all(buffers, [this](const ErrorCode& error, std::size_t) {
      if (finish_if_aborted()) return;
      if (timed_out_) return request_failed("timeout");
      if (error) return request_failed("connection_lost");
      read_answer();
    });
  }

  // Round-robin over conversations, interleaved across connections like the rate schedule.
  std::uint64_t conversation_of(std::uint64_t sequence) const {
    return (index_ + sequence * plan_.connections) % plan_.conversations;
  }

  void build_request(std::uint64_t sequence) {
    const std::uint64_t conversation = conversation_of(sequence);
    body_.clear();  // keeps its capacity: no allocation per request
    body_.append(R"({"conversation_id":")");
    body_.append(plan_.conversation_ids[conversation]);
    body_.append(R"(","message_id":")");
    body_.append(message_id_prefix_);
    append_number(body_, sequence);
    body_.append(R"(","payload":{"type":"text","text":")");
    body_.append(kMessageText);
    body_.append(R"("}})");

    static constexpr std::string_view kLengthName = "Content-Length: ";
    char* out = std::copy(kLengthName.begin(), kLengthName.end(), length_line_.data());
    out = std::to_chars(out, length_line_.data() + length_line_.size() - 4, body_.size()).ptr;
    out = std::copy_n("\r\n\r\n", 4, out);
    length_line_size_ = static_cast<std::size_t>(out - length_line_.data());
  }

  static void append_number(std::string& out, std::uint64_t number) {
    char digits[20];
    const auto end = std::to_chars(digits, digits + sizeof digits, number).ptr;
    out.append(digits, end);
  }

  void read_answer() {
    read_some(asio::buffer(read_buffer_.data() + read_size_, read_buffer_.size() - read_size_),
              [this](const ErrorCode& error, std::size_t bytes) { on_read(error, bytes); });
  }

  void on_read(const ErrorCode& error, std::size_t bytes) {
    if (finish_if_aborted()) return;
    if (timed_out_) return request_failed("timeout");
    if (error) return request_failed("connection_lost");  // reset, or closed mid-answer
    if (body_remaining_ > 0) {  // skipping a body larger than what the head read brought
      if (bytes > body_remaining_) return request_failed("bad_response");
      body_remaining_ -= bytes;
      return body_remaining_ > 0 ? read_answer() : answered();
    }
    read_size_ += bytes;
    const ResponseHead head = parse_response_head({read_buffer_.data(), read_size_});
    if (head.state == ResponseHead::State::kIncomplete)
      return read_size_ < read_buffer_.size() ? read_answer() : request_failed("bad_response");
    if (head.state == ResponseHead::State::kBad) return request_failed("bad_response");
    status_ = head.status;
    close_after_ = head.close;
    const std::size_t body_bytes = read_size_ - head.head_bytes;
    read_size_ = 0;
    // One request in flight: bytes past this answer are nothing we asked for.
    if (body_bytes > head.content_length) return request_failed("bad_response");
    if (status_ != 202 && measured_)
      stats_.keep_error_sample(status_, {read_buffer_.data() + head.head_bytes, body_bytes});
    acknowledged_seq_ = 0;
    if (status_ == 202 && plan_.ack_mode && body_bytes == head.content_length)
      acknowledged_seq_ = find_seq({read_buffer_.data() + head.head_bytes, body_bytes});
    body_remaining_ = head.content_length - body_bytes;
    if (body_remaining_ > 0) return read_answer();
    answered();
  }

  // The "seq" of a 202 body such as {"conversation_id":…,"seq":17,…}; 0 when absent. A scan
  // instead of a JSON parse keeps the hot path free of allocation.
  static std::uint64_t find_seq(std::string_view body) {
    static constexpr std::string_view kKey = "\"seq\":";
    const auto at = body.find(kKey);
    if (at == std::string_view::npos) return 0;
    std::size_t start = at + kKey.size();
    while (start < body.size() && body[start] == ' ') ++start;
    std::uint64_t seq = 0;
    std::from_chars(body.data() + start, body.data() + body.size(), seq);
    return seq;
  }

  void answered() {
    const Clock::time_point now = Clock::now();
    in_flight_ = false;
    consecutive_failures_ = 0;
    bool retry = false;
    if (status_ == 202) {
      settle(true, acknowledged_seq_, "");
    } else {
      last_error_ = "http_" + std::to_string(status_);
      retry = retryable_status(status_) && can_retry(now);
      if (!retry) settle(false, 0, last_error_);
    }
    if (measured_) {
      if (status_ == 202) {
        ++stats_.accepted;
        stats_.latency.record(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - intended_).count());
      } else {
        stats_.count_status(status_);
      }
      if (!stats_.last_measured_answer || now > *stats_.last_measured_answer)
        stats_.last_measured_answer = now;
    }
    if (retry) return retry_later(close_after_);
    if (!close_after_) return send_next(now);
    close_socket();  // the server said Connection: close; not an error
    connect();
  }

  void retry_later(bool reconnect) {
    if (reconnect) close_socket();
    timer_.expires_after(retry_backoff(attempts_));
    timer_.async_wait([this, reconnect](const ErrorCode&) {
      if (finish_if_aborted()) return;
      if (reconnect) return connect();
      send_next(Clock::now());
    });
  }

  void request_failed(std::string_view kind) {
    if (in_flight_ && measured_) stats_.count_error(kind);
    // The request may or may not have reached the server; the retry (after reconnecting) or
    // the unknown outcome says so. send_next decides, once the connection is back.
    if (in_flight_) last_error_ = kind;
    if (in_flight_ && !can_retry(Clock::now())) settle(false, 0, kind);
    in_flight_ = false;
    timed_out_ = false;
    read_size_ = 0;
    body_remaining_ = 0;
    reconnect_later();
  }

  void reconnect_later() {
    close_socket();
    if (++consecutive_failures_ > kMaxConsecutiveFailures) {
      stats_.count_error("connection_gave_up");
      return finish();
    }
    const Clock::duration backoff =
        std::min<Clock::duration>(kFirstBackoff * (1 << (consecutive_failures_ - 1)), kMaxBackoff);
    const Clock::time_point retry_at = Clock::now() + backoff;
    if (done_sending(retry_at)) return finish();
    timer_.expires_at(retry_at);
    timer_.async_wait([this](const ErrorCode&) {
      if (finish_if_aborted()) return;
      connect();
    });
  }

  // Every completion handler starts here: after abort() the connection only winds down.
  bool finish_if_aborted() {
    if (!aborted_) return false;
    if (in_flight_ && measured_) stats_.count_error("unanswered");
    if (in_flight_) last_error_ = "unanswered";
    in_flight_ = false;
    finish();
    return true;
  }

  void close_socket() {
    ErrorCode ignored;
    socket_.close(ignored);
  }

  void finish();

  tcp::socket socket_;
  std::unique_ptr<TlsSocket> tls_;  // over socket_, with https; made anew at each connect
  std::string joined_;              // with https: the request being written, in one piece
  asio::steady_timer timer_;
  Plan& plan_;
  RunStats& stats_;
  Worker& worker_;
  const std::uint32_t index_;
  const std::string message_id_prefix_;  // "<run id>-<connection>-": unique per run
  std::string body_;
  std::array<char, 48> length_line_{};
  std::size_t length_line_size_ = 0;
  std::array<char, kReadBufferBytes> read_buffer_{};
  std::size_t read_size_ = 0;
  std::size_t body_remaining_ = 0;
  std::uint64_t sequence_ = 0;  // the next new message
  // The message being sent, until it is settled; with --ack-log that spans its retries.
  bool outstanding_ = false;
  std::uint64_t message_sequence_ = 0;
  std::uint32_t attempts_ = 0;
  Clock::time_point first_attempt_at_;
  std::string last_error_;
  std::uint64_t acknowledged_seq_ = 0;
  Clock::time_point intended_;    // latency counts from here
  Clock::time_point written_at_;  // the timeout counts from here
  bool measured_ = false;
  bool in_flight_ = false;
  bool timed_out_ = false;
  int status_ = 0;
  bool close_after_ = false;
  int consecutive_failures_ = 0;
  bool aborted_ = false;
  bool finished_ = false;
};

Worker::Worker(Plan& plan) : io_(1), drain_timer_(io_), sweep_timer_(io_), plan_(plan) {}

Worker::~Worker() = default;

void Worker::add_connection(std::uint32_t index) {
  connections_.push_back(std::make_unique<Connection>(io_, plan_, stats_, *this, index));
}

void Worker::run() {
  live_connections_ = connections_.size();
  if (live_connections_ == 0) return;
  arm_drain(plan_.drain_end);  // before start(): a connection may finish at once
  arm_sweep();
  for (auto& connection : connections_) connection->start();
  io_.run();
}

void Worker::hurry(Clock::time_point drain_by) {
  asio::post(io_, [this, drain_by] {
    if (live_connections_ > 0 && drain_by < drain_timer_.expiry()) arm_drain(drain_by);
  });
}

void Worker::connection_finished() {
  if (--live_connections_ > 0) return;
  drain_timer_.cancel();
  sweep_timer_.cancel();
}

void Worker::arm_drain(Clock::time_point deadline) {
  drain_timer_.expires_at(deadline);
  drain_timer_.async_wait([this](const ErrorCode& error) {
    if (error) return;  // cancelled: everyone finished, or re-armed for sooner
    for (auto& connection : connections_) connection->abort();
  });
}

void Worker::arm_sweep() {
  sweep_timer_.expires_after(kSweepInterval);
  sweep_timer_.async_wait([this](const ErrorCode& error) {
    // Cancelled, or expired just as the last connection finished: nothing left to watch.
    if (error || live_connections_ == 0) return;
    const Clock::time_point now = Clock::now();
    for (auto& connection : connections_) connection->expire_if_overdue(now);
    arm_sweep();
  });
}

void Connection::finish() {
  if (finished_) return;
  settle(false, 0, last_error_.empty() ? "stopped" : last_error_);
  finished_ = true;
  aborted_ = true;  // nothing of this connection runs again
  close_socket();
  worker_.connection_finished();
}

}  // namespace chat4all::bench
