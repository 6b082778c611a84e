// The public API through a real topology: one frontend, one router, three
// storage nodes, each its own process on free loopback ports.
#include <gtest/gtest.h>

#include "common/auth.h"
#include "common/ids.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using nlohmann::json;

// One cluster for the whole suite: these tests only add conversations of
// their own, so they can share it and the suite stays fast.
class ApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new TestCluster();
    cluster_->start_all();
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->read_log("up");
    alice_ = cluster_->token("alice");
    ASSERT_FALSE(alice_.empty());
    conversation_ = cluster_->create_conversation(alice_, {"bob"});
    ASSERT_FALSE(conversation_.empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  static TestCluster* cluster_;
  static std::string alice_;
  static std::string conversation_;  // alice and bob's group, for tests that need any

  std::string new_conversation() {
    const std::string id = cluster_->create_conversation(alice_, {"bob"});
    EXPECT_FALSE(id.empty());
    return id;
  }

  HttpResult post_message(const std::string& body, const std::string& token = alice_) {
    return http_request(cluster_->http_port(), "POST", "/v1/messages", body, bearer(token));
  }
};

TestCluster* ApiTest::cluster_ = nullptr;
std::string ApiTest::alice_;
std::string ApiTest::conversation_;

TEST_F(ApiTest, TokenIsIssuedOnlyForRightPassword) {
  const auto port = cluster_->http_port();
  const std::map<std::string, std::string> json_type{{"Content-Type", "application/json"}};
  auto login = [&](const std::string& tenant, const std::string& user,
                   const std::string& password) {
    return http_request(
        port, "POST", "/v1/auth/token",
        json{{"tenant_id", tenant}, {"user_id", user}, {"password", password}}.dump(), json_type);
  };
  auto ok = login(kTenant, "bob", kPassword);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["token_type"], "Bearer");
  EXPECT_GT(ok.json()["expires_in"].get<int>(), 0);
  EXPECT_EQ(ok.json()["tenant_id"], kTenant);
  EXPECT_EQ(ok.json()["subject"], "bob");
  EXPECT_EQ(ok.json()["role"], "user");
  EXPECT_EQ(ok.headers["cache-control"], "no-store");

  // Wrong password, unknown user and unknown tenant: one answer.
  expect_api_error(login(kTenant, "bob", "wrong"), 401, "invalid_credentials");
  expect_api_error(login(kTenant, "mallory", kPassword), 401, "invalid_credentials");
  expect_api_error(login("nowhere", "bob", kPassword), 401, "invalid_credentials");
  // bob exists only in the first tenant.
  expect_api_error(login(kOtherTenant, "bob", kPassword), 401, "invalid_credentials");
  expect_api_error(http_request(port, "POST", "/v1/auth/token",
                                json{{"tenant_id", kTenant}, {"user_id", "bob"}}.dump(), json_type),
                   400, "missing_field", "password");
  expect_api_error(http_request(port, "POST", "/v1/auth/token", "{not json", json_type), 400,
                   "invalid_json");
}

TEST_F(ApiTest, AdminClientsGetAdminTokens) {
  const auto port = cluster_->http_port();
  auto login = [&](const std::string& client, const std::string& secret) {
    return http_request(port, "POST", "/v1/auth/token",
                        json{{"grant_type", "client_credentials"},
                             {"tenant_id", kTenant},
                             {"client_id", client},
                             {"client_secret", secret}}
                            .dump(),
                        {{"Content-Type", "application/json"}});
  };
  auto ok = login(admin_client_id(kTenant), kAdminSecret);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json()["role"], "admin");
  EXPECT_EQ(ok.json()["subject"], admin_client_id(kTenant));
  expect_api_error(login(admin_client_id(kTenant), "wrong"), 401, "invalid_credentials");
  expect_api_error(login("cl_nobody", kAdminSecret), 401, "invalid_credentials");
  // Another tenant's admin client is not this tenant's.
  expect_api_error(login(admin_client_id(kOtherTenant), kAdminSecret), 401, "invalid_credentials");
}

TEST_F(ApiTest, RefusesMissingExpiredMalformedAndForgedTokens) {
  const std::string body =
      json{{"conversation_id", conversation_}, {"payload", {{"type", "text"}, {"text", "hi"}}}}
          .dump();
  const auto port = cluster_->http_port();
  expect_api_error(
      http_request(port, "POST", "/v1/messages", body, {{"Content-Type", "application/json"}}), 401,
      "unauthorized");
  expect_api_error(post_message(body, "not-a-token"), 401, "unauthorized");

  // Tokens made with the cluster's own key, so only the property under test is wrong.
  const auto key =
      auth::load_or_create_token_key(cluster_->directory() / "data" / "secrets" / "token.key");
  const auth::TokenSigner signer(key);
  const std::int64_t now_s = ids::now_ms() / 1000;
  EXPECT_EQ(post_message(body, signer.issue("alice", now_s, 600, kTenant, "user")).status, 202);
  expect_api_error(post_message(body, signer.issue("alice", now_s - 7200, 60, kTenant, "user")),
                   401, "unauthorized");
  // A token of no tenant, or of one the topology does not have, names nothing.
  expect_api_error(post_message(body, signer.issue("alice", now_s, 600)), 401, "unauthorized");
  expect_api_error(post_message(body, signer.issue("alice", now_s, 600, "nowhere", "user")), 401,
                   "unauthorized");

  auth::TokenKey other_key{};
  other_key[0] = 1;
  expect_api_error(
      post_message(body, auth::TokenSigner(other_key).issue("alice", now_s, 600, kTenant, "user")),
      401, "unauthorized");

  const std::string claims = auth::base64url_encode(
      json{{"sub", "alice"}, {"ten", kTenant}, {"exp", now_s + 600}, {"iat", now_s}}.dump());
  expect_api_error(post_message(body, auth::base64url_encode(R"({"alg":"none","typ":"JWT"})") +
                                          "." + claims + "."),
                   401, "unauthorized");
  // A valid HS256 signature under a header that names another algorithm.
  const std::string genuine = signer.issue("alice", now_s, 600, kTenant, "user");
  const std::string swapped =
      auth::base64url_encode(R"({"alg":"HS512","typ":"JWT"})") + genuine.substr(genuine.find('.'));
  expect_api_error(post_message(body, swapped), 401, "unauthorized");
  // Signature of one token on the claims of another user.
  const std::string bob = signer.issue("bob", now_s, 600, kTenant, "user");
  const std::string forged = bob.substr(0, bob.rfind('.')) + genuine.substr(genuine.rfind('.'));
  expect_api_error(post_message(body, forged), 401, "unauthorized");
}

TEST_F(ApiTest, MessagesGetGapFreeSequenceAndPageInOrder) {
  const std::string conversation = new_conversation();
  for (int i = 1; i <= 25; ++i) {
    auto result = cluster_->send_text(alice_, conversation, "message " + std::to_string(i));
    ASSERT_EQ(result.status, 202) << result.body;
    const json body = result.json();
    EXPECT_EQ(body["status"], "accepted");
    EXPECT_EQ(body["conversation_id"], conversation);
    EXPECT_EQ(body["seq"].get<int>(), i);
    EXPECT_FALSE(body["message_id"].get<std::string>().empty());
  }
  std::vector<std::string> texts;
  std::uint64_t from_seq = 1;
  for (int page = 0; page < 10; ++page) {
    auto result = cluster_->history(alice_, conversation,
                                    "from_seq=" + std::to_string(from_seq) + "&limit=10");
    ASSERT_EQ(result.status, 200) << result.body;
    const json body = result.json();
    for (const auto& message : body["messages"]) {
      EXPECT_EQ(message["seq"].get<std::uint64_t>(), texts.size() + 1);
      EXPECT_EQ(message["sender_id"], "alice");
      texts.push_back(message["payload"]["text"]);
    }
    EXPECT_EQ(body["last_seq"].get<int>(), 25);
    from_seq = body["next_from_seq"];
    if (!body["has_more"].get<bool>()) break;
  }
  ASSERT_EQ(texts.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(texts[i], "message " + std::to_string(i + 1));
  EXPECT_EQ(from_seq, 26u);

  auto empty = cluster_->history(alice_, new_conversation());
  ASSERT_EQ(empty.status, 200);
  EXPECT_TRUE(empty.json()["messages"].empty());
  EXPECT_FALSE(empty.json()["has_more"].get<bool>());
}

TEST_F(ApiTest, SameMessageIdIsStoredOnce) {
  const std::string conversation = new_conversation();
  const std::string id_1 = "client-msg-1-" + conversation, id_2 = "client-msg-2-" + conversation;
  auto first = cluster_->send_text(alice_, conversation, "once", id_1);
  ASSERT_EQ(first.status, 202) << first.body;
  auto again = cluster_->send_text(alice_, conversation, "once", id_1);
  ASSERT_EQ(again.status, 202) << again.body;
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.headers["idempotent-replayed"], "true");
  auto other = cluster_->send_text(alice_, conversation, "second", id_2);
  EXPECT_EQ(other.json()["seq"].get<int>(), 2);
  expect_api_error(cluster_->send_text(alice_, conversation, "different text", id_1), 409,
                   "message_id_conflict", "message_id");
  // Deduplication is per conversation: the same id in another conversation is another message
  // there (one replicated round per send; docs/api.md).
  auto elsewhere = cluster_->send_text(alice_, conversation_, "once", id_1);
  ASSERT_EQ(elsewhere.status, 202) << elsewhere.body;
  EXPECT_EQ(elsewhere.json()["conversation_id"], conversation_);
  EXPECT_EQ(elsewhere.headers.count("idempotent-replayed"), 0u);

  auto history = cluster_->history(alice_, conversation);
  ASSERT_EQ(history.status, 200);
  ASSERT_EQ(history.json()["messages"].size(), 2u);
  EXPECT_EQ(history.json()["messages"][0]["message_id"], id_1);
  EXPECT_EQ(history.json()["messages"][0]["payload"]["text"], "once");
}

TEST_F(ApiTest, BadInputGetsAnErrorNamingTheField) {
  const std::string c = new_conversation();
  expect_api_error(post_message("this is not json"), 400, "invalid_json");
  expect_api_error(post_message("[1,2]"), 400, "invalid_json");
  expect_api_error(post_message(R"({"payload":{"type":"text","text":"x"}})"), 400, "missing_field",
                   "conversation_id");
  expect_api_error(post_message(R"({"conversation_id":7,"payload":{"type":"text","text":"x"}})"),
                   400, "invalid_field", "conversation_id");
  expect_api_error(
      post_message(R"({"conversation_id":"has space","payload":{"type":"text","text":"x"}})"), 400,
      "invalid_field", "conversation_id");
  expect_api_error(post_message(R"({"conversation_id":"c"})"), 400, "missing_field", "payload");
  expect_api_error(post_message(R"({"conversation_id":"c","channels":["sms"],)"
                                R"("payload":{"type":"text","text":"x"}})"),
                   400, "invalid_field", "channels[0]");
  expect_api_error(post_message(R"({"conversation_id":"c","payload":{"type":"sticker"}})"), 400,
                   "unsupported_payload_type", "payload.type");
  expect_api_error(post_message(R"({"conversation_id":"c","payload":{"type":"text"}})"), 400,
                   "missing_field", "payload.text");
  expect_api_error(post_message(R"({"conversation_id":"c","payload":{"type":"text","text":5}})"),
                   400, "invalid_field", "payload.text");
  expect_api_error(
      post_message(
          R"({"conversation_id":"c","to":["bob",3],"payload":{"type":"text","text":"x"}})"),
      400, "invalid_field", "to[1]");
  const std::string long_text(5000, 'x');  // the test cluster allows 4096 bytes
  expect_api_error(post_message(json{{"conversation_id", "c"},
                                     {"payload", {{"type", "text"}, {"text", long_text}}}}
                                    .dump()),
                   413, "payload_too_large", "payload.text");
  const std::string huge_body(70000, ' ');  // over body_bytes_max (65536)
  expect_api_error(post_message(huge_body), 413, "payload_too_large");
  expect_api_error(http_request(cluster_->http_port(), "POST", "/v1/messages", "a=b",
                                {{"Authorization", "Bearer " + alice_},
                                 {"Content-Type", "application/x-www-form-urlencoded"}}),
                   415, "unsupported_media_type");
  expect_api_error(cluster_->history(alice_, c, "limit=0"), 400, "invalid_field", "limit");
  expect_api_error(cluster_->history(alice_, c, "from_seq=abc"), 400, "invalid_field", "from_seq");
  expect_api_error(cluster_->history(alice_, c, "colour=blue"), 400, "unknown_parameter", "colour");
  expect_api_error(cluster_->history(alice_, c, "cursor=bm90LWEtY3Vyc29y"), 400, "invalid_field",
                   "cursor");
  expect_api_error(cluster_->history(alice_, c, "from_seq=1&before_seq=5"), 400,
                   "conflicting_parameters", "before_seq");
  expect_api_error(http_request(cluster_->http_port(), "GET", "/v1/nothing-here"), 404,
                   "not_found");
  // Bytes that are not UTF-8 in the target are echoed safely, not fatal.
  expect_api_error(http_request(cluster_->http_port(), "GET", "/v1/\xff\xfe"), 404, "not_found");
  expect_api_error(cluster_->history(alice_, c, "\xff=1"), 400, "unknown_parameter");
  EXPECT_EQ(http_request(cluster_->http_port(), "GET", "/healthz").status, 200);
  const auto not_allowed =
      http_request(cluster_->http_port(), "DELETE", "/v1/messages", "", bearer(alice_));
  expect_api_error(not_allowed, 405, "method_not_allowed");
  EXPECT_EQ(not_allowed.headers.at("allow"), "POST");
  const auto not_allowed_either =
      http_request(cluster_->http_port(), "PUT", "/v1/users/alice", "", bearer(alice_));
  expect_api_error(not_allowed_either, 405, "method_not_allowed");
  EXPECT_EQ(not_allowed_either.headers.at("allow"), "GET, PATCH");
  // Every answer carries a trace id.
  EXPECT_EQ(not_allowed.headers.at("x-trace-id").size(), 32u);

  // Nothing of the above was stored.
  auto history = cluster_->history(alice_, c);
  ASSERT_EQ(history.status, 200);
  EXPECT_TRUE(history.json()["messages"].empty()) << history.body;
}

TEST_F(ApiTest, ServesPrometheusMetrics) {
  auto result = http_request(cluster_->http_port(), "GET", "/metrics");
  ASSERT_EQ(result.status, 200);
  EXPECT_NE(result.body.find("chat4all_frontend_send_seconds_count"), std::string::npos);
  EXPECT_NE(result.body.find("chat4all_http_responses_total{class=\"2xx\"}"), std::string::npos);
}

}  // namespace
}  // namespace chat4all::testing
