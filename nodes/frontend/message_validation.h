// Validation of public API request bodies. Pure functions: JSON text in, a
// wire request or an ApiError naming the field out. No I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "schema/wire.h"

namespace chat4all::frontend {

// An error as the client sees it: HTTP status plus {"error":{code,message,field?}}.
struct ApiError {
  int http_status = 400;
  std::string code;
  std::string message;
  std::string field;  // dotted path of the offending field; empty when none

  std::string to_json() const;
};

struct MessageLimits {
  std::uint32_t text_bytes_max = 64 * 1024;
  std::uint32_t recipients_max = 256;
};

// Parses POST /v1/messages. `sender_id` comes from the token, never the body;
// a missing message_id is generated from `now_ms`.
std::variant<wire::AppendRequest, ApiError> parse_send_message(std::string_view body,
                                                               const std::string& sender_id,
                                                               const MessageLimits& limits,
                                                               std::int64_t now_ms);

struct TokenRequest {
  std::string user_id;
  std::string password;
};
std::variant<TokenRequest, ApiError> parse_token_request(std::string_view body);

// Query parameters of GET /v1/conversations/{id}/messages.
struct HistoryQuery {
  std::uint64_t from_seq = 1;
  std::uint32_t limit = 50;
};
std::variant<HistoryQuery, ApiError> parse_history_query(std::string_view query,
                                                         std::uint32_t page_max);

}  // namespace chat4all::frontend
