// Outside channels end to end: a real cluster with connectors, against the
// simulated provider (tools/provider-sim) on loopback. Each test is bounded:
// every wait polls with a deadline and fails with the simulator's sent lists
// and the tails of the logs.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "nodes/connector/graph_api.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Small backoffs and a quick breaker, so that outages heal within a test.
constexpr const char* kChannelsYaml = R"(channels:
  - name: whatsapp
    tenant: test
    settings:
      base_url: "{{PROVIDER}}"
      phone_number_id: "100200300"
      access_token: sim-token
      app_secret: sim-app-secret
      verify_token: test-verify
    attempts_max: 100
    backoff_initial_ms: 100
    backoff_max_ms: 1000
    timeout_ms: 5000
    breaker_failures: 3
    breaker_open_ms: 500
  - name: instagram
    tenant: test
    settings:
      base_url: "{{PROVIDER}}"
      ig_user_id: me
      access_token: sim-token
      app_secret: sim-app-secret
      verify_token: test-verify
    attempts_max: 100
    backoff_initial_ms: 100
    backoff_max_ms: 1000
    timeout_ms: 5000
    breaker_failures: 3
    breaker_open_ms: 500
  - name: telegram
    tenant: test
    settings:
      base_url: "{{PROVIDER}}"
      bot_token: "123456:sim-token"
      updates: polling
      poll_timeout_s: "1"
    attempts_max: 100
    backoff_initial_ms: 100
    backoff_max_ms: 1000
    timeout_ms: 5000
    breaker_failures: 3
    breaker_open_ms: 500
)";

// kChannelsYaml with Telegram taking its updates by webhook with a secret token. The webhook URL
// is only told to the simulator (the tests post to the connector themselves).
std::string telegram_webhook_yaml() {
  std::string yaml = kChannelsYaml;
  const std::string polling = "      updates: polling\n      poll_timeout_s: \"1\"\n";
  const std::size_t at = yaml.find(polling);
  if (at == std::string::npos) throw std::logic_error("kChannelsYaml changed");
  yaml.replace(at, polling.size(),
               "      updates: webhook\n"
               "      webhook_url: \"http://127.0.0.1:9/unused\"\n"
               "      secret_token: tg-secret_123\n");
  return yaml;
}

// Linked as people write numbers; stored as WhatsApp reports it (wa_id): digits.
constexpr const char* kWaPhone = "+55 (11) 90000-0001";
constexpr const char* kWaDigits = "5511900000001";
constexpr const char* kIgsid = "17841400000002";
constexpr const char* kTelegramChat = "424242";

// Polls `done` until it is true or `timeout` passed; true if it became true.
template <class Done>
bool eventually(Done done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = 50ms) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::string tail(const std::string& text, std::size_t bytes = 3000) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// A loopback HTTP receiver for the tenant's webhooks: answers every request
// 200 and keeps the JSON bodies. One thread; stopped and joined when destroyed.
class WebhookReceiver {
 public:
  WebhookReceiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(fd_, 16) != 0)
      throw std::runtime_error("webhook receiver cannot listen");
    socklen_t length = sizeof address;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  std::vector<json> events() const {
    std::lock_guard lock(mutex_);
    return events_;
  }
  bool has(const std::string& type, const std::string& message_id) const {
    for (const auto& event : events())
      if (event.value("type", "") == type && event.contains("data") &&
          event["data"].value("message_id", "") == message_id)
        return true;
    return false;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd ready{fd_, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      const int client = ::accept(fd_, nullptr, nullptr);
      if (client < 0) continue;
      timeval timeout{2, 0};
      ::setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      std::string request;
      char buffer[4096];
      std::size_t body_at = std::string::npos;
      std::size_t content_length = 0;
      while (true) {
        const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<std::size_t>(n));
        if (body_at == std::string::npos) {
          const auto end = request.find("\r\n\r\n");
          if (end == std::string::npos) continue;
          body_at = end + 4;
          std::string head = request.substr(0, end);
          std::transform(head.begin(), head.end(), head.begin(),
                         [](unsigned char c) { return std::tolower(c); });
          const auto at = head.find("content-length:");
          if (at != std::string::npos) content_length = std::stoul(head.substr(at + 15));
        }
        if (request.size() >= body_at + content_length) break;
      }
      static const std::string kOk =
          "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      ::send(client, kOk.data(), kOk.size(), MSG_NOSIGNAL);
      ::close(client);
      if (body_at == std::string::npos) continue;
      json body = json::parse(request.substr(body_at), nullptr, false);
      if (body.is_discarded()) continue;
      std::lock_guard lock(mutex_);
      events_.push_back(std::move(body));
    }
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<json> events_;
};

class ChannelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ProviderSim::available()) GTEST_SKIP() << "node is not on PATH: no provider simulator";
  }

  // A cluster of one storage node (fast to start) with `connectors`
  // connectors and the simulator. `one_by_one`: every node its own process
  // (so that one can be killed), else `chat4all up`.
  void start(int connectors = 1, ProviderSimOptions sim_options = {}, bool one_by_one = false,
             const std::string& channels_yaml = kChannelsYaml) {
    ClusterOptions options;
    options.storage_nodes = 1;
    options.replication_factor = 1;
    options.connectors = connectors;
    options.channels_yaml = channels_yaml;
    cluster_ = std::make_unique<TestCluster>(options);
    sim_ = std::make_unique<ProviderSim>(*cluster_, sim_options);
    one_by_one_ = one_by_one;
    if (one_by_one) {
      nodes_ = {"storage-1", "router-1", "frontend-1"};
      for (int i = 1; i <= connectors; ++i) nodes_.push_back("connector-" + std::to_string(i));
      for (const auto& node : nodes_) cluster_->start_node(node);
    } else {
      nodes_ = {"up"};
      cluster_->start_all();
    }
    ASSERT_TRUE(cluster_->wait_ready()) << logs();
    for (int i = 1; i <= connectors; ++i) {
      const std::string name = "connector-" + std::to_string(i);
      ASSERT_TRUE(eventually(
          [&] {
            return http_request(cluster_->port_of(name, "metrics"), "GET", "/metrics", "", {}, 1s)
                       .status == 200;
          },
          10s))
          << name << " does not answer\n"
          << logs();
    }
    admin_ = cluster_->admin_token();
    ASSERT_FALSE(admin_.empty());
  }

  // Creates `user_id` with `identities` ({channel, address}) and returns its token.
  std::string user(const std::string& user_id, const json& identities) {
    const auto created = http_request(
        cluster_->http_port(), "POST", "/v1/users",
        json{{"user_id", user_id}, {"password", kPassword}, {"identities", identities}}.dump(),
        bearer(admin_));
    EXPECT_EQ(created.status, 201) << created.body;
    const std::string token = cluster_->token(user_id);
    EXPECT_FALSE(token.empty());
    return token;
  }

  HttpResult call(const std::string& method, const std::string& target, const std::string& token,
                  const json& body = nullptr) {
    return http_request(cluster_->http_port(), method, target, body.is_null() ? "" : body.dump(),
                        bearer(token));
  }

  // POST /v1/messages with `channels`; the message id ("" on failure).
  std::string send(const std::string& token, const std::string& conversation,
                   const std::string& text, const json& channels = nullptr) {
    json body = {{"conversation_id", conversation},
                 {"payload", {{"type", "text"}, {"text", text}}}};
    if (!channels.is_null()) body["channels"] = channels;
    const auto result = call("POST", "/v1/messages", token, body);
    EXPECT_EQ(result.status, 202) << result.body;
    return result.status == 202 ? result.json().value("message_id", "") : "";
  }

  // The sent list of `platform` to `to`, waited for (bounded) until it holds `count` texts.
  std::vector<std::string> wait_sent(const std::string& platform, const std::string& to,
                                     std::size_t count, std::chrono::milliseconds timeout) {
    std::vector<std::string> texts;
    eventually(
        [&] {
          texts = sim_->sent_texts(platform, to);
          return texts.size() >= count;
        },
        timeout, 100ms);
    return texts;
  }

  // The state of `recipient` in GET /v1/messages/{id}, with its history.
  json recipient_state(const std::string& message_id, const std::string& recipient) {
    const auto got = call("GET", "/v1/messages/" + message_id, admin_);
    if (got.status != 200) return nullptr;
    const json body = got.json();  // kept: a range-for over got.json()["states"] would dangle
    for (const auto& state : body["states"])
      if (state.value("recipient_id", "") == recipient) return state;
    return nullptr;
  }

  // A message in `conversation` whose text is `text`, as `token` reads the history.
  json find_in_history(const std::string& token, const std::string& conversation,
                       const std::string& text) {
    const auto page = cluster_->history(token, conversation, "limit=100");
    if (page.status != 200) return nullptr;
    const json body = page.json();
    for (const auto& message : body["messages"])
      if (message["payload"].value("text", "") == text) return message;
    return nullptr;
  }

  // What a failure message needs: the simulator's lists and stats, and log tails.
  std::string logs() const {
    std::string out;
    if (sim_) {
      out += "--- simulator stats: " + sim_->get("/_sim/stats").body + "\n";
      for (const char* platform : {"whatsapp", "instagram", "telegram"})
        out += std::string("--- sent on ") + platform + ": " +
               tail(sim_->get(std::string("/_sim/") + platform + "/sent").body, 1500) + "\n";
      out += "--- provider-sim log:\n" + tail(sim_->read_log(), 1500) + "\n";
    }
    if (cluster_)
      for (const auto& node : nodes_)
        out += "--- " + node + " log:\n" + tail(cluster_->read_log(node)) + "\n";
    return out;
  }

  std::unique_ptr<TestCluster> cluster_;
  std::unique_ptr<ProviderSim> sim_;
  std::vector<std::string> nodes_;
  bool one_by_one_ = false;
  std::string admin_;
};

json identity(const std::string& channel, const std::string& address) {
  return json::array({{{"channel", channel}, {"address", address}}});
}

TEST_F(ChannelsTest, InternalChatStillWorksWithChannelsConfigured) {
  ASSERT_NO_FATAL_FAILURE(start());
  // carol is on WhatsApp too; a message for "internal" only must not go there.
  const std::string carol = user("carol", identity("whatsapp", kWaPhone));
  const std::string alice = cluster_->token("alice");
  const std::string conversation = cluster_->create_conversation(alice, {"bob", "carol"});
  ASSERT_FALSE(conversation.empty());
  const std::string id = send(alice, conversation, "internal only", json::array({"internal"}));
  ASSERT_FALSE(id.empty());
  const std::string bob = cluster_->token("bob");
  // 202 means accepted: it is stored a moment later.
  EXPECT_TRUE(eventually(
      [&] { return find_in_history(bob, conversation, "internal only").is_object(); }, 5s))
      << cluster_->history(bob, conversation).body;
  EXPECT_EQ(call("GET", "/v1/messages/" + id, bob).status, 200);
  // Nothing reaches the platform: give a send time to happen, then look.
  std::this_thread::sleep_for(1500ms);
  const json stats = sim_->get("/_sim/stats").json();
  for (const char* platform : {"whatsapp", "instagram", "telegram"})
    EXPECT_EQ(
        stats[platform].value("sends_accepted", -1) + stats[platform].value("sends_failed", 0), 0)
        << platform << "\n"
        << logs();
}

TEST_F(ChannelsTest, WhatsAppToInstagramAcrossPlatformsWithStatesAndWebhooks) {
  ASSERT_NO_FATAL_FAILURE(start());
  WebhookReceiver receiver;
  const auto hook =
      call("POST", "/v1/webhooks", admin_,
           {{"url", receiver.url()}, {"events", {"message.delivered", "message.read"}}});
  ASSERT_EQ(hook.status, 201) << hook.body;
  const std::string wa = user("wa", identity("whatsapp", kWaPhone));
  const std::string ig = user("ig", identity("instagram", kIgsid));
  const std::string conversation = cluster_->create_conversation(wa, {"ig"}, "private");
  ASSERT_FALSE(conversation.empty());

  // A WhatsApp user writes in: the message joins the conversation as wa's ...
  const auto inbound =
      sim_->post("/_sim/whatsapp/inbound", {{"from", kWaDigits}, {"text", "hola from whatsapp"}});
  ASSERT_EQ(inbound.status, 200) << inbound.body;
  EXPECT_EQ(inbound.json()["callback_status"], 200) << inbound.body << "\n" << logs();
  json message;
  ASSERT_TRUE(eventually(
      [&] {
        message = find_in_history(ig, conversation, "hola from whatsapp");
        return message.is_object();
      },
      10s))
      << "the inbound WhatsApp message is not in the conversation\n"
      << logs();
  EXPECT_EQ(message["sender_id"], "wa");
  const std::string id = message["message_id"];

  // ... and goes out to ig on Instagram.
  const auto texts = wait_sent("instagram", kIgsid, 1, 10s);
  ASSERT_EQ(texts, std::vector<std::string>{"hola from whatsapp"}) << logs();
  const json sent = sim_->get(std::string("/_sim/instagram/sent?to=") + kIgsid).json();
  const std::string mid = sent["messages"][0]["id"];

  // The platform's delivery report makes it DELIVERED for ig, the read report READ.
  ASSERT_TRUE(eventually(
      [&] {
        const json state = recipient_state(id, "ig");
        return state.is_object() && state["state"] == "DELIVERED";
      },
      10s))
      << recipient_state(id, "ig").dump() << "\n"
      << logs();
  const auto read = sim_->post("/_sim/instagram/read", {{"to", kIgsid}, {"id", mid}});
  ASSERT_EQ(read.status, 200) << read.body;
  ASSERT_TRUE(eventually(
      [&] {
        const json state = recipient_state(id, "ig");
        return state.is_object() && state["state"] == "READ";
      },
      10s))
      << recipient_state(id, "ig").dump() << "\n"
      << logs();
  // Held in a local: a range-for over a member of a temporary would dangle.
  const json final_state = recipient_state(id, "ig");
  std::vector<std::string> history;
  for (const auto& change : final_state["history"]) history.push_back(change["state"]);
  const std::vector<std::string> expected = {"SENT", "DELIVERED", "READ"};
  EXPECT_EQ(history, expected);

  // The tenant's webhook heard both.
  EXPECT_TRUE(eventually(
      [&] { return receiver.has("message.delivered", id) && receiver.has("message.read", id); },
      15s))
      << json(receiver.events()).dump() << "\n"
      << logs();

  // ig answers on WhatsApp only: it reaches the WhatsApp number.
  ASSERT_FALSE(send(ig, conversation, "hi back on whatsapp", json::array({"whatsapp"})).empty());
  const auto back = wait_sent("whatsapp", kWaDigits, 1, 10s);
  EXPECT_EQ(back, std::vector<std::string>{"hi back on whatsapp"}) << logs();
}

TEST_F(ChannelsTest, TelegramThroughTheBotApi) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string tg = user("tg", identity("telegram", kTelegramChat));
  const std::string alice = cluster_->token("alice");
  const std::string conversation = cluster_->create_conversation(alice, {"tg"}, "private");
  ASSERT_FALSE(conversation.empty());

  const std::string id = send(alice, conversation, "hello telegram");
  ASSERT_FALSE(id.empty());
  const auto texts = wait_sent("telegram", kTelegramChat, 1, 10s);
  ASSERT_EQ(texts, std::vector<std::string>{"hello telegram"}) << logs();
  // The Bot API reports no deliveries: an accepted send is the delivery.
  EXPECT_TRUE(eventually(
      [&] {
        const json state = recipient_state(id, "tg");
        return state.is_object() && state["state"] == "DELIVERED";
      },
      10s))
      << call("GET", "/v1/messages/" + id, admin_).body << "\n"
      << logs();

  // A Telegram user writes in (the adapter polls getUpdates).
  const auto inbound = sim_->post("/_sim/telegram/inbound",
                                  {{"chat_id", std::stoll(kTelegramChat)}, {"text", "from tg"}});
  ASSERT_EQ(inbound.status, 200) << inbound.body;
  json message;
  EXPECT_TRUE(eventually(
      [&] {
        message = find_in_history(alice, conversation, "from tg");
        return message.is_object();
      },
      10s))
      << "the inbound Telegram message is not in the conversation\n"
      << cluster_->history(alice, conversation).body << "\n"
      << logs();
  if (message.is_object()) {
    EXPECT_EQ(message["sender_id"], "tg");
  }
}

TEST_F(ChannelsTest, AMissingIdentityIsReported) {
  ASSERT_NO_FATAL_FAILURE(start());
  user("wa", identity("whatsapp", kWaPhone));
  const std::string alice = cluster_->token("alice");
  const std::string conversation = cluster_->create_conversation(alice, {"wa"}, "private");
  ASSERT_FALSE(conversation.empty());
  const std::string id =
      send(alice, conversation, "whatsapp yes, telegram no", json::array({"whatsapp", "telegram"}));
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(wait_sent("whatsapp", kWaDigits, 1, 10s),
            std::vector<std::string>{"whatsapp yes, telegram no"})
      << logs();
  EXPECT_TRUE(sim_->sent_texts("telegram", "").empty());

  json deliveries;
  EXPECT_TRUE(eventually(
      [&] {
        const auto got = call("GET", "/v1/messages/" + id + "/deliveries", alice);
        deliveries = got.json();
        return got.status == 200 && got.body.find("no_identity") != std::string::npos;
      },
      10s))
      << deliveries.dump() << "\n"
      << logs();
}

TEST_F(ChannelsTest, AnOutageIsRetriedAndEveryMessageArrivesOnceInOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  user("wa", identity("whatsapp", kWaPhone));
  const std::string alice = cluster_->token("alice");
  const std::string conversation = cluster_->create_conversation(alice, {"wa"}, "private");
  ASSERT_FALSE(conversation.empty());
  ASSERT_EQ(sim_->post("/_sim/whatsapp/config", {{"down", true}}).status, 200);

  std::vector<std::string> expected;
  for (int i = 1; i <= 10; ++i) {
    expected.push_back("outage " + std::to_string(i));
    ASSERT_FALSE(send(alice, conversation, expected.back(), json::array({"whatsapp"})).empty());
  }
  // Sends fail while it is down (retried, then the breaker opens).
  ASSERT_TRUE(eventually(
      [&] { return sim_->get("/_sim/stats").json()["whatsapp"].value("sends_failed", 0) >= 3; },
      10s))
      << logs();
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(sim_->sent_texts("whatsapp", kWaDigits).empty());
  ASSERT_EQ(sim_->post("/_sim/whatsapp/config", {{"down", false}}).status, 200);

  const auto texts = wait_sent("whatsapp", kWaDigits, expected.size(), 20s);
  std::this_thread::sleep_for(1s);  // a duplicate would show up now
  EXPECT_EQ(sim_->sent_texts("whatsapp", kWaDigits), expected) << logs();
  (void)texts;
}

TEST_F(ChannelsTest, AKilledConnectorsDeliveriesArriveThroughTheOther) {
  ProviderSimOptions sim_options;
  sim_options.latency_ms = 1500;              // sends are in flight when the connector dies
  sim_options.callback_node = "connector-2";  // status webhooks go to the one that lives
  ASSERT_NO_FATAL_FAILURE(start(2, sim_options, /*one_by_one=*/true));
  user("wa", identity("whatsapp", kWaPhone));
  const std::string alice = cluster_->token("alice");
  const std::string conversation = cluster_->create_conversation(alice, {"wa"}, "private");
  ASSERT_FALSE(conversation.empty());

  std::vector<std::string> expected;
  for (int i = 1; i <= 6; ++i) {
    expected.push_back("failover " + std::to_string(i));
    ASSERT_FALSE(send(alice, conversation, expected.back(), json::array({"whatsapp"})).empty());
  }
  std::this_thread::sleep_for(700ms);  // the first sends are waiting on the platform
  cluster_->kill_node("connector-1");

  // Every message arrives (duplicates allowed for the ones in flight), first
  // arrivals in seq order.
  std::vector<std::string> texts;
  const bool all = eventually(
      [&] {
        texts = sim_->sent_texts("whatsapp", kWaDigits);
        for (const auto& text : expected)
          if (std::find(texts.begin(), texts.end(), text) == texts.end()) return false;
        return true;
      },
      30s, 200ms);
  ASSERT_TRUE(all) << json(texts).dump() << "\n" << logs();
  std::vector<std::string> first;
  for (const auto& text : texts)
    if (std::find(first.begin(), first.end(), text) == first.end()) first.push_back(text);
  EXPECT_EQ(first, expected) << json(texts).dump();
}

// A WhatsApp webhook carrying one inbound text message, as the platform posts it.
std::string whatsapp_message_webhook(const std::string& message_id, const std::string& text) {
  const json message = {{"from", kWaDigits},
                        {"id", message_id},
                        {"timestamp", "1700000000"},
                        {"type", "text"},
                        {"text", {{"body", text}}}};
  const json value = {{"messaging_product", "whatsapp"},
                      {"metadata", {{"phone_number_id", "100200300"}}},
                      {"contacts", {{{"wa_id", kWaDigits}}}},
                      {"messages", {message}}};
  return json{{"object", "whatsapp_business_account"},
              {"entry", {{{"id", "1"}, {"changes", {{{"field", "messages"}, {"value", value}}}}}}}}
      .dump();
}

// A Telegram update carrying one inbound text message.
std::string telegram_message_update(std::int64_t update_id, std::int64_t message_id,
                                    const std::string& text) {
  const std::int64_t chat = std::stoll(kTelegramChat);
  return json{{"update_id", update_id},
              {"message",
               {{"message_id", message_id},
                {"date", 1700000000},
                {"chat", {{"id", chat}, {"type", "private"}}},
                {"text", text}}}}
      .dump();
}

// The messages of `conversation` (as `token` reads them) whose text is `text`.
std::size_t count_in_history(TestCluster& cluster, const std::string& token,
                             const std::string& conversation, const std::string& text) {
  const auto page = cluster.history(token, conversation, "limit=100");
  const json body = page.json();
  std::size_t count = 0;
  for (const auto& message : body["messages"])
    if (message["payload"].value("text", "") == text) ++count;
  return count;
}

// What a stranger can post to the connector's webhook endpoint is refused before it is read,
// and what the platform posts twice is stored once.
TEST_F(ChannelsTest, StrangersWebhooksAreRefusedAndAReplayChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(start(1, {}, false, telegram_webhook_yaml()));
  const std::string wa = user("wa", identity("whatsapp", kWaPhone));
  const std::string tg = user("tg", identity("telegram", kTelegramChat));
  const std::string alice = cluster_->token("alice");
  const std::string wa_chat = cluster_->create_conversation(alice, {"wa"}, "private");
  const std::string tg_chat = cluster_->create_conversation(alice, {"tg"}, "private");
  ASSERT_FALSE(wa_chat.empty());
  ASSERT_FALSE(tg_chat.empty());
  const std::uint16_t port = cluster_->port_of("connector-1", "http");
  const std::string whatsapp = "/channels/whatsapp/webhook";
  const std::string telegram = "/channels/telegram/webhook";
  const std::map<std::string, std::string> json_type = {{"Content-Type", "application/json"}};
  auto with = [&](std::string name, std::string value) {
    auto headers = json_type;
    headers[std::move(name)] = std::move(value);
    return headers;
  };

  // WhatsApp: no signature, another key's signature, a signature of other bytes.
  const std::string forged = whatsapp_message_webhook("wamid.forged", "forged");
  EXPECT_EQ(http_request(port, "POST", whatsapp, forged, json_type).status, 401);
  EXPECT_EQ(http_request(
                port, "POST", whatsapp, forged,
                with("X-Hub-Signature-256", connector::hub_signature("not-the-app-secret", forged)))
                .status,
            401);
  const std::string genuine = whatsapp_message_webhook("wamid.genuine", "genuine");
  EXPECT_EQ(
      http_request(port, "POST", whatsapp, forged,
                   with("X-Hub-Signature-256", connector::hub_signature("sim-app-secret", genuine)))
          .status,
      401);
  // Telegram: no secret token, a wrong one.
  const std::string forged_update = telegram_message_update(900, 900, "forged");
  EXPECT_EQ(http_request(port, "POST", telegram, forged_update, json_type).status, 401);
  EXPECT_EQ(http_request(port, "POST", telegram, forged_update,
                         with("X-Telegram-Bot-Api-Secret-Token", "tg-secret_124"))
                .status,
            401);
  // A body over the bound, signed or not, is refused before it is read whole.
  const std::string huge(1024 * 1024 + 1, ' ');
  EXPECT_EQ(
      http_request(port, "POST", whatsapp, huge,
                   with("X-Hub-Signature-256", connector::hub_signature("sim-app-secret", huge)))
          .status,
      413);

  // The genuine webhooks, each delivered twice (the platforms retry; an attacker may replay).
  const auto signed_genuine =
      with("X-Hub-Signature-256", connector::hub_signature("sim-app-secret", genuine));
  const std::string update = telegram_message_update(901, 901, "genuine on telegram");
  const auto with_secret = with("X-Telegram-Bot-Api-Secret-Token", "tg-secret_123");
  for (int round = 1; round <= 2; ++round) {
    const auto wa_answer = http_request(port, "POST", whatsapp, genuine, signed_genuine);
    EXPECT_EQ(wa_answer.status, 200) << round << ": " << wa_answer.body << "\n" << logs();
    const auto tg_answer = http_request(port, "POST", telegram, update, with_secret);
    EXPECT_EQ(tg_answer.status, 200) << round << ": " << tg_answer.body << "\n" << logs();
  }
  // Each webhook is answered once its message is stored: it is there now, once.
  EXPECT_EQ(count_in_history(*cluster_, alice, wa_chat, "genuine"), 1u)
      << cluster_->history(alice, wa_chat).body;
  EXPECT_EQ(count_in_history(*cluster_, alice, tg_chat, "genuine on telegram"), 1u)
      << cluster_->history(alice, tg_chat).body;
  EXPECT_EQ(count_in_history(*cluster_, alice, wa_chat, "forged"), 0u);
  EXPECT_EQ(count_in_history(*cluster_, alice, tg_chat, "forged"), 0u);
  // Every refusal was counted, per channel.
  const std::string metrics =
      http_request(cluster_->port_of("connector-1", "metrics"), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("chat4all_connector_channel_webhooks_refused_total{channel=\"whatsapp\","
                         "reason=\"unverified\"} 3"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("chat4all_connector_channel_webhooks_refused_total{channel=\"telegram\","
                         "reason=\"unverified\"} 2"),
            std::string::npos)
      << metrics;
}

}  // namespace
}  // namespace chat4all::testing
