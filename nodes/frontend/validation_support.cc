#include "nodes/frontend/validation_support.h"

#include <charconv>
#include <set>

#include "common/ids.h"

namespace chat4all::frontend {

using nlohmann::json;

std::string ApiError::to_json() const {
  json error = {{"code", code}, {"message", message}};
  if (!field.empty()) error["field"] = field;
  // Messages may echo client bytes that are not UTF-8 (a path, a parameter
  // name); replace them rather than throw.
  return json{{"error", error}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiError bad_field(const std::string& field, const std::string& message, const std::string& code) {
  return ApiError{400, code, message, field};
}

ApiError missing_field(const std::string& field) {
  return bad_field(field, field + " is required", "missing_field");
}

json parse_json_bounded(std::string_view text, bool& too_deep) {
  too_deep = false;
  // Returning false drops what is past the bound, so nothing that deep is ever built.
  const json::parser_callback_t bound = [&too_deep](int depth, json::parse_event_t, json&) {
    if (depth > kJsonDepthMax) too_deep = true;
    return !too_deep;
  };
  json parsed = json::parse(text, bound, /*allow_exceptions=*/false);
  if (too_deep) return json(json::value_t::discarded);
  return parsed;
}

std::variant<json, ApiError> parse_object(std::string_view body) {
  bool too_deep = false;
  json document = parse_json_bounded(body, too_deep);
  if (too_deep)
    return ApiError{
        400, "invalid_json",
        "the request body nests deeper than " + std::to_string(kJsonDepthMax) + " levels", ""};
  if (document.is_discarded())
    return ApiError{400, "invalid_json", "the request body is not valid JSON", ""};
  if (!document.is_object())
    return ApiError{400, "invalid_json", "the request body must be a JSON object", ""};
  return document;
}

const json* find_field(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

namespace {

// The string value of a field, or the error for it.
FieldError string_field(const json& object, const char* key, bool required, const std::string& path,
                        const std::string*& out) {
  out = nullptr;
  const json* value = find_field(object, key);
  if (value == nullptr) return required ? FieldError(missing_field(path)) : std::nullopt;
  if (!value->is_string()) return bad_field(path, path + " must be a string");
  out = &value->get_ref<const std::string&>();
  return std::nullopt;
}

}  // namespace

FieldError read_string(const json& object, const char* key, bool required, Length bytes,
                       std::string& out, const std::string& path) {
  const std::string& name = path.empty() ? std::string(key) : path;
  const std::string* value = nullptr;
  if (auto error = string_field(object, key, required, name, value)) return error;
  if (value == nullptr) return std::nullopt;
  if (value->size() < bytes.min || value->size() > bytes.max)
    return bad_field(name, name + " must be " + std::to_string(bytes.min) + "-" +
                               std::to_string(bytes.max) + " bytes");
  out = *value;
  return std::nullopt;
}

FieldError check_name(const std::string& value, const std::string& field) {
  if (ids::is_valid_name(value)) return std::nullopt;
  return bad_field(field, field + " must be 1-64 characters of A-Z a-z 0-9 . _ -");
}

FieldError check_id(const std::string& value, const std::string& field) {
  if (ids::is_valid_id(value)) return std::nullopt;
  return bad_field(field, field + " must be 1-128 characters of A-Z a-z 0-9 . _ : @ -");
}

namespace {

// A string field that `check(value, name)` accepts.
FieldError read_checked(const json& object, const char* key, bool required, std::string& out,
                        const std::string& path,
                        FieldError (*check)(const std::string&, const std::string&)) {
  const std::string& name = path.empty() ? std::string(key) : path;
  const std::string* value = nullptr;
  if (auto error = string_field(object, key, required, name, value)) return error;
  if (value == nullptr) return std::nullopt;
  if (auto error = check(*value, name)) return error;
  out = *value;
  return std::nullopt;
}

}  // namespace

FieldError read_id(const json& object, const char* key, bool required, std::string& out,
                   const std::string& path) {
  return read_checked(object, key, required, out, path, check_id);
}

FieldError read_name(const json& object, const char* key, bool required, std::string& out,
                     const std::string& path) {
  return read_checked(object, key, required, out, path, check_name);
}

FieldError read_name_list(const json& object, const char* key, bool required, std::size_t items_max,
                          std::vector<std::string>& out) {
  const std::string name(key);
  const json* value = find_field(object, key);
  if (value == nullptr) return required ? FieldError(missing_field(name)) : std::nullopt;
  if (!value->is_array()) return bad_field(name, name + " must be an array of user ids");
  if (value->empty()) return bad_field(name, name + " must not be empty");
  if (value->size() > items_max)
    return bad_field(name, name + " lists more than " + std::to_string(items_max) + " users");
  std::vector<std::string> names;
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < value->size(); ++i) {
    const json& item = (*value)[i];
    const std::string path = name + "[" + std::to_string(i) + "]";
    if (!item.is_string() || !ids::is_valid_name(item.get_ref<const std::string&>()))
      return bad_field(path, path + " must be a user id (1-64 characters of A-Z a-z 0-9 . _ -)");
    if (seen.insert(item.get_ref<const std::string&>()).second)
      names.push_back(item.get<std::string>());
  }
  out = std::move(names);
  return std::nullopt;
}

FieldError read_object_text(const json& object, const char* key, std::size_t bytes_max,
                            std::string& out) {
  const std::string name(key);
  const json* value = find_field(object, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_object()) return bad_field(name, name + " must be an object");
  std::string text = value->dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > bytes_max)
    return ApiError{413, "payload_too_large",
                    name + " is " + std::to_string(text.size()) + " bytes as JSON; the limit is " +
                        std::to_string(bytes_max),
                    name};
  out = std::move(text);
  return std::nullopt;
}

bool is_printable(std::string_view text) {
  for (const unsigned char c : text)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

std::optional<std::string> percent_decode(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int high = hex(text[i + 1]), low = hex(text[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

std::variant<QueryParams, ApiError> parse_query(std::string_view query) {
  QueryParams params;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view raw_name = pair.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    auto name = percent_decode(raw_name);
    auto value = percent_decode(raw_value);
    if (!name || !value)
      return bad_field(std::string(raw_name),
                       "query parameter '" + std::string(raw_name) + "' has a malformed % escape");
    params.emplace_back(std::move(*name), std::move(*value));
  }
  return params;
}

FieldError read_number(const std::string& name, const std::string& value, std::uint64_t min,
                       std::uint64_t max, std::uint64_t& out) {
  std::uint64_t number = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (value.empty() || ec != std::errc() || end != value.data() + value.size() || number < min ||
      number > max)
    return bad_field(name, name + " must be an integer from " + std::to_string(min) + " to " +
                               std::to_string(max));
  out = number;
  return std::nullopt;
}

ApiError unknown_parameter(const std::string& name) {
  return bad_field(name, "unknown query parameter '" + name + "'", "unknown_parameter");
}

std::variant<PageQuery, ApiError> parse_page_query(std::string_view query,
                                                   std::string_view extra_name) {
  auto parsed = parse_query(query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  PageQuery page;
  for (auto& [name, value] : std::get<QueryParams>(parsed)) {
    if (name == "limit") {
      std::uint64_t limit = 0;
      if (auto error = read_number(name, value, 1, kListLimitMax, limit)) return *error;
      page.limit = static_cast<std::uint32_t>(limit);
    } else if (name == "after") {
      if (!ids::is_valid_id(value))
        return bad_field(name, "after must be an id from a previous page (next_after)");
      page.after = std::move(value);
    } else if (!extra_name.empty() && name == extra_name) {
      page.extra = std::move(value);
    } else {
      return unknown_parameter(name);
    }
  }
  return page;
}

}  // namespace chat4all::frontend
