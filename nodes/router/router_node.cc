#include "nodes/router/router_node.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>

#include "common/codec.h"
#include "common/curve.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/router_client.h"
#include "common/topology_change.h"
#include "common/topology_follower.h"
#include "common/transport.h"
#include "nodes/router/channel_routing.h"
#include "nodes/router/locator_indexing.h"

namespace chat4all::router {

namespace {

using Clock = std::chrono::steady_clock;

// What the shell keeps of a forwarded request; its failover state is the core's.
struct Held {
  zmq::message_t frontend;  // identity frame of the requesting frontend
  std::string frame;        // the request, kept for a retry at another node
  wire::Header header;
};

struct RouterMetrics {
  Counter& forwarded = metrics().counter("chat4all_router_forwarded_total", "Requests forwarded");
  Counter& timeouts =
      metrics().counter("chat4all_router_timeouts_total", "Requests answered with a timeout");
  Counter& unavailable = metrics().counter("chat4all_router_unavailable_total",
                                           "Requests refused: no storage node reachable or full");
  Counter& retries =
      metrics().counter("chat4all_router_retries_total",
                        "Attempts after the first: leader hints followed, retries after a backoff");
  Counter& leader_changes = metrics().counter("chat4all_router_leader_changes_total",
                                              "Updates of the partition -> leader cache");
  Counter& late_replies =
      metrics().counter("chat4all_router_late_replies_total",
                        "Storage replies for a request that no longer waits for that node");
  Counter& rejected_frames = transport::rejected_frames_counter();
  Gauge& pending = metrics().gauge("chat4all_router_pending", "Requests awaiting a storage reply");
};

std::string token_bytes(std::uint64_t token) {
  return std::string(reinterpret_cast<const char*>(&token), sizeof token);
}

// Whether a storage reply may be an ErrorReply, the only kind the router acts
// on. Decoding every reply would parse whole history pages just to forward
// them; the codec writes version and type as msgpack fixints right after the
// 5-item array header, so those three bytes settle the common case. Anything
// shaped otherwise is decoded to be sure.
bool may_be_error_reply(std::string_view frame) {
  if (frame.size() < 3 || static_cast<unsigned char>(frame[0]) != 0x95) return true;
  const auto version = static_cast<unsigned char>(frame[1]);
  const auto type = static_cast<unsigned char>(frame[2]);
  if (version > 0x7f || type > 0x7f) return true;
  return type == static_cast<unsigned char>(wire::MessageType::kErrorReply);
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
  // Storage nodes ask it too: for the stored topology version (common/topology_follower.h).
  curve::serve(frontends, "router.rpc",
               {NodeRole::kFrontend, NodeRole::kRouter, NodeRole::kConnector, NodeRole::kStorage});
  frontends.bind(transport::bind_address(self_, "rpc"));

  std::map<std::string, zmq::socket_t> storage_sockets;
  std::vector<zmq::pollitem_t> items{{frontends.handle(), 0, ZMQ_POLLIN, 0}};
  std::vector<zmq::socket_t*> polled_storage;
  std::vector<std::string> polled_names;  // node behind polled_storage[i]
  for (const NodeSpec* node : topology_.with_role(NodeRole::kStorage)) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    transport::configure(socket, high_water_mark);
    socket.set(zmq::sockopt::immediate, 1);  // refuse sends while the node is not connected
    curve::connect(socket, node->zmq_address("rpc"));
    auto& stored = storage_sockets.emplace(node->name, std::move(socket)).first->second;
    items.push_back({stored.handle(), 0, ZMQ_POLLIN, 0});
    polled_storage.push_back(&stored);
    polled_names.push_back(node->name);
  }
  log_.info("listening", {{"rpc", transport::bind_address(self_, "rpc")},
                          {"storage_nodes", storage_sockets.size()}});
  // Every router indexes message ids for its share of the partitions, channels or not.
  std::shared_ptr<const Topology> indexing_topology;  // a newer version's, once adopted: below
  auto locator_indexing = std::make_unique<LocatorIndexing>(topology_, self_);
  locator_indexing->start();
  std::optional<ChannelRouting> channel_routing;
  if (!topology_.channels.empty() && self_.port("channels")) {
    channel_routing.emplace(topology_, self_);
    channel_routing->start();
  }
  // A newer topology version: the locator outboxes are shared among the routers it lists
  // (another router came or went), so the indexing starts again on this router's new share;
  // entries read and not acknowledged are read again (indexing them twice changes nothing).
  // The first router to start records its file as version 1 when none is stored.
  RouterClient follower_routers(router_rpc_addresses(topology_),
                                topology_.limits.request_timeout_ms,
                                topology_.limits.pending_requests_max);
  TopologyFollower follower(
      topology_, self_.name, follower_routers,
      [&, share = topology_.partitions_read_by(NodeRole::kRouter, self_.name)](
          std::shared_ptr<const Topology> next, std::uint64_t version) mutable {
        follower_routers.set_routers(router_rpc_addresses(*next));
        const NodeSpec* self_next = next->find(self_.name);
        auto next_share = next->partitions_read_by(NodeRole::kRouter, self_.name);
        if (next_share == share) return;
        log_.info("locator_share_changed",
                  {{"version", version}, {"partitions", next_share.size()}});
        share = std::move(next_share);
        locator_indexing.reset();
        if (!self_next) return;
        locator_indexing = std::make_unique<LocatorIndexing>(*next, *self_next);
        locator_indexing->start();
        indexing_topology = std::move(next);
      },
      /*record_when_empty=*/true);

  std::unordered_map<std::uint64_t, Held> pending;  // the same tokens as `failover`
  std::vector<std::string> storage_names;
  for (const auto& [name, socket] : storage_sockets) storage_names.push_back(name);
  RequestFailover failover(ring_, std::move(storage_names),
                           std::chrono::milliseconds(topology_.limits.router_timeout_ms),
                           std::random_device{}());
  std::uint64_t next_token = 1;

  auto answer_error = [&](const zmq::message_t& frontend, const wire::Header& request,
                          wire::Status status, const std::string& detail,
                          PartitionId partition = 0) {
    wire::Header header{wire::kWireVersion, wire::MessageType::kErrorReply, request.request_id,
                        request.trace_id};
    transport::send_multipart(
        frontends, {transport::view(frontend),
                    codec::encode(header, wire::ErrorReply{status, detail, "", partition, 0})});
  };

  // Carries out what the core decided, and what that leads to (a send the socket refuses is
  // reported back and decided on again).
  RequestFailover::Actions actions;
  auto act = [&] {
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const FailoverAction action = actions[i];  // a copy: sent() may grow the list
      switch (action.kind) {
        case FailoverAction::Kind::kSend: {
          if (action.retry) stats.retries.add();
          auto held = pending.find(action.token);
          auto socket = storage_sockets.find(action.node);
          const bool taken = held != pending.end() && socket != storage_sockets.end() &&
                             transport::send_multipart(
                                 socket->second, {token_bytes(action.token), held->second.frame});
          failover.sent(action.token, action.node, taken, Clock::now(), actions);
          break;
        }
        case FailoverAction::Kind::kForwarded:
          stats.forwarded.add();
          break;
        case FailoverAction::Kind::kGiveUp:
        case FailoverAction::Kind::kTimeout: {
          auto held = pending.find(action.token);
          if (held == pending.end()) break;
          if (action.kind == FailoverAction::Kind::kGiveUp) {
            stats.unavailable.add();
            answer_error(held->second.frontend, held->second.header, wire::Status::kUnavailable,
                         action.detail, action.partition);
          } else {
            stats.timeouts.add();
            answer_error(held->second.frontend, held->second.header, wire::Status::kTimeout,
                         "storage did not answer within " +
                             std::to_string(topology_.limits.router_timeout_ms) + " ms");
          }
          pending.erase(held);
          break;
        }
        case FailoverAction::Kind::kLeaderChanged: {
          // A changed epoch means an election happened; a change within one epoch is this
          // router correcting its own guess (after an unreachable node), which can repeat per
          // request while a node is down, so it stays at debug.
          stats.leader_changes.add();
          const nlohmann::json fields = {{"partition", action.partition},
                                         {"leader", action.node},
                                         {"epoch", action.epoch},
                                         {"reason", action.reason}};
          if (action.epoch != action.previous_epoch)
            log_.info("leader_changed", fields);
          else
            log_.debug("leader_changed", fields);
          break;
        }
      }
    }
    actions.clear();
  };

  while (!stop.load(std::memory_order_relaxed)) {
    transport::poll(items.data(), items.size(),
                    failover.wait_time(Clock::now(), std::chrono::milliseconds(100)));

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
            header.type == wire::MessageType::kReadRequest ||
            header.type == wire::MessageType::kCommandRequest ||
            header.type == wire::MessageType::kQueryRequest)
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
        pending.emplace(
            token, Held{std::move(frames[0]), std::string(transport::view(frames[1])), header});
        failover.start(token, ring_.partition_of(conversation_id), Clock::now(), actions);
        act();
      }
    }

    for (std::size_t s = 0; s < polled_storage.size(); ++s) {
      if (!(items[s + 1].revents & ZMQ_POLLIN)) continue;
      const std::string& from = polled_names[s];
      for (int drained = 0; drained < 4096; ++drained) {
        auto frames = transport::receive_multipart(*polled_storage[s]);
        if (frames.empty()) break;
        if (frames.size() != 2 || frames[0].size() != sizeof(std::uint64_t)) {
          stats.rejected_frames.add();
          continue;
        }
        std::uint64_t token;
        std::memcpy(&token, frames[0].data(), sizeof token);
        // Only the node holding the current attempt may end it: anything else
        // answers an attempt already given up, and forwarding it could answer
        // the frontend twice.
        if (!failover.awaits(token, from)) {
          stats.late_replies.add();
          continue;
        }
        const std::string_view reply = transport::view(frames[1]);
        std::optional<wire::ErrorReply> error;
        if (may_be_error_reply(reply))
          error = codec::decode_as<wire::ErrorReply>(reply, wire::MessageType::kErrorReply);
        if (!failover.on_reply(token, from, error ? &*error : nullptr, Clock::now(), actions)) {
          act();
          continue;
        }
        auto held = pending.find(token);
        if (held != pending.end()) {
          transport::send_multipart(frontends, {transport::view(held->second.frontend), reply});
          pending.erase(held);
        }
      }
    }

    failover.expire(Clock::now(), actions);
    act();
    stats.pending.set(static_cast<std::int64_t>(pending.size()));
  }
  log_.info("stopped");
}

}  // namespace chat4all::router
