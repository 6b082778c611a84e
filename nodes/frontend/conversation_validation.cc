#include "nodes/frontend/conversation_validation.h"

#include <sodium.h>

#include <algorithm>
#include <initializer_list>
#include <limits>

namespace chat4all::frontend {

using nlohmann::json;

std::variant<ConversationCreate, ApiError> parse_conversation_create(std::string_view body,
                                                                     const std::string& creator_id,
                                                                     std::uint32_t members_max) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  ConversationCreate conversation;
  std::string type;
  if (auto error = read_string(document, "type", true, {1, 16}, type)) return *error;
  if (type != "private" && type != "group")
    return bad_field("type", "type must be \"private\" or \"group\"");
  conversation.is_private = type == "private";
  if (auto error = read_name_list(document, "members", true, members_max, conversation.members))
    return *error;
  if (!creator_id.empty() && std::find(conversation.members.begin(), conversation.members.end(),
                                       creator_id) == conversation.members.end())
    conversation.members.push_back(creator_id);
  if (conversation.members.size() > members_max)
    return bad_field("members", "a conversation has at most " + std::to_string(members_max) +
                                    " members (with its creator)");
  if (conversation.is_private && conversation.members.size() != 2)
    return bad_field("members", "a private conversation has exactly two distinct members");
  if (auto error = read_string(document, "name", false, kConversationNameBytes, conversation.name))
    return *error;
  if (!is_printable(conversation.name))
    return bad_field("name", "name must not contain control characters");
  if (auto error = read_object_text(document, "metadata", kConversationMetadataBytesMax,
                                    conversation.metadata))
    return *error;
  return conversation;
}

std::variant<std::vector<std::string>, ApiError> parse_members_add(std::string_view body,
                                                                   std::uint32_t members_max) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  std::vector<std::string> members;
  if (auto error = read_name_list(std::get<json>(parsed), "members", true, members_max, members))
    return *error;
  return members;
}

std::variant<std::uint64_t, ApiError> parse_horizon_update(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json* value = find_field(std::get<json>(parsed), "up_to_seq");
  if (value == nullptr) return missing_field("up_to_seq");
  // Seqs are JSON integers; JavaScript clients cannot send beyond 2^53 anyway.
  if (!value->is_number_unsigned() &&
      !(value->is_number_integer() && value->get<std::int64_t>() >= 0))
    return bad_field("up_to_seq", "up_to_seq must be a non-negative integer");
  return value->get<std::uint64_t>();
}

std::variant<std::int64_t, ApiError> parse_conversation_update(std::string_view body,
                                                               std::int64_t tenant_retention_s,
                                                               std::int64_t retention_s_max) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json* value = find_field(std::get<json>(parsed), "retention_s");
  if (value == nullptr) return missing_field("retention_s");
  const std::int64_t bound = tenant_retention_s > 0 ? tenant_retention_s : retention_s_max;
  if (!value->is_number_integer() || value->get<std::int64_t>() < 1 ||
      value->get<std::int64_t>() > bound)
    return bad_field("retention_s",
                     tenant_retention_s > 0
                         ? "retention_s must be an integer from 1 to " + std::to_string(bound) +
                               " (the tenant's retention: a conversation may only shorten it)"
                         : "retention_s must be an integer from 1 to " + std::to_string(bound));
  return value->get<std::int64_t>();
}

namespace {

// `prefix` + 32 hex digits of a BLAKE2b-128 of `parts` joined by NUL (names and
// ids never contain NUL, so the joined input is unambiguous).
std::string hashed_id(std::string_view prefix, std::initializer_list<std::string_view> parts) {
  std::string input;
  bool first = true;
  for (const auto part : parts) {
    if (!first) input += '\0';
    first = false;
    input += part;
  }
  unsigned char digest[16];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size(), nullptr, 0);
  char hex[sizeof digest * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(prefix) + hex;
}

}  // namespace

std::string private_conversation_id(const std::string& tenant_id, const std::string& first,
                                    const std::string& second) {
  const auto& [low, high] = std::minmax(first, second);
  return hashed_id("dm_", {tenant_id, low, high});
}

std::string keyed_group_id(const std::string& tenant_id, const std::string& role,
                           const std::string& subject, const std::string& idempotency_key) {
  return hashed_id("c_", {tenant_id, role, subject, idempotency_key});
}

}  // namespace chat4all::frontend
