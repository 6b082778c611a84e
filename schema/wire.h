// The wire schema: every message exchanged between Chat4All nodes.
//
// This header is the contract; schema/README.md describes each message in
// prose. Every frame is a msgpack array
//
//   [version, type, request_id, trace_id, body]
//
// where `body` is the msgpack array of the struct named by `type`. Structs
// are encoded as arrays (MSGPACK_DEFINE); a decoder accepts a shorter array
// (fields appended in a later minor revision take their defaults), so new
// fields are only ever appended. Anything that changes the meaning of an
// existing field bumps kWireVersion, and a node drops frames of a version it
// does not speak (counted in `wire_frames_rejected_total`).
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <utility>
#include <vector>

namespace chat4all::wire {

inline constexpr std::uint16_t kWireVersion = 1;

enum class MessageType : std::uint16_t {
  kAppendRequest = 1,
  kAppendReply = 2,
  kReadRequest = 3,
  kReadReply = 4,
  kErrorReply = 5,
  kReplicationBatch = 6,
};

// Outcome carried by every reply. Values are part of the wire contract.
enum class Status : std::uint8_t {
  kOk = 0,
  kNotOwner = 1,     // this storage node does not lead the partition (owner_hint: who does)
  kUnavailable = 2,  // no node able to serve is reachable, or the partition has no leader yet
  kTimeout = 3,      // a downstream node did not answer within its bound
  kStorageFull = 4,  // the store refused the write; nothing was written
  kConflict = 5,     // message_id already used with a different content
  kInvalid = 6,      // the request broke a rule the sender should have checked
  kInternal = 7,     // unexpected failure; nothing was acknowledged
};

struct Header {
  std::uint16_t version = kWireVersion;
  MessageType type = MessageType::kErrorReply;
  std::uint64_t request_id = 0;
  std::string trace_id;  // 32 lowercase hex characters, W3C trace-id shaped
};

struct Payload {
  std::string type;  // "text"
  std::string text;
  MSGPACK_DEFINE(type, text);
};

// Routing rule: every request that is routed by conversation has
// `conversation_id` as its first field, so routers read only that field
// (codec::Frame::routing_key) and forward the frame untouched.

// frontend -> router -> storage: append one message to a conversation.
struct AppendRequest {
  std::string conversation_id;
  std::string message_id;
  std::string sender_id;
  std::vector<std::string> recipients;
  Payload payload;
  std::int64_t received_at_ms = 0;  // frontend wall clock when the request arrived
  MSGPACK_DEFINE(conversation_id, message_id, sender_id, recipients, payload, received_at_ms);
};

// storage -> router -> frontend: the message is durable (status kOk).
struct AppendReply {
  Status status = Status::kInternal;
  std::string conversation_id;
  std::string message_id;
  std::uint64_t seq = 0;
  bool duplicate = false;  // the message_id was already stored; seq is the original one
  std::string detail;
  MSGPACK_DEFINE(status, conversation_id, message_id, seq, duplicate, detail);
};

// frontend -> router -> storage: read a conversation's history in seq order.
struct ReadRequest {
  std::string conversation_id;
  std::uint64_t from_seq = 1;
  std::uint32_t limit = 50;
  MSGPACK_DEFINE(conversation_id, from_seq, limit);
};

// One stored message, as history returns it.
struct StoredMessage {
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::vector<std::string> recipients;
  Payload payload;
  std::int64_t received_at_ms = 0;
  std::int64_t stored_at_ms = 0;
  MSGPACK_DEFINE(conversation_id, seq, message_id, sender_id, recipients, payload, received_at_ms,
                 stored_at_ms);
};

struct ReadReply {
  Status status = Status::kInternal;
  std::vector<StoredMessage> messages;
  std::uint64_t last_seq = 0;  // highest seq of the conversation at the time of the read
  std::string detail;
  MSGPACK_DEFINE(status, messages, last_seq, detail);
};

// Any node -> requester, for any request it cannot answer with its own reply type
// (unroutable, timed out downstream, not the owner).
struct ErrorReply {
  Status status = Status::kInternal;
  std::string detail;
  std::string owner_hint;       // with kNotOwner: the node that leads the partition, if known
  std::uint32_t partition = 0;  // with kNotOwner / kUnavailable from storage: the partition
  std::uint64_t epoch = 0;      // ... and the epoch (term) the hint is valid for; 0 = unknown
  MSGPACK_DEFINE(status, detail, owner_hint, partition, epoch);
};

// ---------------------------------------------------------------------------
// Replication between the storage nodes of a replica set (one consensus group
// per partition). Messages between one pair of nodes that are produced in the
// same loop turn travel together in one ReplicationBatch, so heartbeats of
// all partitions two nodes share cost one frame.

enum class ReplicationKind : std::uint8_t {
  kAppend = 1,             // leader -> follower: entries after (index, log_term)
  kAppendResponse = 2,     // follower -> leader: match index, or a rejection with a hint
  kHeartbeat = 3,          // leader -> follower: term and commit, no entries
  kHeartbeatResponse = 4,  // follower -> leader
  kVote = 5,               // candidate -> voter: (index, log_term) is its last entry
  kVoteResponse = 6,       // voter -> candidate: granted unless `reject`
  kSnapshot = 7,           // leader -> follower: state up to (index, log_term)
  kTimeoutNow = 8,         // leader -> preferred replica: campaign now (leadership transfer)
};

struct LogEntry {
  std::uint64_t term = 0;
  std::string data;  // empty: the no-op a new leader appends; else msgpack ReplicatedCommand
  MSGPACK_DEFINE(term, data);
};

struct ReplicationMessage {
  ReplicationKind kind = ReplicationKind::kHeartbeat;
  std::uint32_t partition = 0;
  std::uint64_t term = 0;      // the sender's epoch
  std::uint64_t index = 0;     // kAppend: prev index; kVote: last index; kSnapshot: its index;
                               // kAppendResponse: match index, or the rejected prev index
  std::uint64_t log_term = 0;  // term of the entry at `index`
  std::uint64_t commit = 0;    // kAppend / kHeartbeat: leader's commit index (capped for the peer)
  bool reject = false;         // kAppendResponse / kVoteResponse: refused
  std::uint64_t hint = 0;      // rejected kAppendResponse: the follower's last index;
                               // kAppend / kHeartbeat: index the log may be trimmed to
  bool transfer = false;       // kVote: campaign started by kTimeoutNow (ignores leader lease)
  std::vector<LogEntry> entries;
  std::string snapshot;  // kSnapshot: the partition's state, msgpack PartitionSnapshot
  MSGPACK_DEFINE(kind, partition, term, index, log_term, commit, reject, hint, transfer, entries,
                 snapshot);
};

// storage -> storage, sent as [empty token][frame] on the peer's rpc socket.
struct ReplicationBatch {
  std::string from;  // sender's node name
  std::vector<ReplicationMessage> messages;
  MSGPACK_DEFINE(from, messages);
};

// A partition's applied state as a leader sends it to a replica that fell
// behind the trimmed log: every record of the partition's three tables, keys
// without the partition prefix (schema/README.md, storage layout).
struct PartitionSnapshot {
  std::vector<std::pair<std::string, std::string>> messages, heads, dedup;
  MSGPACK_DEFINE(messages, heads, dedup);
};

// What one log entry asks the partition's state machine to do. Applying it is
// deterministic, so every replica assigns the same seq: the sequence number is
// a function of the committed log, never of which leader proposed the entry.
struct ReplicatedCommand {
  AppendRequest append;
  std::int64_t stored_at_ms = 0;  // leader's wall clock at proposal
  MSGPACK_DEFINE(append, stored_at_ms);
};

}  // namespace chat4all::wire

MSGPACK_ADD_ENUM(chat4all::wire::Status);
MSGPACK_ADD_ENUM(chat4all::wire::ReplicationKind);
