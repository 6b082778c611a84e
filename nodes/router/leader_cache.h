// What a router believes about who leads each partition: partition ->
// (leader, epoch), corrected by the storage nodes' "not the leader, try X"
// answers (schema/README.md, "Leaders and how routers find them").
//
// Starts from the ring's preferred leader at epoch 0, so a fresh router needs
// no warm-up and the common path stays one hop. The epoch fences stale
// corrections: a node that has not heard of the latest election must not
// undo what a newer one taught us. Not thread-safe: owned by one event loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ring.h"

namespace chat4all::router {

class LeaderCache {
 public:
  struct Entry {
    std::string node;
    std::uint64_t epoch = 0;
  };

  enum class Learned {
    kChanged,    // the entry now names (node, epoch)
    kUnchanged,  // it already did
    kStale,      // the hint's epoch is older than the cached one; ignored
  };

  explicit LeaderCache(const Ring& ring);

  const Entry& leader(PartitionId partition) const { return entries_.at(partition); }

  // A storage node named `node` as the leader in `epoch`.
  Learned learn(PartitionId partition, const std::string& node, std::uint64_t epoch);

  // `node` cannot be reached: if the entry names it, move it to the replica
  // after it in ring order, keeping the epoch so that any hint from the
  // current epoch still overrides the guess. True if the entry changed.
  bool avoid(PartitionId partition, const std::string& node);

  // The replica that follows `node` in the partition's ring order (wrapping);
  // the first replica when `node` is not one of them.
  const std::string& replica_after(PartitionId partition, const std::string& node) const;

 private:
  const Ring& ring_;
  std::vector<Entry> entries_;
};

}  // namespace chat4all::router
