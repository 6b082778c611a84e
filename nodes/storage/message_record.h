// How one stored message sits in the `messages` table (schema/README.md,
// storage layout): its key already says the conversation and the seq, so the
// value leaves them out, and the stored time is kept as its distance from the
// received time (a few milliseconds: one or two bytes instead of nine).
//
// Values written by layout 4 and earlier (a whole msgpack StoredMessage, ten
// fields) still decode; snapshots carry the values as stored, so a replica
// may hold both forms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "schema/wire.h"

namespace chat4all::storage {

std::string encode_message_record(const wire::StoredMessage& message);

// Throws std::exception (msgpack's) on bytes that are neither form.
wire::StoredMessage decode_message_record(std::string_view conversation_id, std::uint64_t seq,
                                          std::string_view bytes);

}  // namespace chat4all::storage
