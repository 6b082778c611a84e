// chat4all-http-load: drives POST /v1/messages over HTTP/1.1 keep-alive connections and
// reports throughput and latency percentiles.
//
// Each connection keeps one request in flight. Closed loop (--rate 0) sends the next request
// as soon as the answer arrives. Open loop (--rate R) gives every message a due time on a
// global schedule of R messages/s and measures latency from that due time, so a stalled
// server is charged for the requests it delayed (no coordinated omission).
//
// The generator shares the machine with the server, so the hot path avoids allocation: the
// request line and fixed headers are built once, bodies are written into per-connection
// buffers, answers are parsed in place by a minimal HTTP/1.1 response parser, and latencies go
// into a fixed-size log-linear histogram.

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

#include "bench/command_line.h"
#include "bench/http_client.h"
#include "bench/http_load_options.h"

namespace chat4all::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = boost::system::error_code;
using nlohmann::json;

// How often each I/O thread looks for requests past --timeout-s. A sweep instead of a timer
// per request keeps timer bookkeeping off the hot path; timeouts are late by at most this.
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
constexpr int kMaxConsecutiveFailures = 5;  // per connection, then it gives up
constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kMaxBackoff = std::chrono::seconds(1);
constexpr std::size_t kReadBufferBytes = 4096;  // answers are ~250 bytes; bodies beyond are skipped
constexpr std::size_t kMaxContentLength = 64 << 20;
constexpr std::size_t kErrorSampleBytes = 300;

// Exactly 100 bytes, JSON-safe (no quotes or backslashes).
constexpr std::string_view kMessageText =
    "Chat4All load test message: the quick brown fox jumps over the lazy dog, then naps in the "
    "sun. 01234";
static_assert(kMessageText.size() == 100);

using Options = LoadOptions;

// ---------------------------------------------------------------------------------------------
// Latency histogram

// Log-linear, like HdrHistogram: exact below 2048 ns, then 1024 linear buckets per power of
// two, so any recorded value is off by less than 0.1% (three significant digits and more).
// Fixed size (~300 KiB), so recording never allocates.
class LatencyHistogram {
 public:
  LatencyHistogram() : counts_(kBucketCount, 0) {}

  void record(std::int64_t nanoseconds) {
    const std::uint64_t value = nanoseconds < 0 ? 0 : static_cast<std::uint64_t>(nanoseconds);
    ++counts_[bucket_of(value)];
    ++total_;
    sum_ += static_cast<double>(value);
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
  }

  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const { return total_; }
  std::uint64_t min() const { return total_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ == 0 ? 0 : sum_ / static_cast<double>(total_); }

  // The smallest recorded value (to bucket precision) that at least `quantile` of all values
  // are at or below.
  std::uint64_t value_at(double quantile) const {
    if (total_ == 0) return 0;
    const auto rank = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(quantile * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(bucket_middle(i), min_, max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBucketBits = 10;
  static constexpr std::uint64_t kSubBuckets = 1 << kSubBucketBits;
  static constexpr int kMaxShift = 36;  // top bucket starts near 2^47 ns, about 39 hours
  static constexpr std::size_t kBucketCount = (kMaxShift + 2) * kSubBuckets;

  static std::size_t bucket_of(std::uint64_t value) {
    if (value < 2 * kSubBuckets) return value;
    const int shift = std::bit_width(value) - (kSubBucketBits + 1);  // value >> shift: [1024, 2048)
    if (shift > kMaxShift) return kBucketCount - 1;
    return static_cast<std::size_t>(shift) * kSubBuckets + (value >> shift);
  }

  static std::uint64_t bucket_middle(std::size_t bucket) {
    if (bucket < 2 * kSubBuckets) return bucket;
    const std::size_t shift = bucket / kSubBuckets - 1;
    const std::uint64_t low = (bucket - shift * kSubBuckets) << shift;
    return low + ((std::uint64_t{1} << shift) - 1) / 2;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Statistics: one per I/O thread, merged at the end, so the hot path shares nothing.

// The final fate of one message in --ack-log mode. The message id and conversation follow from
// (connection, sequence), so they are rebuilt when the log is written rather than kept here.
struct Outcome {
  std::uint32_t connection = 0;
  std::uint64_t sequence = 0;
  std::uint64_t conversation = 0;
  std::uint64_t seq = 0;  // the acknowledged sequence number; 0 when unknown
  std::uint32_t attempts = 0;
  bool acknowledged = false;
  std::string detail;  // why the outcome is unknown: the last failure
};

struct RunStats {
  std::uint64_t warmup_sent = 0;
  std::uint64_t sent = 0;  // measured requests written
  std::uint64_t accepted = 0;
  std::map<std::string, std::uint64_t, std::less<>> errors;
  std::map<int, std::string> first_error_body;  // per HTTP status, to show why
  LatencyHistogram latency;                     // of accepted requests
  std::optional<Clock::time_point> last_measured_answer;
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

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 response head parser. Enough for the frontend (Beast, string bodies, always
// Content-Length); anything else is reported as a bad response rather than guessed at.

struct ResponseHead {
  enum class State { kIncomplete, kBad, kComplete };
  State state = State::kIncomplete;
  int status = 0;
  std::size_t head_bytes = 0;  // through the blank line
  std::size_t content_length = 0;
  bool close = false;  // the server ends the connection after this answer
};

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;  // b is lower case
  return true;
}

bool contains_ignoring_case(std::string_view haystack, std::string_view needle) {
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i)
    if (equals_ignoring_case(haystack.substr(i, needle.size()), needle)) return true;
  return false;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

ResponseHead parse_response_head(std::string_view data) {
  ResponseHead head;
  const auto end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) return head;
  head.state = ResponseHead::State::kBad;
  head.head_bytes = end + 4;
  const std::string_view lines = data.substr(0, end);
  // "HTTP/1.1 202 Accepted"
  if (lines.size() < 12 || lines.substr(0, 7) != "HTTP/1." || lines[8] != ' ') return head;
  if (!parse_number<int>(lines.substr(9, 3), 100, 599, head.status)) return head;
  head.close = lines[7] == '0';  // HTTP/1.0 closes unless it says keep-alive

  bool has_length = false;
  auto line_end = lines.find("\r\n");
  while (line_end != std::string_view::npos) {
    const std::size_t start = line_end + 2;
    line_end = lines.find("\r\n", start);
    const std::string_view line = lines.substr(
        start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return head;
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (equals_ignoring_case(name, "content-length")) {
      if (!parse_number<std::size_t>(value, 0, kMaxContentLength, head.content_length)) return head;
      has_length = true;
    } else if (equals_ignoring_case(name, "transfer-encoding")) {
      if (!equals_ignoring_case(value, "identity")) return head;  // chunked: not expected here
    } else if (equals_ignoring_case(name, "connection")) {
      if (contains_ignoring_case(value, "close"))
        head.close = true;
      else if (contains_ignoring_case(value, "keep-alive"))
        head.close = false;
    }
  }
  const bool bodiless = head.status < 200 || head.status == 204 || head.status == 304;
  if (!has_length && !bodiless) return head;  // the body would end at close: not supported
  head.state = ResponseHead::State::kComplete;
  return head;
}

// ---------------------------------------------------------------------------------------------
// The plan every connection follows. Read-only during the run except for the two atomics.

struct Plan {
  tcp::endpoint endpoint;
  Target target;             // with https, each connection makes a TLS session from target.tls
  std::string request_head;  // request line and fixed headers, up to Content-Length
  std::string run_id;
  std::uint32_t connections = 0;
  std::uint64_t conversations = 0;
  std::vector<std::string> conversation_ids;  // `conversations` of them, made before the run
  double rate = 0;
  double ns_per_message = 0;  // open loop: 1e9 / rate
  std::uint64_t message_cap = 0;
  Clock::duration request_timeout{};
  Clock::time_point start, warmup_end, send_end, drain_end;
  bool ack_mode = false;           // --ack-log: retry, and record outcomes
  Clock::duration retry_window{};  // per message, from its first attempt
  std::uint32_t retry_attempts = 0;
  std::atomic<std::uint64_t> claimed{0};  // messages started, for --messages
  std::atomic<bool> stop_requested{false};
};

class Worker;

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

  // Failures where the message may yet be stored, or not at all, so that sending it again
  // under the same message_id is both safe and needed; and 429, which stored nothing and asks
  // for exactly that, later.
  static bool retryable_status(int status) {
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
  }

  Clock::duration retry_backoff() const {
    const int doublings = std::min<int>(attempts_ > 0 ? attempts_ - 1 : 0, 10);
    return std::min<Clock::duration>(kFirstBackoff * (1 << doublings), kMaxBackoff);
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
    timer_.expires_after(retry_backoff());
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

// One I/O thread: its own io_context, connections and statistics.
class Worker {
 public:
  explicit Worker(Plan& plan) : io_(1), drain_timer_(io_), sweep_timer_(io_), plan_(plan) {}

  void add_connection(std::uint32_t index) {
    connections_.push_back(std::make_unique<Connection>(io_, plan_, stats_, *this, index));
  }

  // Runs until every connection has finished; the drain deadline bounds that.
  void run() {
    live_connections_ = connections_.size();
    if (live_connections_ == 0) return;
    arm_drain(plan_.drain_end);  // before start(): a connection may finish at once
    arm_sweep();
    for (auto& connection : connections_) connection->start();
    io_.run();
  }

  // Any thread: end sooner (Ctrl-C). Sending has already stopped by plan_.stop_requested.
  void hurry(Clock::time_point drain_by) {
    asio::post(io_, [this, drain_by] {
      if (live_connections_ > 0 && drain_by < drain_timer_.expiry()) arm_drain(drain_by);
    });
  }

  void connection_finished() {
    if (--live_connections_ > 0) return;
    drain_timer_.cancel();
    sweep_timer_.cancel();
  }

  const RunStats& stats() const { return stats_; }

 private:
  void arm_drain(Clock::time_point deadline) {
    drain_timer_.expires_at(deadline);
    drain_timer_.async_wait([this](const ErrorCode& error) {
      if (error) return;  // cancelled: everyone finished, or re-armed for sooner
      for (auto& connection : connections_) connection->abort();
    });
  }

  void arm_sweep() {
    sweep_timer_.expires_after(kSweepInterval);
    sweep_timer_.async_wait([this](const ErrorCode& error) {
      // Cancelled, or expired just as the last connection finished: nothing left to watch.
      if (error || live_connections_ == 0) return;
      const Clock::time_point now = Clock::now();
      for (auto& connection : connections_) connection->expire_if_overdue(now);
      arm_sweep();
    });
  }

  asio::io_context io_;  // first: outlives the sockets and timers below
  asio::steady_timer drain_timer_;
  asio::steady_timer sweep_timer_;
  Plan& plan_;
  RunStats stats_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::size_t live_connections_ = 0;
};

void Connection::finish() {
  if (finished_) return;
  settle(false, 0, last_error_.empty() ? "stopped" : last_error_);
  finished_ = true;
  aborted_ = true;  // nothing of this connection runs again
  close_socket();
  worker_.connection_finished();
}

// ---------------------------------------------------------------------------------------------
// Setup

std::string new_run_id() {
  std::random_device entropy;
  const std::uint64_t bits = (std::uint64_t{entropy()} << 32) ^ entropy();
  char text[16];
  std::snprintf(text, sizeof text, "r%08llx", static_cast<unsigned long long>(bits & 0xffffffff));
  return text;
}

// Every connection is a file descriptor; ask for enough of them.
void raise_open_file_limit(std::uint64_t needed) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  limit.rlim_cur = std::min<rlim_t>(needed, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
}

// One line per message, each connection's messages in the order it sent them, which with one
// request in flight is also the order of their acknowledgements. The format is
// tools/fault/ack_log.h's.
void write_ack_log(std::ostream& out, const std::string& run_id,
                   const std::vector<std::string>& conversations, std::vector<Outcome>& outcomes) {
  std::sort(outcomes.begin(), outcomes.end(), [](const Outcome& a, const Outcome& b) {
    return std::tie(a.connection, a.sequence) < std::tie(b.connection, b.sequence);
  });
  out << "# chat4all ack log v1 run=" << run_id << " conversations=" << conversations.size() << "\n"
      << "# session\tindex\tconversation_id\tmessage_id\toutcome\tseq\tattempts\tdetail\n";
  for (const auto& outcome : outcomes) {
    out << outcome.connection << '\t' << outcome.sequence << '\t'
        << conversations[outcome.conversation] << '\t' << run_id << '-' << outcome.connection << '-'
        << outcome.sequence << '\t' << (outcome.acknowledged ? "ack" : "unknown") << '\t'
        << outcome.seq << '\t' << outcome.attempts << '\t'
        << (outcome.detail.empty() ? "-" : outcome.detail) << '\n';
  }
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& time) { return time.tv_sec + time.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double to_seconds(Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Milliseconds, rounded to 0.1 microsecond.
double to_ms(std::uint64_t nanoseconds) {
  return std::round(nanoseconds / 100.0) / 1e4;
}

// ---------------------------------------------------------------------------------------------

int run(int argc, char** argv) {
  Options options;
  CLI::App app("", "chat4all-http-load");
  define_load_options(app, options);
  if (auto exit_status = parse_command_line(app, argc, argv)) return *exit_status;
  std::string url_error;
  auto target = parse_url(options.url, url_error);
  if (!target) {
    std::fprintf(stderr, "chat4all-http-load: %s\n", url_error.c_str());
    return 2;
  }
  if (target->https && !options.cacert.empty()) {
    try {
      use_tls(*target, options.cacert);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "chat4all-http-load: %s\n", error.what());
      return 2;
    }
  }
  options.threads = std::min(options.threads, options.connections);

  Plan plan;
  plan.target = *target;
  Token token;
  try {
    plan.endpoint = resolve(*target);
    std::fprintf(stderr, "chat4all-http-load: creating users %s, %s and %llu conversations\n",
                 options.user.c_str(), options.peer.c_str(),
                 static_cast<unsigned long long>(options.conversations));
    token =
        prepare_users(plan.endpoint, *target,
                      Credentials{options.tenant, options.client_id, options.client_secret, true},
                      options.user, options.peer, options.password);
    for (std::uint64_t i = 0; i < options.conversations; ++i)
      plan.conversation_ids.push_back(create_group(plan.endpoint, *target, token, options.peer));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chat4all-http-load: %s\n", error.what());
    return 1;
  }
  const double run_s = options.warmup_s + options.duration_s;
  if (token.expires_in_s > 0 && run_s > static_cast<double>(token.expires_in_s))
    std::fprintf(stderr,
                 "chat4all-http-load: warning: the token expires after %lld s; later "
                 "requests will get 401\n",
                 static_cast<long long>(token.expires_in_s));

  raise_open_file_limit(options.connections + 64);
  plan.run_id = new_run_id();
  plan.request_head = "POST /v1/messages HTTP/1.1\r\nHost: " + target->host_header +
                      "\r\nAuthorization: Bearer " + token.access_token +
                      "\r\nContent-Type: application/json\r\n";
  plan.connections = options.connections;
  plan.conversations = options.conversations;
  plan.rate = options.rate;
  plan.ns_per_message = options.rate > 0 ? 1e9 / options.rate : 0;
  plan.message_cap = options.messages;
  plan.request_timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
  plan.ack_mode = !options.ack_log.empty();
  plan.retry_window =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.retry_s));
  plan.retry_attempts = options.retry_attempts;
  // Fail before the run rather than lose its outcomes after it.
  std::ofstream ack_log;
  if (plan.ack_mode) {
    ack_log.open(options.ack_log, std::ios::out | std::ios::trunc);
    if (!ack_log) {
      std::fprintf(stderr, "chat4all-http-load: cannot write %s\n", options.ack_log.c_str());
      return 2;
    }
  }

  std::vector<std::unique_ptr<Worker>> workers;
  for (std::uint32_t i = 0; i < options.threads; ++i)
    workers.push_back(std::make_unique<Worker>(plan));
  for (std::uint32_t i = 0; i < options.connections; ++i)
    workers[i % options.threads]->add_connection(i);

  char mode[64] = "closed loop";
  if (options.rate > 0) std::snprintf(mode, sizeof mode, "open loop at %.6g msgs/s", options.rate);
  std::fprintf(stderr,
               "chat4all-http-load: run %s, %s as %s, %u connections, %u I/O threads, %llu "
               "conversations, %s, warmup %.3g s + %.3g s\n",
               plan.run_id.c_str(), options.url.c_str(), options.user.c_str(), options.connections,
               options.threads, static_cast<unsigned long long>(options.conversations), mode,
               options.warmup_s, options.duration_s);

  // Ctrl-C and SIGTERM go to this thread alone (workers inherit the mask), which stops the
  // sending and still prints the summary. A second one ends the process at once.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const double cpu_before = cpu_seconds();
  plan.start = Clock::now();
  plan.warmup_end = plan.start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.warmup_s));
  plan.send_end = plan.warmup_end + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options.duration_s));
  // Every request written before send_end gets its full timeout before the drain cuts it.
  plan.drain_end = plan.send_end + plan.request_timeout + 2 * kSweepInterval;
  // A message first sent just before send_end may retry for its whole window.
  if (plan.ack_mode) plan.drain_end += plan.retry_window + kMaxBackoff;

  std::atomic<std::uint32_t> running{static_cast<std::uint32_t>(workers.size())};
  std::vector<std::thread> threads;
  for (auto& worker : workers)
    threads.emplace_back([&worker, &running] {
      worker->run();
      running.fetch_sub(1);
    });

  bool interrupted = false;
  Clock::time_point sending_stopped = plan.send_end;
  while (running.load() > 0) {
    const timespec poll{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &poll) < 0) continue;  // timeout or EINTR
    if (interrupted) std::_Exit(130);
    interrupted = true;
    std::fprintf(stderr, "chat4all-http-load: stopping; collecting answers in flight\n");
    plan.stop_requested.store(true);
    sending_stopped = std::min(sending_stopped, Clock::now());
    for (auto& worker : workers) worker->hurry(Clock::now() + plan.request_timeout);
  }
  for (auto& thread : threads) thread.join();
  const Clock::time_point finished = Clock::now();
  const double cpu_used = cpu_seconds() - cpu_before;

  RunStats total;
  for (const auto& worker : workers) total.merge(worker->stats());

  // The measured window: from the end of the warmup to the last measured answer.
  const Clock::time_point window_end =
      total.last_measured_answer.value_or(std::min(finished, sending_stopped));
  const double duration_s = std::max(0.0, to_seconds(window_end - plan.warmup_end));
  const double msgs_per_s = duration_s > 0 ? total.accepted / duration_s : 0;
  std::uint64_t error_count = 0;
  for (const auto& [kind, count] : total.errors) error_count += count;
  std::uint64_t scheduled = 0;  // open loop: messages due inside the measured window
  if (options.rate > 0)
    scheduled = static_cast<std::uint64_t>(std::ceil(run_s * options.rate) -
                                           std::ceil(options.warmup_s * options.rate));
  const LatencyHistogram& latency = total.latency;

  std::fprintf(stderr, "\n");
  std::fprintf(stderr,
               "  measured   %.3f s after %.3g s warmup (%llu warmup requests left out)%s\n",
               duration_s, options.warmup_s, static_cast<unsigned long long>(total.warmup_sent),
               interrupted ? ", interrupted" : "");
  std::fprintf(stderr, "  sent       %llu", static_cast<unsigned long long>(total.sent));
  if (options.rate > 0)
    std::fprintf(stderr, " of %llu scheduled at %.6g msgs/s",
                 static_cast<unsigned long long>(scheduled), options.rate);
  std::fprintf(stderr, "\n  accepted   %llu (202), %.1f msgs/s\n",
               static_cast<unsigned long long>(total.accepted), msgs_per_s);
  std::fprintf(stderr, "  errors     %llu\n", static_cast<unsigned long long>(error_count));
  std::uint64_t acknowledged = 0;
  for (const auto& outcome : total.outcomes) acknowledged += outcome.acknowledged ? 1 : 0;
  if (plan.ack_mode) {
    write_ack_log(ack_log, plan.run_id, plan.conversation_ids, total.outcomes);
    ack_log.close();
    if (!ack_log)
      std::fprintf(stderr, "chat4all-http-load: writing %s failed\n", options.ack_log.c_str());
    std::fprintf(stderr,
                 "  messages   %llu: %llu acknowledged, %llu unknown, %llu retries; outcomes in "
                 "%s\n",
                 static_cast<unsigned long long>(total.outcomes.size()),
                 static_cast<unsigned long long>(acknowledged),
                 static_cast<unsigned long long>(total.outcomes.size() - acknowledged),
                 static_cast<unsigned long long>(total.retries), options.ack_log.c_str());
  }
  for (const auto& [kind, count] : total.errors) {
    std::fprintf(stderr, "    %-20s %llu\n", kind.c_str(), static_cast<unsigned long long>(count));
    if (kind.rfind("http_", 0) == 0) {
      const auto sample = total.first_error_body.find(std::atoi(kind.c_str() + 5));
      if (sample != total.first_error_body.end())
        std::fprintf(stderr, "      first answer: %s\n", sample->second.c_str());
    }
  }
  std::fprintf(stderr,
               "  latency ms %s min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
               "mean %.3f\n",
               options.rate > 0 ? "(from due time)" : "(from send)", to_ms(latency.min()),
               to_ms(latency.value_at(0.5)), to_ms(latency.value_at(0.9)),
               to_ms(latency.value_at(0.99)), to_ms(latency.value_at(0.999)), to_ms(latency.max()),
               latency.mean() / 1e6);
  std::fprintf(stderr, "  generator  %.2f s CPU in %.2f s wall (%.0f%% of one core)\n\n", cpu_used,
               to_seconds(finished - plan.start),
               100 * cpu_used / std::max(1e-9, to_seconds(finished - plan.start)));

  // Keys in a fixed order, the headline figures first.
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [kind, count] : total.errors) errors[kind] = count;
  nlohmann::ordered_json result = {
      {"sent", total.sent},
      {"accepted", total.accepted},
      {"errors", errors},
      {"duration_s", std::round(duration_s * 1000) / 1000},
      {"msgs_per_s", std::round(msgs_per_s * 10) / 10},
      {"p50_ms", to_ms(latency.value_at(0.5))},
      {"p90_ms", to_ms(latency.value_at(0.9))},
      {"p99_ms", to_ms(latency.value_at(0.99))},
      {"p999_ms", to_ms(latency.value_at(0.999))},
      {"max_ms", to_ms(latency.max())},
      {"mean_ms", std::round(latency.mean() / 100) / 1e4},
      {"connections", options.connections},
      {"conversations", options.conversations},
      {"rate", options.rate},
      {"scheduled", scheduled},
      {"warmup_s", options.warmup_s},
      {"timeout_s", options.timeout_s},
      {"threads", options.threads},
      {"run_id", plan.run_id},
      {"generator_cpu_s", std::round(cpu_used * 100) / 100},
      {"interrupted", interrupted},
  };
  if (plan.ack_mode) {
    result["messages"] = total.outcomes.size();
    result["acknowledged"] = acknowledged;
    result["unknown"] = total.outcomes.size() - acknowledged;
    result["retries"] = total.retries;
    result["ack_log"] = options.ack_log;
  }
  std::cout << result.dump() << std::endl;
  return total.accepted > 0 ? 0 : 1;
}

}  // namespace
}  // namespace chat4all::bench

int main(int argc, char** argv) {
  return chat4all::bench::run(argc, argv);
}
