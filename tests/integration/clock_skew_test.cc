// A storage node whose wall clock is 60 s fast, as real processes: stored
// times must stay within the configured bound of real time (issue 12, item 6).
//
// The fast clock comes from libfaketime (Debian package faketime, installed by
// tools/bootstrap), preloaded into that one node: FAKETIME="+60s" shifts
// CLOCK_REALTIME, which ids::now_ms() reads through system_clock, by an
// absolute offset (rates unchanged); FAKETIME_DONT_FAKE_MONOTONIC=1 leaves
// CLOCK_MONOTONIC, the steady_clock the consensus tick runs on, alone. The
// library is preloaded directly rather than through the faketime program,
// which forks: the pid the cluster stops would be faketime's, not the node's.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "common/ids.h"
#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

constexpr const char* kLibFaketime = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
constexpr std::int64_t kClockSkewMaxMs = 1000;

void run_with_fast_storage_node(std::uint32_t clock_skew_max_ms, bool expect_bound_kept) {
  if (!std::filesystem::exists(kLibFaketime))
    GTEST_SKIP() << kLibFaketime << " is missing: run tools/bootstrap (package faketime)";
  ClusterOptions options;
  options.clock_skew_max_ms = clock_skew_max_ms;
  TestCluster cluster(options);
  // storage-1 is the preferred leader of the conversations the test uses.
  cluster.start_node("storage-1", {std::string("LD_PRELOAD=") + kLibFaketime, "FAKETIME=+60s",
                                   "FAKETIME_DONT_FAKE_MONOTONIC=1"});
  cluster.start_node("storage-2");
  cluster.start_node("storage-3");
  cluster.start_node("router-1");
  cluster.start_node("frontend-1");
  ASSERT_TRUE(cluster.wait_ready(std::chrono::seconds(30)));

  const std::string alice = cluster.token("alice");
  ASSERT_FALSE(alice.empty());
  const std::string conversation = cluster.conversation_owned_by("storage-1", alice);
  ASSERT_FALSE(conversation.empty());

  const std::int64_t before_ms = ids::now_ms();
  for (int i = 0; i < 20; ++i) {
    const auto sent = cluster.send_text(alice, conversation, "m" + std::to_string(i));
    ASSERT_EQ(sent.status, 202) << sent.body;
  }
  const std::int64_t after_ms = ids::now_ms();
  const auto page = cluster.history(alice, conversation, "limit=50");
  ASSERT_EQ(page.status, 200) << page.body;
  const auto messages = page.json()["messages"];
  ASSERT_EQ(messages.size(), 20u);
  std::int64_t worst_ahead_ms = 0;
  for (const auto& message : messages)
    worst_ahead_ms = std::max(worst_ahead_ms, message["stored_at"].get<std::int64_t>() - after_ms);
  if (!expect_bound_kept) {
    // Without the check the fast node leads its partitions and stamps the future. It takes
    // them back as their preferred leader shortly after the cluster is ready: until then,
    // another leader stamps. The wait ends with the first message it stamped.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    for (int i = 0; worst_ahead_ms <= 50'000 && std::chrono::steady_clock::now() < deadline; ++i) {
      const auto sent = cluster.send_text(alice, conversation, "later-" + std::to_string(i));
      ASSERT_EQ(sent.status, 202) << sent.body;
      const std::uint64_t seq = sent.json()["seq"].get<std::uint64_t>();
      const auto last =
          cluster.history(alice, conversation, "limit=1&before_seq=" + std::to_string(seq + 1));
      ASSERT_EQ(last.status, 200) << last.body;
      const auto stamped = last.json()["messages"];
      ASSERT_EQ(stamped.size(), 1u) << last.body;
      worst_ahead_ms =
          std::max(worst_ahead_ms, stamped[0]["stored_at"].get<std::int64_t>() - ids::now_ms());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_GT(worst_ahead_ms, 50'000);
    return;
  }
  for (const auto& message : messages) {
    const std::int64_t stored_at = message["stored_at"];
    EXPECT_GE(stored_at, before_ms - kClockSkewMaxMs) << message.dump();
    EXPECT_LE(stored_at, after_ms + kClockSkewMaxMs) << message.dump();
  }
  // The fast node said why it does not lead, and counted it.
  const std::string log = cluster.read_log("storage-1");
  EXPECT_NE(log.find("\"clock_skew\""), std::string::npos);
  EXPECT_NE(log.find("\"off\":true"), std::string::npos);
  const auto metrics =
      http_request(cluster.port_of("storage-1", "metrics"), "GET", "/metrics").body;
  EXPECT_NE(metrics.find("chat4all_storage_clock_skew_changes_total{state=\"off\"}"),
            std::string::npos);
}

TEST(ClockSkewTest, AStorageNodeSixtySecondsFastStampsNoMessage) {
  run_with_fast_storage_node(static_cast<std::uint32_t>(kClockSkewMaxMs), true);
}

// The same cluster without the check: proves the fast clock really reaches the
// node, so the test above would catch a regression.
TEST(ClockSkewTest, WithoutTheCheckTheFastNodeStampsTheFuture) {
  run_with_fast_storage_node(0, false);
}

}  // namespace
}  // namespace chat4all::testing
