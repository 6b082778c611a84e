// ZeroMQ plumbing shared by every node: the context, addresses, socket
// options and multipart send/receive that never block an event loop.
//
// A zmq::socket_t belongs to the one thread that created it (ZeroMQ sockets
// are not thread-safe); the context is shared.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/metrics.h"
#include "common/topology.h"

namespace chat4all::transport {

zmq::context_t& context();

// chat4all_wire_frames_rejected_total: every frame a node drops because it is
// malformed, of another version or of an unexpected type.
Counter& rejected_frames_counter();

// Address to bind `endpoint` of `node` on: its IP when the host is one,
// otherwise every interface.
std::string bind_address(const NodeSpec& node, const std::string& endpoint);

// Linger 0 (a stopping node never waits on unsent frames), bounded queues
// (`high_water_mark` messages each way: sends past it fail fast rather than
// grow memory) and TCP keepalive.
void configure(zmq::socket_t& socket, int high_water_mark);

// Receives every frame of one message; empty when nothing is waiting.
std::vector<zmq::message_t> receive_multipart(zmq::socket_t& socket);

// Sends frames as one message without blocking. False when the socket's queue
// is full or it has no connected peer (with ZMQ_IMMEDIATE): the caller turns
// that into an "unavailable" answer.
bool send_multipart(zmq::socket_t& socket, const std::vector<std::string_view>& frames);

// zmq::poll that treats an interrupting signal as "nothing ready" (the
// caller's loop then looks at its stop flag) instead of throwing.
int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout);

inline std::string_view view(const zmq::message_t& frame) {
  return {static_cast<const char*>(frame.data()), frame.size()};
}

}  // namespace chat4all::transport
