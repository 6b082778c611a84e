#include "nodes/storage/message_store.h"

#include <lmdb.h>
#include <sodium.h>

#include <cstring>
#include <msgpack.hpp>
#include <stdexcept>
#include <unordered_map>

namespace chat4all::storage {

namespace {

constexpr std::size_t kDigestBytes = 16;

std::string seq_bytes(std::uint64_t seq) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(seq >> (56 - 8 * i));
  return out;
}

std::uint64_t read_seq(const void* data) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::uint64_t seq = 0;
  for (int i = 0; i < 8; ++i) seq = (seq << 8) | bytes[i];
  return seq;
}

std::string message_key(std::string_view conversation_id, std::uint64_t seq) {
  std::string key(conversation_id);
  key.push_back('\0');
  key += seq_bytes(seq);
  return key;
}

std::string dedup_key(std::string_view conversation_id, std::string_view message_id) {
  std::string key(conversation_id);
  key.push_back('\0');
  key += message_id;
  return key;
}

// What a retry must repeat to count as the same message.
std::string content_digest(const wire::AppendRequest& request) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, std::tie(request.sender_id, request.recipients, request.payload));
  std::string digest(kDigestBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(digest.data()), kDigestBytes,
                     reinterpret_cast<const unsigned char*>(buffer.data()), buffer.size(), nullptr,
                     0);
  return digest;
}

MDB_val as_val(std::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}

void check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw std::runtime_error(std::string(what) + ": " + mdb_strerror(rc));
}

struct TxnGuard {
  MDB_txn* txn = nullptr;
  ~TxnGuard() {
    if (txn) mdb_txn_abort(txn);
  }
};

}  // namespace

MessageStore::MessageStore(const Options& options) : options_(options) {
  std::filesystem::create_directories(options_.directory);
  check(mdb_env_create(&env_), "mdb_env_create");
  map_size_bytes_ = options_.map_size_initial_bytes;
  try {
    check(mdb_env_set_maxdbs(env_, 8), "mdb_env_set_maxdbs");
    check(mdb_env_set_mapsize(env_, map_size_bytes_), "mdb_env_set_mapsize");
    // MDB_NOTLS: read transactions are not tied to a thread. No NOSYNC, no
    // WRITEMAP: a commit returns only after the data and meta page are fsynced.
    check(mdb_env_open(env_, options_.directory.c_str(), MDB_NOTLS | MDB_NORDAHEAD, 0640),
          ("open LMDB at " + options_.directory.string()).c_str());
    MDB_envinfo info{};
    mdb_env_info(env_, &info);
    map_size_bytes_ = std::max<std::uint64_t>(map_size_bytes_, info.me_mapsize);

    TxnGuard guard;
    check(mdb_txn_begin(env_, nullptr, 0, &guard.txn), "mdb_txn_begin");
    check(mdb_dbi_open(guard.txn, "messages", MDB_CREATE, &messages_db_), "open messages db");
    check(mdb_dbi_open(guard.txn, "heads", MDB_CREATE, &heads_db_), "open heads db");
    check(mdb_dbi_open(guard.txn, "dedup", MDB_CREATE, &dedup_db_), "open dedup db");
    check(mdb_txn_commit(guard.txn), "commit db handles");
    guard.txn = nullptr;
  } catch (...) {
    mdb_env_close(env_);
    throw;
  }
}

MessageStore::~MessageStore() {
  mdb_env_close(env_);
}

bool MessageStore::grow_map() {
  if (map_size_bytes_ >= options_.map_size_max_bytes) return false;
  const std::uint64_t next = std::min(map_size_bytes_ * 2, options_.map_size_max_bytes);
  // Legal here: no transaction of this process is active between batches.
  if (mdb_env_set_mapsize(env_, next) != MDB_SUCCESS) return false;
  map_size_bytes_ = next;
  return true;
}

std::vector<AppendOutcome> MessageStore::append_batch(const std::vector<wire::AppendRequest>& batch,
                                                      std::int64_t stored_at_ms) {
  std::vector<AppendOutcome> outcomes;
  std::string error;
  while (true) {
    outcomes.assign(batch.size(), AppendOutcome{});
    const CommitResult result = try_append(batch, stored_at_ms, outcomes, error);
    if (result == CommitResult::kCommitted) return outcomes;
    if (result == CommitResult::kMapFull && grow_map()) continue;
    const auto status =
        result == CommitResult::kMapFull ? wire::Status::kStorageFull : wire::Status::kInternal;
    const std::string detail = result == CommitResult::kMapFull
                                   ? "storage is full (LMDB map at its configured maximum)"
                                   : "storage write failed: " + error;
    for (auto& outcome : outcomes) outcome = AppendOutcome{status, 0, false, detail};
    return outcomes;
  }
}

MessageStore::CommitResult MessageStore::try_append(const std::vector<wire::AppendRequest>& batch,
                                                    std::int64_t stored_at_ms,
                                                    std::vector<AppendOutcome>& outcomes,
                                                    std::string& error) {
  auto classify = [&](int rc, const char* what) {
    error = std::string(what) + ": " + mdb_strerror(rc);
    return rc == MDB_MAP_FULL ? CommitResult::kMapFull : CommitResult::kFailed;
  };
  TxnGuard guard;
  if (int rc = mdb_txn_begin(env_, nullptr, 0, &guard.txn); rc != MDB_SUCCESS)
    return classify(rc, "begin");

  // Heads and ids touched earlier in this batch; LMDB would show them too,
  // but the maps save a lookup per message for busy conversations.
  std::unordered_map<std::string_view, std::uint64_t> heads;
  msgpack::sbuffer encoded(512);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const wire::AppendRequest& request = batch[i];
    const std::string digest = content_digest(request);
    const std::string id_key = dedup_key(request.conversation_id, request.message_id);
    MDB_val key = as_val(id_key), value{};
    int rc = mdb_get(guard.txn, dedup_db_, &key, &value);
    if (rc == MDB_SUCCESS) {
      AppendOutcome& outcome = outcomes[i];
      outcome.seq = read_seq(value.mv_data);
      outcome.duplicate = true;
      const bool same =
          value.mv_size == 8 + kDigestBytes &&
          std::memcmp(static_cast<char*>(value.mv_data) + 8, digest.data(), kDigestBytes) == 0;
      outcome.status = same ? wire::Status::kOk : wire::Status::kConflict;
      if (!same) outcome.detail = "message_id was already used for a different message";
      continue;
    }
    if (rc != MDB_NOTFOUND) return classify(rc, "dedup lookup");

    auto head = heads.find(request.conversation_id);
    if (head == heads.end()) {
      MDB_val head_key = as_val(request.conversation_id), head_value{};
      rc = mdb_get(guard.txn, heads_db_, &head_key, &head_value);
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return classify(rc, "head lookup");
      const std::uint64_t last = rc == MDB_SUCCESS ? read_seq(head_value.mv_data) : 0;
      head = heads.emplace(request.conversation_id, last).first;
    }
    const std::uint64_t seq = ++head->second;

    wire::StoredMessage stored{request.conversation_id, seq,
                               request.message_id,      request.sender_id,
                               request.recipients,      request.payload,
                               request.received_at_ms,  stored_at_ms};
    encoded.clear();
    msgpack::pack(encoded, stored);
    const std::string stored_key = message_key(request.conversation_id, seq);
    MDB_val message_key_val = as_val(stored_key);
    MDB_val message_val{encoded.size(), encoded.data()};
    if ((rc = mdb_put(guard.txn, messages_db_, &message_key_val, &message_val, MDB_NOOVERWRITE)) !=
        MDB_SUCCESS)
      return classify(rc, "put message");

    const std::string id_value = seq_bytes(seq) + digest;
    MDB_val id_val = as_val(id_value);
    if ((rc = mdb_put(guard.txn, dedup_db_, &key, &id_val, 0)) != MDB_SUCCESS)
      return classify(rc, "put dedup");
    outcomes[i] = AppendOutcome{wire::Status::kOk, seq, false, {}};
  }
  for (const auto& [conversation_id, last] : heads) {
    const std::string last_bytes = seq_bytes(last);
    MDB_val head_key = as_val(conversation_id), head_value = as_val(last_bytes);
    if (int rc = mdb_put(guard.txn, heads_db_, &head_key, &head_value, 0); rc != MDB_SUCCESS)
      return classify(rc, "put head");
  }
  MDB_txn* txn = guard.txn;
  guard.txn = nullptr;  // commit frees the transaction, also on failure
  if (int rc = mdb_txn_commit(txn); rc != MDB_SUCCESS) return classify(rc, "commit");
  return CommitResult::kCommitted;
}

HistoryPage MessageStore::read(std::string_view conversation_id, std::uint64_t from_seq,
                               std::uint32_t limit) const {
  HistoryPage page;
  TxnGuard guard;
  if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &guard.txn); rc != MDB_SUCCESS) {
    page.detail = std::string("read transaction: ") + mdb_strerror(rc);
    return page;
  }
  MDB_val head_key = as_val(conversation_id), head_value{};
  if (mdb_get(guard.txn, heads_db_, &head_key, &head_value) == MDB_SUCCESS)
    page.last_seq = read_seq(head_value.mv_data);

  MDB_cursor* cursor = nullptr;
  if (int rc = mdb_cursor_open(guard.txn, messages_db_, &cursor); rc != MDB_SUCCESS) {
    page.detail = std::string("cursor: ") + mdb_strerror(rc);
    return page;
  }
  const std::string start = message_key(conversation_id, from_seq);
  const std::size_t prefix_size = conversation_id.size() + 1;
  MDB_val key = as_val(start), value{};
  int rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
  while (rc == MDB_SUCCESS && page.messages.size() < limit) {
    if (key.mv_size != prefix_size + 8 || std::memcmp(key.mv_data, start.data(), prefix_size) != 0)
      break;
    try {
      msgpack::object_handle handle =
          msgpack::unpack(static_cast<const char*>(value.mv_data), value.mv_size);
      page.messages.push_back(handle.get().as<wire::StoredMessage>());
    } catch (const std::exception& e) {
      mdb_cursor_close(cursor);
      page.messages.clear();
      page.detail = std::string("corrupt message record: ") + e.what();
      return page;
    }
    rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
    page.messages.clear();
    page.detail = std::string("read: ") + mdb_strerror(rc);
    return page;
  }
  page.status = wire::Status::kOk;
  return page;
}

}  // namespace chat4all::storage
