// The node-wide write-ahead log of one storage node: the only thing made
// durable before a vote, an acknowledgement to a leader or an answer to a
// client. Every partition the node hosts shares it.
//
// One record per loop turn that has anything consensus needs on disk: for each
// partition, its hard state (term, vote), its log change (entries from an
// index on, replacing what was stored from there) and a snapshot it installs.
// Applying committed entries is NOT logged: an applied outcome is a function
// of the committed log, so a restart re-applies from the tables' checkpoint
// and reaches the same state (nodes/storage/message_store.h).
//
// Layout (its own LMDB environment, directory `wal` beside `store`, one
// database "wal"): key = position (u64 big-endian, strictly increasing,
// written with MDB_APPEND so every commit touches the tail pages only);
// value = msgpack array of WalPartitionRecord (below). Records up to the
// tables' checkpoint are deleted in a later append's transaction. Why LMDB
// and not segment files: bench/README.md, "The write-ahead log".
//
// Not thread-safe: one thread (the storage node's loop) appends; replay runs
// before that thread starts.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodes/storage/consensus.h"
#include "nodes/storage/message_store.h"

struct MDB_env;

namespace chat4all::storage {

// One partition's durable share of a turn.
struct WalPartitionRecord {
  std::uint32_t partition = 0;
  std::optional<consensus::HardState> hard_state;
  std::uint64_t first_new_index = 0;  // 0: the log did not change
  std::vector<wire::LogEntry> new_entries;
  std::optional<consensus::SnapshotInstall> install;
};

// True when a Ready holds something a vote or an acknowledgement promises.
bool must_be_durable(const consensus::Ready& ready);

// The record of one turn, for the partitions whose Ready must be durable.
std::string encode_wal_record(
    const std::vector<std::pair<std::uint32_t, const consensus::Ready*>>& partitions);
// Throws std::runtime_error on a record that does not decode.
std::vector<WalPartitionRecord> decode_wal_record(std::string_view bytes);

class WriteAheadLog {
 public:
  struct Options {
    std::filesystem::path directory;
    std::uint64_t map_size_initial_bytes = 64ull << 20;
    std::uint64_t map_size_max_bytes = 4ull << 30;
  };
  // Opens or creates the log; throws std::runtime_error naming the problem.
  // `first_position_min`: positions handed out are never below this (the
  // tables' checkpoint + 1, so that an emptied log does not reuse positions).
  WriteAheadLog(const Options& options, std::uint64_t first_position_min);
  ~WriteAheadLog();
  WriteAheadLog(const WriteAheadLog&) = delete;
  WriteAheadLog& operator=(const WriteAheadLog&) = delete;

  // Appends one record and deletes the records at or below `forget_through`
  // (already reflected in durable tables), in one transaction and fsync.
  // Returns the record's position, or nullopt with `error` set when nothing
  // was made durable (the map at its maximum, or the disk failed).
  std::optional<std::uint64_t> append(std::string_view record, std::uint64_t forget_through,
                                      std::string& error);

  // Visits the records after `after_position`, in order.
  using Visit = std::function<void(std::uint64_t position, std::string_view record)>;
  void replay(std::uint64_t after_position, const Visit& visit) const;

  std::uint64_t last_position() const { return next_position_ - 1; }
  std::uint64_t bytes_used() const;

 private:
  bool grow_map();

  Options options_;
  MDB_env* env_ = nullptr;
  unsigned int db_ = 0;
  std::uint64_t map_size_bytes_ = 0;
  std::uint64_t next_position_ = 1;
  std::uint64_t forgotten_through_ = 0;
};

// Brings the tables' consensus state (hard states, logs, installed snapshots)
// up to the log's last record: the records after the tables' checkpoint are
// written into them, many per transaction, and the checkpoint moves to the
// last. Committed entries are not applied here: the cores apply them again
// once they learn the commit index, to the same outcome. Returns the number of
// records replayed; throws std::runtime_error if one does not decode or the
// tables cannot take it.
std::size_t replay_write_ahead_log(const WriteAheadLog& wal, MessageStore& store);

}  // namespace chat4all::storage
