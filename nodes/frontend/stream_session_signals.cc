// StreamSession's ephemeral signals (stream_session.h): presence and typing.
// Neither is stored nor read by cursor: a frame lost with its event is lost
// (GET /v1/users/{id}/presence has the state; a typing indicator is repeated
// while the user types).
#include <chrono>

#include "common/codec.h"
#include "nodes/frontend/stream_frames.h"
#include "nodes/frontend/stream_session.h"

namespace chat4all::frontend {

namespace asio = boost::asio;

namespace {

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void StreamSession::send_typing(const std::string& conversation_id) {
  // Within kTypingIntervalMs of this session's last one: dropped here, so that
  // a client that sends one per keystroke costs storage nothing more. The
  // conversation's leader applies the same rule to all of the user's sessions.
  if (!typing_limiter_.allow(conversation_id, steady_ms())) return;
  storage_.query<wire::TypingResult>(
      conversation_id, wire::QueryKind::kTyping,
      wire::TypingNotice{who_.tenant_id, conversation_id, who_.user_id},
      [self = shared_from_this(), conversation_id](StorageOutcome<wire::TypingResult> outcome) {
        asio::post(self->executor_, [self, conversation_id, outcome = std::move(outcome)] {
          if (outcome.status == wire::Status::kNotFound)
            return self->enqueue(
                {error_frame("conversation_not_found",
                             "typing in \"" + conversation_id +
                                 "\" is not possible: no such conversation, or not a member"),
                 "", 0});
          if (!outcome.ok())
            self->log_.debug("typing_failed", {{"user_id", self->who_.user_id},
                                               {"conversation_id", conversation_id},
                                               {"status", codec::status_name(outcome.status)}});
        });
      });
}

void StreamSession::handle_signal(const wire::Event& event) {
  // Only about others, in conversations this stream follows, once it is ready.
  if (phase_ != Phase::kStreaming || event.user_id == who_.user_id ||
      !tracker_.contains(event.conversation_id))
    return;
  if (event.kind == "typing") {
    enqueue({typing_frame(event), "", 0});
    hub_.stream_metrics().typing_frames.add();
  } else if (presence_filter_.first(event.user_id, event.state, event.at_ms)) {
    enqueue({presence_frame(event), "", 0});
    hub_.stream_metrics().presence_frames.add();
  }
}

}  // namespace chat4all::frontend
