// Disk use as a signal (the storage node's metrics): the bytes of every table
// of the store and of the write-ahead log, the free pages LMDB will reuse,
// and how much of the map's configured maximum is in use, against which
// leaders refuse writes with 507 (MessageStore::nearly_full).
#pragma once

#include "nodes/storage/message_store.h"
#include "nodes/storage/write_ahead_log.h"

namespace chat4all::storage {

// Sets chat4all_storage_bytes{table=...}, chat4all_storage_map_used_bytes,
// chat4all_storage_map_max_bytes and chat4all_storage_map_used_ratio.
// Reads the store in a read transaction and counts its free list: call it
// every few seconds, not per request.
void publish_store_usage(const MessageStore& store, const WriteAheadLog& wal);

}  // namespace chat4all::storage
