#include "nodes/storage/store_metrics.h"

#include <exception>

#include "common/metrics.h"

namespace chat4all::storage {

namespace {

constexpr const char* kBytesName = "chat4all_storage_bytes";
constexpr const char* kBytesHelp =
    "Bytes on disk by store table (LMDB pages of the table's B-tree, overflow pages included), "
    "free pages of the store file (table=\"free\", reused before the file grows) and the "
    "write-ahead log's file (table=\"write_ahead_log\")";

Gauge& bytes_of(const std::string& table) {
  return metrics().gauge(kBytesName, kBytesHelp, "table=\"" + table + "\"");
}

}  // namespace

void publish_store_usage(const MessageStore& store, const WriteAheadLog& wal) {
  MessageStore::Usage usage;
  try {
    usage = store.usage();
  } catch (const std::exception&) {
    return;  // a read transaction could not start: the figures stay as they were until next time
  }
  for (const auto& [table, bytes] : usage.table_bytes)
    bytes_of(table).set(static_cast<std::int64_t>(bytes));
  bytes_of("free").set(static_cast<std::int64_t>(usage.free_bytes));
  bytes_of("write_ahead_log").set(static_cast<std::int64_t>(wal.bytes_used()));
  metrics()
      .gauge("chat4all_storage_map_used_bytes",
             "Bytes of the store's LMDB map up to its last page (free pages included: LMDB reuses "
             "them, but a commit can need more than it may reuse yet)")
      .set(static_cast<std::int64_t>(usage.used_bytes));
  metrics()
      .gauge("chat4all_storage_map_max_bytes",
             "The store map's configured maximum (storage.map_size_max_mb)")
      .set(static_cast<std::int64_t>(usage.map_max_bytes));
  metrics()
      .fraction_gauge("chat4all_storage_map_used_ratio",
                      "chat4all_storage_map_used_bytes over chat4all_storage_map_max_bytes; over "
                      "0.9 leaders refuse new writes with 507 (reads and retries still answered)")
      .set(usage.map_max_bytes ? double(usage.used_bytes) / double(usage.map_max_bytes) : 0);
}

}  // namespace chat4all::storage
