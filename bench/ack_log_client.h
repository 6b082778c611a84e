// The careful client chat4all-http-load becomes with --ack-log: which answers make it send a
// message again (with the same message_id), how long it waits before it does, and the log of
// every message's outcome that tools/fault's checker reads (tools/fault/README.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace chat4all::bench {

// Backoff of a connection (or a message) after a failure: doubles from the first up to the
// maximum.
inline constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
inline constexpr auto kMaxBackoff = std::chrono::seconds(1);

// The final fate of one message in --ack-log mode. The message id and conversation follow from
// (connection, sequence), so they are rebuilt when the log is written rather than kept here.
struct Outcome {
  std::uint32_t connection = 0;
  std::uint64_t sequence = 0;
  std::uint64_t conversation = 0;
  std::uint64_t seq = 0;  // the acknowledged sequence number; 0 when unknown
  std::uint32_t attempts = 0;
  bool acknowledged = false;
  std::string detail;  // why the outcome is unknown: the last failure
};

// Failures where the message may yet be stored, or not at all, so that sending it again under
// the same message_id is both safe and needed; and 429, which stored nothing and asks for
// exactly that, later.
bool retryable_status(int status);

// The wait before attempt `attempts` + 1 of one message.
std::chrono::steady_clock::duration retry_backoff(std::uint32_t attempts);

// One line per message, each connection's messages in the order it sent them, which with one
// request in flight is also the order of their acknowledgements. The format is
// tools/fault/ack_log.h's.
void write_ack_log(std::ostream& out, const std::string& run_id,
                   const std::vector<std::string>& conversations, std::vector<Outcome>& outcomes);

}  // namespace chat4all::bench
