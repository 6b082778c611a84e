// The tus 1.0.0 resumable upload protocol (https://tus.io/protocols/resumable-upload) and the
// download side of files, as pure functions: header values in, decisions out. No sockets,
// clocks or storage: nodes/frontend/file_api.h carries them out.
//
// Extensions served: creation, creation-with-upload, termination, checksum (sha256 only) and
// expiration. Upload-Metadata keys read: `filename` (or `name`), `filetype` (or `type`,
// `content_type`) and `sha256` (the whole file's digest, lowercase hex, checked at completion).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "schema/records.h"

namespace chat4all::frontend::tus {

inline constexpr const char* kVersion = "1.0.0";
inline constexpr const char* kExtensions =
    "creation,creation-with-upload,termination,checksum,expiration";
inline constexpr const char* kChecksumAlgorithms = "sha256";
inline constexpr const char* kOffsetContentType = "application/offset+octet-stream";
// tus's own status for a checksum that does not match.
inline constexpr int kChecksumMismatch = 460;
inline constexpr std::size_t kNameBytesMax = 255;
inline constexpr std::size_t kMediaTypeBytesMax = 255;

// A refusal: HTTP status, error code, message and the header or field to blame.
struct Refusal {
  int status = 400;
  std::string code;
  std::string message;
  std::string field;
};

// A non-negative decimal integer header (Upload-Offset, Upload-Length); nullopt otherwise.
std::optional<std::uint64_t> parse_count(std::string_view value);

// What the creation headers declare about the file.
struct Declared {
  std::uint64_t length = 0;
  std::string name;
  std::string media_type;
  std::string sha256;  // empty when not given
};

// POST /v1/files: Upload-Length (Upload-Defer-Length is not offered) and Upload-Metadata,
// within `size_max` (413 above it).
std::variant<Declared, Refusal> parse_creation(std::string_view upload_length,
                                               std::string_view upload_metadata,
                                               std::uint64_t size_max);

// Upload-Metadata: "key base64value,key2 base64value2,key3"; values decoded.
std::variant<std::map<std::string, std::string>, Refusal> parse_metadata(std::string_view header);

// Upload-Checksum "sha256 <base64 digest>": the 32-byte digest; nullopt when absent.
std::variant<std::optional<std::string>, Refusal> parse_checksum(std::string_view header);

// Tus-Resumable must name 1.0.0 on every request but OPTIONS (412 otherwise).
std::optional<Refusal> check_version(std::string_view tus_resumable);

// A PATCH (or a creation-with-upload POST) against the upload as stored: the
// offset it names, its Content-Type, a declared body that fits, and a checksum
// only on a body of at most one chunk (the digest is checked before anything of
// the body is stored).
struct PatchHeaders {
  std::string_view content_type;
  std::string_view upload_offset;
  std::optional<std::uint64_t> content_length;  // nullopt: chunked
  bool has_checksum = false;
};
std::optional<Refusal> check_patch(const PatchHeaders& headers, const wire::FileRecord& file);

// Range of a download: nullopt for the whole file.
struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};
struct Unsatisfiable {};
// "bytes=a-b", "bytes=a-", "bytes=-n" (one range; several are answered whole, as RFC 9110 allows).
std::variant<std::nullopt_t, ByteRange, Unsatisfiable> parse_range(std::string_view header,
                                                                   std::uint64_t length);

// Which part of which chunk holds bytes first..last of a file made of `chunks`.
struct ChunkSlice {
  std::size_t chunk = 0;
  std::uint64_t from = 0;  // within the chunk
  std::uint64_t length = 0;
};
std::vector<ChunkSlice> slices(const std::vector<wire::FileChunk>& chunks, ByteRange range);

// If-None-Match against the ETag "\"<sha256>\"" (a list, weak tags or "*").
bool etag_matches(std::string_view if_none_match, std::string_view sha256);
std::string etag(std::string_view sha256);

// Content-Disposition: attachment with the name, ASCII-safe and as RFC 5987 UTF-8.
std::string content_disposition(std::string_view name);

// An IMF-fixdate (RFC 9110), as Upload-Expires takes it.
std::string http_date(std::int64_t unix_ms);

// The file as the API shows it (GET /v1/files/{id}, file messages).
nlohmann::json file_json(const wire::FileRecord& file);
std::string content_path(std::string_view file_id);

}  // namespace chat4all::frontend::tus
