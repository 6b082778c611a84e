#include "nodes/frontend/message_validation.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>

#include "common/auth.h"
#include "common/ids.h"
#include "common/topology.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

FieldError read_recipients(const json& document, const std::string& sender_id,
                           const MessageLimits& limits, std::vector<std::string>& out) {
  const json* to = find_field(document, "to");
  if (to == nullptr) return std::nullopt;
  // One recipient may be given as a plain string.
  const json list = to->is_string() ? json::array({*to}) : *to;
  if (!list.is_array()) return bad_field("to", "to must be a user id or an array of user ids");
  if (list.empty()) return std::nullopt;  // the same as leaving it out: every other member
  if (list.size() > limits.recipients_max)
    return bad_field("to",
                     "to lists more than " + std::to_string(limits.recipients_max) + " recipients");
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    const std::string path = to->is_string() ? "to" : "to[" + std::to_string(i) + "]";
    if (!item.is_string() || !ids::is_valid_name(item.get_ref<const std::string&>()))
      return bad_field(path, path + " must be a user id (1-64 characters of A-Z a-z 0-9 . _ -)");
    const auto& recipient = item.get_ref<const std::string&>();
    if (recipient == sender_id)
      return bad_field(path, path + " is the sender; a message goes to other members");
    if (seen.insert(recipient).second) out.push_back(recipient);
  }
  return std::nullopt;
}

FieldError read_channels(const json& document, const std::vector<std::string>& known,
                         std::vector<std::string>& out) {
  const json* channels = find_field(document, "channels");
  if (channels == nullptr) return std::nullopt;
  if (!channels->is_array() || channels->empty())
    return bad_field("channels",
                     "channels must be a non-empty array of channel names or [\"all\"]");
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < channels->size(); ++i) {
    const json& item = (*channels)[i];
    const std::string path = "channels[" + std::to_string(i) + "]";
    if (!item.is_string()) return bad_field(path, path + " must be a string");
    const auto& name = item.get_ref<const std::string&>();
    if (name == "all") {
      if (channels->size() != 1)
        return bad_field("channels", "\"all\" cannot be combined with named channels");
      return std::nullopt;  // the default: stored as no choice
    }
    if (name != kChannelInternal && std::find(known.begin(), known.end(), name) == known.end()) {
      std::string choices = kChannelInternal;
      for (const auto& channel : known) choices += ", " + channel;
      return bad_field(path, path + " must be one of " + choices + " (or channels [\"all\"])");
    }
    if (!seen.insert(name).second) return bad_field(path, path + " repeats '" + name + "'");
    out.push_back(name);
  }
  return std::nullopt;
}

FieldError read_payload(const json& document, const MessageLimits& limits, wire::Payload& out) {
  const json* payload = find_field(document, "payload");
  if (payload == nullptr) return missing_field("payload");
  if (!payload->is_object()) return bad_field("payload", "payload must be an object");
  const json* type = find_field(*payload, "type");
  if (type == nullptr) return missing_field("payload.type");
  if (!type->is_string()) return bad_field("payload.type", "payload.type must be a string");
  out.type = type->get<std::string>();
  if (out.type == "file") return read_id(*payload, "file_id", true, out.file_id, "payload.file_id");
  if (out.type != "text")
    return bad_field("payload.type",
                     "payload.type '" + out.type + "' is not supported (use \"text\" or \"file\")",
                     "unsupported_payload_type");
  const json* text = find_field(*payload, "text");
  if (text == nullptr) return missing_field("payload.text");
  if (!text->is_string()) return bad_field("payload.text", "payload.text must be a string");
  out.text = text->get<std::string>();
  if (out.text.empty()) return bad_field("payload.text", "payload.text must not be empty");
  if (out.text.size() > limits.text_bytes_max)
    return ApiError{413, "payload_too_large",
                    "payload.text is " + std::to_string(out.text.size()) + " bytes; the limit is " +
                        std::to_string(limits.text_bytes_max),
                    "payload.text"};
  return std::nullopt;
}

}  // namespace

std::variant<wire::AppendRequest, ApiError> parse_send_message(std::string_view body,
                                                               const std::string& tenant_id,
                                                               const std::string& token_user_id,
                                                               const MessageLimits& limits,
                                                               std::int64_t now_ms) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);

  wire::AppendRequest request;
  request.tenant_id = tenant_id;
  request.received_at_ms = now_ms;
  if (auto error = read_id(document, "conversation_id", true, request.conversation_id))
    return *error;
  if (auto error = read_id(document, "message_id", false, request.message_id)) return *error;
  if (request.message_id.empty()) request.message_id = ids::new_message_id(now_ms);

  if (auto error = read_name(document, "sender_id", token_user_id.empty(), request.sender_id))
    return *error;
  if (token_user_id.empty()) {
    // An admin token speaks for the member it names.
    request.sender_named_by_admin = true;
  } else if (request.sender_id.empty() || request.sender_id == token_user_id) {
    request.sender_id = token_user_id;
  } else {
    return ApiError{403, "forbidden", "a user token sends only as its own user", "sender_id"};
  }

  if (auto error = read_recipients(document, request.sender_id, limits, request.recipients))
    return *error;
  static const std::vector<std::string> kNoChannels;
  const auto tenant_channels = limits.channels_by_tenant.find(tenant_id);
  if (auto error = read_channels(document,
                                 tenant_channels == limits.channels_by_tenant.end()
                                     ? kNoChannels
                                     : tenant_channels->second,
                                 request.channels))
    return *error;
  if (auto error = read_payload(document, limits, request.payload)) return *error;
  if (auto error =
          read_object_text(document, "metadata", limits.metadata_bytes_max, request.metadata))
    return *error;
  return request;
}

std::string encode_history_cursor(bool backward, std::uint64_t seq) {
  return auth::base64url_encode((backward ? "b:" : "f:") + std::to_string(seq));
}

std::optional<HistoryQuery> decode_history_cursor(std::string_view cursor) {
  if (cursor.size() > 64) return std::nullopt;
  const auto text = auth::base64url_decode(cursor);
  if (!text || text->size() < 3 || (*text)[1] != ':') return std::nullopt;
  const char direction = (*text)[0];
  if (direction != 'f' && direction != 'b') return std::nullopt;
  std::uint64_t seq = 0;
  const char* begin = text->data() + 2;
  const char* end = text->data() + text->size();
  const auto [stop, ec] = std::from_chars(begin, end, seq);
  if (ec != std::errc() || stop != end || seq == 0) return std::nullopt;
  HistoryQuery query;
  query.backward = direction == 'b';
  if (query.backward) {
    query.before_seq = seq;
  } else {
    query.from_seq = seq;
  }
  return query;
}

HistoryPageEnd history_page_end(const HistoryQuery& query,
                                const std::vector<wire::StoredMessage>& messages,
                                std::uint64_t last_seq, std::uint64_t first_seq) {
  HistoryPageEnd end;
  if (query.backward) {
    end.end_of_history =
        messages.empty() || messages.front().seq <= std::max<std::uint64_t>(first_seq, 1);
    end.next_from_seq = messages.empty() ? 1 : messages.back().seq + 1;
    if (!end.end_of_history) end.next_cursor = encode_history_cursor(true, messages.front().seq);
    return end;
  }
  if (messages.empty()) {
    // Nothing at or after `since`: everything there is is older.
    end.next_from_seq =
        query.since_ms > 0 ? last_seq + 1 : std::max<std::uint64_t>(query.from_seq, first_seq);
    return end;
  }
  end.next_from_seq = messages.back().seq + 1;
  end.end_of_history = end.next_from_seq > last_seq;
  if (!end.end_of_history) end.next_cursor = encode_history_cursor(false, end.next_from_seq);
  return end;
}

std::variant<HistoryQuery, ApiError> parse_history_query(std::string_view query,
                                                         std::uint32_t page_max) {
  auto parsed = parse_query(query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  HistoryQuery result;
  result.limit = std::min(result.limit, page_max);
  std::string position;  // the one of from_seq, before_seq, since, cursor given
  constexpr auto kSeqMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (const auto& [name, value] : std::get<QueryParams>(parsed)) {
    if (name == "limit") {
      std::uint64_t limit = 0;
      if (auto error = read_number(name, value, 1, page_max, limit)) return *error;
      result.limit = static_cast<std::uint32_t>(limit);
      continue;
    }
    if (name != "from_seq" && name != "before_seq" && name != "since" && name != "cursor")
      return unknown_parameter(name);
    if (!position.empty())
      return bad_field(name,
                       "give only one of from_seq, before_seq, since, cursor (" + position +
                           " was given already)",
                       "conflicting_parameters");
    position = name;
    const std::uint64_t keep_limit = result.limit;
    std::uint64_t number = 0;
    if (name == "from_seq") {
      if (auto error = read_number(name, value, 1, kSeqMax, number)) return *error;
      result.from_seq = number;
    } else if (name == "before_seq") {
      if (auto error = read_number(name, value, 1, kSeqMax, number)) return *error;
      result.backward = true;
      result.before_seq = number;
    } else if (name == "since") {
      if (auto error = read_number(name, value, 0, kSeqMax, number)) return *error;
      // since=0 means "from the start": the same as no position at all.
      result.since_ms = static_cast<std::int64_t>(number);
    } else {
      auto cursor = decode_history_cursor(value);
      if (!cursor) return bad_field("cursor", "cursor is not one this server gave out");
      result = *cursor;
    }
    result.limit = static_cast<std::uint32_t>(keep_limit);
  }
  return result;
}

}  // namespace chat4all::frontend
