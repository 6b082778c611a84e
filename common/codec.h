// Encoding and decoding of wire frames (schema/wire.h).
//
// Decoding never throws: a malformed frame, a frame of another version or a
// body that does not match its type yields std::nullopt together with the
// reason, so that a node can log it, count it and drop it.
#pragma once

#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "schema/wire.h"

namespace chat4all::codec {

// Serialises header + body as one frame.
template <typename Body>
std::string encode(const wire::Header& header, const Body& body) {
  msgpack::sbuffer buffer(256);
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(5);
  packer.pack(header.version);
  packer.pack(static_cast<std::uint16_t>(header.type));
  packer.pack(header.request_id);
  packer.pack(header.trace_id);
  packer.pack(body);
  return std::string(buffer.data(), buffer.size());
}

// A decoded frame whose body is still a msgpack object. Owns the memory the
// body refers to; movable, not copyable.
class Frame {
 public:
  const wire::Header& header() const { return header_; }

  // The body's first field when it is a string: by the schema's rule, the
  // conversation_id of every request routed by conversation. Lets a router
  // route without decoding (or copying) the rest of the body.
  std::optional<std::string_view> routing_key() const {
    if (body_->type != msgpack::type::ARRAY || body_->via.array.size == 0) return std::nullopt;
    const msgpack::object& first = body_->via.array.ptr[0];
    if (first.type != msgpack::type::STR) return std::nullopt;
    return std::string_view(first.via.str.ptr, first.via.str.size);
  }

  // Converts the body to `Body`; nullopt when it does not have that shape.
  template <typename Body>
  std::optional<Body> body() const {
    try {
      Body result;
      body_->convert(result);
      return result;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

 private:
  friend std::optional<Frame> decode(std::string_view bytes, std::string* error);
  wire::Header header_;
  msgpack::object_handle handle_;
  const msgpack::object* body_ = nullptr;
};

// Parses the envelope. On failure returns nullopt and, if `error` is set,
// describes the problem ("not msgpack", "unsupported version 7", ...).
std::optional<Frame> decode(std::string_view bytes, std::string* error = nullptr);

// Header and typed body in one step; nullopt if either is malformed or the
// frame's type is not `expected`.
template <typename Body>
std::optional<Body> decode_as(std::string_view bytes, wire::MessageType expected,
                              wire::Header* header_out = nullptr, std::string* error = nullptr) {
  auto frame = decode(bytes, error);
  if (!frame) return std::nullopt;
  if (frame->header().type != expected) {
    if (error) *error = "unexpected message type " + std::to_string(int(frame->header().type));
    return std::nullopt;
  }
  auto body = frame->template body<Body>();
  if (!body && error) *error = "body does not match its message type";
  if (body && header_out) *header_out = frame->header();
  return body;
}

const char* status_name(wire::Status status);

// A struct as msgpack bytes, for bodies carried inside another struct
// (CommandRequest::body, stored records).
template <typename T>
std::string pack_body(const T& body) {
  msgpack::sbuffer buffer(256);
  msgpack::pack(buffer, body);
  return std::string(buffer.data(), buffer.size());
}

// The struct back; nullopt when the bytes are not msgpack of that shape.
template <typename T>
std::optional<T> unpack_body(std::string_view bytes) {
  try {
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    return handle.get().as<T>();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace chat4all::codec
