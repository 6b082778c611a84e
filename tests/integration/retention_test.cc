// Retention on a real cluster: a conversation's retention shrinks its history
// (by the times leaders stamped, decided by the leader and replicated), and
// what expired stays expired on the replicas after that leader is killed.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Polls (bounded) until GET `target` answers 200 and `done` holds for its body.
template <typename Done>
HttpResult poll(TestCluster& cluster, const std::string& target, const std::string& token,
                Done done) {
  HttpResult answer;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  do {
    answer = http_request(cluster.http_port(), "GET", target, "", bearer(token));
    if (answer.status == 200 && done(answer.json())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (Clock::now() < deadline);
  return answer;
}

HttpResult poll_history(TestCluster& cluster, const std::string& token,
                        const std::string& conversation,
                        const std::function<bool(const json&)>& done) {
  return poll(cluster, "/v1/conversations/" + conversation + "/messages", token, done);
}

TEST(RetentionTest, AConversationsRetentionShrinksItsHistoryOnEveryReplica) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  const std::string alice = cluster.token();
  const std::string bob = cluster.token("bob");
  const std::string conversation = cluster.conversation_owned_by("storage-1", alice);
  ASSERT_FALSE(conversation.empty());

  for (int i = 1; i <= 5; ++i)
    ASSERT_EQ(cluster
                  .send_text(alice, conversation, "old " + std::to_string(i),
                             "old-" + std::to_string(i) + "-" + conversation)
                  .status,
              202);
  // Bob is a member but not the creator: a group's retention is its creator's to change.
  const json shorten{{"retention_s", 1}};
  const HttpResult refused =
      http_request(cluster.http_port(), "PATCH", "/v1/conversations/" + conversation,
                   shorten.dump(), bearer(bob));
  expect_api_error(refused, 400, "invalid_field", "retention_s");
  const HttpResult patched =
      http_request(cluster.http_port(), "PATCH", "/v1/conversations/" + conversation,
                   shorten.dump(), bearer(alice));
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.json()["retention_s"], 1);

  // The leader's sweep expires them a second after they were stored (by its stamps).
  const HttpResult shrunk = poll_history(cluster, alice, conversation,
                                         [](const json& page) { return page["first_seq"] == 6; });
  ASSERT_EQ(shrunk.status, 200) << shrunk.body;
  EXPECT_EQ(shrunk.json()["first_seq"], 6) << shrunk.body;
  EXPECT_EQ(shrunk.json()["last_seq"], 5) << "the head stays";
  EXPECT_TRUE(shrunk.json()["messages"].empty()) << shrunk.body;
  EXPECT_EQ(http_request(cluster.http_port(), "GET", "/v1/messages/old-1-" + conversation, "",
                         bearer(alice))
                .status,
            404);
  const HttpResult summary = http_request(cluster.http_port(), "GET",
                                          "/v1/conversations/" + conversation, "", bearer(alice));
  ASSERT_EQ(summary.status, 200);
  EXPECT_EQ(summary.json()["first_seq"], 6);
  EXPECT_EQ(summary.json()["last_seq"], 5);

  // The expiry went through the log: with its leader gone, the replicas that
  // remain agree, and the next message takes the next seq (never reused).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // heartbeats carry the commit
  cluster.kill_node("storage-1");
  HttpResult sent;
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  do {
    sent = cluster.send_text(alice, conversation, "new", "new-" + conversation);
  } while (sent.status != 202 && Clock::now() < deadline);
  ASSERT_EQ(sent.status, 202) << sent.body;
  EXPECT_EQ(sent.json()["seq"], 6);
  const HttpResult after = poll_history(cluster, alice, conversation,
                                        [](const json& page) { return page["last_seq"] >= 6; });
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_GE(after.json()["first_seq"].get<int>(), 6) << after.body;
  for (const auto& message : after.json()["messages"]) EXPECT_GE(message["seq"].get<int>(), 6);
}

TEST(ErasureTest, AnErasureSurvivesALeaderKillAndEveryReplicaKeepsOnlyTombstones) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  ASSERT_TRUE(cluster.create_user("carol"));
  const std::string alice = cluster.token();
  const std::string carol = cluster.token("carol");
  const std::string admin = cluster.admin_token();
  ASSERT_FALSE(carol.empty());
  const std::string conversation = cluster.conversation_owned_by("storage-1", alice);
  ASSERT_FALSE(conversation.empty());
  ASSERT_EQ(
      http_request(cluster.http_port(), "POST", "/v1/conversations/" + conversation + "/members",
                   json{{"members", {"carol"}}}.dump(), bearer(alice))
          .status,
      200);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(cluster.send_text(carol, conversation, "carol says " + std::to_string(i)).status,
              202);
    ASSERT_EQ(cluster.send_text(alice, conversation, "alice says " + std::to_string(i)).status,
              202);
  }

  const HttpResult begun =
      http_request(cluster.http_port(), "POST", "/v1/users/carol/erase", "", bearer(admin));
  ASSERT_EQ(begun.status, 202) << begun.body;
  // The conversation's leader goes at once: what it had not done, the others finish, driven
  // on by the polls.
  cluster.kill_node("storage-1");
  const HttpResult job = poll(cluster, "/v1/users/carol/erase", admin,
                              [](const json& body) { return body["state"] == "done"; });
  ASSERT_EQ(job.status, 200) << job.body;
  EXPECT_EQ(job.json()["state"], "done") << job.body;
  EXPECT_EQ(job.json()["messages_erased"], 3) << job.body;
  // Asked again: the same job.
  const HttpResult again =
      http_request(cluster.http_port(), "POST", "/v1/users/carol/erase", "", bearer(admin));
  EXPECT_EQ(again.status, 202);
  EXPECT_EQ(again.json()["created_at"], begun.json()["created_at"]);

  auto expect_tombstones = [&](const HttpResult& page) {
    ASSERT_EQ(page.status, 200) << page.body;
    const json messages = page.json()["messages"];
    ASSERT_EQ(messages.size(), 6u) << page.body;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      EXPECT_EQ(messages[i]["seq"], i + 1) << "order and seqs stay";
      const bool carols = messages[i]["sender_id"] == "carol";
      EXPECT_EQ(carols, i % 2 == 0);
      EXPECT_EQ(messages[i].contains("erased"), carols) << messages[i];
      EXPECT_EQ(messages[i].contains("payload"), !carols) << messages[i];
    }
    EXPECT_EQ(page.body.find("carol says"), std::string::npos);
  };
  expect_tombstones(poll(cluster, "/v1/conversations/" + conversation + "/messages", alice,
                         [](const json&) { return true; }));
  // Carol can no longer log in, and the token she had is refused.
  EXPECT_EQ(cluster.token("carol"), "");
  EXPECT_EQ(http_request(cluster.http_port(), "GET", "/v1/conversations", "", bearer(carol)).status,
            401);

  // storage-1 comes back and catches up; with storage-2 gone too it holds the history
  // together with storage-3, and it is the same.
  cluster.start_node("storage-1");
  // It takes back the partitions it prefers once it has caught up.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (cluster.metric("storage-1", "chat4all_storage_partitions_led") < 1 &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  cluster.kill_node("storage-2");
  expect_tombstones(poll(cluster, "/v1/conversations/" + conversation + "/messages", alice,
                         [](const json& page) { return page["messages"].size() == 6; }));
}

}  // namespace
}  // namespace chat4all::testing
