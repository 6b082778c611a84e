// The router's partition -> leader cache (nodes/router/leader_cache.h).
#include "nodes/router/leader_cache.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chat4all::router {
namespace {

const std::vector<std::string> kThreeNodes = {"storage-1", "storage-2", "storage-3"};

TEST(LeaderCacheTest, StartsAtThePreferredLeaderWithEpochZero) {
  const Ring ring(kThreeNodes, 16, 3);
  const LeaderCache cache(ring);
  for (PartitionId p = 0; p < ring.partition_count(); ++p) {
    EXPECT_EQ(cache.leader(p).node, ring.replicas(p).front());
    EXPECT_EQ(cache.leader(p).epoch, 0u);
  }
}

TEST(LeaderCacheTest, AcceptsHintsOfTheSameOrANewerEpochOnly) {
  const Ring ring(kThreeNodes, 16, 3);
  LeaderCache cache(ring);
  const auto& replicas = ring.replicas(5);
  EXPECT_EQ(cache.learn(5, replicas[2], 4), LeaderCache::Learned::kChanged);
  EXPECT_EQ(cache.learn(5, replicas[2], 4), LeaderCache::Learned::kUnchanged);
  EXPECT_EQ(cache.learn(5, replicas[1], 3), LeaderCache::Learned::kStale);
  EXPECT_EQ(cache.leader(5).node, replicas[2]);
  EXPECT_EQ(cache.leader(5).epoch, 4u);
  // Same epoch, another node: the cache may have been a guess (see avoid).
  EXPECT_EQ(cache.learn(5, replicas[1], 4), LeaderCache::Learned::kChanged);
  EXPECT_EQ(cache.leader(5).node, replicas[1]);
  // Other partitions are untouched.
  EXPECT_EQ(cache.leader(6).node, ring.replicas(6).front());
}

TEST(LeaderCacheTest, AvoidMovesToTheNextReplicaAndKeepsTheEpoch) {
  const Ring ring(kThreeNodes, 16, 3);
  LeaderCache cache(ring);
  const auto& replicas = ring.replicas(3);
  ASSERT_EQ(cache.learn(3, replicas[2], 7), LeaderCache::Learned::kChanged);
  EXPECT_FALSE(cache.avoid(3, replicas[0]));  // not the cached leader: nothing to move
  EXPECT_TRUE(cache.avoid(3, replicas[2]));
  EXPECT_EQ(cache.leader(3).node, replicas[0]);  // wraps around the replica set
  EXPECT_EQ(cache.leader(3).epoch, 7u);
}

TEST(LeaderCacheTest, ReplicaAfterFollowsRingOrder) {
  const Ring ring(kThreeNodes, 16, 3);
  const LeaderCache cache(ring);
  const auto& replicas = ring.replicas(9);
  EXPECT_EQ(cache.replica_after(9, replicas[0]), replicas[1]);
  EXPECT_EQ(cache.replica_after(9, replicas[1]), replicas[2]);
  EXPECT_EQ(cache.replica_after(9, replicas[2]), replicas[0]);
  EXPECT_EQ(cache.replica_after(9, "storage-unknown"), replicas[0]);
}

TEST(LeaderCacheTest, ASingleReplicaHasNowhereElseToGo) {
  const Ring ring(kThreeNodes, 16, 1);
  LeaderCache cache(ring);
  const std::string only = ring.replicas(0).front();
  EXPECT_FALSE(cache.avoid(0, only));
  EXPECT_EQ(cache.leader(0).node, only);
}

}  // namespace
}  // namespace chat4all::router
