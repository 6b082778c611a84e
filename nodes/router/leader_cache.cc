#include "nodes/router/leader_cache.h"

#include <algorithm>

namespace chat4all::router {

LeaderCache::LeaderCache(const Ring& ring) : ring_(ring) {
  entries_.reserve(ring.partition_count());
  for (PartitionId partition = 0; partition < ring.partition_count(); ++partition)
    entries_.push_back({ring.replicas(partition).front(), 0});
}

LeaderCache::Learned LeaderCache::learn(PartitionId partition, const std::string& node,
                                        std::uint64_t epoch) {
  Entry& entry = entries_.at(partition);
  if (epoch < entry.epoch) return Learned::kStale;
  if (entry.node == node && entry.epoch == epoch) return Learned::kUnchanged;
  entry = {node, epoch};
  return Learned::kChanged;
}

bool LeaderCache::avoid(PartitionId partition, const std::string& node) {
  Entry& entry = entries_.at(partition);
  if (entry.node != node) return false;
  const std::string& next = replica_after(partition, node);
  if (next == node) return false;  // a single replica: nowhere else to go
  entry.node = next;
  return true;
}

const std::string& LeaderCache::replica_after(PartitionId partition,
                                              const std::string& node) const {
  const auto& replicas = ring_.replicas(partition);
  const auto it = std::find(replicas.begin(), replicas.end(), node);
  if (it == replicas.end()) return replicas.front();
  return replicas[static_cast<std::size_t>(it - replicas.begin() + 1) % replicas.size()];
}

}  // namespace chat4all::router
