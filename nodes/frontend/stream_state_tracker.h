// Which state-log reads one stream connection needs, per conversation: the
// pure core behind `state` frames (docs/api.md, "Real time"), with no
// sockets, threads or clocks.
//
// A `state` frame tells a sender that a recipient's state of one of their
// messages moved (DELIVERED, READ). Each step is in the conversation's state
// log (schema/README.md, "The state log of a conversation"), read by cursor
// with kReadStates filtered to the stream's user, so that a lost change hint
// delays a frame until the log's head is next learned but never loses it.
// The cursor starts at the log's head when the conversation is added: a
// stream carries the steps made while it is open (older ones are in
// GET /v1/messages/{id}). It learns that the log grew from the summary, from
// every read reply and the conversation's shared tail (their `state_head`), and
// from the "state" hints about the user's messages, which carry no index and
// only mean "read now".
//
// Bounds: at most one read in flight per conversation; how many the whole
// connection has in flight is the caller's budget (take_reads()). The log
// keeps the newest 10,000 steps of a conversation: a stream that falls
// further behind goes on from the oldest kept (what it skipped is in the
// messages' states).
//
// Not thread-safe: one instance per connection, used on its strand only.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "schema/records.h"

namespace chat4all::frontend {

class StreamStateTracker {
 public:
  struct Read {
    std::string conversation_id;
    std::uint64_t after_index = 0;
  };

  // Starts following the conversation's state log from `state_head`. False
  // if it is followed already.
  bool add(const std::string& conversation_id, std::uint64_t state_head);
  bool remove(const std::string& conversation_id);
  bool contains(const std::string& conversation_id) const {
    return conversations_.contains(conversation_id);
  }

  // The log holds entries up to `state_head`: a read is wanted if that is
  // beyond the cursor. Unknown conversations are ignored.
  void on_head(const std::string& conversation_id, std::uint64_t state_head);
  // A hint that one of the user's messages changed state: read now.
  void on_hint(const std::string& conversation_id);

  // Up to `budget` reads, each after its conversation's cursor, round-robin
  // across calls; each is in flight until on_page() or on_read_failed().
  std::vector<Read> take_reads(std::size_t budget);
  bool wants_reads() const { return !wanting_.empty(); }

  // The reply to the read in flight: the entries to send, in index order,
  // none at or below the cursor (so none twice); the cursor moves to
  // `scanned_to`. Another read is wanted while the log holds more.
  std::vector<wire::StateLogEntry> on_page(const std::string& conversation_id,
                                           wire::StatePage page);
  // The read failed: retried when the head is next learned or hinted.
  void on_read_failed(const std::string& conversation_id);

 private:
  struct Conversation {
    std::uint64_t cursor = 0;  // highest index looked at
    std::uint64_t head = 0;    // highest index known to exist
    bool read_in_flight = false;
    bool hinted = false;  // a hint came while a read was in flight
  };
  void want(const std::string& conversation_id, Conversation& conversation);

  std::map<std::string, Conversation> conversations_;
  std::set<std::string> wanting_;  // want a read and have none in flight
  std::string last_read_;          // round-robin position of take_reads()
};

}  // namespace chat4all::frontend
