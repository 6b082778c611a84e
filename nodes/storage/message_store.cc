#include "nodes/storage/message_store.h"

#include <lmdb.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <msgpack.hpp>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "common/codec.h"
#include "nodes/storage/domain.h"
#include "nodes/storage/erasure.h"
#include "nodes/storage/lmdb_support.h"
#include "nodes/storage/message_record.h"

namespace chat4all::storage {

namespace {

constexpr std::size_t kDigestBytes = 16;
// Marks a dedup record whose digest covers channels and metadata too.
constexpr char kDigestTag = '\x02';

using lmdb::as_val;
using lmdb::CursorGuard;
using lmdb::TxnGuard;

std::string seq_bytes(std::uint64_t seq) {
  return lmdb::u64_bytes(seq);
}

std::uint64_t read_seq(const void* data) {
  return lmdb::read_u64(data);
}

constexpr std::size_t kPrefixBytes = 4;
// 3 added the `records` table to layout 2 (it starts empty); 4 put the
// write-ahead log beside the tables (its checkpoint starts at 0); 5 writes
// messages without the fields their key holds (nodes/storage/message_record.h),
// and reads the older form too. All are upgraded in place; a build of an
// older layout refuses a newer store, which it would misread.
constexpr std::uint32_t kLayoutVersion = 5;
constexpr std::uint32_t kUpgradableLayoutVersions[] = {2, 3, 4};
const std::string kCheckpointKey = "wal_checkpoint";

std::string u32_bytes(std::uint32_t value) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (24 - 8 * i));
  return out;
}

std::string partition_prefix(PartitionId partition) {
  static_assert(sizeof(PartitionId) == kPrefixBytes);
  return u32_bytes(partition);
}

std::string log_key(PartitionId partition, std::uint64_t index) {
  return partition_prefix(partition) + seq_bytes(index);
}

std::string head_key(PartitionId partition, std::string_view conversation_id) {
  std::string key = partition_prefix(partition);
  key += conversation_id;
  return key;
}

std::string message_key(PartitionId partition, std::string_view conversation_id,
                        std::uint64_t seq) {
  std::string key = head_key(partition, conversation_id);
  key.push_back('\0');
  key += seq_bytes(seq);
  return key;
}

std::string dedup_key(PartitionId partition, std::string_view conversation_id,
                      std::string_view message_id) {
  std::string key = head_key(partition, conversation_id);
  key.push_back('\0');
  key += message_id;
  return key;
}

std::string digest_of(const msgpack::sbuffer& buffer) {
  std::string digest(kDigestBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(digest.data()), kDigestBytes,
                     reinterpret_cast<const unsigned char*>(buffer.data()), buffer.size(), nullptr,
                     0);
  return digest;
}

// What a retry must repeat to count as the same message: who sends it to whom, what it says,
// on which channels, with which metadata. Recipients and channels are sets, so their order
// does not matter; the frontend writes metadata as canonical JSON (sorted keys).
std::string content_digest(const wire::AppendRequest& request) {
  std::vector<std::string> recipients = request.recipients, channels = request.channels;
  std::sort(recipients.begin(), recipients.end());
  std::sort(channels.begin(), channels.end());
  msgpack::sbuffer buffer;
  msgpack::pack(
      buffer, std::tie(request.sender_id, recipients, request.payload, channels, request.metadata));
  return digest_of(buffer);
}

// The digest dedup records held before channels and metadata were part of it (records without
// kDigestTag): a retry of such a message is compared on what was covered then.
std::string legacy_content_digest(const wire::AppendRequest& request) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, std::tie(request.sender_id, request.recipients, request.payload));
  return digest_of(buffer);
}

// A dedup record: the message's seq, the digest of its content, and kDigestTag.
std::string dedup_record(std::uint64_t seq, const std::string& digest) {
  return seq_bytes(seq) + digest + kDigestTag;
}

bool same_content(const MDB_val& record, const wire::AppendRequest& request) {
  const char* bytes = static_cast<const char*>(record.mv_data);
  if (record.mv_size == 8 + kDigestBytes + 1 && bytes[8 + kDigestBytes] == kDigestTag)
    return std::memcmp(bytes + 8, content_digest(request).data(), kDigestBytes) == 0;
  if (record.mv_size == 8 + kDigestBytes)
    return std::memcmp(bytes + 8, legacy_content_digest(request).data(), kDigestBytes) == 0;
  return false;
}

void check(int rc, const char* what) {
  lmdb::check(rc, what);
}

// The consensus bookkeeping of one partition, one record per partition.
struct PersistedState {
  std::uint64_t term = 0;
  std::string voted_for;
  std::uint64_t snapshot_index = 0, snapshot_term = 0, applied_index = 0;
  MSGPACK_DEFINE(term, voted_for, snapshot_index, snapshot_term, applied_index);
};

template <typename T>
std::string pack(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return std::string(buffer.data(), buffer.size());
}

template <typename T>
T unpack(const MDB_val& value) {
  msgpack::object_handle handle =
      msgpack::unpack(static_cast<const char*>(value.mv_data), value.mv_size);
  return handle.get().as<T>();
}

}  // namespace

namespace {

// An LMDB call failed inside a write turn; the turn is abandoned.
struct LmdbFailure {
  int rc;
  const char* what;
};

void must(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw LmdbFailure{rc, what};
}

bool starts_with(const MDB_val& key, std::string_view prefix) {
  return key.mv_size >= prefix.size() &&
         std::memcmp(key.mv_data, prefix.data(), prefix.size()) == 0;
}

// Deletes the keys from `from` on that start with `prefix` and, with `last`,
// are not greater than `last`.
void delete_range(MDB_txn* txn, MDB_dbi db, const std::string& from, std::string_view prefix,
                  const std::string* last = nullptr) {
  CursorGuard guard;
  must(mdb_cursor_open(txn, db, &guard.cursor), "open cursor");
  MDB_cursor* cursor = guard.cursor;
  MDB_val key = as_val(from), value{};
  int rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && starts_with(key, prefix)) {
    if (last && std::string_view(static_cast<const char*>(key.mv_data), key.mv_size) > *last) break;
    if ((rc = mdb_cursor_del(cursor, 0)) != MDB_SUCCESS) break;
    rc = mdb_cursor_get(cursor, &key, &value, MDB_GET_CURRENT);
    if (rc == MDB_NOTFOUND) break;  // deleted the last record of the database
    // After a delete the cursor already points at the next record; GET_CURRENT
    // confirms it, except when it was the last one on its page.
    if (rc != MDB_SUCCESS) rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) must(rc, "delete range");
}

// Visits every record whose key starts with `prefix`, handing over the key
// without the prefix.
template <typename Visit>
void for_each_with_prefix(MDB_txn* txn, MDB_dbi db, const std::string& prefix, Visit visit) {
  CursorGuard guard;
  must(mdb_cursor_open(txn, db, &guard.cursor), "open cursor");
  MDB_val key = as_val(prefix), value{};
  int rc = mdb_cursor_get(guard.cursor, &key, &value, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && starts_with(key, prefix)) {
    visit(std::string_view(static_cast<const char*>(key.mv_data) + prefix.size(),
                           key.mv_size - prefix.size()),
          value);
    rc = mdb_cursor_get(guard.cursor, &key, &value, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) must(rc, "scan");
}

PersistedState load_state(MDB_txn* txn, MDB_dbi db, PartitionId partition) {
  const std::string key_bytes = partition_prefix(partition);
  MDB_val key = as_val(key_bytes), value{};
  const int rc = mdb_get(txn, db, &key, &value);
  if (rc == MDB_NOTFOUND) return {};
  must(rc, "read consensus state");
  return unpack<PersistedState>(value);
}

// A head record: the last seq and the stored time of that message (layout 2
// stored only the seq).
struct Head {
  std::uint64_t seq = 0;
  std::int64_t stored_at_ms = 0;
};

Head read_head(const MDB_val& value) {
  Head head;
  head.seq = read_seq(value.mv_data);
  if (value.mv_size >= 16)
    head.stored_at_ms =
        static_cast<std::int64_t>(read_seq(static_cast<const char*>(value.mv_data) + 8));
  return head;
}

std::string head_bytes(const Head& head) {
  return seq_bytes(head.seq) + seq_bytes(static_cast<std::uint64_t>(head.stored_at_ms));
}

// The domain logic's view of one partition inside one LMDB transaction.
class LmdbPartitionState final : public PartitionState {
 public:
  struct Tables {
    MDB_dbi messages, heads, dedup, records;
  };
  LmdbPartitionState(MDB_txn* txn, const Tables& tables, PartitionId partition)
      : txn_(txn), tables_(tables), partition_(partition), prefix_(partition_prefix(partition)) {}

  std::optional<std::string> get(std::string_view key) const override {
    const std::string full = prefix_ + std::string(key);
    MDB_val k = as_val(full), value{};
    const int rc = mdb_get(txn_, tables_.records, &k, &value);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    must(rc, "read record");
    return std::string(static_cast<const char*>(value.mv_data), value.mv_size);
  }
  void put(std::string_view key, std::string_view value) override {
    const std::string full = prefix_ + std::string(key);
    MDB_val k = as_val(full), v = as_val(value);
    must(mdb_put(txn_, tables_.records, &k, &v, 0), "put record");
  }
  void erase(std::string_view key) override {
    const std::string full = prefix_ + std::string(key);
    MDB_val k = as_val(full);
    const int rc = mdb_del(txn_, tables_.records, &k, nullptr);
    if (rc != MDB_NOTFOUND) must(rc, "delete record");
  }
  void scan(std::string_view prefix, std::string_view after, const Visit& visit) const override {
    const std::string full_prefix = prefix_ + std::string(prefix);
    const std::string start = after.empty() ? full_prefix : prefix_ + std::string(after);
    CursorGuard guard;
    must(mdb_cursor_open(txn_, tables_.records, &guard.cursor), "open cursor");
    MDB_val key = as_val(start), value{};
    int rc = mdb_cursor_get(guard.cursor, &key, &value, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && starts_with(key, full_prefix)) {
      const std::string_view relative(static_cast<const char*>(key.mv_data) + prefix_.size(),
                                      key.mv_size - prefix_.size());
      if (after.empty() || relative != after) {
        if (!visit(relative,
                   std::string_view(static_cast<const char*>(value.mv_data), value.mv_size)))
          return;
      }
      rc = mdb_cursor_get(guard.cursor, &key, &value, MDB_NEXT);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) must(rc, "scan records");
  }
  std::optional<wire::StoredMessage> message(std::string_view conversation_id,
                                             std::uint64_t seq) const override {
    const std::string key_bytes = message_key(partition_, conversation_id, seq);
    MDB_val key = as_val(key_bytes), value{};
    const int rc = mdb_get(txn_, tables_.messages, &key, &value);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    must(rc, "read message");
    return decode_message_record(
        conversation_id, seq,
        std::string_view(static_cast<const char*>(value.mv_data), value.mv_size));
  }
  std::uint64_t head(std::string_view conversation_id) const override {
    return head_record(conversation_id).seq;
  }
  Head head_record(std::string_view conversation_id) const {
    const std::string key_bytes = head_key(partition_, conversation_id);
    MDB_val key = as_val(key_bytes), value{};
    const int rc = mdb_get(txn_, tables_.heads, &key, &value);
    if (rc == MDB_NOTFOUND) return {};
    must(rc, "read head");
    return read_head(value);
  }
  std::optional<std::uint64_t> seq_of(std::string_view conversation_id,
                                      std::string_view message_id) const override {
    const std::string key_bytes = dedup_key(partition_, conversation_id, message_id);
    MDB_val key = as_val(key_bytes), value{};
    const int rc = mdb_get(txn_, tables_.dedup, &key, &value);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    must(rc, "read dedup");
    return read_seq(value.mv_data);
  }
  void erase_message(std::string_view conversation_id, std::uint64_t seq,
                     std::string_view message_id) override {
    for (auto [db, key_bytes] :
         {std::pair{tables_.messages, message_key(partition_, conversation_id, seq)},
          std::pair{tables_.dedup, dedup_key(partition_, conversation_id, message_id)}}) {
      MDB_val key = as_val(key_bytes);
      const int rc = mdb_del(txn_, db, &key, nullptr);
      if (rc != MDB_NOTFOUND) must(rc, "delete expired message");
    }
  }
  void replace_message(const wire::StoredMessage& tombstone) override {
    const std::string message_bytes =
        message_key(partition_, tombstone.conversation_id, tombstone.seq);
    const std::string value = encode_message_record(tombstone);
    MDB_val key = as_val(message_bytes), v = as_val(value);
    must(mdb_put(txn_, tables_.messages, &key, &v, 0), "put tombstone");
    // The digest of what it said would tell a guess right: it goes too, so a retry of the
    // erased message is a conflict from now on.
    const std::string id_bytes =
        dedup_key(partition_, tombstone.conversation_id, tombstone.message_id);
    const std::string record = dedup_record(tombstone.seq, std::string(kDigestBytes, '\0'));
    MDB_val id_key = as_val(id_bytes), r = as_val(record);
    must(mdb_put(txn_, tables_.dedup, &id_key, &r, 0), "put tombstone dedup");
  }

 private:
  MDB_txn* txn_;
  Tables tables_;
  PartitionId partition_;
  std::string prefix_;
};

}  // namespace

MessageStore::MessageStore(const Options& options) : options_(options) {
  std::filesystem::create_directories(options_.directory);
  check(mdb_env_create(&env_), "mdb_env_create");
  map_size_bytes_ = options_.map_size_initial_bytes;
  try {
    check(mdb_env_set_maxdbs(env_, 8), "mdb_env_set_maxdbs");
    check(mdb_env_set_mapsize(env_, map_size_bytes_), "mdb_env_set_mapsize");
    // MDB_NOTLS: read transactions are not tied to a thread. MDB_NOMETASYNC:
    // one fsync per commit instead of two; LMDB keeps its integrity, and a
    // crash may undo the last commit only, which the write-ahead log still
    // holds (ApplyWorker lets the log forget a commit's records only once
    // the commit after it has returned, and that one's fsync carried the
    // earlier meta page). No NOSYNC, no WRITEMAP.
    check(mdb_env_open(env_, options_.directory.c_str(), MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC,
                       0640),
          ("open LMDB at " + options_.directory.string()).c_str());
    MDB_envinfo info{};
    mdb_env_info(env_, &info);
    map_size_bytes_ = std::max<std::uint64_t>(map_size_bytes_, info.me_mapsize);

    TxnGuard guard;
    check(mdb_txn_begin(env_, nullptr, 0, &guard.txn), "mdb_txn_begin");
    check(mdb_dbi_open(guard.txn, "raft_state", MDB_CREATE, &state_db_), "open raft_state db");
    check(mdb_dbi_open(guard.txn, "raft_log", MDB_CREATE, &log_db_), "open raft_log db");
    check(mdb_dbi_open(guard.txn, "messages", MDB_CREATE, &messages_db_), "open messages db");
    check(mdb_dbi_open(guard.txn, "heads", MDB_CREATE, &heads_db_), "open heads db");
    check(mdb_dbi_open(guard.txn, "dedup", MDB_CREATE, &dedup_db_), "open dedup db");
    check(mdb_dbi_open(guard.txn, "records", MDB_CREATE, &records_db_), "open records db");
    check_layout(guard.txn);
    check(mdb_txn_commit(guard.txn), "commit db handles");
    guard.txn = nullptr;
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

void MessageStore::check_layout(MDB_txn* txn) {
  // Stores written before replication keyed records without the partition;
  // reading them with this layout would misplace every message.
  check(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta_db_), "open meta db");
  const MDB_dbi meta_db = meta_db_;
  const std::string layout_key = "layout";
  const std::string current = u32_bytes(kLayoutVersion);
  MDB_val key = as_val(layout_key), value{};
  const int rc = mdb_get(txn, meta_db, &key, &value);
  if (rc == MDB_SUCCESS) {
    const std::string_view stored(static_cast<const char*>(value.mv_data), value.mv_size);
    if (std::any_of(std::begin(kUpgradableLayoutVersions), std::end(kUpgradableLayoutVersions),
                    [&](std::uint32_t version) { return stored == u32_bytes(version); })) {
      MDB_val version = as_val(current);
      check(mdb_put(txn, meta_db, &key, &version, 0), "upgrade layout version");
      return;
    }
    if (stored != current) {
      std::uint32_t version = 0;
      for (unsigned char byte : stored) version = (version << 8) | byte;
      throw std::runtime_error(options_.directory.string() + ": store has layout version " +
                               (stored.size() == 4 ? std::to_string(version) : "(unreadable)") +
                               ", written by a newer build; this build reads layouts up to " +
                               std::to_string(kLayoutVersion));
    }
    return;
  }
  check(rc == MDB_NOTFOUND ? MDB_SUCCESS : rc, "read layout version");
  MDB_stat stat{};
  check(mdb_stat(txn, messages_db_, &stat), "stat messages db");
  if (stat.ms_entries > 0)
    throw std::runtime_error(
        options_.directory.string() +
        ": store was written by an earlier layout (messages without partition keys); move the "
        "node's data directory away to start it empty");
  MDB_val version = as_val(current);
  check(mdb_put(txn, meta_db, &key, &version, 0), "write layout version");
}

MessageStore::~MessageStore() {
  batch_abort();
  mdb_env_close(env_);
}

bool MessageStore::grow_map() {
  if (map_size_bytes_ >= options_.map_size_max_bytes) return false;
  const std::uint64_t next = std::min(map_size_bytes_ * 2, options_.map_size_max_bytes);
  // Legal once the reads under way are done: the writer is between
  // transactions, and readers wait on the lock.
  std::unique_lock lock(resize_mutex_);
  if (mdb_env_set_mapsize(env_, next) != MDB_SUCCESS) return false;
  map_size_bytes_ = next;
  return true;
}

bool MessageStore::nearly_full() const {
  // Measured against the maximum, not the current map: a store reopened with
  // a smaller initial size maps just what its data needs, below the maximum.
  // Pages on the free list count as used: LMDB reuses them only once no
  // snapshot still sees them, so in a small map a commit can run out of room
  // with many of them listed.
  MDB_envinfo info{};
  MDB_stat stat{};
  std::shared_lock lock(resize_mutex_);
  mdb_env_info(env_, &info);
  mdb_env_stat(env_, &stat);
  const double used = double(info.me_last_pgno + 1) * stat.ms_psize;
  return used > 0.9 * double(options_.map_size_max_bytes);
}

std::uint64_t MessageStore::free_pages(MDB_txn* txn) {
  // The free list (LMDB's database 0): one record per freeing transaction,
  // its value a count of page numbers followed by them.
  constexpr MDB_dbi kFreeDbi = 0;
  CursorGuard guard;
  if (mdb_cursor_open(txn, kFreeDbi, &guard.cursor) != MDB_SUCCESS) return 0;
  MDB_val key{}, value{};
  std::uint64_t pages = 0;
  while (mdb_cursor_get(guard.cursor, &key, &value, MDB_NEXT) == MDB_SUCCESS) {
    if (value.mv_size < sizeof(std::size_t)) continue;
    std::size_t count = 0;
    std::memcpy(&count, value.mv_data, sizeof count);
    pages += count;
  }
  return pages;
}

MessageStore::Usage MessageStore::usage() const {
  Usage usage;
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  const std::pair<const char*, MDB_dbi> tables[] = {
      {"raft_state", state_db_}, {"raft_log", log_db_}, {"messages", messages_db_},
      {"heads", heads_db_},      {"dedup", dedup_db_},  {"records", records_db_},
      {"meta", meta_db_}};
  std::uint64_t page_bytes = 4096;
  for (const auto& [name, db] : tables) {
    MDB_stat stat{};
    lmdb::check(mdb_stat(guard.txn, db, &stat), std::string("stat ") + name);
    page_bytes = stat.ms_psize;
    usage.table_bytes.emplace_back(
        name, (stat.ms_branch_pages + stat.ms_leaf_pages + stat.ms_overflow_pages) * page_bytes);
  }
  usage.free_bytes = free_pages(guard.txn) * page_bytes;
  usage.used_bytes = (info.me_last_pgno + 1) * page_bytes;
  usage.map_max_bytes = options_.map_size_max_bytes;
  return usage;
}

std::uint64_t MessageStore::wal_checkpoint() const {
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
  MDB_val key = as_val(kCheckpointKey), value{};
  const int rc = mdb_get(guard.txn, meta_db_, &key, &value);
  if (rc == MDB_NOTFOUND) return 0;
  check(rc, "read the write-ahead log checkpoint");
  return value.mv_size == 8 ? read_seq(value.mv_data) : 0;
}

consensus::Restored MessageStore::load_partition(PartitionId partition) const {
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
  consensus::Restored restored;
  try {
    const PersistedState state = load_state(guard.txn, state_db_, partition);
    restored.hard_state = {state.term, state.voted_for};
    restored.snapshot_index = state.snapshot_index;
    restored.snapshot_term = state.snapshot_term;
    restored.applied_index = state.applied_index;
    std::uint64_t expected = state.snapshot_index + 1;
    for_each_with_prefix(guard.txn, log_db_, partition_prefix(partition),
                         [&](std::string_view key, const MDB_val& value) {
                           const std::uint64_t index = read_seq(key.data());
                           if (index <= state.snapshot_index) return;  // trimmed next turn
                           if (index != expected)
                             throw std::runtime_error("partition " + std::to_string(partition) +
                                                      ": log has a hole before index " +
                                                      std::to_string(index));
                           restored.entries.push_back(unpack<wire::LogEntry>(value));
                           ++expected;
                         });
  } catch (const LmdbFailure& failure) {
    throw std::runtime_error(std::string(failure.what) + ": " + mdb_strerror(failure.rc));
  }
  return restored;
}

MessageStore::WriteResult MessageStore::write_turn(
    const std::vector<PartitionWrite>& writes, std::vector<std::vector<AppendOutcome>>& outcomes,
    std::string& error, const OutcomesReady& outcomes_ready, std::uint64_t wal_checkpoint) {
  while (true) {
    const WriteResult result = try_write(writes, outcomes, error, outcomes_ready, wal_checkpoint);
    if (result != WriteResult::kFull || !grow_map()) return result;
  }
}

MessageStore::WriteResult MessageStore::try_write(const std::vector<PartitionWrite>& writes,
                                                  std::vector<std::vector<AppendOutcome>>& outcomes,
                                                  std::string& error,
                                                  const OutcomesReady& outcomes_ready,
                                                  std::uint64_t wal_checkpoint) {
  TxnGuard guard;
  try {
    must(mdb_txn_begin(env_, nullptr, 0, &guard.txn), "begin");
    apply_writes(guard.txn, writes, outcomes);
    if (wal_checkpoint) put_checkpoint(guard.txn, wal_checkpoint);
    if (outcomes_ready) outcomes_ready(outcomes);
    MDB_txn* txn = guard.txn;
    guard.txn = nullptr;  // commit frees the transaction, also on failure
    must(mdb_txn_commit(txn), "commit");
    return WriteResult::kDurable;
  } catch (const LmdbFailure& failure) {
    error = std::string(failure.what) + ": " + mdb_strerror(failure.rc);
    return failure.rc == MDB_MAP_FULL ? WriteResult::kFull : WriteResult::kFailed;
  } catch (const std::exception& e) {
    // A snapshot or log record that does not decode: nothing is written.
    error = std::string("undecodable record: ") + e.what();
    return WriteResult::kFailed;
  }
}

void MessageStore::put_checkpoint(MDB_txn* txn, std::uint64_t wal_checkpoint) {
  const std::string position = seq_bytes(wal_checkpoint);
  MDB_val key = as_val(kCheckpointKey), value = as_val(position);
  must(mdb_put(txn, meta_db_, &key, &value, 0), "put the write-ahead log checkpoint");
}

MessageStore::WriteResult MessageStore::batch_add(const std::vector<PartitionWrite>& writes,
                                                  std::vector<std::vector<AppendOutcome>>& outcomes,
                                                  std::string& error) {
  try {
    if (!batch_txn_) must(mdb_txn_begin(env_, nullptr, 0, &batch_txn_), "begin");
    apply_writes(batch_txn_, writes, outcomes);
    return WriteResult::kDurable;
  } catch (const LmdbFailure& failure) {
    batch_abort();
    error = std::string(failure.what) + ": " + mdb_strerror(failure.rc);
    return failure.rc == MDB_MAP_FULL ? WriteResult::kFull : WriteResult::kFailed;
  } catch (const std::exception& e) {
    batch_abort();
    error = std::string("undecodable record: ") + e.what();
    return WriteResult::kFailed;
  }
}

MessageStore::WriteResult MessageStore::batch_commit(std::uint64_t wal_checkpoint,
                                                     std::string& error) {
  if (!batch_txn_) return WriteResult::kDurable;
  try {
    if (wal_checkpoint) put_checkpoint(batch_txn_, wal_checkpoint);
    MDB_txn* txn = std::exchange(batch_txn_, nullptr);  // commit frees it, also on failure
    must(mdb_txn_commit(txn), "commit");
    return WriteResult::kDurable;
  } catch (const LmdbFailure& failure) {
    batch_abort();
    error = std::string(failure.what) + ": " + mdb_strerror(failure.rc);
    return failure.rc == MDB_MAP_FULL ? WriteResult::kFull : WriteResult::kFailed;
  }
}

void MessageStore::batch_abort() {
  if (batch_txn_) mdb_txn_abort(std::exchange(batch_txn_, nullptr));
}

bool MessageStore::grow() {
  batch_abort();
  return grow_map();
}

void MessageStore::apply_writes(MDB_txn* txn, const std::vector<PartitionWrite>& writes,
                                std::vector<std::vector<AppendOutcome>>& outcomes) {
  outcomes.assign(writes.size(), {});
  {
    auto put = [&](MDB_dbi db, std::string_view key_bytes, std::string_view value_bytes,
                   const char* what) {
      MDB_val key = as_val(key_bytes), value = as_val(value_bytes);
      must(mdb_put(txn, db, &key, &value, 0), what);
    };
    for (std::size_t w = 0; w < writes.size(); ++w) {
      const PartitionId partition = writes[w].partition;
      const consensus::Ready& ready = *writes[w].ready;
      const std::string prefix = partition_prefix(partition);
      PersistedState state = load_state(txn, state_db_, partition);
      const PersistedState before = state;

      if (ready.hard_state) {
        state.term = ready.hard_state->term;
        state.voted_for = ready.hard_state->voted_for;
      }
      if (ready.install) {
        const auto snapshot = [&] {
          msgpack::object_handle handle =
              msgpack::unpack(ready.install->data.data(), ready.install->data.size());
          return handle.get().as<wire::PartitionSnapshot>();
        }();
        for (MDB_dbi db : {messages_db_, heads_db_, dedup_db_, records_db_})
          delete_range(txn, db, prefix, prefix);
        delete_range(txn, log_db_, prefix, prefix);
        for (const auto& [key, value] : snapshot.messages)
          put(messages_db_, prefix + key, value, "install message");
        for (const auto& [key, value] : snapshot.heads)
          put(heads_db_, prefix + key, value, "install head");
        for (const auto& [key, value] : snapshot.dedup)
          put(dedup_db_, prefix + key, value, "install dedup");
        for (const auto& [key, value] : snapshot.records)
          put(records_db_, prefix + key, value, "install record");
        state.snapshot_index = state.applied_index = ready.install->index;
        state.snapshot_term = ready.install->term;
      }
      if (ready.first_new_index) {
        delete_range(txn, log_db_, log_key(partition, ready.first_new_index), prefix);
        std::uint64_t index = ready.first_new_index;
        for (const auto& entry : ready.new_entries)
          put(log_db_, log_key(partition, index++), pack(entry), "append log");
      }

      // Apply committed entries.
      LmdbPartitionState partition_state(txn, {messages_db_, heads_db_, dedup_db_, records_db_},
                                         partition);
      auto& applied = outcomes[w];
      applied.resize(ready.to_apply.size());
      for (std::size_t k = 0; k < ready.to_apply.size(); ++k) {
        const wire::LogEntry& entry = ready.to_apply[k];
        state.applied_index = ready.first_apply_index + k;
        if (entry.data.empty()) {
          applied[k].status = wire::Status::kOk;
          continue;
        }
        wire::ReplicatedCommand command;
        try {
          msgpack::object_handle handle = msgpack::unpack(entry.data.data(), entry.data.size());
          handle.get().convert(command);
        } catch (const std::exception&) {
          applied[k] = AppendOutcome{wire::Status::kInvalid, 0, false, "undecodable log entry"};
          continue;
        }
        AppendOutcome& outcome = applied[k];
        if (command.command.kind != wire::CommandKind::kNone) {
          DomainResult result =
              apply_command(partition_state, partition, command.command, command.stored_at_ms);
          outcome.status = result.status;
          outcome.detail = std::move(result.detail);
          outcome.field = std::move(result.field);
          outcome.body = std::move(result.body);
          outcome.events = std::move(result.events);
          outcome.outbox_dropped = std::move(result.outbox_dropped);
          outcome.freed_blobs = std::move(result.freed_blobs);
          if (command.command.kind == wire::CommandKind::kEraseMessages &&
              outcome.status == wire::Status::kOk)
            scrub_erased_from_log(txn, partition, command.command.body, outcome.body,
                                  state.applied_index);
          continue;
        }
        wire::AppendRequest& request = command.append;
        // A message already stored is answered as stored before anything else is checked: the
        // members may have changed since, and a client retrying after a 504 must still learn
        // that its message is there. Only the sender of that same content gets that answer.
        const std::string id_key =
            dedup_key(partition, request.conversation_id, request.message_id);
        MDB_val key = as_val(id_key), value{};
        int rc = mdb_get(txn, dedup_db_, &key, &value);
        if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) must(rc, "dedup lookup");
        const bool stored_before = rc == MDB_SUCCESS;
        if (stored_before && same_content(value, request)) {
          outcome.seq = read_seq(value.mv_data);
          outcome.duplicate = true;
          outcome.status = wire::Status::kOk;
          continue;
        }
        // The digest covers the recipients as sent (before the default fills them in).
        const std::string digest = content_digest(request);
        DomainResult check = check_append(partition_state, request);
        // Another message under this id is a conflict for whoever may see the conversation;
        // to anyone else the conversation does not exist, so they cannot probe its ids.
        if (stored_before && check.status != wire::Status::kNotFound) {
          outcome.seq = read_seq(value.mv_data);
          outcome.duplicate = true;
          outcome.status = wire::Status::kConflict;
          outcome.detail = "message_id was already used for a different message";
          outcome.field = "message_id";
          continue;
        }
        if (check.status != wire::Status::kOk) {
          // Says whether the id names a message here, so that the frontend releases the
          // tenant's claim on it only when it names none.
          outcome.duplicate = stored_before;
          outcome.status = check.status;
          outcome.detail = std::move(check.detail);
          outcome.field = std::move(check.field);
          continue;
        }

        Head head = partition_state.head_record(request.conversation_id);
        head.seq += 1;
        // Stored times never decrease along a conversation, whichever leader's
        // clock stamped them, so that reads `since` a time can bisect.
        head.stored_at_ms = std::max(head.stored_at_ms, command.stored_at_ms);
        wire::StoredMessage stored{request.conversation_id, head.seq,           request.message_id,
                                   request.sender_id,       request.recipients, request.payload,
                                   request.received_at_ms,  head.stored_at_ms,  request.channels,
                                   request.metadata};
        put(messages_db_, message_key(partition, request.conversation_id, head.seq),
            encode_message_record(stored), "put message");
        put(dedup_db_, id_key, dedup_record(head.seq, digest), "put dedup");
        put(heads_db_, head_key(partition, request.conversation_id), head_bytes(head), "put head");
        outcome.outbox_dropped =
            note_appended(partition_state, partition, stored, request.tenant_id,
                          options_.route_to_channels, outcome.events);
        outcome.status = wire::Status::kOk;
        outcome.seq = head.seq;
      }

      if (ready.trim_to) {
        const std::string last = log_key(partition, ready.trim_to);
        delete_range(txn, log_db_, prefix, prefix, &last);
        state.snapshot_index = ready.trim_to;
        state.snapshot_term = ready.trim_term;
      }
      if (state.term != before.term || state.voted_for != before.voted_for ||
          state.snapshot_index != before.snapshot_index ||
          state.snapshot_term != before.snapshot_term ||
          state.applied_index != before.applied_index)
        put(state_db_, prefix, pack(state), "put consensus state");
    }
  }
}

void MessageStore::scrub_erased_from_log(MDB_txn* txn, PartitionId partition,
                                         const std::string& erase_body,
                                         const std::string& result_body,
                                         std::uint64_t up_to_index) {
  auto erase = codec::unpack_body<wire::EraseMessages>(erase_body);
  auto result = codec::unpack_body<wire::EraseMessagesResult>(result_body);
  if (!erase || !result || !result->done) return;
  const std::string prefix = partition_prefix(partition);
  std::vector<std::pair<std::string, std::string>> replaced;
  for_each_with_prefix(txn, log_db_, prefix, [&](std::string_view key, const MDB_val& value) {
    if (read_seq(key.data()) > up_to_index) return;
    wire::LogEntry entry = unpack<wire::LogEntry>(value);
    if (auto scrubbed = scrubbed_entry(entry.data, erase->conversation_id, erase->user_id)) {
      entry.data = std::move(*scrubbed);
      replaced.emplace_back(prefix + std::string(key), pack(entry));
    }
  });
  for (const auto& [key_bytes, value_bytes] : replaced) {
    MDB_val key = as_val(key_bytes), value = as_val(value_bytes);
    must(mdb_put(txn, log_db_, &key, &value, 0), "scrub log entry");
  }
}

template <typename Reply, typename Read>
Reply MessageStore::with_read_state(PartitionId partition, Read read) const {
  Reply reply;
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  try {
    must(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
    const LmdbPartitionState state(guard.txn, {messages_db_, heads_db_, dedup_db_, records_db_},
                                   partition);
    return read(state);
  } catch (const LmdbFailure& failure) {
    reply.detail = std::string(failure.what) + ": " + mdb_strerror(failure.rc);
  } catch (const std::exception& e) {
    reply.detail = std::string("corrupt record: ") + e.what();
  }
  reply.status = wire::Status::kInternal;
  return reply;
}

wire::ReadReply MessageStore::read_history(PartitionId partition, const wire::ReadRequest& request,
                                           std::uint32_t page_max) const {
  return with_read_state<wire::ReadReply>(partition, [&](const PartitionState& state) {
    return storage::read_history(state, request, page_max);
  });
}

wire::ReadReply MessageStore::read(PartitionId partition, std::string_view conversation_id,
                                   std::uint64_t from_seq, std::uint32_t limit) const {
  return read_history(partition, wire::ReadRequest{std::string(conversation_id), from_seq, limit},
                      limit);
}

wire::QueryReply MessageStore::query(PartitionId partition,
                                     const wire::QueryRequest& request) const {
  return with_read_state<wire::QueryReply>(partition, [&](const PartitionState& state) {
    DomainResult result = run_query(state, request);
    return wire::QueryReply{result.status, std::move(result.body), std::move(result.detail),
                            std::move(result.field)};
  });
}

std::optional<std::uint64_t> MessageStore::stored_seq(PartitionId partition,
                                                      const wire::AppendRequest& request) const {
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
  const std::string id_key = dedup_key(partition, request.conversation_id, request.message_id);
  MDB_val key = as_val(id_key), value{};
  const int rc = mdb_get(guard.txn, dedup_db_, &key, &value);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc, "dedup lookup");
  if (!same_content(value, request)) return std::nullopt;
  return read_seq(value.mv_data);
}

std::string MessageStore::snapshot(PartitionId partition, std::uint64_t& applied_index) const {
  std::shared_lock lock(resize_mutex_);
  TxnGuard guard;
  check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn), "read transaction");
  wire::PartitionSnapshot snapshot;
  try {
    applied_index = load_state(guard.txn, state_db_, partition).applied_index;
    const std::string prefix = partition_prefix(partition);
    auto collect = [](std::vector<std::pair<std::string, std::string>>& into) {
      return [&into](std::string_view key, const MDB_val& value) {
        into.emplace_back(std::string(key),
                          std::string(static_cast<const char*>(value.mv_data), value.mv_size));
      };
    };
    for_each_with_prefix(guard.txn, messages_db_, prefix, collect(snapshot.messages));
    for_each_with_prefix(guard.txn, heads_db_, prefix, collect(snapshot.heads));
    for_each_with_prefix(guard.txn, dedup_db_, prefix, collect(snapshot.dedup));
    for_each_with_prefix(guard.txn, records_db_, prefix, collect(snapshot.records));
  } catch (const LmdbFailure& failure) {
    throw std::runtime_error(std::string(failure.what) + ": " + mdb_strerror(failure.rc));
  }
  return pack(snapshot);
}

}  // namespace chat4all::storage
