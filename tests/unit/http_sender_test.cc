// Asynchronous HTTP POSTs on libcurl: nodes/connector/http_sender.h, against a scripted HTTP
// server on 127.0.0.1 in this process. Every wait is bounded; the server and the senders stop
// in their destructors, so a failing assertion leaves nothing running.
#include "nodes/connector/http_sender.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace chat4all::connector {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kWaitMax{3000};
constexpr int kPollSliceMs = 20;

struct ReceivedRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;

  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [key, value] : headers)
      if (key == name) return value;
    return std::nullopt;
  }
};

struct Reply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool never_answer = false;  // read the request, then say nothing until the client leaves
};

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// An HTTP/1.1 server on 127.0.0.1 (port chosen by the kernel) that answers each request as
// `script` says, one request per connection. Thread-safe; stops and joins in its destructor.
class ScriptedHttpServer {
 public:
  using Script = std::function<Reply(const ReceivedRequest& request, std::size_t index)>;

  explicit ScriptedHttpServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~ScriptedHttpServer() {
    stopping_ = true;
    acceptor_.join();
    std::vector<std::thread> connections;
    {
      std::lock_guard lock(mutex_);
      connections.swap(connections_);
    }
    for (auto& connection : connections) connection.join();
    ::close(listen_fd_);
  }

  std::uint16_t port() const { return port_; }
  std::string url(const std::string& target) const {
    return "http://127.0.0.1:" + std::to_string(port_) + target;
  }

  std::vector<ReceivedRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }

  bool wait_for_requests(std::size_t count) {
    std::unique_lock lock(mutex_);
    return received_.wait_for(lock, kWaitMax, [&] { return requests_.size() >= count; });
  }

 private:
  void accept_loop() {
    while (!stopping_) {
      pollfd waiting{listen_fd_, POLLIN, 0};
      if (::poll(&waiting, 1, kPollSliceMs) <= 0) continue;
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mutex_);
      connections_.emplace_back([this, fd] {
        serve(fd);
        ::close(fd);
      });
    }
  }

  // Reads into `buffer` until `done(buffer)` or the peer leaves or the server stops.
  template <typename Done>
  bool read_until(int fd, std::string& buffer, Done&& done) {
    char chunk[4096];
    while (!done(buffer)) {
      if (stopping_) return false;
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, kPollSliceMs) <= 0) continue;
      const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
      if (got <= 0) return false;
      buffer.append(chunk, static_cast<std::size_t>(got));
    }
    return true;
  }

  void serve(int fd) {
    std::string buffer;
    if (!read_until(fd, buffer, [](const std::string& b) { return b.find("\r\n\r\n") != b.npos; }))
      return;
    const std::size_t head_end = buffer.find("\r\n\r\n");
    ReceivedRequest request;
    std::size_t line_start = 0;
    std::size_t content_length = 0;
    while (line_start < head_end) {
      const std::size_t line_end = buffer.find("\r\n", line_start);
      const std::string line = buffer.substr(line_start, line_end - line_start);
      line_start = line_end + 2;
      if (request.method.empty()) {
        const std::size_t space = line.find(' ');
        request.method = line.substr(0, space);
        request.target = line.substr(space + 1, line.rfind(' ') - space - 1);
        continue;
      }
      const std::size_t colon = line.find(':');
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      request.headers.emplace_back(lower(line.substr(0, colon)), value);
      if (request.headers.back().first == "content-length") content_length = std::stoul(value);
    }
    buffer.erase(0, head_end + 4);
    if (!read_until(fd, buffer, [&](const std::string& b) { return b.size() >= content_length; }))
      return;
    request.body = buffer.substr(0, content_length);

    std::size_t index = 0;
    {
      std::lock_guard lock(mutex_);
      index = requests_.size();
      requests_.push_back(request);
    }
    received_.notify_all();
    const Reply reply = script_(request, index);
    if (reply.never_answer) {
      std::string ignored;
      read_until(fd, ignored, [](const std::string&) { return false; });
      return;
    }
    std::string response = "HTTP/1.1 " + std::to_string(reply.status) + " Scripted\r\n" +
                           "Content-Length: " + std::to_string(reply.body.size()) + "\r\n" +
                           "Connection: close\r\n";
    for (const auto& [name, value] : reply.headers) response += name + ": " + value + "\r\n";
    response += "\r\n" + reply.body;
    std::size_t sent = 0;
    while (sent < response.size() && !stopping_) {
      pollfd writable{fd, POLLOUT, 0};
      if (::poll(&writable, 1, kPollSliceMs) <= 0) continue;
      const ssize_t wrote =
          ::send(fd, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
      if (wrote <= 0) return;  // the client left (e.g. it stopped reading a long body)
      sent += static_cast<std::size_t>(wrote);
    }
  }

  Script script_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::condition_variable received_;
  std::vector<ReceivedRequest> requests_;  // guarded by mutex_
  std::vector<std::thread> connections_;   // guarded by mutex_
  std::thread acceptor_;
};

Reply answer(int status, std::vector<std::pair<std::string, std::string>> headers = {},
             std::string body = "") {
  Reply reply;
  reply.status = status;
  reply.headers = std::move(headers);
  reply.body = std::move(body);
  return reply;
}

Reply silence() {
  Reply reply;
  reply.never_answer = true;
  return reply;
}

// Submits `post` and waits (bounded) for its result. The promise is shared with the callback,
// so a callback arriving after a failed wait still has somewhere to write.
std::optional<HttpResult> post_and_wait(HttpSender& sender, HttpPost post) {
  auto promise = std::make_shared<std::promise<HttpResult>>();
  auto future = promise->get_future();
  if (!sender.submit(std::move(post),
                     [promise](HttpResult result) { promise->set_value(std::move(result)); }))
    return std::nullopt;
  if (future.wait_for(kWaitMax) != std::future_status::ready) return std::nullopt;
  return future.get();
}

HttpPost post_to(std::string url, std::string body = "{}") {
  HttpPost post;
  post.url = std::move(url);
  post.headers = {{"content-type", "application/json"}};
  post.body = std::move(body);
  post.timeout_ms = 2000;
  return post;
}

// A port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(HttpSenderTest, SendsHeadersAndBodyExactly) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return answer(204); });
  HttpSender sender(4, 16);
  // Binary-safe: a NUL byte and UTF-8, and larger than curl's 1 KiB "Expect: 100-continue"
  // threshold.
  std::string body = R"({"id":"evt_1","text":"olá ✓"})";
  body += std::string(1, '\0') + std::string(3000, 'x');
  HttpPost post = post_to(server.url("/hooks/a?x=1&y=2"), body);
  post.headers.emplace_back("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek");
  post.headers.emplace_back("webhook-timestamp", "1614265330");
  post.headers.emplace_back("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  post.headers.emplace_back("x-empty", "");

  const auto result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kNone) << result->error_message;
  EXPECT_EQ(result->status_code, 204);
  EXPECT_TRUE(result->response_body_prefix.empty());
  EXPECT_FALSE(result->retry_after_s);

  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  const ReceivedRequest& got = requests[0];
  EXPECT_EQ(got.method, "POST");
  EXPECT_EQ(got.target, "/hooks/a?x=1&y=2");
  EXPECT_EQ(got.body, body);
  EXPECT_EQ(got.header("content-type"), "application/json");
  EXPECT_EQ(got.header("content-length"), std::to_string(body.size()));
  EXPECT_EQ(got.header("webhook-id"), "msg_p5jXN8AQM9LWM0D4loKWxJek");
  EXPECT_EQ(got.header("webhook-timestamp"), "1614265330");
  EXPECT_EQ(got.header("webhook-signature"), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  EXPECT_EQ(got.header("x-empty"), "");
  EXPECT_EQ(got.header("host"), "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_FALSE(got.header("expect"));
}

TEST(HttpSenderTest, ReportsStatusesRetryAfterAndBodyPrefix) {
  ScriptedHttpServer server([](const ReceivedRequest& request, std::size_t) {
    if (request.target == "/busy") return answer(503, {{"Retry-After", "7"}}, "busy");
    if (request.target == "/slow-down") return answer(429, {{"Retry-After", "0"}});
    if (request.target == "/chatty") return answer(200, {}, std::string(2000, 'c'));
    if (request.target == "/endless") return answer(200, {}, std::string(1 << 20, 'e'));
    if (request.target == "/moved") return answer(302, {{"Location", "/elsewhere"}});
    return answer(404);
  });
  HttpSender sender(4, 16);

  auto result = post_and_wait(sender, post_to(server.url("/busy")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 503);
  EXPECT_EQ(result->retry_after_s, 7u);
  EXPECT_EQ(result->response_body_prefix, "busy");

  result = post_and_wait(sender, post_to(server.url("/slow-down")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 429);
  EXPECT_FALSE(result->retry_after_s);  // "0" asks for no wait

  result = post_and_wait(sender, post_to(server.url("/chatty")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 200);
  EXPECT_EQ(result->response_body_prefix, std::string(kResponseBodyPrefixBytes, 'c'));

  // A body beyond kResponseBodyReadMax is cut short, and the answer still counts.
  result = post_and_wait(sender, post_to(server.url("/endless")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kNone) << result->error_message;
  EXPECT_EQ(result->status_code, 200);
  EXPECT_EQ(result->response_body_prefix.size(), kResponseBodyPrefixBytes);

  // Redirects are reported, never followed.
  result = post_and_wait(sender, post_to(server.url("/moved")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 302);
  result = post_and_wait(sender, post_to(server.url("/missing")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 404);
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 6u);
  for (const auto& request : requests) EXPECT_NE(request.target, "/elsewhere");
}

TEST(HttpSenderTest, TimesOutWhenTheServerNeverAnswers) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return silence(); });
  HttpSender sender(4, 16);
  HttpPost post = post_to(server.url("/hook"));
  post.timeout_ms = 200;
  const auto started = std::chrono::steady_clock::now();
  const auto result = post_and_wait(sender, post);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kTimeout) << result->error_message;
  EXPECT_EQ(result->status_code, 0);
  EXPECT_FALSE(result->error_message.empty());
  EXPECT_GE(result->duration_ms, 190u);
  EXPECT_GE(elapsed, milliseconds(190));
  EXPECT_LT(elapsed, milliseconds(1500));
}

TEST(HttpSenderTest, ConnectionRefusedOnAClosedPort) {
  HttpSender sender(4, 16);
  const auto result =
      post_and_wait(sender, post_to("http://127.0.0.1:" + std::to_string(closed_port()) + "/"));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kConnect) << result->error_message;
  EXPECT_EQ(result->status_code, 0);
}

TEST(HttpSenderTest, PinnedAddressIsWhereTheConnectionGoes) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return answer(200); });
  HttpSender sender(4, 16);
  const std::string port = std::to_string(server.port());

  // A name no resolver knows reaches the server through the pin alone.
  HttpPost post = post_to("http://webhook.test:" + port + "/pinned");
  post.pinned_address = "127.0.0.1";
  auto result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kNone) << result->error_message;
  EXPECT_EQ(result->status_code, 200);
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].header("host"), "webhook.test:" + port);

  // The pin wins over what the name resolves to: localhost is 127.0.0.1, where the server
  // listens, but the pin sends the connection to 127.0.0.2, where nothing does.
  post = post_to("http://localhost:" + port + "/pinned-elsewhere");
  post.pinned_address = "127.0.0.2";
  result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kConnect) << result->error_message;
  EXPECT_EQ(server.requests().size(), 1u);

  post.pinned_address = "localhost";
  result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kOther);
  EXPECT_NE(result->error_message.find("not a numeric IP address"), std::string::npos);

  // An IPv6 pin goes in brackets; nothing listens on [::1] here, so the connection is refused
  // (a malformed pin would fail as kOther instead).
  post = post_to("http://webhook.test:" + port + "/pinned-v6");
  post.pinned_address = "::1";
  result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kConnect) << result->error_message;
  EXPECT_EQ(result->error_message.find("resolve"), std::string::npos) << result->error_message;

  // An IP literal host is connected to as is, so it must be the pinned address itself.
  post = post_to(server.url("/literal"));
  post.pinned_address = "127.0.0.1";
  result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status_code, 200) << result->error_message;
  post.pinned_address = "127.0.0.2";
  result = post_and_wait(sender, post);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kOther);
  EXPECT_NE(result->error_message.find("other than the pinned one"), std::string::npos);
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(HttpSenderTest, RefusesBeyondQueueMax) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return silence(); });
  HttpSender sender(/*in_flight_max=*/1, /*queue_max=*/1);
  HttpPost post = post_to(server.url("/hook"));
  post.timeout_ms = 200;

  std::atomic<int> refused_calls{0};
  auto first = std::make_shared<std::promise<HttpResult>>();
  auto second = std::make_shared<std::promise<HttpResult>>();
  ASSERT_TRUE(sender.submit(post, [first](HttpResult r) { first->set_value(std::move(r)); }));
  ASSERT_TRUE(sender.submit(post, [second](HttpResult r) { second->set_value(std::move(r)); }));
  // One in flight (or about to be) and one waiting: the third is refused, whatever the timing.
  EXPECT_FALSE(sender.submit(post, [&](HttpResult) { ++refused_calls; }));

  auto first_done = first->get_future();
  auto second_done = second->get_future();
  ASSERT_EQ(first_done.wait_for(kWaitMax), std::future_status::ready);
  ASSERT_EQ(second_done.wait_for(kWaitMax), std::future_status::ready);
  EXPECT_EQ(first_done.get().error, HttpResult::Error::kTimeout);
  EXPECT_EQ(second_done.get().error, HttpResult::Error::kTimeout);
  EXPECT_EQ(refused_calls.load(), 0);
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_EQ(sender.queued(), 0u);
  // The slots are free again.
  const auto again = post_and_wait(sender, post);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->error, HttpResult::Error::kTimeout);
}

TEST(HttpSenderTest, ManyPostsAndCallbacksThatSubmitAgain) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t index) {
    return answer(200 + static_cast<int>(index % 2));
  });
  // Declared before the sender, which is destroyed (and its callbacks dropped) first.
  std::function<void(int)> next;
  auto chain_done = std::make_shared<std::promise<int>>();
  HttpSender sender(4, 64);
  constexpr int kPosts = 24;
  std::vector<std::future<HttpResult>> results;
  for (int i = 0; i < kPosts; ++i) {
    auto promise = std::make_shared<std::promise<HttpResult>>();
    results.push_back(promise->get_future());
    ASSERT_TRUE(sender.submit(post_to(server.url("/many/" + std::to_string(i))),
                              [promise](HttpResult r) { promise->set_value(std::move(r)); }));
  }
  for (auto& result : results) {
    ASSERT_EQ(result.wait_for(kWaitMax), std::future_status::ready);
    const HttpResult got = result.get();
    EXPECT_EQ(got.error, HttpResult::Error::kNone) << got.error_message;
    EXPECT_TRUE(got.status_code == 200 || got.status_code == 201) << got.status_code;
  }

  // A chain: each callback submits the next post from the sender's own thread.
  next = [&](int remaining) {
    if (remaining == 0) {
      chain_done->set_value(0);
      return;
    }
    const bool submitted = sender.submit(post_to(server.url("/chain")),
                                         [&, remaining](HttpResult) { next(remaining - 1); });
    if (!submitted) chain_done->set_value(remaining);
  };
  next(5);
  auto chain = chain_done->get_future();
  ASSERT_EQ(chain.wait_for(kWaitMax), std::future_status::ready);
  EXPECT_EQ(chain.get(), 0);
  EXPECT_EQ(server.requests().size(), static_cast<std::size_t>(kPosts + 5));
}

TEST(HttpSenderTest, IgnoresProxiesFromTheEnvironment) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return answer(200); });
  // A proxy would connect on our behalf, past the URL guard and the pinned address.
  struct EnvOverride {
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    void set(const char* name, const char* value) {
      const char* old = std::getenv(name);
      saved.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      if (value)
        ::setenv(name, value, 1);
      else
        ::unsetenv(name);
    }
    ~EnvOverride() {
      for (const auto& [name, value] : saved) {
        if (value)
          ::setenv(name.c_str(), value->c_str(), 1);
        else
          ::unsetenv(name.c_str());
      }
    }
  } env;
  const std::string proxy = "http://127.0.0.1:" + std::to_string(closed_port());
  env.set("http_proxy", proxy.c_str());
  env.set("HTTPS_PROXY", proxy.c_str());
  env.set("ALL_PROXY", proxy.c_str());
  env.set("no_proxy", nullptr);
  env.set("NO_PROXY", nullptr);

  HttpSender sender(4, 16);
  const auto result = post_and_wait(sender, post_to(server.url("/direct")));
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, HttpResult::Error::kNone) << result->error_message;
  EXPECT_EQ(result->status_code, 200);
}

TEST(HttpSenderTest, DestructorDropsUnfinishedPostsPromptly) {
  ScriptedHttpServer server([](const ReceivedRequest&, std::size_t) { return silence(); });
  std::atomic<int> calls{0};
  auto sender = std::make_unique<HttpSender>(1, 4);
  HttpPost post = post_to(server.url("/hook"));
  post.timeout_ms = 10'000;
  ASSERT_TRUE(sender->submit(post, [&](HttpResult) { ++calls; }));  // in flight
  ASSERT_TRUE(sender->submit(post, [&](HttpResult) { ++calls; }));  // waiting
  ASSERT_TRUE(server.wait_for_requests(1));
  const auto started = std::chrono::steady_clock::now();
  sender.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(1000));
  EXPECT_EQ(calls.load(), 0);
}

}  // namespace
}  // namespace chat4all::connector
