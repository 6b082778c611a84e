#include "nodes/router/router_node.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <queue>
#include <random>
#include <unordered_map>

#include "common/codec.h"
#include "common/curve.h"
#include "common/deadline_queue.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/transport.h"
#include "nodes/router/channel_routing.h"
#include "nodes/router/leader_cache.h"
#include "nodes/router/locator_indexing.h"

namespace chat4all::router {

namespace {

using Clock = std::chrono::steady_clock;

struct Pending {
  zmq::message_t frontend;  // identity frame of the requesting frontend
  std::string frame;        // the request, kept for a retry at another node
  wire::Header header;
  PartitionId partition = 0;
  int attempts = 0;        // sends tried, refused ones included
  bool forwarded = false;  // some attempt left this router
  // The node holding the current attempt; only its answer counts. Empty while
  // the request waits out a backoff.
  std::string awaiting;
  std::string retry_node;  // where the attempt after the backoff goes
  std::chrono::milliseconds backoff = kRetryBackoffFirst;
  std::string last_failure;  // why the latest attempt failed, for the final answer
  Clock::time_point attempt_started;
  std::string silent_node;  // held an attempt of this request without answering
};

// Requests waiting out a backoff, earliest first. Their delays differ (unlike
// the deadlines), so a heap rather than a DeadlineQueue; an entry whose
// request has ended meanwhile is skipped when it comes due.
using RetryQueue =
    std::priority_queue<std::pair<Clock::time_point, std::uint64_t>,
                        std::vector<std::pair<Clock::time_point, std::uint64_t>>, std::greater<>>;

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
  curve::serve(frontends, "router.rpc",
               {NodeRole::kFrontend, NodeRole::kRouter, NodeRole::kConnector});
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
  LocatorIndexing locator_indexing(topology_, self_);
  locator_indexing.start();
  std::optional<ChannelRouting> channel_routing;
  if (!topology_.channels.empty() && self_.port("channels")) {
    channel_routing.emplace(topology_, self_);
    channel_routing->start();
  }

  using PendingTable = std::unordered_map<std::uint64_t, Pending>;
  PendingTable pending;
  DeadlineQueue deadlines;
  DeadlineQueue attempt_deadlines;
  RetryQueue retries;
  LeaderCache leaders(ring_);
  std::minstd_rand jitter(std::random_device{}());
  std::uint64_t next_token = 1;
  const auto timeout = std::chrono::milliseconds(topology_.limits.router_timeout_ms);
  const auto attempt_timeout = std::max(kAttemptTimeoutMin, timeout / 4);

  auto answer_error = [&](const zmq::message_t& frontend, const wire::Header& request,
                          wire::Status status, const std::string& detail,
                          PartitionId partition = 0) {
    wire::Header header{wire::kWireVersion, wire::MessageType::kErrorReply, request.request_id,
                        request.trace_id};
    transport::send_multipart(
        frontends, {transport::view(frontend),
                    codec::encode(header, wire::ErrorReply{status, detail, "", partition, 0})});
  };

  // A changed epoch means an election happened; a change within one epoch is
  // this router correcting its own guess (after an unreachable node), which
  // can repeat per request while a node is down, so it stays at debug.
  auto leader_changed = [&](PartitionId partition, std::uint64_t previous_epoch,
                            const char* reason) {
    stats.leader_changes.add();
    const auto& entry = leaders.leader(partition);
    const nlohmann::json fields = {{"partition", partition},
                                   {"leader", entry.node},
                                   {"epoch", entry.epoch},
                                   {"reason", reason}};
    if (entry.epoch != previous_epoch)
      log_.info("leader_changed", fields);
    else
      log_.debug("leader_changed", fields);
  };

  auto give_up = [&](PendingTable::iterator it) {
    Pending& request = it->second;
    stats.unavailable.add();
    answer_error(request.frontend, request.header, wire::Status::kUnavailable,
                 "partition " + std::to_string(request.partition) +
                     " has no reachable leader after " + std::to_string(request.attempts) +
                     " attempts (last: " + request.last_failure + ")",
                 request.partition);
    pending.erase(it);
  };

  // The attempt that just failed is over; the next one goes to `node` after
  // the request's backoff, unless the attempts are used up.
  auto retry_later = [&](PendingTable::iterator it, std::string node, std::string why) {
    Pending& request = it->second;
    request.awaiting.clear();
    request.last_failure = std::move(why);
    if (request.attempts >= kAttemptsMax) return give_up(it);
    request.retry_node = std::move(node);
    // Jitter over the upper half keeps the bound while requests that failed
    // together (a node went away) do not all come back in the same instant.
    const auto half = request.backoff / 2;
    const auto delay = half + std::chrono::milliseconds(static_cast<std::int64_t>(
                                  jitter() % static_cast<std::uint64_t>(half.count() + 1)));
    request.backoff = std::min(request.backoff * 2, kRetryBackoffMax);
    retries.emplace(Clock::now() + delay, it->first);
  };

  // Sends the request to `node` (by value: it may name the cache entry that
  // this call moves).
  auto attempt = [&](PendingTable::iterator it, std::string node) {
    Pending& request = it->second;
    if (request.attempts >= kAttemptsMax) return give_up(it);
    if (request.attempts++ > 0) stats.retries.add();
    auto socket = storage_sockets.find(node);
    if (socket != storage_sockets.end() &&
        transport::send_multipart(socket->second, {token_bytes(it->first), request.frame})) {
      request.awaiting = std::move(node);
      request.attempt_started = Clock::now();
      attempt_deadlines.push(request.attempt_started + attempt_timeout, it->first);
      if (!request.forwarded) stats.forwarded.add();
      request.forwarded = true;
      return;
    }
    // Later requests of the partition should not all try the dead node first.
    const std::uint64_t epoch = leaders.leader(request.partition).epoch;
    if (leaders.avoid(request.partition, node))
      leader_changed(request.partition, epoch, "unreachable");
    retry_later(it, leaders.replica_after(request.partition, node),
                "storage node " + node + " is unreachable");
  };

  // Acts on an ErrorReply from storage node `from` that may mean "ask another
  // node"; false when it is an answer to pass on.
  auto follow_error = [&](PendingTable::iterator it, const std::string& from,
                          const wire::ErrorReply& error) {
    const PartitionId partition = it->second.partition;
    if (error.status == wire::Status::kUnavailable) {
      retry_later(it, leaders.replica_after(partition, from), from + " answered unavailable");
      return true;
    }
    if (error.status != wire::Status::kNotOwner) return false;
    // A hint naming the sender itself or a node outside the topology teaches
    // nothing usable; treat it as no hint.
    const std::string& hint = error.owner_hint;
    if (hint.empty() || hint == from || hint == it->second.silent_node ||
        !storage_sockets.count(hint)) {
      retry_later(it, leaders.replica_after(partition, from),
                  from + " is not the leader and named none");
      return true;
    }
    const std::uint64_t previous_epoch = leaders.leader(partition).epoch;
    switch (leaders.learn(partition, hint, error.epoch)) {
      case LeaderCache::Learned::kChanged:
        leader_changed(partition, previous_epoch, "hint");
        [[fallthrough]];
      case LeaderCache::Learned::kUnchanged:
        it->second.last_failure = from + " named " + hint + " as the leader";
        attempt(it, hint);
        return true;
      case LeaderCache::Learned::kStale:
        break;
    }
    // The sender is behind: what the cache knows is newer than its hint.
    const std::string& cached = leaders.leader(partition).node;
    retry_later(it, cached != from ? cached : leaders.replica_after(partition, from),
                from + " named " + hint + " for the older epoch " + std::to_string(error.epoch));
    return true;
  };

  auto wait_time = [&](Clock::time_point now) {
    auto wait = std::min(deadlines.wait_time(now, std::chrono::milliseconds(100)),
                         attempt_deadlines.wait_time(now, std::chrono::milliseconds(100)));
    if (!retries.empty())
      wait = std::min(wait, std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           retries.top().first - now) +
                                           std::chrono::milliseconds(1),
                                       std::chrono::milliseconds(0), wait));
    return wait;
  };

  while (!stop.load(std::memory_order_relaxed)) {
    transport::poll(items.data(), items.size(), wait_time(Clock::now()));

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
        Pending request;
        request.frontend = std::move(frames[0]);
        request.frame = std::string(transport::view(frames[1]));
        request.header = header;
        request.partition = ring_.partition_of(conversation_id);
        const PartitionId partition = request.partition;
        auto it = pending.emplace(token, std::move(request)).first;
        deadlines.push(Clock::now() + timeout, token);
        attempt(it, leaders.leader(partition).node);
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
        auto it = pending.find(token);
        // Only the node holding the current attempt may end it: anything else
        // answers an attempt already given up, and forwarding it could answer
        // the frontend twice.
        if (it == pending.end() || it->second.awaiting != from) {
          stats.late_replies.add();
          continue;
        }
        const std::string_view reply = transport::view(frames[1]);
        if (may_be_error_reply(reply)) {
          auto error = codec::decode_as<wire::ErrorReply>(reply, wire::MessageType::kErrorReply);
          if (error && follow_error(it, from, *error)) continue;
        }
        transport::send_multipart(frontends, {transport::view(it->second.frontend), reply});
        pending.erase(it);
      }
    }

    // Deadlines before retries: a request whose deadline and retry fall due
    // together has run out of time, and is answered kTimeout as before.
    deadlines.expire(Clock::now(), [&](std::uint64_t token) {
      auto it = pending.find(token);
      if (it == pending.end()) return;  // answered already
      stats.timeouts.add();
      answer_error(it->second.frontend, it->second.header, wire::Status::kTimeout,
                   "storage did not answer within " +
                       std::to_string(topology_.limits.router_timeout_ms) + " ms");
      pending.erase(it);
    });
    attempt_deadlines.expire(Clock::now(), [&](std::uint64_t token) {
      auto it = pending.find(token);
      // Skip entries of requests answered meanwhile, of attempts already over
      // and of later attempts (they have their own entry).
      if (it == pending.end() || it->second.awaiting.empty() ||
          Clock::now() - it->second.attempt_started < attempt_timeout)
        return;
      Pending& request = it->second;
      const std::string silent = request.awaiting;
      request.silent_node = silent;
      const std::uint64_t epoch = leaders.leader(request.partition).epoch;
      if (leaders.avoid(request.partition, silent))
        leader_changed(request.partition, epoch, "silent");
      retry_later(it, leaders.replica_after(request.partition, silent),
                  "storage node " + silent + " did not answer within " +
                      std::to_string(attempt_timeout.count()) + " ms");
    });
    const auto now = Clock::now();
    while (!retries.empty() && retries.top().first <= now) {
      const std::uint64_t token = retries.top().second;
      retries.pop();
      auto it = pending.find(token);
      if (it == pending.end() || !it->second.awaiting.empty()) continue;
      attempt(it, it->second.retry_node);
    }
    deadlines.compact(pending.size(),
                      [&](std::uint64_t token) { return pending.count(token) > 0; });
    attempt_deadlines.compact(pending.size(),
                              [&](std::uint64_t token) { return pending.count(token) > 0; });
    stats.pending.set(static_cast<std::int64_t>(pending.size()));
  }
  log_.info("stopped");
}

}  // namespace chat4all::router
