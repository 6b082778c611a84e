// One GET /v1/stream connection (docs/api.md, "Real time"): a WebSocket that
// pushes a user's messages, per conversation in seq order and each at most
// once per connection, read from the durable log by cursor.
//
// Life of a session
//   1. The HTTP server authenticated the upgrade (StreamHub::admit) and hands
//      over the socket and the request; start() completes the handshake.
//   2. Resume: the client may send `{"type":"resume","cursors":{…}}` first.
//      The session waits for the first client frame at most kResumeWait;
//      whatever it is (a ping is answered, an invalid frame gets an error)
//      ends the wait, and only a resume supplies cursors. A client that wants
//      no cursors starts at once with `{"type":"resume"}`. Meanwhile the
//      user's conversations are listed (kListUserConversations) and
//      summarised (kConversationSummary: last seq, DELIVERED horizon).
//   3. `ready` lists every conversation with its last seq and its cursor: the
//      resume cursor if the client gave one, else the user's DELIVERED
//      horizon, either clamped to the last seq. A resume frame later on is
//      answered with an error and changes nothing, since moving a cursor back
//      would send a message twice on one connection.
//   4. Streaming: every conversation follows the frontend's shared tail of
//      it (conversation_tail.h), which reads the log once for all streams of
//      this frontend; a conversation whose cursor is inside the tail's window
//      takes its frames from there, in order from cursor + 1, and one whose
//      cursor reached the tail's waits for the tail to tell it moved
//      (on_tail_advanced). Otherwise (cursor behind the window: a backlog, or
//      fallen behind; or no tail: kTailsMax reached) reads (wire::ReadRequest
//      as the user, from cursor + 1) are issued. A conversation wants either
//      when an event hint names a seq beyond the cursor, when a page leaves
//      more to read, when its tail moved, and every stream.resync_ms, which
//      also lists the conversations again to pick up new ones (and the tails
//      resync on their own). Hints only make this sooner; correctness never
//      depends on them. A "membership" hint adds (summary first) or drops a
//      conversation; a read answered not-found (the user left) drops it too,
//      and so does a complete resync listing that no longer has it (the
//      user left and the hint was lost; a listing cut at kConversationsMax
//      proves nothing and drops nothing).
//      `state` frames come from the conversation's state log, read by cursor
//      as the user (StreamStateTracker, stream_state_tracker.h), from where
//      the log stood when the conversation was added: read when a "state"
//      hint names a message the user sent and when a summary, a read reply
//      or the shared tail shows the log grew, so a lost hint delays a state
//      frame, never loses it. "presence" and "typing" events about other
//      users of a followed conversation become `presence` and `typing` frames
//      (stream_session_signals.cc); a `typing` client frame goes to the
//      conversation's leader, which checks membership and publishes it.
//   5. DELIVERED: once a message frame's write completed, the conversation's
//      written horizon moves; one kMarkState (DELIVERED, up_to_seq = that
//      horizon) per conversation records it as soon as the queue is empty, or
//      after kMarkCoalesce while frames keep coming, at most one in flight per
//      conversation. A failed mark is retried at the
//      next write or resync, and when the session ends.
//   6. Closing: 1008 "slow consumer" (below), 1008 "token expired" when the
//      token's exp passes, 1001 when the frontend stops (StreamHub::close_all);
//      the WebSocket layer pings every kPingInterval and drops a peer silent
//      for twice that.
//
// Bounds and what happens at them
//   - Outbound queue: stream.queue_bytes_max bytes of frames not yet written.
//     Two kinds of messages go through it. The backlog (what a conversation
//     held when it was added: what the client came back for) is read only to
//     fit: each page asks for as many messages as the room left (queue and
//     pages in flight) holds at the largest size (limits.text_bytes_max +
//     kFrameOverheadBytes), and none is read while less than one such message
//     fits; a client catching up is paced by the log, and what it has not got
//     yet stays there, not in memory. Live messages (stored while connected),
//     states, pongs and errors are pushed at once.
//   - Slow consumer: a pushed frame that does not fit (and is not alone)
//     means the client does not keep up with what happens now: the queue is
//     dropped, the connection is closed with 1008 "slow consumer" (counted),
//     and the TCP connection is cut if the close handshake has not finished
//     within kCloseGrace (the close frame waits behind the write in progress,
//     which a client that does not read never takes). The client reconnects
//     and resumes from its cursors, its backlog paced again.
//   - Reads: at most kReadsInFlightMax per session, one per conversation,
//     1..kPageMessagesMax messages each; a backlog page may pass the bound
//     only by how much its messages exceed the size estimate (metadata).
//     Frames taken from a shared tail's window follow the same rules: backlog
//     only to fit (as many as a page would hold), live messages at once.
//   - Conversations per session: kConversationsMax, announced in `ready`
//     (conversations_max); more are not streamed: logged, and the client gets
//     one error frame `conversations_capped` (after ready). Summaries:
//     kSummariesInFlightMax at once. Client frames: kClientFrameBytesMax. Hints waiting for the
//     strand: kHintsPendingMax; beyond, they are dropped and every conversation is re-read instead.
//
// Presence: the session holds the user's place in the frontend's presence
// report (PresenceReporter::Hold) from the handshake to its end.
//
// Threading: every member is used on the session's strand only, except
// on_event() (the subscriber's thread), which touches only the hint inbox
// under its mutex and posts to the strand, and on_tail_advanced() (a tail's
// strand), which only posts to the strand. Replies of the router client
// (its own thread) are posted to the strand too. The session lives as long as
// an operation or posted handler holds it; when it ends it unsubscribes,
// cancels its timers and releases its slot.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/interval_limiter.h"
#include "common/json_log.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "nodes/frontend/conversation_tail.h"
#include "nodes/frontend/edge_stream.h"
#include "nodes/frontend/event_subscriber.h"
#include "nodes/frontend/presence_frame_filter.h"
#include "nodes/frontend/presence_reporter.h"
#include "nodes/frontend/stream_cursor_tracker.h"
#include "nodes/frontend/stream_hub.h"
#include "nodes/frontend/stream_state_tracker.h"

namespace chat4all::frontend {

class StreamSession : public EventListener,
                      public TailFollower,
                      public StreamConnection,
                      public std::enable_shared_from_this<StreamSession> {
 public:
  static constexpr std::chrono::milliseconds kResumeWait{2000};
  static constexpr std::chrono::milliseconds kMarkCoalesce{50};
  static constexpr std::chrono::milliseconds kCloseGrace{30000};
  static constexpr std::chrono::seconds kPingInterval{30};
  static constexpr std::size_t kConversationsMax = 2000;
  static constexpr std::size_t kReadsInFlightMax = 4;
  static constexpr std::size_t kStateReadsInFlightMax = 2;
  static constexpr std::uint32_t kStatePageMax = 64;
  static constexpr std::size_t kSummariesInFlightMax = 4;
  static constexpr std::uint32_t kPageMessagesMax = 64;
  static constexpr std::uint32_t kListPageMax = 200;
  static constexpr std::size_t kFrameOverheadBytes = 1024;
  static constexpr std::size_t kClientFrameBytesMax = 1 << 20;
  static constexpr std::size_t kHintsPendingMax = 1024;
  static constexpr std::size_t kPresenceUsersRememberedMax = 1024;

  // `stream`: the accepted connection, plain or TLS (handshake done), on its strand.
  StreamSession(EdgeStream stream, StreamAdmission admission, StreamHub& hub,
                RouterClient& routers);
  ~StreamSession() override;
  StreamSession(const StreamSession&) = delete;
  StreamSession& operator=(const StreamSession&) = delete;

  // Completes the WebSocket handshake answering `upgrade`; any thread.
  void start(boost::beast::http::request<boost::beast::http::string_body> upgrade);

  // Subscriber thread: queue the hint for the strand (bounded) and return;
  // hints this stream would ignore (another tenant, states of messages others
  // sent) are dropped at once.
  void on_event(const wire::Event& event) override;

  // Any thread: close with 1001, the frontend is stopping.
  void go_away() override;

  // Any thread: the shared tail of the conversation moved; posts to the strand.
  void on_tail_advanced(const std::string& conversation_id, std::uint64_t last_seq) override;

 private:
  using WebSocket = boost::beast::websocket::stream<EdgeStream>;
  enum class Phase { kHandshake, kStarting, kStreaming, kClosing, kFinished };

  struct OutboundFrame {
    std::string text;
    std::string conversation_id;  // a message frame: its conversation and seq
    std::uint64_t seq = 0;        // 0: not a message frame
    bool paced = false;           // a backlog message, read only when it fit
  };
  struct Summary {
    std::string conversation_id;
    std::uint64_t delivered_up_to = 0;
    std::uint64_t last_seq = 0;
    std::uint64_t state_head = 0;
  };

  void on_accept(boost::beast::error_code ec);
  void read_frame();
  void on_frame(boost::beast::error_code ec);
  void end_resume_wait(std::optional<StreamCursorTracker::Cursors> cursors);

  // Conversations: listing (start and resync), summaries, adding, dropping.
  void list_conversations(std::string after);
  void on_conversation_page(StorageOutcome<std::vector<std::string>> outcome);
  void request_summary(const std::string& conversation_id);
  void pump_summaries();
  void on_summary(const std::string& conversation_id,
                  StorageOutcome<wire::ConversationSummary> outcome);
  void add_conversation(const Summary& summary);
  void drop_conversation(const std::string& conversation_id);
  // Shared tails: followed while the conversation is tracked.
  void follow_tail(const std::string& conversation_id, std::uint64_t last_seq);
  void unfollow_tail(const std::string& conversation_id);
  void unfollow_all_tails();
  bool starting_done() const;
  void maybe_ready();

  // Reading and sending.
  void pump_reads();
  // Hands out what the tails' windows hold (StreamCursorTracker::take_from_tails).
  void take_from_tails(bool room_for_backlog, std::uint32_t backlog_limit);
  // `paced`: a backlog page, read to fit the queue.
  void on_page(const std::string& conversation_id, std::size_t reserved_bytes, bool paced,
               wire::Status status, std::optional<codec::Frame> reply);
  void pump_state_reads();
  void on_state_page(const std::string& conversation_id, StorageOutcome<wire::StatePage> outcome);
  void enqueue(OutboundFrame frame);
  void write_next();
  void on_write(boost::beast::error_code ec);

  // DELIVERED marks.
  void schedule_marks();
  void flush_marks();

  void drain_hints();
  void handle_hint(const wire::Event& event);

  // Presence and typing (stream_session_signals.cc).
  void send_typing(const std::string& conversation_id);
  void handle_signal(const wire::Event& event);
  void schedule_resync();
  void resync();

  void close_too_slow();
  // Starts the close handshake with `code` and `reason`; nothing more is sent.
  void close_with(boost::beast::websocket::close_code code, const char* reason, const char* why);
  void finish(const char* why);
  void subscribe(const std::string& topic);
  void unsubscribe(const std::string& topic);
  std::size_t read_room_bytes() const;

  WebSocket socket_;
  StreamAdmission who_;
  StreamHub& hub_;
  RouterClient& routers_;
  StorageClient storage_;
  const std::size_t queue_bytes_max_;
  const std::size_t message_frame_bytes_estimate_;
  boost::asio::any_io_executor executor_;  // the connection's strand

  Phase phase_ = Phase::kHandshake;
  boost::beast::flat_buffer inbound_;
  boost::asio::steady_timer resume_timer_;
  boost::asio::steady_timer resync_timer_;
  boost::asio::steady_timer mark_timer_;
  boost::asio::steady_timer close_timer_;
  boost::asio::steady_timer expiry_timer_;
  bool resume_decided_ = false;
  StreamCursorTracker::Cursors resume_cursors_;

  StreamCursorTracker tracker_{kConversationsMax};
  StreamStateTracker states_;  // the same conversations as tracker_
  std::size_t state_reads_in_flight_ = 0;
  std::set<std::string> topics_;  // subscribed: the user's and each conversation's
  // Before ready: added once the cursors are known; by id, so that a listing
  // of many conversations costs a lookup per conversation, not a scan.
  std::map<std::string, Summary> starting_summaries_;
  bool listing_ = false;                   // a listing is under way (at most one)
  std::size_t listed_count_ = 0;           // conversations seen by the listing under way
  std::deque<std::string> summary_queue_;  // bounded by kConversationsMax via summary_wanted_
  std::set<std::string> summary_wanted_;   // queued or in flight
  std::size_t summaries_in_flight_ = 0;
  bool conversations_capped_logged_ = false;
  // Tracked when the resync listing under way started and not listed yet: if
  // the listing completes, the user left them.
  std::set<std::string> unlisted_;
  std::map<std::string, std::shared_ptr<ConversationTail>> tails_;  // one per tracked conversation

  std::deque<OutboundFrame> outbound_;  // the front one is being written while writing_
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;
  std::size_t reads_in_flight_ = 0;
  std::size_t reserved_bytes_ = 0;  // pages in flight, at the estimate
  bool marks_scheduled_ = false;

  std::mutex hints_mutex_;
  std::vector<wire::Event> hints_pending_;  // guarded by hints_mutex_
  bool hints_overflowed_ = false;           // guarded by hints_mutex_
  bool hints_drain_posted_ = false;         // guarded by hints_mutex_

  PresenceReporter::Hold presence_hold_;
  PresenceFrameFilter presence_filter_{kPresenceUsersRememberedMax};
  // Keyed by conversation: at most one per tracked conversation stays within the interval.
  IntervalLimiter typing_limiter_{wire::kTypingIntervalMs, kConversationsMax};

  Log log_{"stream"};
};

}  // namespace chat4all::frontend
