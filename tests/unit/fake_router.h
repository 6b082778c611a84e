// A router's "channels" endpoint for the connector's unit tests: a ZMQ ROUTER bound on a free
// loopback port, which reads what the connector sends and sends it jobs.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/codec.h"
#include "common/ids.h"
#include "common/transport.h"
#include "schema/records.h"

namespace chat4all::connector::test_support {

using namespace std::chrono_literals;

// A router's "channels" endpoint: a ROUTER socket on a free loopback port.
class FakeRouter {
 public:
  FakeRouter() : socket_(transport::context(), zmq::socket_type::router) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    const std::string endpoint = socket_.get(zmq::sockopt::last_endpoint);
    port_ = static_cast<std::uint16_t>(std::stoi(endpoint.substr(endpoint.rfind(':') + 1)));
  }

  std::uint16_t port() const { return port_; }

  // The next frame of `type` from the connector (others are skipped), within `timeout`.
  template <typename Body>
  std::optional<Body> receive(wire::MessageType type, std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, 50ms);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      auto frames = transport::receive_multipart(socket_);
      if (frames.size() != 2) continue;
      peer_ = std::string(transport::view(frames[0]));
      auto body = codec::decode_as<Body>(transport::view(frames[1]), type);
      if (body) return body;
    }
    return std::nullopt;
  }

  // The next status that satisfies `accept`.
  std::optional<wire::ConnectorStatus> status_where(
      const std::function<bool(const wire::ConnectorStatus&)>& accept,
      std::chrono::milliseconds timeout = 3000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto status =
          receive<wire::ConnectorStatus>(wire::MessageType::kConnectorStatus,
                                         std::chrono::duration_cast<std::chrono::milliseconds>(
                                             deadline - std::chrono::steady_clock::now()));
      if (status && accept(*status)) return status;
    }
    return std::nullopt;
  }

  void send_job(const wire::DeliveryJob& job) {
    const wire::Header header{wire::kWireVersion, wire::MessageType::kDeliveryJob,
                              ids::next_request_id(), ids::new_trace_id()};
    const std::string frame = codec::encode(header, job);
    ASSERT_TRUE(transport::send_multipart(socket_, {peer_, frame}));
  }

  const std::string& peer() const { return peer_; }

 private:
  zmq::socket_t socket_;
  std::uint16_t port_ = 0;
  std::string peer_;
};

}  // namespace chat4all::connector::test_support
