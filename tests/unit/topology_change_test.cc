// Changing the topology at run time, the pure part (common/topology_change.h): the plan, its
// refusals, the budgeted order of storage moves and the endpoint diff the nodes apply.
#include "common/topology_change.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <set>

#include "common/topology_follower.h"

namespace chat4all {
namespace {

constexpr std::uint32_t kPartitions = 256;

// A topology with `storage` storage nodes, routers and frontends named in the lists; ports
// follow from each node's position so that a node keeps its address across versions.
std::string topology_text(int storage, const std::vector<std::string>& routers = {"router-1"},
                          const std::vector<std::string>& frontends = {"frontend-1"},
                          const std::string& cluster_extra = "") {
  std::string text = "cluster:\n  name: test\n  replication_factor: 3\n  partition_count: " +
                     std::to_string(kPartitions) + "\n  virtual_nodes: 64\n  data_dir: data\n" +
                     cluster_extra + "nodes:\n";
  auto port_of = [](const std::string& name) {
    const auto dash = name.rfind('-');
    const int base = name.rfind("storage", 0) == 0  ? 7000
                     : name.rfind("router", 0) == 0 ? 6000
                                                    : 8000;
    return std::to_string(base + 10 * std::stoi(name.substr(dash + 1)));
  };
  for (int i = 1; i <= storage; ++i) {
    const std::string name = "storage-" + std::to_string(i);
    text += "  - {name: " + name +
            ", role: storage, host: 127.0.0.1, endpoints: {rpc: " + port_of(name) + "}}\n";
  }
  for (const auto& name : routers)
    text += "  - {name: " + name +
            ", role: router, host: 127.0.0.1, endpoints: {rpc: " + port_of(name) + "}}\n";
  for (const auto& name : frontends)
    text += "  - {name: " + name +
            ", role: frontend, host: 127.0.0.1, endpoints: {http: " + port_of(name) + "}}\n";
  return text;
}

Topology parse(const std::string& text) {
  return parse_topology(text, "t.yaml", "/srv");
}

TopologyPlan plan(const std::string& before, const std::string& after) {
  return plan_topology_change(parse(before), before, parse(after), after);
}

const RoleChange& role(const TopologyPlan& plan, NodeRole which) {
  for (const auto& change : plan.roles)
    if (change.role == which) return change;
  throw std::logic_error("no such role in the plan");
}

TEST(TopologyChange, AddingAStorageNodeMovesAboutOneNthOfThePartitionsToIt) {
  const TopologyPlan p = plan(topology_text(4), topology_text(5));
  ASSERT_TRUE(p.valid());
  EXPECT_EQ(role(p, NodeRole::kStorage).added, std::vector<std::string>{"storage-5"});
  // With replication factor 3, the new node takes about 3/5 of the replica slots it would hold
  // in balance: each partition it joins moves; the others keep their set unchanged.
  std::size_t joining_new = 0;
  for (const auto& move : p.moves) {
    EXPECT_EQ(move.joining(), std::vector<std::string>{"storage-5"});
    EXPECT_EQ(move.leaving().size(), 1u);
    ++joining_new;
  }
  const double share = double(joining_new) / kPartitions;
  EXPECT_GT(share, 0.6 * 3 / 5);
  EXPECT_LT(share, 1.4 * 3 / 5);
  // Nothing moves between two old nodes.
  EXPECT_LT(p.moves.size(), kPartitions);
}

TEST(TopologyChange, AddingAStorageNodeToMoreNodesMovesLess) {
  const auto small = plan(topology_text(4), topology_text(5)).moves.size();
  const auto large = plan(topology_text(9), topology_text(10)).moves.size();
  EXPECT_LT(large, small);
}

TEST(TopologyChange, RemovingAStorageNodeMovesOnlyItsPartitions) {
  const TopologyPlan p = plan(topology_text(5), topology_text(4));
  ASSERT_TRUE(p.valid());
  EXPECT_EQ(role(p, NodeRole::kStorage).removed, std::vector<std::string>{"storage-5"});
  ASSERT_FALSE(p.moves.empty());
  for (const auto& move : p.moves) EXPECT_EQ(move.leaving(), std::vector<std::string>{"storage-5"});
}

TEST(TopologyChange, StatelessRolesChangeWithoutMovingPartitions) {
  const TopologyPlan p = plan(topology_text(3, {"router-1"}, {"frontend-1"}),
                              topology_text(3, {"router-2"}, {"frontend-1", "frontend-2"}));
  ASSERT_TRUE(p.valid());
  EXPECT_FALSE(p.moves_partitions());
  EXPECT_TRUE(p.changes_nodes());
  EXPECT_EQ(role(p, NodeRole::kRouter).added, std::vector<std::string>{"router-2"});
  EXPECT_EQ(role(p, NodeRole::kRouter).removed, std::vector<std::string>{"router-1"});
  EXPECT_EQ(role(p, NodeRole::kFrontend).added, std::vector<std::string>{"frontend-2"});
  EXPECT_FALSE(p.settings_changed);
  const std::string text =
      describe_plan(p, parse(topology_text(3)),
                    parse(topology_text(3, {"router-2"}, {"frontend-1", "frontend-2"})));
  EXPECT_NE(text.find("router: +router-2 -router-1"), std::string::npos) << text;
  EXPECT_NE(text.find("partitions moving: 0 of 256"), std::string::npos) << text;
}

TEST(TopologyChange, RefusesWhatCannotChangeAtRunTime) {
  const std::string base = topology_text(3);
  auto with_cluster = [](const std::string& text, const std::string& from, const std::string& to) {
    std::string changed = text;
    changed.replace(changed.find(from), from.size(), to);
    return changed;
  };
  EXPECT_FALSE(
      plan(base, with_cluster(base, "partition_count: 256", "partition_count: 128")).valid());
  EXPECT_FALSE(
      plan(base, with_cluster(base, "replication_factor: 3", "replication_factor: 2")).valid());
  EXPECT_FALSE(plan(base, with_cluster(base, "virtual_nodes: 64", "virtual_nodes: 32")).valid());
  EXPECT_FALSE(plan(base, with_cluster(base, "name: test", "name: other")).valid());
  // A refused plan moves nothing.
  EXPECT_TRUE(
      plan(base, with_cluster(base, "partition_count: 256", "partition_count: 128")).moves.empty());
}

TEST(TopologyChange, RefusesARenamedNodeOnTheSameAddress) {
  const std::string before = topology_text(3, {"router-1"});
  std::string after = before;
  after.replace(after.find("name: router-1"), 14, "name: router-9");
  const TopologyPlan p = plan(before, after);
  ASSERT_FALSE(p.valid());
  EXPECT_NE(p.refusals.front().find("router-9 takes the address 127.0.0.1:6010 of removed node "
                                    "router-1"),
            std::string::npos)
      << p.refusals.front();
}

TEST(TopologyChange, RefusesANodeThatChangesItsAddressOrRole) {
  const std::string before = topology_text(3, {"router-1", "router-2"});
  std::string moved = before;
  moved.replace(moved.find("rpc: 6010"), 9, "rpc: 6011");
  EXPECT_FALSE(plan(before, moved).valid());
  std::string role_changed = before;
  role_changed.replace(role_changed.find("name: router-1, role: router"), 28,
                       "name: router-1, role: storage");
  EXPECT_FALSE(plan(before, role_changed).valid());
}

TEST(TopologyChange, RefusesLeavingFewerStorageNodesThanTheReplicationFactor) {
  const TopologyPlan p = plan(topology_text(3), topology_text(2));
  EXPECT_FALSE(p.valid());
  EXPECT_TRUE(p.moves.empty());
}

TEST(TopologyChange, NormalisedTextIgnoresCommentsLayoutAndKeyOrder) {
  const std::string a = "# a comment\nnodes: [1, 2]\ncluster: {name: x, data_dir: d}\n";
  const std::string b = "cluster:\n  data_dir: d   # where\n  name: x\nnodes:\n  - 1\n  - 2\n";
  EXPECT_EQ(normalise_topology_text(a), normalise_topology_text(b));
  EXPECT_NE(normalise_topology_text(a), normalise_topology_text("cluster: {name: y}\n"));
  EXPECT_THROW(normalise_topology_text("a: [1"), TopologyError);
  // Normalising twice changes nothing, and the result is a topology again.
  const std::string text = normalise_topology_text(topology_text(3));
  EXPECT_EQ(normalise_topology_text(text), text);
  EXPECT_EQ(parse(text).storage_node_names().size(), 3u);
}

TEST(TopologyChange, SettingsOutsideNodesAreNoticed) {
  const TopologyPlan p = plan(topology_text(3), topology_text(3, {"router-1"}, {"frontend-1"}) +
                                                    "limits:\n  request_timeout_ms: 3000\n");
  EXPECT_TRUE(p.valid());
  EXPECT_TRUE(p.settings_changed);
}

PartitionMove move(PartitionId p, std::vector<std::string> from, std::vector<std::string> to) {
  return {p, std::move(from), std::move(to)};
}

TEST(MoveSchedule, StartsNoMoreThanTheBudgetAndEveryMoveOnce) {
  std::vector<PartitionMove> moves;
  for (PartitionId p = 0; p < 7; ++p)
    moves.push_back(move(p, {"a", "b"}, {"n" + std::to_string(p), "a"}));
  MoveSchedule schedule(moves, 3);
  std::set<PartitionId> seen;
  std::deque<PartitionId> running;
  while (!schedule.done()) {
    for (const auto& started : schedule.start()) {
      EXPECT_TRUE(seen.insert(started.partition).second);
      running.push_back(started.partition);
    }
    EXPECT_LE(schedule.in_flight(), 3u);
    ASSERT_FALSE(running.empty());
    schedule.finished(running.front());
    running.pop_front();
  }
  EXPECT_EQ(seen.size(), 7u);
}

TEST(MoveSchedule, OneAtATimeByDefaultInPlanOrder) {
  MoveSchedule schedule({move(4, {"a"}, {"b"}), move(9, {"a"}, {"c"})}, 0);
  auto first = schedule.start();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].partition, 4u);
  EXPECT_TRUE(schedule.start().empty());  // budget in use
  schedule.finished(4);
  auto second = schedule.start();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].partition, 9u);
  schedule.finished(9);
  EXPECT_TRUE(schedule.done());
}

TEST(MoveSchedule, SpreadsCatchUpsOverJoiningNodes) {
  // Two moves bring storage-4 a replica, one brings storage-5: with a budget of two, the second
  // move to storage-4 waits for the move to storage-5 to start first.
  MoveSchedule schedule({move(1, {"a", "b"}, {"s4", "a"}), move(2, {"a", "b"}, {"s4", "b"}),
                         move(3, {"a", "b"}, {"s5", "a"})},
                        2);
  auto started = schedule.start();
  ASSERT_EQ(started.size(), 2u);
  EXPECT_EQ(started[0].partition, 1u);
  EXPECT_EQ(started[1].partition, 3u);
  schedule.finished(1);
  started = schedule.start();
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].partition, 2u);
}

TEST(EndpointDiff, ConnectsTheNewAndDropsTheRemoved) {
  const EndpointDiff diff = diff_endpoints({"tcp://a:1", "tcp://b:2"}, {"tcp://b:2", "tcp://c:3"});
  EXPECT_EQ(diff.connect, std::vector<std::string>{"tcp://c:3"});
  EXPECT_EQ(diff.disconnect, std::vector<std::string>{"tcp://a:1"});
  EXPECT_TRUE(diff_endpoints({"x", "y"}, {"y", "x", "x"}).empty());
}

TEST(TopologyVersionTracker, AdoptsOnlyNewerVersionsWithOtherText) {
  TopologyVersionTracker tracker("file text");
  // The stored version 1 is the node's own file: nothing to do.
  EXPECT_FALSE(tracker.observe({1, "file text", 0}));
  EXPECT_EQ(tracker.version(), 1u);
  const auto adoption = tracker.observe({2, "second", 0});
  ASSERT_TRUE(adoption);
  EXPECT_EQ(adoption->version, 2u);
  EXPECT_EQ(adoption->text, "second");
  EXPECT_FALSE(adoption->at_start);
  // Read again, or an older answer that arrives late: nothing.
  EXPECT_FALSE(tracker.observe({2, "second", 0}));
  EXPECT_FALSE(tracker.observe({1, "file text", 0}));
  EXPECT_EQ(tracker.text(), "second");
}

TEST(TopologyVersionTracker, ANodeStartedWithAnOlderFileIsToldAtItsFirstRead) {
  TopologyVersionTracker tracker("old file");
  const auto adoption = tracker.observe({3, "stored", 0});
  ASSERT_TRUE(adoption);
  EXPECT_TRUE(adoption->at_start);
  EXPECT_EQ(adoption->version, 3u);
}

}  // namespace
}  // namespace chat4all
