// File chunks on a storage node's disk, outside the message log: one file per
// chunk, <chunks dir>/<tenant>/<blob_id>/<sha256>, written to a temporary name,
// fsynced, renamed into place and the directory fsynced, so a chunk either is
// there whole or is not there (schema/README.md, "Files").
//
// ChunkServer serves them on the node's "chunks" endpoint (a ZMQ ROUTER of its
// own, wire ChunkPut / ChunkGet) from its own thread, so a 4 MiB write and its
// fsync never hold up the consensus loop. Bounds: the socket takes at most
// kChunkQueueMax messages from the network (each at most one chunk) and the
// thread handles one at a time; beyond, senders' queues fill and their sends
// fail (the frontend retries, then answers 503), which stops the HTTP reads
// that feed them.
//
// Threading: ChunkStore is called from the server's thread only (tests call it
// directly); ChunkServer::free_blobs() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/json_log.h"
#include "common/metrics.h"
#include "common/topology.h"
#include "schema/wire.h"

namespace chat4all::storage {

class ChunkStore {
 public:
  explicit ChunkStore(std::filesystem::path directory);

  // kOk once the chunk is on disk (a chunk already there is not written
  // again); kInvalid when the bytes do not hash to `sha256` or a name is not
  // an id; kStorageFull / kInternal when the disk refused (nothing is left).
  wire::ChunkPutReply put(const wire::ChunkPut& chunk);
  // The chunk's bytes, checked against its name; kNotFound when missing or damaged.
  wire::ChunkGetReply get(const wire::ChunkGet& chunk) const;
  // Deletes every chunk of a blob ("tenant/blob_id"); a missing one is fine.
  void free_blob(const std::string& tenant_and_blob);
  bool has(const std::string& tenant, const std::string& blob, const std::string& sha256) const;

 private:
  std::optional<std::filesystem::path> blob_dir(const std::string& tenant,
                                                const std::string& blob) const;
  std::filesystem::path directory_;
};

class ChunkServer {
 public:
  // Binds `self`'s "chunks" endpoint at once (throws when it cannot) and starts the thread.
  ChunkServer(const NodeSpec& self, std::filesystem::path directory);
  ~ChunkServer();  // stops the thread
  ChunkServer(const ChunkServer&) = delete;
  ChunkServer& operator=(const ChunkServer&) = delete;

  // Blobs the replicated state no longer refers to: deleted by the server's thread.
  void free_blobs(const std::vector<std::string>& tenant_and_blobs);

  static constexpr int kChunkQueueMax = 4;

 private:
  void run(std::string bind_address);

  ChunkStore store_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<std::string> to_free_;  // guarded by mutex_
  Counter& puts_;
  Counter& gets_;
  Counter& refused_;
  Counter& freed_;
  Log log_{"chunks"};
  std::thread thread_;
};

}  // namespace chat4all::storage
