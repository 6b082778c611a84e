// Durable conversation store on LMDB: messages by (conversation, seq), the
// head (last seq) of each conversation, and the message_id index that makes
// appends idempotent.
//
// Layout (all in one LMDB environment, one file, see schema/README.md):
//   messages : conversation_id 0x00 seq(u64 big-endian) -> msgpack StoredMessage
//   heads    : conversation_id                           -> last seq (u64 big-endian)
//   dedup    : conversation_id 0x00 message_id           -> seq (u64 BE) + content digest (16 B)
//
// append_batch() is the group commit: every message of the batch goes into one
// write transaction and one fsync; either all of it is durable or none is. The
// durable path never uses MDB_NOSYNC, MDB_NOMETASYNC or MDB_WRITEMAP.
//
// Not thread-safe for writes: one thread (the storage node's loop) appends.
// Reads may come from any thread (MDB_NOTLS).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "schema/wire.h"

struct MDB_env;

namespace chat4all::storage {

struct AppendOutcome {
  wire::Status status = wire::Status::kInternal;
  std::uint64_t seq = 0;
  bool duplicate = false;
  std::string detail;
};

struct HistoryPage {
  wire::Status status = wire::Status::kInternal;
  std::vector<wire::StoredMessage> messages;
  std::uint64_t last_seq = 0;
  std::string detail;
};

class MessageStore {
 public:
  struct Options {
    std::filesystem::path directory;
    std::uint64_t map_size_initial_bytes = 256ull << 20;
    std::uint64_t map_size_max_bytes = 64ull << 30;
  };

  // Opens or creates the store; throws std::runtime_error naming the problem.
  explicit MessageStore(const Options& options);
  ~MessageStore();
  MessageStore(const MessageStore&) = delete;
  MessageStore& operator=(const MessageStore&) = delete;

  // Appends in order; result i answers request i. A message whose
  // (conversation, message_id) is stored already gets its original seq with
  // duplicate=true (kConflict if its content differs) and writes nothing.
  // If the transaction cannot commit, every result carries the failure and
  // nothing of the batch is stored.
  std::vector<AppendOutcome> append_batch(const std::vector<wire::AppendRequest>& batch,
                                          std::int64_t stored_at_ms);

  // Messages with seq >= from_seq, in order, at most `limit`.
  HistoryPage read(std::string_view conversation_id, std::uint64_t from_seq,
                   std::uint32_t limit) const;

  std::uint64_t map_size_bytes() const { return map_size_bytes_; }

 private:
  enum class CommitResult { kCommitted, kMapFull, kFailed };
  CommitResult try_append(const std::vector<wire::AppendRequest>& batch, std::int64_t stored_at_ms,
                          std::vector<AppendOutcome>& outcomes, std::string& error);
  bool grow_map();

  Options options_;
  MDB_env* env_ = nullptr;
  unsigned int messages_db_ = 0, heads_db_ = 0, dedup_db_ = 0;
  std::uint64_t map_size_bytes_ = 0;
};

}  // namespace chat4all::storage
