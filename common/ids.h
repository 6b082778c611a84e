// Identifiers and the wall clock. The clock lives here so that protocol code
// never reads it: shells call now_ms() and pass the value in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chat4all::ids {

std::int64_t now_ms();  // Unix epoch milliseconds, wall clock

// 32 lowercase hex characters (W3C trace-id shaped), random.
std::string new_trace_id();

// UUIDv7 text (time-ordered, 74 random bits) for messages sent without one.
std::string new_message_id(std::int64_t now_ms);

// Process-unique request id: random start, then incrementing. Thread-safe.
std::uint64_t next_request_id();

// Client-supplied identifiers (conversation ids, message ids, user ids):
// 1..128 characters from [A-Za-z0-9._:@-]. Keeping them to this set keeps
// them safe inside storage keys, URLs and logs.
inline constexpr std::size_t kIdLengthMax = 128;
bool is_valid_id(std::string_view id);

// Names of tenants, users and clients: 1..64 characters from [A-Za-z0-9._-]
// (no ':' or '@', so that they can be joined into keys unambiguously).
inline constexpr std::size_t kNameLengthMax = 64;
bool is_valid_name(std::string_view name);

// `prefix` + 26 random characters of [a-z0-9] (~134 bits): ids the server
// makes for conversations, webhooks, clients. Thread-safe.
std::string new_random_id(std::string_view prefix);

}  // namespace chat4all::ids
