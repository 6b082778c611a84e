#include "nodes/frontend/message_json.h"

namespace chat4all::frontend {

using nlohmann::json;

json metadata_json(const std::string& metadata_text) {
  if (metadata_text.empty()) return json::object();
  json parsed = json::parse(metadata_text, nullptr, /*allow_exceptions=*/false);
  return parsed.is_object() ? parsed : json::object();
}

json public_message_json(const wire::StoredMessage& message) {
  if (message.erased)
    // A tombstone: where the message was and who it was between, nothing of what it said.
    return json{{"message_id", message.message_id},
                {"conversation_id", message.conversation_id},
                {"seq", message.seq},
                {"sender_id", message.sender_id},
                {"to", message.recipients},
                {"channels",
                 message.channels.empty() ? json::array({"all"}) : json(message.channels)},
                {"erased", true},
                {"received_at", message.received_at_ms},
                {"stored_at", message.stored_at_ms}};
  json payload = {{"type", message.payload.type}};
  if (message.payload.type == "file") {
    const wire::Payload& file = message.payload;
    payload["file_id"] = file.file_id;
    payload["name"] = file.file_name;
    payload["size"] = file.file_size;
    payload["media_type"] = file.media_type;
    payload["sha256"] = file.sha256;
    payload["download_path"] = "/v1/files/" + file.file_id + "/content";
  } else {
    payload["text"] = message.payload.text;
  }
  return json{
      {"message_id", message.message_id},
      {"conversation_id", message.conversation_id},
      {"seq", message.seq},
      {"sender_id", message.sender_id},
      {"to", message.recipients},
      {"channels", message.channels.empty() ? json::array({"all"}) : json(message.channels)},
      {"payload", std::move(payload)},
      {"metadata", metadata_json(message.metadata)},
      {"received_at", message.received_at_ms},
      {"stored_at", message.stored_at_ms}};
}

}  // namespace chat4all::frontend
