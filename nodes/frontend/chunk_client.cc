#include "nodes/frontend/chunk_client.h"

#include <mutex>

#include "common/ids.h"
#include "common/sha256.h"

namespace chat4all::frontend {
namespace {

// Chunk requests one frontend has waiting on one storage node; beyond, a put or get is refused
// at once (kUnavailable) and the transfer answers 503.
constexpr std::uint32_t kChunksPendingPerNodeMax = 64;

template <typename Reply>
std::optional<Reply> reply_of(wire::Status status, const std::optional<codec::Frame>& frame,
                              wire::MessageType type) {
  if (status != wire::Status::kOk || !frame || frame->header().type != type) return std::nullopt;
  return frame->body<Reply>();
}

}  // namespace

ChunkClient::ChunkClient(const Topology& topology)
    : ring_(topology.storage_node_names(), topology.partition_count, topology.replication_factor,
            topology.virtual_nodes) {
  for (const NodeSpec* node : topology.with_role(NodeRole::kStorage)) {
    if (!node->port("chunks")) continue;
    nodes_.emplace(node->name, std::make_unique<RouterClient>(
                                   std::vector<std::string>{node->zmq_address("chunks")},
                                   topology.files.chunk_timeout_ms, kChunksPendingPerNodeMax));
  }
}

std::vector<std::string> ChunkClient::replicas_of(const std::string& tenant_id) const {
  return ring_.replicas(ring_.partition_of(wire::tenant_key(tenant_id)));
}

void ChunkClient::put(const std::string& tenant_id, const std::string& blob_id,
                      const std::string& sha256, std::string bytes, const std::string& trace_id,
                      PutDone done) {
  const auto replicas = replicas_of(tenant_id);
  struct Tally {
    std::mutex mutex;
    std::size_t stored = 0, failed = 0;
    bool answered = false;
    std::string detail;
  };
  auto tally = std::make_shared<Tally>();
  const std::size_t majority = replicas.size() / 2 + 1;
  const std::size_t total = replicas.size();
  const wire::ChunkPut chunk{tenant_id, blob_id, sha256, std::move(bytes)};
  auto settle = [tally, majority, total, done](bool stored, const std::string& detail) {
    std::unique_lock lock(tally->mutex);
    (stored ? tally->stored : tally->failed) += 1;
    if (!stored && tally->detail.empty()) tally->detail = detail;
    if (tally->answered) return;
    if (tally->stored >= majority) {
      tally->answered = true;
      lock.unlock();
      return done(wire::Status::kOk, "");
    }
    if (tally->failed > total - majority) {
      tally->answered = true;
      std::string why = tally->detail;
      lock.unlock();
      done(wire::Status::kUnavailable, why);
    }
  };
  for (const auto& name : replicas) {
    auto node = nodes_.find(name);
    if (node == nodes_.end()) {
      settle(false, name + " serves no chunks");
      continue;
    }
    const std::uint64_t request_id = ids::next_request_id();
    node->second->submit(
        request_id,
        codec::encode(
            wire::Header{wire::kWireVersion, wire::MessageType::kChunkPut, request_id, trace_id},
            chunk),
        [settle, name](wire::Status status, std::optional<codec::Frame> reply) {
          auto answer =
              reply_of<wire::ChunkPutReply>(status, reply, wire::MessageType::kChunkPutReply);
          if (answer && answer->status == wire::Status::kOk) return settle(true, "");
          settle(false, name + ": " + (answer ? answer->detail : "no answer"));
        });
  }
}

void ChunkClient::get(const std::string& tenant_id, const std::string& blob_id,
                      const std::string& sha256, const std::string& trace_id, GetDone done) {
  auto replicas = std::make_shared<const std::vector<std::string>>(replicas_of(tenant_id));
  auto request = std::make_shared<const std::pair<wire::ChunkGet, std::string>>(
      wire::ChunkGet{tenant_id, blob_id, sha256}, trace_id);
  const std::size_t first = rotation_.fetch_add(1) % std::max<std::size_t>(replicas->size(), 1);
  get_from(replicas, first, replicas->size(), std::move(request), sha256, std::move(done));
}

void ChunkClient::get_from(std::shared_ptr<const std::vector<std::string>> replicas,
                           std::size_t next, std::size_t tries_left,
                           std::shared_ptr<const std::pair<wire::ChunkGet, std::string>> request,
                           std::string sha256, GetDone done) {
  if (tries_left == 0) return done(wire::Status::kUnavailable, {});
  const std::string& name = (*replicas)[next % replicas->size()];
  auto node = nodes_.find(name);
  if (node == nodes_.end())
    return get_from(replicas, next + 1, tries_left - 1, request, std::move(sha256),
                    std::move(done));
  const std::uint64_t request_id = ids::next_request_id();
  node->second->submit(
      request_id,
      codec::encode(wire::Header{wire::kWireVersion, wire::MessageType::kChunkGet, request_id,
                                 request->second},
                    request->first),
      [this, replicas, next, tries_left, request, sha256, done, name](
          wire::Status status, std::optional<codec::Frame> reply) mutable {
        auto answer =
            reply_of<wire::ChunkGetReply>(status, reply, wire::MessageType::kChunkGetReply);
        if (answer && answer->status == wire::Status::kOk && sha256_hex(answer->bytes) == sha256)
          return done(wire::Status::kOk, std::move(answer->bytes));
        log_.info("chunk_read_failed_over",
                  {{"node", name},
                   {"chunk", sha256},
                   {"status", answer ? int(answer->status) : int(status)}});
        get_from(replicas, next + 1, tries_left - 1, request, std::move(sha256), std::move(done));
      });
}

}  // namespace chat4all::frontend
