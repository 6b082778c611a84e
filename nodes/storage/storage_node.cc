#include "nodes/storage/storage_node.h"

#include <chrono>
#include <optional>

#include "common/codec.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/transport.h"

namespace chat4all::storage {

namespace {

// One request waiting for the batch's commit.
struct PendingAppend {
  zmq::message_t peer;
  zmq::message_t token;
  wire::Header header;
};

struct StorageMetrics {
  Counter& appends = metrics().counter("chat4all_storage_appends_total", "Messages appended (new)");
  Counter& duplicates = metrics().counter("chat4all_storage_duplicates_total",
                                          "Appends answered from the dedup index");
  Counter& failed_appends =
      metrics().counter("chat4all_storage_append_failures_total", "Appends refused or failed");
  Counter& reads = metrics().counter("chat4all_storage_reads_total", "History reads served");
  Counter& not_owner = metrics().counter("chat4all_storage_not_owner_total",
                                         "Requests for partitions led elsewhere");
  Counter& rejected_frames = transport::rejected_frames_counter();
  Counter& batches = metrics().counter("chat4all_storage_batches_total", "Group commits");
  Histogram& commit_seconds = metrics().latency_histogram(
      "chat4all_storage_commit_seconds", "Time of one group commit (LMDB transaction + fsync)");
};

}  // namespace

StorageNode::StorageNode(const Topology& topology, const NodeSpec& self)
    : topology_(topology),
      self_(self),
      ring_(topology.storage_node_names(), topology.partition_count, topology.replication_factor,
            topology.virtual_nodes),
      store_(MessageStore::Options{topology.node_data_dir(self.name) / "store",
                                   topology.storage.map_size_initial_mb << 20,
                                   topology.storage.map_size_max_mb << 20}) {}

void StorageNode::run(const std::atomic<bool>& stop) {
  StorageMetrics stats;
  std::optional<MetricsServer> metrics_server;
  if (auto port = self_.port("metrics")) metrics_server.emplace(metrics(), self_.host, *port);

  zmq::socket_t socket(transport::context(), zmq::socket_type::router);
  transport::configure(socket, 100000);
  socket.bind(transport::bind_address(self_, "rpc"));
  log_.info("listening", {{"rpc", transport::bind_address(self_, "rpc")},
                          {"data_dir", topology_.node_data_dir(self_.name).string()}});

  const std::uint32_t batch_max = topology_.storage.batch_messages_max;
  std::vector<wire::AppendRequest> batch;
  std::vector<PendingAppend> waiting;
  batch.reserve(batch_max);
  waiting.reserve(batch_max);

  auto reply = [&](zmq::message_t& peer, zmq::message_t& token, const std::string& frame) {
    // A full queue towards one router drops that reply; the router's deadline
    // answers its client with a timeout and a retry is deduplicated.
    transport::send_multipart(socket, {transport::view(peer), transport::view(token), frame});
  };
  auto error_reply = [&](zmq::message_t& peer, zmq::message_t& token, const wire::Header& request,
                         wire::Status status, const std::string& detail, const std::string& hint) {
    wire::Header header{wire::kWireVersion, wire::MessageType::kErrorReply, request.request_id,
                        request.trace_id};
    reply(peer, token, codec::encode(header, wire::ErrorReply{status, detail, hint}));
  };
  auto owns = [&](const std::string& conversation_id, std::string& owner) {
    owner = ring_.replicas(ring_.partition_of(conversation_id)).front();
    return owner == self_.name;
  };

  zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0}};
  while (!stop.load(std::memory_order_relaxed)) {
    transport::poll(items, 1, std::chrono::milliseconds(100));
    if (!(items[0].revents & ZMQ_POLLIN)) continue;

    // Drain what has arrived (bounded by batch_max): reads are answered at
    // once, appends wait for one shared commit. Whatever arrives during the
    // commit forms the next batch, so batches grow with load by themselves.
    for (std::uint32_t drained = 0; drained < batch_max; ++drained) {
      auto frames = transport::receive_multipart(socket);
      if (frames.empty()) break;
      std::string why;
      if (frames.size() != 3) {
        stats.rejected_frames.add();
        log_.debug("frame_rejected", {{"reason", "expected 3 frames"}, {"frames", frames.size()}});
        continue;
      }
      auto frame = codec::decode(transport::view(frames[2]), &why);
      if (!frame) {
        stats.rejected_frames.add();
        log_.debug("frame_rejected", {{"reason", why}});
        continue;
      }
      const wire::Header& header = frame->header();
      // Answers and returns false unless the request is well formed and for a
      // partition this node owns.
      auto admit = [&](bool well_formed, const std::string& conversation_id, const char* what) {
        if (!well_formed) {
          stats.rejected_frames.add();
          error_reply(frames[0], frames[1], header, wire::Status::kInvalid,
                      std::string("malformed ") + what, "");
          return false;
        }
        std::string owner;
        if (!owns(conversation_id, owner)) {
          stats.not_owner.add();
          error_reply(frames[0], frames[1], header, wire::Status::kNotOwner,
                      "partition is owned by another node", owner);
          return false;
        }
        return true;
      };
      if (header.type == wire::MessageType::kAppendRequest) {
        auto request = frame->body<wire::AppendRequest>();
        const bool well_formed = request && ids::is_valid_id(request->conversation_id) &&
                                 ids::is_valid_id(request->message_id);
        if (!admit(well_formed, well_formed ? request->conversation_id : "", "append request"))
          continue;
        batch.push_back(std::move(*request));
        waiting.push_back({std::move(frames[0]), std::move(frames[1]), header});
      } else if (header.type == wire::MessageType::kReadRequest) {
        auto request = frame->body<wire::ReadRequest>();
        const bool well_formed = request && ids::is_valid_id(request->conversation_id);
        if (!admit(well_formed, well_formed ? request->conversation_id : "", "read request"))
          continue;
        const std::uint32_t limit = std::min(request->limit, topology_.limits.history_page_max);
        HistoryPage page = store_.read(request->conversation_id, request->from_seq, limit);
        stats.reads.add();
        wire::Header reply_header{wire::kWireVersion, wire::MessageType::kReadReply,
                                  header.request_id, header.trace_id};
        reply(frames[0], frames[1],
              codec::encode(reply_header, wire::ReadReply{page.status, std::move(page.messages),
                                                          page.last_seq, page.detail}));
      } else {
        stats.rejected_frames.add();
        log_.debug("frame_rejected",
                   {{"reason", "unexpected message type"}, {"type", int(header.type)}});
      }
    }
    if (batch.empty()) continue;

    const auto started = std::chrono::steady_clock::now();
    std::vector<AppendOutcome> outcomes = store_.append_batch(batch, ids::now_ms());
    stats.commit_seconds.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    stats.batches.add();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const AppendOutcome& outcome = outcomes[i];
      if (outcome.status != wire::Status::kOk) {
        stats.failed_appends.add();
        log_.warn("append_refused", {{"trace_id", waiting[i].header.trace_id},
                                     {"message_id", batch[i].message_id},
                                     {"status", codec::status_name(outcome.status)},
                                     {"detail", outcome.detail}});
      } else if (outcome.duplicate) {
        stats.duplicates.add();
      } else {
        stats.appends.add();
      }
      wire::Header reply_header{wire::kWireVersion, wire::MessageType::kAppendReply,
                                waiting[i].header.request_id, waiting[i].header.trace_id};
      reply(waiting[i].peer, waiting[i].token,
            codec::encode(reply_header, wire::AppendReply{outcome.status, batch[i].conversation_id,
                                                          batch[i].message_id, outcome.seq,
                                                          outcome.duplicate, outcome.detail}));
    }
    batch.clear();
    waiting.clear();
  }
  log_.info("stopped");
}

}  // namespace chat4all::storage
