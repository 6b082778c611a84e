#include "common/codec.h"

namespace chat4all::codec {

std::optional<Frame> decode(std::string_view bytes, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<Frame> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  Frame frame;
  try {
    std::size_t offset = 0;
    // No container or string in a frame can be longer than the frame itself;
    // without these limits a 6-byte frame claiming 2^32 elements makes msgpack
    // reserve gigabytes before it notices the bytes are missing.
    const std::size_t size_max = bytes.size();
    const msgpack::unpack_limit limits(size_max, size_max, size_max, size_max, size_max, 32);
    frame.handle_ = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limits);
    if (offset != bytes.size()) return fail("trailing bytes after the frame");
  } catch (const std::exception&) {
    return fail("not a msgpack value");
  }
  const msgpack::object& root = frame.handle_.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size != 5)
    return fail("frame is not a 5-element array");
  const msgpack::object* items = root.via.array.ptr;
  try {
    std::uint16_t version = items[0].as<std::uint16_t>();
    if (version != wire::kWireVersion)
      return fail("unsupported wire version " + std::to_string(version));
    frame.header_.version = version;
    frame.header_.type = static_cast<wire::MessageType>(items[1].as<std::uint16_t>());
    frame.header_.request_id = items[2].as<std::uint64_t>();
    frame.header_.trace_id = items[3].as<std::string>();
  } catch (const std::exception&) {
    return fail("malformed frame header");
  }
  switch (frame.header_.type) {
    case wire::MessageType::kAppendRequest:
    case wire::MessageType::kAppendReply:
    case wire::MessageType::kReadRequest:
    case wire::MessageType::kReadReply:
    case wire::MessageType::kErrorReply:
    case wire::MessageType::kReplicationBatch:
    case wire::MessageType::kCommandRequest:
    case wire::MessageType::kCommandReply:
    case wire::MessageType::kQueryRequest:
    case wire::MessageType::kQueryReply:
    case wire::MessageType::kConnectorStatus:
    case wire::MessageType::kDeliveryJob:
    case wire::MessageType::kDeliveryResult:
    case wire::MessageType::kEvent:
    case wire::MessageType::kChunkPut:
    case wire::MessageType::kChunkPutReply:
    case wire::MessageType::kChunkGet:
    case wire::MessageType::kChunkGetReply:
      break;
    default:
      return fail("unknown message type " + std::to_string(int(frame.header_.type)));
  }
  frame.body_ = &items[4];
  return frame;
}

const char* status_name(wire::Status status) {
  switch (status) {
    case wire::Status::kOk:
      return "ok";
    case wire::Status::kNotOwner:
      return "not_owner";
    case wire::Status::kUnavailable:
      return "unavailable";
    case wire::Status::kTimeout:
      return "timeout";
    case wire::Status::kStorageFull:
      return "storage_full";
    case wire::Status::kConflict:
      return "conflict";
    case wire::Status::kInvalid:
      return "invalid";
    case wire::Status::kInternal:
      return "internal";
    case wire::Status::kNotFound:
      return "not_found";
    case wire::Status::kExists:
      return "exists";
  }
  return "unknown";
}

}  // namespace chat4all::codec
