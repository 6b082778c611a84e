// What every request parser of the public API shares: the error the client
// sees (ApiError), typed readers of JSON fields that name the offending
// field in their errors, and query-string parsing. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace chat4all::frontend {

// An error as the client sees it: HTTP status plus {"error":{code,message,field?}}.
struct ApiError {
  int http_status = 400;
  std::string code;
  std::string message;
  std::string field;  // dotted path of the offending field; empty when none

  std::string to_json() const;
};

// A field's problem: nothing when it is fine.
using FieldError = std::optional<ApiError>;

ApiError bad_field(const std::string& field, const std::string& message,
                   const std::string& code = "invalid_field");
ApiError missing_field(const std::string& field);

// How deep a document from a client may nest. Walking a value (dump(), a copy, a comparison)
// recurses, so a deeper one could exhaust the stack of the thread that walks it.
constexpr int kJsonDepthMax = 64;

// `text` parsed, or a discarded value when it is not JSON; a document that nests deeper than
// kJsonDepthMax is discarded too, and sets `too_deep`.
nlohmann::json parse_json_bounded(std::string_view text, bool& too_deep);

// The request body as a JSON object, or 400 invalid_json (also for one nested deeper than
// kJsonDepthMax).
std::variant<nlohmann::json, ApiError> parse_object(std::string_view body);

// The value of `key` in `object`, or null when it is absent or JSON null
// (both mean "not given").
const nlohmann::json* find_field(const nlohmann::json& object, const char* key);

// Readers of one field: `path` names it in errors (defaults to `key`). Each
// leaves `out` untouched when the field is absent and not required.
struct Length {
  std::size_t min = 0;
  std::size_t max = 0;
};
FieldError read_string(const nlohmann::json& object, const char* key, bool required, Length bytes,
                       std::string& out, const std::string& path = "");
// Ids of things clients name or the server makes (ids::is_valid_id).
FieldError read_id(const nlohmann::json& object, const char* key, bool required, std::string& out,
                   const std::string& path = "");
// Names of tenants, users, clients (ids::is_valid_name).
FieldError read_name(const nlohmann::json& object, const char* key, bool required, std::string& out,
                     const std::string& path = "");
// A list of user ids, 1..`items_max`, duplicates dropped (first one kept).
FieldError read_name_list(const nlohmann::json& object, const char* key, bool required,
                          std::size_t items_max, std::vector<std::string>& out);
// A JSON object stored as its text (metadata): at most `bytes_max` bytes of
// compact JSON, 413 beyond. Absent: `out` stays empty.
FieldError read_object_text(const nlohmann::json& object, const char* key, std::size_t bytes_max,
                            std::string& out);

// Path parameters: a name (user id) or an id (conversation, message, webhook).
FieldError check_name(const std::string& value, const std::string& field);
FieldError check_id(const std::string& value, const std::string& field);

// Text that clients show (display names, addresses): no control characters.
bool is_printable(std::string_view text);

// Percent-decodes a path segment or query value; nothing when an escape is malformed.
std::optional<std::string> percent_decode(std::string_view text);

// The name=value pairs of a query string, percent-decoded, in order. A
// malformed escape is 400 naming the parameter.
using QueryParams = std::vector<std::pair<std::string, std::string>>;
std::variant<QueryParams, ApiError> parse_query(std::string_view query);

// A decimal integer parameter in [min, max].
FieldError read_number(const std::string& name, const std::string& value, std::uint64_t min,
                       std::uint64_t max, std::uint64_t& out);

ApiError unknown_parameter(const std::string& name);

// ?after=&limit= of a list, and optionally one more parameter (e.g. user_id).
struct PageQuery {
  std::string after;
  std::uint32_t limit = 50;
  std::string extra;  // the value of `extra_name`, if given
};
inline constexpr std::uint32_t kListLimitMax = 200;
std::variant<PageQuery, ApiError> parse_page_query(std::string_view query,
                                                   std::string_view extra_name = {});

}  // namespace chat4all::frontend
