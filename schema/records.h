// Records of the replicated state beyond the message log, and the bodies of
// CommandRequest / QueryRequest (schema/wire.h says which kind carries which).
// Encoded as msgpack arrays like every wire struct: fields are only appended.
// schema/README.md describes where each record is kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <vector>

#include "schema/wire.h"

namespace chat4all::wire {

// Message states per recipient, in the only order they may take.
inline constexpr const char* kStateSent = "SENT";
inline constexpr const char* kStateDelivered = "DELIVERED";
inline constexpr const char* kStateRead = "READ";

struct Identity {
  std::string channel;  // whatsapp | instagram | telegram | messenger | internal
  std::string address;  // the user's id on that channel (phone number, handle, chat id)
  MSGPACK_DEFINE(channel, address);
};

struct UserRecord {
  std::string tenant_id;
  std::string user_id;
  std::string display_name;
  std::string password_hash;  // argon2id; never leaves the frontend's login path
  std::vector<Identity> identities;
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  bool presence_hidden = false;  // others see the user offline, without last_seen_at
  MSGPACK_DEFINE(tenant_id, user_id, display_name, password_hash, identities, created_at_ms,
                 updated_at_ms, presence_hidden);
};

struct ClientRecord {
  std::string tenant_id;
  std::string client_id;
  std::string name;
  std::string secret_hash;  // argon2id
  std::string role;         // "admin"
  std::int64_t created_at_ms = 0;
  MSGPACK_DEFINE(tenant_id, client_id, name, secret_hash, role, created_at_ms);
};

struct WebhookRecord {
  std::string tenant_id;
  std::string webhook_id;
  std::string url;
  std::vector<std::string> events;  // message.sent | message.delivered | message.read
  std::string secret;               // whsec_...
  std::int64_t created_at_ms = 0;
  MSGPACK_DEFINE(tenant_id, webhook_id, url, events, secret, created_at_ms);
};

struct DeliveryAttempt {
  std::int64_t at_ms = 0;
  std::int32_t status_code = 0;  // 0: no HTTP answer (see error)
  std::string error;
  std::uint32_t duration_ms = 0;
  MSGPACK_DEFINE(at_ms, status_code, error, duration_ms);
};

struct DeliveryRecord {
  std::string tenant_id;
  std::string webhook_id;
  std::string event_id;
  std::string event_type;
  std::string state;  // delivered | retrying | failed
  std::vector<DeliveryAttempt> attempts;
  std::int64_t created_at_ms = 0;
  std::int64_t next_attempt_at_ms = 0;  // with "retrying"
  MSGPACK_DEFINE(tenant_id, webhook_id, event_id, event_type, state, attempts, created_at_ms,
                 next_attempt_at_ms);
};

struct ConversationRecord {
  std::string tenant_id;
  std::string conversation_id;
  std::string type;  // private | group
  std::string name;
  std::string metadata;  // JSON object text
  std::vector<std::string> members;
  std::string created_by;  // user id, or empty when an admin created it
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  // The conversation's own retention (PATCH, shorter than its tenant's); 0: the tenant's.
  std::int64_t retention_s = 0;
  // Where its history starts: messages below were expired (schema/retention.h). 0 reads as 1.
  std::uint64_t first_seq = 0;
  MSGPACK_DEFINE(tenant_id, conversation_id, type, name, metadata, members, created_by,
                 created_at_ms, updated_at_ms, retention_s, first_seq);
};

struct StateChange {
  std::string state;
  std::int64_t at_ms = 0;
  MSGPACK_DEFINE(state, at_ms);
};

struct RecipientState {
  std::string recipient_id;
  std::vector<StateChange> history;  // SENT first; the last entry is the current state
  MSGPACK_DEFINE(recipient_id, history);
};

// One member's progress in a conversation; both only move forward.
struct Horizons {
  std::uint64_t delivered_up_to = 0;
  std::uint64_t read_up_to = 0;
  MSGPACK_DEFINE(delivered_up_to, read_up_to);
};

// A partition has one outbox per stream, each read by cursor and
// acknowledged on its own.
inline constexpr std::uint32_t kOutboxWebhooks = 0;  // message.sent/delivered/read: webhooks
inline constexpr std::uint32_t kOutboxChannels = 1;  // messages to deliver on outside channels
// Messages to index by id (tenant, message_id -> conversation_id) on the
// locator partitions, written behind the committed log (IndexMessages).
inline constexpr std::uint32_t kOutboxLocator = 2;
inline constexpr std::uint32_t kOutboxStreams = 3;

// An event of a partition's outbox, read by webhook dispatchers (stream 0),
// channel dispatchers (stream 1) and the routers' locator indexers (stream 2,
// type "message.locate") by cursor. event_id is the same on every replica and
// across retries.
struct OutboxEvent {
  std::uint64_t index = 0;
  std::string event_id;
  std::string type;  // message.sent | message.delivered | message.read
  std::string tenant_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::string recipient_id;  // empty for message.sent
  std::string state;
  std::int64_t at_ms = 0;
  // kOutboxChannels ("message.route"): the message as the adapters need it.
  std::vector<std::string> recipients;
  std::vector<std::string> channels;
  Payload payload;
  std::string metadata;
  MSGPACK_DEFINE(index, event_id, type, tenant_id, conversation_id, seq, message_id, sender_id,
                 recipient_id, state, at_ms, recipients, channels, payload, metadata);
};

// States of one delivery on an outside channel, in rank order (a state only
// moves up; "failed" may also follow "sent": the platform refused it after
// accepting it).
inline constexpr const char* kDeliveryPending = "pending";
inline constexpr const char* kDeliveryRetrying = "retrying";
inline constexpr const char* kDeliveryFailed = "failed";           // dead letter: no more attempts
inline constexpr const char* kDeliveryNoIdentity = "no_identity";  // recipient not on the channel
inline constexpr const char* kDeliverySent = "sent";               // the platform accepted it
inline constexpr const char* kDeliveryDelivered = "delivered";
inline constexpr const char* kDeliveryRead = "read";

struct ChannelAttempt {
  std::int64_t at_ms = 0;
  std::string connector;  // node that made it
  std::string outcome;    // accepted | retry | rejected | lost (no answer from the connector)
  std::int32_t status_code = 0;  // the platform's HTTP status; 0: none
  std::string error;
  std::uint32_t duration_ms = 0;
  MSGPACK_DEFINE(at_ms, connector, outcome, status_code, error, duration_ms);
};

// One message to one recipient on one channel, kept with the conversation.
struct ChannelDeliveryRecord {
  std::string tenant_id;
  std::string conversation_id;
  std::string message_id;
  std::uint64_t seq = 0;
  std::string recipient_id;
  std::string channel;
  std::string address;  // the recipient's identity there; empty with no_identity
  std::string state;
  std::vector<ChannelAttempt> attempts;  // the last kChannelAttemptsKept
  std::string provider_message_id;
  std::string error;  // why it failed, or was not attempted
  std::int64_t created_at_ms = 0;
  std::int64_t updated_at_ms = 0;
  std::int64_t next_attempt_at_ms = 0;  // with "retrying"
  MSGPACK_DEFINE(tenant_id, conversation_id, message_id, seq, recipient_id, channel, address, state,
                 attempts, provider_message_id, error, created_at_ms, updated_at_ms,
                 next_attempt_at_ms);
};
inline constexpr std::size_t kChannelAttemptsKept = 100;

// Connector node <-> router (schema/wire.h kConnectorStatus ...).
struct ChannelCapacity {
  std::string channel;
  std::uint32_t slots = 0;  // deliveries it takes at once
  std::string breaker;      // closed | open | half_open
  bool connected = false;   // the adapter's connect() succeeded
  MSGPACK_DEFINE(channel, slots, breaker, connected);
};

// Sent every status interval and whenever something changes; a connector
// silent for a few intervals is taken for dead, and what it had taken goes
// elsewhere.
struct ConnectorStatus {
  std::string connector;
  std::vector<ChannelCapacity> channels;
  MSGPACK_DEFINE(connector, channels);
};

struct DeliveryJob {
  std::string job_id;       // unique per attempt
  std::string delivery_id;  // "<message_id>/<recipient_id>/<channel>": the same on every attempt
  std::uint32_t attempt = 1;
  std::string tenant_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::string recipient_id;
  std::string channel;
  std::string address;
  Payload payload;
  std::string metadata;
  MSGPACK_DEFINE(job_id, delivery_id, attempt, tenant_id, conversation_id, seq, message_id,
                 sender_id, recipient_id, channel, address, payload, metadata);
};

struct DeliveryResult {
  std::string job_id;
  std::string connector;
  // accepted | retry | rejected, or busy (not attempted: no slot, breaker
  // open, adapter not connected; the router tries again without counting it)
  std::string outcome;
  std::string provider_message_id;
  bool delivered = false;  // the channel reports no deliveries: accepted is delivered
  std::int32_t status_code = 0;
  std::string error;
  std::uint32_t duration_ms = 0;
  std::uint32_t retry_after_ms = 0;
  MSGPACK_DEFINE(job_id, connector, outcome, provider_message_id, delivered, status_code, error,
                 duration_ms, retry_after_ms);
};

// ---- command bodies

struct CreateUser {
  UserRecord user;
  MSGPACK_DEFINE(user);
};

struct UpdateUser {
  std::string tenant_id;
  std::string user_id;
  bool set_display_name = false;
  std::string display_name;
  bool set_password_hash = false;
  std::string password_hash;
  bool set_presence_hidden = false;
  bool presence_hidden = false;
  MSGPACK_DEFINE(tenant_id, user_id, set_display_name, display_name, set_password_hash,
                 password_hash, set_presence_hidden, presence_hidden);
};

struct IdentityChange {
  std::string tenant_id;
  std::string user_id;
  Identity identity;  // unlink: only the channel counts
  MSGPACK_DEFINE(tenant_id, user_id, identity);
};

struct CreateClient {
  ClientRecord client;
  MSGPACK_DEFINE(client);
};

struct IndexMembership {
  std::string tenant_id;
  std::string conversation_id;
  std::vector<std::string> users;
  bool joined = true;
  MSGPACK_DEFINE(tenant_id, conversation_id, users, joined);
};

struct CreateWebhook {
  WebhookRecord webhook;
  MSGPACK_DEFINE(webhook);
};

// Creates or replaces the delivery record of (webhook, event). The webhook keeps its newest
// `kept_max` records (by when each was first recorded): a new one beyond that removes the
// oldest. 0 (entries logged before the field existed): the webhook's last bound, else
// kDeliveriesKeptDefault.
struct RecordDelivery {
  DeliveryRecord delivery;
  std::uint32_t kept_max = 0;
  MSGPACK_DEFINE(delivery, kept_max);
};
inline constexpr std::uint32_t kDeliveriesKeptDefault = 1000;

struct CreateConversation {
  ConversationRecord conversation;
  MSGPACK_DEFINE(conversation);
};

// Add: `users` join. Remove: users[0] leaves. `by` is the acting user (empty:
// an admin), who must be a member, and for removing someone else the creator.
// `members_max` (0: no bound) is checked where the change is applied, so two
// concurrent additions cannot together pass it. Last, so that entries logged
// before it decode with 0.
struct ChangeMembers {
  std::string tenant_id;
  std::string conversation_id;
  std::string by;
  std::vector<std::string> users;
  std::uint32_t members_max = 0;
  MSGPACK_DEFINE(tenant_id, conversation_id, by, users, members_max);
};

// One message (message_id set) or everything up to a seq (a horizon) becomes
// `state` (DELIVERED or READ) for `user_id`, who must be a member.
struct MarkState {
  std::string tenant_id;
  std::string conversation_id;
  std::string user_id;
  std::string state;
  std::string message_id;
  std::uint64_t up_to_seq = 0;
  MSGPACK_DEFINE(tenant_id, conversation_id, user_id, state, message_id, up_to_seq);
};

struct MarkStateResult {
  Horizons horizons;             // the member's horizons afterwards
  RecipientState message_state;  // with message_id: that message's state for the user
  MSGPACK_DEFINE(horizons, message_state);
};

struct LocateMessage {
  std::string tenant_id;
  std::string message_id;
  std::string conversation_id;
  MSGPACK_DEFINE(tenant_id, message_id, conversation_id);
};

// Locator entries of stored messages, all on the partition the command is
// sent to (key partition_key(p), p = the partition of each entry's
// locator_key). An entry whose id is free takes it; one naming the
// conversation that holds the id already changes nothing (a replay); one
// naming another conversation is refused (the first indexed keeps the id) and
// reported in the result. At most kIndexMessagesEntriesMax entries.
struct IndexMessages {
  std::vector<LocateMessage> entries;
  MSGPACK_DEFINE(entries);
};
inline constexpr std::size_t kIndexMessagesEntriesMax = 4096;

// An entry of IndexMessages refused because the id names another conversation.
struct LocatorConflict {
  LocateMessage refused;
  std::string held_by;  // the conversation the id stays with
  MSGPACK_DEFINE(refused, held_by);
};

struct IndexMessagesResult {
  std::uint32_t added = 0;     // entries that took a free id
  std::uint32_t replayed = 0;  // entries that were there already
  std::vector<LocatorConflict> conflicts;
  MSGPACK_DEFINE(added, replayed, conflicts);
};

struct AckOutbox {
  std::uint32_t partition = 0;
  std::uint64_t up_to = 0;  // every event with index <= up_to is handled
  std::uint32_t stream = kOutboxWebhooks;
  MSGPACK_DEFINE(partition, up_to, stream);
};

// Creates the record or moves it on: the state only by rank (see
// kDeliveryPending), `attempt` (zero or one) appended, the provider id and
// error kept when set.
struct ChannelDeliveryUpdate {
  ChannelDeliveryRecord delivery;
  std::vector<ChannelAttempt> attempt;
  MSGPACK_DEFINE(delivery, attempt);
};

// What a platform's message id names, kept under the platform user's
// address. As a lookup (kFindChannelRef) an empty provider_message_id asks
// for the conversation last delivered to that address.
struct ChannelRef {
  std::string channel;
  std::string address;
  std::string provider_message_id;
  std::string tenant_id;
  std::string conversation_id;
  std::string message_id;
  std::string recipient_id;
  std::int64_t at_ms = 0;
  MSGPACK_DEFINE(channel, address, provider_message_id, tenant_id, conversation_id, message_id,
                 recipient_id, at_ms);
};
inline constexpr std::size_t kChannelRefsPerAddress = 1024;  // older ones are forgotten

// ---- presence (tenant directory partition, key tenant_key; schema/README.md "Presence")
//
// A user is online while some frontend instance has a record of the user's
// streams; each instance holds a lease per tenant that it renews with every
// report, and the partition's leader expires (kExpirePresence) the records of
// an instance whose lease ran out, so that a crashed frontend's users go
// offline. A frontend instance is its node name and a per-start suffix, so a
// restarted frontend never inherits the records of its previous life.

// From one frontend instance: `online` users have at least one open stream
// there now; `offline` users had and have none left (the reconnect grace is
// over). Both may be empty: a lease renewal. The lease runs `lease_ms` from the
// entry's leader stamp.
struct PresenceReport {
  std::string tenant_id;
  std::string frontend;
  std::uint32_t lease_ms = 0;
  std::vector<std::string> online;
  std::vector<std::string> offline;
  MSGPACK_DEFINE(tenant_id, frontend, lease_ms, online, offline);
};
inline constexpr std::size_t kPresenceReportUsersMax = 1000;  // online + offline, per report
inline constexpr std::uint32_t kPresenceLeaseMsMin = 1000;
inline constexpr std::uint32_t kPresenceLeaseMsMax = 600000;

// false: the instance held no live lease before this report (first report, or
// it was expired): storage may have dropped what it reported before, so the
// frontend reports every user it has online again.
struct PresenceReportResult {
  bool lease_was_live = false;
  MSGPACK_DEFINE(lease_was_live);
};

// One frontend instance's lease in one tenant, as kept and as the sweep lists them.
struct PresenceLease {
  std::string tenant_id;
  std::string frontend;
  std::int64_t renewed_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  MSGPACK_DEFINE(tenant_id, frontend, renewed_at_ms, expires_at_ms);
};

// The leader's own command: drops the instance's records if its lease has
// expired by the entry's stamp (a renewal applied since makes it a no-op).
struct PresenceExpiry {
  std::string tenant_id;
  std::string frontend;
  MSGPACK_DEFINE(tenant_id, frontend);
};

// Leases of a partition that expired by `at_ms`, at most `limit`.
struct PresenceSweep {
  std::int64_t at_ms = 0;
  std::uint32_t limit = 64;
  MSGPACK_DEFINE(at_ms, limit);
};

// `requester_id` must be the user, share a conversation with the user, or be
// empty (an admin of the tenant); anyone else gets kNotFound, as for a user
// that does not exist.
struct PresenceLookup {
  std::string tenant_id;
  std::string user_id;
  std::string requester_id;
  MSGPACK_DEFINE(tenant_id, user_id, requester_id);
};

struct PresenceRecord {
  std::string user_id;
  std::string state;                 // online | offline
  std::int64_t last_seen_at_ms = 0;  // offline: when the last stream ended; 0: unknown or hidden
  MSGPACK_DEFINE(user_id, state, last_seen_at_ms);
};
inline constexpr const char* kPresenceOnline = "online";
inline constexpr const char* kPresenceOffline = "offline";
// Conversations a presence change is published on (see wire::Event).
inline constexpr std::size_t kPresenceEventConversationsMax = 2000;

// ---- typing (kTyping, key conversation_id)

struct TypingNotice {
  std::string tenant_id;
  std::string conversation_id;
  std::string user_id;
  MSGPACK_DEFINE(tenant_id, conversation_id, user_id);
};
// At most one typing event per user and conversation in this interval; more are dropped.
inline constexpr std::int64_t kTypingIntervalMs = 3000;

struct TypingResult {
  bool published = false;  // false: within kTypingIntervalMs of the last one, dropped
  MSGPACK_DEFINE(published);
};

// ---- query bodies

struct TenantLookup {
  std::string tenant_id;
  std::string id;
  MSGPACK_DEFINE(tenant_id, id);
};

// Records of a tenant in id order after `after`; `owner` narrows to one user
// (conversations) or one webhook (deliveries).
struct TenantList {
  std::string tenant_id;
  std::string owner;
  std::string after;
  std::uint32_t limit = 50;
  MSGPACK_DEFINE(tenant_id, owner, after, limit);
};

// One webhook's delivery record of one event.
struct DeliveryLookup {
  std::string tenant_id;
  std::string webhook_id;
  std::string event_id;
  MSGPACK_DEFINE(tenant_id, webhook_id, event_id);
};

struct UserSet {
  std::string tenant_id;
  std::vector<std::string> users;
  MSGPACK_DEFINE(tenant_id, users);
};

// `requester_id` must be a member (empty: an admin of the tenant).
struct ConversationLookup {
  std::string tenant_id;
  std::string conversation_id;
  std::string requester_id;
  std::string message_id;  // kGetMessage
  MSGPACK_DEFINE(tenant_id, conversation_id, requester_id, message_id);
};

struct MessageWithStates {
  StoredMessage message;
  std::vector<RecipientState> states;  // one per recipient
  MSGPACK_DEFINE(message, states);
};

struct ConversationSummary {
  ConversationRecord conversation;
  std::uint64_t last_seq = 0;
  std::vector<StoredMessage> last_message;  // empty or one
  std::uint32_t unread_count = 0;           // capped at kUnreadCountMax
  Horizons horizons;                        // the requester's
  std::uint64_t state_head = 0;             // highest index of the conversation's state log
  MSGPACK_DEFINE(conversation, last_seq, last_message, unread_count, horizons, state_head);
};
inline constexpr std::uint32_t kUnreadCountMax = 1000;

// One step of one recipient's state of one message (DELIVERED or READ), as the
// conversation's state log keeps it so that a stream reads its sender's state
// changes by cursor (kReadStates) and a lost change hint loses no state frame.
// Indexes start at 1 and have no gaps; the log keeps the last
// kStateLogEntriesMax entries of a conversation (older ones are dropped as
// new ones come: the message's own states, GET /v1/messages/{id}, keep them).
struct StateLogEntry {
  std::uint64_t index = 0;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::string recipient_id;
  std::string state;
  std::int64_t at_ms = 0;
  MSGPACK_DEFINE(index, seq, message_id, sender_id, recipient_id, state, at_ms);
};
inline constexpr std::uint64_t kStateLogEntriesMax = 10000;

// kReadStates: the entries after `after_index` about messages `sender_id` sent
// (empty: every sender), at most `limit` (1..kStatePageMax) of them, looking at
// no more than kStateScanMax entries; `requester_id` must be a member.
struct ReadStates {
  std::string tenant_id;
  std::string conversation_id;
  std::string requester_id;
  std::string sender_id;
  std::uint64_t after_index = 0;
  std::uint32_t limit = 64;
  MSGPACK_DEFINE(tenant_id, conversation_id, requester_id, sender_id, after_index, limit);
};
inline constexpr std::uint32_t kStatePageMax = 256;
inline constexpr std::uint32_t kStateScanMax = 4096;

struct StatePage {
  std::vector<StateLogEntry> entries;  // index order
  // The reader's next `after_index`: every entry up to it was looked at, the
  // ones about other senders' messages skipped.
  std::uint64_t scanned_to = 0;
  std::uint64_t head = 0;         // highest index in the log
  std::uint64_t first_index = 0;  // lowest index still kept (head + 1 when empty)
  MSGPACK_DEFINE(entries, scanned_to, head, first_index);
};

struct ReadOutbox {
  std::uint32_t partition = 0;
  std::uint64_t after = 0;  // events with index > after
  std::uint32_t limit = 256;
  std::uint32_t stream = kOutboxWebhooks;
  MSGPACK_DEFINE(partition, after, limit, stream);
};

// ---------------------------------------------------------------------------
// Files (schema/README.md, "Files"): records of the tenant's directory partition.

inline constexpr const char* kFileUploading = "uploading";
inline constexpr const char* kFileComplete = "complete";

struct FileChunk {
  std::string sha256;  // lowercase hex of the chunk's bytes
  std::uint64_t size = 0;
  MSGPACK_DEFINE(sha256, size);
};

struct FileRecord {
  std::string tenant_id;
  std::string file_id;
  std::string owner_id;  // the uploader (user id, or an admin's client id)
  std::string name;
  std::string media_type;
  std::uint64_t length = 0;  // declared at creation
  std::uint64_t offset = 0;  // bytes held by a majority of the replicas, in order
  std::string sha256;        // whole file: declared at creation, or computed at completion
  std::string state;         // kFileUploading | kFileComplete
  std::vector<FileChunk> chunks;
  // The file whose chunk directory holds the bytes: itself, or the complete
  // file of the same content this one was deduplicated against.
  std::string blob_id;
  // The sha256 of the bytes up to `offset` so far (libsodium's
  // crypto_hash_sha256_state), so that any frontend can go on with it.
  std::string hash_state;
  std::int64_t created_at_ms = 0;
  std::int64_t expires_at_ms = 0;  // an upload still unfinished then is dropped
  std::int64_t completed_at_ms = 0;
  std::vector<std::string> conversations;  // it was sent into these: their members may read it
  MSGPACK_DEFINE(tenant_id, file_id, owner_id, name, media_type, length, offset, sha256, state,
                 chunks, blob_id, hash_state, created_at_ms, expires_at_ms, completed_at_ms,
                 conversations);
};

// A tenant's bytes held for files: those of blobs (stored once however many
// files share them) and those promised to unfinished uploads (declared length
// less offset), which the quota counts as used.
struct FileUsage {
  std::uint64_t stored_bytes = 0;
  std::uint64_t reserved_bytes = 0;
  MSGPACK_DEFINE(stored_bytes, reserved_bytes);
};

// One blob: how many files refer to its chunks, and their bytes.
struct BlobRecord {
  std::uint64_t files = 0;
  std::uint64_t bytes = 0;
  MSGPACK_DEFINE(files, bytes);
};

struct CreateUpload {
  std::string tenant_id;
  std::string file_id;
  std::string owner_id;
  std::string name;
  std::string media_type;
  std::uint64_t length = 0;
  std::string sha256;  // optional: the whole file's, checked at completion; enables dedup
  std::int64_t expiry_ms = 0;
  std::uint64_t size_max = 0;     // kInvalid (field Upload-Length) above it
  std::uint64_t quota_bytes = 0;  // the tenant's; kStorageFull beyond; 0: none
  std::string hash_state;         // the sha256 state of no bytes
  MSGPACK_DEFINE(tenant_id, file_id, owner_id, name, media_type, length, sha256, expiry_ms,
                 size_max, quota_bytes, hash_state);
};

// Chunks a majority of the replicas holds, appended at `from_offset`, which
// must still be the upload's offset (else kConflict: another PATCH won).
struct AdvanceUpload {
  std::string tenant_id;
  std::string file_id;
  std::uint64_t from_offset = 0;
  std::vector<FileChunk> chunks;
  std::string hash_state;  // after these chunks
  std::string sha256;      // when they complete the file: its digest
  MSGPACK_DEFINE(tenant_id, file_id, from_offset, chunks, hash_state, sha256);
};

struct UploadExpiry {
  std::string tenant_id;
  std::vector<std::string> file_ids;
  MSGPACK_DEFINE(tenant_id, file_ids);
};

struct UploadSweep {
  std::int64_t now_ms = 0;
  std::uint32_t limit = 64;
  MSGPACK_DEFINE(now_ms, limit);
};

struct ShareFile {
  std::string tenant_id;
  std::string file_id;
  std::string conversation_id;
  MSGPACK_DEFINE(tenant_id, file_id, conversation_id);
};

}  // namespace chat4all::wire
