#include "nodes/storage/files.h"

#include <algorithm>

#include "nodes/storage/domain_support.h"

namespace chat4all::storage {
namespace {

using domain_support::fail;
using domain_support::load;
using domain_support::ok;
using domain_support::store;
using wire::Status;

// ---- record keys (schema/README.md, "Files"); ids never contain '/'.
std::string file_key(std::string_view tenant, std::string_view file) {
  return "FR/" + std::string(tenant) + "/" + std::string(file);
}
// The complete file whose chunks hold this content: "FH/<tenant>/<sha256>" -> FileRecord.
std::string content_key(std::string_view tenant, std::string_view sha256) {
  return "FH/" + std::string(tenant) + "/" + std::string(sha256);
}
std::string blob_key(std::string_view tenant, std::string_view blob) {
  return "FB/" + std::string(tenant) + "/" + std::string(blob);
}
std::string usage_key(std::string_view tenant) {
  return "FU/" + std::string(tenant);
}
// Unfinished uploads by expiry: "FX/<expires_at_ms u64 BE>/<tenant>/<file>" -> "<tenant>/<file>".
constexpr std::string_view kExpiryPrefix = "FX/";
std::string expiry_key(std::int64_t expires_at_ms, std::string_view tenant, std::string_view file) {
  std::string key(kExpiryPrefix);
  const auto value = static_cast<std::uint64_t>(std::max<std::int64_t>(expires_at_ms, 0));
  for (int i = 0; i < 8; ++i) key += static_cast<char>(value >> (56 - 8 * i));
  return key + "/" + std::string(tenant) + "/" + std::string(file);
}

DomainResult file_not_found() {
  return fail(Status::kNotFound, "file not found", "file_id");
}

wire::FileUsage usage_of(const PartitionState& state, std::string_view tenant) {
  return load<wire::FileUsage>(state, usage_key(tenant)).value_or(wire::FileUsage{});
}

std::uint64_t less(std::uint64_t a, std::uint64_t b) {
  return a > b ? a - b : 0;
}

// Forgets `record`: its expiry entry, its promise of bytes and its reference
// to its blob, which goes (with the content index naming it) when no other
// file refers to it.
void drop_file(PartitionState& state, const wire::FileRecord& record, DomainResult& result) {
  state.erase(file_key(record.tenant_id, record.file_id));
  wire::FileUsage usage = usage_of(state, record.tenant_id);
  if (record.state == wire::kFileUploading) {
    state.erase(expiry_key(record.expires_at_ms, record.tenant_id, record.file_id));
    usage.reserved_bytes = less(usage.reserved_bytes, record.length - record.offset);
  }
  const std::string blob = blob_key(record.tenant_id, record.blob_id);
  auto held = load<wire::BlobRecord>(state, blob).value_or(wire::BlobRecord{});
  held.files = less(held.files, 1);
  if (held.files == 0) {
    state.erase(blob);
    usage.stored_bytes = less(usage.stored_bytes, held.bytes);
    if (!record.sha256.empty()) {
      const std::string content = content_key(record.tenant_id, record.sha256);
      auto indexed = load<wire::FileRecord>(state, content);
      if (indexed && indexed->blob_id == record.blob_id) state.erase(content);
    }
    result.freed_blobs.push_back(freed_blob_name(record.tenant_id, record.blob_id));
  } else {
    store(state, blob, held);
  }
  store(state, usage_key(record.tenant_id), usage);
}

DomainResult create_upload(PartitionState& state, const wire::CreateUpload& body,
                           std::int64_t at_ms) {
  if (body.size_max > 0 && body.length > body.size_max)
    return fail(Status::kInvalid,
                "the file is larger than the " + std::to_string(body.size_max) + " bytes allowed",
                "Upload-Length");
  const std::string key = file_key(body.tenant_id, body.file_id);
  if (state.get(key)) return fail(Status::kExists, "a file with that id exists", "file_id");
  wire::FileRecord record;
  record.tenant_id = body.tenant_id;
  record.file_id = body.file_id;
  record.owner_id = body.owner_id;
  record.name = body.name;
  record.media_type = body.media_type;
  record.length = body.length;
  record.sha256 = body.sha256;
  record.blob_id = body.file_id;
  record.hash_state = body.hash_state;
  record.created_at_ms = at_ms;

  // The same content stored before: this file is complete at once, on the same chunks.
  if (!body.sha256.empty()) {
    auto same = load<wire::FileRecord>(state, content_key(body.tenant_id, body.sha256));
    if (same && same->length == body.length) {
      record.state = wire::kFileComplete;
      record.offset = body.length;
      record.chunks = same->chunks;
      record.blob_id = same->blob_id;
      record.hash_state.clear();
      record.completed_at_ms = at_ms;
      const std::string blob = blob_key(body.tenant_id, same->blob_id);
      auto held = load<wire::BlobRecord>(state, blob).value_or(wire::BlobRecord{});
      ++held.files;
      store(state, blob, held);
      store(state, key, record);
      return ok(record);
    }
  }

  wire::FileUsage usage = usage_of(state, body.tenant_id);
  const std::uint64_t used = usage.stored_bytes + usage.reserved_bytes;
  if (body.quota_bytes > 0 && used + body.length > body.quota_bytes)
    return fail(Status::kStorageFull,
                "the tenant's files use " + std::to_string(used) + " of its " +
                    std::to_string(body.quota_bytes) + " bytes; " + std::to_string(body.length) +
                    " more do not fit",
                "Upload-Length");
  usage.reserved_bytes += body.length;
  store(state, usage_key(body.tenant_id), usage);
  record.state = wire::kFileUploading;
  record.expires_at_ms = at_ms + body.expiry_ms;
  store(state, blob_key(body.tenant_id, body.file_id), wire::BlobRecord{1, 0});
  state.put(expiry_key(record.expires_at_ms, body.tenant_id, body.file_id),
            body.tenant_id + "/" + body.file_id);
  if (body.length == 0) {  // nothing to wait for
    record.state = wire::kFileComplete;
    record.completed_at_ms = at_ms;
    state.erase(expiry_key(record.expires_at_ms, body.tenant_id, body.file_id));
  }
  store(state, key, record);
  return ok(record);
}

DomainResult advance_upload(PartitionState& state, const wire::AdvanceUpload& body,
                            std::int64_t at_ms) {
  const std::string key = file_key(body.tenant_id, body.file_id);
  auto record = load<wire::FileRecord>(state, key);
  if (!record) return file_not_found();
  if (record->state != wire::kFileUploading)
    return fail(Status::kConflict, "the upload is complete already", "Upload-Offset");
  if (record->offset != body.from_offset)
    return fail(Status::kConflict,
                "the upload is at offset " + std::to_string(record->offset) + ", not " +
                    std::to_string(body.from_offset),
                "Upload-Offset");
  std::uint64_t added = 0;
  for (const auto& chunk : body.chunks) added += chunk.size;
  if (added == 0) return fail(Status::kInvalid, "no bytes to add", "chunks");
  if (record->offset + added > record->length)
    return fail(Status::kInvalid, "the bytes go past the declared Upload-Length", "Upload-Length");

  DomainResult result;
  const bool completes = record->offset + added == record->length;
  if (completes && !record->sha256.empty() && record->sha256 != body.sha256) {
    drop_file(state, *record, result);
    result.status = Status::kInvalid;
    result.field = "sha256";
    result.detail = "the file's sha256 is " + body.sha256 + ", not the declared " + record->sha256 +
                    "; the upload was dropped";
    return result;
  }
  record->chunks.insert(record->chunks.end(), body.chunks.begin(), body.chunks.end());
  record->offset += added;
  record->hash_state = body.hash_state;
  wire::FileUsage usage = usage_of(state, body.tenant_id);
  usage.reserved_bytes = less(usage.reserved_bytes, added);
  usage.stored_bytes += added;
  store(state, usage_key(body.tenant_id), usage);
  const std::string blob = blob_key(body.tenant_id, record->blob_id);
  auto held = load<wire::BlobRecord>(state, blob).value_or(wire::BlobRecord{1, 0});
  held.bytes += added;
  store(state, blob, held);
  if (completes) {
    record->state = wire::kFileComplete;
    record->sha256 = body.sha256;
    record->hash_state.clear();
    record->completed_at_ms = at_ms;
    state.erase(expiry_key(record->expires_at_ms, body.tenant_id, body.file_id));
    const std::string content = content_key(body.tenant_id, record->sha256);
    if (!state.get(content)) store(state, content, *record);
  }
  store(state, key, *record);
  result.body = codec::pack_body(*record);
  return result;
}

DomainResult delete_file(PartitionState& state, const wire::TenantLookup& body) {
  auto record = load<wire::FileRecord>(state, file_key(body.tenant_id, body.id));
  if (!record) return file_not_found();
  DomainResult result;
  drop_file(state, *record, result);
  result.body = codec::pack_body(std::vector<int>{});
  return result;
}

DomainResult expire_uploads(PartitionState& state, const wire::UploadExpiry& body,
                            std::int64_t at_ms) {
  DomainResult result;
  for (const auto& file_id : body.file_ids) {
    auto record = load<wire::FileRecord>(state, file_key(body.tenant_id, file_id));
    // Finished, deleted or given more time since the sweep listed it: kept.
    if (!record || record->state != wire::kFileUploading || record->expires_at_ms > at_ms) continue;
    drop_file(state, *record, result);
  }
  result.body = codec::pack_body(std::vector<int>{});
  return result;
}

DomainResult share_file(PartitionState& state, const wire::ShareFile& body) {
  const std::string key = file_key(body.tenant_id, body.file_id);
  auto record = load<wire::FileRecord>(state, key);
  if (!record) return file_not_found();
  if (record->state != wire::kFileComplete)
    return fail(Status::kInvalid, "the file's upload is not complete", "payload.file_id");
  auto& conversations = record->conversations;
  if (std::find(conversations.begin(), conversations.end(), body.conversation_id) ==
      conversations.end()) {
    if (conversations.size() >= kFileConversationsMax)
      return fail(Status::kInvalid,
                  "the file was sent into " + std::to_string(kFileConversationsMax) +
                      " conversations already; upload it again",
                  "payload.file_id");
    conversations.push_back(body.conversation_id);
    store(state, key, *record);
  }
  return ok(*record);
}

std::vector<wire::FileRecord> expired_uploads(const PartitionState& state,
                                              const wire::UploadSweep& sweep) {
  std::vector<wire::FileRecord> expired;
  const std::uint32_t wanted = std::clamp<std::uint32_t>(sweep.limit, 1, kUploadSweepMax);
  state.scan(kExpiryPrefix, {}, [&](std::string_view key, std::string_view value) {
    if (key.size() < kExpiryPrefix.size() + 8) return true;
    std::uint64_t expires_at_ms = 0;
    for (std::size_t i = 0; i < 8; ++i)
      expires_at_ms =
          expires_at_ms << 8 | static_cast<unsigned char>(key[kExpiryPrefix.size() + i]);
    if (static_cast<std::int64_t>(expires_at_ms) > sweep.now_ms) return false;  // key order: done
    const auto slash = value.find('/');
    if (slash == std::string_view::npos) return true;
    auto record =
        load<wire::FileRecord>(state, file_key(value.substr(0, slash), value.substr(slash + 1)));
    if (record) expired.push_back(std::move(*record));
    return expired.size() < wanted;
  });
  return expired;
}

}  // namespace

std::string freed_blob_name(std::string_view tenant_id, std::string_view blob_id) {
  return std::string(tenant_id) + "/" + std::string(blob_id);
}

bool is_file_command(wire::CommandKind kind) {
  using Kind = wire::CommandKind;
  return kind == Kind::kCreateUpload || kind == Kind::kAdvanceUpload || kind == Kind::kDeleteFile ||
         kind == Kind::kExpireUploads || kind == Kind::kShareFile;
}

bool is_file_query(wire::QueryKind kind) {
  return kind == wire::QueryKind::kGetFile || kind == wire::QueryKind::kExpiredUploads;
}

DomainResult apply_file_command(PartitionState& state, const wire::CommandRequest& command,
                                std::int64_t at_ms) {
  using Kind = wire::CommandKind;
  auto malformed = [] { return fail(Status::kInvalid, "command body does not match its kind"); };
  switch (command.kind) {
    case Kind::kCreateUpload:
      if (auto body = codec::unpack_body<wire::CreateUpload>(command.body))
        return create_upload(state, *body, at_ms);
      return malformed();
    case Kind::kAdvanceUpload:
      if (auto body = codec::unpack_body<wire::AdvanceUpload>(command.body))
        return advance_upload(state, *body, at_ms);
      return malformed();
    case Kind::kDeleteFile:
      if (auto body = codec::unpack_body<wire::TenantLookup>(command.body))
        return delete_file(state, *body);
      return malformed();
    case Kind::kExpireUploads:
      if (auto body = codec::unpack_body<wire::UploadExpiry>(command.body))
        return expire_uploads(state, *body, at_ms);
      return malformed();
    case Kind::kShareFile:
      if (auto body = codec::unpack_body<wire::ShareFile>(command.body))
        return share_file(state, *body);
      return malformed();
    default:
      return fail(Status::kInvalid, "not a file command");
  }
}

DomainResult run_file_query(const PartitionState& state, const wire::QueryRequest& query) {
  using Kind = wire::QueryKind;
  auto malformed = [] { return fail(Status::kInvalid, "query body does not match its kind"); };
  switch (query.kind) {
    case Kind::kGetFile: {
      auto body = codec::unpack_body<wire::TenantLookup>(query.body);
      if (!body) return malformed();
      auto record = load<wire::FileRecord>(state, file_key(body->tenant_id, body->id));
      return record ? ok(*record) : file_not_found();
    }
    case Kind::kExpiredUploads: {
      auto body = codec::unpack_body<wire::UploadSweep>(query.body);
      if (!body) return malformed();
      return ok(expired_uploads(state, *body));
    }
    default:
      return fail(Status::kInvalid, "not a file query");
  }
}

}  // namespace chat4all::storage
