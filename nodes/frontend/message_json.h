// The public JSON shape of a stored message: one definition for every place
// a client sees a message (REST history, GET /v1/messages/{id}, the stream's
// "message" frames), so that they can never drift apart.
//
//   {"message_id","conversation_id","seq","sender_id","to":[…],"channels":[…],
//    "payload":{"type","text"|"file_id"},"metadata":{…},"received_at","stored_at"}
//
// `payload` has `file_id` for a file and `text` otherwise; `channels` is
// ["all"] when the sender chose none (the default); `metadata` is the object
// the sender gave, {} when none. Times are Unix epoch milliseconds.
//
// Pure functions, safe from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "schema/wire.h"

namespace chat4all::frontend {

nlohmann::json public_message_json(const wire::StoredMessage& message);

// Metadata as stored (JSON object text, opaque to storage) turned back into an
// object; {} when empty or, defensively, when the stored text is not an
// object (the frontend validates it before storing, so that means a bug).
nlohmann::json metadata_json(const std::string& metadata_text);

}  // namespace chat4all::frontend
