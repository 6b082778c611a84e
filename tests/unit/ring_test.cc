// Placement: placement_hash and Ring (common/ring.h).
#include "common/ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace chat4all {
namespace {

const std::vector<std::string> kThreeNodes = {"storage-1", "storage-2", "storage-3"};
const std::vector<std::string> kFourNodes = {"storage-1", "storage-2", "storage-3", "storage-4"};

TEST(PlacementHashTest, IsTruncatedBlake2bBigEndian) {
  // Golden values computed independently (Python hashlib.blake2b, 16-byte
  // digest, first 8 bytes big-endian): the hash must be the same on every
  // node and every build, so it must never change silently.
  EXPECT_EQ(placement_hash(""), 0xcae66941d9efbd40ull);
  EXPECT_EQ(placement_hash("conversation-1"), 0x573d0fe0bf46591full);
  EXPECT_EQ(placement_hash("storage-1#0"), 0x20f65538b8e00b10ull);
}

TEST(PlacementHashTest, IsDeterministicAndSpreads) {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "key-" + std::to_string(i);
    EXPECT_EQ(placement_hash(key), placement_hash(key));
    seen.insert(placement_hash(key));
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RingTest, PlacementIsDeterministic) {
  const Ring a(kThreeNodes, 64, 3, 64);
  const Ring b(kThreeNodes, 64, 3, 64);
  for (PartitionId p = 0; p < 64; ++p) EXPECT_EQ(a.replicas(p), b.replicas(p)) << "partition " << p;
}

TEST(RingTest, MatchesTheDocumentedAlgorithm) {
  // Expected sets computed independently from the algorithm described in
  // ring.h (nodes as `name#v` points, partitions at `partition#p`, walk
  // clockwise collecting distinct nodes).
  const Ring ring(kThreeNodes, 64, 3, 64);
  EXPECT_EQ(ring.replicas(0), (std::vector<std::string>{"storage-3", "storage-1", "storage-2"}));
  EXPECT_EQ(ring.replicas(1), (std::vector<std::string>{"storage-3", "storage-1", "storage-2"}));
  EXPECT_EQ(ring.replicas(2), (std::vector<std::string>{"storage-2", "storage-1", "storage-3"}));
  EXPECT_EQ(ring.replicas(3), (std::vector<std::string>{"storage-2", "storage-1", "storage-3"}));
  EXPECT_EQ(ring.partition_of("conversation-1"), 31u);
}

TEST(RingTest, PlacementDoesNotDependOnTheOrderNodesAreListed) {
  std::vector<std::string> reversed(kThreeNodes.rbegin(), kThreeNodes.rend());
  const Ring a(kThreeNodes, 64, 3, 64);
  const Ring b(reversed, 64, 3, 64);
  for (PartitionId p = 0; p < 64; ++p) EXPECT_EQ(a.replicas(p), b.replicas(p)) << "partition " << p;
}

TEST(RingTest, ReplicaSetsHaveMinOfReplicationFactorAndNodesDistinctNodes) {
  for (std::uint32_t rf : {1u, 2u, 3u, 4u, 7u}) {
    for (std::size_t node_count : {1u, 2u, 3u, 5u}) {
      std::vector<std::string> nodes;
      for (std::size_t i = 0; i < node_count; ++i) nodes.push_back("n" + std::to_string(i));
      const Ring ring(nodes, 32, rf, 16);
      const std::size_t expected = std::min<std::size_t>(rf, node_count);
      for (PartitionId p = 0; p < ring.partition_count(); ++p) {
        const auto& replicas = ring.replicas(p);
        ASSERT_EQ(replicas.size(), expected) << "rf " << rf << " nodes " << node_count;
        const std::set<std::string> distinct(replicas.begin(), replicas.end());
        EXPECT_EQ(distinct.size(), expected) << "duplicate node in a replica set";
        for (const auto& name : replicas)
          EXPECT_NE(std::find(nodes.begin(), nodes.end(), name), nodes.end()) << name;
      }
    }
  }
}

TEST(RingTest, EveryPartitionIsCoveredAndEveryNodeLeadsSome) {
  const Ring ring(kThreeNodes, 64, 3, 64);
  EXPECT_EQ(ring.partition_count(), 64u);
  EXPECT_EQ(ring.nodes(), kThreeNodes);
  std::set<std::string> leaders;
  for (PartitionId p = 0; p < 64; ++p) {
    ASSERT_FALSE(ring.replicas(p).empty());
    leaders.insert(ring.replicas(p).front());
  }
  EXPECT_EQ(leaders.size(), 3u);
}

TEST(RingTest, ReplicasOfAPartitionOutOfRangeThrows) {
  const Ring ring(kThreeNodes, 8, 3, 8);
  EXPECT_NO_THROW(ring.replicas(7));
  EXPECT_THROW(ring.replicas(8), std::out_of_range);
  EXPECT_THROW(ring.replicas(0xffffffffu), std::out_of_range);
}

TEST(RingTest, PartitionOfIsStableAndInRange) {
  const Ring ring(kThreeNodes, 64, 3, 64);
  const Ring other_membership(kFourNodes, 64, 2, 16);
  const Ring small(kThreeNodes, 7, 3, 64);
  std::set<PartitionId> hit;
  for (int i = 0; i < 5000; ++i) {
    const std::string id = "conv-" + std::to_string(i);
    const PartitionId p = ring.partition_of(id);
    ASSERT_LT(p, 64u);
    EXPECT_EQ(ring.partition_of(id), p);
    // Depends only on the id and the partition count, not on membership.
    EXPECT_EQ(other_membership.partition_of(id), p);
    EXPECT_LT(small.partition_of(id), 7u);
    hit.insert(p);
  }
  EXPECT_EQ(hit.size(), 64u) << "5000 ids should reach every one of 64 partitions";
}

TEST(RingTest, SinglePartitionRingPutsEverythingInPartitionZero) {
  const Ring ring(kThreeNodes, 1, 3, 4);
  EXPECT_EQ(ring.partition_of("a"), 0u);
  EXPECT_EQ(ring.partition_of(""), 0u);
  EXPECT_EQ(ring.replicas(0).size(), 3u);
}

// Share of partitions whose preferred leader differs between the rings.
double moved_leader_share(const Ring& before, const Ring& after) {
  std::size_t moved = 0;
  for (PartitionId p = 0; p < before.partition_count(); ++p)
    if (before.replicas(p).front() != after.replicas(p).front()) ++moved;
  return double(moved) / before.partition_count();
}

TEST(RingTest, AddingAFourthNodeMovesOnlyAMinorityOfLeaders) {
  for (std::uint32_t partitions : {64u, 1024u}) {
    const Ring three(kThreeNodes, partitions, 3, 64);
    const Ring four(kFourNodes, partitions, 3, 64);
    const double share = moved_leader_share(three, four);
    EXPECT_GT(share, 0.0) << "the new node should lead something";
    EXPECT_LT(share, 0.40) << partitions << " partitions";
    // Consistent hashing: a leader that changes can only change to the new node.
    for (PartitionId p = 0; p < partitions; ++p) {
      if (three.replicas(p).front() != four.replicas(p).front()) {
        EXPECT_EQ(four.replicas(p).front(), "storage-4") << "partition " << p;
      }
    }
  }
}

TEST(RingTest, AddingANodeKeepsTheOtherReplicasInOrder) {
  // The new set is the old one with storage-4 possibly inserted and the last
  // member pushed out.
  const Ring three(kThreeNodes, 256, 3, 64);
  const Ring four(kFourNodes, 256, 3, 64);
  for (PartitionId p = 0; p < 256; ++p) {
    std::vector<std::string> without_new;
    for (const auto& name : four.replicas(p))
      if (name != "storage-4") without_new.push_back(name);
    const auto& old_set = three.replicas(p);
    ASSERT_LE(without_new.size(), old_set.size());
    EXPECT_TRUE(std::equal(without_new.begin(), without_new.end(), old_set.begin()))
        << "partition " << p;
  }
}

TEST(RingTest, LeadersAreRoughlyBalanced) {
  for (std::uint32_t partitions : {64u, 1024u}) {
    for (const auto* nodes : {&kThreeNodes, &kFourNodes}) {
      const Ring ring(*nodes, partitions, 3, 64);
      std::map<std::string, int> led;
      for (PartitionId p = 0; p < partitions; ++p) ++led[ring.replicas(p).front()];
      const double fair = double(partitions) / nodes->size();
      ASSERT_EQ(led.size(), nodes->size());
      for (const auto& [name, count] : led) {
        EXPECT_GT(count, fair * 0.5) << name << " with " << partitions << " partitions";
        EXPECT_LT(count, fair * 1.5) << name << " with " << partitions << " partitions";
      }
    }
  }
}

TEST(RingTest, InvalidArgumentsThrow) {
  EXPECT_THROW(Ring({}, 64, 3, 64), std::invalid_argument);
  EXPECT_THROW(Ring(kThreeNodes, 0, 3, 64), std::invalid_argument);
  EXPECT_THROW(Ring(kThreeNodes, 64, 0, 64), std::invalid_argument);
  EXPECT_THROW(Ring(kThreeNodes, 64, 3, 0), std::invalid_argument);
}

}  // namespace
}  // namespace chat4all
