// What the storage node's two LMDB environments (the tables,
// nodes/storage/message_store.h, and the write-ahead log,
// nodes/storage/write_ahead_log.h) share: big-endian u64 keys, which sort
// numerically, and guards that end a transaction or close a cursor on every
// path, exceptions included. Header-only; no state.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace chat4all::storage::lmdb {

inline std::string u64_bytes(std::uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (56 - 8 * i));
  return out;
}

// Reads the 8 bytes at `data` (the caller checked there are 8).
inline std::uint64_t read_u64(const void* data) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | bytes[i];
  return value;
}

inline MDB_val as_val(std::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}

// Throws std::runtime_error naming `what` and LMDB's reason.
inline void check(int rc, const std::string& what) {
  if (rc != MDB_SUCCESS) throw std::runtime_error(what + ": " + mdb_strerror(rc));
}

// Aborts the transaction unless it was handed on (set to nullptr after a commit).
struct TxnGuard {
  MDB_txn* txn = nullptr;
  ~TxnGuard() {
    if (txn) mdb_txn_abort(txn);
  }
};

// Cursors of read-only transactions outlive them unless closed. A write
// transaction's cursor must be closed before its commit: keep the guard in
// a scope that ends first.
struct CursorGuard {
  MDB_cursor* cursor = nullptr;
  ~CursorGuard() {
    if (cursor) mdb_cursor_close(cursor);
  }
};

}  // namespace chat4all::storage::lmdb
