#include "nodes/frontend/file_api.h"

#include <sodium.h>

#include <cstring>

#include "common/ids.h"

namespace chat4all::frontend {
namespace {

constexpr std::string_view kFilesPath = "/v1/files";
// Conversations looked at to decide whether a member may read a file, at most.
constexpr std::size_t kVisibilityChecksMax = 16;

std::string path_of(const std::string& target) {
  return target.substr(0, target.find('?'));
}

// "/v1/files/{id}" and "/v1/files/{id}/content": the id and whether it is the content.
std::optional<std::pair<std::string, bool>> file_path(const std::string& target) {
  const std::string path = path_of(target);
  const std::string prefix = std::string(kFilesPath) + "/";
  if (path.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  std::string rest = path.substr(prefix.size());
  bool content = false;
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    if (rest.substr(slash) != "/content") return std::nullopt;
    rest.resize(slash);
    content = true;
  }
  if (!ids::is_valid_id(rest)) return std::nullopt;
  return std::make_pair(rest, content);
}

ApiResponse refusal_response(const tus::Refusal& refusal) {
  return error_response(refusal.status, refusal.code, refusal.message, refusal.field);
}

std::string base64(std::string_view bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

ApiResponse not_found() {
  return error_response(404, "not_found", "file not found", "file_id");
}

}  // namespace

std::string FileRequest::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

// A transfer slot: held while an upload or download moves bytes.
struct FileApi::Slot {
  explicit Slot(std::atomic<std::uint32_t>& count) : count_(count) {}
  ~Slot() { count_.fetch_sub(1); }
  std::atomic<std::uint32_t>& count_;
};

struct FileApi::Upload {
  Caller caller;
  wire::FileRecord file;
  Sha256 hash;
  std::optional<std::string> checksum;  // Upload-Checksum's digest
  bool creation = false;                // POST: answered 201
  std::string trace_id;
  std::shared_ptr<Slot> slot;
};

struct FileApi::Download {
  wire::FileRecord file;
  ApiResponse head;
  std::uint64_t length = 0;
  std::vector<tus::ChunkSlice> slices;
  std::string trace_id;
  std::shared_ptr<Slot> slot;
};

FileApi::FileApi(const Topology& topology, HttpApi& api, RouterClient& routers)
    : topology_(topology),
      api_(api),
      storage_(routers),
      chunks_(topology),
      bytes_uploaded_(metrics().counter("chat4all_frontend_file_bytes_uploaded_total",
                                        "File bytes stored on a majority of their replicas")),
      bytes_downloaded_(metrics().counter("chat4all_frontend_file_bytes_downloaded_total",
                                          "File bytes sent to clients")) {}

bool FileApi::handles(std::string_view target) {
  const std::string_view path = target.substr(0, target.find('?'));
  return path == kFilesPath ||
         (path.size() > kFilesPath.size() && path.compare(0, kFilesPath.size(), kFilesPath) == 0 &&
          path[kFilesPath.size()] == '/');
}

bool FileApi::streams_upload(const FileRequest& request) {
  if (request.method == "PATCH") return file_path(request.target).has_value();
  return request.method == "POST" && path_of(request.target) == kFilesPath && request.has_body();
}

bool FileApi::streams_download(const FileRequest& request) {
  auto path = file_path(request.target);
  return request.method == "GET" && path && path->second;
}

std::shared_ptr<FileApi::Slot> FileApi::take_slot() {
  if (transfers_.fetch_add(1) >= topology_.files.transfers_max) {
    transfers_.fetch_sub(1);
    return nullptr;
  }
  return std::make_shared<Slot>(transfers_);
}

ApiResponse FileApi::tus_response(ApiResponse response) const {
  set_header(response, "Tus-Resumable", tus::kVersion);
  return response;
}

std::variant<Caller, ApiResponse> FileApi::admit(const FileRequest& request) {
  if (!chunks_.available())
    return error_response(503, "files_unavailable",
                          "no storage node of this cluster serves file chunks");
  return api_.admit(request.header("authorization"));
}

// The upload's state as HEAD, PATCH and POST tell it.
ApiResponse FileApi::upload_state(int status, const wire::FileRecord& file) const {
  ApiResponse response{status, "", "application/json", {}};
  set_header(response, "Upload-Offset", std::to_string(file.offset));
  set_header(response, "Upload-Length", std::to_string(file.length));
  if (file.state == wire::kFileUploading)
    set_header(response, "Upload-Expires", tus::http_date(file.expires_at_ms));
  set_header(response, "Cache-Control", "no-store");
  return tus_response(std::move(response));
}

void FileApi::handle(const FileRequest& request, Respond respond) {
  const std::string trace_id = ids::new_trace_id();
  respond = [respond, trace_id](ApiResponse response) {
    set_header(response, "X-Trace-Id", trace_id);
    respond(std::move(response));
  };
  const std::string path = path_of(request.target);
  if (request.method == "OPTIONS") {
    ApiResponse response{204, "", "application/json", {}};
    set_header(response, "Tus-Version", tus::kVersion);
    set_header(response, "Tus-Extension", tus::kExtensions);
    set_header(response, "Tus-Max-Size", std::to_string(topology_.files.size_max));
    set_header(response, "Tus-Checksum-Algorithm", tus::kChecksumAlgorithms);
    return respond(tus_response(std::move(response)));
  }
  auto file = file_path(request.target);
  const bool collection = path == kFilesPath;
  const std::string allowed = collection             ? "OPTIONS, POST"
                              : file && file->second ? "GET"
                                                     : "OPTIONS, HEAD, GET, PATCH, DELETE";
  const bool method_fits =
      collection ? request.method == "POST"
      : file && file->second
          ? request.method == "GET"
          : (request.method == "HEAD" || request.method == "GET" || request.method == "DELETE");
  if (!collection && !file)
    return respond(error_response(404, "not_found", "no such endpoint: " + path));
  if (!method_fits) {
    ApiResponse response =
        error_response(405, "method_not_allowed",
                       request.method + " is not allowed on " + path + " (use " + allowed + ")");
    set_header(response, "Allow", allowed);
    return respond(std::move(response));
  }
  auto admitted = admit(request);
  if (auto* refusal = std::get_if<ApiResponse>(&admitted)) return respond(std::move(*refusal));
  const Caller caller = std::get<Caller>(std::move(admitted));
  if (request.method != "GET")
    if (auto refusal = tus::check_version(request.header("tus-resumable")))
      return respond(tus_response(refusal_response(*refusal)));

  if (collection) {  // POST without a body
    return create(request, caller, trace_id,
                  [respond](std::optional<wire::FileRecord>, ApiResponse response) {
                    respond(std::move(response));
                  });
  }
  const std::string& file_id = file->first;
  const bool writing = request.method != "GET";
  find_visible(caller, file_id, writing, trace_id,
               [this, respond, method = request.method, caller, trace_id](
                   std::optional<wire::FileRecord> found, ApiResponse refusal) {
                 if (!found) return respond(tus_response(std::move(refusal)));
                 if (method == "GET") {
                   ApiResponse response = json_response(200, tus::file_json(*found));
                   if (!found->sha256.empty() && found->state == wire::kFileComplete)
                     set_header(response, "ETag", tus::etag(found->sha256));
                   return respond(std::move(response));
                 }
                 if (method == "HEAD") {
                   ApiResponse response = upload_state(200, *found);
                   std::string metadata =
                       "filename " + base64(found->name) + ",filetype " + base64(found->media_type);
                   if (!found->sha256.empty()) metadata += ",sha256 " + base64(found->sha256);
                   set_header(response, "Upload-Metadata", metadata);
                   return respond(std::move(response));
                 }
                 storage_.command<StorageClient::Empty>(
                     wire::tenant_key(caller.tenant), wire::CommandKind::kDeleteFile,
                     wire::TenantLookup{caller.tenant, found->file_id},
                     [this, respond](StorageOutcome<StorageClient::Empty> outcome) {
                       if (!outcome.ok()) return respond(tus_response(storage_error(outcome)));
                       respond(tus_response(no_content()));
                     },
                     trace_id);
               });
}

void FileApi::create(const FileRequest& request, const Caller& caller, std::string trace_id,
                     std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done) {
  auto declared = tus::parse_creation(request.header("upload-length"),
                                      request.header("upload-metadata"), topology_.files.size_max);
  if (auto* refusal = std::get_if<tus::Refusal>(&declared))
    return done(std::nullopt, tus_response(refusal_response(*refusal)));
  const auto& file = std::get<tus::Declared>(declared);
  wire::CreateUpload create;
  create.tenant_id = caller.tenant;
  create.file_id = ids::new_random_id("file_");
  create.owner_id = caller.subject;
  create.name = file.name;
  create.media_type = file.media_type;
  create.length = file.length;
  create.sha256 = file.sha256;
  create.expiry_ms = std::int64_t{topology_.files.upload_expiry_s} * 1000;
  create.size_max = topology_.files.size_max;
  create.quota_bytes = topology_.files.tenant_quota_bytes;
  create.hash_state = Sha256().state();
  storage_.command<wire::FileRecord>(
      wire::tenant_key(caller.tenant), wire::CommandKind::kCreateUpload, create,
      [this, done](StorageOutcome<wire::FileRecord> outcome) {
        if (outcome.status == wire::Status::kStorageFull)
          return done(std::nullopt, tus_response(error_response(507, "quota_exceeded",
                                                                outcome.detail, "Upload-Length")));
        if (!outcome.ok()) return done(std::nullopt, tus_response(storage_error(outcome)));
        const wire::FileRecord& file = *outcome.value;
        ApiResponse response = upload_state(201, file);
        nlohmann::json body = tus::file_json(file);
        response.body = body.dump();
        set_header(response, "Location", "/v1/files/" + file.file_id);
        done(file, std::move(response));
      },
      trace_id);
}

void FileApi::find_visible(const Caller& caller, const std::string& file_id, bool writing,
                           std::string trace_id,
                           std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done) {
  storage_.query<wire::FileRecord>(
      wire::tenant_key(caller.tenant), wire::QueryKind::kGetFile,
      wire::TenantLookup{caller.tenant, file_id},
      [this, caller, writing, trace_id, done](StorageOutcome<wire::FileRecord> outcome) {
        if (outcome.status == wire::Status::kNotFound) return done(std::nullopt, not_found());
        if (!outcome.ok()) return done(std::nullopt, storage_error(outcome));
        if (caller.admin() || outcome.value->owner_id == caller.subject)
          return done(std::move(outcome.value), {});
        if (writing || outcome.value->state != wire::kFileComplete)
          return done(std::nullopt, not_found());
        check_members(caller, std::move(*outcome.value), 0, trace_id, done);
      },
      trace_id);
}

void FileApi::check_members(
    const Caller& caller, wire::FileRecord file, std::size_t index, std::string trace_id,
    std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done) {
  if (index >= file.conversations.size() || index >= kVisibilityChecksMax)
    return done(std::nullopt, not_found());
  const std::string conversation = file.conversations[index];
  storage_.query<wire::ConversationRecord>(
      conversation, wire::QueryKind::kGetConversation,
      wire::ConversationLookup{caller.tenant, conversation, caller.user(), ""},
      [this, caller, file = std::move(file), index, trace_id,
       done](StorageOutcome<wire::ConversationRecord> outcome) mutable {
        if (outcome.ok()) return done(std::move(file), {});
        if (outcome.status != wire::Status::kNotFound)
          return done(std::nullopt, storage_error(outcome));
        check_members(caller, std::move(file), index + 1, trace_id, done);
      },
      trace_id);
}

void FileApi::begin_upload(const FileRequest& request, UploadStarted started) {
  auto admitted = admit(request);
  if (auto* refusal = std::get_if<ApiResponse>(&admitted))
    return started(nullptr, std::move(*refusal));
  auto upload = std::make_shared<Upload>();
  upload->caller = std::get<Caller>(std::move(admitted));
  upload->trace_id = ids::new_trace_id();
  upload->creation = request.method == "POST";
  auto answer = [started, trace_id = upload->trace_id](ApiResponse response) {
    set_header(response, "X-Trace-Id", trace_id);
    started(nullptr, std::move(response));
  };
  if (auto refusal = tus::check_version(request.header("tus-resumable")))
    return answer(tus_response(refusal_response(*refusal)));
  auto checksum = tus::parse_checksum(request.header("upload-checksum"));
  if (auto* refusal = std::get_if<tus::Refusal>(&checksum))
    return answer(tus_response(refusal_response(*refusal)));
  upload->checksum = std::get<std::optional<std::string>>(checksum);
  upload->slot = take_slot();
  if (!upload->slot) {
    ApiResponse busy =
        error_response(503, "too_many_transfers",
                       "this frontend moves " + std::to_string(topology_.files.transfers_max) +
                           " files at once; retry after the time in Retry-After");
    set_header(busy, "Retry-After", "1");
    return answer(tus_response(std::move(busy)));
  }
  // A creation-with-upload body starts at 0; `request` is gone when the record comes.
  const std::string content_type = request.header("content-type");
  const std::string offset = upload->creation ? "0" : request.header("upload-offset");
  const std::optional<std::uint64_t> length =
      request.chunked ? std::nullopt : request.content_length;
  const tus::PatchHeaders headers{content_type, offset, length, upload->checksum.has_value()};
  auto checked = [this, upload, started, answer, content_type, offset, length](
                     std::optional<wire::FileRecord> file, ApiResponse refusal) {
    if (!file) return answer(std::move(refusal));
    if (upload->creation && file->state == wire::kFileComplete)
      return answer(std::move(refusal));  // deduplicated: the 201 already says it is complete
    if (auto wrong =
            tus::check_patch({content_type, offset, length, upload->checksum.has_value()}, *file))
      return answer(tus_response(refusal_response(*wrong)));
    auto hash = Sha256::resume(file->hash_state);
    if (!hash)
      return answer(error_response(500, "internal", "the upload's digest state is unreadable"));
    upload->hash = *hash;
    upload->file = std::move(*file);
    // A 201 of creation-with-upload carries what creation said; keep it for the answer.
    started(upload, std::nullopt);
  };
  if (upload->creation) {
    wire::FileRecord unbounded;  // the body's bounds are checked once the upload exists
    unbounded.length = ~std::uint64_t{0};
    unbounded.state = wire::kFileUploading;
    if (auto wrong = tus::check_patch(headers, unbounded))
      return answer(tus_response(refusal_response(*wrong)));
    return create(request, upload->caller, upload->trace_id, checked);
  }
  find_visible(upload->caller, file_path(request.target)->first, true, upload->trace_id, checked);
}

bool FileApi::keeps_partial(const Upload& upload) {
  return !upload.checksum.has_value();
}

std::uint64_t FileApi::remaining(const Upload& upload) {
  return upload.file.length - upload.file.offset;
}

void FileApi::store_piece(std::shared_ptr<Upload> upload, std::string bytes,
                          std::function<void(std::optional<ApiResponse>)> done) {
  auto fail = [done, trace_id = upload->trace_id, this](ApiResponse response) {
    set_header(response, "X-Trace-Id", trace_id);
    done(tus_response(std::move(response)));
  };
  if (bytes.size() > remaining(*upload))
    return fail(error_response(
        400, "past_upload_length",
        "the body goes past the upload's Upload-Length of " + std::to_string(upload->file.length),
        "Content-Length"));
  if (upload->checksum) {
    Sha256 body;
    body.update(bytes);
    if (body.digest() != *upload->checksum)
      return fail(error_response(tus::kChecksumMismatch, "checksum_mismatch",
                                 "the body's sha256 does not match Upload-Checksum; nothing of "
                                 "it was kept",
                                 "Upload-Checksum"));
  }
  const std::string chunk_sha256 = sha256_hex(bytes);
  const std::uint64_t size = bytes.size();
  upload->hash.update(bytes);
  const bool last = upload->file.offset + size == upload->file.length;
  wire::AdvanceUpload advance{
      upload->caller.tenant, upload->file.file_id,
      upload->file.offset,   {wire::FileChunk{chunk_sha256, size}},
      upload->hash.state(),  last ? upload->hash.hex_digest() : std::string()};
  chunks_.put(
      upload->caller.tenant, upload->file.blob_id, chunk_sha256, std::move(bytes), upload->trace_id,
      [this, upload, advance = std::move(advance), fail, done, size](wire::Status status,
                                                                     std::string detail) {
        if (status != wire::Status::kOk) {
          log_.warn("chunk_not_stored", {{"trace_id", upload->trace_id},
                                         {"file_id", upload->file.file_id},
                                         {"detail", detail}});
          ApiResponse busy =
              error_response(503, "storage_unavailable",
                             "a majority of the file's storage nodes did not store the chunk (" +
                                 detail + "); resume from Upload-Offset");
          set_header(busy, "Retry-After", "1");
          return fail(std::move(busy));
        }
        storage_.command<wire::FileRecord>(
            wire::tenant_key(upload->caller.tenant), wire::CommandKind::kAdvanceUpload, advance,
            [this, upload, fail, done, size](StorageOutcome<wire::FileRecord> outcome) {
              if (outcome.status == wire::Status::kConflict)
                return fail(error_response(409, "offset_mismatch",
                                           outcome.detail + "; another request moved it",
                                           "Upload-Offset"));
              if (outcome.status == wire::Status::kInvalid && outcome.field == "sha256")
                return fail(error_response(tus::kChecksumMismatch, "checksum_mismatch",
                                           outcome.detail, "Upload-Metadata.sha256"));
              if (outcome.status == wire::Status::kNotFound)
                return fail(error_response(404, "not_found",
                                           "the upload is gone (expired or deleted)", "file_id"));
              if (!outcome.ok()) return fail(storage_error(outcome));
              bytes_uploaded_.add(size);
              upload->file = std::move(*outcome.value);
              done(std::nullopt);
            },
            upload->trace_id);
      });
}

ApiResponse FileApi::finish_upload(const Upload& upload) const {
  ApiResponse response = upload_state(upload.creation ? 201 : 204, upload.file);
  if (upload.creation) {
    set_header(response, "Location", "/v1/files/" + upload.file.file_id);
    response.body = tus::file_json(upload.file).dump();
  }
  set_header(response, "X-Trace-Id", upload.trace_id);
  return response;
}

void FileApi::begin_download(const FileRequest& request, DownloadStarted started) {
  auto admitted = admit(request);
  if (auto* refusal = std::get_if<ApiResponse>(&admitted))
    return started(nullptr, std::move(*refusal));
  const Caller caller = std::get<Caller>(std::move(admitted));
  const std::string trace_id = ids::new_trace_id();
  auto answer = [started, trace_id](ApiResponse response) {
    set_header(response, "X-Trace-Id", trace_id);
    started(nullptr, std::move(response));
  };
  find_visible(caller, file_path(request.target)->first, false, trace_id,
               [this, answer, started, trace_id, range = request.header("range"),
                if_none_match = request.header("if-none-match")](
                   std::optional<wire::FileRecord> file, ApiResponse refusal) {
                 if (!file) return answer(std::move(refusal));
                 if (file->state != wire::kFileComplete)
                   return answer(error_response(
                       409, "upload_incomplete",
                       "the file's upload is not complete: " + std::to_string(file->offset) +
                           " of " + std::to_string(file->length) + " bytes",
                       "file_id"));
                 const std::string tag = tus::etag(file->sha256);
                 if (!if_none_match.empty() && tus::etag_matches(if_none_match, file->sha256)) {
                   ApiResponse unchanged{304, "", "application/json", {}};
                   set_header(unchanged, "ETag", tag);
                   return answer(std::move(unchanged));
                 }
                 auto download = std::make_shared<Download>();
                 download->trace_id = trace_id;
                 auto& head = download->head;
                 head.status = 200;
                 head.content_type = file->media_type;
                 set_header(head, "ETag", tag);
                 set_header(head, "Accept-Ranges", "bytes");
                 set_header(head, "Content-Disposition", tus::content_disposition(file->name));
                 set_header(head, "X-Trace-Id", trace_id);
                 tus::ByteRange whole{0, file->length == 0 ? 0 : file->length - 1};
                 auto asked = tus::parse_range(range, file->length);
                 if (std::holds_alternative<tus::Unsatisfiable>(asked)) {
                   ApiResponse refused = error_response(
                       416, "range_not_satisfiable",
                       "the file has " + std::to_string(file->length) + " bytes", "Range");
                   set_header(refused, "Content-Range", "bytes */" + std::to_string(file->length));
                   return answer(std::move(refused));
                 }
                 if (auto* part = std::get_if<tus::ByteRange>(&asked)) {
                   whole = *part;
                   head.status = 206;
                   set_header(head, "Content-Range",
                              "bytes " + std::to_string(part->first) + "-" +
                                  std::to_string(part->last) + "/" + std::to_string(file->length));
                 }
                 download->length = file->length == 0 ? 0 : whole.last - whole.first + 1;
                 if (download->length > 0) download->slices = tus::slices(file->chunks, whole);
                 download->slot = take_slot();
                 if (!download->slot) {
                   ApiResponse busy = error_response(
                       503, "too_many_transfers",
                       "this frontend moves " + std::to_string(topology_.files.transfers_max) +
                           " files at once; retry after the time in Retry-After");
                   set_header(busy, "Retry-After", "1");
                   return answer(std::move(busy));
                 }
                 download->file = std::move(*file);
                 started(download, std::nullopt);
               });
}

const ApiResponse& FileApi::head(const Download& download) {
  return download.head;
}
std::uint64_t FileApi::content_length(const Download& download) {
  return download.length;
}
std::size_t FileApi::pieces(const Download& download) {
  return download.slices.size();
}

void FileApi::fetch(std::shared_ptr<Download> download, std::size_t index,
                    std::function<void(std::optional<std::string>)> done) {
  const tus::ChunkSlice slice = download->slices.at(index);
  const wire::FileChunk& chunk = download->file.chunks.at(slice.chunk);
  chunks_.get(download->file.tenant_id, download->file.blob_id, chunk.sha256, download->trace_id,
              [this, slice, done, download](wire::Status status, std::string bytes) {
                if (status != wire::Status::kOk || bytes.size() < slice.from + slice.length) {
                  log_.warn("download_cut_short", {{"trace_id", download->trace_id},
                                                   {"file_id", download->file.file_id},
                                                   {"chunk", slice.chunk}});
                  return done(std::nullopt);
                }
                if (slice.from > 0 || slice.length < bytes.size())
                  bytes = bytes.substr(slice.from, slice.length);
                bytes_downloaded_.add(bytes.size());
                done(std::move(bytes));
              });
}

}  // namespace chat4all::frontend
