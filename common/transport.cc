#include "common/transport.h"

#include <arpa/inet.h>

namespace chat4all::transport {

zmq::context_t& context() {
  static zmq::context_t shared(1);
  return shared;
}

Counter& rejected_frames_counter() {
  static Counter& counter = metrics().counter("chat4all_wire_frames_rejected_total",
                                              "Malformed or unsupported frames dropped");
  return counter;
}

std::string bind_address(const NodeSpec& node, const std::string& endpoint) {
  auto port = node.port(endpoint);
  if (!port) throw TopologyError("node " + node.name + " has no '" + endpoint + "' endpoint");
  std::string host = node.host == "localhost" ? "127.0.0.1" : node.host;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return "tcp://" + host + ":" + std::to_string(*port);
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1)
    return "tcp://[" + host + "]:" + std::to_string(*port);
  return "tcp://*:" + std::to_string(*port);
}

void configure(zmq::socket_t& socket, int high_water_mark) {
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::sndhwm, high_water_mark);
  socket.set(zmq::sockopt::rcvhwm, high_water_mark);
  socket.set(zmq::sockopt::tcp_keepalive, 1);
  socket.set(zmq::sockopt::ipv6, 1);
}

std::vector<zmq::message_t> receive_multipart(zmq::socket_t& socket) {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) return frames;
    const bool more = frame.more();
    frames.push_back(std::move(frame));
    if (!more) return frames;
  }
}

int poll(zmq::pollitem_t* items, std::size_t count, std::chrono::milliseconds timeout) {
  try {
    return zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& error) {
    if (error.num() == EINTR) {
      for (std::size_t i = 0; i < count; ++i) items[i].revents = 0;
      return 0;
    }
    throw;
  }
}

bool send_multipart(zmq::socket_t& socket, const std::vector<std::string_view>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                             : zmq::send_flags::dontwait;
    try {
      // ZeroMQ sends multipart messages atomically: once the first frame is
      // accepted the rest are too, so a refusal can only happen at frame 0.
      if (!socket.send(zmq::const_buffer(frames[i].data(), frames[i].size()), flags)) return false;
    } catch (const zmq::error_t&) {
      return false;
    }
  }
  return true;
}

}  // namespace chat4all::transport
