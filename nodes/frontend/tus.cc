#include "nodes/frontend/tus.h"

#include <sodium.h>

#include <algorithm>
#include <ctime>

#include "common/sha256.h"

namespace chat4all::frontend::tus {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out(text.size() * 3 / 4 + 3, '\0');
  std::size_t length = 0;
  for (int variant : {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING}) {
    if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                          text.size(), nullptr, &length, nullptr, variant) == 0) {
      out.resize(length);
      return out;
    }
  }
  return std::nullopt;
}

Refusal bad(std::string code, std::string message, std::string field, int status = 400) {
  return Refusal{status, std::move(code), std::move(message), std::move(field)};
}

bool printable(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f; });
}

}  // namespace

std::optional<std::uint64_t> parse_count(std::string_view value) {
  value = trim(value);
  if (value.empty() || value.size() > 19) return std::nullopt;
  std::uint64_t number = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    number = number * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return number;
}

std::variant<std::map<std::string, std::string>, Refusal> parse_metadata(std::string_view header) {
  std::map<std::string, std::string> pairs;
  header = trim(header);
  while (!header.empty()) {
    const auto comma = header.find(',');
    const std::string_view pair = trim(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    if (pair.empty()) continue;
    const auto space = pair.find(' ');
    const std::string key(pair.substr(0, space));
    std::string value;
    if (space != std::string_view::npos) {
      auto decoded = base64_decode(trim(pair.substr(space + 1)));
      if (!decoded)
        return bad("invalid_metadata",
                   "the value of Upload-Metadata key '" + key + "' is not base64",
                   "Upload-Metadata");
      value = std::move(*decoded);
    }
    if (key.empty() || !printable(key) || pairs.count(key))
      return bad("invalid_metadata", "Upload-Metadata keys must be distinct and printable",
                 "Upload-Metadata");
    pairs.emplace(key, std::move(value));
  }
  return pairs;
}

std::variant<Declared, Refusal> parse_creation(std::string_view upload_length,
                                               std::string_view upload_metadata,
                                               std::uint64_t size_max) {
  Declared declared;
  if (upload_length.empty())
    return bad("missing_upload_length",
               "Upload-Length is required (Upload-Defer-Length is not supported)", "Upload-Length");
  auto length = parse_count(upload_length);
  if (!length)
    return bad("invalid_upload_length", "Upload-Length must be a non-negative integer",
               "Upload-Length");
  if (*length > size_max)
    return bad("file_too_large",
               "the file is larger than the " + std::to_string(size_max) + " bytes allowed",
               "Upload-Length", 413);
  declared.length = *length;
  auto metadata = parse_metadata(upload_metadata);
  if (auto* refusal = std::get_if<Refusal>(&metadata)) return *refusal;
  const auto& pairs = std::get<std::map<std::string, std::string>>(metadata);
  auto first_of = [&](std::initializer_list<const char*> keys) -> std::string {
    for (const char* key : keys)
      if (auto it = pairs.find(key); it != pairs.end()) return it->second;
    return {};
  };
  declared.name = first_of({"filename", "name"});
  declared.media_type = first_of({"filetype", "type", "content_type"});
  declared.sha256 = first_of({"sha256"});
  if (declared.name.size() > kNameBytesMax || !printable(declared.name))
    return bad("invalid_metadata",
               "filename must be printable and at most " + std::to_string(kNameBytesMax) + " bytes",
               "Upload-Metadata.filename");
  if (declared.media_type.empty()) declared.media_type = "application/octet-stream";
  if (declared.media_type.size() > kMediaTypeBytesMax || !printable(declared.media_type) ||
      declared.media_type.find('/') == std::string::npos)
    return bad("invalid_metadata", "filetype must be a media type such as application/pdf",
               "Upload-Metadata.filetype");
  std::transform(declared.sha256.begin(), declared.sha256.end(), declared.sha256.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!declared.sha256.empty() && !is_sha256_hex(declared.sha256))
    return bad("invalid_metadata", "sha256 must be the file's SHA-256 in hex (64 characters)",
               "Upload-Metadata.sha256");
  return declared;
}

std::variant<std::optional<std::string>, Refusal> parse_checksum(std::string_view header) {
  header = trim(header);
  if (header.empty()) return std::optional<std::string>();
  const auto space = header.find(' ');
  const std::string_view algorithm = header.substr(0, space);
  if (algorithm != "sha256")
    return bad("unsupported_checksum_algorithm",
               "Upload-Checksum supports only sha256 (Tus-Checksum-Algorithm)", "Upload-Checksum");
  auto digest = space == std::string_view::npos ? std::nullopt
                                                : base64_decode(trim(header.substr(space + 1)));
  if (!digest || digest->size() != 32)
    return bad("invalid_checksum", "Upload-Checksum must be 'sha256 <base64 of 32 bytes>'",
               "Upload-Checksum");
  return std::optional<std::string>(std::move(*digest));
}

std::optional<Refusal> check_version(std::string_view tus_resumable) {
  if (trim(tus_resumable) == kVersion) return std::nullopt;
  return bad("unsupported_tus_version", "send Tus-Resumable: 1.0.0", "Tus-Resumable", 412);
}

std::optional<Refusal> check_patch(const PatchHeaders& headers, const wire::FileRecord& file) {
  std::string media(trim(headers.content_type.substr(0, headers.content_type.find(';'))));
  std::transform(media.begin(), media.end(), media.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (media != kOffsetContentType)
    return bad("unsupported_media_type",
               std::string("send the bytes as Content-Type: ") + kOffsetContentType, "Content-Type",
               415);
  auto offset = parse_count(headers.upload_offset);
  if (!offset)
    return bad("invalid_upload_offset", "Upload-Offset must be a non-negative integer",
               "Upload-Offset");
  if (*offset != file.offset)
    return bad("offset_mismatch",
               "the upload is at offset " + std::to_string(file.offset) + ", not " +
                   std::to_string(*offset) + "; ask with HEAD and resume from there",
               "Upload-Offset", 409);
  if (file.state != wire::kFileUploading)
    return bad("upload_complete", "the upload is complete", "Upload-Offset", 409);
  if (headers.content_length && file.offset + *headers.content_length > file.length)
    return bad(
        "past_upload_length",
        "the body would take the upload past its Upload-Length of " + std::to_string(file.length),
        "Content-Length");
  if (headers.has_checksum &&
      (!headers.content_length || *headers.content_length > wire::kChunkBytesMax))
    return bad("checksum_body_too_large",
               "with Upload-Checksum send at most " + std::to_string(wire::kChunkBytesMax) +
                   " bytes per PATCH, with a Content-Length",
               "Upload-Checksum");
  return std::nullopt;
}

std::variant<std::nullopt_t, ByteRange, Unsatisfiable> parse_range(std::string_view header,
                                                                   std::uint64_t length) {
  header = trim(header);
  if (header.empty() || header.substr(0, 6) != "bytes=") return std::nullopt;
  const std::string_view spec = trim(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return std::nullopt;  // several: the whole file
  const auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  const auto first = parse_count(spec.substr(0, dash));
  const auto last = parse_count(spec.substr(dash + 1));
  if (!first) {  // suffix: the last n bytes
    if (!last || *last == 0 || length == 0) return Unsatisfiable{};
    return ByteRange{length - std::min(*last, length), length - 1};
  }
  if (*first >= length) return Unsatisfiable{};
  if (!last) {
    if (!trim(spec.substr(dash + 1)).empty()) return std::nullopt;  // malformed: ignored
    return ByteRange{*first, length - 1};
  }
  if (*last < *first) return std::nullopt;
  return ByteRange{*first, std::min(*last, length - 1)};
}

std::vector<ChunkSlice> slices(const std::vector<wire::FileChunk>& chunks, ByteRange range) {
  std::vector<ChunkSlice> out;
  std::uint64_t start = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const std::uint64_t end = start + chunks[i].size;  // exclusive
    if (end > range.first && start <= range.last && chunks[i].size > 0) {
      const std::uint64_t from = std::max(range.first, start) - start;
      const std::uint64_t to = std::min(range.last + 1, end) - start;
      out.push_back({i, from, to - from});
    }
    start = end;
    if (start > range.last) break;
  }
  return out;
}

std::string etag(std::string_view sha256) {
  return "\"" + std::string(sha256) + "\"";
}

bool etag_matches(std::string_view if_none_match, std::string_view sha256) {
  if (trim(if_none_match) == "*") return true;
  const std::string wanted = etag(sha256);
  while (!if_none_match.empty()) {
    const auto comma = if_none_match.find(',');
    std::string_view tag = trim(if_none_match.substr(0, comma));
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == wanted) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

std::string content_disposition(std::string_view name) {
  if (name.empty()) return "attachment";
  std::string ascii, encoded;
  for (unsigned char c : name) {
    ascii += (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '_' : static_cast<char>(c);
    if (std::isalnum(c) ||
        std::string_view("!#$&+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos) {
      encoded += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      encoded += '%';
      encoded += kHex[c >> 4];
      encoded += kHex[c & 0xf];
    }
  }
  return "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded;
}

std::string http_date(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char out[64];
  std::strftime(out, sizeof(out), "%a, %d %b %Y %H:%M:%S GMT", &utc);
  return out;
}

std::string content_path(std::string_view file_id) {
  return "/v1/files/" + std::string(file_id) + "/content";
}

nlohmann::json file_json(const wire::FileRecord& file) {
  nlohmann::json body = {{"file_id", file.file_id},
                         {"name", file.name},
                         {"media_type", file.media_type},
                         {"size", file.length},
                         {"offset", file.offset},
                         {"state", file.state},
                         {"owner_id", file.owner_id},
                         {"chunks", file.chunks.size()},
                         {"created_at_ms", file.created_at_ms},
                         {"upload_url", "/v1/files/" + file.file_id}};
  body["sha256"] = file.sha256.empty() ? nlohmann::json(nullptr) : nlohmann::json(file.sha256);
  if (file.state == wire::kFileComplete) {
    body["download_path"] = content_path(file.file_id);
    body["completed_at_ms"] = file.completed_at_ms;
  } else {
    body["expires_at_ms"] = file.expires_at_ms;
  }
  return body;
}

}  // namespace chat4all::frontend::tus
