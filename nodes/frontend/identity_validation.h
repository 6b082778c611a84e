// Validation of the identity endpoints' bodies: tokens, users, channel
// identities, service clients. Pure functions: JSON text in, a struct or an
// ApiError naming the field out. Unknown fields are ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodes/frontend/validation_support.h"
#include "schema/records.h"

namespace chat4all::frontend {

// POST /v1/auth/token. grant_type "password" (the default: user_id and
// password) or "client_credentials" (client_id and client_secret).
struct TokenRequest {
  bool client_credentials = false;
  std::string tenant_id;
  std::string subject;  // user_id or client_id
  std::string secret;   // password or client_secret
};
std::variant<TokenRequest, ApiError> parse_token_request(std::string_view body);

inline constexpr Length kPasswordBytes{8, 256};
inline constexpr Length kDisplayNameBytes{0, 256};
inline constexpr Length kAddressBytes{1, 128};
inline constexpr std::size_t kIdentitiesMax = 5;

// POST /v1/users: user_id, password, display_name?, identities? (one per channel).
struct UserCreate {
  std::string user_id;
  std::string password;
  std::string display_name;
  std::vector<wire::Identity> identities;
};
std::variant<UserCreate, ApiError> parse_user_create(std::string_view body);

// PATCH /v1/users/{id}: at least one of display_name, password.
struct UserUpdate {
  std::optional<std::string> display_name;
  std::optional<std::string> password;
  std::optional<bool> presence_hidden;  // true: others see the user offline, without last_seen_at
};
std::variant<UserUpdate, ApiError> parse_user_update(std::string_view body);

// PUT /v1/users/{id}/identities/{channel}: {"address"}. `channel` comes from
// the path and is checked here too (400 field "channel").
std::variant<wire::Identity, ApiError> parse_identity_link(std::string_view body,
                                                           const std::string& channel);
// Identities may name any channel, configured yet or not (an operator may add
// it later); messages may only ask for channels of the topology.
FieldError check_channel(const std::string& channel, const std::string& field);

// POST /v1/clients: {"name"}.
std::variant<std::string, ApiError> parse_client_create(std::string_view body);

// A WhatsApp address as WhatsApp names its users (the wa_id in its webhooks):
// the phone number's digits, so "+55 (11) 90000-0001" becomes "5511900000001".
// "+", spaces, dashes, dots and parentheses are dropped; anything else, or
// fewer than 6 or more than 15 digits (E.164), is a 400 naming `field`.
FieldError normalize_whatsapp_address(std::string& address, const std::string& field);

}  // namespace chat4all::frontend
