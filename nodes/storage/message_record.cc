#include "nodes/storage/message_record.h"

#include <msgpack.hpp>

namespace chat4all::storage {

namespace {

// The fields of StoredMessage the key does not hold. Fields are only appended.
struct MessageRecord {
  std::string message_id;
  std::string sender_id;
  std::vector<std::string> recipients;
  wire::Payload payload;
  std::int64_t received_at_ms = 0;
  std::int64_t stored_after_received_ms = 0;  // negative when the clocks disagree
  std::vector<std::string> channels;
  std::string metadata;
  bool erased = false;
  MSGPACK_DEFINE(message_id, sender_id, recipients, payload, received_at_ms,
                 stored_after_received_ms, channels, metadata, erased);
};

// A layout-4 value: the whole StoredMessage, conversation_id and seq first
// (ten fields then; a record has fewer, so any array this long is whole).
constexpr std::uint32_t kWholeMessageFields = 10;

}  // namespace

std::string encode_message_record(const wire::StoredMessage& message) {
  const MessageRecord record{
      message.message_id, message.sender_id,      message.recipients,
      message.payload,    message.received_at_ms, message.stored_at_ms - message.received_at_ms,
      message.channels,   message.metadata,       message.erased};
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, record);
  return std::string(buffer.data(), buffer.size());
}

wire::StoredMessage decode_message_record(std::string_view conversation_id, std::uint64_t seq,
                                          std::string_view bytes) {
  const msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
  const msgpack::object& object = handle.get();
  if (object.type == msgpack::type::ARRAY && object.via.array.size >= kWholeMessageFields)
    return object.as<wire::StoredMessage>();
  auto record = object.as<MessageRecord>();
  wire::StoredMessage message;
  message.conversation_id = std::string(conversation_id);
  message.seq = seq;
  message.message_id = std::move(record.message_id);
  message.sender_id = std::move(record.sender_id);
  message.recipients = std::move(record.recipients);
  message.payload = std::move(record.payload);
  message.received_at_ms = record.received_at_ms;
  message.stored_at_ms = record.received_at_ms + record.stored_after_received_ms;
  message.channels = std::move(record.channels);
  message.metadata = std::move(record.metadata);
  message.erased = record.erased;
  return message;
}

}  // namespace chat4all::storage
