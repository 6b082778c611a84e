// The cluster's topology version as replicated state (schema/topology_version.h): one record,
// "Y/topology", in the partition wire::topology_key() names. Pure logic over a PartitionState,
// like domain.cc.
#pragma once

#include <cstdint>

#include "nodes/storage/domain.h"
#include "schema/topology_version.h"

namespace chat4all::storage {

// Texts larger than this are refused (kInvalid): a topology of thousands of nodes is far below.
inline constexpr std::size_t kTopologyTextBytesMax = 1u << 20;

// kStoreTopology: compare-and-set on the stored version.
DomainResult store_topology(PartitionState& state, const wire::StoreTopology& request,
                            std::int64_t at_ms);
// kGetTopology: the stored version, or kNotFound when none was ever stored.
DomainResult get_topology(const PartitionState& state);

}  // namespace chat4all::storage
