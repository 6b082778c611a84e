// Validation of the message endpoints' input: POST /v1/messages and the
// history query. Pure functions: text in, a wire request or an ApiError
// naming the field out. No I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodes/frontend/validation_support.h"
#include "schema/wire.h"

namespace chat4all::frontend {

struct MessageLimits {
  std::uint32_t text_bytes_max = 64 * 1024;
  std::uint32_t recipients_max = 256;
  std::uint32_t metadata_bytes_max = 4 * 1024;
  // The topology's channels by the tenant they belong to: what `channels` may name besides
  // "internal". Another tenant's channel is unknown, as if it were not declared.
  std::map<std::string, std::vector<std::string>> channels_by_tenant;
};

// Parses POST /v1/messages for `tenant_id`. `token_user_id` is the user of a
// user token (the sender; a body `sender_id` naming someone else is 403) or
// empty for an admin token, which must name the sender in `sender_id`. A
// missing message_id is generated from `now_ms`. `channels` ["all"] is
// stored as empty (the default), so both spellings are the same content;
// named channels must be "internal" or the tenant's in limits.channels_by_tenant.
std::variant<wire::AppendRequest, ApiError> parse_send_message(std::string_view body,
                                                               const std::string& tenant_id,
                                                               const std::string& token_user_id,
                                                               const MessageLimits& limits,
                                                               std::int64_t now_ms);

// Query of GET /v1/conversations/{id}/messages: one of from_seq, before_seq,
// since, cursor (none: from_seq=1), and limit.
struct HistoryQuery {
  bool backward = false;
  std::uint64_t from_seq = 1;    // forward
  std::uint64_t before_seq = 0;  // backward
  std::int64_t since_ms = 0;     // forward from a time, when > 0
  std::uint32_t limit = 50;
};
std::variant<HistoryQuery, ApiError> parse_history_query(std::string_view query,
                                                         std::uint32_t page_max);

// Where a page of history leaves the reader. Forward: the page ends the
// history when it reaches last_seq (an empty page always does). Backward: when
// it reaches seq 1 or is empty. next_from_seq continues forward in both
// directions (1 after an empty backward page); next_cursor continues in the
// page's direction and is absent at the end.
struct HistoryPageEnd {
  std::uint64_t next_from_seq = 1;
  bool end_of_history = true;
  std::optional<std::string> next_cursor;
};
// `first_seq`: where the conversation's history starts (retention expired what is below);
// a backward page that reaches it is the end of history.
HistoryPageEnd history_page_end(const HistoryQuery& query,
                                const std::vector<wire::StoredMessage>& messages,
                                std::uint64_t last_seq, std::uint64_t first_seq = 1);

// Opaque continuation of a history page: base64url of "f:<from_seq>" or
// "b:<before_seq>". They name a seq and a direction, so they never expire.
std::string encode_history_cursor(bool backward, std::uint64_t seq);
std::optional<HistoryQuery> decode_history_cursor(std::string_view cursor);

}  // namespace chat4all::frontend
