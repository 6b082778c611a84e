// Validation of the conversation endpoints' bodies, and the id of a private
// conversation. Pure functions: JSON text in, a struct or an ApiError naming
// the field out. Unknown fields are ignored.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodes/frontend/validation_support.h"

namespace chat4all::frontend {

inline constexpr Length kConversationNameBytes{0, 256};
inline constexpr std::size_t kConversationMetadataBytesMax = 4 * 1024;

// POST /v1/conversations. `creator_id` is the user of a user token, who is
// always a member (added when the body leaves it out), or empty for an admin,
// who must list every member. A private conversation has exactly two distinct
// members, a group 1..members_max.
struct ConversationCreate {
  bool is_private = false;
  std::vector<std::string> members;  // distinct, in the order given (creator last if added)
  std::string name;
  std::string metadata;  // JSON object text, or empty
};
std::variant<ConversationCreate, ApiError> parse_conversation_create(std::string_view body,
                                                                     const std::string& creator_id,
                                                                     std::uint32_t members_max);

// POST /v1/conversations/{id}/members: {"members":[...]}, 1..members_max distinct.
std::variant<std::vector<std::string>, ApiError> parse_members_add(std::string_view body,
                                                                   std::uint32_t members_max);

// POST /v1/conversations/{id}/read | delivered: {"up_to_seq"}.
std::variant<std::uint64_t, ApiError> parse_horizon_update(std::string_view body);

// PATCH /v1/conversations/{id}: {"retention_s": N}, 1..`tenant_retention_s`
// (0: no bound but TenantSpec::kRetentionSMax): a conversation may only keep
// its messages for less than its tenant does.
std::variant<std::int64_t, ApiError> parse_conversation_update(std::string_view body,
                                                               std::int64_t tenant_retention_s,
                                                               std::int64_t retention_s_max);

// The one private conversation of a pair in a tenant: "dm_" + 32 hex digits
// of a BLAKE2b-128 of the tenant and the sorted pair, so that creating it
// twice (by either member) names the same conversation.
std::string private_conversation_id(const std::string& tenant_id, const std::string& first,
                                    const std::string& second);

// The group a caller (role and subject: a user and an admin client may share a
// name) creates under an Idempotency-Key: "c_" + 32 hex digits of a BLAKE2b-128
// of the tenant, the caller and the key, so that a retried creation names the
// same group, and no other caller's key can reach it.
std::string keyed_group_id(const std::string& tenant_id, const std::string& role,
                           const std::string& subject, const std::string& idempotency_key);

}  // namespace chat4all::frontend
