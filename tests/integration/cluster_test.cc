// Whole-topology behaviour: restarts, supervision, unreachable or paused
// nodes, malformed frames and malformed topology files.
#include "tests/integration/cluster.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <sstream>
#include <thread>
#include <zmq.hpp>

#include "common/auth.h"
#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/transport.h"

namespace chat4all::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Lines of a JSON-lines log whose "event" is `event` (and "child" is `child`, if given).
std::vector<json> log_events(const std::string& log, const std::string& event,
                             const std::string& child = "") {
  std::vector<json> found;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const json entry = json::parse(line, nullptr, false);
    if (entry.is_discarded() || !entry.is_object() || entry.value("event", "") != event) continue;
    if (!child.empty() && entry.value("child", "") != child) continue;
    found.push_back(entry);
  }
  return found;
}

json full_history(TestCluster& cluster, const std::string& token, const std::string& conversation) {
  json all = json::array();
  std::uint64_t from_seq = 1;
  for (int page = 0; page < 1000; ++page) {
    auto result =
        cluster.history(token, conversation, "from_seq=" + std::to_string(from_seq) + "&limit=100");
    if (result.status != 200) return json();
    const json body = result.json();
    for (const auto& message : body["messages"]) all.push_back(message);
    from_seq = body["next_from_seq"];
    if (!body["has_more"].get<bool>()) break;
  }
  return all;
}

TEST(ClusterTest, StoppingAndStartingTheTopologyLosesNothing) {
  TestCluster cluster;
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  std::string token = cluster.token();
  std::vector<std::string> conversations;
  for (int c = 1; c <= 3; ++c)
    conversations.push_back(cluster.conversation_owned_by("storage-" + std::to_string(c), token));
  for (const auto& conversation : conversations) ASSERT_FALSE(conversation.empty());
  for (int i = 0; i < 20; ++i)
    for (const auto& conversation : conversations)
      ASSERT_EQ(cluster.send_text(token, conversation, "m" + std::to_string(i)).status, 202);
  std::vector<json> before;
  for (const auto& conversation : conversations)
    before.push_back(full_history(cluster, token, conversation));

  ASSERT_TRUE(cluster.stop_all()) << cluster.read_log("up");
  const auto stopped = log_events(cluster.read_log("up"), "node_stopped");
  EXPECT_EQ(stopped.size(), 5u);
  for (const auto& node : stopped) EXPECT_EQ(node["status"], "exit code 0") << node.dump();

  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  token = cluster.token();  // the key persisted, but a fresh login must work too
  for (std::size_t c = 0; c < conversations.size(); ++c) {
    const json after = full_history(cluster, token, conversations[c]);
    ASSERT_EQ(after.size(), 20u);
    EXPECT_EQ(after, before[c]);
    auto next = cluster.send_text(token, conversations[c], "after restart");
    ASSERT_EQ(next.status, 202);
    EXPECT_EQ(next.json()["seq"].get<int>(), 21);
  }
}

// The message-id index is written behind the log by the routers, not kept by the frontend that
// accepted the messages: with the router killed right after the sends (its indexing cut short)
// and the frontend restarted (its memory of what it accepted gone), every message is found by id
// once a router runs again.
TEST(ClusterTest, MessageIdsAreIndexedBehindTheLogAndSurviveRestarts) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  const std::string token = cluster.token();
  const std::string conversation = cluster.create_conversation(token, {"bob"});
  ASSERT_FALSE(conversation.empty());
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back("indexed-" + std::to_string(i) + "-" + ids::new_trace_id());
    ASSERT_EQ(cluster.send_text(token, conversation, "m" + std::to_string(i), ids.back()).status,
              202);
  }
  cluster.kill_node("router-1");
  cluster.kill_node("frontend-1");
  cluster.start_node("router-1");
  cluster.start_node("frontend-1");
  for (const auto& id : ids) {
    HttpResult got;
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    do {
      got = http_request(cluster.http_port(), "GET", "/v1/messages/" + id, "", bearer(token));
      if (got.status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (Clock::now() < deadline);
    ASSERT_EQ(got.status, 200) << id << ": " << got.body;
    EXPECT_EQ(got.json()["conversation_id"], conversation);
  }
}

TEST(ClusterTest, SupervisorRestartsACrashedNode) {
  TestCluster cluster;
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  const auto started = log_events(cluster.read_log("up"), "node_started", "storage-2");
  ASSERT_EQ(started.size(), 1u);
  const pid_t pid = started[0]["pid"].get<pid_t>();
  ASSERT_EQ(kill(pid, SIGKILL), 0);

  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline &&
         log_events(cluster.read_log("up"), "node_started", "storage-2").size() < 2)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string log = cluster.read_log("up");
  const auto exits = log_events(log, "node_exited", "storage-2");
  ASSERT_EQ(exits.size(), 1u) << log;
  EXPECT_NE(exits[0]["status"].get<std::string>().find("Killed"), std::string::npos);
  const auto restarted = log_events(log, "node_started", "storage-2");
  ASSERT_EQ(restarted.size(), 2u) << log;
  EXPECT_NE(restarted[1]["pid"].get<pid_t>(), pid);
  EXPECT_EQ(restarted[1]["restarts"].get<int>(), 1);
  EXPECT_TRUE(cluster.wait_ready()) << log;
}

TEST(ClusterTest, APreferredLeaderThatIsDownIsLedAround) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-3"})
    cluster.start_node(node);
  // storage-2 never starts: the partitions it would lead elect another replica.
  std::string token, conversation;
  HttpResult result;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (token.empty() && cluster.create_user("alice") && cluster.create_user("bob"))
      token = cluster.token();
    if (!token.empty() && conversation.empty())
      conversation = cluster.conversation_owned_by("storage-2", token);
    if (!conversation.empty()) {
      result = cluster.send_text(token, conversation, "hello", "first");
      if (result.status == 202) break;
      EXPECT_TRUE(result.status == 503 || result.status == 504) << result.body;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(result.status, 202) << result.body;
  EXPECT_EQ(result.json()["seq"].get<int>(), 1);
  const json history = full_history(cluster, token, conversation);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0]["message_id"], "first");
}

TEST(ClusterTest, WithoutAMajorityWritesAndReadsGet503UntilItIsBack) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  const std::string token = cluster.token();
  const std::string conversation = cluster.conversation_owned_by("storage-1", token);
  ASSERT_FALSE(conversation.empty());
  for (int i = 1; i <= 3; ++i)
    ASSERT_EQ(cluster.send_text(token, conversation, "m" + std::to_string(i)).status, 202);
  // Let the followers learn the commit index (next heartbeat) before the cut.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  cluster.kill_node("storage-2");
  cluster.kill_node("storage-3");

  const auto started = Clock::now();
  auto result = cluster.send_text(token, conversation, "no quorum", "lost-1");
  const auto elapsed = Clock::now() - started;
  EXPECT_TRUE(result.status == 503 || result.status == 504) << result.status << " " << result.body;
  EXPECT_TRUE(result.json().contains("error")) << result.body;
  if (result.status == 503) {
    EXPECT_EQ(result.headers["retry-after"], "1");
  }
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500 + 1000));  // request_timeout_ms + slack

  // Without a majority no replica can know that its state is current (a newer
  // leader may exist beyond a partition), so reads are refused too, not stale.
  const HttpResult read = cluster.history(token, conversation);
  EXPECT_TRUE(read.status == 503 || read.status == 504) << read.status << " " << read.body;
  // Writes stay refused, quickly, while there is no majority.
  result = cluster.send_text(token, conversation, "still no quorum", "lost-2");
  EXPECT_TRUE(result.status == 503 || result.status == 504) << result.body;

  // With a majority again, everything acknowledged is there, in order.
  cluster.start_node("storage-2");
  HttpResult healed;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  do {
    healed = cluster.history(token, conversation);
  } while (healed.status != 200 && Clock::now() < deadline);
  ASSERT_EQ(healed.status, 200) << healed.body;
  const json messages = healed.json()["messages"];
  ASSERT_GE(messages.size(), 3u) << healed.body;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(messages[i]["seq"].get<int>(), i + 1);
}

TEST(ClusterTest, AReplicaBehindTheTrimmedLogCatchesUpFromASnapshot) {
  ClusterOptions options;
  options.log_retained_max = 20;  // leaders keep 20 entries for a replica that is down
  TestCluster cluster(options);
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  const std::string token = cluster.token();
  const std::string conversation = cluster.conversation_owned_by("storage-1", token);
  ASSERT_FALSE(conversation.empty());
  cluster.kill_node("storage-3");
  constexpr int kMessages = 150;
  // A send touches only its conversation's partition, which storage-1 leads; retried as a client
  // would, should an election be under way all the same.
  const auto election_deadline = Clock::now() + std::chrono::seconds(10);
  for (int i = 1; i <= kMessages; ++i) {
    HttpResult result;
    do {
      result =
          cluster.send_text(token, conversation, "m" + std::to_string(i), "m-" + std::to_string(i));
    } while ((result.status == 503 || result.status == 504) && Clock::now() < election_deadline);
    ASSERT_EQ(result.status, 202) << result.body;
  }
  cluster.start_node("storage-3");
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (cluster.metric("storage-3", "chat4all_storage_snapshots_installed_total") < 1 &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(cluster.metric("storage-3", "chat4all_storage_snapshots_installed_total"), 1);
  // Let heartbeats carry the commit index, then make storage-3 the only
  // replica that holds the partition: storage-2 comes back with no data at all
  // (so it can only vote for storage-3, whose log is longer) and storage-1
  // stays down. Only a leader serves reads, so what is read is storage-3's.
  // storage-2 keeps its key pair (secrets/): the others know it by that key.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cluster.kill_node("storage-1");
  cluster.kill_node("storage-2");
  for (const auto& entry :
       std::filesystem::directory_iterator(cluster.directory() / "data" / "storage-2"))
    if (entry.path().filename() != "secrets") std::filesystem::remove_all(entry.path());
  cluster.start_node("storage-2");
  HttpResult read;
  deadline = Clock::now() + std::chrono::seconds(10);
  do {
    read = cluster.history(token, conversation, "limit=500");
  } while (read.status != 200 && Clock::now() < deadline);
  ASSERT_EQ(read.status, 200) << read.body;
  const json messages = read.json()["messages"];
  ASSERT_EQ(messages.size(), static_cast<std::size_t>(kMessages)) << read.body.substr(0, 300);
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(messages[i]["seq"].get<int>(), i + 1);
    EXPECT_EQ(messages[i]["message_id"], "m-" + std::to_string(i + 1));
  }
}

TEST(ClusterTest, PausedLeaderIsReplacedAndARetryIsStoredOnce) {
  TestCluster cluster;
  for (const char* node : {"frontend-1", "router-1", "storage-1", "storage-2", "storage-3"})
    cluster.start_node(node);
  ASSERT_TRUE(cluster.wait_ready());
  const std::string token = cluster.token();
  const std::string conversation = cluster.conversation_owned_by("storage-2", token);
  ASSERT_FALSE(conversation.empty());
  ASSERT_EQ(cluster.send_text(token, conversation, "before pause", "before").status, 202);

  cluster.signal_node("storage-2", SIGSTOP);
  const auto started = Clock::now();
  auto result = cluster.send_text(token, conversation, "during pause", "retry-me");
  const auto elapsed = Clock::now() - started;
  // Either the other replicas elected a leader in time, or the client is told
  // the outcome is unknown; never a hang.
  EXPECT_TRUE(result.status == 202 || result.status == 503 || result.status == 504)
      << result.status << " " << result.body;
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500 + 1000));

  // The client does not know whether the first attempt landed; retrying with
  // the same message_id is safe either way, during the pause and after it.
  HttpResult retry;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  do {
    retry = cluster.send_text(token, conversation, "during pause", "retry-me");
  } while (retry.status != 202 && Clock::now() < deadline);
  ASSERT_EQ(retry.status, 202) << retry.body;
  EXPECT_EQ(retry.json()["seq"].get<int>(), 2);
  cluster.signal_node("storage-2", SIGCONT);
  // The old leader comes back as a follower of a newer epoch: its stale view
  // never produces a second copy.
  deadline = Clock::now() + std::chrono::seconds(10);
  do {
    retry = cluster.send_text(token, conversation, "during pause", "retry-me");
  } while (retry.status != 202 && Clock::now() < deadline);
  ASSERT_EQ(retry.status, 202) << retry.body;
  EXPECT_EQ(retry.json()["seq"].get<int>(), 2);
  EXPECT_EQ(cluster.send_text(token, conversation, "after pause", "after").status, 202);
  const json history = full_history(cluster, token, conversation);
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0]["message_id"], "before");
  EXPECT_EQ(history[1]["message_id"], "retry-me");
  EXPECT_EQ(history[2]["message_id"], "after");
}

TEST(ClusterTest, AFullStoreRefusesWith507AndKeepsWhatItHad) {
  ClusterOptions options;
  options.map_size_max_mb = 1;  // a store of 1 MiB fills after a few hundred 4 KiB messages
  TestCluster cluster(options);
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  const std::string token = cluster.token();
  const std::string conversation = cluster.conversation_owned_by("storage-1", token);
  ASSERT_FALSE(conversation.empty());
  // Made before the store fills up: creating it needs room too.
  const std::string other = cluster.conversation_owned_by("storage-2", token);
  ASSERT_FALSE(other.empty());
  const std::string text(4000, 'f');
  int stored = 0;
  HttpResult refused;
  for (int i = 0; i < 2000; ++i) {
    auto result = cluster.send_text(token, conversation, text, "fill-" + std::to_string(i));
    if (result.status != 202) {
      refused = result;
      break;
    }
    ++stored;
  }
  ASSERT_EQ(refused.status, 507) << refused.body;
  EXPECT_EQ(refused.json()["error"]["code"], "storage_full");
  EXPECT_EQ(refused.json()["error"]["message"].get<std::string>().find("storage is full: storage"),
            std::string::npos)
      << "the message says it once: " << refused.body;
  ASSERT_GT(stored, 10);
  // A retry of a message already stored needs no room: it is answered as stored.
  auto retried = cluster.send_text(token, conversation, text, "fill-3");
  ASSERT_EQ(retried.status, 202) << retried.body;
  EXPECT_EQ(retried.json()["seq"], 4);
  EXPECT_EQ(retried.headers["idempotent-replayed"], "true");
  // Everything acknowledged is still there, in order; the refused one is not.
  const json history = full_history(cluster, token, conversation);
  ASSERT_EQ(history.size(), static_cast<std::size_t>(stored));
  for (int i = 0; i < stored; ++i) {
    EXPECT_EQ(history[i]["seq"].get<int>(), i + 1);
    EXPECT_EQ(history[i]["message_id"], "fill-" + std::to_string(i));
  }
  // Every replica holds a copy, so all of them are full: other partitions are
  // refused the same way, and the nodes stay up and keep serving reads.
  auto refused_elsewhere = cluster.send_text(token, other, "no room");
  EXPECT_EQ(refused_elsewhere.status, 507) << refused_elsewhere.body;
  EXPECT_EQ(full_history(cluster, token, conversation).size(), static_cast<std::size_t>(stored));
  const auto by_id = http_request(cluster.http_port(), "GET", "/v1/messages/fill-0", "",
                                  {{"Authorization", "Bearer " + token}});
  EXPECT_EQ(by_id.status, 200) << by_id.body << cluster.read_log("up");
  // The metrics say why: the map is over the 90% at which leaders refuse, and where the bytes
  // are. They are read every few seconds.
  double ratio = -1, messages_bytes = -1;
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  do {
    ratio = cluster.metric("storage-1", "chat4all_storage_map_used_ratio");
    messages_bytes = cluster.metric("storage-1", "chat4all_storage_bytes{table=\"messages\"}");
    if (ratio > 0.9 && messages_bytes > stored * 4000.0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  } while (Clock::now() < deadline);
  EXPECT_GT(ratio, 0.9);
  EXPECT_LE(ratio, 1.0);
  EXPECT_EQ(cluster.metric("storage-1", "chat4all_storage_map_max_bytes"), 1 << 20);
  EXPECT_GT(messages_bytes, stored * 4000.0) << "every stored text is in the messages table";
  EXPECT_LT(messages_bytes, 1 << 20);
  EXPECT_GE(cluster.metric("storage-1", "chat4all_storage_bytes{table=\"write_ahead_log\"}"), 0);
}

TEST(ClusterTest, NoRouterGets503) {
  TestCluster cluster;
  cluster.start_node("frontend-1");
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (http_request(cluster.http_port(), "GET", "/healthz").status != 200 &&
         Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // Logins need the users' records from storage: unavailable, not "wrong password".
  const auto login = http_request(
      cluster.http_port(), "POST", "/v1/auth/token",
      json{{"tenant_id", kTenant}, {"user_id", "alice"}, {"password", kPassword}}.dump(),
      {{"Content-Type", "application/json"}});
  EXPECT_EQ(login.status, 503) << login.body;
  // A token signed with the cluster's own key (the frontend made it at start).
  const auto key =
      auth::load_or_create_token_key(cluster.directory() / "data" / "secrets" / "token.key");
  const std::string token =
      auth::TokenSigner(key).issue("alice", ids::now_ms() / 1000, 600, kTenant, "user");
  const auto started = Clock::now();
  auto result = cluster.send_text(token, "c1", "anyone?");
  EXPECT_EQ(result.status, 503) << result.body;
  EXPECT_EQ(result.json()["error"]["code"], "unavailable");
  EXPECT_EQ(result.headers["retry-after"], "1");
  EXPECT_LT(Clock::now() - started, std::chrono::milliseconds(500));
}

TEST(ClusterTest, MalformedFramesAreCountedAndDropped) {
  TestCluster cluster;
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  // Leadership settles on the preferred replicas first (hand-backs included).
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double elections_before =
      cluster.metric("storage-1", "chat4all_storage_leadership_gained_total") +
      cluster.metric("storage-2", "chat4all_storage_leadership_gained_total") +
      cluster.metric("storage-3", "chat4all_storage_leadership_gained_total");

  const wire::Header future{99, wire::MessageType::kAppendRequest, 1, "t"};
  const std::string wrong_version = codec::encode(future, wire::ReadRequest{"c", 1, 1});
  const wire::Header read_header{wire::kWireVersion, wire::MessageType::kAppendRequest, 2, "t"};
  const std::string wrong_body = codec::encode(read_header, std::string("not an append"));
  // Replication from a node the topology does not name, and for a partition
  // no storage node hosts: well-formed, still refused.
  const wire::Header batch_header{wire::kWireVersion, wire::MessageType::kReplicationBatch, 0, ""};
  wire::ReplicationMessage heartbeat;
  heartbeat.term = 1'000'000;  // would depose every leader if it were believed
  const std::string from_stranger =
      codec::encode(batch_header, wire::ReplicationBatch{"intruder", {heartbeat}});
  heartbeat.partition = 1'000'000;
  const std::string unknown_partition =
      codec::encode(batch_header, wire::ReplicationBatch{"storage-2", {heartbeat}});
  constexpr int kGarbageFrames = 4;
  constexpr int kStorageOnlyFrames = 2;
  for (const auto& [node, token_frame] :
       std::vector<std::pair<std::string, bool>>{{"storage-1", true}, {"router-1", false}}) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 1000);
    // Garbage from a key the node admits, so that it reaches the node's frame checks.
    cluster.present_key(socket, token_frame ? "storage-2" : "frontend-1", node);
    socket.connect("tcp://127.0.0.1:" + std::to_string(cluster.port_of(node, "rpc")));
    auto send = [&](const std::vector<std::string>& frames) {
      for (std::size_t i = 0; i < frames.size(); ++i)
        socket.send(zmq::buffer(frames[i]),
                    i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    };
    const std::string token(8, 'x');
    auto framed = [&](std::string frame) {
      return token_frame ? std::vector<std::string>{token, frame} : std::vector<std::string>{frame};
    };
    send(framed("\xc1 definitely not msgpack"));
    send(framed(wrong_version));
    send(framed(wrong_body));
    send({"a", "b", "c", "d"});  // wrong frame count
    if (token_frame) {
      send({"", from_stranger});
      send({"", unknown_partition});
    }
    socket.close();
  }
  auto rejected = [&](const std::string& node) {
    return cluster.metric(node, "chat4all_wire_frames_rejected_total");
  };
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (Clock::now() < deadline && (rejected("storage-1") < kGarbageFrames + kStorageOnlyFrames ||
                                     rejected("router-1") < kGarbageFrames))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(rejected("storage-1"), kGarbageFrames + kStorageOnlyFrames);
  EXPECT_GE(rejected("router-1"), kGarbageFrames);
  // Both nodes are still alive and serving, and no leader was deposed by the
  // stranger's epoch.
  EXPECT_TRUE(cluster.wait_ready(std::chrono::seconds(5)));
  EXPECT_EQ(cluster.metric("storage-1", "chat4all_storage_leadership_gained_total") +
                cluster.metric("storage-2", "chat4all_storage_leadership_gained_total") +
                cluster.metric("storage-3", "chat4all_storage_leadership_gained_total"),
            elections_before);
  EXPECT_TRUE(log_events(cluster.read_log("up"), "node_exited").empty());
}

// Every node's ZeroMQ socket admits only the Curve keys of the roles that may talk to it: a
// plaintext DEALER, a key no node has and a frontend's key on a storage node's socket get no
// answer to a read request, and the refusing node counts each refusal.
TEST(ClusterTest, NodesAnswerOnlyTheCurveKeysOfTheRolesTheyServe) {
  using namespace std::chrono_literals;
  TestCluster cluster;
  cluster.start_all();
  ASSERT_TRUE(cluster.wait_ready()) << cluster.read_log("up");
  const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest, 1, "t"};
  const std::string read = codec::encode(header, wire::ReadRequest{"c1", 1, 10});
  const std::string token(8, 'x');  // storage nodes take [token][frame] from routers
  // Sends the read request to `node`'s rpc port from a DEALER that `present` sets up; whether
  // anything came back within `bound`.
  auto answered = [&](const std::string& node, const std::function<void(zmq::socket_t&)>& present,
                      std::chrono::milliseconds bound) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    socket.set(zmq::sockopt::linger, 0);
    present(socket);
    socket.connect("tcp://127.0.0.1:" + std::to_string(cluster.port_of(node, "rpc")));
    if (node.rfind("storage", 0) == 0)
      transport::send_multipart(socket, {token, read});
    else
      transport::send_multipart(socket, {read});
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    return transport::poll(&item, 1, bound) > 0;
  };
  auto refusals = [&](const std::string& node, const std::string& socket,
                      const std::string& reason) {
    return cluster.metric(node, "chat4all_curve_handshakes_failed_total{socket=\"" + socket +
                                    "\",reason=\"" + reason + "\"}");
  };
  // Waits (bounded) until `node` counted a refusal for one of `reasons`.
  auto counted = [&](const std::string& node, const std::string& socket,
                     const std::vector<std::string>& reasons) {
    auto total = [&] {
      double sum = 0;
      for (const auto& reason : reasons) sum += refusals(node, socket, reason);
      return sum;
    };
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline && total() < 1)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return total() >= 1;
  };
  EXPECT_EQ(refusals("router-1", "router.rpc", "protocol"), 0);
  EXPECT_EQ(refusals("router-1", "router.rpc", "no_detail"), 0);
  EXPECT_EQ(refusals("storage-1", "storage.rpc", "auth"), 0);

  // The keys the sockets name are answered: the refusals below are not a test that cannot pass.
  EXPECT_TRUE(answered(
      "router-1", [&](auto& s) { cluster.present_key(s, "frontend-1", "router-1"); }, 5s));
  EXPECT_TRUE(answered(
      "storage-1", [&](auto& s) { cluster.present_key(s, "router-1", "storage-1"); }, 5s));

  EXPECT_FALSE(answered(
      "router-1", [](auto&) {}, 1500ms))
      << "a plaintext peer was answered";
  // Whichever side sees the mechanisms differ first ends the greeting: the router counts a
  // protocol error, or the peer hanging up mid-handshake.
  EXPECT_TRUE(counted("router-1", "router.rpc", {"protocol", "no_detail"}));

  const TempDir stranger_dir;
  const auto stranger = curve::load_or_create_key_pair(stranger_dir.path() / "curve.key");
  EXPECT_FALSE(answered(
      "router-1",
      [&](auto& s) {
        cluster.present_key(s, "frontend-1", "router-1");           // the router's public key ...
        s.set(zmq::sockopt::curve_publickey, stranger.public_key);  // ... a stranger's pair
        s.set(zmq::sockopt::curve_secretkey, stranger.secret_key);
      },
      1500ms))
      << "an unknown key was answered";
  EXPECT_TRUE(counted("router-1", "router.rpc", {"auth"}));

  EXPECT_FALSE(answered(
      "storage-1", [&](auto& s) { cluster.present_key(s, "frontend-1", "storage-1"); }, 1500ms))
      << "a frontend's key was answered on a storage node's socket";
  EXPECT_TRUE(counted("storage-1", "storage.rpc", {"auth"}));
  const std::string storage_log = cluster.read_log("up");
  EXPECT_NE(storage_log.find("key of a role this socket does not admit"), std::string::npos);
}

struct BadTopology {
  std::string name;
  std::string text;
  std::string expected;  // part of the error message, including file and line
};

TEST(ClusterTest, MalformedTopologyIsRefusedWithFileLineAndProblem) {
  TestCluster scratch;                                             // only for its directory
  const std::string header = "cluster: {name: t, data_dir: d}\n";  // line 1
  const std::string router =
      "  - {name: r, role: router, host: 127.0.0.1, endpoints: {rpc: 7001}}\n";
  const std::string storage =
      "  - {name: s, role: storage, host: 127.0.0.1, endpoints: {rpc: 7002}}\n";
  const std::vector<BadTopology> cases = {
      {"bad-yaml.yaml", header + "nodes: [\n  {name: x\n", "bad-yaml.yaml:"},
      {"bad-role.yaml",
       header + "nodes:\n" + router + storage +
           "  - {name: q, role: queue, host: 127.0.0.1, endpoints: {rpc: 7003}}\n",
       "bad-role.yaml:5: unknown role 'queue'"},
      {"dup-name.yaml",
       header + "nodes:\n" + router + storage +
           "  - {name: s, role: storage, host: 127.0.0.1, endpoints: {rpc: 7003}}\n",
       "dup-name.yaml:5: duplicate node name 's'"},
      {"dup-port.yaml",
       header + "nodes:\n" + router +
           "  - {name: s, role: storage, host: 127.0.0.1, endpoints: {rpc: 7001}}\n",
       "dup-port.yaml:4: port 7001 on 127.0.0.1 is used twice"},
      {"no-host.yaml",
       header + "nodes:\n" + router + "  - {name: s, role: storage, endpoints: {rpc: 7002}}\n",
       "no-host.yaml:4: missing field 'host'"},
  };
  for (const auto& bad : cases) {
    const auto path = scratch.write_file(bad.name, bad.text);
    const auto [code, output] = run_chat4all({"up", path.string()});
    EXPECT_EQ(code, 2) << bad.name << ": " << output;
    EXPECT_NE(output.find(bad.expected), std::string::npos) << bad.name << ": " << output;
    EXPECT_NE(output.find("invalid topology"), std::string::npos) << output;
  }
}

}  // namespace
}  // namespace chat4all::testing
