#include "nodes/frontend/message_validation.h"

#include <charconv>
#include <nlohmann/json.hpp>

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

namespace {

ApiError bad_field(const std::string& field, const std::string& message,
                   const std::string& code = "invalid_field") {
  return ApiError{400, code, message, field};
}

std::variant<json, ApiError> parse_object(std::string_view body) {
  json document = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (document.is_discarded())
    return ApiError{400, "invalid_json", "the request body is not valid JSON", ""};
  if (!document.is_object())
    return ApiError{400, "invalid_json", "the request body must be a JSON object", ""};
  return document;
}

// Reads an optional identifier field; an ApiError when present but invalid.
std::optional<ApiError> read_id(const json& object, const char* key, const std::string& path,
                                bool required, std::string& out) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) return bad_field(path, path + " is required", "missing_field");
    return std::nullopt;
  }
  if (!it->is_string()) return bad_field(path, path + " must be a string");
  out = it->get<std::string>();
  if (!ids::is_valid_id(out))
    return bad_field(path, path + " must be 1-128 characters of A-Z a-z 0-9 . _ : @ -");
  return std::nullopt;
}

}  // namespace

std::variant<wire::AppendRequest, ApiError> parse_send_message(std::string_view body,
                                                               const std::string& sender_id,
                                                               const MessageLimits& limits,
                                                               std::int64_t now_ms) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);

  wire::AppendRequest request;
  request.sender_id = sender_id;
  request.received_at_ms = now_ms;
  if (auto error =
          read_id(document, "conversation_id", "conversation_id", true, request.conversation_id))
    return *error;
  if (auto error = read_id(document, "message_id", "message_id", false, request.message_id))
    return *error;
  if (request.message_id.empty()) request.message_id = ids::new_message_id(now_ms);

  if (const auto to = document.find("to"); to != document.end() && !to->is_null()) {
    if (to->is_string()) {
      if (!ids::is_valid_id(to->get_ref<const std::string&>()))
        return bad_field("to", "to must be a user id (1-128 characters of A-Z a-z 0-9 . _ : @ -)");
      request.recipients.push_back(to->get<std::string>());
    } else if (!to->is_array()) {
      return bad_field("to", "to must be a user id or an array of user ids");
    }
    if (to->size() > limits.recipients_max)
      return bad_field(
          "to", "to lists more than " + std::to_string(limits.recipients_max) + " recipients");
    for (std::size_t i = 0; to->is_array() && i < to->size(); ++i) {
      const json& item = (*to)[i];
      const std::string path = "to[" + std::to_string(i) + "]";
      if (!item.is_string() || !ids::is_valid_id(item.get_ref<const std::string&>()))
        return bad_field(path,
                         path + " must be a user id (1-128 characters of A-Z a-z 0-9 . _ : @ -)");
      request.recipients.push_back(item.get<std::string>());
    }
  }

  const auto payload = document.find("payload");
  if (payload == document.end() || payload->is_null())
    return bad_field("payload", "payload is required", "missing_field");
  if (!payload->is_object()) return bad_field("payload", "payload must be an object");
  const auto type = payload->find("type");
  if (type == payload->end() || type->is_null())
    return bad_field("payload.type", "payload.type is required", "missing_field");
  if (!type->is_string()) return bad_field("payload.type", "payload.type must be a string");
  request.payload.type = type->get<std::string>();
  if (request.payload.type != "text")
    return bad_field("payload.type",
                     "payload.type '" + request.payload.type + "' is not supported (use \"text\")",
                     "unsupported_payload_type");
  const auto text = payload->find("text");
  if (text == payload->end() || text->is_null())
    return bad_field("payload.text", "payload.text is required for a text message",
                     "missing_field");
  if (!text->is_string()) return bad_field("payload.text", "payload.text must be a string");
  request.payload.text = text->get<std::string>();
  if (request.payload.text.empty())
    return bad_field("payload.text", "payload.text must not be empty");
  if (request.payload.text.size() > limits.text_bytes_max)
    return ApiError{413, "payload_too_large",
                    "payload.text is " + std::to_string(request.payload.text.size()) +
                        " bytes; the limit is " + std::to_string(limits.text_bytes_max),
                    "payload.text"};
  return request;
}

std::variant<TokenRequest, ApiError> parse_token_request(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  TokenRequest request;
  if (auto error = read_id(document, "user_id", "user_id", true, request.user_id)) return *error;
  const auto password = document.find("password");
  if (password == document.end() || password->is_null())
    return bad_field("password", "password is required", "missing_field");
  if (!password->is_string()) return bad_field("password", "password must be a string");
  request.password = password->get<std::string>();
  if (request.password.size() > 1024) return bad_field("password", "password is too long");
  return request;
}

std::variant<HistoryQuery, ApiError> parse_history_query(std::string_view query,
                                                         std::uint32_t page_max) {
  HistoryQuery result;
  result.limit = std::min(result.limit, page_max);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const std::string_view name = pair.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    std::uint64_t number = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
    const bool numeric = !value.empty() && ec == std::errc() && end == value.data() + value.size();
    if (name == "from_seq") {
      if (!numeric || number == 0)
        return bad_field("from_seq", "from_seq must be a positive integer");
      result.from_seq = number;
    } else if (name == "limit") {
      if (!numeric || number == 0 || number > page_max)
        return bad_field("limit", "limit must be an integer from 1 to " + std::to_string(page_max));
      result.limit = static_cast<std::uint32_t>(number);
    } else {
      return bad_field(std::string(name), "unknown query parameter '" + std::string(name) + "'",
                       "unknown_parameter");
    }
  }
  return result;
}

}  // namespace chat4all::frontend
