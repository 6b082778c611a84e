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

}  // namespace
}  // namespace chat4all::testing
