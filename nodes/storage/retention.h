// Retention: messages older than their conversation's retention leave the
// log (schema/retention.h, schema/README.md "Retention and erasure").
//
// Why it is shaped this way
//   - Decided once, by the leader: its sweep (kRetentionSweep, a query on its
//     applied state) compares the times leaders stamped on messages
//     (stored_at_ms) with its own clock and proposes kExpireMessages with the
//     cutoff it computed. Replicas never read their own clocks: they apply
//     the cutoff in the entry, so every replica removes the same messages.
//   - stored_at_ms never decreases along a conversation, so what expires is
//     always a prefix of its history: the conversation record keeps where
//     history now starts (first_seq) and the head stays, so sequence numbers
//     are never reused.
//   - Bounded: one entry removes at most kExpiryMessagesPerCommandMax
//     messages (one transaction stays small); the next sweep proposes the
//     rest. A sweep scans a bounded number of conversation records and goes
//     on from where it stopped next time.
//
// Pure functions over a PartitionState; `at_ms` is the leader's stamp of the
// entry.
#pragma once

#include <cstdint>
#include <optional>

#include "nodes/storage/domain.h"
#include "schema/retention.h"

namespace chat4all::storage {

// The retention that applies to a conversation: the shorter of its tenant's
// (0: forever) and its own (0: the tenant's), in ms; nullopt: forever.
std::optional<std::int64_t> retention_ms(std::int64_t tenant_retention_ms,
                                         std::int64_t conversation_retention_s);

// Where a conversation's history starts (first_seq 0 reads as 1).
inline std::uint64_t history_start(const wire::ConversationRecord& record) {
  return record.first_seq == 0 ? 1 : record.first_seq;
}

DomainResult expire_messages(PartitionState& state, const wire::MessageExpiry& expiry,
                             std::int64_t at_ms);
DomainResult set_retention(PartitionState& state, const wire::SetRetention& change,
                           std::int64_t at_ms);
wire::RetentionSweepResult retention_sweep(const PartitionState& state,
                                           const wire::RetentionSweep& sweep);

}  // namespace chat4all::storage
