// One read per conversation per frontend: a conversation's shared tail reads
// its durable log once for every stream of this frontend that follows it and
// keeps its newest messages in memory (ConversationTailCore), rendered once as
// stream frames, for the streams to take on their own strands.
//
// How streams use it (stream_session.h): a stream follows the tail of every
// conversation it streams. Whenever the tail's cursor moves, every follower is
// told (on_tail_advanced, which posts to the follower's strand); a follower
// whose cursor is inside the window takes the frames from cursor + 1 out of
// an immutable snapshot, in order, at most once, exactly as it would from a
// read reply. A follower whose cursor is behind the window (catching up a
// backlog, or fallen behind) reads from storage by its own cursor as before,
// paced by its queue, until it reaches the window. A follower that knows of a
// seq beyond the tail's cursor wakes the tail (on_hint) instead of reading.
//
// The tail reads (as the tenant: wire::ReadRequest with no requester; every
// follower's membership was checked by its own summary, and the stream's
// resync listing drops a conversation its user left) when a change hint
// names a seq beyond its cursor, when a page leaves more to read, and every
// stream.resync_ms: hints only make it sooner, correctness never depends on
// them.
//
// Bounds and what happens at them
//   - Window per tail: kWindowMessagesMax messages and kWindowBytesMax bytes
//     of frames (the newest message always stays); older messages leave it,
//     and a follower still behind them reads from storage.
//   - All windows of the frontend: kAllWindowsBytesMax; a tail whose page
//     takes the total beyond it keeps only its newest message (its followers
//     that are behind read from storage).
//   - Tails per frontend: kTailsMax (one per conversation followed by at least
//     one stream); beyond, follow() answers nullptr and that stream reads from
//     storage on its own, as without tails.
//   - Reads: one in flight per tail, pages of kPageMessagesMax; followers: one
//     entry per following stream, removed when it stops following.
//
// Lifetime: followers hold the tail (shared_ptr); it ends when the last one
// lets go, and its pending reads and timer then find nothing to do. The
// registry keeps only weak references.
//
// Threading: every public member is safe from any thread. The core, the
// followers and the snapshot are guarded by the tail's mutex; read replies
// are handled on the tail's strand (rendering frames outside the lock), and
// followers are told after the lock is released.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/json_log.h"
#include "common/router_client.h"
#include "nodes/frontend/conversation_tail_core.h"
#include "nodes/frontend/event_subscriber.h"
#include "schema/wire.h"

namespace chat4all::frontend {

struct StreamMetrics;

// The answer to a wire::ReadRequest as the router client handed it over:
// the reply when `status` (updated from the reply's own) is kOk.
std::optional<wire::ReadReply> read_reply(wire::Status& status,
                                          const std::optional<codec::Frame>& reply);

class TailFollower {
 public:
  virtual ~TailFollower() = default;
  // The tail of `conversation_id` now holds up to `last_seq` (or is gone, or
  // its snapshot's state_head moved); any thread: post to your own strand and
  // return.
  virtual void on_tail_advanced(const std::string& conversation_id, std::uint64_t last_seq) = 0;
};

// What a tail holds at one moment; never changes once published.
struct TailSnapshot {
  std::uint64_t first = 1;  // the window holds [first, last]; empty when first > last
  std::uint64_t last = 0;   // the tail's cursor
  bool gone = false;        // the conversation is not found: followers read on their own
  // The conversation's state log reached this index (wire::ReadReply::state_head):
  // followers read their user's state changes beyond it (stream_state_tracker.h).
  std::uint64_t state_head = 0;
  std::deque<ConversationTailCore::Entry> window;
  // The frame of `seq`, which must be in [first, last].
  const std::string& frame(std::uint64_t seq) const { return *window[seq - first].frame; }
};

class TailRegistry;

class ConversationTail : public EventListener,
                         public std::enable_shared_from_this<ConversationTail> {
 public:
  static constexpr std::size_t kWindowMessagesMax = 256;
  static constexpr std::size_t kWindowBytesMax = 512u << 10;
  static constexpr std::uint32_t kPageMessagesMax = 64;

  ConversationTail(TailRegistry& registry, std::string key, std::string tenant_id,
                   std::string conversation_id, std::uint64_t last_seq,
                   boost::asio::any_io_executor executor, RouterClient& routers);
  ~ConversationTail() override;
  ConversationTail(const ConversationTail&) = delete;
  ConversationTail& operator=(const ConversationTail&) = delete;

  // Subscribes to the conversation's hints and starts the resync timer.
  void start();

  void follow(const std::shared_ptr<TailFollower>& follower);
  void unfollow(const TailFollower* follower);
  std::shared_ptr<const TailSnapshot> snapshot() const;

  // `seq` exists: read if the tail has not got it (and no read in flight will).
  void on_hint(std::uint64_t seq);
  // Subscriber thread: message hints of the conversation.
  void on_event(const wire::Event& event) override;

 private:
  void pump_locked(std::unique_lock<std::mutex>& lock);
  void issue_read(std::uint64_t from_seq);
  void on_reply(wire::Status status, std::optional<codec::Frame> reply);
  void count_window_bytes_locked();
  void publish_locked();
  void tell_followers();
  void schedule_resync();

  TailRegistry& registry_;
  const std::string key_;
  const std::string tenant_id_;
  const std::string conversation_id_;
  boost::asio::strand<boost::asio::any_io_executor> strand_;
  boost::asio::steady_timer resync_timer_;
  RouterClient& routers_;

  mutable std::mutex mutex_;
  ConversationTailCore core_;     // guarded by mutex_
  bool gone_ = false;             // guarded by mutex_
  std::uint64_t state_head_ = 0;  // guarded by mutex_
  std::unordered_map<const TailFollower*, std::weak_ptr<TailFollower>> followers_;  // guarded
  std::shared_ptr<const TailSnapshot> snapshot_;  // guarded by mutex_
  std::size_t counted_window_bytes_ = 0;          // guarded: this tail's share of the total

  Log log_{"stream_tail"};
};

// The frontend's tails, one per conversation followed.
class TailRegistry {
 public:
  static constexpr std::size_t kTailsMax = 20000;
  static constexpr std::size_t kAllWindowsBytesMax = 256u << 20;

  TailRegistry(EventSubscriber& events, StreamMetrics& metrics, std::uint32_t resync_ms)
      : events_(events), metrics_(metrics), resync_ms_(resync_ms) {}

  // The tail of the conversation, made (starting after `last_seq`, reading
  // through `routers`, on a strand of `executor`) when it has none; nullptr at
  // kTailsMax. The caller then follows it.
  std::shared_ptr<ConversationTail> tail(const std::string& tenant_id,
                                         const std::string& conversation_id, std::uint64_t last_seq,
                                         const boost::asio::any_io_executor& executor,
                                         RouterClient& routers);
  std::size_t size() const;

  EventSubscriber& events() { return events_; }
  StreamMetrics& metrics() { return metrics_; }
  std::uint32_t resync_ms() const { return resync_ms_; }
  // Adds `delta` (may be negative) to the bytes all windows hold; true while
  // within kAllWindowsBytesMax.
  bool account_window_bytes(std::int64_t delta);

 private:
  friend class ConversationTail;
  void forget(const std::string& key);

  EventSubscriber& events_;
  StreamMetrics& metrics_;
  const std::uint32_t resync_ms_;
  std::atomic<std::int64_t> window_bytes_{0};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::weak_ptr<ConversationTail>> tails_;  // guarded by mutex_
};

}  // namespace chat4all::frontend
