// The files API under /v1/files: tus uploads (nodes/frontend/tus.h) and downloads. The HTTP
// session (frontend_node.cc) moves the bytes; this decides, and talks to storage: file records
// through the routers (commands and queries on the tenant's directory partition), chunk bytes
// straight to the storage nodes' "chunks" endpoints (ChunkClient).
//
// An upload's bytes come in pieces of at most one chunk (wire::kChunkBytesMax): each is sent to
// the replicas and, once a majority holds it, the upload's offset moves past it by a replicated
// command (kAdvanceUpload from the offset the piece starts at, so that of two writers one wins
// and the other gets 409). The session reads the next piece only then: one chunk in memory per
// transfer, and TCP's window holds the client back meanwhile. At most
// `files.transfers_max` uploads and downloads move bytes at once per frontend; more get 503.
//
// Who may do what: the uploader (or an admin of the tenant) uploads, resumes, deletes and reads;
// the members of a conversation the file was sent into read it; anyone else gets 404.
//
// Thread-safe; callbacks run on the router or chunk clients' threads (post to your own).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/sha256.h"
#include "common/storage_client.h"
#include "nodes/frontend/chunk_client.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/tus.h"

namespace chat4all::frontend {

// A request under /v1/files as the session read its head (and, when it does
// not stream, its body). Header names are lowercase.
struct FileRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;
  std::optional<std::uint64_t> content_length;  // nullopt: none given (chunked, or no body)
  bool chunked = false;
  std::string body;

  std::string header(const std::string& name) const;
  bool has_body() const { return chunked || content_length.value_or(0) > 0; }
};

class FileApi {
 public:
  FileApi(const Topology& topology, HttpApi& api, RouterClient& routers);

  static bool handles(std::string_view target);
  // PATCH /v1/files/{id}, and POST /v1/files with a body (creation-with-upload).
  static bool streams_upload(const FileRequest& request);
  // GET /v1/files/{id}/content.
  static bool streams_download(const FileRequest& request);

  // Every other request under /v1/files, read whole.
  void handle(const FileRequest& request, Respond respond);

  // One upload request on its way: the file as stored, the digest so far.
  struct Upload;
  using UploadStarted = std::function<void(std::shared_ptr<Upload>, std::optional<ApiResponse>)>;
  // Authenticates, creates the upload (POST) or finds it (PATCH) and checks the
  // headers against it; either an Upload to feed, or the answer to give instead.
  void begin_upload(const FileRequest& request, UploadStarted started);
  // Stores one piece (at most one chunk) of the body and moves the offset past
  // it; nullopt when done, else the answer to end the request with.
  void store_piece(std::shared_ptr<Upload> upload, std::string bytes,
                   std::function<void(std::optional<ApiResponse>)> done);
  // After the last piece: the answer (204 with the new offset; 201 for a POST).
  ApiResponse finish_upload(const Upload& upload) const;
  // Whether the bytes of a body cut short may be kept (not with Upload-Checksum).
  static bool keeps_partial(const Upload& upload);
  // How many more bytes the upload takes.
  static std::uint64_t remaining(const Upload& upload);

  struct Download;
  using DownloadStarted =
      std::function<void(std::shared_ptr<Download>, std::optional<ApiResponse>)>;
  void begin_download(const FileRequest& request, DownloadStarted started);
  // The head of the answer (status, headers, Content-Length) and its pieces.
  static const ApiResponse& head(const Download& download);
  static std::uint64_t content_length(const Download& download);
  static std::size_t pieces(const Download& download);
  // Piece `index` of the answer's body, or nullopt when no replica could give it.
  void fetch(std::shared_ptr<Download> download, std::size_t index,
             std::function<void(std::optional<std::string>)> done);

 private:
  struct Slot;
  std::shared_ptr<Slot> take_slot();
  // The caller, or the answer refusing it.
  std::variant<Caller, ApiResponse> admit(const FileRequest& request);
  void create(const FileRequest& request, const Caller& caller, std::string trace_id,
              std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done);
  // The file if `caller` may see it: for changes (`writing`) its uploader or an
  // admin, for reads also the members of the conversations it was sent into.
  void find_visible(const Caller& caller, const std::string& file_id, bool writing,
                    std::string trace_id,
                    std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done);
  void check_members(const Caller& caller, wire::FileRecord file, std::size_t index,
                     std::string trace_id,
                     std::function<void(std::optional<wire::FileRecord>, ApiResponse)> done);
  ApiResponse tus_response(ApiResponse response) const;
  ApiResponse upload_state(int status, const wire::FileRecord& file) const;

  const Topology& topology_;
  HttpApi& api_;
  StorageClient storage_;
  ChunkClient chunks_;
  std::atomic<std::uint32_t> transfers_{0};
  Counter& bytes_uploaded_;
  Counter& bytes_downloaded_;
  Log log_{"files"};
};

}  // namespace chat4all::frontend
