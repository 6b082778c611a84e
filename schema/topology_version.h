// The cluster's topology as replicated state (schema/README.md, "Topology
// versions"): one record in the partition topology_key() names, written by
// CommandKind::kStoreTopology and read by QueryKind::kGetTopology.
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>

#include "schema/wire.h"

namespace chat4all::wire {

// Partition 0 holds the record: a fixed partition every node can name without
// knowing the topology's ring (partition_key bypasses the hash), present in
// every topology whatever its partition_count.
inline std::string topology_key() {
  return partition_key(0);
}

struct TopologyVersion {
  std::uint64_t version = 0;  // 1 for the first stored, +1 for each replacement
  std::string text;           // the topology file, normalised (common/topology_text.h)
  std::int64_t stored_at_ms = 0;
  MSGPACK_DEFINE(version, text, stored_at_ms);
};

// Compare-and-set: stored only when the stored version is `replaces` (0: none
// stored yet) and `version` is replaces + 1; otherwise kConflict, whose detail
// names the stored version, and nothing changes.
struct StoreTopology {
  std::uint64_t replaces = 0;
  std::uint64_t version = 0;
  std::string text;
  MSGPACK_DEFINE(replaces, version, text);
};

struct TopologyLookup {
  MSGPACK_DEFINE();
};

}  // namespace chat4all::wire
