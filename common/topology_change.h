// Changing the topology of a running cluster (README.md, "Changing the topology while it runs").
//
// Pure: what an operator's new topology file changes against the version the cluster stores
// (which partitions move from which replica set to which, which nodes of each role come and
// go, and what cannot change at run time), the order the storage moves are driven in within a
// budget, and what a node's sockets must connect to and drop when a new version arrives. No
// sockets, threads or clocks; `chat4all topology apply` (nodes/runner/topology_apply.h) and the
// nodes' topology followers (common/topology_follower.h) are the shells.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/ring.h"
#include "common/topology.h"

namespace chat4all {

// The topology text as the cluster stores it: the YAML re-emitted with every mapping's keys
// sorted and comments and layout dropped, so two files that say the same thing store the same
// text. Throws TopologyError for text that is not YAML.
std::string normalise_topology_text(const std::string& yaml_text);

// One partition whose replica set changes: both sets in ring order, to[0] its preferred leader.
struct PartitionMove {
  PartitionId partition = 0;
  std::vector<std::string> from;
  std::vector<std::string> to;
  // Storage nodes in `to` and not in `from` (they join as learners), and the reverse.
  std::vector<std::string> joining() const;
  std::vector<std::string> leaving() const;
};

struct RoleChange {
  NodeRole role = NodeRole::kFrontend;
  std::vector<std::string> added;    // by name, in the new file's order
  std::vector<std::string> removed;  // in the old file's order
};

struct TopologyPlan {
  // Why the new file cannot be applied to the running cluster; empty when it can.
  std::vector<std::string> refusals;
  std::vector<PartitionMove> moves;  // by partition
  std::vector<RoleChange> roles;     // frontend, router, storage, connector
  std::uint32_t partition_count = 0;
  // Sections other than `nodes` differ: nodes read those when they start, not at run time.
  bool settings_changed = false;

  bool valid() const { return refusals.empty(); }
  bool moves_partitions() const { return !moves.empty(); }
  bool changes_nodes() const;
};

// `current_text` and `next_text` are the two files' texts (for settings_changed); the
// topologies are what they parse to.
TopologyPlan plan_topology_change(const Topology& current, const std::string& current_text,
                                  const Topology& next, const std::string& next_text);

// The plan as an operator reads it: one line per fact, partitions moved with both sets, and a
// per-node count of partitions before and after.
std::string describe_plan(const TopologyPlan& plan, const Topology& current, const Topology& next);

// The storage moves of a plan, started at most `moves_at_once` at a time in plan order. A move
// that would bring a joining node a second catch-up while another move is already bringing it
// one waits while some other move can start instead, so the budget spreads snapshots over the
// joining nodes rather than queueing them at one.
class MoveSchedule {
 public:
  MoveSchedule(std::vector<PartitionMove> moves, std::uint32_t moves_at_once);

  // The moves to start now (none once the budget is in use or nothing is left).
  std::vector<PartitionMove> start();
  void finished(PartitionId partition);

  bool done() const { return waiting_.empty() && in_flight_.empty(); }
  std::size_t in_flight() const { return in_flight_.size(); }
  std::size_t remaining() const { return waiting_.size() + in_flight_.size(); }

 private:
  std::vector<PartitionMove> waiting_;  // plan order
  std::vector<PartitionMove> in_flight_;
  std::uint32_t budget_;
};

// What a socket connected to `current` addresses must connect to and drop to be connected to
// `wanted` ones instead. Both lists come out sorted, without duplicates.
struct EndpointDiff {
  std::vector<std::string> connect;
  std::vector<std::string> disconnect;
  bool empty() const { return connect.empty() && disconnect.empty(); }
};
EndpointDiff diff_endpoints(const std::vector<std::string>& current,
                            const std::vector<std::string>& wanted);

// The "rpc" addresses of the topology's routers, in file order.
std::vector<std::string> router_rpc_addresses(const Topology& topology);

}  // namespace chat4all
