// GET /v1/stream through a real topology (one frontend, one router, three
// storage nodes, each its own process), with Beast's WebSocket client; users,
// conversations and messages are made through the REST API.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "common/auth.h"
#include "common/ids.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::uint32_t kQueueBytesMax = 65536;
constexpr std::uint32_t kResyncMs = 1000;
// Enough for the fan-out test's streams of one group on one frontend.
constexpr std::uint32_t kConnectionsMax = 18;

// A WebSocket client of GET /v1/stream. Every operation is bounded: the
// event loop runs only until the operation ends or its time is up.
class StreamClient {
 public:
  // Connects and upgrades with `token` (as a Bearer header, or in the query
  // with `token_in_query`); `receive_buffer_bytes` > 0 shrinks the socket's
  // receive buffer, for a client that is slow to read.
  StreamClient(std::uint16_t port, const std::string& token, int receive_buffer_bytes = 0,
               bool token_in_query = false)
      : socket_(io_) {
    auto& tcp = beast::get_lowest_layer(socket_).socket();
    tcp.open(asio::ip::tcp::v4());
    if (receive_buffer_bytes > 0)
      tcp.set_option(asio::socket_base::receive_buffer_size(receive_buffer_bytes));
    bool connected = false;
    beast::error_code error;
    beast::get_lowest_layer(socket_).async_connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
        [&](beast::error_code ec) {
          error = ec;
          connected = true;
        });
    if (!run_until([&] { return connected; }, 5s) || error)
      throw std::runtime_error("connect failed");
    if (!token_in_query)
      socket_.set_option(websocket::stream_base::decorator([token](websocket::request_type& r) {
        r.set(http::field::authorization, "Bearer " + token);
      }));
    bool upgraded = false;
    socket_.async_handshake("127.0.0.1:" + std::to_string(port),
                            token_in_query ? "/v1/stream?access_token=" + token : "/v1/stream",
                            [&](beast::error_code ec) {
                              error = ec;
                              upgraded = true;
                            });
    if (!run_until([&] { return upgraded; }, 5s) || error)
      throw std::runtime_error("upgrade failed: " + error.message());
  }

  void send(const std::string& text) {
    bool sent = false;
    beast::error_code error;
    socket_.async_write(asio::buffer(text), [&](beast::error_code ec, std::size_t) {
      error = ec;
      sent = true;
    });
    ASSERT_TRUE(run_until([&] { return sent; }, 5s)) << "send timed out";
    ASSERT_FALSE(error) << error.message();
  }
  void send(const json& frame) { send(frame.dump()); }

  // The next frame, or nullopt when none came within `timeout` or the
  // connection closed (closed() then says so). Frames next_of_type() passed
  // over come first.
  std::optional<json> next(std::chrono::milliseconds timeout) {
    if (!passed_over_.empty()) {
      json frame = std::move(passed_over_.front());
      passed_over_.pop_front();
      return frame;
    }
    return receive(timeout);
  }

  // The next frame of `type` (of `conversation_id`, when given); the others
  // (pongs, states, frames of conversations other tests made) are kept for
  // later calls.
  std::optional<json> next_of_type(const std::string& type, std::chrono::milliseconds timeout,
                                   const std::string& conversation_id = "") {
    auto matches = [&](const json& frame) {
      return frame["type"] == type &&
             (conversation_id.empty() || conversation_of(frame) == conversation_id);
    };
    for (auto it = passed_over_.begin(); it != passed_over_.end(); ++it) {
      if (!matches(*it)) continue;
      json frame = std::move(*it);
      passed_over_.erase(it);
      return frame;
    }
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto frame =
          receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!frame) return std::nullopt;
      if (matches(*frame)) return frame;
      passed_over_.push_back(std::move(*frame));
    }
    return std::nullopt;
  }

  static std::string conversation_of(const json& frame) {
    const json& holder = frame.contains("message") ? frame["message"] : frame;
    return holder.value("conversation_id", "");
  }

  bool closed() const { return closed_; }
  std::uint16_t close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }

  void close() {
    if (closed_) return;
    bool done = false;
    socket_.async_close(websocket::close_code::normal, [&](beast::error_code) { done = true; });
    run_until([&] { return done && !reading_; }, 3s);
    closed_ = true;
  }

 private:
  std::optional<json> receive(std::chrono::milliseconds timeout) {
    if (closed_) return std::nullopt;
    if (!reading_) {
      reading_ = true;
      socket_.async_read(inbound_, [this](beast::error_code ec, std::size_t) {
        reading_ = false;
        read_error_ = ec;
        read_done_ = true;
      });
    }
    if (!run_until([&] { return read_done_; }, timeout)) return std::nullopt;
    read_done_ = false;
    if (read_error_) {
      closed_ = true;
      close_code_ = socket_.reason().code;
      close_reason_ = std::string(socket_.reason().reason.data(), socket_.reason().reason.size());
      return std::nullopt;
    }
    json frame = json::parse(beast::buffers_to_string(inbound_.data()), nullptr, false);
    inbound_.consume(inbound_.size());
    return frame;
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      const auto now = Clock::now();
      if (now >= deadline) return false;
      io_.restart();
      io_.run_one_for(deadline - now);
    }
    return true;
  }

  asio::io_context io_;
  websocket::stream<beast::tcp_stream> socket_;
  beast::flat_buffer inbound_;
  bool reading_ = false;
  bool read_done_ = false;
  beast::error_code read_error_;
  bool closed_ = false;
  std::uint16_t close_code_ = 0;
  std::string close_reason_;
  std::deque<json> passed_over_;
};

// The HTTP answer to an upgrade request of /v1/stream, for refusals.
HttpResult upgrade_request(std::uint16_t port, const std::string& target,
                           const std::map<std::string, std::string>& extra = {}) {
  std::map<std::string, std::string> headers = {{"Connection", "Upgrade"},
                                                {"Upgrade", "websocket"},
                                                {"Sec-WebSocket-Version", "13"},
                                                {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
  headers.insert(extra.begin(), extra.end());
  return http_request(port, "GET", target, "", headers);
}

std::uint64_t seq_of(const json& frame) {
  return frame["message"]["seq"].get<std::uint64_t>();
}

class StreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterOptions options;
    options.stream_queue_bytes_max = kQueueBytesMax;
    options.stream_resync_ms = kResyncMs;
    options.stream_connections_max = kConnectionsMax;
    // The slow-client test posts a few hundred messages with one token.
    options.token_requests_per_s = 10000;
    options.token_burst = 10000;
    cluster_ = new TestCluster(options);
    cluster_->start_all();
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->read_log("up");
    for (const char* user : {"alice", "bob", "carol"}) {
      ASSERT_TRUE(cluster_->create_user(user));
      tokens_[user] = cluster_->token(user);
      ASSERT_FALSE(tokens_[user].empty());
    }
    signer_ = new auth::TokenSigner(
        auth::load_or_create_token_key(cluster_->directory() / "data" / "secrets" / "token.key"));
  }
  static void TearDownTestSuite() {
    delete signer_;
    delete cluster_;
  }

  void SetUp() override {
    // Sessions of an earlier test end asynchronously; each test starts with none.
    const auto deadline = Clock::now() + 10s;
    while (sessions() != 0 && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  }

  static std::unique_ptr<StreamClient> connect(const std::string& user, int receive_buffer = 0) {
    return std::make_unique<StreamClient>(cluster_->http_port(), tokens_.at(user), receive_buffer);
  }
  // Resumes with `cursors` and returns the ready frame.
  static json ready(StreamClient& client, const json& cursors = json::object()) {
    client.send(json{{"type", "resume"}, {"cursors", cursors}});
    auto frame = client.next_of_type("ready", 10s);
    EXPECT_TRUE(frame.has_value()) << "no ready frame";
    return frame.value_or(json::object());
  }
  static json position(const json& ready, const std::string& conversation_id) {
    for (const auto& conversation : ready["conversations"])
      if (conversation["conversation_id"] == conversation_id) return conversation;
    return json();
  }
  // A new group conversation of `creator` and `others`.
  static std::string conversation(const std::string& creator,
                                  const std::vector<std::string>& others) {
    const std::string id = cluster_->create_conversation(tokens_.at(creator), others);
    EXPECT_FALSE(id.empty());
    return id;
  }
  // POST /v1/messages as `sender`; the 202 body ({message_id, seq, …}).
  static json send(const std::string& sender, const std::string& conversation_id,
                   const std::string& text = "hello") {
    const HttpResult result = cluster_->send_text(tokens_.at(sender), conversation_id, text);
    EXPECT_EQ(result.status, 202) << result.body;
    return result.json();
  }
  // `recipient`'s state of a message, as `viewer` sees it (GET /v1/messages/{id}).
  static std::string state_of(const std::string& message_id, const std::string& recipient,
                              const std::string& viewer) {
    const HttpResult result =
        http_request(cluster_->http_port(), "GET", "/v1/messages/" + message_id, "",
                     {{"Authorization", "Bearer " + tokens_.at(viewer)}});
    if (result.status != 200) return "HTTP " + std::to_string(result.status) + " " + result.body;
    const json shown = result.json();
    for (const auto& state : shown["states"])
      if (state["recipient_id"] == recipient) return state["state"];
    return "none in " + result.body;
  }
  static double frontend_metric(const std::string& name) {
    const auto result = http_request(cluster_->http_port(), "GET", "/metrics");
    std::istringstream lines(result.body);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return -1;
  }
  static double sessions() { return frontend_metric("chat4all_frontend_stream_sessions"); }

  static TestCluster* cluster_;
  static std::map<std::string, std::string> tokens_;
  static auth::TokenSigner* signer_;
};

TestCluster* StreamTest::cluster_ = nullptr;
std::map<std::string, std::string> StreamTest::tokens_;
auth::TokenSigner* StreamTest::signer_ = nullptr;

TEST_F(StreamTest, TwoDevicesOfAUserEachGetEveryNewMessageOnce) {
  const std::string id = conversation("alice", {"bob"});
  auto phone = connect("bob");
  auto laptop = connect("bob");
  auto sender = connect("alice");
  const json phone_ready = ready(*phone);
  EXPECT_EQ(phone_ready["user_id"], "bob");
  EXPECT_EQ(position(phone_ready, id),
            (json{{"conversation_id", id}, {"last_seq", 0}, {"cursor", 0}}));
  ready(*sender);
  // The laptop sends no resume: the stream starts after a bounded wait.
  const auto laptop_ready = laptop->next_of_type("ready", 5s);
  ASSERT_TRUE(laptop_ready);
  EXPECT_FALSE(position(*laptop_ready, id).is_null());

  const json first = send("alice", id, "hello bob");
  // Both of bob's devices, and alice's own (her other devices see what she sent).
  for (auto* device : {phone.get(), laptop.get(), sender.get()}) {
    const auto frame = device->next_of_type("message", 5s, id);
    ASSERT_TRUE(frame) << "no message frame";
    const json& message = (*frame)["message"];
    EXPECT_EQ(message["message_id"], first["message_id"]);
    EXPECT_EQ(message["conversation_id"], id);
    EXPECT_EQ(message["seq"], 1);
    EXPECT_EQ(message["sender_id"], "alice");
    EXPECT_EQ(message["payload"], (json{{"type", "text"}, {"text", "hello bob"}}));
    EXPECT_EQ(message["metadata"], json::object());
    EXPECT_GT(message["stored_at"].get<std::int64_t>(), 0);
  }
  // The sender learns that it reached bob.
  const auto delivered = sender->next_of_type("state", 5s, id);
  ASSERT_TRUE(delivered);
  EXPECT_EQ(*delivered, (json{{"type", "state"},
                              {"message_id", first["message_id"]},
                              {"conversation_id", id},
                              {"seq", 1},
                              {"recipient_id", "bob"},
                              {"state", "DELIVERED"},
                              {"at", (*delivered)["at"]}}));

  send("alice", id);
  for (auto* device : {phone.get(), laptop.get()}) {
    const auto frame = device->next_of_type("message", 5s, id);
    ASSERT_TRUE(frame);
    EXPECT_EQ(seq_of(*frame), 2u);  // not seq 1 again
  }

  // Client frames: a ping is answered, a bad frame gets an error and the stream goes on.
  phone->send(json{{"type", "ping"}, {"id", "p-1"}});
  const auto pong = phone->next_of_type("pong", 5s);
  ASSERT_TRUE(pong);
  EXPECT_EQ((*pong)["id"], "p-1");
  phone->send(std::string("{not json"));
  const auto error = phone->next_of_type("error", 5s);
  ASSERT_TRUE(error);
  EXPECT_EQ((*error)["error"]["code"], "invalid_json");
  phone->send(json{{"type", "resume"}, {"cursors", {{id, 0}}}});
  const auto late = phone->next_of_type("error", 5s);
  ASSERT_TRUE(late);
  EXPECT_EQ((*late)["error"]["code"], "resume_not_first");
  send("alice", id);
  const auto third = phone->next_of_type("message", 5s, id);
  ASSERT_TRUE(third);
  EXPECT_EQ(seq_of(*third), 3u);  // the late resume moved nothing back
}

// One read per conversation per frontend: the streams of a group on one
// frontend take its new messages from the conversation's shared tail, so
// storage is read about once per message, not once per stream.
TEST_F(StreamTest, ManyStreamsOfAGroupCostAboutOneStorageReadPerMessage) {
  const std::string id = conversation("alice", {"bob", "carol"});
  std::vector<std::unique_ptr<StreamClient>> devices;
  for (const char* user : {"alice", "bob", "carol"})
    for (int device = 0; device < 6; ++device) devices.push_back(connect(user));
  for (auto& device : devices) ready(*device);
  // The users' other conversations are each stream's backlog, read from
  // storage by its own cursor: counted before, once it is all written.
  for (double pushed = -1;;) {
    const double now = frontend_metric("chat4all_frontend_stream_messages_pushed_total");
    if (now == pushed) break;
    pushed = now;
    std::this_thread::sleep_for(300ms);
  }
  const double reads_before = frontend_metric("chat4all_frontend_stream_storage_reads_total");
  const double pushed_before = frontend_metric("chat4all_frontend_stream_messages_pushed_total");
  const double tail_before = frontend_metric("chat4all_frontend_stream_tail_frames_total");
  const auto started = Clock::now();
  ASSERT_GE(reads_before, 0);

  constexpr std::uint64_t kMessages = 10;
  json last;
  for (std::uint64_t i = 0; i < kMessages; ++i) last = send("alice", id, "to all");
  for (auto& device : devices)
    for (std::uint64_t seq = 1; seq <= kMessages; ++seq) {
      const auto frame = device->next_of_type("message", 10s, id);
      ASSERT_TRUE(frame) << "no message frame " << seq;
      EXPECT_EQ(seq_of(*frame), seq);  // in order, once
    }
  for (auto& device : devices) EXPECT_FALSE(device->next_of_type("message", 100ms, id));
  const double frames = static_cast<double>(devices.size() * kMessages);
  const auto deadline = Clock::now() + 5s;
  while (frontend_metric("chat4all_frontend_stream_messages_pushed_total") - pushed_before <
             frames &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(frontend_metric("chat4all_frontend_stream_messages_pushed_total") - pushed_before,
            frames);
  // Every stream was caught up: every frame came out of the tail's window.
  EXPECT_EQ(frontend_metric("chat4all_frontend_stream_tail_frames_total") - tail_before, frames);
  // One read per message, at most another when a hint came during a read,
  // and each tail's own resync (every kResyncMs) meanwhile: far from the 18
  // per message that one read per stream costs.
  const double reads =
      frontend_metric("chat4all_frontend_stream_storage_reads_total") - reads_before;
  const auto resyncs =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() /
          kResyncMs +
      1;
  const double tails = frontend_metric("chat4all_frontend_stream_tails");
  EXPECT_GE(tails, 1);
  EXPECT_GE(reads, 1);
  EXPECT_LE(reads, 2 * kMessages + tails * static_cast<double>(resyncs))
      << "storage reads for " << kMessages << " messages, " << tails << " tails, " << resyncs
      << " resyncs";
  // Frames from the window are marked DELIVERED like any other.
  for (const char* recipient : {"bob", "carol"}) {
    std::string state;
    for (const auto until = Clock::now() + 10s; Clock::now() < until;) {
      state = state_of(last["message_id"], recipient, "alice");
      if (state == "DELIVERED") break;
      std::this_thread::sleep_for(100ms);
    }
    EXPECT_EQ(state, "DELIVERED") << recipient;
  }
}

TEST_F(StreamTest, ResumeGetsExactlyTheMissedMessagesInOrderAndMarksThemDelivered) {
  const std::string id = conversation("alice", {"bob"});
  {
    auto device = connect("bob");
    ready(*device);
    send("alice", id);
    const auto first = device->next_of_type("message", 5s, id);
    ASSERT_TRUE(first);
    EXPECT_EQ(seq_of(*first), 1u);
    device->close();
  }
  send("alice", id, "missed 2");
  const json last = send("alice", id, "missed 3");

  auto device = connect("bob");
  const json resumed = ready(*device, {{id, 1}});
  EXPECT_EQ(position(resumed, id), (json{{"conversation_id", id}, {"last_seq", 3}, {"cursor", 1}}));
  std::vector<std::uint64_t> received;
  while (auto frame = device->next(std::chrono::milliseconds(3 * kResyncMs))) {
    if ((*frame)["type"] == "message" && StreamClient::conversation_of(*frame) == id)
      received.push_back(seq_of(*frame));
  }
  EXPECT_FALSE(device->closed());
  // Exactly the missing ones, in order, once (over several resyncs).
  EXPECT_EQ(received, (std::vector<std::uint64_t>{2, 3}));

  // Written to the socket: DELIVERED for bob, and his delivered horizon moved.
  std::string state;
  for (const auto deadline = Clock::now() + 5s; Clock::now() < deadline;) {
    state = state_of(last["message_id"], "bob", "alice");
    if (state == "DELIVERED") break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(state, "DELIVERED");
  device->close();

  // Without a resume cursor a device starts after the DELIVERED horizon.
  auto other = connect("bob");
  const json fresh = ready(*other);
  EXPECT_EQ(position(fresh, id)["cursor"], 3);
  EXPECT_FALSE(other->next_of_type("message", 1500ms, id));
}

TEST_F(StreamTest, NewConversationIsPickedUpWhileConnected) {
  auto device = connect("carol");
  ready(*device);
  const std::string id = conversation("alice", {"carol"});
  send("alice", id);
  // By the membership hint, or at the latest by the next resync.
  const auto frame = device->next_of_type("message", std::chrono::milliseconds(3 * kResyncMs), id);
  ASSERT_TRUE(frame);
  EXPECT_EQ((*frame)["message"]["conversation_id"], id);
  EXPECT_EQ(seq_of(*frame), 1u);
}

// The conversation's tail reads for every stream of the frontend: one whose
// user left gets nothing more from it, and coming back repeats nothing.
TEST_F(StreamTest, AMemberWhoLeavesGetsNothingMoreAndOnReturnNothingTwice) {
  const std::string id = conversation("alice", {"bob", "carol"});
  auto bob = connect("bob");
  auto carol = connect("carol");
  ready(*bob);
  ready(*carol);
  send("alice", id);
  for (auto* device : {bob.get(), carol.get()}) {
    const auto frame = device->next_of_type("message", 5s, id);
    ASSERT_TRUE(frame);
    EXPECT_EQ(seq_of(*frame), 1u);
  }
  const auto port = cluster_->http_port();
  const std::map<std::string, std::string> as_alice{
      {"Authorization", "Bearer " + tokens_.at("alice")}};
  const HttpResult removed =
      http_request(port, "DELETE", "/v1/conversations/" + id + "/members/bob", "", as_alice);
  ASSERT_EQ(removed.status, 204) << removed.body;
  // By the membership hint, or at the latest by the next resync listing.
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kResyncMs));
  send("alice", id);
  const auto to_carol = carol->next_of_type("message", 5s, id);
  ASSERT_TRUE(to_carol);
  EXPECT_EQ(seq_of(*to_carol), 2u);
  EXPECT_FALSE(bob->next_of_type("message", std::chrono::milliseconds(2 * kResyncMs), id))
      << "a message of a conversation bob left";

  const HttpResult added = http_request(port, "POST", "/v1/conversations/" + id + "/members",
                                        json{{"members", {"bob"}}}.dump(), as_alice);
  ASSERT_EQ(added.status / 100, 2) << added.body;
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kResyncMs));
  send("alice", id);
  const auto back = bob->next_of_type("message", std::chrono::milliseconds(3 * kResyncMs), id);
  ASSERT_TRUE(back);
  EXPECT_EQ(seq_of(*back), 3u);  // not 1 again, and not 2 (sent while bob was out)
}

TEST_F(StreamTest, ClientThatDoesNotReadIsClosedWith1008) {
  const std::string id = conversation("alice", {"bob"});
  auto slow = connect("bob", /*receive_buffer=*/4096);
  ready(*slow);
  const double closed_before = frontend_metric("chat4all_frontend_stream_slow_disconnects_total");
  // Messages of 4000 bytes: the queue of 64 KiB holds about sixteen, the
  // kernel's socket buffers some more. The client reads nothing meanwhile.
  const std::string text(4000, 'z');
  int sent = 0;
  const auto deadline = Clock::now() + 60s;
  while (frontend_metric("chat4all_frontend_stream_slow_disconnects_total") <= closed_before) {
    ASSERT_LT(sent, 2000) << "never closed";
    ASSERT_LT(Clock::now(), deadline) << "never closed";
    for (int i = 0; i < 20; ++i, ++sent) send("alice", id, text);
  }
  // What was written before the close arrives in order, then the close.
  std::uint64_t received = 0;
  while (auto frame = slow->next(10s)) {
    if ((*frame)["type"] != "message" || StreamClient::conversation_of(*frame) != id) continue;
    EXPECT_EQ(seq_of(*frame), received + 1);
    received = seq_of(*frame);
  }
  ASSERT_TRUE(slow->closed());
  EXPECT_EQ(slow->close_code(), websocket::close_code::policy_error);
  EXPECT_EQ(slow->close_reason(), "slow consumer");
  EXPECT_LT(received, static_cast<std::uint64_t>(sent));
  std::cout << "      (closed after " << sent << " messages; " << received
            << " reached the client)\n";

  // It reconnects and resumes from its cursor: the rest, in order, once.
  auto again = connect("bob");
  ready(*again, {{id, received}});
  std::uint64_t next = received + 1;
  while (next <= static_cast<std::uint64_t>(sent)) {
    const auto frame = again->next_of_type("message", 5s, id);
    ASSERT_TRUE(frame) << "stopped at seq " << next;
    ASSERT_EQ(seq_of(*frame), next);
    ++next;
  }
}

TEST_F(StreamTest, RefusesBadTokensPlainRequestsAndConnectionsBeyondTheBound) {
  const auto port = cluster_->http_port();
  auto expect_refused = [&](const HttpResult& result, int status, const std::string& code) {
    EXPECT_EQ(result.status, status) << result.body;
    const json body = result.json();
    ASSERT_TRUE(body.is_object()) << result.body;
    EXPECT_EQ(body["error"].value("code", ""), code) << result.body;
    EXPECT_FALSE(body["error"].value("message", "").empty()) << result.body;
  };
  const std::int64_t now_s = ids::now_ms() / 1000;
  auth::TokenKey other_key{};
  other_key[0] = 7;
  expect_refused(upgrade_request(port, "/v1/stream"), 401, "unauthorized");
  expect_refused(upgrade_request(port, "/v1/stream", {{"Authorization", "Bearer nonsense"}}), 401,
                 "unauthorized");
  expect_refused(upgrade_request(port, "/v1/stream?access_token=nonsense"), 401, "unauthorized");
  for (const std::string& bad : {
           signer_->issue("bob", now_s - 7200, 60, kTenant, "user"),  // expired
           auth::TokenSigner(other_key).issue("bob", now_s, 600, kTenant, "user"),
           signer_->issue("bob", now_s, 600, "", "user"),  // no tenant
       })
    expect_refused(upgrade_request(port, "/v1/stream", {{"Authorization", "Bearer " + bad}}), 401,
                   "unauthorized");
  expect_refused(
      upgrade_request(port, "/v1/stream", {{"Authorization", "Bearer " + cluster_->admin_token()}}),
      403, "user_token_required");
  expect_refused(http_request(port, "GET", "/v1/stream", "",
                              {{"Authorization", "Bearer " + tokens_.at("bob")}}),
                 426, "upgrade_required");

  // The token may come in the query (browsers cannot set headers on a WebSocket).
  std::vector<std::unique_ptr<StreamClient>> open;
  open.push_back(
      std::make_unique<StreamClient>(port, tokens_.at("bob"), 0, /*token_in_query=*/true));
  EXPECT_EQ(ready(*open.back())["user_id"], "bob");
  // Two users: one may hold only StreamHub::kStreamsPerUserMax.
  while (open.size() < kConnectionsMax) open.push_back(connect(open.size() % 2 ? "bob" : "carol"));
  expect_refused(
      upgrade_request(port, "/v1/stream", {{"Authorization", "Bearer " + tokens_.at("bob")}}), 503,
      "unavailable");
  EXPECT_EQ(sessions(), kConnectionsMax);
  open.clear();  // closes them: the slots come back
  const auto deadline = Clock::now() + 5s;
  while (sessions() != 0 && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(sessions(), 0);
}

TEST_F(StreamTest, AUserHoldsAtMost16StreamsOnAFrontend) {
  std::vector<std::unique_ptr<StreamClient>> open;
  for (int i = 0; i < 16; ++i) open.push_back(connect("carol"));
  const HttpResult refused = upgrade_request(cluster_->http_port(), "/v1/stream",
                                             {{"Authorization", "Bearer " + tokens_.at("carol")}});
  EXPECT_EQ(refused.status, 429) << refused.body;
  const json body = refused.json();
  ASSERT_TRUE(body.is_object()) << refused.body;
  EXPECT_EQ(body["error"].value("code", ""), "too_many_streams") << refused.body;
  // Another user is not held back by carol's bound.
  auto other = connect("bob");
  EXPECT_EQ(ready(*other)["user_id"], "bob");
  // A closed stream gives its place back.
  open.pop_back();
  std::unique_ptr<StreamClient> again;
  for (const auto deadline = Clock::now() + 5s; !again && Clock::now() < deadline;) {
    try {
      again = connect("carol");
    } catch (const std::exception&) {
      std::this_thread::sleep_for(50ms);
    }
  }
  ASSERT_TRUE(again);
  EXPECT_EQ(ready(*again)["user_id"], "carol");
}

// On its own cluster, whose storage nodes publish no change hints: every hint is lost.
TEST(StreamWithoutHintsTest, MessagesAndStateFramesStillArriveFromTheLogsByResync) {
  ClusterOptions options;
  options.storage_events = false;
  options.stream_resync_ms = 300;
  TestCluster cluster(options);
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  const std::string conversation_id = cluster.create_conversation(cluster.token("alice"), {"bob"});
  ASSERT_FALSE(conversation_id.empty());
  StreamClient sender(cluster.http_port(), cluster.token("alice"));
  StreamClient recipient(cluster.http_port(), cluster.token("bob"));
  for (auto* device : {&sender, &recipient}) {
    device->send(json{{"type", "resume"}, {"cursors", json::object()}});
    ASSERT_TRUE(device->next_of_type("ready", 10s));
  }
  const HttpResult sent = cluster.send_text(cluster.token("alice"), conversation_id, "hi");
  ASSERT_EQ(sent.status, 202) << sent.body;
  const auto message = recipient.next_of_type("message", 10s, conversation_id);
  ASSERT_TRUE(message) << "no message frame";
  // Bob's stream marked it DELIVERED; the step is in the conversation's state
  // log, which alice's stream reads once a resync shows the log grew.
  const auto delivered = sender.next_of_type("state", 10s, conversation_id);
  ASSERT_TRUE(delivered) << "no state frame";
  EXPECT_EQ((*delivered)["message_id"], sent.json()["message_id"]);
  EXPECT_EQ((*delivered)["recipient_id"], "bob");
  EXPECT_EQ((*delivered)["state"], "DELIVERED");
  EXPECT_EQ((*delivered)["seq"], 1);
  // Marked READ through the API: the next frame is that step, not DELIVERED again.
  const HttpResult read = http_request(
      cluster.http_port(), "POST", "/v1/conversations/" + conversation_id + "/read",
      json{{"up_to_seq", 1}}.dump(),
      {{"Authorization", "Bearer " + cluster.token("bob")}, {"Content-Type", "application/json"}});
  ASSERT_LT(read.status, 300) << read.body;
  const auto read_frame = sender.next_of_type("state", 10s, conversation_id);
  ASSERT_TRUE(read_frame) << "no READ state frame";
  EXPECT_EQ((*read_frame)["state"], "READ");
}

// On its own cluster: it stops it.
TEST(StreamShutdownTest, AStoppingFrontendClosesItsStreamsWith1001) {
  TestCluster cluster;
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  StreamClient device(cluster.http_port(), cluster.token("bob"));
  device.send(json{{"type", "resume"}, {"cursors", json::object()}});
  ASSERT_TRUE(device.next_of_type("ready", 10s));
  EXPECT_TRUE(cluster.stop_all());
  while (device.next(10s)) {
  }
  ASSERT_TRUE(device.closed());
  EXPECT_EQ(device.close_code(), websocket::close_code::going_away);
}

// Presence and typing across two frontends (each node its own process, so
// that one frontend can be killed): changes reach a stream on the other
// frontend, only users who share a conversation see them, a crashed
// frontend's users go offline after its lease. Each test has users of its
// own, so that a change of one test is never seen by the next.
class PresenceStreamTest : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kGraceMs = 1500;
  static constexpr std::uint32_t kLeaseMs = 3000;

  static void SetUpTestSuite() {
    ClusterOptions options;
    options.frontends = 2;
    options.presence_grace_ms = kGraceMs;
    options.presence_lease_ms = kLeaseMs;
    cluster_ = new TestCluster(options);
    for (const char* node : {"storage-1", "storage-2", "storage-3", "router-1", "frontend-1"})
      cluster_->start_node(node);
    start_second_frontend();
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->read_log("frontend-1");
  }
  static void TearDownTestSuite() { delete cluster_; }

  static void start_second_frontend() {
    cluster_->start_node("frontend-2");
    const auto deadline = Clock::now() + 20s;
    while (http_request(port(2), "GET", "/healthz").status != 200 && Clock::now() < deadline)
      std::this_thread::sleep_for(100ms);
  }
  static std::uint16_t port(int frontend) {
    return cluster_->port_of("frontend-" + std::to_string(frontend), "http");
  }
  // Creates `user` and returns its token.
  static std::string user(const std::string& user_id) {
    EXPECT_TRUE(cluster_->create_user(user_id));
    return cluster_->token(user_id);
  }
  // A ready stream of `token` on frontend `frontend`.
  static std::unique_ptr<StreamClient> stream(const std::string& token, int frontend) {
    auto client = std::make_unique<StreamClient>(port(frontend), token);
    client->send(json{{"type", "resume"}});
    EXPECT_TRUE(client->next_of_type("ready", 10s)) << "no ready frame";
    return client;
  }
  static HttpResult presence(const std::string& token, const std::string& user_id) {
    return http_request(port(1), "GET", "/v1/users/" + user_id + "/presence", "", bearer(token));
  }
  // Waits (bounded) until `user_id` is `state` as the user itself sees it: what
  // its streams' reports did has been applied.
  static void await_own_state(const std::string& token, const std::string& user_id,
                              const std::string& state) {
    const auto deadline = Clock::now() + 10s;
    while (presence(token, user_id).json().value("state", "") != state && Clock::now() < deadline)
      std::this_thread::sleep_for(50ms);
    EXPECT_EQ(presence(token, user_id).json().value("state", ""), state);
  }
  // "<name>-subject" and "<name>-watcher", who share a conversation, and the
  // watcher's stream on frontend 1.
  struct Pair {
    std::string subject;  // tokens
    std::string watcher;
    std::unique_ptr<StreamClient> watching;
  };
  static Pair pair(const std::string& name) {
    Pair made{user(name + "-subject"), user(name + "-watcher"), nullptr};
    EXPECT_FALSE(cluster_->create_conversation(made.subject, {name + "-watcher"}).empty());
    made.watching = stream(made.watcher, 1);
    return made;
  }
  static json presence_frame(const std::string& user_id, const std::string& state,
                             const json& last_seen_at) {
    return json{{"type", "presence"},
                {"user_id", user_id},
                {"state", state},
                {"last_seen_at", last_seen_at}};
  }

  static TestCluster* cluster_;
};

TestCluster* PresenceStreamTest::cluster_ = nullptr;

TEST_F(PresenceStreamTest, ChangesReachStreamsOnTheOtherFrontendOnlyOfThoseSharingAConversation) {
  Pair made = pair("pa");
  const std::string subject = made.subject, watcher = made.watcher;
  auto& watching = made.watching;
  const std::string stranger = user("pa-stranger");
  auto stranger_stream = stream(stranger, 1);

  HttpResult before = presence(watcher, "pa-subject");
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.json(),
            (json{{"user_id", "pa-subject"}, {"state", "offline"}, {"last_seen_at", nullptr}}));
  // Someone who shares no conversation learns nothing, not even that the user exists.
  expect_api_error(presence(stranger, "pa-subject"), 404, "not_found");
  expect_api_error(presence(watcher, "pa-nobody"), 404, "not_found");
  expect_api_error(presence(watcher, "bad%20id"), 400, "invalid_field", "user_id");
  EXPECT_EQ(presence(subject, "pa-subject").status, 200);
  EXPECT_EQ(presence(cluster_->admin_token(), "pa-subject").status, 200);

  auto device = stream(subject, 2);  // on the other frontend
  auto online = watching->next_of_type("presence", 10s);
  ASSERT_TRUE(online);
  EXPECT_EQ(*online, presence_frame("pa-subject", "online", nullptr));
  EXPECT_EQ(presence(watcher, "pa-subject").json()["state"], "online");

  device->close();
  auto offline = watching->next_of_type("presence", 10s);
  ASSERT_TRUE(offline);
  EXPECT_EQ((*offline)["state"], "offline");
  ASSERT_TRUE((*offline)["last_seen_at"].is_number_integer()) << offline->dump();
  EXPECT_EQ(presence(watcher, "pa-subject").json(),
            (json{{"user_id", "pa-subject"},
                  {"state", "offline"},
                  {"last_seen_at", (*offline)["last_seen_at"]}}));
  // The stranger's stream heard nothing of it.
  EXPECT_FALSE(stranger_stream->next_of_type("presence", 500ms));
}

TEST_F(PresenceStreamTest, AReconnectWithinTheGraceIsNotSeenAndTwoDevicesAreOnePresence) {
  Pair made = pair("pb");
  const std::string subject = made.subject, watcher = made.watcher;
  auto& watching = made.watching;
  auto phone = stream(subject, 1);
  ASSERT_TRUE(watching->next_of_type("presence", 10s));
  auto laptop = stream(subject, 2);
  phone->close();  // the laptop keeps the user online
  phone = stream(subject, 2);
  laptop->close();  // and the phone, back on the other frontend, within the grace
  EXPECT_FALSE(watching->next_of_type("presence", std::chrono::milliseconds(2 * kGraceMs)));
  EXPECT_EQ(presence(watcher, "pb-subject").json()["state"], "online");
  phone->close();
  auto offline = watching->next_of_type("presence", 10s);
  ASSERT_TRUE(offline);
  EXPECT_EQ((*offline)["state"], "offline");
}

TEST_F(PresenceStreamTest, AHiddenUserIsOfflineToOthersWithoutLastSeen) {
  Pair made = pair("pc");
  const std::string subject = made.subject, watcher = made.watcher;
  auto& watching = made.watching;
  auto device = stream(subject, 2);
  ASSERT_TRUE(watching->next_of_type("presence", 10s));

  auto patch = [&](const std::string& body) {
    return http_request(port(2), "PATCH", "/v1/users/pc-subject", body, bearer(subject));
  };
  expect_api_error(patch(R"({"presence_hidden":"yes"})"), 400, "invalid_field", "presence_hidden");
  HttpResult hidden = patch(R"({"presence_hidden":true})");
  ASSERT_EQ(hidden.status, 200) << hidden.body;
  EXPECT_EQ(hidden.json()["presence_hidden"], true);
  auto gone = watching->next_of_type("presence", 10s);
  ASSERT_TRUE(gone);
  EXPECT_EQ(*gone, presence_frame("pc-subject", "offline", nullptr));
  EXPECT_EQ(presence(watcher, "pc-subject").json(),
            (json{{"user_id", "pc-subject"}, {"state", "offline"}, {"last_seen_at", nullptr}}));
  EXPECT_EQ(presence(subject, "pc-subject").json()["state"], "online");  // as it is, to itself

  device->close();  // while hidden: nothing to see
  EXPECT_FALSE(watching->next_of_type("presence", std::chrono::milliseconds(2 * kGraceMs)));
  EXPECT_TRUE(presence(watcher, "pc-subject").json()["last_seen_at"].is_null());
  device = stream(subject, 2);
  await_own_state(subject, "pc-subject", "online");
  ASSERT_EQ(patch(R"({"presence_hidden":false})").status, 200);
  auto back = watching->next_of_type("presence", 10s);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, presence_frame("pc-subject", "online", nullptr));
}

TEST_F(PresenceStreamTest, TypingReachesTheOtherMembersOncePerIntervalAndNotTheTyperOrStrangers) {
  const std::string typer = user("pd-typer"), reader = user("pd-reader"),
                    stranger = user("pd-stranger");
  const std::string id = cluster_->create_conversation(typer, {"pd-reader"});
  ASSERT_FALSE(id.empty());
  auto reading = stream(reader, 1);
  auto reading_too = stream(reader, 2);
  auto typing = stream(typer, 2);
  auto strange = stream(stranger, 1);

  typing->send(json{{"type", "typing"}, {"conversation_id", id}});
  const json expected{{"type", "typing"}, {"conversation_id", id}, {"user_id", "pd-typer"}};
  for (auto* device : {reading.get(), reading_too.get()}) {
    auto frame = device->next_of_type("typing", 10s);
    ASSERT_TRUE(frame);
    EXPECT_EQ(*frame, expected);
  }
  // Again at once, and from another device of the typer: within the interval, dropped.
  typing->send(json{{"type", "typing"}, {"conversation_id", id}});
  auto other_device = stream(typer, 1);
  other_device->send(json{{"type", "typing"}, {"conversation_id", id}});
  EXPECT_FALSE(reading->next_of_type("typing", 1500ms));
  EXPECT_FALSE(typing->next_of_type("typing", 100ms));  // never to the typer itself

  // A non-member is refused, and its frame goes nowhere.
  strange->send(json{{"type", "typing"}, {"conversation_id", id}});
  auto refused = strange->next_of_type("error", 10s);
  ASSERT_TRUE(refused);
  EXPECT_EQ((*refused)["error"]["code"], "conversation_not_found");
  EXPECT_FALSE(reading_too->next_of_type("typing", 500ms));
  typing->send(json{{"type", "typing"}});
  auto invalid = typing->next_of_type("error", 10s);
  ASSERT_TRUE(invalid);
  EXPECT_EQ((*invalid)["error"]["code"], "invalid_frame");

  // After the interval (3 s from the first) the next one goes through.
  std::this_thread::sleep_for(1500ms);
  typing->send(json{{"type", "typing"}, {"conversation_id", id}});
  EXPECT_TRUE(reading->next_of_type("typing", 10s));
}

// Last: it kills a frontend (and starts it again for any test after it).
TEST_F(PresenceStreamTest, ACrashedFrontendsUsersGoOfflineAfterItsLease) {
  Pair made = pair("pe");
  const std::string subject = made.subject, watcher = made.watcher;
  auto& watching = made.watching;
  auto device = stream(subject, 2);
  ASSERT_TRUE(watching->next_of_type("presence", 10s));
  const std::int64_t killed_at_ms = ids::now_ms();
  cluster_->kill_node("frontend-2");  // no goodbye: only the lease ends it
  auto offline = watching->next_of_type("presence", 20s);
  ASSERT_TRUE(offline);
  EXPECT_EQ((*offline)["state"], "offline");
  // Last seen: the lease's last renewal, before the crash.
  ASSERT_TRUE((*offline)["last_seen_at"].is_number_integer()) << offline->dump();
  EXPECT_LE((*offline)["last_seen_at"].get<std::int64_t>(), killed_at_ms);
  EXPECT_EQ(presence(watcher, "pe-subject").json()["state"], "offline");
  start_second_frontend();
}

}  // namespace
}  // namespace chat4all::testing
