// Retention and erasure: the bodies of CommandKind and QueryKind 80-89
// (schema/wire.h) and the records they keep (schema/README.md "Retention and
// erasure"). Encoded as msgpack arrays like every wire struct: fields are only
// appended.
#pragma once

#include <cstddef>
#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <utility>
#include <vector>

namespace chat4all::wire {

// ---- retention (conversation partition, key conversation_id)

// One expiry the leader decided: the messages of the conversation stored (by
// the leaders' stamps) at or before `cutoff_ms`, and with a seq not above
// `up_to_seq` (the head when it decided), go. Applied in seq order from the
// conversation's first_seq, at most kExpiryMessagesPerCommandMax per entry;
// the next sweep proposes the rest.
struct MessageExpiry {
  std::string tenant_id;
  std::string conversation_id;
  std::int64_t cutoff_ms = 0;
  std::uint64_t up_to_seq = 0;
  MSGPACK_DEFINE(tenant_id, conversation_id, cutoff_ms, up_to_seq);
};
inline constexpr std::uint64_t kExpiryMessagesPerCommandMax = 512;

struct MessageExpiryResult {
  std::uint64_t first_seq = 1;  // where the conversation's history now starts
  std::uint64_t expired = 0;    // messages this entry removed
  MSGPACK_DEFINE(first_seq, expired);
};

// The leader's sweep of one partition (key partition_key): conversations
// whose oldest kept message is past its retention at `at_ms`. Scans at most
// `conversations_max` conversation records after `after` (a record key;
// empty: from the start) and answers where to go on.
struct RetentionSweep {
  std::int64_t at_ms = 0;
  // Each tenant with a retention: tenant id -> retention in ms (the topology's).
  std::vector<std::pair<std::string, std::int64_t>> tenant_retention_ms;
  std::string after;
  std::uint32_t conversations_max = 1000;
  MSGPACK_DEFINE(at_ms, tenant_retention_ms, after, conversations_max);
};

struct RetentionSweepResult {
  std::vector<MessageExpiry> expiries;
  std::string next_after;  // empty: the scan reached the end
  MSGPACK_DEFINE(expiries, next_after);
};

// PATCH /v1/conversations/{id} {"retention_s"}: `by` is a member of a
// private conversation or the creator of a group (empty: an admin of the
// tenant). `tenant_retention_s` (0: forever) is the bound the frontend read
// from the topology; a longer retention is refused.
struct SetRetention {
  std::string tenant_id;
  std::string conversation_id;
  std::string by;
  std::int64_t retention_s = 0;
  std::int64_t tenant_retention_s = 0;
  MSGPACK_DEFINE(tenant_id, conversation_id, by, retention_s, tenant_retention_s);
};

// ---- erasure (POST /v1/users/{id}/erase)

// Tenant directory partition, key tenant_key: begins the erasure of a user, or
// answers the job already begun (idempotent). Applied, the user record, its
// identities, its conversation index and its presence go, and the job lists
// the conversations the index named; the frontend then drives
// kEraseMessages through them and records each with kEraseProgress.
struct EraseUser {
  std::string tenant_id;
  std::string user_id;
  MSGPACK_DEFINE(tenant_id, user_id);
};
inline constexpr std::size_t kEraseConversationsMax = 100000;  // listed per job; more: refused

inline constexpr const char* kErasePending = "pending";
inline constexpr const char* kEraseDone = "done";

// "E/<tenant>/<user>" in the tenant's directory partition.
struct EraseJob {
  std::string tenant_id;
  std::string user_id;
  std::string state;  // kErasePending | kEraseDone
  std::vector<std::string> conversations;
  std::uint64_t conversations_done = 0;  // a prefix of `conversations`
  std::uint64_t messages_erased = 0;
  std::uint64_t identities_removed = 0;
  std::int64_t created_at_ms = 0;
  std::int64_t finished_at_ms = 0;
  MSGPACK_DEFINE(tenant_id, user_id, state, conversations, conversations_done, messages_erased,
                 identities_removed, created_at_ms, finished_at_ms);
};

// Conversation partition, key conversation_id: the messages `user_id` sent
// with seq from `from_seq`, at most kEraseScanMax seqs looked at per entry,
// become tombstones (seq, ids and times kept; content gone; erased = true).
struct EraseMessages {
  std::string tenant_id;
  std::string conversation_id;
  std::string user_id;
  std::uint64_t from_seq = 1;
  MSGPACK_DEFINE(tenant_id, conversation_id, user_id, from_seq);
};
inline constexpr std::uint64_t kEraseScanMax = 2048;

struct EraseMessagesResult {
  std::uint64_t next_seq = 1;  // where the next entry goes on
  std::uint64_t erased = 0;    // tombstones this entry made
  bool done = false;           // the scan reached the head
  MSGPACK_DEFINE(next_seq, erased, done);
};

// Tenant directory partition, key tenant_key: conversation number `index` of
// the job is done, with `erased` tombstones. Applied only in order (a replay
// changes nothing); the last one finishes the job.
struct EraseProgress {
  std::string tenant_id;
  std::string user_id;
  std::uint64_t index = 0;
  std::uint64_t erased = 0;
  MSGPACK_DEFINE(tenant_id, user_id, index, erased);
};

}  // namespace chat4all::wire
