// The frontend's link to the storage nodes' "chunks" endpoints (nodes/storage/chunk_store.h):
// one RouterClient (a DEALER and its thread) per storage node that declares one. A tenant's
// chunks live on the replicas of its directory partition (wire::tenant_key), where its file
// records are.
//
// put() sends a chunk to every replica and answers once a majority holds it on disk (or once
// that can no longer happen); get() asks one replica after another, starting from a different
// one each time, until one returns bytes that hash to the chunk's name, so a download goes on
// when a storage node is down or lost the chunk.
//
// Thread-safe. Callbacks run on one of the clients' threads: keep them quick.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/ring.h"
#include "common/router_client.h"
#include "common/topology.h"

namespace chat4all::frontend {

class ChunkClient {
 public:
  explicit ChunkClient(const Topology& topology);

  // False when no storage node serves chunks (the topology declares no "chunks" endpoint).
  bool available() const { return !nodes_.empty(); }

  using PutDone = std::function<void(wire::Status status, std::string detail)>;
  void put(const std::string& tenant_id, const std::string& blob_id, const std::string& sha256,
           std::string bytes, const std::string& trace_id, PutDone done);

  using GetDone = std::function<void(wire::Status status, std::string bytes)>;
  void get(const std::string& tenant_id, const std::string& blob_id, const std::string& sha256,
           const std::string& trace_id, GetDone done);

 private:
  std::vector<std::string> replicas_of(const std::string& tenant_id) const;
  void get_from(std::shared_ptr<const std::vector<std::string>> replicas, std::size_t next,
                std::size_t tries_left,
                std::shared_ptr<const std::pair<wire::ChunkGet, std::string>> request,
                std::string sha256, GetDone done);

  Ring ring_;
  std::map<std::string, std::unique_ptr<RouterClient>> nodes_;  // by node name
  std::atomic<std::size_t> rotation_{0};
  Log log_{"chunk_client"};
};

}  // namespace chat4all::frontend
