#include "nodes/frontend/identity_validation.h"

#include <set>

#include "common/ids.h"
#include "common/topology.h"
#include "nodes/frontend/message_validation.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

// Secrets are compared by argon2id, whose cost does not depend on their
// length, but an unbounded one would still be read and hashed in full.
constexpr Length kSecretBytes{1, 1024};

FieldError read_address(const json& object, const std::string& path, std::string& out) {
  if (auto error = read_string(object, "address", true, kAddressBytes, out, path)) return error;
  if (!is_printable(out)) return bad_field(path, path + " must not contain control characters");
  return std::nullopt;
}

FieldError read_display_name(const json& object, std::string& out) {
  if (auto error = read_string(object, "display_name", false, kDisplayNameBytes, out)) return error;
  if (!is_printable(out))
    return bad_field("display_name", "display_name must not contain control characters");
  return std::nullopt;
}

}  // namespace

FieldError check_channel(const std::string& channel, const std::string& field) {
  if (ids::is_valid_name(channel) && channel != kChannelAll) return std::nullopt;
  return bad_field(field, field + " must be a channel name (1-64 characters of A-Z a-z 0-9 . _ -)");
}

std::variant<TokenRequest, ApiError> parse_token_request(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  TokenRequest request;
  std::string grant_type = "password";
  if (auto error = read_string(document, "grant_type", false, {1, 64}, grant_type)) return *error;
  if (grant_type != "password" && grant_type != "client_credentials")
    return bad_field("grant_type", "grant_type must be \"password\" or \"client_credentials\"",
                     "unsupported_grant_type");
  request.client_credentials = grant_type == "client_credentials";
  if (auto error = read_name(document, "tenant_id", true, request.tenant_id)) return *error;
  if (request.client_credentials) {
    if (auto error = read_id(document, "client_id", true, request.subject)) return *error;
    if (auto error = read_string(document, "client_secret", true, kSecretBytes, request.secret))
      return *error;
  } else {
    if (auto error = read_name(document, "user_id", true, request.subject)) return *error;
    if (auto error = read_string(document, "password", true, kSecretBytes, request.secret))
      return *error;
  }
  return request;
}

std::variant<UserCreate, ApiError> parse_user_create(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  UserCreate user;
  if (auto error = read_name(document, "user_id", true, user.user_id)) return *error;
  if (auto error = read_string(document, "password", true, kPasswordBytes, user.password))
    return *error;
  if (auto error = read_display_name(document, user.display_name)) return *error;
  const json* identities = find_field(document, "identities");
  if (identities == nullptr) return user;
  if (!identities->is_array())
    return bad_field("identities", "identities must be an array of {channel, address}");
  if (identities->size() > kIdentitiesMax)
    return bad_field("identities",
                     "at most " + std::to_string(kIdentitiesMax) + " identities (one per channel)");
  std::set<std::string> channels;
  for (std::size_t i = 0; i < identities->size(); ++i) {
    const std::string path = "identities[" + std::to_string(i) + "]";
    const json& item = (*identities)[i];
    if (!item.is_object()) return bad_field(path, path + " must be an object");
    wire::Identity identity;
    if (auto error =
            read_string(item, "channel", true, {1, 64}, identity.channel, path + ".channel"))
      return *error;
    if (auto error = check_channel(identity.channel, path + ".channel")) return *error;
    if (!channels.insert(identity.channel).second)
      return bad_field(path + ".channel",
                       "one identity per channel ('" + identity.channel + "' is given twice)");
    if (auto error = read_address(item, path + ".address", identity.address)) return *error;
    user.identities.push_back(std::move(identity));
  }
  return user;
}

std::variant<UserUpdate, ApiError> parse_user_update(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  UserUpdate update;
  if (find_field(document, "display_name")) {
    std::string display_name;
    if (auto error = read_display_name(document, display_name)) return *error;
    update.display_name = std::move(display_name);
  }
  if (find_field(document, "password")) {
    std::string password;
    if (auto error = read_string(document, "password", true, kPasswordBytes, password))
      return *error;
    update.password = std::move(password);
  }
  if (const json* hidden = find_field(document, "presence_hidden")) {
    if (!hidden->is_boolean())
      return bad_field("presence_hidden", "presence_hidden must be true or false");
    update.presence_hidden = hidden->get<bool>();
  }
  if (!update.display_name && !update.password && !update.presence_hidden)
    return bad_field("display_name", "give display_name, password, presence_hidden or several",
                     "missing_field");
  return update;
}

std::variant<wire::Identity, ApiError> parse_identity_link(std::string_view body,
                                                           const std::string& channel) {
  if (auto error = check_channel(channel, "channel")) return *error;
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  wire::Identity identity{channel, ""};
  if (auto error = read_address(std::get<json>(parsed), "address", identity.address)) return *error;
  return identity;
}

std::variant<std::string, ApiError> parse_client_create(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  std::string name;
  if (auto error = read_string(std::get<json>(parsed), "name", true, {1, 128}, name)) return *error;
  if (!is_printable(name)) return bad_field("name", "name must not contain control characters");
  return name;
}

FieldError normalize_whatsapp_address(std::string& address, const std::string& field) {
  std::string digits;
  for (const char c : address) {
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c != '+' && c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') {
      return bad_field(field, field +
                                  " must be a phone number (digits, optionally with +, "
                                  "spaces, dashes, dots or parentheses)");
    }
  }
  if (digits.size() < 6 || digits.size() > 15)
    return bad_field(field, field + " must be a phone number of 6 to 15 digits");
  address = std::move(digits);
  return std::nullopt;
}

}  // namespace chat4all::frontend
