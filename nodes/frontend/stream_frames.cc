#include "nodes/frontend/stream_frames.h"

#include <nlohmann/json.hpp>

#include "common/ids.h"
#include "nodes/frontend/api_json.h"
#include "nodes/frontend/message_json.h"
#include "nodes/frontend/validation_support.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

std::string dump(const json& frame) {
  // Stored text is not guaranteed to be valid UTF-8 forever; a bad byte is
  // replaced rather than failing the frame (and with it the connection).
  return frame.dump(-1, ' ', false, json::error_handler_t::replace);
}

ClientFrame invalid(std::string code, std::string message) {
  ClientFrame frame;
  frame.kind = ClientFrame::Kind::kInvalid;
  frame.error_code = std::move(code);
  frame.error_message = std::move(message);
  return frame;
}

}  // namespace

ClientFrame parse_client_frame(std::string_view text, std::size_t cursors_max) {
  bool too_deep = false;
  const json parsed = parse_json_bounded(text, too_deep);
  if (too_deep)
    return invalid("invalid_json",
                   "the frame nests deeper than " + std::to_string(kJsonDepthMax) + " levels");
  if (parsed.is_discarded()) return invalid("invalid_json", "the frame is not valid JSON");
  if (!parsed.is_object()) return invalid("invalid_frame", "a frame is a JSON object");
  const auto type = parsed.find("type");
  if (type == parsed.end() || !type->is_string())
    return invalid("invalid_frame", "the frame has no string \"type\"");
  const std::string& kind = type->get_ref<const std::string&>();
  if (kind == "ping") {
    ClientFrame frame{ClientFrame::Kind::kPing, {}, {}, {}, {}};
    const auto id = parsed.find("id");
    if (id == parsed.end() || id->is_null()) return frame;
    if (!id->is_string() || id->get_ref<const std::string&>().size() > kPingIdBytesMax)
      return invalid("invalid_frame", "a ping \"id\" is a string of at most " +
                                          std::to_string(kPingIdBytesMax) + " bytes");
    frame.ping_id = id->get<std::string>();
    return frame;
  }
  if (kind == "typing") {
    const auto conversation_id = parsed.find("conversation_id");
    if (conversation_id == parsed.end() || !conversation_id->is_string() ||
        !ids::is_valid_id(conversation_id->get_ref<const std::string&>()))
      return invalid("invalid_frame", "a typing frame names a \"conversation_id\"");
    ClientFrame frame;
    frame.kind = ClientFrame::Kind::kTyping;
    frame.conversation_id = conversation_id->get<std::string>();
    return frame;
  }
  if (kind != "resume")
    return invalid("unknown_type", "unknown frame type \"" + kind + "\" (resume, ping, typing)");

  ClientFrame frame{ClientFrame::Kind::kResume, {}, {}, {}, {}};
  const auto cursors = parsed.find("cursors");
  if (cursors == parsed.end() || cursors->is_null()) return frame;
  if (!cursors->is_object())
    return invalid("invalid_frame", "\"cursors\" maps conversation ids to seqs");
  if (cursors->size() > cursors_max)
    return invalid("invalid_frame", "at most " + std::to_string(cursors_max) + " cursors");
  for (const auto& [conversation_id, seq] : cursors->items()) {
    if (!ids::is_valid_id(conversation_id))
      return invalid("invalid_frame", "\"" + conversation_id + "\" is not a conversation id");
    if (!seq.is_number_unsigned())
      return invalid("invalid_frame",
                     "the cursor of \"" + conversation_id + "\" is not a non-negative integer");
    frame.cursors[conversation_id] = seq.get<std::uint64_t>();
  }
  return frame;
}

std::string ready_frame(const std::string& user_id,
                        const std::vector<StreamCursorTracker::ConversationPosition>& positions,
                        std::size_t conversations_max) {
  json conversations = json::array();
  for (const auto& position : positions)
    conversations.push_back({{"conversation_id", position.conversation_id},
                             {"last_seq", position.last_seq},
                             {"cursor", position.cursor}});
  return dump({{"type", "ready"},
               {"user_id", user_id},
               {"conversations", std::move(conversations)},
               {"conversations_max", conversations_max}});
}

std::string conversations_capped_frame(std::size_t conversations_max) {
  return error_frame("conversations_capped",
                     "this stream follows at most " + std::to_string(conversations_max) +
                         " conversations; the others are not streamed (GET /v1/conversations "
                         "lists them all)");
}

std::string message_frame(const wire::StoredMessage& message) {
  return dump({{"type", "message"}, {"message", public_message_json(message)}});
}

std::string state_frame(const std::string& conversation_id, const wire::StateLogEntry& step) {
  return dump({{"type", "state"},
               {"message_id", step.message_id},
               {"conversation_id", conversation_id},
               {"seq", step.seq},
               {"recipient_id", step.recipient_id},
               {"state", step.state},
               {"at", step.at_ms}});
}

std::string pong_frame(const std::optional<std::string>& ping_id) {
  json frame = {{"type", "pong"}};
  if (ping_id) frame["id"] = *ping_id;
  return dump(frame);
}

std::string presence_frame(const wire::Event& event) {
  const bool offline = event.state == wire::kPresenceOffline;
  json frame = presence_json({event.user_id, event.state, offline ? event.at_ms : 0});
  frame["type"] = "presence";
  return dump(frame);
}

std::string typing_frame(const wire::Event& event) {
  return dump(
      {{"type", "typing"}, {"conversation_id", event.conversation_id}, {"user_id", event.user_id}});
}

std::string error_frame(const std::string& code, const std::string& message) {
  return dump({{"type", "error"}, {"error", {{"code", code}, {"message", message}}}});
}

}  // namespace chat4all::frontend
