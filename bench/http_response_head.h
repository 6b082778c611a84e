// A minimal HTTP/1.1 response head parser for the load generator. Enough for the frontend
// (Beast, string bodies, always Content-Length); anything else is reported as a bad response
// rather than guessed at. Parses in place, allocation-free.
#pragma once

#include <cstddef>
#include <string_view>

namespace chat4all::bench {

// A Content-Length above this is a bad response.
inline constexpr std::size_t kMaxContentLength = 64 << 20;

struct ResponseHead {
  enum class State { kIncomplete, kBad, kComplete };
  State state = State::kIncomplete;
  int status = 0;
  std::size_t head_bytes = 0;  // through the blank line
  std::size_t content_length = 0;
  bool close = false;  // the server ends the connection after this answer
};

// Parses the head at the start of `data` (which may hold only part of it).
ResponseHead parse_response_head(std::string_view data);

}  // namespace chat4all::bench
