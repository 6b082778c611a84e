// The connector's channel host (nodes/connector/channel_host.h) against a fake router: a ZMQ
// ROUTER bound on loopback in the test, and a scripted adapter registered here ("test-pigeon").
// No storage runs: the host's storage steps go to a port nothing listens on and fail at once,
// which the results these tests look at do not depend on.
#include "nodes/connector/channel_host.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/codec.h"
#include "common/ids.h"
#include "common/transport.h"
#include "tests/unit/fake_router.h"

namespace chat4all::connector {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test_support::FakeRouter;

// What the pigeon adapter does, set by the test. One script per process: the tests of this file
// reset it first.
struct PigeonScript {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<SendResult> results;  // next sends' results; empty: accepted "p-<n>"
  bool hold = false;               // sends wait until released (or hold_ms_max passes)
  int held = 0;                    // sends waiting now
  int sends = 0;
  static constexpr auto kHoldMax = 2s;

  void reset() {
    std::lock_guard lock(mutex);
    results.clear();
    hold = false;
    held = 0;
    sends = 0;
  }
  void release() {
    std::lock_guard lock(mutex);
    hold = false;
    changed.notify_all();
  }
  bool wait_held(int count) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, 3s, [&] { return held >= count; });
  }
  int send_count() {
    std::lock_guard lock(mutex);
    return sends;
  }
};

PigeonScript& script() {
  static PigeonScript instance;
  return instance;
}

class PigeonAdapter : public ChannelAdapter {
 public:
  explicit PigeonAdapter(const ChannelSpec&) {}
  void connect() override {}
  SendResult send_message(const OutboundMessage&) override { return send(); }
  SendResult send_file(const OutboundMessage&) override { return send(); }
  // A body "message:<address>:<text>" carries one inbound message; any other body none.
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override {
    if (request.body.rfind("message:", 0) == 0) {
      InboundEvent event;
      event.kind = InboundEvent::Kind::kMessage;
      event.address = request.body.substr(8, request.body.find(':', 8) - 8);
      event.provider_message_id = "in-1";
      event.text = request.body.substr(request.body.find(':', 8) + 1);
      events.push_back(event);
    }
    return {200, "text/plain", "pigeon-ok"};
  }

 private:
  SendResult send() {
    PigeonScript& s = script();
    std::unique_lock lock(s.mutex);
    const int n = ++s.sends;
    if (s.hold) {
      ++s.held;
      s.changed.notify_all();
      s.changed.wait_for(lock, PigeonScript::kHoldMax, [&] { return !s.hold; });
      --s.held;
    }
    if (!s.results.empty()) {
      SendResult result = s.results.front();
      s.results.pop_front();
      return result;
    }
    SendResult accepted;
    accepted.outcome = SendResult::Outcome::kAccepted;
    accepted.provider_message_id = "p-" + std::to_string(n);
    return accepted;
  }
};

CHAT4ALL_REGISTER_ADAPTER("test-pigeon", PigeonAdapter)

SendResult retry_result() {
  SendResult result;
  result.outcome = SendResult::Outcome::kRetry;
  result.status_code = 503;
  result.error = "platform down";
  result.retry_after_ms = 700;
  return result;
}

SendResult rejected_result() {
  SendResult result;
  result.outcome = SendResult::Outcome::kRejected;
  result.status_code = 400;
  result.error = "bad recipient";
  return result;
}

wire::DeliveryJob job(const std::string& job_id, const std::string& delivery_id,
                      const std::string& channel = "pigeon") {
  wire::DeliveryJob job;
  job.job_id = job_id;
  job.delivery_id = delivery_id;
  job.tenant_id = "t1";
  job.conversation_id = "c1";
  job.seq = 1;
  job.message_id = "m1";
  job.sender_id = "alice";
  job.recipient_id = "bob";
  job.channel = channel;
  job.address = "+5511999990000";
  job.payload = {"text", "hello", ""};
  return job;
}

class ChannelHostTest : public ::testing::Test {
 protected:
  ChannelHostTest() {
    script().reset();
    NodeSpec router;
    router.name = "router-1";
    router.role = NodeRole::kRouter;
    router.host = "127.0.0.1";
    router.endpoints["channels"] = router_.port();
    NodeSpec connector;
    connector.name = "connector-1";
    connector.role = NodeRole::kConnector;
    connector.host = "127.0.0.1";
    connector.channels = {"pigeon"};
    topology_.nodes = {router, connector};
    ChannelSpec pigeon;
    pigeon.name = "pigeon";
    pigeon.adapter = "test-pigeon";
    pigeon.tenant_id = "t1";
    pigeon.concurrency = 2;
    pigeon.breaker_failures = 2;
    pigeon.breaker_open_ms = 60'000;
    ChannelSpec other = pigeon;  // not hosted by connector-1
    other.name = "other";
    topology_.channels = {pigeon, other};
  }
  ~ChannelHostTest() override { script().release(); }

  void start() {
    ChannelHostOptions options;
    options.status_interval_ms = 100;
    options.storage_timeout_ms = 300;
    host_.emplace(topology_, topology_.nodes[1], routers_, options);
    ASSERT_EQ(host_->hosted_channels(), 1u);
    host_->start();
    // The first status also tells the router the connector's routing id.
    ASSERT_TRUE(router_.status_where([](const wire::ConnectorStatus& s) {
      return s.channels.size() == 1 && s.channels[0].connected;
    }));
  }

  wire::DeliveryResult result_of(const wire::DeliveryJob& sent) {
    router_.send_job(sent);
    auto result = router_.receive<wire::DeliveryResult>(wire::MessageType::kDeliveryResult);
    EXPECT_TRUE(result) << "no result for " << sent.job_id;
    if (!result) return {};
    EXPECT_EQ(result->job_id, sent.job_id);
    return *result;
  }

  FakeRouter router_;
  Topology topology_;
  // Storage is nowhere: every storage step fails at once (no router connected).
  RouterClient routers_{{"tcp://127.0.0.1:1"}, 300, 100};
  std::optional<ChannelHost> host_;
};

TEST_F(ChannelHostTest, StatusNamesTheConnectorAndItsChannels) {
  start();
  EXPECT_EQ(router_.peer(), "connector-1");
  auto status = router_.receive<wire::ConnectorStatus>(wire::MessageType::kConnectorStatus);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->connector, "connector-1");
  ASSERT_EQ(status->channels.size(), 1u);
  EXPECT_EQ(status->channels[0].channel, "pigeon");
  EXPECT_EQ(status->channels[0].slots, 2u);
  EXPECT_EQ(status->channels[0].breaker, "closed");
  EXPECT_TRUE(status->channels[0].connected);
}

TEST_F(ChannelHostTest, ResultsMapTheAdaptersOutcomes) {
  start();
  {
    std::lock_guard lock(script().mutex);
    script().results = {retry_result(), rejected_result()};
  }
  auto retry = result_of(job("j1", "m1/bob/pigeon"));
  EXPECT_EQ(retry.outcome, "retry");
  EXPECT_EQ(retry.connector, "connector-1");
  EXPECT_EQ(retry.status_code, 503);
  EXPECT_EQ(retry.error, "platform down");
  EXPECT_EQ(retry.retry_after_ms, 700u);

  auto rejected = result_of(job("j2", "m1/bob/pigeon"));
  EXPECT_EQ(rejected.outcome, "rejected");
  EXPECT_EQ(rejected.status_code, 400);
  EXPECT_EQ(rejected.error, "bad recipient");
  EXPECT_EQ(script().send_count(), 2);

  auto not_hosted = result_of(job("j3", "m1/bob/other", "other"));
  EXPECT_EQ(not_hosted.outcome, "busy");
  EXPECT_EQ(script().send_count(), 2);
}

TEST_F(ChannelHostTest, AThirdJobWhileTwoSendsAreHeldIsBusy) {
  start();
  {
    std::lock_guard lock(script().mutex);
    script().hold = true;
  }
  router_.send_job(job("j1", "m1/bob/pigeon"));
  router_.send_job(job("j2", "m2/bob/pigeon"));
  ASSERT_TRUE(script().wait_held(2));
  auto busy = result_of(job("j3", "m3/bob/pigeon"));
  EXPECT_EQ(busy.outcome, "busy");
  EXPECT_EQ(script().send_count(), 2);

  script().release();
  std::vector<std::string> accepted;
  for (int i = 0; i < 2; ++i) {
    auto result = router_.receive<wire::DeliveryResult>(wire::MessageType::kDeliveryResult);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->outcome, "accepted");
    accepted.push_back(result->job_id);
  }
  std::sort(accepted.begin(), accepted.end());
  EXPECT_EQ(accepted, (std::vector<std::string>{"j1", "j2"}));
  // Slots are free again.
  EXPECT_EQ(result_of(job("j4", "m4/bob/pigeon")).outcome, "accepted");
}

TEST_F(ChannelHostTest, TwoFailuresOpenTheBreaker) {
  start();
  {
    std::lock_guard lock(script().mutex);
    script().results = {retry_result(), retry_result()};
  }
  EXPECT_EQ(result_of(job("j1", "m1/bob/pigeon")).outcome, "retry");
  EXPECT_EQ(result_of(job("j2", "m1/bob/pigeon")).outcome, "retry");
  EXPECT_TRUE(router_.status_where([](const wire::ConnectorStatus& s) {
    return s.channels.size() == 1 && s.channels[0].breaker == "open";
  }));
  auto refused = result_of(job("j3", "m1/bob/pigeon"));
  EXPECT_EQ(refused.outcome, "busy");
  EXPECT_EQ(script().send_count(), 2);
}

TEST_F(ChannelHostTest, ADeliveryAcceptedOnceIsNotSentAgain) {
  start();
  auto first = result_of(job("j1", "m1/bob/pigeon"));
  EXPECT_EQ(first.outcome, "accepted");
  EXPECT_EQ(first.provider_message_id, "p-1");
  auto again = result_of(job("j2", "m1/bob/pigeon"));
  EXPECT_EQ(again.outcome, "accepted");
  EXPECT_EQ(again.provider_message_id, "p-1");
  EXPECT_EQ(script().send_count(), 1);
}

TEST_F(ChannelHostTest, StopReturnsPromptlyWithASendHeld) {
  start();
  {
    std::lock_guard lock(script().mutex);
    script().hold = true;
  }
  router_.send_job(job("j1", "m1/bob/pigeon"));
  ASSERT_TRUE(script().wait_held(1));
  const auto started = Clock::now();
  host_->stop();
  // The held send is waited for (bounded by the adapter's own timeout, kHoldMax here), never
  // longer.
  EXPECT_LT(Clock::now() - started, PigeonScript::kHoldMax + 1s);
  // Its result is not sent after stop.
  EXPECT_FALSE(router_.receive<wire::DeliveryResult>(wire::MessageType::kDeliveryResult, 200ms));
}

// One request on a fresh loopback connection; the status code and body of the answer.
std::pair<int, std::string> http_post(std::uint16_t port, const std::string& target,
                                      const std::string& body) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return {0, ""};
  }
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const std::string request = "POST " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, n);
  ::close(fd);
  if (answer.size() < 12) return {0, answer};
  const auto body_at = answer.find("\r\n\r\n");
  return {std::stoi(answer.substr(9, 3)),
          body_at == std::string::npos ? "" : answer.substr(body_at + 4)};
}

TEST_F(ChannelHostTest, WebhooksReachTheirChannelsAdapter) {
  topology_.nodes[1].endpoints["http"] = 0;  // a free port
  start();
  const std::uint16_t port = host_->http_port();
  ASSERT_NE(port, 0);
  EXPECT_EQ(http_post(port, "/channels/nowhere/webhook", "").first, 404);
  EXPECT_EQ(http_post(port, "/channels/other/webhook", "").first, 404);  // not hosted here
  // No events: the adapter's answer as it is.
  EXPECT_EQ(http_post(port, "/channels/pigeon/webhook?x=1", "ping"),
            (std::pair<int, std::string>{200, "pigeon-ok"}));
  // An event that cannot be stored (no storage runs): 503, so that the platform sends it again.
  EXPECT_EQ(http_post(port, "/channels/pigeon/webhook", "message:+5511:hi").first, 503);
}

TEST(InboundMessageIdTest, KeepsShortIdsAndHashesTheRest) {
  EXPECT_EQ(inbound_message_id("telegram", "12345"), "telegram-12345");
  const std::string odd = inbound_message_id("whatsapp", "wamid.HBg=+/x");
  EXPECT_LE(odd.size(), 64u);
  for (char c : odd)
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')
        << odd;
  EXPECT_NE(odd, inbound_message_id("whatsapp", "wamid.HBg=+/y"));
  EXPECT_EQ(odd, inbound_message_id("whatsapp", "wamid.HBg=+/x"));
  const std::string long_a = inbound_message_id("instagram", std::string(100, 'a') + "1");
  const std::string long_b = inbound_message_id("instagram", std::string(100, 'a') + "2");
  EXPECT_EQ(long_a.size(), 64u);
  EXPECT_NE(long_a, long_b);
}

}  // namespace
}  // namespace chat4all::connector
