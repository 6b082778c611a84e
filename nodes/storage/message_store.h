// Durable storage of one storage node on LMDB: for every partition it hosts,
// the consensus state and log, and the state machine the committed log
// produces (messages, conversation heads, the message_id index).
//
// Layout (one LMDB environment, one file; P = partition as u32 big-endian;
// see schema/README.md; `meta` holds the layout version):
//   raft_state : P                                -> msgpack [term, voted_for, snapshot_index,
//                                                               snapshot_term, applied_index]
//   raft_log   : P index(u64 BE)                  -> msgpack LogEntry
//   messages   : P conversation_id 0x00 seq(u64 BE) -> the message without what the key
//                                                    holds (nodes/storage/message_record.h)
//   heads      : P conversation_id                -> last seq (u64 BE)
//   dedup      : P conversation_id 0x00 message_id -> seq (u64 BE) + content digest (16 B)
//   records    : P record key                     -> msgpack record (nodes/storage/domain.h)
//
//   meta       : "layout" -> u32; "wal_checkpoint" -> u64 BE
//
// These tables are written behind the node's write-ahead log
// (nodes/storage/write_ahead_log.h), on the apply thread: write_turn() takes
// the consensus output of many loop turns (hard states, log appends and
// truncations, snapshot installs, trims, and the application of committed
// entries) into one write transaction and one fsync, with the position of the
// last write-ahead log record it reflects (the checkpoint); either all of it
// is durable or none is. A restart replays the log's records after the
// checkpoint. The durable path never uses MDB_NOSYNC, MDB_NOMETASYNC or
// MDB_WRITEMAP.
//
// Applying is deterministic: the seq of a message is the conversation's head
// plus one at the entry's place in the committed log, and a message_id seen
// before in the conversation gets its original seq back. So every replica
// assigns the same numbers, whichever leader proposed the entry.
//
// One thread writes (the apply thread; replay at start). Reads may come from
// any thread (MDB_NOTLS); a map growth waits for the reads under way.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/ring.h"
#include "nodes/storage/consensus.h"
#include "schema/wire.h"

struct MDB_env;
struct MDB_txn;

namespace chat4all::storage {

// The outcome of applying one committed entry: an append (seq, duplicate) or
// a command (body: its result struct), with the hints its leader publishes.
struct AppendOutcome {
  wire::Status status = wire::Status::kInternal;
  std::uint64_t seq = 0;
  bool duplicate = false;
  std::string detail;
  std::string body;
  std::string field;
  std::vector<wire::Event> events;
  std::vector<std::string> outbox_dropped;  // DomainResult::outbox_dropped
  std::vector<std::string> freed_blobs;     // DomainResult::freed_blobs
};

// One partition's share of a turn: its Ready, as the consensus core gave it.
struct PartitionWrite {
  PartitionId partition = 0;
  const consensus::Ready* ready = nullptr;
};

class MessageStore {
 public:
  struct Options {
    std::filesystem::path directory;
    std::uint64_t map_size_initial_bytes = 256ull << 20;
    std::uint64_t map_size_max_bytes = 64ull << 30;
    // The topology declares outside channels: stored messages are also put on
    // the partition's channel outbox for the channel dispatchers.
    bool route_to_channels = false;
  };

  // Opens or creates the store; throws std::runtime_error naming the problem.
  explicit MessageStore(const Options& options);
  ~MessageStore();
  MessageStore(const MessageStore&) = delete;
  MessageStore& operator=(const MessageStore&) = delete;

  // What a partition's consensus core restarts from; empty for a new one.
  // Throws std::runtime_error if the stored log is not contiguous.
  consensus::Restored load_partition(PartitionId partition) const;

  enum class WriteResult { kDurable, kFull, kFailed };
  using OutcomesReady = std::function<void(const std::vector<std::vector<AppendOutcome>>&)>;
  // Makes a turn durable. outcomes[i][k] answers writes[i].ready->to_apply[k]
  // (no-op entries get a default outcome). kFull: the map is at its maximum
  // and nothing of the turn was written.
  //
  // `outcomes_ready` runs once, when every record of the turn is in the
  // transaction and before the commit's fsync. Applied entries are committed
  // already (a majority holds them in its log) and their outcomes are a
  // function of the log alone, so they can be answered then: if this commit
  // failed, the restarted node would apply the same log to the same result.
  //
  // `wal_checkpoint` > 0: the tables now reflect every write-ahead log record
  // up to that position (stored in the same transaction).
  WriteResult write_turn(const std::vector<PartitionWrite>& writes,
                         std::vector<std::vector<AppendOutcome>>& outcomes, std::string& error,
                         const OutcomesReady& outcomes_ready = {},
                         std::uint64_t wal_checkpoint = 0);

  // The apply thread's transaction, kept open across many turns so that one
  // commit (and fsync) covers them: batch_add() applies writes into it
  // (beginning it if none is open) and fills `outcomes` as write_turn does;
  // batch_commit() makes everything added durable with the checkpoint. On
  // kFull or kFailed the whole open transaction is gone (aborted): grow() and
  // add again everything since the last commit, in the same order, which
  // gives the same outcomes.
  WriteResult batch_add(const std::vector<PartitionWrite>& writes,
                        std::vector<std::vector<AppendOutcome>>& outcomes, std::string& error);
  WriteResult batch_commit(std::uint64_t wal_checkpoint, std::string& error);
  void batch_abort();
  // Aborts an open batch and doubles the map up to its maximum; false at it.
  bool grow();

  // The last write-ahead log position the tables reflect (0: none).
  std::uint64_t wal_checkpoint() const;

  // The seq of `request`'s message if the partition's applied state holds it
  // with the same content: a retry that can be answered without a write.
  std::optional<std::uint64_t> stored_seq(PartitionId partition,
                                          const wire::AppendRequest& request) const;

  // Messages with seq >= from_seq, in order, at most `limit`: read_history
  // without a tenant (no visibility check).
  wire::ReadReply read(PartitionId partition, std::string_view conversation_id,
                       std::uint64_t from_seq, std::uint32_t limit) const;

  // A history read as the wire asks it (visibility, backward, since).
  wire::ReadReply read_history(PartitionId partition, const wire::ReadRequest& request,
                               std::uint32_t page_max) const;

  // A query on the partition's applied records (nodes/storage/domain.h).
  wire::QueryReply query(PartitionId partition, const wire::QueryRequest& request) const;

  // The partition's applied state (msgpack PartitionSnapshot) and the index
  // it reflects.
  std::string snapshot(PartitionId partition, std::uint64_t& applied_index) const;

  // True once the store's file reaches 90% of the map's maximum: leaders
  // refuse new writes (507) so that replication of what they already
  // accepted still fits.
  bool nearly_full() const;

  // Where the bytes go, for the node's metrics: the pages of every table,
  // the free list, and how much of the map's maximum is in use.
  struct Usage {
    std::vector<std::pair<std::string, std::uint64_t>> table_bytes;  // name, pages * page size
    std::uint64_t free_bytes = 0;  // pages freed, reused before the file grows
    std::uint64_t used_bytes = 0;  // the file's pages up to the last one (free ones included)
    std::uint64_t map_max_bytes = 0;
  };
  Usage usage() const;

  std::uint64_t map_size_bytes() const { return map_size_bytes_.load(); }

 private:
  WriteResult try_write(const std::vector<PartitionWrite>& writes,
                        std::vector<std::vector<AppendOutcome>>& outcomes, std::string& error,
                        const OutcomesReady& outcomes_ready, std::uint64_t wal_checkpoint);
  bool grow_map();
  // Throws LmdbFailure (or std::exception for an undecodable record).
  void apply_writes(MDB_txn* txn, const std::vector<PartitionWrite>& writes,
                    std::vector<std::vector<AppendOutcome>>& outcomes);
  void put_checkpoint(MDB_txn* txn, std::uint64_t wal_checkpoint);
  // After an erasure (kEraseMessages, `erase_body`) finished a conversation: the
  // partition's stored log entries up to `up_to_index` that still carry content
  // of the erased user there lose it (nodes/storage/erasure.h scrubbed_entry).
  void scrub_erased_from_log(MDB_txn* txn, PartitionId partition, const std::string& erase_body,
                             const std::string& result_body, std::uint64_t up_to_index);
  // Runs `read` on the partition's applied state in a read transaction; an
  // LMDB error or an undecodable record gives a kInternal Reply naming it.
  template <typename Reply, typename Read>
  Reply with_read_state(PartitionId partition, Read read) const;
  void check_layout(MDB_txn* txn);
  // Pages on the free list, counted in `txn`.
  static std::uint64_t free_pages(MDB_txn* txn);

  Options options_;
  MDB_env* env_ = nullptr;
  unsigned int state_db_ = 0, log_db_ = 0, messages_db_ = 0, heads_db_ = 0, dedup_db_ = 0,
               records_db_ = 0, meta_db_ = 0;
  std::atomic<std::uint64_t> map_size_bytes_{0};
  MDB_txn* batch_txn_ = nullptr;  // the apply thread's open transaction
  // Shared by every read transaction, exclusive for a map growth (LMDB allows
  // mdb_env_set_mapsize only while no transaction of the process is open).
  mutable std::shared_mutex resize_mutex_;
};

}  // namespace chat4all::storage
