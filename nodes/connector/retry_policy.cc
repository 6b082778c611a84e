#include "nodes/connector/retry_policy.h"

#include <algorithm>

#include "common/backoff.h"
#include "common/url_guard.h"
#include "nodes/connector/http_sender.h"

namespace chat4all::connector {

const char* delivery_state_name(DeliveryState state) {
  switch (state) {
    case DeliveryState::kDelivered:
      return "delivered";
    case DeliveryState::kFailed:
      return "failed";
    case DeliveryState::kRetrying:
      return "retrying";
  }
  return "failed";
}

bool is_retryable_status(int status_code) {
  return status_code == 408 || status_code == 429 || (status_code >= 500 && status_code <= 599);
}

namespace {

bool is_retryable(const AttemptOutcome& outcome) {
  switch (outcome.error) {
    case TransportError::kNone:
      return is_retryable_status(outcome.status_code);
    case TransportError::kTimeout:
    case TransportError::kConnect:
    case TransportError::kOther:
      // No answer at all: the receiver may be restarting or the network failing; trying again
      // later is what at-least-once delivery asks for.
      return true;
    case TransportError::kRefusedByGuard:
      // The URL or what it resolves to is forbidden; repeating the check soon will not change
      // that, and hammering DNS for it would be pointless.
      return false;
  }
  return false;
}

}  // namespace

RetryDecision decide_retry(std::uint32_t attempt, const AttemptOutcome& outcome,
                           const RetryPolicy& policy, std::uint64_t random) {
  RetryDecision decision;
  if (outcome.error == TransportError::kNone && outcome.status_code >= 200 &&
      outcome.status_code <= 299) {
    decision.final_state = DeliveryState::kDelivered;
    return decision;
  }
  const std::uint32_t attempts_max = std::max<std::uint32_t>(policy.attempts_max, 1);
  if (!is_retryable(outcome) || attempt >= attempts_max) {
    decision.final_state = DeliveryState::kFailed;
    return decision;
  }
  decision.retry = true;
  decision.delay_ms = full_jitter_backoff_ms(
      attempt, policy.backoff_initial_ms, policy.backoff_max_ms, random,
      outcome.retry_after_s ? std::uint64_t{*outcome.retry_after_s} * 1000 : 0);
  decision.final_state = DeliveryState::kRetrying;
  return decision;
}

AttemptOutcome outcome_of(const HttpResult& result) {
  AttemptOutcome outcome;
  outcome.status_code = result.status_code;
  outcome.retry_after_s = result.retry_after_s;
  switch (result.error) {
    case HttpResult::Error::kNone:
      outcome.error = TransportError::kNone;
      break;
    case HttpResult::Error::kTimeout:
      outcome.error = TransportError::kTimeout;
      break;
    case HttpResult::Error::kConnect:
      outcome.error = TransportError::kConnect;
      break;
    case HttpResult::Error::kOther:
      outcome.error = TransportError::kOther;
      break;
  }
  return outcome;
}

Resumed resume_delivery(wire::DeliveryRecord& record, const wire::DeliveryRecord& stored,
                        const RetryPolicy& policy, std::int64_t now_ms) {
  record.attempts = stored.attempts;
  record.created_at_ms = stored.created_at_ms;
  record.state = stored.state;
  record.next_attempt_at_ms = stored.next_attempt_at_ms;
  Resumed resumed;
  if (stored.state == delivery_state_name(DeliveryState::kDelivered) ||
      stored.state == delivery_state_name(DeliveryState::kFailed)) {
    resumed.action = ResumeAction::kEnded;
    return resumed;
  }
  if (record.attempts.size() >= std::max<std::uint32_t>(policy.attempts_max, 1)) {
    record.state = delivery_state_name(DeliveryState::kFailed);
    record.next_attempt_at_ms = 0;
    resumed.action = ResumeAction::kGiveUp;
    return resumed;
  }
  const std::int64_t wait_ms =
      std::clamp<std::int64_t>(stored.next_attempt_at_ms - now_ms, 0, policy.backoff_max_ms);
  resumed.delay_ms = static_cast<std::uint32_t>(wait_ms);
  return resumed;
}

AttemptOutcome outcome_of(const GuardResult& guard) {
  AttemptOutcome outcome;
  outcome.error = guard.ok()         ? TransportError::kNone
                  : guard.unresolved ? TransportError::kConnect
                                     : TransportError::kRefusedByGuard;
  return outcome;
}

}  // namespace chat4all::connector
