#include "nodes/router/router_node.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <unordered_map>

#include "common/codec.h"
#include "common/deadline_queue.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/transport.h"

namespace chat4all::router {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kAttemptsMax = 2;  // first try + one retry at the owner a storage node names

struct Pending {
  zmq::message_t frontend;  // identity frame of the requesting frontend
  std::string frame;        // the request, kept for a retry at another node
  wire::Header header;
  int attempts = 0;
};

struct RouterMetrics {
  Counter& forwarded = metrics().counter("chat4all_router_forwarded_total", "Requests forwarded");
  Counter& timeouts =
      metrics().counter("chat4all_router_timeouts_total", "Requests answered with a timeout");
  Counter& unavailable = metrics().counter("chat4all_router_unavailable_total",
                                           "Requests refused: no storage node reachable or full");
  Counter& retries =
      metrics().counter("chat4all_router_retries_total", "Requests retried elsewhere");
  Counter& late_replies = metrics().counter("chat4all_router_late_replies_total",
                                            "Storage replies that arrived after their deadline");
  Counter& rejected_frames = transport::rejected_frames_counter();
  Gauge& pending = metrics().gauge("chat4all_router_pending", "Requests awaiting a storage reply");
};

std::string token_bytes(std::uint64_t token) {
  return std::string(reinterpret_cast<const char*>(&token), sizeof token);
}

}  // namespace

RouterNode::RouterNode(const Topology& topology, const NodeSpec& self)
    : topology_(topology),
      self_(self),
      ring_(topology.storage_node_names(), topology.partition_count, topology.replication_factor,
            topology.virtual_nodes) {}

void RouterNode::run(const std::atomic<bool>& stop) {
  RouterMetrics stats;
  std::optional<MetricsServer> metrics_server;
  if (auto port = self_.port("metrics")) metrics_server.emplace(metrics(), self_.host, *port);

  const int high_water_mark = static_cast<int>(topology_.limits.pending_requests_max);
  zmq::socket_t frontends(transport::context(), zmq::socket_type::router);
  transport::configure(frontends, high_water_mark);
  frontends.bind(transport::bind_address(self_, "rpc"));

  std::map<std::string, zmq::socket_t> storage_sockets;
  std::vector<zmq::pollitem_t> items{{frontends.handle(), 0, ZMQ_POLLIN, 0}};
  std::vector<zmq::socket_t*> polled_storage;
  for (const NodeSpec* node : topology_.with_role(NodeRole::kStorage)) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    transport::configure(socket, high_water_mark);
    socket.set(zmq::sockopt::immediate, 1);  // refuse sends while the node is not connected
    socket.connect(node->zmq_address("rpc"));
    auto& stored = storage_sockets.emplace(node->name, std::move(socket)).first->second;
    items.push_back({stored.handle(), 0, ZMQ_POLLIN, 0});
    polled_storage.push_back(&stored);
  }
  log_.info("listening", {{"rpc", transport::bind_address(self_, "rpc")},
                          {"storage_nodes", storage_sockets.size()}});

  std::unordered_map<std::uint64_t, Pending> pending;
  DeadlineQueue deadlines;
  std::uint64_t next_token = 1;
  const auto timeout = std::chrono::milliseconds(topology_.limits.router_timeout_ms);

  auto answer_error = [&](const zmq::message_t& frontend, const wire::Header& request,
                          wire::Status status, const std::string& detail) {
    wire::Header header{wire::kWireVersion, wire::MessageType::kErrorReply, request.request_id,
                        request.trace_id};
    transport::send_multipart(
        frontends,
        {transport::view(frontend), codec::encode(header, wire::ErrorReply{status, detail, ""})});
  };

  // Sends pending request `token` to `node`; false if that node cannot take it.
  auto send_to = [&](const std::string& node, std::uint64_t token, Pending& request) {
    auto socket = storage_sockets.find(node);
    if (socket == storage_sockets.end()) return false;
    ++request.attempts;
    return transport::send_multipart(socket->second, {token_bytes(token), request.frame});
  };

  while (!stop.load(std::memory_order_relaxed)) {
    transport::poll(items.data(), items.size(),
                    deadlines.wait_time(Clock::now(), std::chrono::milliseconds(100)));

    if (items[0].revents & ZMQ_POLLIN) {
      for (int drained = 0; drained < 4096; ++drained) {
        auto frames = transport::receive_multipart(frontends);
        if (frames.empty()) break;
        std::string why;
        std::optional<codec::Frame> frame;
        if (frames.size() == 2) frame = codec::decode(transport::view(frames[1]), &why);
        if (!frame) {
          stats.rejected_frames.add();
          log_.debug("frame_rejected",
                     {{"reason", frames.size() == 2 ? why : "expected 2 frames"}});
          continue;
        }
        const wire::Header& header = frame->header();
        std::string_view conversation_id;
        if (header.type == wire::MessageType::kAppendRequest ||
            header.type == wire::MessageType::kReadRequest)
          conversation_id = frame->routing_key().value_or("");
        if (conversation_id.empty()) {
          stats.rejected_frames.add();
          answer_error(frames[0], header, wire::Status::kInvalid, "request names no conversation");
          continue;
        }
        if (pending.size() >= topology_.limits.pending_requests_max) {
          stats.unavailable.add();
          answer_error(frames[0], header, wire::Status::kUnavailable,
                       "router is at its pending limit");
          continue;
        }
        const std::uint64_t token = next_token++;
        Pending request{std::move(frames[0]), std::string(transport::view(frames[1])), header, 0};
        const std::string& owner = ring_.replicas(ring_.partition_of(conversation_id)).front();
        if (!send_to(owner, token, request)) {
          stats.unavailable.add();
          answer_error(request.frontend, header, wire::Status::kUnavailable,
                       "storage node " + owner + " is unreachable");
          continue;
        }
        stats.forwarded.add();
        pending.emplace(token, std::move(request));
        deadlines.push(Clock::now() + timeout, token);
      }
    }

    for (std::size_t s = 0; s < polled_storage.size(); ++s) {
      if (!(items[s + 1].revents & ZMQ_POLLIN)) continue;
      for (int drained = 0; drained < 4096; ++drained) {
        auto frames = transport::receive_multipart(*polled_storage[s]);
        if (frames.empty()) break;
        if (frames.size() != 2 || frames[0].size() != sizeof(std::uint64_t)) {
          stats.rejected_frames.add();
          continue;
        }
        std::uint64_t token;
        std::memcpy(&token, frames[0].data(), sizeof token);
        auto it = pending.find(token);
        if (it == pending.end()) {
          stats.late_replies.add();
          continue;
        }
        // A storage node that does not own the partition names the one that
        // does; follow it once.
        const std::string_view reply = transport::view(frames[1]);
        if (it->second.attempts < kAttemptsMax) {
          wire::Header header;
          auto error =
              codec::decode_as<wire::ErrorReply>(reply, wire::MessageType::kErrorReply, &header);
          if (error && error->status == wire::Status::kNotOwner && !error->owner_hint.empty()) {
            stats.retries.add();
            if (send_to(error->owner_hint, token, it->second)) continue;
          }
        }
        transport::send_multipart(frontends, {transport::view(it->second.frontend), reply});
        pending.erase(it);
      }
    }

    deadlines.expire(Clock::now(), [&](std::uint64_t token) {
      auto it = pending.find(token);
      if (it == pending.end()) return;  // answered already
      stats.timeouts.add();
      answer_error(it->second.frontend, it->second.header, wire::Status::kTimeout,
                   "storage did not answer within " +
                       std::to_string(topology_.limits.router_timeout_ms) + " ms");
      pending.erase(it);
    });
    deadlines.compact(pending.size(),
                      [&](std::uint64_t token) { return pending.count(token) > 0; });
    stats.pending.set(static_cast<std::int64_t>(pending.size()));
  }
  log_.info("stopped");
}

}  // namespace chat4all::router
