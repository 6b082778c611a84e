// Every endpoint of the public API v1 (docs/api.md) through a real topology,
// its success and failure paths, and tenant isolation: a token of one tenant
// sees nothing of another, and cannot tell a record of another tenant from
// one that does not exist.
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include "common/auth.h"
#include "common/ids.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using nlohmann::json;

// Small enough that a test can reach it with few users.
constexpr std::uint32_t kMembersMax = 3;

// One cluster for the suite (argon2id makes every user and login cost ~0.1 s
// of a core, so users are few and shared): alice and bob of kTenant, made by
// wait_ready(), and carol of kOtherTenant.
class ApiV1Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ClusterOptions options;
    options.members_max = kMembersMax;
    cluster_ = new TestCluster(options);
    cluster_->start_all();
    ASSERT_TRUE(cluster_->wait_ready()) << cluster_->read_log("up");
    admin_ = cluster_->admin_token(kTenant);
    other_admin_ = cluster_->admin_token(kOtherTenant);
    ASSERT_TRUE(cluster_->create_user("carol", kOtherTenant));
    alice_ = cluster_->token("alice");
    bob_ = cluster_->token("bob");
    carol_ = cluster_->token("carol", kOtherTenant);
    for (const auto* token : {&admin_, &other_admin_, &alice_, &bob_, &carol_})
      ASSERT_FALSE(token->empty());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  static HttpResult call(const std::string& method, const std::string& target,
                         const std::string& token, const json& body = nullptr) {
    return http_request(cluster_->http_port(), method, target, body.is_null() ? "" : body.dump(),
                        bearer(token));
  }
  static std::string group(const std::string& token, const std::vector<std::string>& members) {
    const std::string id = cluster_->create_conversation(token, members);
    EXPECT_FALSE(id.empty());
    return id;
  }
  static std::string send(const std::string& token, const json& body) {
    const auto result = call("POST", "/v1/messages", token, body);
    EXPECT_EQ(result.status, 202) << result.body;
    return result.json().value("message_id", "");
  }
  static json text(const std::string& conversation_id, const std::string& words) {
    return {{"conversation_id", conversation_id}, {"payload", {{"type", "text"}, {"text", words}}}};
  }

  static TestCluster* cluster_;
  static std::string admin_, other_admin_, alice_, bob_, carol_;
};

TestCluster* ApiV1Test::cluster_ = nullptr;
std::string ApiV1Test::admin_, ApiV1Test::other_admin_, ApiV1Test::alice_, ApiV1Test::bob_,
    ApiV1Test::carol_;

TEST_F(ApiV1Test, UsersAreCreatedReadAndChanged) {
  const std::string id = "dave-" + ids::new_trace_id().substr(0, 6);
  auto created = call("POST", "/v1/users", admin_,
                      {{"user_id", id},
                       {"password", "dave-password"},
                       {"display_name", "Dave"},
                       {"identities", {{{"channel", "telegram"}, {"address", "@" + id}}}}});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.headers["location"], "/v1/users/" + id);
  EXPECT_EQ(created.json()["user_id"], id);
  EXPECT_EQ(created.json()["tenant_id"], kTenant);
  EXPECT_EQ(created.json()["identities"][0]["address"], "@" + id);
  EXPECT_EQ(created.body.find("argon2"), std::string::npos);
  EXPECT_EQ(created.body.find("password"), std::string::npos);

  expect_api_error(call("POST", "/v1/users", admin_, {{"user_id", id}, {"password", "12345678"}}),
                   409, "user_exists", "user_id");
  expect_api_error(call("POST", "/v1/users", admin_,
                        {{"user_id", id + "-2"},
                         {"password", "12345678"},
                         {"identities", {{{"channel", "telegram"}, {"address", "@" + id}}}}}),
                   409, "identity_taken");
  expect_api_error(
      call("POST", "/v1/users", admin_, {{"user_id", "a b"}, {"password", "12345678"}}), 400,
      "invalid_field", "user_id");
  expect_api_error(call("POST", "/v1/users", admin_, {{"user_id", "short"}, {"password", "1234"}}),
                   400, "invalid_field", "password");
  expect_api_error(call("POST", "/v1/users", alice_, {{"user_id", "x1"}, {"password", "12345678"}}),
                   403, "forbidden");
  expect_api_error(http_request(cluster_->http_port(), "POST", "/v1/users", "user_id=x",
                                {{"Authorization", "Bearer " + admin_},
                                 {"Content-Type", "application/x-www-form-urlencoded"}}),
                   415, "unsupported_media_type");

  // Identities are shown to admins and the user itself only.
  EXPECT_TRUE(call("GET", "/v1/users/" + id, admin_).json().contains("identities"));
  const auto seen_by_alice = call("GET", "/v1/users/" + id, alice_);
  ASSERT_EQ(seen_by_alice.status, 200) << seen_by_alice.body;
  EXPECT_EQ(seen_by_alice.json()["display_name"], "Dave");
  EXPECT_FALSE(seen_by_alice.json().contains("identities"));
  expect_api_error(call("GET", "/v1/users/nobody-here", alice_), 404, "not_found");

  // A user changes itself; not others.
  EXPECT_TRUE(cluster_->token(id).empty());  // its password is not kPassword yet
  auto patched = call("PATCH", "/v1/users/" + id, admin_, {{"password", kPassword}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  const std::string dave_token = cluster_->token(id);
  ASSERT_FALSE(dave_token.empty());
  patched = call("PATCH", "/v1/users/" + id, dave_token, {{"display_name", "David"}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.json()["display_name"], "David");
  EXPECT_TRUE(patched.json().contains("identities"));
  expect_api_error(call("PATCH", "/v1/users/alice", dave_token, {{"display_name", "x"}}), 403,
                   "forbidden");
  expect_api_error(call("PATCH", "/v1/users/" + id, dave_token, json::object()), 400,
                   "missing_field", "display_name");

  // Identities: link (409 when another user has the address), unlink.
  auto linked =
      call("PUT", "/v1/users/" + id + "/identities/whatsapp", dave_token, {{"address", "+1555"}});
  ASSERT_EQ(linked.status, 200) << linked.body;
  EXPECT_EQ(linked.json()["identities"].size(), 2u);
  expect_api_error(
      call("PUT", "/v1/users/alice/identities/telegram", admin_, {{"address", "@" + id}}), 409,
      "identity_taken", "address");
  expect_api_error(
      call("PUT", "/v1/users/" + id + "/identities/all", dave_token, {{"address", "1"}}), 400,
      "invalid_field", "channel");
  expect_api_error(
      call("PUT", "/v1/users/alice/identities/whatsapp", dave_token, {{"address", "1"}}), 403,
      "forbidden");
  const auto unlinked = call("DELETE", "/v1/users/" + id + "/identities/whatsapp", dave_token);
  EXPECT_EQ(unlinked.status, 204) << unlinked.body;
  EXPECT_EQ(call("GET", "/v1/users/" + id, admin_).json()["identities"].size(), 1u);

  // The admin's list pages in user_id order.
  const auto page = call("GET", "/v1/users?limit=1", admin_);
  ASSERT_EQ(page.status, 200) << page.body;
  ASSERT_EQ(page.json()["users"].size(), 1u);
  const std::string first = page.json()["users"][0]["user_id"];
  ASSERT_TRUE(page.json()["next_after"].is_string());
  const auto next = call("GET", "/v1/users?limit=200&after=" + first, admin_);
  ASSERT_EQ(next.status, 200) << next.body;
  std::set<std::string> listed{first};
  const json next_users = next.json()["users"];
  for (const auto& user : next_users) listed.insert(user["user_id"]);
  for (const std::string& user : {std::string("alice"), std::string("bob"), id})
    EXPECT_EQ(listed.count(user), 1u) << user;
  EXPECT_EQ(listed.count("carol"), 0u);  // another tenant's
  expect_api_error(call("GET", "/v1/users", alice_), 403, "forbidden");
  expect_api_error(call("GET", "/v1/users?limit=0", admin_), 400, "invalid_field", "limit");
}

TEST_F(ApiV1Test, ServiceClientsAreCreatedUsedAndDeleted) {
  auto created = call("POST", "/v1/clients", admin_, {{"name", "billing"}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string client_id = created.json()["client_id"];
  const std::string secret = created.json()["client_secret"];
  EXPECT_EQ(client_id.rfind("cl_", 0), 0u);
  EXPECT_GE(secret.size(), 32u);
  EXPECT_EQ(created.json()["role"], "admin");
  EXPECT_EQ(created.headers["cache-control"], "no-store");

  auto login = [&](const std::string& with_secret) {
    return http_request(cluster_->http_port(), "POST", "/v1/auth/token",
                        json{{"grant_type", "client_credentials"},
                             {"tenant_id", kTenant},
                             {"client_id", client_id},
                             {"client_secret", with_secret}}
                            .dump(),
                        {{"Content-Type", "application/json"}});
  };
  const auto token = login(secret);
  ASSERT_EQ(token.status, 200) << token.body;
  EXPECT_EQ(token.json()["role"], "admin");
  const std::string client_token = token.json()["access_token"];
  expect_api_error(login(secret + "x"), 401, "invalid_credentials");
  // The client's token works as an admin's of its tenant.
  EXPECT_EQ(call("GET", "/v1/clients", client_token).status, 200);

  const auto list = call("GET", "/v1/clients", admin_);
  ASSERT_EQ(list.status, 200) << list.body;
  std::map<std::string, std::string> sources;
  const json clients = list.json()["clients"];
  for (const auto& client : clients) sources[client["client_id"]] = client["source"];
  EXPECT_EQ(sources[client_id], "api");
  EXPECT_EQ(sources[admin_client_id(kTenant)], "topology");
  EXPECT_EQ(list.body.find(secret), std::string::npos);
  EXPECT_EQ(list.body.find("argon2"), std::string::npos);

  expect_api_error(call("DELETE", "/v1/clients/" + admin_client_id(kTenant), admin_), 409,
                   "client_managed_by_topology");
  EXPECT_EQ(call("DELETE", "/v1/clients/" + client_id, admin_).status, 204);
  expect_api_error(login(secret), 401, "invalid_credentials");
  // Deleting the client revoked the token it had been issued.
  expect_api_error(call("GET", "/v1/clients", client_token), 401, "unauthorized");
  expect_api_error(call("POST", "/v1/users", client_token,
                        {{"user_id", "mallory"}, {"password", "long enough pw"}}),
                   401, "unauthorized");
  expect_api_error(call("DELETE", "/v1/clients/" + client_id, admin_), 404, "not_found");
  expect_api_error(call("POST", "/v1/clients", alice_, {{"name", "x"}}), 403, "forbidden");
}

TEST_F(ApiV1Test, PrivateConversationsAreOnePerPair) {
  auto created = call("POST", "/v1/conversations", alice_,
                      {{"type", "private"}, {"members", {"bob"}}, {"name", "ab"}});
  ASSERT_TRUE(created.status == 201 || created.status == 200) << created.body;
  const std::string id = created.json()["conversation_id"];
  EXPECT_EQ(id.rfind("dm_", 0), 0u);
  EXPECT_EQ(created.json()["type"], "private");
  EXPECT_EQ(created.json()["members"].get<std::set<std::string>>(),
            (std::set<std::string>{"alice", "bob"}));
  // Again, by either member: the same conversation, 200.
  for (const auto& [token, other] : {std::pair{alice_, "bob"}, std::pair{bob_, "alice"}}) {
    const auto again =
        call("POST", "/v1/conversations", token, {{"type", "private"}, {"members", {other}}});
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_EQ(again.json()["conversation_id"], id);
  }
  expect_api_error(call("POST", "/v1/conversations", alice_,
                        {{"type", "private"}, {"members", {"bob", "carol"}}}),
                   400, "invalid_field", "members");
  expect_api_error(
      call("POST", "/v1/conversations", alice_, {{"type", "private"}, {"members", {"ghost"}}}), 400,
      "unknown_members", "members");
  // Members can not be removed from a private conversation.
  expect_api_error(call("DELETE", "/v1/conversations/" + id + "/members/bob", admin_), 409,
                   "private_conversation");
}

TEST_F(ApiV1Test, GroupsListMembersAndSummaries) {
  auto created = call("POST", "/v1/conversations", alice_,
                      {{"type", "group"},
                       {"members", {"bob"}},
                       {"name", "Team"},
                       {"metadata", {{"topic", "launch"}}}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.json()["conversation_id"];
  EXPECT_EQ(id.rfind("c_", 0), 0u);
  EXPECT_EQ(created.headers["location"], "/v1/conversations/" + id);
  EXPECT_EQ(created.json()["created_by"], "alice");
  EXPECT_EQ(created.json()["metadata"], (json{{"topic", "launch"}}));
  expect_api_error(
      call("POST", "/v1/conversations", alice_, {{"type", "group"}, {"members", {"bob", "ghost"}}}),
      400, "unknown_members", "members");
  expect_api_error(
      call("POST", "/v1/conversations", alice_, {{"type", "room"}, {"members", {"bob"}}}), 400,
      "invalid_field", "type");

  send(alice_, text(id, "one"));
  send(alice_, text(id, "two"));
  // bob's view: two unread, the last message, his horizons.
  const auto summary = call("GET", "/v1/conversations/" + id, bob_);
  ASSERT_EQ(summary.status, 200) << summary.body;
  EXPECT_EQ(summary.json()["last_seq"], 2);
  EXPECT_EQ(summary.json()["unread_count"], 2);
  EXPECT_EQ(summary.json()["last_message"]["payload"]["text"], "two");
  EXPECT_EQ(summary.json()["read_up_to_seq"], 0);

  // Both see it in their lists; paging by conversation_id.
  for (const auto& token : {alice_, bob_}) {
    const auto list = call("GET", "/v1/conversations?limit=200", token);
    ASSERT_EQ(list.status, 200) << list.body;
    bool found = false;
    const json conversations = list.json()["conversations"];
    for (const auto& item : conversations) found = found || item["conversation_id"] == id;
    EXPECT_TRUE(found) << list.body.substr(0, 500);
  }
  const auto for_bob = call("GET", "/v1/conversations?limit=200&user_id=bob", admin_);
  ASSERT_EQ(for_bob.status, 200) << for_bob.body;
  expect_api_error(call("GET", "/v1/conversations", admin_), 400, "missing_field", "user_id");
  expect_api_error(call("GET", "/v1/conversations?user_id=bob", alice_), 403, "forbidden");

  // Horizons: read up to 1, then a lower value leaves it there.
  auto horizon = call("POST", "/v1/conversations/" + id + "/read", bob_, {{"up_to_seq", 1}});
  ASSERT_EQ(horizon.status, 200) << horizon.body;
  EXPECT_EQ(horizon.json()["read_up_to_seq"], 1);
  EXPECT_EQ(horizon.json()["last_seq"], 2);
  EXPECT_EQ(horizon.json()["user_id"], "bob");
  horizon = call("POST", "/v1/conversations/" + id + "/read", bob_, {{"up_to_seq", 0}});
  EXPECT_EQ(horizon.json()["read_up_to_seq"], 1) << horizon.body;
  horizon = call("POST", "/v1/conversations/" + id + "/delivered", bob_, {{"up_to_seq", 99}});
  ASSERT_EQ(horizon.status, 200) << horizon.body;
  EXPECT_EQ(horizon.json()["delivered_up_to_seq"], 2);  // clamped to last_seq
  EXPECT_EQ(call("GET", "/v1/conversations/" + id, bob_).json()["unread_count"], 1);
  expect_api_error(call("POST", "/v1/conversations/" + id + "/read", admin_, {{"up_to_seq", 1}}),
                   403, "user_token_required");
  expect_api_error(call("POST", "/v1/conversations/" + id + "/read", bob_, {{"up_to_seq", -1}}),
                   400, "invalid_field", "up_to_seq");

  // Members: bob leaves, and then sees nothing of it; the admin adds him back.
  EXPECT_EQ(call("DELETE", "/v1/conversations/" + id + "/members/bob", bob_).status, 204);
  expect_api_error(call("GET", "/v1/conversations/" + id, bob_), 404, "not_found");
  expect_api_error(cluster_->history(bob_, id), 404, "not_found");
  const auto added =
      call("POST", "/v1/conversations/" + id + "/members", admin_, {{"members", {"bob"}}});
  ASSERT_EQ(added.status, 200) << added.body;
  EXPECT_EQ(call("GET", "/v1/conversations/" + id, bob_).status, 200);
  expect_api_error(
      call("POST", "/v1/conversations/" + id + "/members", alice_, {{"members", {"zed"}}}), 400,
      "unknown_members", "members");
  expect_api_error(
      call("POST", "/v1/conversations/" + id + "/members", alice_, {{"members", "bob"}}), 400,
      "invalid_field", "members");
}

// The limit holds when two additions race: each alone fits, together they do not.
TEST_F(ApiV1Test, TheMemberLimitHoldsWhenTwoAdditionsRace) {
  ASSERT_TRUE(cluster_->create_user("dan"));
  ASSERT_TRUE(cluster_->create_user("erin"));
  const std::string id = group(alice_, {"bob"});
  for (int round = 0; round < 3; ++round) {
    auto add = [&](const char* user) {
      return std::async(std::launch::async, [&, user] {
        return call("POST", "/v1/conversations/" + id + "/members", alice_, {{"members", {user}}});
      });
    };
    auto first = add("dan");
    auto second = add("erin");
    const HttpResult results[] = {first.get(), second.get()};
    int added = 0;
    for (const auto& result : results) {
      if (result.status == 200) {
        ++added;
      } else {
        expect_api_error(result, 400, "invalid_field", "members");
      }
    }
    EXPECT_EQ(added, 1) << results[0].body << "\n" << results[1].body;
    const auto conversation = call("GET", "/v1/conversations/" + id, alice_);
    ASSERT_EQ(conversation.status, 200) << conversation.body;
    EXPECT_EQ(conversation.json()["members"].size(), kMembersMax) << conversation.body;
    // Make room again for the next round.
    for (const char* user : {"dan", "erin"})
      call("DELETE", "/v1/conversations/" + id + "/members/" + user, alice_);
  }
  expect_api_error(
      call("POST", "/v1/conversations/" + id + "/members", alice_, {{"members", {"dan", "erin"}}}),
      400, "invalid_field", "members");
}

TEST_F(ApiV1Test, MessagesCarryChannelsMetadataAndStates) {
  const std::string id = group(alice_, {"bob"});
  const std::string message_id = "m-" + ids::new_trace_id();
  json body = text(id, "hello bob");
  body["message_id"] = message_id;
  body["to"] = {"bob"};
  // This cluster declares no outside channels: naming one is refused.
  body["channels"] = {"internal", "whatsapp"};
  expect_api_error(call("POST", "/v1/messages", alice_, body), 400, "invalid_field", "channels[1]");
  body["channels"] = {"internal"};
  body["metadata"] = {{"priority", "high"}};
  EXPECT_EQ(send(alice_, body), message_id);

  auto got = call("GET", "/v1/messages/" + message_id, alice_);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json()["conversation_id"], id);
  EXPECT_EQ(got.json()["channels"], (json{"internal"}));
  EXPECT_EQ(got.json()["metadata"], (json{{"priority", "high"}}));
  EXPECT_EQ(got.json()["to"], (json{"bob"}));
  ASSERT_EQ(got.json()["states"].size(), 1u) << got.body;
  EXPECT_EQ(got.json()["states"][0]["recipient_id"], "bob");
  EXPECT_EQ(got.json()["states"][0]["state"], "SENT");

  auto delivered = call("POST", "/v1/messages/" + message_id + "/delivered", bob_);
  ASSERT_EQ(delivered.status, 200) << delivered.body;
  EXPECT_EQ(delivered.json()["state"], "DELIVERED");
  auto read = call("POST", "/v1/messages/" + message_id + "/read", bob_);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(read.json()["state"], "READ");
  // A late DELIVERED changes nothing.
  EXPECT_EQ(call("POST", "/v1/messages/" + message_id + "/delivered", bob_).json()["state"],
            "READ");
  got = call("GET", "/v1/messages/" + message_id, alice_);
  const json history = got.json()["states"][0]["history"];
  ASSERT_EQ(history.size(), 3u) << got.body;
  EXPECT_EQ(history[0]["state"], "SENT");
  EXPECT_EQ(history[2]["state"], "READ");
  expect_api_error(call("POST", "/v1/messages/" + message_id + "/read", admin_), 403,
                   "user_token_required");
  expect_api_error(call("GET", "/v1/messages/no-such-message", alice_), 404, "not_found");

  // An admin sends on behalf of a member, naming it.
  json as_bob = text(id, "from the service");
  as_bob["sender_id"] = "bob";
  const std::string by_admin = send(admin_, as_bob);
  EXPECT_EQ(call("GET", "/v1/messages/" + by_admin, admin_).json()["sender_id"], "bob");
  expect_api_error(call("POST", "/v1/messages", admin_, text(id, "who?")), 400, "missing_field",
                   "sender_id");
  json impersonation = text(id, "as bob");
  impersonation["sender_id"] = "bob";
  expect_api_error(call("POST", "/v1/messages", alice_, impersonation), 403, "forbidden",
                   "sender_id");
  // Not a member: the conversation does not exist for him.
  const std::string alone = group(alice_, {"alice"});
  expect_api_error(call("POST", "/v1/messages", bob_, text(alone, "let me in")), 404, "not_found");
}

// A message_id is taken by a message stored, not by a send that storage refused; a retry of a
// stored message is answered as stored even after the members changed, and only if it repeats
// the whole content; nobody outside a conversation can probe its ids.
TEST_F(ApiV1Test, AMessageIdIsTakenOnlyByAStoredMessage) {
  const std::string id = group(alice_, {"bob"});
  const std::string message_id = "claim-" + ids::new_trace_id();
  json body = text("c_no-such-conversation", "hello");
  body["message_id"] = message_id;
  expect_api_error(call("POST", "/v1/messages", alice_, body), 404, "not_found");
  body["conversation_id"] = id;
  body["to"] = {"bob"};
  body["metadata"] = {{"n", 1}};
  EXPECT_EQ(send(alice_, body), message_id) << "a refused send must not keep the id";
  // Found by id right after the 202, before or after the routers indexed it.
  const auto found = call("GET", "/v1/messages/" + message_id, bob_);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(found.json()["conversation_id"], id);

  // Someone who cannot see that conversation learns nothing of the id.
  const std::string alone = group(bob_, {"bob"});
  json outsider = text(id, "not mine");
  outsider["message_id"] = "other-" + ids::new_trace_id();
  EXPECT_EQ(send(alice_, outsider), outsider["message_id"]);
  outsider["conversation_id"] = alone;
  expect_api_error(call("POST", "/v1/messages", alice_, outsider), 404, "not_found");
  expect_api_error(call("GET", "/v1/messages/" + message_id, carol_), 404, "not_found");

  // The same content again: replayed, whatever the order of the sets, after bob left too.
  ASSERT_EQ(call("DELETE", "/v1/conversations/" + id + "/members/bob", bob_).status, 204);
  const auto replay = call("POST", "/v1/messages", alice_, body);
  ASSERT_EQ(replay.status, 202) << replay.body;
  EXPECT_EQ(replay.headers.count("idempotent-replayed"), 1u);
  // Other metadata or channels under the same id are another message.
  json changed = body;
  changed["metadata"] = {{"n", 2}};
  expect_api_error(call("POST", "/v1/messages", alice_, changed), 409, "message_id_conflict",
                   "message_id");
  changed = body;
  changed["channels"] = {"internal"};
  expect_api_error(call("POST", "/v1/messages", alice_, changed), 409, "message_id_conflict",
                   "message_id");
  EXPECT_EQ(call("GET", "/v1/messages/" + message_id, alice_).json()["metadata"], body["metadata"]);
}

// One replicated round per send: deduplication is per conversation, so an id reused in another
// conversation of the tenant is stored there too, and the id's locator (written behind the log)
// stays with the message indexed first, which GET /v1/messages/{id} keeps answering.
TEST_F(ApiV1Test, AnIdReusedInAnotherConversationIsStoredAndTheFirstKeepsTheLocator) {
  const auto wait_for_metric = [](const std::string& name, double at_least) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (cluster_->metric("router-1", name) < at_least &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return cluster_->metric("router-1", name) >= at_least;
  };
  const std::string first = group(alice_, {"bob"});
  const std::string second = group(bob_, {"bob"});
  const std::string message_id = "reused-" + ids::new_trace_id();
  const double added = cluster_->metric("router-1", "chat4all_router_locator_entries_added_total");
  json body = text(first, "the first");
  body["message_id"] = message_id;
  EXPECT_EQ(send(alice_, body), message_id);
  ASSERT_TRUE(wait_for_metric("chat4all_router_locator_entries_added_total", added + 1))
      << "the router did not index the message";

  const double conflicts = cluster_->metric("router-1", "chat4all_router_locator_conflicts_total");
  json again = text(second, "the same id elsewhere");
  again["message_id"] = message_id;
  const auto reused = call("POST", "/v1/messages", bob_, again);
  ASSERT_EQ(reused.status, 202) << reused.body;
  EXPECT_EQ(reused.json()["conversation_id"], second);
  EXPECT_EQ(reused.json()["seq"], 1);
  EXPECT_EQ(reused.headers.count("idempotent-replayed"), 0u);
  ASSERT_TRUE(wait_for_metric("chat4all_router_locator_conflicts_total", conflicts + 1))
      << "the reuse was not counted as a locator conflict";

  // Both messages are stored, each in its conversation ...
  const auto history = cluster_->history(bob_, second);
  ASSERT_EQ(history.status, 200) << history.body;
  ASSERT_EQ(history.json()["messages"].size(), 1u);
  EXPECT_EQ(history.json()["messages"][0]["message_id"], message_id);
  // ... and the id names the first one.
  const auto got = call("GET", "/v1/messages/" + message_id, bob_);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json()["conversation_id"], first);
  EXPECT_EQ(got.json()["payload"]["text"], "the first");
}

// What no parser may choke on: JSON nested without end, a request head over the bound. Both get
// a JSON error and the frontend goes on serving.
TEST_F(ApiV1Test, DeepJsonAndLongHeadsGetJsonErrors) {
  const std::string id = group(alice_, {"bob"});
  const std::size_t depth = 30000;  // 60 KB: within this cluster's body limit
  const std::string deep = std::string(depth, '[') + std::string(depth, ']');
  const std::string body = R"({"conversation_id":")" + id +
                           R"(","payload":{"type":"text","text":"x"},"metadata":{"a":)" + deep +
                           "}}";
  auto result = http_request(cluster_->http_port(), "POST", "/v1/messages", body, bearer(alice_));
  expect_api_error(result, 400, "invalid_json");
  const std::string nested_to = R"({"conversation_id":")" + id +
                                R"(","payload":{"type":"text","text":"x"},"to":)" + deep + "}";
  result = http_request(cluster_->http_port(), "POST", "/v1/messages", nested_to, bearer(alice_));
  expect_api_error(result, 400, "invalid_json");
  // 64 levels are fine.
  json nested = json::object();
  for (int level = 0; level < 60; ++level) nested = json{{"n", nested}};
  json fine = text(id, "nested metadata");
  fine["metadata"] = nested;
  send(alice_, fine);

  result = call("GET", "/v1/conversations/" + std::string(9000, 'c'), alice_);
  expect_api_error(result, 431, "request_header_too_large");
  EXPECT_EQ(call("GET", "/v1/conversations/" + id, alice_).status, 200) << "still serving";
}

TEST_F(ApiV1Test, HistoryPagesForwardBackwardAndByTime) {
  const std::string id = group(alice_, {"bob"});
  for (int i = 1; i <= 7; ++i) send(alice_, text(id, "m" + std::to_string(i)));
  auto seqs = [](const HttpResult& page) {
    std::vector<int> out;
    const json messages = page.json()["messages"];
    for (const auto& message : messages) out.push_back(message["seq"]);
    return out;
  };

  // Forward with cursors.
  auto page = cluster_->history(bob_, id, "limit=3");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.json()["direction"], "forward");
  EXPECT_EQ(seqs(page), (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(page.json()["end_of_history"].get<bool>());
  EXPECT_EQ(page.json()["next_from_seq"], 4);
  EXPECT_TRUE(page.json()["has_more"].get<bool>());
  page = cluster_->history(bob_, id,
                           "limit=5&cursor=" + page.json()["next_cursor"].get<std::string>());
  EXPECT_EQ(seqs(page), (std::vector<int>{4, 5, 6, 7}));
  EXPECT_TRUE(page.json()["end_of_history"].get<bool>());
  EXPECT_TRUE(page.json()["next_cursor"].is_null());
  EXPECT_EQ(page.json()["last_seq"], 7);

  // Backward from the newest, with cursors, down to seq 1.
  page = cluster_->history(bob_, id, "before_seq=9007199254740991&limit=3");
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.json()["direction"], "backward");
  EXPECT_EQ(seqs(page), (std::vector<int>{5, 6, 7}));
  std::vector<int> all = seqs(page);
  while (!page.json()["end_of_history"].get<bool>()) {
    page = cluster_->history(bob_, id,
                             "limit=3&cursor=" + page.json()["next_cursor"].get<std::string>());
    ASSERT_EQ(page.status, 200) << page.body;
    auto older = seqs(page);
    all.insert(all.begin(), older.begin(), older.end());
  }
  EXPECT_EQ(all, (std::vector<int>{1, 2, 3, 4, 5, 6, 7}));

  // Since a time: everything stored at or after the fourth message.
  const auto fourth = cluster_->history(bob_, id, "from_seq=4&limit=1");
  const std::int64_t stored_at = fourth.json()["messages"][0]["stored_at"];
  page = cluster_->history(bob_, id, "since=" + std::to_string(stored_at));
  ASSERT_EQ(page.status, 200) << page.body;
  ASSERT_FALSE(seqs(page).empty());
  EXPECT_LE(seqs(page).front(), 4);
  EXPECT_EQ(seqs(page).back(), 7);
  const json message = page.json()["messages"].back();
  for (const char* field : {"message_id", "conversation_id", "seq", "sender_id", "to", "channels",
                            "payload", "metadata", "received_at", "stored_at"})
    EXPECT_TRUE(message.contains(field)) << field;

  // An admin reads every conversation of its tenant.
  EXPECT_EQ(cluster_->history(admin_, id).status, 200);
  expect_api_error(cluster_->history(bob_, id, "cursor=%%%"), 400, "invalid_field");
}

TEST_F(ApiV1Test, WebhooksAreRegisteredListedAndDeleted) {
  auto created = call(
      "POST", "/v1/webhooks", admin_,
      {{"url", "https://1.1.1.1/chat4all"}, {"events", {"message.delivered", "message.read"}}});
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = created.json()["webhook_id"];
  const std::string secret = created.json()["secret"];
  EXPECT_EQ(id.rfind("wh_", 0), 0u);
  EXPECT_EQ(secret.rfind("whsec_", 0), 0u);

  const std::string given = "whsec_" + std::string("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3");  // 24 bytes
  auto with_secret =
      call("POST", "/v1/webhooks", admin_,
           {{"url", "http://8.8.4.4:8080/x"}, {"events", {"message.sent"}}, {"secret", given}});
  // The test topology does not allow loopback or private receivers (webhooks.allow_*).
  for (const char* url : {"http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://[::1]/"})
    expect_api_error(
        call("POST", "/v1/webhooks", admin_, {{"url", url}, {"events", {"message.sent"}}}), 400,
        "url_not_allowed", "url");
  ASSERT_EQ(with_secret.status, 201) << with_secret.body;
  EXPECT_EQ(with_secret.json()["secret"], given);

  const auto got = call("GET", "/v1/webhooks/" + id, admin_);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.json()["url"], "https://1.1.1.1/chat4all");
  EXPECT_FALSE(got.json().contains("secret"));
  EXPECT_EQ(got.body.find(secret), std::string::npos);
  const auto list = call("GET", "/v1/webhooks", admin_);
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_GE(list.json()["webhooks"].size(), 2u);
  EXPECT_EQ(list.body.find("whsec_"), std::string::npos);
  const auto deliveries = call("GET", "/v1/webhooks/" + id + "/deliveries", admin_);
  ASSERT_EQ(deliveries.status, 200) << deliveries.body;
  EXPECT_EQ(deliveries.json()["webhook_id"], id);
  EXPECT_TRUE(deliveries.json()["deliveries"].is_array());

  expect_api_error(
      call("POST", "/v1/webhooks", admin_, {{"url", "ftp://x"}, {"events", {"message.sent"}}}), 400,
      "invalid_field", "url");
  expect_api_error(
      call("POST", "/v1/webhooks", admin_, {{"url", "http://x"}, {"events", json::array()}}), 400,
      "invalid_field", "events");
  expect_api_error(call("POST", "/v1/webhooks", admin_,
                        {{"url", "http://x"}, {"events", {"message.sent"}}, {"secret", "plain"}}),
                   400, "invalid_field", "secret");
  expect_api_error(call("GET", "/v1/webhooks", alice_), 403, "forbidden");

  EXPECT_EQ(call("DELETE", "/v1/webhooks/" + id, admin_).status, 204);
  expect_api_error(call("GET", "/v1/webhooks/" + id, admin_), 404, "not_found");
  expect_api_error(call("GET", "/v1/webhooks/" + id + "/deliveries", admin_), 404, "not_found");
}

// Everything of tenant A answers a token of tenant B exactly like something that
// does not exist.
TEST_F(ApiV1Test, ATenantSeesNothingOfAnother) {
  const std::string conversation = group(alice_, {"bob"});
  const std::string message_id = send(alice_, text(conversation, "tenant A only"));
  const auto webhook = call("POST", "/v1/webhooks", admin_,
                            {{"url", "https://1.0.0.1/"}, {"events", {"message.sent"}}});
  ASSERT_EQ(webhook.status, 201);
  const std::string webhook_id = webhook.json()["webhook_id"];

  auto same_as_missing = [&](const std::string& method, const std::string& existing,
                             const std::string& missing, const std::string& token,
                             const json& body = nullptr) {
    const auto a = call(method, existing, token, body);
    const auto b = call(method, missing, token, body);
    expect_api_error(a, 404, "not_found");
    EXPECT_EQ(a.status, b.status) << existing << ": " << a.body << " / " << b.body;
    EXPECT_EQ(a.json()["error"]["code"], b.json()["error"]["code"]);
  };
  for (const auto& token : {other_admin_, carol_}) {
    same_as_missing("GET", "/v1/users/alice", "/v1/users/nobody-at-all", token);
    same_as_missing("PATCH", "/v1/users/alice", "/v1/users/nobody-at-all", token,
                    {{"display_name", "taken over"}});
    same_as_missing("PUT", "/v1/users/alice/identities/telegram",
                    "/v1/users/nobody-at-all/identities/telegram", token, {{"address", "12345"}});
    same_as_missing("DELETE", "/v1/users/alice/identities/telegram",
                    "/v1/users/nobody-at-all/identities/telegram", token);
    same_as_missing("GET", "/v1/messages/" + message_id + "/deliveries",
                    "/v1/messages/missing-message/deliveries", token);
    same_as_missing("GET", "/v1/conversations/" + conversation, "/v1/conversations/c_missing",
                    token);
    same_as_missing("GET", "/v1/conversations/" + conversation + "/messages",
                    "/v1/conversations/c_missing/messages", token);
    same_as_missing("GET", "/v1/messages/" + message_id, "/v1/messages/missing-message", token);
  }
  same_as_missing("GET", "/v1/webhooks/" + webhook_id, "/v1/webhooks/wh_missing", other_admin_);
  same_as_missing("GET", "/v1/webhooks/" + webhook_id + "/deliveries",
                  "/v1/webhooks/wh_missing/deliveries", other_admin_);
  same_as_missing("DELETE", "/v1/webhooks/" + webhook_id, "/v1/webhooks/wh_missing", other_admin_);
  // Naming users of either tenant: the conversation is what is missing.
  for (const char* user : {"carol", "alice"})
    same_as_missing("POST", "/v1/conversations/" + conversation + "/members",
                    "/v1/conversations/c_missing/members", other_admin_, {{"members", {user}}});
  same_as_missing("POST", "/v1/messages/" + message_id + "/read", "/v1/messages/missing/read",
                  carol_);
  same_as_missing("POST", "/v1/conversations/" + conversation + "/read",
                  "/v1/conversations/c_missing/read", carol_, {{"up_to_seq", 1}});
  // carol cannot write into it, nor put A's users into a conversation of hers.
  expect_api_error(call("POST", "/v1/messages", carol_, text(conversation, "hi from B")), 404,
                   "not_found");
  expect_api_error(
      call("POST", "/v1/conversations", carol_, {{"type", "group"}, {"members", {"alice"}}}), 400,
      "unknown_members", "members");
  // Nothing of A is listed for B.
  const auto users = call("GET", "/v1/users?limit=200", other_admin_);
  ASSERT_EQ(users.status, 200);
  const json other_users = users.json()["users"];
  for (const auto& user : other_users) EXPECT_EQ(user["tenant_id"], kOtherTenant);
  EXPECT_EQ(call("GET", "/v1/webhooks", other_admin_).body.find(webhook_id), std::string::npos);
  // A message_id of A is free in B: ids are unique per tenant.
  const std::string own = group(carol_, {"carol"});
  json reuse = text(own, "same id, other tenant");
  reuse["message_id"] = message_id;
  EXPECT_EQ(send(carol_, reuse), message_id);
  // ... and A's message is untouched by it.
  EXPECT_EQ(call("GET", "/v1/messages/" + message_id, alice_).json()["payload"]["text"],
            "tenant A only");
}

TEST_F(ApiV1Test, ServesItsOpenApiDocumentAndNamesUnknownPaths) {
  const auto document = http_request(cluster_->http_port(), "GET", "/v1/openapi.yaml");
  if (document.status == 200) {
    EXPECT_EQ(document.headers.at("content-type"), "application/yaml");
    EXPECT_NE(document.body.find("openapi:"), std::string::npos);
  } else {
    expect_api_error(document, 404, "not_found");  // built without schema/openapi.yaml
  }
  expect_api_error(call("GET", "/v1/users/alice/friends", alice_), 404, "not_found");
  expect_api_error(call("GET", "/v1/conversations/%zz", alice_), 404, "not_found");
}

// Its own small cluster, with a tight limit: a token that makes too many
// requests is told when to come back, and other tokens are not affected.
TEST(ApiRateLimitTest, ATokenOverItsRateGets429WithRetryAfter) {
  ClusterOptions options;
  options.storage_nodes = 1;
  options.replication_factor = 1;
  options.token_requests_per_s = 2;
  options.token_burst = 5;
  TestCluster cluster(options);
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  const std::string alice = cluster.token("alice");
  const std::string bob = cluster.token("bob");
  int ok = 0;
  HttpResult refused;
  for (int i = 0; i < 10; ++i) {
    auto result = http_request(cluster.http_port(), "GET", "/v1/users/alice", "", bearer(alice));
    if (result.status == 200) {
      ++ok;
    } else {
      refused = result;
    }
  }
  // At most the burst and what refilled meanwhile; wait_ready() spent some of alice's.
  EXPECT_GE(ok, 3);
  EXPECT_LE(ok, 7);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.json()["error"]["code"], "rate_limited");
  ASSERT_TRUE(refused.headers.count("retry-after"));
  EXPECT_GE(std::stoi(refused.headers["retry-after"]), 1);
  EXPECT_EQ(http_request(cluster.http_port(), "GET", "/v1/users/bob", "", bearer(bob)).status, 200);
}

}  // namespace
}  // namespace chat4all::testing
