// Placement: conversation -> partition -> replica set of storage nodes.
//
// A conversation id hashes to one of `partition_count` partitions. Partitions
// sit on a consistent-hash ring of storage nodes, each node present as
// `virtual_nodes` points, so adding or removing one node moves only about
// 1/N of the partitions. A partition's replica set is the first
// `replication_factor` distinct nodes met walking clockwise from the
// partition's point; the first of them is its preferred leader.
//
// Immutable after construction; safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace chat4all {

using PartitionId = std::uint32_t;

// Stable 64-bit hash used for all placement decisions (BLAKE2b, truncated),
// the same on every node and every build.
std::uint64_t placement_hash(std::string_view key);

class Ring {
 public:
  Ring(std::vector<std::string> storage_nodes, std::uint32_t partition_count,
       std::uint32_t replication_factor, std::uint32_t virtual_nodes = 64);

  // The partition of a routing key: a conversation_id, tenant_key(),
  // locator_key() (hashed), or partition_key(p) (p itself).
  PartitionId partition_of(std::string_view key) const;

  // Node names in ring order; size is min(replication_factor, node count).
  const std::vector<std::string>& replicas(PartitionId partition) const;

  std::uint32_t partition_count() const { return partition_count_; }
  const std::vector<std::string>& nodes() const { return nodes_; }

 private:
  std::vector<std::string> nodes_;
  std::uint32_t partition_count_;
  std::vector<std::vector<std::string>> replicas_by_partition_;
};

}  // namespace chat4all
