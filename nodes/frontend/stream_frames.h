// The frames of GET /v1/stream (docs/api.md, "Real time"): parsing what a
// client sends and building what the server sends. JSON text frames only.
//
// Pure functions, safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodes/frontend/stream_cursor_tracker.h"
#include "schema/records.h"
#include "schema/wire.h"

namespace chat4all::frontend {

// What a client frame asks for. kInvalid carries the error to answer with
// (the connection stays open: one bad frame is the client's bug, not a reason
// to drop its stream).
struct ClientFrame {
  enum class Kind { kResume, kPing, kInvalid, kTyping };
  Kind kind = Kind::kInvalid;
  StreamCursorTracker::Cursors cursors;  // kResume
  std::optional<std::string> ping_id;    // kPing: echoed in the pong
  std::string error_code;                // kInvalid: invalid_json | invalid_frame | unknown_type
  std::string error_message;
  std::string conversation_id;  // kTyping
};

// `{"type":"resume","cursors":{"<conversation_id>":<last seq seen>}}` (cursors
// may be absent or empty), `{"type":"ping","id"?}`,
// `{"type":"typing","conversation_id"}`; anything else is kInvalid.
// At most `cursors_max` cursors; ids must be valid conversation ids and seqs
// non-negative integers; a ping id is a string of at most kPingIdBytesMax.
ClientFrame parse_client_frame(std::string_view text, std::size_t cursors_max);
inline constexpr std::size_t kPingIdBytesMax = 128;

// `conversations_max`: how many conversations one stream follows at most.
std::string ready_frame(const std::string& user_id,
                        const std::vector<StreamCursorTracker::ConversationPosition>& positions,
                        std::size_t conversations_max);
// The error frame `conversations_capped`: the user has more conversations
// than one stream follows; the others are not streamed.
std::string conversations_capped_frame(std::size_t conversations_max);
// `{"type":"message","message":{…}}`, the message as REST history shows it.
std::string message_frame(const wire::StoredMessage& message);
// `{"type":"state","message_id","conversation_id","seq","recipient_id","state","at"}`
// from a step of the conversation's state log (DELIVERED or READ; SENT is not
// streamed: the 202 said it).
std::string state_frame(const std::string& conversation_id, const wire::StateLogEntry& step);
std::string pong_frame(const std::optional<std::string>& ping_id);
// `{"type":"presence","user_id","state","last_seen_at"}` from an event of kind
// "presence"; last_seen_at is null when online or unknown (hidden).
std::string presence_frame(const wire::Event& event);
// `{"type":"typing","conversation_id","user_id"}` from an event of kind "typing".
std::string typing_frame(const wire::Event& event);
std::string error_frame(const std::string& code, const std::string& message);

}  // namespace chat4all::frontend
