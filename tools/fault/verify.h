// The fault checker's verdict as a pure function: what a load generator recorded (the ack log)
// against what the cluster holds (every conversation's history), with no I/O, so that each kind
// of failure can be shown to be caught by a unit test.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chat4all::fault {

// One message the load generator sent, with its final outcome.
struct AckRecord {
  std::string session;      // one connection: it sends one message at a time
  std::uint64_t index = 0;  // its position in the session's sending order
  std::string conversation_id;
  std::string message_id;
  bool acknowledged = false;  // 202; otherwise the outcome is unknown
  std::uint64_t seq = 0;      // the acknowledged seq; 0 when not known
};

// Reads the tab-separated log chat4all-http-load --ack-log writes:
//   session  index  conversation_id  message_id  ack|unknown  seq  attempts  detail
// Lines starting with '#' are comments. Returns nothing and sets `error` ("line N: …") on a
// malformed line, so that a truncated log cannot pass for a short one.
std::optional<std::vector<AckRecord>> parse_ack_log(std::istream& in, std::string& error);

// One stored message, as the history API returns it.
struct StoredMessage {
  std::uint64_t seq = 0;
  std::string message_id;
};

// A conversation's whole history, pages joined in the order they were read.
struct History {
  std::vector<StoredMessage> messages;
  std::uint64_t last_seq = 0;  // what the server says the newest seq is
  // Where the history started when its first page was read, and when its last one was:
  // retention expires a prefix (every message below first_seq), which may grow while the
  // pages are read. 1 without retention.
  std::uint64_t first_seq = 1, first_seq_end = 1;
};

struct Report {
  std::uint64_t sent = 0;  // messages in the log
  std::uint64_t acknowledged = 0;
  std::uint64_t unknown = 0;
  std::uint64_t found = 0;          // acknowledged messages present in their conversation
  std::uint64_t lost = 0;           // acknowledged messages absent, not expired
  std::uint64_t expired = 0;        // acknowledged messages absent below first_seq: retention
  std::uint64_t duplicated = 0;     // logged messages stored more than once (extra copies)
  std::uint64_t out_of_order = 0;   // acknowledged messages stored before one a session had
                                    // acknowledged earlier in the same conversation
  std::uint64_t gaps = 0;           // places where a history's seq is not the previous + 1
  std::uint64_t wrong_seq = 0;      // acknowledged with one seq, stored at another
  std::uint64_t misplaced = 0;      // stored in a conversation it was not sent to
  std::uint64_t unreadable = 0;     // conversations whose history could not be read
  std::uint64_t unknown_found = 0;  // unknown outcome, stored once: allowed
  std::uint64_t foreign = 0;        // stored messages the log does not know (e.g. probes)
  std::uint64_t conversations = 0;
  std::uint64_t stored = 0;           // messages read back in all
  std::vector<std::string> problems;  // the first few, each naming what is wrong and where

  bool ok() const {
    return lost == 0 && duplicated == 0 && out_of_order == 0 && gaps == 0 && wrong_seq == 0 &&
           misplaced == 0 && unreadable == 0;
  }
};

// Every conversation named in `log` must have an entry in `histories`; a missing one counts as
// unreadable. Histories of conversations the log does not name are checked for gaps too.
Report verify(const std::vector<AckRecord>& log, const std::map<std::string, History>& histories,
              std::size_t max_problems = 20);

// "sent=… acknowledged=… …" on one line, and the same as a JSON object.
std::string summary_line(const Report& report);
std::string summary_json(const Report& report);

}  // namespace chat4all::fault
