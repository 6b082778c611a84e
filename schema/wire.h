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
#include <string_view>
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
  kCommandRequest = 7,  // frontend/connector -> router -> storage: change replicated state
  kCommandReply = 8,
  kQueryRequest = 9,  // frontend/connector -> router -> storage: read applied state
  kQueryReply = 10,
  kEvent = 11,  // storage leader -> PUB "events": a wake-up hint, never the only copy
  // Channel deliveries, on a router's "channels" endpoint (ROUTER; connectors
  // connect DEALER sockets to every router):
  kConnectorStatus = 12,  // connector -> router: alive, and what it can take (records.h)
  kDeliveryJob = 13,      // router -> connector: one delivery to make
  kDeliveryResult = 14,   // connector -> router: how it went
  // File chunks, on a storage node's "chunks" endpoint (ROUTER; frontends
  // connect one DEALER per storage node): bytes kept outside the message log.
  kChunkPut = 20,       // frontend -> storage: store one chunk, fsynced before the reply
  kChunkPutReply = 21,  // storage -> frontend
  kChunkGet = 22,       // frontend -> storage: read one chunk
  kChunkGetReply = 23,  // storage -> frontend
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
  kNotFound = 8,     // no such record, or not visible to the requester (tenant, membership)
  kExists = 9,       // a record with that identity exists already (user_id, address, ...)
};

struct Header {
  std::uint16_t version = kWireVersion;
  MessageType type = MessageType::kErrorReply;
  std::uint64_t request_id = 0;
  std::string trace_id;  // 32 lowercase hex characters, W3C trace-id shaped
};

struct Payload {
  std::string type;  // "text" | "file"
  std::string text;
  std::string file_id;  // with "file"
  // With "file": what the file's record said when the message was accepted (FileRecord), so
  // that every reader shows the file without looking it up.
  std::string file_name;
  std::uint64_t file_size = 0;
  std::string media_type;
  std::string sha256;
  MSGPACK_DEFINE(type, text, file_id, file_name, file_size, media_type, sha256);
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
  // With a tenant the conversation must exist in that tenant and the sender be a
  // member; `recipients` empty means every other member. Without one (internal
  // tools and storage-level tests only; the frontend always sets it) the
  // conversation is a bare ordered log.
  std::string tenant_id;
  std::vector<std::string> channels;  // delivery channels chosen; empty: the default
  std::string metadata;               // JSON object text, opaque to storage
  // An admin named the sender: a sender who is not a member is then a bad
  // sender_id (kInvalid) rather than an invisible conversation (kNotFound).
  bool sender_named_by_admin = false;
  MSGPACK_DEFINE(conversation_id, message_id, sender_id, recipients, payload, received_at_ms,
                 tenant_id, channels, metadata, sender_named_by_admin);
};

// storage -> router -> frontend: the message is durable (status kOk).
struct AppendReply {
  Status status = Status::kInternal;
  std::string conversation_id;
  std::string message_id;
  std::uint64_t seq = 0;
  bool duplicate = false;  // the message_id was already stored; seq is the original one
  std::string detail;
  std::string field;  // the request field a refusal concerns, if any
  MSGPACK_DEFINE(status, conversation_id, message_id, seq, duplicate, detail, field);
};

// frontend -> router -> storage: read a conversation's history in seq order.
// Forward (from_seq, or the first message stored at or after since_ms when
// since_ms > 0) or backward (before_seq > 0: the `limit` messages just before
// it); messages are always returned in ascending seq. With a tenant, the
// conversation must be visible to `requester_id` (a member; empty: an admin
// of the tenant).
struct ReadRequest {
  std::string conversation_id;
  std::uint64_t from_seq = 1;
  std::uint32_t limit = 50;
  std::string tenant_id;
  std::string requester_id;
  std::uint64_t before_seq = 0;
  std::int64_t since_ms = 0;
  MSGPACK_DEFINE(conversation_id, from_seq, limit, tenant_id, requester_id, before_seq, since_ms);
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
  std::int64_t stored_at_ms = 0;  // never earlier than the previous message's
  std::vector<std::string> channels;
  std::string metadata;
  // Its sender was erased: payload and metadata are gone, the rest stays.
  bool erased = false;
  MSGPACK_DEFINE(conversation_id, seq, message_id, sender_id, recipients, payload, received_at_ms,
                 stored_at_ms, channels, metadata, erased);
};

struct ReadReply {
  Status status = Status::kInternal;
  std::vector<StoredMessage> messages;
  std::uint64_t last_seq = 0;  // highest seq of the conversation at the time of the read
  std::string detail;
  // Highest index of the conversation's state log at the time of the read, so
  // that a stream learns of state changes it has not read with no extra request.
  std::uint64_t state_head = 0;
  // Where the conversation's history starts (messages below it expired); 0
  // from a node before retention. A reader whose cursor is below it goes on
  // from here: nothing below will ever come.
  std::uint64_t first_seq = 0;
  MSGPACK_DEFINE(status, messages, last_seq, detail, state_head, first_seq);
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
  // Requests (kAppend, kHeartbeat, kSnapshot, kVote): the sender's round, its
  // consensus tick count when it sent them; responses echo the round they
  // answer, so the sender knows how old the answer's evidence is (read lease,
  // clock comparison). 0: none (a peer from before rounds existed).
  std::uint64_t round = 0;
  // The sender's wall clock (Unix ms) as its core last observed it, at most
  // about a tick old. 0: unknown (no clock given, or an older peer).
  std::int64_t sender_wall_ms = 0;
  MSGPACK_DEFINE(kind, partition, term, index, log_term, commit, reject, hint, transfer, entries,
                 snapshot, round, sender_wall_ms);
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
  std::vector<std::pair<std::string, std::string>> messages, heads, dedup, records;
  MSGPACK_DEFINE(messages, heads, dedup, records);
};

// ---------------------------------------------------------------------------
// Commands and queries on the replicated state beyond the message log: the
// tenant directory, conversations and membership, message states, the
// message locator and each partition's event outbox. The bodies are the
// structs of schema/records.h, msgpack-encoded, chosen by `kind`.
//
// `key` (first field, the routing key) names the partition: a conversation_id,
// tenant_key(), locator_key() or partition_key() below.

enum class CommandKind : std::uint16_t {
  kNone = 0,
  // tenant directory, key tenant_key(tenant)
  kCreateUser = 1,       // CreateUser -> UserRecord
  kUpdateUser = 2,       // UpdateUser -> UserRecord
  kLinkIdentity = 3,     // IdentityChange -> UserRecord
  kUnlinkIdentity = 4,   // IdentityChange -> UserRecord
  kCreateClient = 5,     // CreateClient -> ClientRecord
  kDeleteClient = 6,     // TenantLookup -> (empty)
  kIndexMembership = 7,  // IndexMembership -> (empty)
  kCreateWebhook = 8,    // CreateWebhook -> WebhookRecord
  kDeleteWebhook = 9,    // TenantLookup -> (empty)
  kRecordDelivery = 10,  // RecordDelivery -> (empty)
  kReportPresence = 11,  // PresenceReport -> PresenceReportResult
  kExpirePresence = 12,  // PresenceExpiry -> (empty); proposed by the leader itself
  // conversation, key conversation_id
  kCreateConversation = 20,  // CreateConversation -> ConversationRecord
  kAddMembers = 21,          // ChangeMembers -> ConversationRecord
  kRemoveMember = 22,        // ChangeMembers -> ConversationRecord
  kMarkState = 23,           // MarkState -> MarkStateResult
  // message locator, key locator_key(tenant, message_id). The claim and its release are no
  // longer sent (the locator is written behind the log, kIndexMessages); entries of older logs
  // are still applied.
  kLocateMessage = 30,  // LocateMessage -> (empty); kConflict if the id names another conversation
  kReleaseMessage =
      31,  // LocateMessage -> (empty); forgets the claim if it names that conversation
  // many locator entries of one locator partition, key partition_key(p)
  kIndexMessages = 32,  // IndexMessages -> IndexMessagesResult
  // partition, key partition_key(p)
  kAckOutbox = 40,  // AckOutbox -> (empty)
  // channel deliveries, key conversation_id
  kUpdateChannelDelivery = 50,  // ChannelDeliveryUpdate -> ChannelDeliveryRecord
  // platform ids, key channel_address_key(channel, address)
  kIndexChannelRef = 60,  // ChannelRef -> (empty)
  // files, key tenant_key(tenant): a tenant's files live in its directory partition, so that its
  // quota, its content index (dedup) and its expiry sweep are one partition's state
  kCreateUpload = 70,   // CreateUpload -> FileRecord
  kAdvanceUpload = 71,  // AdvanceUpload -> FileRecord (kConflict: the offset moved)
  kDeleteFile = 72,     // TenantLookup (id = file_id) -> (empty)
  kExpireUploads = 73,  // UploadExpiry -> (empty); proposed by the leader itself
  kShareFile = 74,      // ShareFile -> FileRecord
  // retention and erasure (schema/retention.h)
  kExpireMessages = 80,  // MessageExpiry -> MessageExpiryResult; key conversation_id; proposed
                         // by the leader itself
  kSetRetention = 81,    // SetRetention -> ConversationRecord; key conversation_id
  kEraseUser = 82,       // EraseUser -> EraseJob; key tenant_key
  kEraseMessages = 83,   // EraseMessages -> EraseMessagesResult; key conversation_id
  kEraseProgress = 84,   // EraseProgress -> EraseJob; key tenant_key
  // replica set changes (schema/replica_change.h), key partition_key(p), to the partition's leader
  kChangeReplicas = 90,  // ChangeReplicas -> ChangeReplicasResult
  // the cluster's topology (schema/topology_version.h), key topology_key()
  kStoreTopology = 91,  // StoreTopology -> TopologyVersion; kConflict: another version is stored
};

enum class QueryKind : std::uint16_t {
  kNone = 0,
  kGetUser = 1,                // TenantLookup -> UserRecord
  kListUsers = 2,              // TenantList -> std::vector<UserRecord>
  kGetClient = 3,              // TenantLookup -> ClientRecord
  kListClients = 4,            // TenantList -> std::vector<ClientRecord>
  kMissingUsers = 5,           // UserSet -> std::vector<std::string> (those that do not exist)
  kListUserConversations = 6,  // TenantList (owner = user) -> std::vector<std::string>
  kListWebhooks = 7,           // TenantList -> std::vector<WebhookRecord>
  kGetWebhook = 8,             // TenantLookup -> WebhookRecord
  kListDeliveries = 9,         // TenantList (owner = webhook) -> std::vector<DeliveryRecord>
  kResolveIdentity = 10,       // IdentityChange (user_id ignored) -> UserRecord
  kGetDelivery = 11,           // DeliveryLookup -> DeliveryRecord
  kGetPresence = 12,           // PresenceLookup -> PresenceRecord
  kGetConversation = 20,       // ConversationLookup -> ConversationRecord
  kGetMessage = 21,            // ConversationLookup (+ message_id) -> MessageWithStates
  kConversationSummary = 22,   // ConversationLookup -> ConversationSummary
  kReadStates = 23,            // ReadStates -> StatePage
  // Not a read: the leader checks membership, applies the typing rate limit
  // and publishes a "typing" event; never stored.
  kTyping = 24,                 // TypingNotice -> TypingResult
  kFindMessage = 30,            // LocateMessage (conversation_id ignored) -> std::string
  kReadOutbox = 40,             // ReadOutbox -> std::vector<OutboxEvent>
  kExpiredPresenceLeases = 41,  // PresenceSweep -> std::vector<PresenceLease> (key partition_key)
  kListChannelDeliveries =
      50,                // ConversationLookup (+ message_id) -> std::vector<ChannelDeliveryRecord>
  kFindChannelRef = 60,  // ChannelRef (channel, address, provider_message_id) -> ChannelRef
  kGetFile = 70,         // TenantLookup (id = file_id) -> FileRecord
  kExpiredUploads = 71,  // UploadSweep -> std::vector<FileRecord> (key partition_key)
  // retention and erasure (schema/retention.h)
  kRetentionSweep = 80,  // RetentionSweep -> RetentionSweepResult (key partition_key)
  kGetEraseJob = 81,     // TenantLookup (id = user_id) -> EraseJob; key tenant_key
  kGetTopology = 91,     // TopologyLookup -> TopologyVersion; key topology_key()
};

struct CommandRequest {
  std::string key;
  CommandKind kind = CommandKind::kNone;
  std::string body;
  MSGPACK_DEFINE(key, kind, body);
};

struct CommandReply {
  Status status = Status::kInternal;
  std::string body;    // with kOk: the result struct of the kind
  std::string detail;  // otherwise: what went wrong, for the client
  std::string field;   // ... and the request field it concerns, if any
  MSGPACK_DEFINE(status, body, detail, field);
};

struct QueryRequest {
  std::string key;
  QueryKind kind = QueryKind::kNone;
  std::string body;
  MSGPACK_DEFINE(key, kind, body);
};

using QueryReply = CommandReply;

inline std::string tenant_key(std::string_view tenant_id) {
  return "tenant:" + std::string(tenant_id);
}
inline std::string locator_key(std::string_view tenant_id, std::string_view message_id) {
  return "msg:" + std::string(tenant_id) + ":" + std::string(message_id);
}
// Where what a platform's ids name is kept: by the platform user's address,
// because every report a platform sends names that user.
inline std::string channel_address_key(std::string_view channel, std::string_view address) {
  return "chaddr:" + std::string(channel) + ":" + std::string(address);
}
// Addresses partition `p` itself (its outbox), bypassing the hash.
inline constexpr std::string_view kPartitionKeyPrefix = "#partition:";
inline std::string partition_key(std::uint32_t partition) {
  return std::string(kPartitionKeyPrefix) + std::to_string(partition);
}

// What the leader that applied an entry publishes on its "events" PUB
// socket, as [topic][Event frame]. A hint that something changed, so that
// frontends read sooner: a subscriber that misses one recovers by reading
// from its cursor. Topic: the conversation_id (kinds "message", "state",
// "presence", "typing"), or "user:<tenant>:<user_id>" (kind "membership").
//
// "presence" and "typing" are not hints but the only copy of something
// ephemeral (a lost one is a lost indicator; GET /v1/users/{id}/presence has
// the state). A presence change of a user is published once on the topic of
// each conversation the user is a member of (at most
// kPresenceEventConversationsMax), so that exactly the streams of users who
// share a conversation with the user hear of it; `user_id` is whose presence,
// `state` "online" | "offline", `at_ms` the last_seen_at of an offline (0:
// none to tell, e.g. hidden). A typing event names the typer in `user_id`.
struct Event {
  std::string kind;  // "message" | "state" | "membership" | "presence" | "typing"
  std::string tenant_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::string recipient_id;  // "state": whose state changed
  std::string state;         // "state": SENT | DELIVERED | READ; "presence": online | offline
  std::int64_t at_ms = 0;
  std::string user_id;  // "membership", "presence", "typing"
  bool joined = false;  // "membership"
  MSGPACK_DEFINE(kind, tenant_id, conversation_id, seq, message_id, sender_id, recipient_id, state,
                 at_ms, user_id, joined);
};

// What one log entry asks the partition's state machine to do: an append
// (append.conversation_id set) or a command. Applying it is deterministic, so
// every replica assigns the same seq and makes the same change: the outcome
// is a function of the committed log, never of which leader proposed the
// entry. Times recorded by a command are `stored_at_ms`, the proposing
// leader's clock.
struct ReplicatedCommand {
  AppendRequest append;
  std::int64_t stored_at_ms = 0;  // leader's wall clock at proposal
  CommandRequest command;
  MSGPACK_DEFINE(append, stored_at_ms, command);
};

// ---------------------------------------------------------------------------
// File chunks (schema/README.md, "Files"). A chunk is at most kChunkBytesMax
// bytes of one file, named by the lowercase hex sha256 of its bytes and kept
// under the file's blob (the file_id whose upload wrote the bytes).

inline constexpr std::uint32_t kChunkBytesMax = 4u << 20;

struct ChunkPut {
  std::string tenant_id;
  std::string blob_id;
  std::string sha256;  // of `bytes`; a mismatch is refused (kInvalid) and nothing is written
  std::string bytes;
  MSGPACK_DEFINE(tenant_id, blob_id, sha256, bytes);
};

struct ChunkPutReply {
  Status status = Status::kInternal;  // kOk: the chunk is on disk, fsynced
  std::string detail;
  MSGPACK_DEFINE(status, detail);
};

struct ChunkGet {
  std::string tenant_id;
  std::string blob_id;
  std::string sha256;
  MSGPACK_DEFINE(tenant_id, blob_id, sha256);
};

struct ChunkGetReply {
  Status status = Status::kInternal;  // kNotFound: this node does not hold the chunk
  std::string bytes;
  std::string detail;
  MSGPACK_DEFINE(status, bytes, detail);
};

}  // namespace chat4all::wire

MSGPACK_ADD_ENUM(chat4all::wire::Status);
MSGPACK_ADD_ENUM(chat4all::wire::ReplicationKind);
MSGPACK_ADD_ENUM(chat4all::wire::CommandKind);
MSGPACK_ADD_ENUM(chat4all::wire::QueryKind);
