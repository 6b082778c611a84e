#include "nodes/storage/storage_node.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <stdexcept>

#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/transport.h"
#include "nodes/storage/domain.h"
#include "nodes/storage/files.h"
#include "nodes/storage/store_metrics.h"
#include "nodes/storage/write_ahead_log.h"
#include "schema/retention.h"

namespace {
// Routing keys are ids or keys built from ids (schema/wire.h); anything longer is malformed.
constexpr std::size_t kRoutingKeyBytesMax = 512;
// Reads that wait for the apply thread to make answered entries durable in the tables; more are
// refused as unavailable (the router retries).
constexpr std::size_t kDeferredReadsMax = 10000;
// How often a leader looks for expired presence leases: an expired lease's
// users are announced offline within this of the lease's end.
constexpr std::chrono::milliseconds kPresenceSweep{1000};
// How often the store's disk use is read for the metrics (a scan of the free list).
constexpr std::chrono::milliseconds kStoreUsageInterval{5000};
constexpr std::uint32_t kPresenceExpiriesPerSweepMax = 64;  // per partition; the rest next time
// How often a leader looks for expired messages, and how much one look does per partition:
// expired messages go within about one sweep of their retention, a conversation with more
// than kExpiryMessagesPerCommandMax due goes on at the next sweep.
constexpr std::chrono::milliseconds kRetentionSweep{1000};
constexpr std::uint32_t kRetentionConversationsPerSweepMax = 256;
constexpr std::size_t kExpiriesPerSweepMax = 64;

// Commands that let an operator or the rules give space back: they go on in the
// headroom kept above the nearly-full threshold, which refuses everything else.
bool frees_space(const chat4all::wire::ReplicatedCommand& command) {
  using chat4all::wire::CommandKind;
  switch (command.command.kind) {
    case CommandKind::kExpireMessages:
    case CommandKind::kSetRetention:
    case CommandKind::kEraseUser:
    case CommandKind::kEraseMessages:
    case CommandKind::kEraseProgress:
    case CommandKind::kDeleteFile:
    case CommandKind::kExpireUploads:
      return true;
    default:
      return false;
  }
}
}  // namespace

namespace chat4all::storage {

using Clock = std::chrono::steady_clock;

// A client append proposed at `index` in `term`, answered once that entry is
// applied (or once it can no longer be: leadership lost, entry replaced).
struct StorageNode::Waiting {
  zmq::message_t peer;
  zmq::message_t token;
  wire::Header header;
  std::uint64_t term = 0;
  std::string conversation_id;  // appends
  std::string message_id;
  bool command = false;  // a CommandRequest: answered with a CommandReply
  Clock::time_point proposed_at;
};

struct StorageNode::Partition {
  PartitionId id = 0;
  std::unique_ptr<consensus::Replica> replica;
  std::map<std::uint64_t, Waiting> waiting;  // by log index
  bool was_leader = false;
  std::uint64_t term_seen = 0;
  std::string retention_after;  // where the retention sweep goes on (a record key)
};

struct StorageNode::Sockets {
  zmq::socket_t clients{transport::context(), zmq::socket_type::router};
  std::map<std::string, zmq::socket_t> peers;
  std::optional<zmq::socket_t> events;  // PUB of wire::Event hints, when "events" is declared
};

struct StorageNode::Stats {
  Counter& appends = metrics().counter("chat4all_storage_appends_total", "Messages appended (new)");
  Counter& outbox_dropped = metrics().counter(
      "chat4all_storage_outbox_events_dropped_total",
      "Outbox events dropped unsent: the partition held kOutboxEventsMax unacknowledged");
  Counter& duplicates = metrics().counter("chat4all_storage_duplicates_total",
                                          "Appends answered from the dedup index");
  Counter& failed_appends =
      metrics().counter("chat4all_storage_append_failures_total", "Appends refused or failed");
  Counter& reads = metrics().counter("chat4all_storage_reads_total", "History reads served");
  Counter& queries = metrics().counter("chat4all_storage_queries_total", "Record queries served");
  Counter& commands =
      metrics().counter("chat4all_storage_commands_total", "Record commands applied as leader");
  Counter& events_published = metrics().counter("chat4all_storage_events_published_total",
                                                "Change hints published on the events socket");
  Counter& redirects = metrics().counter("chat4all_storage_not_leader_total",
                                         "Requests for partitions this node does not lead");
  Counter& rejected_frames = transport::rejected_frames_counter();
  Counter& turns = metrics().counter("chat4all_storage_turns_total",
                                     "Group commits (one transaction and fsync each)");
  Counter& entries_written =
      metrics().counter("chat4all_storage_log_entries_written_total", "Log entries made durable");
  Counter& replication_sent = metrics().counter("chat4all_storage_replication_messages_sent_total",
                                                "Consensus messages sent to peers");
  Counter& replication_dropped =
      metrics().counter("chat4all_storage_replication_messages_dropped_total",
                        "Consensus messages dropped: peer not connected or its queue full");
  Counter& elections_won = metrics().counter("chat4all_storage_leadership_gained_total",
                                             "Partitions this node came to lead");
  Counter& snapshots_sent =
      metrics().counter("chat4all_storage_snapshots_sent_total", "Snapshots offered to replicas");
  Counter& snapshots_installed = metrics().counter("chat4all_storage_snapshots_installed_total",
                                                   "Snapshots installed from a leader");
  Gauge& partitions_led = metrics().gauge("chat4all_storage_partitions_led", "Partitions led now");
  Gauge& waiting =
      metrics().gauge("chat4all_storage_waiting_appends", "Appends proposed and not yet applied");
  Histogram& write_seconds = metrics().latency_histogram(
      "chat4all_storage_commit_seconds",
      "Time of one group commit: a write-ahead log append and its fsync");
  Histogram& proposal_seconds = metrics().latency_histogram(
      "chat4all_storage_proposal_seconds",
      "From a client's proposal to its answer on the leader: replication to a majority, the "
      "write-ahead log and the apply");
  Counter& reads_deferred =
      metrics().counter("chat4all_storage_reads_deferred_total",
                        "Reads held until the tables hold every entry already answered");
  Gauge& wal_bytes =
      metrics().gauge("chat4all_storage_wal_bytes", "Bytes the write-ahead log's file uses");
  Counter& presence_expiries = metrics().counter(
      "chat4all_storage_presence_expiries_proposed_total",
      "Expired presence leases (a frontend instance that stopped renewing) proposed for removal");
  Counter& expiries_proposed = metrics().counter(
      "chat4all_storage_expiries_proposed_total",
      "Retention expiries (a conversation's messages past their retention) proposed");
  Counter& typing_published =
      metrics().counter("chat4all_storage_typing_published_total", "Typing events published");
  Counter& typing_dropped = metrics().counter(
      "chat4all_storage_typing_dropped_total",
      "Typing notices dropped: within kTypingIntervalMs of the last one of that user and "
      "conversation");
};

StorageNode::StorageNode(const Topology& topology, const NodeSpec& self)
    : topology_(topology),
      self_(self),
      ring_(topology.storage_node_names(), topology.partition_count, topology.replication_factor,
            topology.virtual_nodes),
      store_(MessageStore::Options{
          topology.node_data_dir(self.name) / "store", topology.storage.map_size_initial_mb << 20,
          topology.storage.map_size_max_mb << 20, !topology.channels.empty()}),
      wal_(WriteAheadLog::Options{topology.node_data_dir(self.name) / "wal"},
           store_.wal_checkpoint() + 1) {
  const std::uint64_t checkpoint = store_.wal_checkpoint();
  if (const std::size_t replayed = replay_write_ahead_log(wal_, store_))
    log_.info("write_ahead_log_replayed",
              {{"records", replayed}, {"checkpoint", checkpoint}, {"last", wal_.last_position()}});
  const auto& settings = topology.storage;
  const std::uint64_t process_seed =
      static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  for (PartitionId p = 0; p < ring_.partition_count(); ++p) {
    const auto& replicas = ring_.replicas(p);
    if (std::find(replicas.begin(), replicas.end(), self.name) == replicas.end()) continue;
    consensus::Config config;
    config.self = self.name;
    config.replicas = replicas;
    config.partition = p;
    config.heartbeat_ticks = static_cast<int>(settings.heartbeat_ticks);
    config.election_ticks = static_cast<int>(settings.election_ticks);
    config.uncommitted_entries_max = topology.limits.pending_requests_max;
    config.log_retained_max = settings.log_retained_max;
    config.trim_step = std::min<std::uint64_t>(config.trim_step, settings.log_retained_max);
    config.clock_skew_max_ms = settings.clock_skew_max_ms;
    config.seed = process_seed ^ placement_hash(self.name + "#" + std::to_string(p));
    auto partition = std::make_unique<Partition>();
    partition->id = p;
    partition->replica =
        std::make_unique<consensus::Replica>(std::move(config), store_.load_partition(p));
    partition->term_seen = partition->replica->term();
    partitions_.emplace(p, std::move(partition));
  }
}

StorageNode::~StorageNode() = default;

void StorageNode::run(const std::atomic<bool>& stop) {
  stats_ = std::make_unique<Stats>();
  std::optional<MetricsServer> metrics_server;
  if (auto port = self_.port("metrics")) metrics_server.emplace(metrics(), self_.host, *port);

  sockets_ = std::make_unique<Sockets>();
  transport::configure(sockets_->clients, 100000);
  curve::serve(sockets_->clients, "storage.rpc", {NodeRole::kRouter, NodeRole::kStorage});
  sockets_->clients.bind(transport::bind_address(self_, "rpc"));
  if (self_.port("events")) {
    sockets_->events.emplace(transport::context(), zmq::socket_type::pub);
    // PUB drops at its high-water mark: hints are not the only copy
    // (subscribers re-read from their cursors).
    transport::configure(*sockets_->events, 100000);
    curve::serve(*sockets_->events, "storage.events", {NodeRole::kFrontend});
    sockets_->events->bind(transport::bind_address(self_, "events"));
  }
  for (const NodeSpec* node : topology_.with_role(NodeRole::kStorage)) {
    if (node->name == self_.name) continue;
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    transport::configure(socket, 100000);
    // A peer that is down misses messages rather than receiving stale ones
    // later; consensus retransmits what matters.
    socket.set(zmq::sockopt::immediate, 1);
    curve::connect(socket, node->zmq_address("rpc"));
    sockets_->peers.emplace(node->name, std::move(socket));
  }
  log_.info("listening", {{"rpc", transport::bind_address(self_, "rpc")},
                          {"data_dir", topology_.node_data_dir(self_.name).string()},
                          {"partitions", partitions_.size()}});

  if (self_.port("chunks"))
    chunk_server_ =
        std::make_unique<ChunkServer>(self_, topology_.node_data_dir(self_.name) / "chunks");
  applier_ = std::make_unique<ApplyWorker>(store_, ApplyWorker::Limits{});
  const auto tick = std::chrono::milliseconds(topology_.storage.tick_ms);
  auto next_tick = Clock::now() + tick;
  auto next_presence_sweep = Clock::now() + kPresenceSweep;
  auto next_retention_sweep = Clock::now() + kRetentionSweep;
  auto next_store_usage = Clock::now();
  const std::uint32_t drain_max = topology_.storage.batch_messages_max;
  zmq::pollitem_t items[] = {{sockets_->clients.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, applier_->wake_fd(), ZMQ_POLLIN, 0}};
  bool more_work = false;
  while (!stop.load(std::memory_order_relaxed)) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now());
    wait = std::clamp(wait, std::chrono::milliseconds(0), std::chrono::milliseconds(100));
    transport::poll(items, 2, more_work ? std::chrono::milliseconds(0) : wait);

    if (items[1].revents & ZMQ_POLLIN) {
      applier_->clear_wake();
      answer_applied();
    }
    // Whatever arrived while the last turn was writing forms the next one,
    // so turns grow with load by themselves.
    if (items[0].revents & ZMQ_POLLIN) {
      for (std::uint32_t drained = 0; drained < drain_max; ++drained) {
        auto frames = transport::receive_multipart(sockets_->clients);
        if (frames.empty()) break;
        handle_frames(frames);
      }
    }
    const auto now = Clock::now();
    if (now >= next_tick) {
      // The cores compare this node's wall clock (never read inside them) with
      // their peers'; a partition whose verdict changed says so once.
      const std::int64_t wall_ms = ids::now_ms();
      for (auto& [id, partition] : partitions_) {
        partition->replica->tick(wall_ms);
        if (auto skew = partition->replica->take_clock_skew_change()) {
          metrics()
              .counter("chat4all_storage_clock_skew_changes_total",
                       "Partitions whose verdict on this node's wall clock changed (off: a "
                       "majority of the replica set disagrees by more than clock_skew_max_ms)",
                       skew->off ? "state=\"off\"" : "state=\"ok\"")
              .add();
          log_.info("clock_skew", {{"partition", id},
                                   {"off", skew->off},
                                   {"offset_ms", skew->offset_ms},
                                   {"bound_ms", skew->bound_ms}});
        }
      }
      stats_->wal_bytes.set(static_cast<std::int64_t>(wal_.bytes_used()));
      if (now >= next_store_usage) {
        publish_store_usage(store_, wal_);
        next_store_usage = now + kStoreUsageInterval;
      }
      if (now >= next_presence_sweep) {
        sweep_presence(wall_ms);
        sweep_uploads(wall_ms);
        next_presence_sweep = now + kPresenceSweep;
      }
      if (now >= next_retention_sweep) {
        sweep_retention(wall_ms);
        next_retention_sweep = now + kRetentionSweep;
      }
      // After a stall, resume the clock rather than firing the missed ticks.
      next_tick = std::max(next_tick + tick, now);
    }
    more_work = run_turn();
  }
  applier_.reset();  // applies what is queued
  chunk_server_.reset();
  log_.info("stopped");
}

void StorageNode::reply(zmq::message_t& peer, zmq::message_t& token, const std::string& frame) {
  // A full queue towards one router drops that reply; the router's deadline
  // answers its client with a timeout and a retry is deduplicated.
  transport::send_multipart(sockets_->clients,
                            {transport::view(peer), transport::view(token), frame});
}

void StorageNode::error_reply(zmq::message_t& peer, zmq::message_t& token,
                              const wire::Header& request, wire::ErrorReply error) {
  wire::Header header{wire::kWireVersion, wire::MessageType::kErrorReply, request.request_id,
                      request.trace_id};
  reply(peer, token, codec::encode(header, error));
}

void StorageNode::redirect(zmq::message_t& peer, zmq::message_t& token, const wire::Header& header,
                           PartitionId partition_id) {
  stats_->redirects.add();
  auto it = partitions_.find(partition_id);
  if (it == partitions_.end()) {
    // Not a replica at all: the router's placement differs from ours.
    error_reply(peer, token, header,
                {wire::Status::kNotOwner, "this node holds no replica of the partition",
                 ring_.replicas(partition_id).front(), partition_id, 0});
    return;
  }
  const consensus::Replica& replica = *it->second->replica;
  if (!replica.leader().empty() && replica.leader() != self_.name) {
    error_reply(peer, token, header,
                {wire::Status::kNotOwner, "partition is led by another node", replica.leader(),
                 partition_id, replica.term()});
    return;
  }
  error_reply(peer, token, header,
              {wire::Status::kUnavailable,
               replica.is_leader() ? "leader is handing over or catching up"
                                   : "partition has no leader (election under way or no majority)",
               "", partition_id, replica.term()});
}

void StorageNode::handle_frames(std::vector<zmq::message_t>& frames) {
  std::string why;
  if (frames.size() != 3) {
    stats_->rejected_frames.add();
    log_.debug("frame_rejected", {{"reason", "expected 3 frames"}, {"frames", frames.size()}});
    return;
  }
  auto frame = codec::decode(transport::view(frames[2]), &why);
  if (!frame) {
    stats_->rejected_frames.add();
    log_.debug("frame_rejected", {{"reason", why}});
    return;
  }
  const wire::Header& header = frame->header();
  switch (header.type) {
    case wire::MessageType::kAppendRequest: {
      auto request = frame->body<wire::AppendRequest>();
      if (request && ids::is_valid_id(request->conversation_id) &&
          ids::is_valid_id(request->message_id)) {
        handle_append(frames, header, std::move(*request));
        return;
      }
      break;
    }
    case wire::MessageType::kReadRequest: {
      if (defer_read(frames, header)) return;
      auto request = frame->body<wire::ReadRequest>();
      if (request && ids::is_valid_id(request->conversation_id)) {
        handle_read(frames, header, *request);
        return;
      }
      break;
    }
    case wire::MessageType::kCommandRequest: {
      auto request = frame->body<wire::CommandRequest>();
      if (request && !request->key.empty() && request->key.size() <= kRoutingKeyBytesMax) {
        handle_command(frames, header, std::move(*request));
        return;
      }
      break;
    }
    case wire::MessageType::kQueryRequest: {
      if (defer_read(frames, header)) return;
      auto request = frame->body<wire::QueryRequest>();
      if (request && !request->key.empty() && request->key.size() <= kRoutingKeyBytesMax) {
        handle_query(frames, header, *request);
        return;
      }
      break;
    }
    case wire::MessageType::kReplicationBatch: {
      auto batch = frame->body<wire::ReplicationBatch>();
      if (batch && batch->from != self_.name && sockets_->peers.count(batch->from)) {
        handle_replication(*batch);
        return;
      }
      stats_->rejected_frames.add();
      log_.debug("frame_rejected", {{"reason", "replication batch from an unknown node"}});
      return;
    }
    default:
      stats_->rejected_frames.add();
      log_.debug("frame_rejected",
                 {{"reason", "unexpected message type"}, {"type", int(header.type)}});
      return;
  }
  stats_->rejected_frames.add();
  error_reply(frames[0], frames[1], header,
              {wire::Status::kInvalid, "malformed request", "", 0, 0});
}

void StorageNode::handle_append(std::vector<zmq::message_t>& frames, const wire::Header& header,
                                wire::AppendRequest request) {
  const PartitionId partition_id = ring_.partition_of(request.conversation_id);
  Waiting waiting;
  waiting.conversation_id = request.conversation_id;
  waiting.message_id = request.message_id;
  propose(frames, header, partition_id, wire::ReplicatedCommand{std::move(request), ids::now_ms()},
          std::move(waiting));
}

void StorageNode::handle_command(std::vector<zmq::message_t>& frames, const wire::Header& header,
                                 wire::CommandRequest request) {
  const PartitionId partition_id = ring_.partition_of(request.key);
  Waiting waiting;
  waiting.command = true;
  propose(frames, header, partition_id,
          wire::ReplicatedCommand{{}, ids::now_ms(), std::move(request)}, std::move(waiting));
}

void StorageNode::propose(std::vector<zmq::message_t>& frames, const wire::Header& header,
                          PartitionId partition_id, const wire::ReplicatedCommand& command,
                          Waiting waiting) {
  auto it = partitions_.find(partition_id);
  if (it == partitions_.end() || !it->second->replica->is_leader()) {
    redirect(frames[0], frames[1], header, partition_id);
    return;
  }
  Partition& partition = *it->second;
  if (store_.nearly_full() && !frees_space(command)) {
    // A retry of a message stored before is answered as stored: it needs no
    // write. The tables must hold everything answered to find it: until then
    // it waits like a read.
    if (!waiting.command && partition.replica->can_serve_reads() && defer_read(frames, header))
      return;
    if (!waiting.command && partition.replica->can_serve_reads()) {
      if (auto seq = store_.stored_seq(partition_id, command.append)) {
        stats_->duplicates.add();
        wire::Header reply_header{wire::kWireVersion, wire::MessageType::kAppendReply,
                                  header.request_id, header.trace_id};
        reply(frames[0], frames[1],
              codec::encode(reply_header,
                            wire::AppendReply{wire::Status::kOk, command.append.conversation_id,
                                              command.append.message_id, *seq, true, "", ""}));
        return;
      }
    }
    if (!waiting.command) stats_->failed_appends.add();
    error_reply(
        frames[0], frames[1], header,
        {wire::Status::kStorageFull,
         "the LMDB map is near its configured maximum; nothing was written", "", partition_id, 0});
    return;
  }
  if (applier_->over_soft_limit()) {
    error_reply(frames[0], frames[1], header,
                {wire::Status::kUnavailable, "the apply backlog is at its bound; retry", "",
                 partition_id, partition.replica->term()});
    return;
  }
  msgpack::sbuffer encoded(512);
  msgpack::pack(encoded, command);
  auto proposal = partition.replica->propose(std::string(encoded.data(), encoded.size()));
  if (!proposal.accepted) {
    redirect(frames[0], frames[1], header, partition_id);
    return;
  }
  waiting.peer = std::move(frames[0]);
  waiting.token = std::move(frames[1]);
  waiting.header = header;
  waiting.term = proposal.term;
  waiting.proposed_at = Clock::now();
  partition.waiting.emplace(proposal.index, std::move(waiting));
}

bool StorageNode::serves_reads(PartitionId partition_id) const {
  auto it = partitions_.find(partition_id);
  // Only a leader under its read lease: its applied state holds every
  // acknowledged write, and no newer leader can have acknowledged anything it
  // lacks. A replica without a leader cannot tell a lost majority from one
  // that elected someone else beyond a partition, so it answers
  // "unavailable" rather than something possibly stale.
  return it != partitions_.end() && it->second->replica->can_serve_reads();
}

void StorageNode::handle_query(std::vector<zmq::message_t>& frames, const wire::Header& header,
                               const wire::QueryRequest& request) {
  const PartitionId partition_id = ring_.partition_of(request.key);
  if (!serves_reads(partition_id)) {
    redirect(frames[0], frames[1], header, partition_id);
    return;
  }
  if (request.kind == wire::QueryKind::kTyping) return handle_typing(frames, header, request);
  stats_->queries.add();
  wire::Header reply_header{wire::kWireVersion, wire::MessageType::kQueryReply, header.request_id,
                            header.trace_id};
  reply(frames[0], frames[1], codec::encode(reply_header, store_.query(partition_id, request)));
}

void StorageNode::handle_typing(std::vector<zmq::message_t>& frames, const wire::Header& header,
                                const wire::QueryRequest& request) {
  const PartitionId partition_id = ring_.partition_of(request.key);
  wire::QueryReply answer = store_.query(partition_id, request);
  auto notice = codec::unpack_body<wire::TypingNotice>(request.body);
  if (answer.status == wire::Status::kOk && notice) {
    const std::int64_t steady_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count();
    const bool allowed = typing_limiter_.allow(
        notice->tenant_id + '/' + notice->conversation_id + '/' + notice->user_id, steady_ms);
    if (allowed) {
      wire::Event event;
      event.kind = "typing";
      event.tenant_id = notice->tenant_id;
      event.conversation_id = notice->conversation_id;
      event.user_id = notice->user_id;
      event.at_ms = ids::now_ms();
      std::vector<wire::Event> events{std::move(event)};
      publish(events);
      stats_->typing_published.add();
    } else {
      stats_->typing_dropped.add();
    }
    answer.body = codec::pack_body(wire::TypingResult{allowed});
  }
  stats_->queries.add();
  wire::Header reply_header{wire::kWireVersion, wire::MessageType::kQueryReply, header.request_id,
                            header.trace_id};
  reply(frames[0], frames[1], codec::encode(reply_header, answer));
}

void StorageNode::sweep_presence(std::int64_t now_ms) {
  const std::string sweep =
      codec::pack_body(wire::PresenceSweep{now_ms, kPresenceExpiriesPerSweepMax});
  for (auto& [id, partition] : partitions_) {
    if (!partition->replica->can_serve_reads()) continue;
    const wire::QueryReply reply =
        store_.query(id, wire::QueryRequest{wire::partition_key(id),
                                            wire::QueryKind::kExpiredPresenceLeases, sweep});
    auto leases = reply.status == wire::Status::kOk
                      ? codec::unpack_body<std::vector<wire::PresenceLease>>(reply.body)
                      : std::nullopt;
    if (!leases) continue;
    for (const auto& lease : *leases) {
      const wire::ReplicatedCommand command{
          {},
          now_ms,
          wire::CommandRequest{
              wire::tenant_key(lease.tenant_id), wire::CommandKind::kExpirePresence,
              codec::pack_body(wire::PresenceExpiry{lease.tenant_id, lease.frontend})}};
      if (!propose_own(id, command)) break;
      stats_->presence_expiries.add();
      log_.info("presence_lease_expired", {{"partition", id},
                                           {"tenant_id", lease.tenant_id},
                                           {"frontend", lease.frontend},
                                           {"renewed_at_ms", lease.renewed_at_ms}});
    }
  }
}

void StorageNode::sweep_retention(std::int64_t now_ms) {
  wire::RetentionSweep sweep{now_ms, {}, {}, kRetentionConversationsPerSweepMax};
  for (const auto& tenant : topology_.tenants)
    if (tenant.retention_s > 0)
      sweep.tenant_retention_ms.emplace_back(tenant.id, tenant.retention_s * 1000);
  for (auto& [id, partition] : partitions_) {
    if (!partition->replica->can_serve_reads()) continue;
    sweep.after = partition->retention_after;
    const wire::QueryReply reply = store_.query(
        id, wire::QueryRequest{wire::partition_key(id), wire::QueryKind::kRetentionSweep,
                               codec::pack_body(sweep)});
    auto found = reply.status == wire::Status::kOk
                     ? codec::unpack_body<wire::RetentionSweepResult>(reply.body)
                     : std::nullopt;
    if (!found) continue;
    partition->retention_after = found->next_after;
    std::size_t proposed = 0;
    for (const auto& expiry : found->expiries) {
      // Proposed again by the next sweep of this conversation if this one is lost.
      if (proposed++ == kExpiriesPerSweepMax) break;
      const wire::ReplicatedCommand command{
          {},
          now_ms,
          wire::CommandRequest{expiry.conversation_id, wire::CommandKind::kExpireMessages,
                               codec::pack_body(expiry)}};
      if (!propose_own(id, command)) break;
      stats_->expiries_proposed.add();
    }
  }
}

void StorageNode::sweep_uploads(std::int64_t now_ms) {
  const std::string sweep = codec::pack_body(wire::UploadSweep{now_ms, kUploadSweepMax});
  for (auto& [id, partition] : partitions_) {
    if (!partition->replica->can_serve_reads()) continue;
    const wire::QueryReply reply = store_.query(
        id, wire::QueryRequest{wire::partition_key(id), wire::QueryKind::kExpiredUploads, sweep});
    auto expired = reply.status == wire::Status::kOk
                       ? codec::unpack_body<std::vector<wire::FileRecord>>(reply.body)
                       : std::nullopt;
    if (!expired || expired->empty()) continue;
    std::map<std::string, wire::UploadExpiry> by_tenant;
    for (const auto& record : *expired) {
      auto& expiry = by_tenant[record.tenant_id];
      expiry.tenant_id = record.tenant_id;
      expiry.file_ids.push_back(record.file_id);
    }
    for (const auto& [tenant, expiry] : by_tenant) {
      const wire::ReplicatedCommand command{
          {},
          now_ms,
          wire::CommandRequest{wire::tenant_key(tenant), wire::CommandKind::kExpireUploads,
                               codec::pack_body(expiry)}};
      if (!propose_own(id, command)) break;
      log_.info("uploads_expired",
                {{"partition", id}, {"tenant_id", tenant}, {"files", expiry.file_ids.size()}});
    }
  }
}

bool StorageNode::propose_own(PartitionId partition_id, const wire::ReplicatedCommand& command) {
  auto it = partitions_.find(partition_id);
  if (it == partitions_.end() || !it->second->replica->is_leader()) return false;
  if ((store_.nearly_full() && !frees_space(command)) || applier_->over_soft_limit()) return false;
  msgpack::sbuffer encoded(256);
  msgpack::pack(encoded, command);
  return it->second->replica->propose(std::string(encoded.data(), encoded.size())).accepted;
}

void StorageNode::handle_read(std::vector<zmq::message_t>& frames, const wire::Header& header,
                              const wire::ReadRequest& request) {
  const PartitionId partition_id = ring_.partition_of(request.conversation_id);
  if (!serves_reads(partition_id)) {
    redirect(frames[0], frames[1], header, partition_id);
    return;
  }
  stats_->reads.add();
  wire::Header reply_header{wire::kWireVersion, wire::MessageType::kReadReply, header.request_id,
                            header.trace_id};
  reply(frames[0], frames[1],
        codec::encode(reply_header, store_.read_history(partition_id, request,
                                                        topology_.limits.history_page_max)));
}

void StorageNode::publish(std::vector<wire::Event>& events) {
  if (!sockets_->events) return;
  const wire::Header header{wire::kWireVersion, wire::MessageType::kEvent, 0, ""};
  for (const auto& event : events) {
    const std::string topic = event.kind == "membership"
                                  ? "user:" + event.tenant_id + ":" + event.user_id
                                  : event.conversation_id;
    if (transport::send_multipart(*sockets_->events, {topic, codec::encode(header, event)}))
      stats_->events_published.add();
  }
  events.clear();
}

void StorageNode::handle_replication(const wire::ReplicationBatch& batch) {
  for (const auto& message : batch.messages) {
    auto it = partitions_.find(message.partition);
    if (it == partitions_.end()) {
      stats_->rejected_frames.add();
      continue;
    }
    it->second->replica->step(batch.from, message);
  }
}

void StorageNode::send_batches(
    std::map<std::string, std::vector<wire::ReplicationMessage>>& outbox) {
  for (auto& [peer, messages] : outbox) {
    if (messages.empty()) continue;
    auto socket = sockets_->peers.find(peer);
    const std::size_t count = messages.size();
    wire::ReplicationBatch batch{self_.name, std::move(messages)};
    const wire::Header header{wire::kWireVersion, wire::MessageType::kReplicationBatch, 0, ""};
    if (socket != sockets_->peers.end() &&
        transport::send_multipart(socket->second,
                                  {std::string_view(), codec::encode(header, batch)}))
      stats_->replication_sent.add(count);
    else
      stats_->replication_dropped.add(count);
  }
  outbox.clear();
}

bool StorageNode::run_turn() {
  std::vector<Partition*> touched;
  std::vector<consensus::Ready> readies;
  for (auto& [id, partition] : partitions_) {
    if (partition->replica->has_ready()) {
      touched.push_back(partition.get());
      readies.push_back(partition->replica->take_ready());
    }
  }
  if (readies.empty()) {
    for (auto& [id, partition] : partitions_) note_leadership(*partition);
    return false;
  }

  std::map<std::string, std::vector<wire::ReplicationMessage>> outbox;
  for (auto& ready : readies)
    for (auto& out : ready.send_now) outbox[out.to].push_back(std::move(out.message));
  send_batches(outbox);

  // What votes and acknowledgements promise goes into one write-ahead log
  // record; the tables follow on the apply thread.
  std::vector<std::pair<std::uint32_t, const consensus::Ready*>> durable;
  for (std::size_t i = 0; i < readies.size(); ++i)
    if (must_be_durable(readies[i])) durable.emplace_back(touched[i]->id, &readies[i]);
  if (!durable.empty()) {
    const auto started = Clock::now();
    std::string error;
    const auto position =
        wal_.append(encode_wal_record(durable), applier_->durable_wal_position(), error);
    if (!position) {
      // The cores believe this turn is durable; carrying on would let them
      // acknowledge what is not on disk. Restarting from disk is the honest
      // recovery: no vote or acknowledgement of this turn left the node.
      log_.error("write_failed", {{"error", error}});
      throw std::runtime_error("write-ahead log append failed, restarting from disk: " + error);
    }
    wal_position_ = *position;
    stats_->write_seconds.observe(std::chrono::duration<double>(Clock::now() - started).count());
    stats_->turns.add();
  }

  for (auto& ready : readies)
    for (auto& out : ready.send_after_persist) outbox[out.to].push_back(std::move(out.message));
  send_batches(outbox);

  ApplyWorker::Job job;
  job.wal_position = wal_position_;
  for (std::size_t i = 0; i < readies.size(); ++i) {
    Partition& partition = *touched[i];
    consensus::Ready& ready = readies[i];
    partition.replica->advance();
    stats_->entries_written.add(ready.new_entries.size());
    if (ready.install) {
      stats_->snapshots_installed.add();
      log_.info("snapshot_installed",
                {{"partition", partition.id}, {"index", ready.install->index}});
    }
    for (const auto& peer : ready.snapshot_wanted) {
      std::uint64_t applied = 0;
      std::string data = store_.snapshot(partition.id, applied);
      if (auto term = partition.replica->term_at(applied)) {
        partition.replica->offer_snapshot(peer, applied, *term, std::move(data));
        stats_->snapshots_sent.add();
        log_.info("snapshot_offered",
                  {{"partition", partition.id}, {"peer", peer}, {"index", applied}});
      }
    }
    if (!ready.needs_write()) continue;
    ready.send_now.clear();
    ready.send_after_persist.clear();
    job.partitions.push_back(partition.id);
    job.readies.push_back(std::move(ready));
  }
  if (!job.readies.empty()) applier_->push(std::move(job));

  bool more = false;
  std::size_t waiting = 0;
  for (auto& [id, partition] : partitions_) {
    note_leadership(*partition);
    more = more || partition->replica->has_ready();
    waiting += partition->waiting.size();
  }
  stats_->waiting.set(static_cast<std::int64_t>(waiting));
  return more;
}

// Answers the clients whose entries the apply thread has applied, publishes
// their hints, and lets the reads that waited for the tables go.
void StorageNode::answer_applied() {
  if (auto failure = applier_->failure()) {
    // The tables could not take what the log holds; a restart replays it.
    log_.error("apply_failed", {{"error", *failure}});
    throw std::runtime_error("applying to the tables failed, restarting from disk: " + *failure);
  }
  std::vector<wire::Event> hints;
  for (ApplyWorker::Done& done : applier_->take_done()) {
    answered_batch_ = std::max(answered_batch_, done.batch);
    for (ApplyWorker::Applied& applied : done.applied) {
      auto it = partitions_.find(applied.partition);
      if (it == partitions_.end()) continue;
      Partition& partition = *it->second;
      // Only the leader publishes, so that a change is hinted once; and only it counts and
      // logs outbox drops, so that each is told once.
      if (partition.replica->is_leader())
        for (const auto& outcome : applied.outcomes) {
          hints.insert(hints.end(), outcome.events.begin(), outcome.events.end());
          if (outcome.outbox_dropped.empty()) continue;
          stats_->outbox_dropped.add(outcome.outbox_dropped.size());
          log_.warn("outbox_events_dropped", {{"partition", partition.id},
                                              {"count", outcome.outbox_dropped.size()},
                                              {"first_event_id", outcome.outbox_dropped.front()},
                                              {"last_event_id", outcome.outbox_dropped.back()},
                                              {"events_max", kOutboxEventsMax}});
        }
      // Every replica deletes its own copy of chunks no file refers to any more.
      if (chunk_server_)
        for (const auto& outcome : applied.outcomes)
          if (!outcome.freed_blobs.empty()) chunk_server_->free_blobs(outcome.freed_blobs);
      for (std::size_t k = 0; k < applied.outcomes.size(); ++k) {
        auto waiting = partition.waiting.find(applied.first_index + k);
        if (waiting == partition.waiting.end()) continue;
        answer(partition, waiting->second, applied.terms[k], applied.outcomes[k]);
        partition.waiting.erase(waiting);
      }
    }
  }
  publish(hints);
  release_deferred_reads();
}

void StorageNode::answer(Partition& partition, Waiting& client, std::uint64_t entry_term,
                         const AppendOutcome& outcome) {
  stats_->proposal_seconds.observe(
      std::chrono::duration<double>(Clock::now() - client.proposed_at).count());
  if (entry_term != client.term) {
    // Another leader's entry took this place; ours was never committed.
    redirect(client.peer, client.token, client.header, partition.id);
  } else if (client.command) {
    stats_->commands.add();
    wire::Header header{wire::kWireVersion, wire::MessageType::kCommandReply,
                        client.header.request_id, client.header.trace_id};
    reply(client.peer, client.token,
          codec::encode(header, wire::CommandReply{outcome.status, outcome.body, outcome.detail,
                                                   outcome.field}));
  } else {
    if (outcome.status != wire::Status::kOk) {
      stats_->failed_appends.add();
      log_.debug("append_refused", {{"trace_id", client.header.trace_id},
                                    {"message_id", client.message_id},
                                    {"status", codec::status_name(outcome.status)},
                                    {"detail", outcome.detail}});
    } else if (outcome.duplicate) {
      stats_->duplicates.add();
    } else {
      stats_->appends.add();
    }
    wire::Header header{wire::kWireVersion, wire::MessageType::kAppendReply,
                        client.header.request_id, client.header.trace_id};
    reply(client.peer, client.token,
          codec::encode(header, wire::AppendReply{outcome.status, client.conversation_id,
                                                  client.message_id, outcome.seq, outcome.duplicate,
                                                  outcome.detail, outcome.field}));
  }
}

// An answered entry is in the tables only once the apply thread commits its
// batch; a read before that could miss a message its sender was told is
// stored.
bool StorageNode::reads_must_wait() const {
  return answered_batch_ > applier_->durable_batch();
}

bool StorageNode::defer_read(std::vector<zmq::message_t>& frames, const wire::Header& header) {
  if (!reads_must_wait()) return false;
  if (deferred_reads_.size() >= kDeferredReadsMax) {
    error_reply(
        frames[0], frames[1], header,
        {wire::Status::kUnavailable, "too many reads wait for the apply thread; retry", "", 0, 0});
    return true;
  }
  stats_->reads_deferred.add();
  deferred_reads_.push_back(std::move(frames));
  return true;
}

void StorageNode::release_deferred_reads() {
  if (deferred_reads_.empty() || reads_must_wait()) return;
  auto reads = std::exchange(deferred_reads_, {});
  for (auto& frames : reads) handle_frames(frames);
}

void StorageNode::note_leadership(Partition& partition) {
  const consensus::Replica& replica = *partition.replica;
  const bool leader = replica.is_leader();
  if (leader != partition.was_leader || replica.term() != partition.term_seen) {
    if (leader && !partition.was_leader) {
      stats_->elections_won.add();
      stats_->partitions_led.add(1);
      log_.info("leader_elected", {{"partition", partition.id}, {"epoch", replica.term()}});
    } else if (!leader && partition.was_leader) {
      stats_->partitions_led.add(-1);
      log_.info(
          "leadership_lost",
          {{"partition", partition.id}, {"epoch", replica.term()}, {"leader", replica.leader()}});
    }
    partition.was_leader = leader;
    partition.term_seen = replica.term();
  }
  if (!partition.waiting.empty() &&
      (!leader || partition.waiting.begin()->second.term != replica.term()))
    release_waiting(partition);
}

void StorageNode::release_waiting(Partition& partition) {
  // Entries still waiting may yet be committed by the next leader; the router
  // retries there and the dedup index returns the original seq.
  for (auto& [index, client] : partition.waiting)
    redirect(client.peer, client.token, client.header, partition.id);
  partition.waiting.clear();
}

}  // namespace chat4all::storage
