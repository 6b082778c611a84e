// The files of a tenant as replicated state: uploads in progress, complete
// files, the content index that deduplicates them, the tenant's usage against
// its quota and the expiry of unfinished uploads (schema/README.md, "Files").
//
// Pure logic over a PartitionState, like domain.cc: applied from the committed
// log with the leader's stamp, so every replica makes the same change. The
// bytes themselves are chunk files outside the log (chunk_store.h); what this
// decides about them (a blob no file refers to any more) comes out in
// DomainResult::freed_blobs for the node to delete.
#pragma once

#include <cstdint>

#include "nodes/storage/domain.h"

namespace chat4all::storage {

// Unfinished uploads an expiry sweep lists at most, and conversations one file
// may be shared into (a file sent into more is refused, kInvalid).
inline constexpr std::uint32_t kUploadSweepMax = 256;
inline constexpr std::size_t kFileConversationsMax = 1000;

bool is_file_command(wire::CommandKind kind);
bool is_file_query(wire::QueryKind kind);

DomainResult apply_file_command(PartitionState& state, const wire::CommandRequest& command,
                                std::int64_t at_ms);
DomainResult run_file_query(const PartitionState& state, const wire::QueryRequest& query);

// "tenant/blob_id": what DomainResult::freed_blobs names.
std::string freed_blob_name(std::string_view tenant_id, std::string_view blob_id);

}  // namespace chat4all::storage
