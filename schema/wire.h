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
#include <vector>

namespace chat4all::wire {

inline constexpr std::uint16_t kWireVersion = 1;

enum class MessageType : std::uint16_t {
  kAppendRequest = 1,
  kAppendReply = 2,
  kReadRequest = 3,
  kReadReply = 4,
  kErrorReply = 5,
};

// Outcome carried by every reply. Values are part of the wire contract.
enum class Status : std::uint8_t {
  kOk = 0,
  kNotOwner = 1,     // this storage node does not lead the partition
  kUnavailable = 2,  // no node able to serve the request is reachable
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
  std::string owner_hint;  // with kNotOwner: the node that owns the partition, if known
  MSGPACK_DEFINE(status, detail, owner_hint);
};

}  // namespace chat4all::wire

MSGPACK_ADD_ENUM(chat4all::wire::Status);
