#include "common/ring.h"

#include <sodium.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "schema/wire.h"

namespace chat4all {

std::uint64_t placement_hash(std::string_view key) {
  unsigned char digest[crypto_generichash_BYTES_MIN];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(key.data()),
                     key.size(), nullptr, 0);
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | digest[i];
  return value;
}

Ring::Ring(std::vector<std::string> storage_nodes, std::uint32_t partition_count,
           std::uint32_t replication_factor, std::uint32_t virtual_nodes)
    : nodes_(std::move(storage_nodes)), partition_count_(partition_count) {
  if (nodes_.empty()) throw std::invalid_argument("ring needs at least one storage node");
  if (partition_count_ == 0) throw std::invalid_argument("partition_count must be positive");
  if (replication_factor == 0) throw std::invalid_argument("replication_factor must be positive");
  if (virtual_nodes == 0) throw std::invalid_argument("virtual_nodes must be positive");

  struct Point {
    std::uint64_t position;
    std::uint32_t node_index;
  };
  std::vector<Point> points;
  points.reserve(nodes_.size() * virtual_nodes);
  for (std::uint32_t node = 0; node < nodes_.size(); ++node)
    for (std::uint32_t v = 0; v < virtual_nodes; ++v)
      points.push_back({placement_hash(nodes_[node] + "#" + std::to_string(v)), node});
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.position != b.position ? a.position < b.position : a.node_index < b.node_index;
  });

  const std::size_t set_size = std::min<std::size_t>(replication_factor, nodes_.size());
  replicas_by_partition_.resize(partition_count_);
  for (PartitionId partition = 0; partition < partition_count_; ++partition) {
    const std::uint64_t position = placement_hash("partition#" + std::to_string(partition));
    auto it = std::lower_bound(points.begin(), points.end(), position,
                               [](const Point& p, std::uint64_t pos) { return p.position < pos; });
    std::size_t index = static_cast<std::size_t>(it - points.begin());
    auto& replicas = replicas_by_partition_[partition];
    for (std::size_t walked = 0; walked < points.size() && replicas.size() < set_size; ++walked) {
      const std::string& node = nodes_[points[(index + walked) % points.size()].node_index];
      if (std::find(replicas.begin(), replicas.end(), node) == replicas.end())
        replicas.push_back(node);
    }
    assert(replicas.size() == set_size);
  }
}

PartitionId Ring::partition_of(std::string_view key) const {
  // wire::partition_key(p) names a partition itself (its outbox).
  if (key.substr(0, wire::kPartitionKeyPrefix.size()) == wire::kPartitionKeyPrefix) {
    const std::string_view number = key.substr(wire::kPartitionKeyPrefix.size());
    std::uint32_t partition = 0;
    auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), partition);
    if (error == std::errc() && end == number.data() + number.size() &&
        partition < partition_count_)
      return partition;
  }
  return static_cast<PartitionId>(placement_hash(key) % partition_count_);
}

const std::vector<std::string>& Ring::replicas(PartitionId partition) const {
  if (partition >= partition_count_) throw std::out_of_range("partition out of range");
  return replicas_by_partition_[partition];
}

}  // namespace chat4all
