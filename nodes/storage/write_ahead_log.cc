#include "nodes/storage/write_ahead_log.h"

#include <msgpack.hpp>
#include <stdexcept>

#include "nodes/storage/lmdb_support.h"

namespace chat4all::storage {

namespace {

// A record's fields in order, as encode_wal_record packs them.
struct PackedRecord {
  std::uint32_t partition = 0;
  bool has_hard_state = false;
  std::uint64_t term = 0;
  std::string voted_for;
  std::uint64_t first_new_index = 0;
  std::vector<wire::LogEntry> new_entries;
  bool has_install = false;
  std::uint64_t install_index = 0, install_term = 0;
  std::string install_data;
  MSGPACK_DEFINE(partition, has_hard_state, term, voted_for, first_new_index, new_entries,
                 has_install, install_index, install_term, install_data);
};
constexpr std::uint32_t kPackedRecordFields = 10;

using lmdb::check;
using Txn = lmdb::TxnGuard;
using Cursor = lmdb::CursorGuard;

std::string position_key(std::uint64_t position) {
  return lmdb::u64_bytes(position);
}

std::uint64_t read_position(const MDB_val& key) {
  return key.mv_size == 8 ? lmdb::read_u64(key.mv_data) : 0;
}

}  // namespace

bool must_be_durable(const consensus::Ready& ready) {
  return ready.hard_state || ready.first_new_index != 0 || ready.install;
}

std::string encode_wal_record(
    const std::vector<std::pair<std::uint32_t, const consensus::Ready*>>& partitions) {
  msgpack::sbuffer buffer(4096);
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(static_cast<std::uint32_t>(partitions.size()));
  for (const auto& [partition, ready] : partitions) {
    // Packed field by field rather than through PackedRecord so that the
    // entries are not copied on the hot path; the layout is PackedRecord's.
    packer.pack_array(kPackedRecordFields);
    packer.pack(partition);
    packer.pack(ready->hard_state.has_value());
    packer.pack(ready->hard_state ? ready->hard_state->term : 0);
    packer.pack(ready->hard_state ? ready->hard_state->voted_for : std::string());
    packer.pack(ready->first_new_index);
    packer.pack(ready->new_entries);
    packer.pack(ready->install.has_value());
    packer.pack(ready->install ? ready->install->index : 0);
    packer.pack(ready->install ? ready->install->term : 0);
    if (ready->install)
      packer.pack(ready->install->data);
    else
      packer.pack(std::string());
  }
  return std::string(buffer.data(), buffer.size());
}

std::vector<WalPartitionRecord> decode_wal_record(std::string_view bytes) {
  std::vector<PackedRecord> packed;
  try {
    msgpack::object_handle handle = msgpack::unpack(bytes.data(), bytes.size());
    handle.get().convert(packed);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("undecodable write-ahead log record: ") + e.what());
  }
  std::vector<WalPartitionRecord> records;
  records.reserve(packed.size());
  for (auto& in : packed) {
    WalPartitionRecord& out = records.emplace_back();
    out.partition = in.partition;
    if (in.has_hard_state) out.hard_state = consensus::HardState{in.term, std::move(in.voted_for)};
    out.first_new_index = in.first_new_index;
    out.new_entries = std::move(in.new_entries);
    if (in.has_install)
      out.install =
          consensus::SnapshotInstall{in.install_index, in.install_term, std::move(in.install_data)};
  }
  return records;
}

WriteAheadLog::WriteAheadLog(const Options& options, std::uint64_t first_position_min)
    : options_(options) {
  std::filesystem::create_directories(options_.directory);
  check(mdb_env_create(&env_), "mdb_env_create");
  map_size_bytes_ = options_.map_size_initial_bytes;
  try {
    check(mdb_env_set_maxdbs(env_, 2), "mdb_env_set_maxdbs");
    check(mdb_env_set_mapsize(env_, map_size_bytes_), "mdb_env_set_mapsize");
    // Fully synced commits (no NOSYNC, NOMETASYNC or WRITEMAP): a record is
    // durable when append() returns.
    check(mdb_env_open(env_, options_.directory.c_str(), MDB_NOTLS | MDB_NORDAHEAD, 0640),
          "open write-ahead log at " + options_.directory.string());
    MDB_envinfo info{};
    mdb_env_info(env_, &info);
    map_size_bytes_ = std::max<std::uint64_t>(map_size_bytes_, info.me_mapsize);
    Txn txn;
    check(mdb_txn_begin(env_, nullptr, 0, &txn.txn), "begin");
    check(mdb_dbi_open(txn.txn, "wal", MDB_CREATE, &db_), "open wal db");
    Cursor cursor;
    check(mdb_cursor_open(txn.txn, db_, &cursor.cursor), "open cursor");
    MDB_val key{}, value{};
    std::uint64_t last = 0;
    if (mdb_cursor_get(cursor.cursor, &key, &value, MDB_LAST) == MDB_SUCCESS)
      last = read_position(key);
    mdb_cursor_close(cursor.cursor);
    cursor.cursor = nullptr;
    check(mdb_txn_commit(txn.txn), "commit");
    txn.txn = nullptr;
    next_position_ = std::max(last + 1, first_position_min);
    forgotten_through_ = 0;
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

WriteAheadLog::~WriteAheadLog() {
  mdb_env_close(env_);
}

bool WriteAheadLog::grow_map() {
  if (map_size_bytes_ >= options_.map_size_max_bytes) return false;
  const std::uint64_t next = std::min(map_size_bytes_ * 2, options_.map_size_max_bytes);
  // Legal here: the log's only writer is between transactions, and nothing
  // reads it while the node runs.
  if (mdb_env_set_mapsize(env_, next) != MDB_SUCCESS) return false;
  map_size_bytes_ = next;
  return true;
}

std::optional<std::uint64_t> WriteAheadLog::append(std::string_view record,
                                                   std::uint64_t forget_through,
                                                   std::string& error) {
  while (true) {
    Txn txn;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn.txn);
    const char* what = "begin";
    if (rc == MDB_SUCCESS && forget_through > forgotten_through_) {
      // The oldest records first: a cursor from the start, never past
      // `forget_through`.
      what = "forget";
      Cursor cursor;
      rc = mdb_cursor_open(txn.txn, db_, &cursor.cursor);
      MDB_val key{}, value{};
      if (rc == MDB_SUCCESS) rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_FIRST);
      while (rc == MDB_SUCCESS && read_position(key) <= forget_through) {
        if ((rc = mdb_cursor_del(cursor.cursor, 0)) != MDB_SUCCESS) break;
        // After a delete the cursor points at the next record; GET_CURRENT
        // confirms it, except when the deleted one was the last of its page.
        rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_GET_CURRENT);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
          rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_NEXT);
      }
      if (rc == MDB_NOTFOUND) rc = MDB_SUCCESS;
    }
    const std::string key_bytes = position_key(next_position_);
    if (rc == MDB_SUCCESS) {
      what = "append";
      MDB_val key{key_bytes.size(), const_cast<char*>(key_bytes.data())};
      MDB_val value{record.size(), const_cast<char*>(record.data())};
      rc = mdb_put(txn.txn, db_, &key, &value, MDB_APPEND);
    }
    if (rc == MDB_SUCCESS) {
      what = "commit";
      rc = mdb_txn_commit(txn.txn);
      txn.txn = nullptr;  // commit frees it, also on failure
    }
    if (rc == MDB_SUCCESS) {
      forgotten_through_ = std::max(forgotten_through_, forget_through);
      return next_position_++;
    }
    if (txn.txn) {
      mdb_txn_abort(txn.txn);
      txn.txn = nullptr;
    }
    if (rc == MDB_MAP_FULL && grow_map()) continue;
    error = std::string("write-ahead log ") + what + ": " + mdb_strerror(rc);
    return std::nullopt;
  }
}

void WriteAheadLog::replay(std::uint64_t after_position, const Visit& visit) const {
  Txn txn;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn.txn), "read transaction");
  Cursor cursor;
  check(mdb_cursor_open(txn.txn, db_, &cursor.cursor), "open cursor");
  const std::string start = position_key(after_position + 1);
  MDB_val key{start.size(), const_cast<char*>(start.data())}, value{};
  int rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS) {
    visit(read_position(key),
          std::string_view(static_cast<const char*>(value.mv_data), value.mv_size));
    rc = mdb_cursor_get(cursor.cursor, &key, &value, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) check(rc, "replay write-ahead log");
}

std::uint64_t WriteAheadLog::bytes_used() const {
  MDB_envinfo info{};
  MDB_stat stat{};
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &stat);
  return (info.me_last_pgno + 1) * static_cast<std::uint64_t>(stat.ms_psize);
}

std::size_t replay_write_ahead_log(const WriteAheadLog& wal, MessageStore& store) {
  constexpr std::size_t kRecordsPerTransaction = 1024;
  std::vector<std::vector<WalPartitionRecord>> records;
  std::uint64_t last_position = 0;
  std::size_t replayed = 0;
  auto flush = [&] {
    if (records.empty()) return;
    std::vector<consensus::Ready> readies;
    std::vector<PartitionId> partitions;
    for (auto& record : records)
      for (auto& partition : record) {
        consensus::Ready& ready = readies.emplace_back();
        ready.hard_state = std::move(partition.hard_state);
        ready.first_new_index = partition.first_new_index;
        ready.new_entries = std::move(partition.new_entries);
        ready.install = std::move(partition.install);
        partitions.push_back(partition.partition);
      }
    std::vector<PartitionWrite> writes;
    for (std::size_t i = 0; i < readies.size(); ++i) writes.push_back({partitions[i], &readies[i]});
    std::vector<std::vector<AppendOutcome>> outcomes;
    std::string error;
    if (store.write_turn(writes, outcomes, error, {}, last_position) !=
        MessageStore::WriteResult::kDurable)
      throw std::runtime_error("replaying the write-ahead log failed: " + error);
    replayed += records.size();
    records.clear();
  };
  wal.replay(store.wal_checkpoint(), [&](std::uint64_t position, std::string_view bytes) {
    last_position = position;
    records.push_back(decode_wal_record(bytes));
    if (records.size() >= kRecordsPerTransaction) flush();
  });
  flush();
  return replayed;
}

}  // namespace chat4all::storage
