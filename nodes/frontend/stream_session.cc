#include "nodes/frontend/stream_session.h"

#include <algorithm>
#include <utility>

#include "common/codec.h"
#include "common/ids.h"
#include "nodes/frontend/stream_frames.h"

namespace chat4all::frontend {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;

StreamSession::StreamSession(EdgeStream stream, StreamAdmission admission, StreamHub& hub,
                             RouterClient& routers)
    : socket_(std::move(stream)),
      who_(std::move(admission)),
      hub_(hub),
      routers_(routers),
      storage_(routers),
      queue_bytes_max_(hub.settings().queue_bytes_max),
      message_frame_bytes_estimate_(hub.topology().limits.text_bytes_max + kFrameOverheadBytes),
      executor_(socket_.get_executor()),
      resume_timer_(executor_),
      resync_timer_(executor_),
      mark_timer_(executor_),
      close_timer_(executor_),
      expiry_timer_(executor_) {}

StreamSession::~StreamSession() {
  // Normally finish() did this; not when the event loop was torn down first.
  for (const auto& topic : topics_) hub_.events().unsubscribe(topic, this);
  unfollow_all_tails();
  hub_.untrack(this);
}

void StreamSession::go_away() {
  asio::post(executor_, [self = shared_from_this()] {
    self->close_with(websocket::close_code::going_away, "server shutting down", "shutdown");
  });
}

void StreamSession::on_tail_advanced(const std::string& conversation_id, std::uint64_t last_seq) {
  asio::post(executor_, [self = shared_from_this(), conversation_id, last_seq] {
    if (self->phase_ != Phase::kStreaming) return;
    const auto tail = self->tails_.find(conversation_id);
    if (tail == self->tails_.end()) return;  // no longer followed
    const auto snapshot = tail->second->snapshot();
    if (snapshot->gone) {
      // Read on its own: a not-found answer drops the conversation.
      self->unfollow_tail(conversation_id);
      self->tracker_.want(conversation_id);
    } else {
      self->tracker_.on_hint(conversation_id, last_seq);
      self->states_.on_head(conversation_id, snapshot->state_head);
    }
    self->pump_reads();
    self->pump_state_reads();
  });
}

void StreamSession::start(http::request<http::string_body> upgrade) {
  asio::dispatch(executor_, [self = shared_from_this(), upgrade = std::move(upgrade)] {
    auto& socket = self->socket_;
    beast::get_lowest_layer(socket).expires_never();  // the WebSocket's own timeouts rule now
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.idle_timeout = 2 * kPingInterval;  // a ping at half of it
    timeouts.keep_alive_pings = true;
    socket.set_option(timeouts);
    socket.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(http::field::server, "chat4all"); }));
    socket.read_message_max(kClientFrameBytesMax);
    // Beast builds the 101 answer at once; `upgrade` need not outlive the call.
    socket.async_accept(upgrade, [self](beast::error_code ec) { self->on_accept(ec); });
  });
}

void StreamSession::on_accept(beast::error_code ec) {
  if (ec) return finish("handshake_failed");
  phase_ = Phase::kStarting;
  hub_.track(shared_from_this());
  presence_hold_ = hub_.presence().hold(who_.tenant_id, who_.user_id);
  log_.debug("session_started", {{"tenant_id", who_.tenant_id}, {"user_id", who_.user_id}});
  subscribe(user_topic(who_.tenant_id, who_.user_id));
  expiry_timer_.expires_after(std::chrono::milliseconds(
      std::max<std::int64_t>(0, who_.token_expires_at_s * 1000 - ids::now_ms())));
  expiry_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec)
      self->close_with(websocket::close_code::policy_error, "token expired", "token_expired");
  });
  resume_timer_.expires_after(kResumeWait);
  resume_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec && !self->resume_decided_) self->end_resume_wait(std::nullopt);
  });
  listing_ = true;
  list_conversations("");
  read_frame();
}

// ---- client frames

void StreamSession::read_frame() {
  socket_.async_read(inbound_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_frame(ec);
  });
}

void StreamSession::on_frame(beast::error_code ec) {
  if (ec) return finish(ec == websocket::error::closed ? "client_closed" : "read_failed");
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  const std::string text = beast::buffers_to_string(inbound_.data());
  inbound_.consume(inbound_.size());
  ClientFrame frame =
      socket_.got_text()
          ? parse_client_frame(text, kConversationsMax)
          : ClientFrame{
                ClientFrame::Kind::kInvalid, {}, {}, "invalid_frame", "frames are JSON text"};
  switch (frame.kind) {
    case ClientFrame::Kind::kResume:
      if (!resume_decided_) {
        end_resume_wait(std::move(frame.cursors));
      } else {
        enqueue({error_frame("resume_not_first",
                             "resume is only taken as the first frame; cursors were not changed"),
                 "", 0});
      }
      break;
    case ClientFrame::Kind::kPing:
      enqueue({pong_frame(frame.ping_id), "", 0});
      if (!resume_decided_) end_resume_wait(std::nullopt);
      break;
    case ClientFrame::Kind::kInvalid:
      enqueue({error_frame(frame.error_code, frame.error_message), "", 0});
      if (!resume_decided_) end_resume_wait(std::nullopt);
      break;
    case ClientFrame::Kind::kTyping:
      send_typing(frame.conversation_id);
      if (!resume_decided_) end_resume_wait(std::nullopt);
      break;
  }
  if (phase_ == Phase::kStarting || phase_ == Phase::kStreaming) read_frame();
}

void StreamSession::end_resume_wait(std::optional<StreamCursorTracker::Cursors> cursors) {
  resume_decided_ = true;
  resume_timer_.cancel();
  if (cursors) resume_cursors_ = std::move(*cursors);
  maybe_ready();
}

// ---- conversations

void StreamSession::list_conversations(std::string after) {
  storage_.query<std::vector<std::string>>(
      wire::tenant_key(who_.tenant_id), wire::QueryKind::kListUserConversations,
      wire::TenantList{who_.tenant_id, who_.user_id, std::move(after), kListPageMax},
      [self = shared_from_this()](StorageOutcome<std::vector<std::string>> outcome) {
        asio::post(self->executor_, [self, outcome = std::move(outcome)]() mutable {
          self->on_conversation_page(std::move(outcome));
        });
      });
}

void StreamSession::on_conversation_page(StorageOutcome<std::vector<std::string>> outcome) {
  if (phase_ != Phase::kStarting && phase_ != Phase::kStreaming) return;
  if (!outcome.ok()) {
    // The next resync lists again; a session starts with what it has.
    log_.debug("list_conversations_failed",
               {{"user_id", who_.user_id}, {"status", codec::status_name(outcome.status)}});
    listing_ = false;
    listed_count_ = 0;
    unlisted_.clear();
    return maybe_ready();
  }
  const std::vector<std::string>& page = *outcome.value;
  for (const auto& conversation_id : page) {
    ++listed_count_;
    unlisted_.erase(conversation_id);
    request_summary(conversation_id);
  }
  // Pages are taken until an empty one, so a store that caps the page size
  // below kListPageMax is paged through too; one page beyond
  // kConversationsMax, so that a user with more is told (request_summary).
  if (!page.empty() && listed_count_ <= kConversationsMax) return list_conversations(page.back());
  // Complete (an empty page came): what is tracked but no longer listed, the
  // user left. Its reads would say so, but a stream served by a shared tail
  // (which reads as the tenant) may have none.
  if (page.empty()) {
    for (const auto& conversation_id : unlisted_) {
      if (!tracker_.contains(conversation_id)) continue;
      log_.debug("conversation_left",
                 {{"user_id", who_.user_id}, {"conversation_id", conversation_id}});
      drop_conversation(conversation_id);
    }
  }
  unlisted_.clear();
  listing_ = false;
  listed_count_ = 0;
  maybe_ready();
}

void StreamSession::request_summary(const std::string& conversation_id) {
  if (tracker_.contains(conversation_id) || summary_wanted_.contains(conversation_id) ||
      starting_summaries_.contains(conversation_id))
    return;
  if (tracker_.size() + starting_summaries_.size() + summary_wanted_.size() >= kConversationsMax) {
    if (!conversations_capped_logged_) {
      log_.warn("conversations_capped",
                {{"user_id", who_.user_id}, {"conversations_max", kConversationsMax}});
      // Told once; before ready it follows the ready frame.
      if (phase_ == Phase::kStreaming)
        enqueue({conversations_capped_frame(kConversationsMax), "", 0});
    }
    conversations_capped_logged_ = true;
    return;
  }
  summary_wanted_.insert(conversation_id);
  summary_queue_.push_back(conversation_id);
  pump_summaries();
}

void StreamSession::pump_summaries() {
  while (summaries_in_flight_ < kSummariesInFlightMax && !summary_queue_.empty()) {
    std::string conversation_id = std::move(summary_queue_.front());
    summary_queue_.pop_front();
    ++summaries_in_flight_;
    storage_.query<wire::ConversationSummary>(
        conversation_id, wire::QueryKind::kConversationSummary,
        wire::ConversationLookup{who_.tenant_id, conversation_id, who_.user_id, ""},
        [self = shared_from_this(),
         conversation_id](StorageOutcome<wire::ConversationSummary> outcome) {
          asio::post(self->executor_,
                     [self, conversation_id, outcome = std::move(outcome)]() mutable {
                       self->on_summary(conversation_id, std::move(outcome));
                     });
        });
  }
}

void StreamSession::on_summary(const std::string& conversation_id,
                               StorageOutcome<wire::ConversationSummary> outcome) {
  --summaries_in_flight_;
  summary_wanted_.erase(conversation_id);
  if (phase_ != Phase::kStarting && phase_ != Phase::kStreaming) return;
  if (outcome.ok()) {
    const Summary summary{conversation_id, outcome.value->horizons.delivered_up_to,
                          outcome.value->last_seq, outcome.value->state_head};
    if (phase_ == Phase::kStreaming)
      add_conversation(summary);
    else
      starting_summaries_.emplace(conversation_id, summary);
  } else {
    // Not found: not (or no longer) a member. Anything else: the next resync retries.
    log_.debug("summary_failed", {{"user_id", who_.user_id},
                                  {"conversation_id", conversation_id},
                                  {"status", codec::status_name(outcome.status)}});
  }
  pump_summaries();
  maybe_ready();
}

void StreamSession::add_conversation(const Summary& summary) {
  if (!tracker_.add(summary.conversation_id, summary.delivered_up_to, summary.last_seq)) return;
  states_.add(summary.conversation_id, summary.state_head);
  subscribe(summary.conversation_id);
  follow_tail(summary.conversation_id, summary.last_seq);
  pump_reads();
  schedule_marks();  // a resume cursor beyond the stored horizon is delivered
}

void StreamSession::drop_conversation(const std::string& conversation_id) {
  tracker_.remove(conversation_id);
  states_.remove(conversation_id);
  unsubscribe(conversation_id);
  unfollow_tail(conversation_id);
}

void StreamSession::follow_tail(const std::string& conversation_id, std::uint64_t last_seq) {
  auto tail = hub_.tails().tail(who_.tenant_id, conversation_id, last_seq, executor_, routers_);
  if (!tail) return;  // kTailsMax: this conversation is read by the session alone
  tail->follow(shared_from_this());
  tails_[conversation_id] = std::move(tail);
}

void StreamSession::unfollow_tail(const std::string& conversation_id) {
  const auto it = tails_.find(conversation_id);
  if (it == tails_.end()) return;
  it->second->unfollow(this);
  tails_.erase(it);
}

void StreamSession::unfollow_all_tails() {
  for (const auto& [conversation_id, tail] : tails_) tail->unfollow(this);
  tails_.clear();
}

bool StreamSession::starting_done() const {
  return !listing_ && summaries_in_flight_ == 0 && summary_queue_.empty();
}

void StreamSession::maybe_ready() {
  if (phase_ != Phase::kStarting || !resume_decided_ || !starting_done()) return;
  tracker_.set_resume_cursors(std::move(resume_cursors_));
  for (const auto& [conversation_id, summary] : starting_summaries_) {
    if (!tracker_.add(summary.conversation_id, summary.delivered_up_to, summary.last_seq)) continue;
    states_.add(summary.conversation_id, summary.state_head);
    subscribe(summary.conversation_id);
    follow_tail(summary.conversation_id, summary.last_seq);
  }
  starting_summaries_.clear();
  enqueue({ready_frame(who_.user_id, tracker_.positions(), kConversationsMax), "", 0});
  if (conversations_capped_logged_) enqueue({conversations_capped_frame(kConversationsMax), "", 0});
  if (phase_ != Phase::kStarting) return;  // the ready frame did not fit: closed
  phase_ = Phase::kStreaming;
  schedule_resync();
  pump_reads();
  pump_state_reads();
  schedule_marks();
}

// ---- reading and sending

std::size_t StreamSession::read_room_bytes() const {
  const std::size_t used = queued_bytes_ + reserved_bytes_;
  return used >= queue_bytes_max_ ? 0 : queue_bytes_max_ - used;
}

void StreamSession::pump_reads() {
  if (phase_ != Phase::kStreaming) return;
  {
    const std::size_t room = read_room_bytes();
    take_from_tails(room >= message_frame_bytes_estimate_ || outbound_.empty(),
                    static_cast<std::uint32_t>(std::clamp<std::size_t>(
                        room / message_frame_bytes_estimate_, 1, kPageMessagesMax)));
    if (phase_ != Phase::kStreaming) return;  // too slow: closed
  }
  while (reads_in_flight_ < kReadsInFlightMax) {
    const std::size_t room = read_room_bytes();
    // The backlog is read only when a message of the largest size fits (or
    // nothing is queued, so that a queue smaller than one still moves), so a
    // client catching up at its own pace is never taken for a slow one. Live
    // messages are read at once: a client that does not take them fills the
    // queue and is closed.
    const bool room_for_backlog = room >= message_frame_bytes_estimate_ || outbound_.empty();
    auto reads = tracker_.take_reads(1, room_for_backlog);
    if (reads.empty()) break;
    const auto& read = reads.front();
    // As many messages as the room holds at the largest text size, at least one.
    const std::uint32_t limit = static_cast<std::uint32_t>(
        std::clamp<std::size_t>(room / message_frame_bytes_estimate_, 1, kPageMessagesMax));
    const std::size_t reserved = limit * message_frame_bytes_estimate_;
    ++reads_in_flight_;
    reserved_bytes_ += reserved;
    hub_.stream_metrics().storage_reads.add();
    const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest,
                              ids::next_request_id(), ids::new_trace_id()};
    wire::ReadRequest request;
    request.conversation_id = read.conversation_id;
    request.from_seq = read.from_seq;
    request.limit = limit;
    request.tenant_id = who_.tenant_id;
    request.requester_id = who_.user_id;
    routers_.submit(
        header.request_id, codec::encode(header, request),
        [self = shared_from_this(), conversation_id = read.conversation_id, reserved,
         paced = read.catching_up](wire::Status status, std::optional<codec::Frame> reply) {
          asio::post(self->executor_, [self, conversation_id, reserved, paced, status,
                                       reply = std::move(reply)]() mutable {
            self->on_page(conversation_id, reserved, paced, status, std::move(reply));
          });
        });
  }
}

void StreamSession::take_from_tails(bool room_for_backlog, std::uint32_t backlog_limit) {
  if (tails_.empty() || !tracker_.wants_reads()) return;
  // One snapshot per conversation: the takes are cut from the very window
  // the tracker was shown, whatever the tail did since.
  std::map<std::string, std::shared_ptr<const TailSnapshot>> snapshots;
  auto plan = tracker_.take_from_tails(
      [&](const std::string& conversation_id) -> std::optional<StreamCursorTracker::TailView> {
        const auto tail = tails_.find(conversation_id);
        if (tail == tails_.end()) return std::nullopt;
        auto snapshot = tail->second->snapshot();
        if (snapshot->gone) return std::nullopt;
        const StreamCursorTracker::TailView view{snapshot->first, snapshot->last};
        snapshots[conversation_id] = std::move(snapshot);
        return view;
      },
      room_for_backlog, backlog_limit);
  for (const auto& wake : plan.wakes) tails_.at(wake.conversation_id)->on_hint(wake.seq);
  for (const auto& take : plan.takes) {
    const TailSnapshot& snapshot = *snapshots.at(take.conversation_id);
    for (std::uint64_t seq = take.from_seq; seq <= take.to_seq; ++seq) {
      hub_.stream_metrics().tail_frames.add();
      enqueue({snapshot.frame(seq), take.conversation_id, seq, take.catching_up});
      if (phase_ != Phase::kStreaming) return;  // too slow: closed
    }
  }
}

void StreamSession::on_page(const std::string& conversation_id, std::size_t reserved_bytes,
                            bool paced, wire::Status status, std::optional<codec::Frame> reply) {
  --reads_in_flight_;
  reserved_bytes_ -= reserved_bytes;
  if (phase_ != Phase::kStreaming) return;
  std::optional<wire::ReadReply> answer = read_reply(status, reply);
  if (status == wire::Status::kNotFound) {
    log_.debug("conversation_gone",
               {{"user_id", who_.user_id}, {"conversation_id", conversation_id}});
    drop_conversation(conversation_id);
  } else if (status != wire::Status::kOk) {
    tracker_.on_read_failed(conversation_id);  // the next hint or resync reads again
  } else {
    states_.on_head(conversation_id, answer->state_head);
    for (auto& message : tracker_.on_page(conversation_id, std::move(answer->messages),
                                          answer->last_seq, answer->first_seq)) {
      enqueue({message_frame(message), conversation_id, message.seq, paced});
      if (phase_ != Phase::kStreaming) return;  // too slow: closed
    }
  }
  pump_reads();
  pump_state_reads();
}

void StreamSession::pump_state_reads() {
  if (phase_ != Phase::kStreaming) return;
  while (state_reads_in_flight_ < kStateReadsInFlightMax) {
    auto reads = states_.take_reads(1);
    if (reads.empty()) break;
    const auto& read = reads.front();
    ++state_reads_in_flight_;
    storage_.query<wire::StatePage>(
        read.conversation_id, wire::QueryKind::kReadStates,
        wire::ReadStates{who_.tenant_id, read.conversation_id, who_.user_id, who_.user_id,
                         read.after_index, kStatePageMax},
        [self = shared_from_this(),
         conversation_id = read.conversation_id](StorageOutcome<wire::StatePage> outcome) {
          asio::post(self->executor_,
                     [self, conversation_id, outcome = std::move(outcome)]() mutable {
                       self->on_state_page(conversation_id, std::move(outcome));
                     });
        });
  }
}

void StreamSession::on_state_page(const std::string& conversation_id,
                                  StorageOutcome<wire::StatePage> outcome) {
  --state_reads_in_flight_;
  if (phase_ != Phase::kStreaming) return;
  if (!outcome.ok()) {
    // Not found: the user left, which the message reads find too. Otherwise
    // the next hint or head learned reads again.
    states_.on_read_failed(conversation_id);
  } else {
    for (const auto& step : states_.on_page(conversation_id, std::move(*outcome.value))) {
      enqueue({state_frame(conversation_id, step), "", 0});
      if (phase_ != Phase::kStreaming) return;  // too slow: closed
    }
  }
  pump_state_reads();
}

void StreamSession::enqueue(OutboundFrame frame) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  // Backlog pages were read to fit; everything else (live messages, states,
  // pongs, errors) is pushed at the client: one that lets it pile up beyond
  // the bound is too slow. A frame alone always goes out, however large.
  if (!frame.paced && !outbound_.empty() && queued_bytes_ + frame.text.size() > queue_bytes_max_)
    return close_too_slow();
  queued_bytes_ += frame.text.size();
  outbound_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void StreamSession::write_next() {
  if (outbound_.empty()) return;
  writing_ = true;
  socket_.text(true);
  socket_.async_write(
      asio::buffer(outbound_.front().text),
      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
}

void StreamSession::on_write(beast::error_code ec) {
  writing_ = false;
  if (ec) return finish("write_failed");
  OutboundFrame written = std::move(outbound_.front());
  outbound_.pop_front();
  queued_bytes_ -= written.text.size();
  if (written.seq > 0) {
    tracker_.on_written(written.conversation_id, written.seq);
    hub_.stream_metrics().messages_pushed.add();
  }
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  // Everything queued is out: mark now, so that DELIVERED follows the push
  // closely. While frames keep coming the marks wait for the queue to empty
  // or kMarkCoalesce, whichever is first, and cover all that was written.
  if (outbound_.empty())
    flush_marks();
  else
    schedule_marks();
  write_next();
  pump_reads();
}

// ---- DELIVERED marks

void StreamSession::schedule_marks() {
  if (marks_scheduled_ || !tracker_.wants_marks()) return;
  if (phase_ != Phase::kStreaming) return;
  marks_scheduled_ = true;
  mark_timer_.expires_after(kMarkCoalesce);
  mark_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    self->marks_scheduled_ = false;
    if (!ec) self->flush_marks();
  });
}

void StreamSession::flush_marks() {
  for (const auto& mark : tracker_.take_marks()) {
    wire::MarkState body;
    body.tenant_id = who_.tenant_id;
    body.conversation_id = mark.conversation_id;
    body.user_id = who_.user_id;
    body.state = wire::kStateDelivered;
    body.up_to_seq = mark.up_to_seq;
    storage_.command<wire::MarkStateResult>(
        mark.conversation_id, wire::CommandKind::kMarkState, body,
        [self = shared_from_this(), mark](StorageOutcome<wire::MarkStateResult> outcome) {
          // Storage moves a horizon a bounded step at a time: what it reached
          // is what counts, and the rest is marked by the next flush.
          const std::uint64_t reached = outcome.ok() ? outcome.value->horizons.delivered_up_to : 0;
          asio::post(self->executor_, [self, mark, ok = outcome.ok(), status = outcome.status,
                                       reached] {
            if (!ok)
              self->log_.debug("mark_delivered_failed", {{"user_id", self->who_.user_id},
                                                         {"conversation_id", mark.conversation_id},
                                                         {"up_to_seq", mark.up_to_seq},
                                                         {"status", codec::status_name(status)}});
            self->tracker_.on_mark_done(mark.conversation_id, std::min(mark.up_to_seq, reached),
                                        ok);
          });
        });
  }
}

// ---- hints and resync

void StreamSession::on_event(const wire::Event& event) {
  // Filtered here, before the copy: in a group every recipient's DELIVERED
  // and READ is a hint to every stream of the conversation, and only the
  // sender's streams take it (handle_hint). who_'s ids never change.
  if (event.tenant_id != who_.tenant_id) return;
  if (event.kind == "state" && event.sender_id != who_.user_id) return;
  std::lock_guard lock(hints_mutex_);
  if (hints_pending_.size() < kHintsPendingMax)
    hints_pending_.push_back(event);
  else
    hints_overflowed_ = true;
  if (hints_drain_posted_) return;
  hints_drain_posted_ = true;
  asio::post(executor_, [self = shared_from_this()] { self->drain_hints(); });
}

void StreamSession::drain_hints() {
  std::vector<wire::Event> hints;
  bool overflowed = false;
  {
    std::lock_guard lock(hints_mutex_);
    hints.swap(hints_pending_);
    overflowed = std::exchange(hints_overflowed_, false);
    hints_drain_posted_ = false;
  }
  if (phase_ != Phase::kStarting && phase_ != Phase::kStreaming) return;
  for (const auto& hint : hints) {
    handle_hint(hint);
    if (phase_ != Phase::kStarting && phase_ != Phase::kStreaming) return;
  }
  if (overflowed) tracker_.want_all();  // what the dropped hints said, read anyway
  pump_reads();
  pump_state_reads();
}

void StreamSession::handle_hint(const wire::Event& event) {
  if (event.tenant_id != who_.tenant_id) return;
  if (event.kind == "message") {
    tracker_.on_hint(event.conversation_id, event.seq);
  } else if (event.kind == "state") {
    if (event.sender_id == who_.user_id) states_.on_hint(event.conversation_id);
  } else if (event.kind == "membership" && event.user_id == who_.user_id) {
    if (event.joined)
      request_summary(event.conversation_id);
    else if (phase_ == Phase::kStreaming)
      drop_conversation(event.conversation_id);
    // Before ready a departure is caught by the read, answered not-found.
  } else if (event.kind == "presence" || event.kind == "typing") {
    handle_signal(event);
  }
}

void StreamSession::schedule_resync() {
  resync_timer_.expires_after(std::chrono::milliseconds(hub_.settings().resync_ms));
  resync_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (ec || self->phase_ != Phase::kStreaming) return;
    self->resync();
  });
}

void StreamSession::resync() {
  if (!listing_) {
    listing_ = true;
    unlisted_.clear();
    for (const auto& position : tracker_.positions()) unlisted_.insert(position.conversation_id);
    list_conversations("");
  }
  tracker_.want_all();
  pump_reads();
  flush_marks();  // retries the marks that failed
  schedule_resync();
}

// ---- ending

void StreamSession::close_too_slow() {
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  hub_.stream_metrics().slow_disconnects.add();
  log_.info("slow_client_closed", {{"tenant_id", who_.tenant_id},
                                   {"user_id", who_.user_id},
                                   {"queued_bytes", queued_bytes_},
                                   {"queue_bytes_max", queue_bytes_max_}});
  close_with(websocket::close_code::policy_error, "slow consumer", "slow_consumer");
}

void StreamSession::close_with(websocket::close_code code, const char* reason, const char* why) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kFinished) return;
  phase_ = Phase::kClosing;
  // Drop the queue, except the frame being written (its buffer is in use).
  outbound_.erase(writing_ ? std::next(outbound_.begin()) : outbound_.begin(), outbound_.end());
  queued_bytes_ = outbound_.empty() ? 0 : outbound_.front().text.size();
  resume_timer_.cancel();
  resync_timer_.cancel();
  mark_timer_.cancel();
  expiry_timer_.cancel();
  flush_marks();  // what was written is delivered
  // The close frame goes out after the write in progress; a client that does
  // not read never takes it, so the connection is cut after a grace period.
  socket_.async_close(websocket::close_reason(code, reason),
                      [self = shared_from_this(), why](beast::error_code) { self->finish(why); });
  close_timer_.expires_after(kCloseGrace);
  close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
    if (!ec) self->finish("close_unanswered");
  });
}

void StreamSession::finish(const char* why) {
  if (phase_ == Phase::kFinished) return;
  phase_ = Phase::kFinished;
  resume_timer_.cancel();
  resync_timer_.cancel();
  mark_timer_.cancel();
  close_timer_.cancel();
  expiry_timer_.cancel();
  flush_marks();
  for (const auto& topic : topics_) hub_.events().unsubscribe(topic, this);
  topics_.clear();
  unfollow_all_tails();
  who_.slot.release();
  presence_hold_.release();
  hub_.untrack(this);
  outbound_.erase(writing_ ? std::next(outbound_.begin()) : outbound_.begin(), outbound_.end());
  // Cancels whatever is still pending on the socket; their handlers drop the
  // last references to this session.
  beast::error_code ignored;
  beast::get_lowest_layer(socket_).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(socket_).socket().close(ignored);
  log_.debug("session_ended", {{"user_id", who_.user_id}, {"why", why}});
}

void StreamSession::subscribe(const std::string& topic) {
  if (topics_.insert(topic).second) hub_.events().subscribe(topic, shared_from_this());
}

void StreamSession::unsubscribe(const std::string& topic) {
  if (topics_.erase(topic) > 0) hub_.events().unsubscribe(topic, this);
}

}  // namespace chat4all::frontend
