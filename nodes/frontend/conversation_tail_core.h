// The pure core of a conversation's shared tail (conversation_tail.h): what
// one frontend has read of one conversation's durable log for all of its
// streams that follow it, and the recent messages it keeps in memory for
// them. No sockets, threads or clocks, so that it can be tested step by step.
//
// Like a stream's cursor (stream_cursor_tracker.h), the tail is driven by the
// durable log: it reads from its cursor + 1, hints and the periodic resync
// only decide WHEN it reads, and messages enter the window only from read
// replies, contiguous from the cursor, so a lost hint delays a message until
// the next resync but never loses or reorders it.
//
// Bounds and what happens at them
//   - Window: the newest `window_messages_max` messages and at most
//     `window_bytes_max` bytes of their frames (the newest message is always
//     kept, however large); older ones are dropped from the front. A stream
//     whose cursor is behind the window's first seq reads from storage by its
//     own cursor instead.
//   - Reads: at most one in flight; a hint during a read asks for another only
//     if it names a seq beyond what was known when the read was issued (the
//     read returns everything up to that, a page at a time).
//
// Not thread-safe: the shell (ConversationTail) uses it under its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace chat4all::frontend {

class ConversationTailCore {
 public:
  // One message of the window: its seq and its stream frame, rendered once
  // for every stream.
  struct Entry {
    std::uint64_t seq = 0;
    std::shared_ptr<const std::string> frame;
  };

  // Starts after `last_seq`: what the conversation held when its first
  // stream followed it is every stream's own backlog, not the tail's.
  ConversationTailCore(std::uint64_t last_seq, std::size_t window_messages_max,
                       std::size_t window_bytes_max);

  // `seq` exists (a hint, or a stream that knows of it): read if it is beyond
  // the cursor and no read in flight will bring it.
  void on_hint(std::uint64_t seq);
  // Read from the cursor whatever is there (the periodic resync).
  void want();

  // The read to issue now (from cursor + 1), if one is wanted and none is in
  // flight; it is in flight until on_page() or on_read_failed().
  std::optional<std::uint64_t> take_read();
  // The reply: messages in seq order and the conversation's last seq at the
  // time of the read. Appends the run contiguous from cursor + 1 (a gap stops
  // it: the log has none) and trims the window. True when the cursor moved.
  // More to read (cursor below the last seq, and progress made): wants
  // another read at once; no progress: waits for the next hint or resync.
  // `first_seq`: where the conversation's history starts (retention); a
  // cursor below it moves up to it, as nothing below will ever come.
  bool on_page(std::vector<Entry> messages, std::uint64_t last_seq, std::uint64_t first_seq = 0);
  // The read failed: retried at the next hint or resync.
  void on_read_failed();
  // Drops all but the newest message (the frontend's budget for all windows
  // is spent).
  void keep_newest_only();

  std::uint64_t cursor() const { return cursor_; }
  // The first seq in the window; cursor() + 1 when it is empty.
  std::uint64_t window_first() const { return window_.empty() ? cursor_ + 1 : window_.front().seq; }
  const std::deque<Entry>& window() const { return window_; }
  std::size_t window_bytes() const { return window_bytes_; }
  bool read_in_flight() const { return read_in_flight_; }
  bool wants_read() const { return wanted_; }

 private:
  void trim();

  const std::size_t window_messages_max_;
  const std::size_t window_bytes_max_;
  std::uint64_t cursor_;                     // highest seq read (and in the window, if any)
  std::uint64_t head_;                       // highest seq known to exist
  std::uint64_t head_when_read_issued_ = 0;  // the read in flight returns up to this
  bool wanted_ = false;
  bool read_in_flight_ = false;
  std::deque<Entry> window_;
  std::size_t window_bytes_ = 0;
};

}  // namespace chat4all::frontend
