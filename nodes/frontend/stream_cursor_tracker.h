// What one stream connection has sent and still has to send, per
// conversation: the pure core of GET /v1/stream, with no sockets, threads or
// clocks, so that it can be tested step by step.
//
// Delivery is driven by the durable log: for each conversation the tracker
// keeps a cursor (the highest seq handed to the client on this connection)
// and the highest seq known to exist (from event hints and read replies).
// Hints, resyncs and replies only decide WHICH reads to issue; messages reach
// the client only from read replies, contiguous from cursor + 1, so a lost
// hint delays a message until the next resync but never loses or reorders it,
// and no message is handed out twice on one connection.
//
// It also keeps the DELIVERED horizon to report per conversation: the highest
// seq whose frame was written to the socket, the highest storage confirmed,
// and at most one mark command in flight.
//
// Bounds: at most `conversations_max` conversations (add() refuses more); at
// most one read and one mark in flight per conversation; how many reads the
// whole connection has in flight is the caller's budget (take_reads()).
//
// Not thread-safe: one instance per connection, used on that connection's
// strand only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "schema/wire.h"

namespace chat4all::frontend {

class StreamCursorTracker {
 public:
  // Resume cursors the client sent: conversation id -> last seq it has seen.
  using Cursors = std::map<std::string, std::uint64_t>;

  struct ConversationPosition {
    std::string conversation_id;
    std::uint64_t last_seq = 0;  // highest seq known to exist
    std::uint64_t cursor = 0;    // highest seq handed to the client
  };
  struct Read {
    std::string conversation_id;
    std::uint64_t from_seq = 1;
    // Still below the last seq the conversation had when it was added: the
    // backlog the client came back for, which it takes at its own pace. Above
    // it, messages are live: stored while the client was connected.
    bool catching_up = false;
  };
  struct Mark {
    std::string conversation_id;
    std::uint64_t up_to_seq = 0;
  };

  explicit StreamCursorTracker(std::size_t conversations_max);

  // Cursors from the client's resume frame, consulted by every later add().
  void set_resume_cursors(Cursors cursors);

  // Starts tracking a conversation of the user. The cursor is the client's
  // resume cursor for it, else `delivered_up_to` (the user's DELIVERED
  // horizon), either clamped to `last_seq`: a client cannot have seen what
  // does not exist yet, and believing it would silently skip messages that
  // come later. A resume cursor beyond the stored horizon is reported as
  // delivered too (the client says it has those messages). The conversation
  // wants a read at once. A conversation this connection streamed before
  // (removed, then added again: the user left and came back, or a resync
  // dropped it) never starts below the cursor it had: what was handed out on
  // this connection is not handed out again, whatever the stored horizon
  // says (its marks may not have landed). False (and no change) when it is
  // tracked already or `conversations_max` is reached.
  bool add(const std::string& conversation_id, std::uint64_t delivered_up_to,
           std::uint64_t last_seq);
  // Stops tracking it (the user left); a reply still in flight for it is
  // ignored; its cursor is remembered for a later add(). False if it was not
  // tracked.
  bool remove(const std::string& conversation_id);
  bool contains(const std::string& conversation_id) const;
  std::size_t size() const { return conversations_.size(); }
  bool full() const { return conversations_.size() >= conversations_max_; }
  std::vector<ConversationPosition> positions() const;  // in conversation id order

  // A hint that `seq` exists in the conversation: it wants a read if the
  // client has not been given `seq` yet. Unknown conversations are ignored.
  void on_hint(const std::string& conversation_id, std::uint64_t seq);
  // Every conversation wants a read (the periodic resync: hints may be lost).
  void want_all();
  // This one wants a read (its shared tail is gone). Unknown ones are ignored.
  void want(const std::string& conversation_id);

  // Up to `budget` reads to issue now, each from its conversation's cursor + 1,
  // for conversations that want one and have none in flight; taken round-robin
  // across calls so that a busy conversation cannot starve the others. Each
  // returned read is in flight until on_page() or on_read_failed().
  // Without `catch_up_allowed`, only live reads are taken; catching-up
  // conversations stay wanted.
  std::vector<Read> take_reads(std::size_t budget, bool catch_up_allowed = true);
  bool wants_reads() const { return !wanting_.empty(); }

  // What a conversation's shared tail holds (conversation_tail.h): the
  // frames of seqs [first, last] in memory (empty when first > last), `last`
  // being the tail's cursor.
  struct TailView {
    std::uint64_t first = 1;
    std::uint64_t last = 0;
  };
  // Frames [from_seq, to_seq] of the tail's window, to hand to the client now.
  struct TailTake {
    std::string conversation_id;
    std::uint64_t from_seq = 0;
    std::uint64_t to_seq = 0;
    bool catching_up = false;  // as Read::catching_up
  };
  // The tail should read up to `seq`, which this connection knows exists.
  struct TailWake {
    std::string conversation_id;
    std::uint64_t seq = 0;
  };
  struct TailPlan {
    std::vector<TailTake> takes;
    std::vector<TailWake> wakes;
  };
  using TailLookup = std::function<std::optional<TailView>(const std::string& conversation_id)>;

  // Serves from the shared tails what they hold, before take_reads() reads
  // storage. For each conversation that wants a read, has none in flight and
  // has a tail (`tail_of`):
  //   - cursor inside the window: a take from cursor + 1 to the window's end
  //     (while catching up only with `catch_up_allowed`, and at most
  //     `catch_up_limit` messages); the cursor moves as after a read reply,
  //     and the conversation stays wanted if it knows of more;
  //   - cursor at or beyond the tail's: no read (the tail tells, through
  //     on_hint(), when it moves); a wake when this conversation knows of a
  //     seq the tail has not read;
  //   - cursor behind the window: left wanting, for take_reads().
  // Takes are contiguous from the cursor, so order and once-per-connection
  // hold exactly as with reads.
  TailPlan take_from_tails(const TailLookup& tail_of, bool catch_up_allowed,
                           std::uint64_t catch_up_limit);

  // The reply to the read in flight: the messages to hand to the client now,
  // in seq order, each exactly cursor + 1 of the one before (what was handed
  // out already is skipped; a gap stops the run, as the log has none, so that
  // nothing is ever handed out of order). The cursor moves to the last one.
  // `last_seq` is the conversation's highest seq at the time of the read. If
  // there is more to read, the conversation wants another read; after a reply
  // that made no progress it does not (so a log that answers below what it
  // claims cannot spin reads), until the next hint or resync.
  // `first_seq`: where the conversation's history starts (retention); a
  // cursor below it moves up to it.
  std::vector<wire::StoredMessage> on_page(const std::string& conversation_id,
                                           std::vector<wire::StoredMessage> messages,
                                           std::uint64_t last_seq, std::uint64_t first_seq = 0);
  // The read failed (timeout, no storage): retried at the next hint or resync.
  void on_read_failed(const std::string& conversation_id);

  // The frame of message `seq` reached the socket.
  void on_written(const std::string& conversation_id, std::uint64_t seq);
  // One mark per conversation whose written horizon is ahead of what storage
  // confirmed and that has no mark in flight; each is in flight until
  // on_mark_done(). Coalesced: however many messages were written, one mark.
  std::vector<Mark> take_marks();
  bool wants_marks() const { return !marks_due_.empty(); }
  // `ok`: storage recorded the horizon; otherwise it is retried by the next
  // take_marks() (storage keeps a horizon only moving forward, so a retry or a
  // reordered mark can never move it back).
  void on_mark_done(const std::string& conversation_id, std::uint64_t up_to_seq, bool ok);

  std::optional<std::uint64_t> cursor(const std::string& conversation_id) const;

  // Conversations visited by take_reads() and take_from_tails() so far: the
  // work of delivery decisions, which a resync keeps linear in the number of
  // conversations (tests and diagnostics).
  std::uint64_t visits() const { return visits_; }

 private:
  struct Conversation {
    std::uint64_t cursor = 0;
    std::uint64_t head = 0;         // highest seq known to exist
    std::uint64_t catch_up_to = 0;  // last seq when it was added
    bool read_in_flight = false;
    std::uint64_t written = 0;  // highest seq written to the socket (or held by the client)
    std::uint64_t marked = 0;   // highest DELIVERED horizon storage confirmed
    bool mark_in_flight = false;
  };
  void update_mark_due(const std::string& conversation_id, const Conversation& conversation);
  // After the cursor moved from `cursor_before` (a read or a take): wanted
  // again while there is more to read and progress was made.
  void after_progress(const std::string& conversation_id, Conversation& conversation,
                      std::uint64_t cursor_before, std::uint64_t last_seq);

  std::size_t conversations_max_;
  Cursors resume_cursors_;
  std::map<std::string, Conversation> conversations_;
  void want_read(const std::string& conversation_id);
  void unwant_read(const std::string& conversation_id);

  std::set<std::string> wanting_;  // want a read (some may have one in flight)
  // Wanting ones take_from_tails() has not found to need storage since they
  // were last wanted (a subset of wanting_).
  std::set<std::string> tail_candidates_;
  std::uint64_t visits_ = 0;
  std::set<std::string> marks_due_;  // written > marked and no mark in flight
  std::string last_read_;            // round-robin position of take_reads()
  // Cursors of removed conversations, for add(); at most conversations_max
  // (beyond, the smallest ids are forgotten: their re-add may repeat what
  // the stored horizon does not cover).
  Cursors removed_cursors_;
};

}  // namespace chat4all::frontend
