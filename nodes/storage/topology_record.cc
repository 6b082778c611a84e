#include "nodes/storage/topology_record.h"

#include "nodes/storage/domain_support.h"
#include "schema/topology_version.h"

namespace chat4all::storage {

using namespace domain_support;
using wire::Status;

namespace {
constexpr std::string_view kTopologyRecordKey = "Y/topology";
}  // namespace

DomainResult store_topology(PartitionState& state, const wire::StoreTopology& request,
                            std::int64_t at_ms) {
  if (request.text.empty() || request.text.size() > kTopologyTextBytesMax)
    return fail(Status::kInvalid, "topology text must be 1 to 1 MiB", "text");
  if (request.version != request.replaces + 1)
    return fail(Status::kInvalid, "version must be the replaced version plus one", "version");
  const auto stored = load<wire::TopologyVersion>(state, kTopologyRecordKey);
  const std::uint64_t current = stored ? stored->version : 0;
  if (current != request.replaces)
    return fail(Status::kConflict,
                "topology version " + std::to_string(current) + " is stored, not " +
                    std::to_string(request.replaces),
                "replaces");
  const wire::TopologyVersion record{request.version, request.text, at_ms};
  store(state, kTopologyRecordKey, record);
  return ok(record);
}

DomainResult get_topology(const PartitionState& state) {
  const auto stored = load<wire::TopologyVersion>(state, kTopologyRecordKey);
  return stored ? ok(*stored) : fail(Status::kNotFound, "no topology version is stored");
}

}  // namespace chat4all::storage
