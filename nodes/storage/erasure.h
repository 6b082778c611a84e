// Erasure of a user (POST /v1/users/{id}/erase; schema/retention.h,
// schema/README.md "Retention and erasure").
//
// Why it is shaped this way
//   - A job record in the tenant's directory partition, beside the user: the
//     first kEraseUser removes the user, its identities, its conversation
//     index and its presence in one entry (so no new login from then on) and
//     lists the conversations the index named; a second one answers the same
//     job, so the request is idempotent.
//   - Messages live in their conversations' partitions: the frontend drives
//     the job through them, kEraseMessages a bounded run of seqs at a time,
//     kEraseProgress after each conversation, and any frontend that is asked
//     about a pending job drives it on (each step is idempotent, so two
//     drivers only repeat work).
//   - A tombstone keeps seq, ids, recipients and times, so order and states
//     stay; payload and metadata go on every replica (the entry is in the
//     log), from the snapshot (built from the tables) and from the partition's
//     stored log (nodes/storage/message_store.cc scrubs the entries already
//     applied).
//
// Pure functions over a PartitionState; `at_ms` is the leader's stamp.
#pragma once

#include <cstdint>
#include <optional>

#include "nodes/storage/domain.h"
#include "schema/retention.h"

namespace chat4all::storage {

DomainResult erase_user(PartitionState& state, const wire::EraseUser& erase, std::int64_t at_ms);
DomainResult erase_messages(PartitionState& state, const wire::EraseMessages& erase);
DomainResult record_erase_progress(PartitionState& state, const wire::EraseProgress& progress,
                                   std::int64_t at_ms);
std::optional<wire::EraseJob> erase_job(const PartitionState& state, std::string_view tenant,
                                        std::string_view user);

// The tombstone of `message`: what stays of it once its sender was erased.
wire::StoredMessage tombstone_of(wire::StoredMessage message);

// Whether log entry data `entry` (msgpack ReplicatedCommand) is an append of
// `user`'s in `conversation` that still carries content, and then its
// replacement without it (applying the replacement, then the erasure that
// follows it in the log, ends where the original did).
std::optional<std::string> scrubbed_entry(std::string_view entry, std::string_view conversation,
                                          std::string_view user);

}  // namespace chat4all::storage
