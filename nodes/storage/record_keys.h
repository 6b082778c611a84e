// Record keys of the tenant directory that more than one part of the
// partition state machine reads (domain.cc, presence.cc). Relative to the
// partition; names never contain '/' (ids::is_valid_name / is_valid_id), so
// the separators keep one record family, one tenant, one user together.
#pragma once

#include <string>
#include <string_view>

#include "schema/records.h"

namespace chat4all::storage {

inline std::string user_key(std::string_view tenant, std::string_view user) {
  return "U/" + std::string(tenant) + "/" + std::string(user);
}
// The conversations of a user: "M/<tenant>/<user>/<conversation_id>" -> "".
inline std::string membership_prefix(std::string_view tenant, std::string_view user) {
  return "M/" + std::string(tenant) + "/" + std::string(user) + "/";
}

// A conversation's record: "V/<conversation>" -> ConversationRecord.
inline std::string conversation_key(std::string_view conversation) {
  return "V/" + std::string(conversation);
}
// An identity's owner: "I/<tenant>/<channel>/<address>" -> user id.
inline std::string identity_key(std::string_view tenant, const wire::Identity& identity) {
  return "I/" + std::string(tenant) + "/" + identity.channel + "/" + identity.address;
}
// A user's last-seen presence record: "P/<tenant>/<user>" -> PresenceRecord.
inline std::string seen_key(std::string_view tenant, std::string_view user) {
  return "P/" + std::string(tenant) + "/" + std::string(user);
}

}  // namespace chat4all::storage
