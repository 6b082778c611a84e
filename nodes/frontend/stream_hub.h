// What every stream connection of one frontend shares: admission (token and
// connection bound), the event-hint subscriber, the conversations' shared
// tails, the presence reporter, the settings and the metrics.
//
// Lifetime: created before the HTTP io_context and destroyed after it, since
// sessions that the io_context still holds release their slot and their
// subscriptions here when it destroys them. stop_events() must run after the
// event loop stops and before the io_context is destroyed: the subscriber
// thread posts to sessions' strands. presence().start() once the router
// client exists, presence().stop() before it goes (sessions may still
// release their holds afterwards).
//
// Thread-safe: admit() runs on any event-loop thread; slots are released
// from wherever a session ends.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>

#include "common/auth.h"
#include "common/metrics.h"
#include "common/topology.h"
#include "nodes/frontend/conversation_tail.h"
#include "nodes/frontend/event_subscriber.h"
#include "nodes/frontend/presence_reporter.h"

namespace chat4all::frontend {

struct StreamMetrics {
  Gauge& sessions = metrics().gauge("chat4all_frontend_stream_sessions", "Open stream sessions");
  Counter& messages_pushed = metrics().counter("chat4all_frontend_stream_messages_pushed_total",
                                               "Message frames written to stream connections");
  Counter& slow_disconnects = metrics().counter(
      "chat4all_frontend_stream_slow_disconnects_total",
      "Stream connections closed (1008) because stream.queue_bytes_max was queued for them");
  Counter& hints = metrics().counter("chat4all_frontend_stream_hints_total",
                                     "Event hints received by the frontend");
  Counter& presence_frames = metrics().counter("chat4all_frontend_stream_presence_frames_total",
                                               "Presence frames written to stream connections");
  Counter& typing_frames = metrics().counter("chat4all_frontend_stream_typing_frames_total",
                                             "Typing frames written to stream connections");
  // Reads per message pushed = storage_reads / messages_pushed: about one
  // per frontend and message when the conversation's streams take it from
  // its shared tail (conversation_tail.h), one per stream when they cannot.
  Counter& storage_reads =
      metrics().counter("chat4all_frontend_stream_storage_reads_total",
                        "Reads of conversation logs issued by streams and their shared tails");
  Counter& tail_frames = metrics().counter(
      "chat4all_frontend_stream_tail_frames_total",
      "Message frames streams took from a conversation's shared tail instead of reading storage");
  Gauge& tails = metrics().gauge("chat4all_frontend_stream_tails",
                                 "Conversations with a shared tail (followed by a stream)");
};

class StreamHub;

// What the hub may ask of an open session, from any thread.
class StreamConnection {
 public:
  virtual ~StreamConnection() = default;
  // Closes the connection with 1001 (going away); returns at once.
  virtual void go_away() = 0;
};

// One of the hub's stream.connections_max places, and one of its user's
// kStreamsPerUserMax, held by a session for as long as it is open;
// move-only, released on destruction or release().
class SessionSlot {
 public:
  SessionSlot() = default;
  SessionSlot(StreamHub* hub, std::string user_key) : hub_(hub), user_key_(std::move(user_key)) {}
  SessionSlot(SessionSlot&& other) noexcept
      : hub_(std::exchange(other.hub_, nullptr)), user_key_(std::move(other.user_key_)) {}
  SessionSlot& operator=(SessionSlot&& other) noexcept;
  ~SessionSlot() { release(); }
  void release();

 private:
  StreamHub* hub_ = nullptr;
  std::string user_key_;  // tenant and user
};

// A connection allowed to upgrade: who it is, and its slot.
struct StreamAdmission {
  std::string tenant_id;
  std::string user_id;
  std::int64_t token_expires_at_s = 0;  // the session is closed (1008) then
  SessionSlot slot;
};

// Why not: answered as plain HTTP with `{"error":{"code","message"}}`.
struct StreamRefusal {
  int http_status = 401;
  std::string code;
  std::string message;
  std::string body() const;  // the JSON error body
};

class StreamHub {
 public:
  // Streams one user may hold open on one frontend (devices, tabs); one more
  // is refused with 429 `too_many_streams`.
  static constexpr std::uint32_t kStreamsPerUserMax = 16;

  // Reads the token key (the same file HttpApi signs with) and connects the
  // subscriber to the "events" endpoint of every storage node that has one.
  // `node_name`: this frontend's, the stem of its presence instance.
  StreamHub(const Topology& topology, const std::string& node_name);
  StreamHub(const StreamHub&) = delete;
  StreamHub& operator=(const StreamHub&) = delete;

  // Authenticates an upgrade request (Authorization: Bearer, or else the
  // `access_token` query parameter of `target`) and takes a slot. Refused with
  // 401 for a missing, bad or expired token or one without a tenant, 403
  // `user_token_required` for an admin token (the stream is a user's), 429
  // `too_many_streams` when the user holds kStreamsPerUserMax here, 503 when
  // connections_max sessions are open.
  std::variant<StreamAdmission, StreamRefusal> admit(std::string_view authorization,
                                                     std::string_view target, std::int64_t now_s);

  void stop_events() { events_.stop(); }

  // Open sessions register here so that a stopping frontend can close them
  // with 1001 (close_all) rather than drop them; at most connections_max.
  void track(const std::shared_ptr<StreamConnection>& connection);
  void untrack(const StreamConnection* connection);
  void close_all();
  std::uint32_t open_sessions() const { return sessions_.load(); }

  const StreamSettings& settings() const { return topology_.stream; }
  const Topology& topology() const { return topology_; }
  EventSubscriber& events() { return events_; }
  PresenceReporter& presence() { return presence_; }
  StreamMetrics& stream_metrics() { return metrics_; }
  TailRegistry& tails() { return tails_; }

 private:
  friend class SessionSlot;
  void release_slot(const std::string& user_key);
  void forget_user_stream(const std::string& user_key);

  const Topology& topology_;
  auth::TokenSigner signer_;
  StreamMetrics metrics_;
  std::atomic<std::uint32_t> sessions_{0};
  std::mutex users_mutex_;
  // Open streams per tenant and user (only users with at least one).
  std::unordered_map<std::string, std::uint32_t> streams_per_user_;  // guarded by users_mutex_
  std::mutex connections_mutex_;
  std::unordered_map<const StreamConnection*, std::weak_ptr<StreamConnection>>
      connections_;  // guarded by connections_mutex_
  EventSubscriber events_;
  TailRegistry tails_;  // after events_: tails unsubscribe when they end
  PresenceReporter presence_;
};

// True when `target` (path and query) is GET /v1/stream's.
bool is_stream_target(std::string_view target);

// The `access_token` query parameter of `target`, percent-decoded; empty when absent.
std::string access_token_parameter(std::string_view target);

}  // namespace chat4all::frontend
