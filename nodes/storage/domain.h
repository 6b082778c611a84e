// The partition state machine beyond the bare message log: tenant
// directories (users, identities, clients, webhooks and their delivery
// records, each user's conversations), conversations and their members,
// per-recipient message states and read/delivered horizons, the message
// locator and the partition's event outbox (schema/records.h, schema/README.md).
//
// Pure logic over a PartitionState: no LMDB, sockets or clock inside. Every
// command is applied from the committed log with the time the leader stamped
// on the entry, so every replica makes the same change; queries read the
// applied state. Not thread-safe by itself: the caller's transaction is the
// unit of isolation.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/records.h"
#include "schema/wire.h"

namespace chat4all::storage {

// One partition's applied state inside one transaction. Keys are relative to
// the partition (the implementation adds the partition prefix).
class PartitionState {
 public:
  virtual ~PartitionState() = default;
  // The `records` table.
  virtual std::optional<std::string> get(std::string_view key) const = 0;
  virtual void put(std::string_view key, std::string_view value) = 0;
  virtual void erase(std::string_view key) = 0;
  // Records whose key starts with `prefix` and sorts after `after` (a full
  // key; empty: from the start), in key order, until `visit` returns false.
  using Visit = std::function<bool(std::string_view key, std::string_view value)>;
  virtual void scan(std::string_view prefix, std::string_view after, const Visit& visit) const = 0;
  // The message log.
  virtual std::optional<wire::StoredMessage> message(std::string_view conversation_id,
                                                     std::uint64_t seq) const = 0;
  virtual std::uint64_t head(std::string_view conversation_id) const = 0;
  virtual std::optional<std::uint64_t> seq_of(std::string_view conversation_id,
                                              std::string_view message_id) const = 0;
  // Retention: removes the message at `seq` and its message_id's dedup entry.
  virtual void erase_message(std::string_view conversation_id, std::uint64_t seq,
                             std::string_view message_id) = 0;
  // Erasure: replaces a stored message by its tombstone (same conversation and
  // seq), and its dedup entry's content digest by zeros.
  virtual void replace_message(const wire::StoredMessage& tombstone) = 0;
};

struct DomainResult {
  wire::Status status = wire::Status::kOk;
  std::string body;  // msgpack result struct (an empty array for "(empty)")
  std::string detail;
  std::string field;
  std::vector<wire::Event> events;  // hints for the leader to publish
  // Ids of outbox events dropped to make room (kOutboxEventsMax), for the node to count and log.
  std::vector<std::string> outbox_dropped;
  // Blobs no file refers to any more ("tenant/blob_id", files.h): every replica deletes its chunks.
  std::vector<std::string> freed_blobs;
};

// Unacknowledged events per partition and stream. At the bound the oldest is dropped: the node
// counts it (chat4all_storage_outbox_events_dropped_total) and logs it at warn, and each webhook
// that would have been sent it gets a `failed` delivery record saying so, when the tenant's
// records live in the same partition (elsewhere only the count and the log tell). A locator
// entry dropped so leaves its message unknown to GET /v1/messages/{id} (its conversation still
// holds it); it takes kOutboxEventsMax messages stored while no indexer runs.
inline constexpr std::uint64_t kOutboxEventsMax = 100000;
inline constexpr std::uint64_t kHorizonStepMax = 10000;  // messages one horizon move covers

// `at_ms` is the time the proposing leader stamped on the entry.
DomainResult apply_command(PartitionState& state, std::uint32_t partition,
                           const wire::CommandRequest& command, std::int64_t at_ms);

DomainResult run_query(const PartitionState& state, const wire::QueryRequest& query);

// Before an append is stored: with a tenant, the conversation must exist in
// it and the sender be a member; fills in the recipients (every other member
// when none were named). kOk, or the refusal.
DomainResult check_append(const PartitionState& state, wire::AppendRequest& append);

// After a new message is stored: its outbox event and hint, its locator entry
// (the locator outbox, which the routers' indexers turn into kIndexMessages on
// the locator partitions), and, with `route_to_channels` and a channel choice
// other than only "internal", its entry on the channel outbox. Returns the ids of outbox events
// dropped to make room (see kOutboxEventsMax).
std::vector<std::string> note_appended(PartitionState& state, std::uint32_t partition,
                                       const wire::StoredMessage& message,
                                       const std::string& tenant_id, bool route_to_channels,
                                       std::vector<wire::Event>& events);

// The conversation record (any tenant), and its replacement: for the parts of
// the state machine beyond this file (retention.cc).
std::optional<wire::ConversationRecord> load_conversation(const PartitionState& state,
                                                          std::string_view conversation_id);
void store_conversation(PartitionState& state, const wire::ConversationRecord& record);

// Before a message leaves the log (retention): the records kept about it
// beside it, its recipients' states and its channel deliveries, go too.
void forget_message_records(PartitionState& state, const wire::StoredMessage& message);

// Erasure: events of `sender`'s messages in `conversation` on the channel
// outbox that are not yet acknowledged (at most `scan_max` looked at) lose
// their content as the messages did. How many were changed.
std::size_t scrub_channel_outbox(PartitionState& state, std::string_view conversation,
                                 std::string_view sender, std::size_t scan_max);

// History read (schema/wire.h ReadRequest): forward, backward or since a time.
wire::ReadReply read_history(const PartitionState& state, const wire::ReadRequest& request,
                             std::uint32_t page_max);

}  // namespace chat4all::storage
