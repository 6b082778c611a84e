// The connector host's parts: the circuit breaker (nodes/connector/circuit_breaker.h) and the
// inbound webhook server (nodes/connector/inbound_http.h), the latter with a raw socket client
// on loopback so that what goes over the wire is exactly what the test wrote.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "nodes/connector/circuit_breaker.h"
#include "nodes/connector/inbound_http.h"

namespace chat4all::connector {
namespace {

using State = CircuitBreaker::State;

// --- Circuit breaker ------------------------------------------------------------------------

TEST(CircuitBreakerTest, ClosedAllowsAndASuccessResetsTheFailureRun) {
  CircuitBreaker breaker(3, 1000);
  EXPECT_EQ(breaker.state(0), State::kClosed);
  EXPECT_TRUE(breaker.allow(0));
  breaker.on_failure(1);
  breaker.on_failure(2);
  EXPECT_EQ(breaker.consecutive_failures(), 2u);
  breaker.on_success(3);
  EXPECT_EQ(breaker.consecutive_failures(), 0u);
  breaker.on_failure(4);
  breaker.on_failure(5);
  EXPECT_EQ(breaker.state(5), State::kClosed);
  EXPECT_TRUE(breaker.allow(5));
  EXPECT_FALSE(breaker.probe_out());
}

TEST(CircuitBreakerTest, ConsecutiveFailuresOpenItUntilTheProbeTime) {
  CircuitBreaker breaker(3, 1000);
  breaker.on_failure(10);
  breaker.on_failure(20);
  breaker.on_failure(30);
  EXPECT_EQ(breaker.state(30), State::kOpen);
  EXPECT_EQ(breaker.next_probe_at_ms(), 1030);
  EXPECT_EQ(breaker.open_period_ms(), 1000);
  EXPECT_FALSE(breaker.allow(30));
  EXPECT_FALSE(breaker.allow(1029));
  EXPECT_EQ(breaker.state(1029), State::kOpen);
  EXPECT_EQ(breaker.state(1030), State::kHalfOpen);
}

TEST(CircuitBreakerTest, HalfOpenLetsExactlyOneProbeThrough) {
  CircuitBreaker breaker(1, 1000);
  breaker.on_failure(0);
  EXPECT_TRUE(breaker.allow(1000));
  EXPECT_TRUE(breaker.probe_out());
  EXPECT_EQ(breaker.state(1000), State::kHalfOpen);
  for (std::int64_t now = 1000; now < 100'000; now += 997) EXPECT_FALSE(breaker.allow(now));
  EXPECT_EQ(breaker.state(100'000), State::kHalfOpen);
}

TEST(CircuitBreakerTest, ProbeSuccessClosesAndStartsAFreshFailureRun) {
  CircuitBreaker breaker(2, 1000);
  breaker.on_failure(0);
  breaker.on_failure(0);
  ASSERT_TRUE(breaker.allow(1000));
  breaker.on_failure(1100);  // the probe failed: open for 2000
  ASSERT_TRUE(breaker.allow(3100));
  breaker.on_success(3200);
  EXPECT_EQ(breaker.state(3200), State::kClosed);
  EXPECT_FALSE(breaker.probe_out());
  EXPECT_EQ(breaker.consecutive_failures(), 0u);
  EXPECT_EQ(breaker.open_period_ms(), 1000);
  EXPECT_TRUE(breaker.allow(3200));
  breaker.on_failure(3300);
  EXPECT_EQ(breaker.state(3300), State::kClosed);  // one failure of two
  breaker.on_failure(3400);
  EXPECT_EQ(breaker.state(3400), State::kOpen);
  EXPECT_EQ(breaker.next_probe_at_ms(), 4400);  // back to open_ms, not doubled
}

TEST(CircuitBreakerTest, ProbeFailuresDoubleTheOpenPeriodUpToSixteenTimes) {
  CircuitBreaker breaker(1, 1000);
  std::int64_t now = 0;
  breaker.on_failure(now);
  std::vector<std::int64_t> periods{breaker.open_period_ms()};
  for (int probe = 0; probe < 7; ++probe) {
    now = breaker.next_probe_at_ms();
    ASSERT_FALSE(breaker.allow(now - 1));
    ASSERT_TRUE(breaker.allow(now));
    now += 50;
    breaker.on_failure(now);
    ASSERT_EQ(breaker.state(now), State::kOpen);
    ASSERT_EQ(breaker.next_probe_at_ms(), now + breaker.open_period_ms());
    periods.push_back(breaker.open_period_ms());
  }
  EXPECT_EQ(periods,
            (std::vector<std::int64_t>{1000, 2000, 4000, 8000, 16000, 16000, 16000, 16000}));
}

TEST(CircuitBreakerTest, AnAbandonedProbeFreesTheSlot) {
  CircuitBreaker breaker(1, 1000);
  breaker.on_failure(0);
  ASSERT_TRUE(breaker.allow(1000));
  ASSERT_FALSE(breaker.allow(1001));
  breaker.on_abandoned();
  EXPECT_FALSE(breaker.probe_out());
  EXPECT_EQ(breaker.state(1002), State::kHalfOpen);
  EXPECT_EQ(breaker.open_period_ms(), 1000);  // no verdict: no doubling
  EXPECT_TRUE(breaker.allow(1002));
  EXPECT_FALSE(breaker.allow(1003));
  breaker.on_success(1004);
  EXPECT_EQ(breaker.state(1004), State::kClosed);
  // In closed, an abandoned send changes nothing.
  breaker.on_failure(1005);
  breaker.on_abandoned();
  EXPECT_EQ(breaker.state(1006), State::kOpen);
}

TEST(CircuitBreakerTest, VerdictsWhileOpenWithoutAProbeAreIgnored) {
  CircuitBreaker breaker(1, 1000);
  breaker.on_failure(0);
  breaker.on_success(10);  // a send allowed before it opened
  EXPECT_EQ(breaker.state(10), State::kOpen);
  breaker.on_failure(20);
  EXPECT_EQ(breaker.next_probe_at_ms(), 1000);
  EXPECT_EQ(breaker.open_period_ms(), 1000);
  // Past the open period but before anyone asked: still no probe, still ignored.
  breaker.on_success(1500);
  EXPECT_EQ(breaker.state(1500), State::kHalfOpen);
  breaker.on_failure(1500);
  EXPECT_EQ(breaker.next_probe_at_ms(), 1000);
}

TEST(CircuitBreakerTest, ZeroSettingsActAsOne) {
  CircuitBreaker breaker(0, 0);
  EXPECT_EQ(breaker.failures_to_open(), 1u);
  EXPECT_EQ(breaker.open_ms(), 1);
  breaker.on_failure(5);
  EXPECT_EQ(breaker.state(5), State::kOpen);
  EXPECT_TRUE(breaker.allow(6));
}

TEST(CircuitBreakerTest, StateNames) {
  EXPECT_STREQ(CircuitBreaker::state_name(State::kClosed), "closed");
  EXPECT_STREQ(CircuitBreaker::state_name(State::kOpen), "open");
  EXPECT_STREQ(CircuitBreaker::state_name(State::kHalfOpen), "half_open");
  CircuitBreaker breaker(1, 10);
  breaker.on_failure(0);
  EXPECT_STREQ(breaker.state_name(5), "open");
  EXPECT_STREQ(breaker.state_name(10), "half_open");
}

// A host driving the breaker through a long random run: sends start when allowed, each ends
// after a random time (below open_ms, as the header's contract asks) in a success, a failure or
// an abandonment, and the platform goes down and comes back now and then. After every step the
// invariants hold: at most one probe out; nothing allowed while open; the open period a power
// of two times open_ms, at most 16 times.
TEST(CircuitBreakerTest, RandomRunKeepsTheInvariants) {
  constexpr std::uint64_t kSeed = 20240611;
  constexpr std::int64_t kOpenMs = 100;
  constexpr std::int64_t kSendMsMax = 80;
  std::mt19937_64 random(kSeed);
  auto below = [&](std::uint64_t n) { return static_cast<std::int64_t>(random() % n); };

  struct Send {
    std::int64_t ends_at_ms;
    bool probe;
  };
  CircuitBreaker breaker(3, kOpenMs);
  std::vector<Send> sends;
  bool platform_up = true;
  std::int64_t now = 0;
  int opened = 0, closed_by_probe = 0, reopened = 0, abandoned_probes = 0, capped = 0;
  for (int step = 0; step < 200'000; ++step) {
    SCOPED_TRACE("seed " + std::to_string(kSeed) + " step " + std::to_string(step));
    now += below(20);
    if (below(500) == 0) platform_up = !platform_up;

    // Sends that have ended report, in the order they end.
    std::sort(sends.begin(), sends.end(),
              [](const Send& a, const Send& b) { return a.ends_at_ms < b.ends_at_ms; });
    while (!sends.empty() && sends.front().ends_at_ms <= now) {
      const Send send = sends.front();
      sends.erase(sends.begin());
      const State before = breaker.state(now);
      const std::int64_t roll = below(100);
      if (roll < 5) {
        breaker.on_abandoned();
        if (send.probe) ++abandoned_probes;
      } else if (platform_up ? roll < 90 : roll < 10) {
        breaker.on_success(now);
        if (send.probe && breaker.state(now) == State::kClosed) ++closed_by_probe;
      } else {
        breaker.on_failure(now);
        if (before == State::kClosed && breaker.state(now) == State::kOpen) ++opened;
        if (send.probe) ++reopened;
      }
    }

    // New sends.
    for (std::int64_t attempts = below(4); attempts > 0; --attempts) {
      const State before = breaker.state(now);
      const bool allowed = breaker.allow(now);
      if (before == State::kOpen) {
        ASSERT_FALSE(allowed) << "allowed while open";
      }
      if (!allowed) continue;
      sends.push_back({now + 1 + below(kSendMsMax), before != State::kClosed});
    }

    int probes_out = 0;
    for (const Send& send : sends) probes_out += send.probe ? 1 : 0;
    ASSERT_LE(probes_out, 1) << "two probes at once";
    ASSERT_EQ(breaker.probe_out(), probes_out == 1);
    const State state = breaker.state(now);
    if (state == State::kClosed) {
      ASSERT_FALSE(breaker.probe_out());
    } else {
      ASSERT_LE(breaker.next_probe_at_ms(), now + 16 * kOpenMs);
    }
    if (state == State::kOpen) {
      ASSERT_GT(breaker.next_probe_at_ms(), now);
    }
    const std::int64_t period = breaker.open_period_ms();
    ASSERT_TRUE(period == kOpenMs || period == 2 * kOpenMs || period == 4 * kOpenMs ||
                period == 8 * kOpenMs || period == 16 * kOpenMs)
        << period;
    if (period == 16 * kOpenMs) ++capped;
    ASSERT_LE(breaker.consecutive_failures(), 3u);
  }
  // The run went through every transition, many times.
  EXPECT_GT(opened, 100);
  EXPECT_GT(closed_by_probe, 100);
  EXPECT_GT(reopened, 100);
  EXPECT_GT(abandoned_probes, 10);
  EXPECT_GT(capped, 0);
}

// --- Inbound webhook server -----------------------------------------------------------------

constexpr int kWaitMs = 5000;  // bound on every wait for the server; never reached when it works

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A blocking loopback client on a raw socket, every read bounded by a deadline.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // The next response (Content-Length framed, as the server always sends), or nullopt when the
  // connection ended or nothing came in time.
  std::optional<RawResponse> read_response(int timeout_ms = kWaitMs) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    std::size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return std::nullopt;
    RawResponse response;
    const std::string head = buffer_.substr(0, head_end + 2);
    if (head.rfind("HTTP/1.", 0) != 0 || head.size() < 12) return std::nullopt;
    response.status = std::stoi(head.substr(9, 3));
    std::size_t line = head.find("\r\n") + 2;
    while (line < head.size()) {
      const std::size_t end = head.find("\r\n", line);
      const std::string field = head.substr(line, end - line);
      const std::size_t colon = field.find(':');
      std::string name = field.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::size_t value_start = colon + 1;
      while (value_start < field.size() && field[value_start] == ' ') ++value_start;
      response.headers[name] = field.substr(value_start);
      line = end + 2;
    }
    const std::size_t length = std::stoul(response.headers["content-length"]);
    while (buffer_.size() < head_end + 4 + length)
      if (!fill(deadline)) return std::nullopt;
    response.body = buffer_.substr(head_end + 4, length);
    buffer_.erase(0, head_end + 4 + length);
    return response;
  }

  // True when the server closed the connection (end of stream or reset) within the timeout
  // and sent nothing more before that.
  bool closed_by_server(int timeout_ms = kWaitMs) {
    if (!buffer_.empty()) return false;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const int left_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (left_ms <= 0) return false;
      pollfd readable{fd_, POLLIN, 0};
      if (::poll(&readable, 1, left_ms) <= 0) continue;
      char byte;
      const ssize_t n = ::recv(fd_, &byte, 1, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      return false;
    }
  }

 private:
  using Clock = std::chrono::steady_clock;

  bool fill(Clock::time_point deadline) {
    const int left_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left_ms <= 0) return false;
    pollfd readable{fd_, POLLIN, 0};
    if (::poll(&readable, 1, left_ms) <= 0) return false;
    char chunk[16 * 1024];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string post(const std::string& target, const std::string& body,
                 const std::string& extra_headers = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: connector\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Waits (bounded) for a condition the server reaches on its own thread.
bool eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Keeps the `respond` callbacks a handler did not call yet.
class HeldAnswers {
 public:
  void hold(InboundHttpServer::Respond respond) {
    std::lock_guard lock(mutex_);
    held_.push_back(std::move(respond));
    if (held_.size() == 1) first_.set_value();
  }
  bool wait_first() {
    return first_future_.wait_for(std::chrono::milliseconds(kWaitMs)) == std::future_status::ready;
  }
  InboundHttpServer::Respond take(std::size_t i) {
    std::lock_guard lock(mutex_);
    return held_.at(i);
  }

 private:
  std::mutex mutex_;
  std::vector<InboundHttpServer::Respond> held_;
  std::promise<void> first_;
  std::future<void> first_future_ = first_.get_future();
};

TEST(InboundHttpServerTest, HandlerSeesTheRequestAndItsAnswerIsSent) {
  std::mutex mutex;
  std::optional<WebhookRequest> seen;
  InboundHttpServer server("127.0.0.1", 0, [&](WebhookRequest request, auto respond) {
    {
      std::lock_guard lock(mutex);
      seen = std::move(request);
    }
    respond(WebhookResponse{201, "application/json", R"({"ok":true})"});
  });
  ASSERT_NE(server.port(), 0);
  server.start();

  RawClient client(server.port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(
      client.send(post("/channels/whatsapp/webhook?hub.mode=subscribe&x=%20y", R"({"entry":[1]})",
                       "X-Hub-Signature-256: sha256=abc\r\nContent-Type: application/json\r\n"
                       "X-Repeated: a\r\nX-REPEATED: b\r\n")));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(response->headers["content-type"], "application/json");
  EXPECT_EQ(response->body, R"({"ok":true})");

  std::lock_guard lock(mutex);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->method, "POST");
  EXPECT_EQ(seen->target, "/channels/whatsapp/webhook?hub.mode=subscribe&x=%20y");
  EXPECT_EQ(seen->header("x-hub-signature-256"), "sha256=abc");
  EXPECT_EQ(seen->header("content-type"), "application/json");
  EXPECT_EQ(seen->header("host"), "connector");
  EXPECT_EQ(seen->header("x-repeated"), "a, b");
  EXPECT_EQ(seen->headers.count("X-Hub-Signature-256"), 0u);
  EXPECT_EQ(seen->body, R"({"entry":[1]})");
  EXPECT_EQ(server.requests(), 1u);
}

TEST(InboundHttpServerTest, AnswersFromAnotherThreadOnceEvenWhenRespondIsCalledTwice) {
  std::mutex mutex;
  std::vector<std::thread> answerers;
  InboundHttpServer server("127.0.0.1", 0, [&](WebhookRequest request, auto respond) {
    std::lock_guard lock(mutex);
    answerers.emplace_back([respond, target = request.target] {
      respond(WebhookResponse{202, "text/plain", "first " + target});
      respond(WebhookResponse{500, "text/plain", "second"});  // ignored
    });
  });
  server.start();

  RawClient client(server.port());
  for (const std::string target : {"/a", "/b"}) {
    ASSERT_TRUE(client.send(post(target, "")));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    // A stray second answer to /a would be the response read for /b.
    EXPECT_EQ(response->status, 202);
    EXPECT_EQ(response->body, "first " + target);
  }
  std::lock_guard lock(mutex);
  for (auto& answerer : answerers) answerer.join();
}

TEST(InboundHttpServerTest, KeepAliveAnswersPipelinedRequestsInOrder) {
  std::atomic<int> calls{0};
  InboundHttpServer server("127.0.0.1", 0, [&](WebhookRequest request, auto respond) {
    ++calls;
    respond(WebhookResponse{200, "text/plain", request.target + " " + request.body});
  });
  server.start();

  RawClient client(server.port());
  ASSERT_TRUE(client.send(post("/one", "1") + post("/two", "22") + post("/three", "333")));
  for (const std::string expected : {"/one 1", "/two 22", "/three 333"}) {
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, expected);
  }
  // Still open: one more on the same connection.
  ASSERT_TRUE(client.send(post("/four", "4")));
  auto fourth = client.read_response();
  ASSERT_TRUE(fourth);
  EXPECT_EQ(fourth->body, "/four 4");
  EXPECT_EQ(calls.load(), 4);
  EXPECT_EQ(server.open_connections(), 1);
}

TEST(InboundHttpServerTest, ConnectionCloseIsHonoured) {
  InboundHttpServer server("127.0.0.1", 0, [](WebhookRequest, auto respond) {
    respond(WebhookResponse{204, "", ""});
  });
  server.start();
  RawClient client(server.port());
  ASSERT_TRUE(client.send(post("/x", "", "Connection: close\r\n")));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 204);
  EXPECT_EQ(response->headers["connection"], "close");
  EXPECT_TRUE(client.closed_by_server());
}

TEST(InboundHttpServerTest, BodyOverTheLimitGets413AndTheConnectionCloses) {
  std::atomic<int> calls{0};
  InboundHttpLimits limits;
  limits.body_bytes_max = 1024;
  InboundHttpServer server(
      "127.0.0.1", 0,
      [&](WebhookRequest, auto respond) {
        ++calls;
        respond(WebhookResponse{});
      },
      limits);
  server.start();

  {  // by Content-Length, with the whole body sent anyway
    RawClient client(server.port());
    ASSERT_TRUE(client.send(post("/big", std::string(200'000, 'x'))));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_EQ(response->headers["content-type"], "application/json");
    EXPECT_NE(response->body.find("payload_too_large"), std::string::npos);
    EXPECT_TRUE(client.closed_by_server());
  }
  {  // chunked, growing past the limit
    RawClient client(server.port());
    ASSERT_TRUE(
        client.send("POST /big HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "800\r\n" +
                    std::string(0x800, 'y') + "\r\n0\r\n\r\n"));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 413);
    EXPECT_TRUE(client.closed_by_server());
  }
  {  // at the limit: fine
    RawClient client(server.port());
    ASSERT_TRUE(client.send(post("/fits", std::string(1024, 'z'))));
    auto response = client.read_response();
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
  }
  EXPECT_EQ(server.bodies_too_large(), 2u);
  EXPECT_EQ(calls.load(), 1);
}

TEST(InboundHttpServerTest, NotHttpGets400AndTheConnectionCloses) {
  std::atomic<int> calls{0};
  InboundHttpServer server("127.0.0.1", 0, [&](WebhookRequest, auto respond) {
    ++calls;
    respond(WebhookResponse{});
  });
  server.start();
  for (const std::string& garbage :
       {std::string("THIS IS NOT HTTP\r\n\r\n"), std::string("\x01\x02\x03 / HTTP/1.1\r\n\r\n"),
        std::string("POST /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n")}) {
    RawClient client(server.port());
    ASSERT_TRUE(client.send(garbage));
    auto response = client.read_response();
    ASSERT_TRUE(response) << garbage;
    EXPECT_EQ(response->status, 400);
    EXPECT_NE(response->body.find("bad_request"), std::string::npos);
    EXPECT_TRUE(client.closed_by_server());
  }
  EXPECT_EQ(server.bad_requests(), 3u);
  EXPECT_EQ(calls.load(), 0);
}

TEST(InboundHttpServerTest, HeadOverTheLimitGets431) {
  InboundHttpLimits limits;
  limits.header_bytes_max = 1024;
  InboundHttpServer server(
      "127.0.0.1", 0, [](WebhookRequest, auto respond) { respond(WebhookResponse{}); }, limits);
  server.start();
  RawClient client(server.port());
  ASSERT_TRUE(client.send(post("/x", "", "X-Long: " + std::string(4096, 'h') + "\r\n")));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(client.closed_by_server());
}

TEST(InboundHttpServerTest, HandlerThatThrowsGets500) {
  InboundHttpServer server("127.0.0.1", 0, [](WebhookRequest, auto) -> void {
    throw std::runtime_error("handler bug");
  });
  server.start();
  RawClient client(server.port());
  ASSERT_TRUE(client.send(post("/x", "")));
  auto response = client.read_response();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500);
}

TEST(InboundHttpServerTest, NoAnswerInTimeGets503AndTheLateAnswerIsDropped) {
  HeldAnswers held;
  InboundHttpLimits limits;
  limits.answer_timeout_ms = 100;
  InboundHttpServer server(
      "127.0.0.1", 0,
      [&](WebhookRequest request, auto respond) {
        if (request.target == "/slow") return held.hold(std::move(respond));
        respond(WebhookResponse{200, "text/plain", "fast"});
      },
      limits);
  server.start();

  RawClient client(server.port());
  ASSERT_TRUE(client.send(post("/slow", "")));
  auto timed_out = client.read_response();
  ASSERT_TRUE(timed_out);
  EXPECT_EQ(timed_out->status, 503);
  EXPECT_EQ(server.answer_timeouts(), 1u);

  held.take(0)(WebhookResponse{200, "text/plain", "late"});
  // The connection stays usable, and the late answer is not taken for the next request's.
  ASSERT_TRUE(client.send(post("/fast", "")));
  auto next = client.read_response();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, "fast");
}

TEST(InboundHttpServerTest, ConnectionsBeyondTheLimitAreClosedAtOnce) {
  InboundHttpLimits limits;
  limits.connections_max = 2;
  InboundHttpServer server(
      "127.0.0.1", 0, [](WebhookRequest, auto respond) { respond(WebhookResponse{}); }, limits);
  server.start();

  auto answered = [](RawClient& client) {
    if (!client.send(post("/x", ""))) return false;
    auto response = client.read_response();
    return response && response->status == 200;
  };
  auto first = std::make_unique<RawClient>(server.port());
  RawClient second(server.port());
  ASSERT_TRUE(answered(*first));
  ASSERT_TRUE(answered(second));

  RawClient third(server.port());
  EXPECT_TRUE(third.closed_by_server());
  EXPECT_EQ(server.rejected_connections(), 1u);

  first.reset();  // a slot frees once the server sees it closed
  ASSERT_TRUE(eventually([&] { return server.open_connections() < 2; }));
  RawClient fourth(server.port());
  EXPECT_TRUE(answered(fourth));
  EXPECT_EQ(server.rejected_connections(), 1u);
}

TEST(InboundHttpServerTest, SlowRequestsAndIdleConnectionsAreClosed) {
  InboundHttpLimits limits;
  limits.read_timeout_ms = 100;
  limits.idle_timeout_ms = 150;
  InboundHttpServer server(
      "127.0.0.1", 0, [](WebhookRequest, auto respond) { respond(WebhookResponse{}); }, limits);
  server.start();

  RawClient slow(server.port());
  ASSERT_TRUE(slow.send("POST /x HTTP/1.1\r\nHost: c\r\n"));  // and never the rest
  EXPECT_TRUE(slow.closed_by_server());
  // The stream closes the socket when its deadline passes, before the read's handler counts.
  EXPECT_TRUE(eventually([&] { return server.read_timeouts() == 1; }));

  RawClient idle(server.port());
  ASSERT_TRUE(idle.send(post("/x", "")));
  ASSERT_TRUE(idle.read_response());
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_EQ(server.read_timeouts(), 1u);  // idling between requests is no timeout of a request
}

TEST(InboundHttpServerTest, StopWithARequestWaitingReturnsPromptlyAndTheLateAnswerIsHarmless) {
  HeldAnswers held;
  auto server = std::make_unique<InboundHttpServer>(
      "127.0.0.1", 0,
      [&](WebhookRequest, InboundHttpServer::Respond respond) { held.hold(std::move(respond)); });
  server->start();

  RawClient client(server->port());
  ASSERT_TRUE(client.send(post("/pending", "")));
  ASSERT_TRUE(held.wait_first());

  const auto started = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_TRUE(client.closed_by_server());

  auto respond = held.take(0);
  respond(WebhookResponse{200, "text/plain", "after stop"});
  server->stop();  // idempotent
  server.reset();
  respond(WebhookResponse{200, "text/plain", "after destruction"});
}

TEST(InboundHttpServerTest, StopBeforeStartAndDestructionWithoutStop) {
  {
    InboundHttpServer never_started("127.0.0.1", 0, [](WebhookRequest, auto) {});
    never_started.stop();
  }
  {
    InboundHttpServer running("localhost", 0,
                              [](WebhookRequest, auto respond) { respond(WebhookResponse{}); });
    running.start();
    RawClient client(running.port());
    ASSERT_TRUE(client.send(post("/x", "")));
    ASSERT_TRUE(client.read_response());
  }  // the destructor stops it
}

}  // namespace
}  // namespace chat4all::connector
