// Changing the topology of a running cluster (`chat4all topology apply`): a frontend and a
// router added while a client writes, then the first router removed; nothing acknowledged is
// lost and the client sees only retriable errors.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Sends text messages with ids w-1, w-2 ... to one conversation through frontend-1 until
// stopped, keeping which were acknowledged (202) and every other answer.
class Writer {
 public:
  Writer(TestCluster& cluster, std::string token, std::string conversation)
      : cluster_(cluster),
        token_(std::move(token)),
        conversation_(std::move(conversation)),
        thread_([this] { run(); }) {}
  ~Writer() { stop(); }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::string> acknowledged() {
    std::lock_guard lock(mutex_);
    return acknowledged_;
  }
  std::vector<HttpResult> errors() {
    std::lock_guard lock(mutex_);
    return errors_;
  }
  std::size_t sent() const { return sent_.load(); }

 private:
  void run() {
    for (int n = 1; !stopping_.load(); ++n) {
      const std::string id = "w-" + std::to_string(n);
      const HttpResult result = cluster_.send_text(token_, conversation_, "text " + id, id);
      ++sent_;
      {
        std::lock_guard lock(mutex_);
        if (result.status == 202)
          acknowledged_.insert(id);
        else
          errors_.push_back(result);
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  TestCluster& cluster_;
  const std::string token_;
  const std::string conversation_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> sent_{0};
  std::mutex mutex_;
  std::set<std::string> acknowledged_;
  std::vector<HttpResult> errors_;
  std::thread thread_;
};

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string without_line_naming(std::string text, const std::string& node) {
  const auto at = text.find("{name: " + node + ",");
  const auto begin = text.rfind('\n', at) + 1;
  text.erase(begin, text.find('\n', at) + 1 - begin);
  return text;
}

template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return condition();
}

std::set<std::string> stored_ids(TestCluster& cluster, const std::string& token,
                                 const std::string& conversation) {
  std::set<std::string> ids;
  std::uint64_t from_seq = 1;
  for (int page = 0; page < 1000; ++page) {
    const auto result =
        cluster.history(token, conversation, "from_seq=" + std::to_string(from_seq) + "&limit=200");
    EXPECT_EQ(result.status, 200) << result.body;
    if (result.status != 200) break;
    const auto body = result.json();
    for (const auto& message : body["messages"]) ids.insert(message["message_id"]);
    if (!body["has_more"].get<bool>()) break;
    from_seq = body["next_from_seq"];
  }
  return ids;
}

TEST(TopologyLive, FrontendAndRouterAddedThenARouterRemovedWhileAClientWrites) {
  ClusterOptions options;
  options.token_requests_per_s = 1000;
  options.token_burst = 1000;
  TestCluster cluster(options);
  for (const char* name : {"storage-1", "storage-2", "storage-3", "router-1", "frontend-1"})
    cluster.start_node(name);
  ASSERT_TRUE(cluster.wait_ready(30s));
  const std::string alice = cluster.token("alice");
  const std::string conversation = cluster.create_conversation(alice, {"bob"});
  ASSERT_FALSE(conversation.empty());

  // Version 2: a second frontend and a second router.
  const std::string version_1 = read_text(cluster.topology_path());
  const std::uint16_t frontend_2 = cluster.reserve_port("frontend-2", "http");
  const std::string version_2 =
      version_1 + "  - {name: frontend-2, role: frontend, host: 127.0.0.1, endpoints: {http: " +
      std::to_string(frontend_2) + "}}\n" +
      "  - {name: router-2, role: router, host: 127.0.0.1, endpoints: {rpc: " +
      std::to_string(cluster.reserve_port("router-2", "rpc")) +
      ", metrics: " + std::to_string(cluster.reserve_port("router-2", "metrics")) + "}}\n";
  const auto path_2 = cluster.write_file("topology-2.yaml", version_2);

  Writer writer(cluster, alice, conversation);

  // router-1 records its file as version 1 within a read interval of its start.
  std::pair<int, std::string> dry_run;
  EXPECT_TRUE(eventually(
      [&] {
        dry_run = run_chat4all({"topology", "apply", path_2.string(), "--dry-run"});
        return dry_run.first == 0;
      },
      20s));
  const auto& [dry_code, dry] = dry_run;
  ASSERT_EQ(dry_code, 0) << dry;
  EXPECT_NE(dry.find("version 1 -> 2"), std::string::npos) << dry;
  EXPECT_NE(dry.find("frontend: +frontend-2"), std::string::npos) << dry;
  EXPECT_NE(dry.find("router: +router-2"), std::string::npos) << dry;
  EXPECT_NE(dry.find("partitions moving: 0 of 16"), std::string::npos) << dry;

  // Refused before anything is stored: a changed partition_count, and a storage node added
  // while storage does not carry out replica set changes.
  std::string resharded = version_2;
  resharded.replace(resharded.find("partition_count: 16"), 19, "partition_count: 32");
  auto [refused_code, refused] =
      run_chat4all({"topology", "apply", cluster.write_file("resharded.yaml", resharded).string()});
  EXPECT_EQ(refused_code, 2) << refused;
  EXPECT_NE(refused.find("partition_count changes from 16 to 32"), std::string::npos) << refused;
  const std::string with_storage =
      version_1 + "  - {name: storage-4, role: storage, host: 127.0.0.1, endpoints: {rpc: " +
      std::to_string(cluster.reserve_port("storage-4", "rpc")) + "}}\n";
  auto [storage_code, storage_out] = run_chat4all(
      {"topology", "apply", cluster.write_file("storage-4.yaml", with_storage).string()});
  EXPECT_EQ(storage_code, 1) << storage_out;
  EXPECT_NE(storage_out.find("do not carry out replica set changes"), std::string::npos)
      << storage_out;
  EXPECT_NE(storage_out.find("nothing was stored"), std::string::npos) << storage_out;

  // Applied first, the new nodes started once apply says every node has read the version.
  auto [code_2, applied_2] = run_chat4all({"topology", "apply", path_2.string()});
  ASSERT_EQ(code_2, 0) << applied_2;
  EXPECT_NE(applied_2.find("stored version 2"), std::string::npos) << applied_2;
  EXPECT_NE(applied_2.find("start the nodes it adds"), std::string::npos) << applied_2;
  cluster.start_node_from(path_2, "router-2");
  cluster.start_node_from(path_2, "frontend-2");
  auto [again_code, again] = run_chat4all({"topology", "apply", path_2.string()});
  EXPECT_EQ(again_code, 0) << again;
  EXPECT_NE(again.find("already: version 2"), std::string::npos) << again;

  // The new frontend answers requests that land in storage.
  std::string via_frontend_2;
  EXPECT_TRUE(eventually(
      [&] {
        const nlohmann::json body = {{"conversation_id", conversation},
                                     {"message_id", "via-frontend-2"},
                                     {"payload", {{"type", "text"}, {"text", "hello"}}}};
        const auto result =
            http_request(frontend_2, "POST", "/v1/messages", body.dump(), bearer(alice), 3s);
        return result.status == 202;
      },
      20s));
  // Routers spread: frontend-1 learned router-2 and sends it a share of its requests.
  EXPECT_TRUE(eventually(
      [&] { return cluster.metric("router-2", "chat4all_router_forwarded_total") > 5; }, 20s));

  // Version 3: router-1 removed. Once every node follows it (a read interval, about 2 s, and
  // some), router-1 gets no more requests and is stopped.
  const auto path_3 =
      cluster.write_file("topology-3.yaml", without_line_naming(version_2, "router-1"));
  auto [code_3, applied_3] = run_chat4all({"topology", "apply", path_3.string()});
  ASSERT_EQ(code_3, 0) << applied_3;
  EXPECT_NE(applied_3.find("router: -router-1"), std::string::npos) << applied_3;
  std::this_thread::sleep_for(6s);
  cluster.kill_node("router-1");
  const std::size_t sent_at_kill = writer.sent();
  EXPECT_TRUE(eventually([&] { return writer.sent() > sent_at_kill + 50; }, 30s));
  writer.stop();

  const auto acknowledged = writer.acknowledged();
  EXPECT_GT(acknowledged.size(), 100u);
  const auto stored = stored_ids(cluster, alice, conversation);
  for (const auto& id : acknowledged) EXPECT_TRUE(stored.count(id)) << id << " was lost";
  EXPECT_TRUE(stored.count("via-frontend-2"));
  for (const auto& error : writer.errors()) {
    EXPECT_TRUE(error.status == 503 || error.status == 504) << error.status << " " << error.body;
    if (error.status == 503) {
      EXPECT_TRUE(error.headers.count("retry-after")) << error.body;
    }
  }
  // After router-1 is gone, requests still go through router-2.
  std::size_t after_kill = 0;
  for (std::size_t n = sent_at_kill + 10; n <= writer.sent(); ++n)
    after_kill += acknowledged.count("w-" + std::to_string(n));
  EXPECT_GT(after_kill, 30u);
}

}  // namespace
}  // namespace chat4all::testing
