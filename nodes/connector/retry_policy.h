// What happens after one attempt to deliver a webhook: delivered, failed for good, or tried
// again after a delay.
//
// A pure function: no clock, no I/O, no global randomness (the caller passes a random value),
// so the whole retry schedule is reproducible in tests. Safe from any thread.
//
// Success is a 2xx answer. Timeouts, connection errors, 408, 429 and 5xx are worth another
// attempt; any other answer (3xx included: redirects are not followed, a webhook URL that moved
// must be updated) and a refusal by the URL guard end the delivery. A host that does not resolve
// is a connection error, not a refusal: one resolver hiccup must not fail a delivery for good.
//
// The delay is common/backoff.h's full-jitter exponential backoff, raised to a Retry-After.
#pragma once

#include <cstdint>
#include <optional>

#include "schema/records.h"

namespace chat4all::connector {

struct HttpResult;
struct GuardResult;

struct RetryPolicy {
  std::uint32_t attempts_max = 8;  // attempts in all, the first one included; 0 acts as 1
  std::uint32_t backoff_initial_ms = 1000;
  std::uint32_t backoff_max_ms = 3'600'000;
};

// Why an attempt ended without an HTTP answer.
enum class TransportError {
  kNone,            // there is an HTTP answer: see status_code
  kTimeout,         // no complete answer within the attempt's timeout
  kConnect,         // could not connect, or the connection broke (resolve, refuse, reset, TLS)
  kOther,           // any other transport failure
  kRefusedByGuard,  // the URL guard refused the URL or its addresses: never sent (a host that
                    // does not resolve is kConnect)
};

struct AttemptOutcome {
  int status_code = 0;  // meaningful when error == kNone
  TransportError error = TransportError::kNone;
  std::optional<std::uint32_t> retry_after_s;  // the answer's Retry-After, if any
};

enum class DeliveryState { kDelivered, kFailed, kRetrying };

// "delivered", "failed", "retrying": the names the deliveries API shows.
const char* delivery_state_name(DeliveryState state);

struct RetryDecision {
  bool retry = false;
  std::uint32_t delay_ms = 0;  // when retry: wait this long before the next attempt
  DeliveryState final_state = DeliveryState::kFailed;
};

// The decision after attempt number `attempt` (1-based: the attempt that just finished) ended
// with `outcome`. `random` is a uniformly distributed 64-bit value (e.g. from std::mt19937_64 or
// randombytes); it only picks the jitter.
RetryDecision decide_retry(std::uint32_t attempt, const AttemptOutcome& outcome,
                           const RetryPolicy& policy, std::uint64_t random);

// True when an HTTP answer with this status is worth another attempt (408, 429, 5xx).
bool is_retryable_status(int status_code);

// The outcome of an HTTP attempt made by HttpSender (nodes/connector/http_sender.h).
AttemptOutcome outcome_of(const HttpResult& result);

// A delivery an earlier run recorded (the connector restarted, or its event was read again) is
// continued, not started afresh, so that attempts count against attempts_max across restarts.
// resume_delivery() copies `stored`'s attempts, state, times into `record` and says what next.
enum class ResumeAction {
  kAttempt,  // attempt after delay_ms (what was left of the stored wait, at most backoff_max_ms)
  kEnded,    // the stored record ended (delivered or failed): nothing more to do or store
  kGiveUp,   // the budget is spent (attempts_max was lowered): `record` is now failed; store it
};
struct Resumed {
  ResumeAction action = ResumeAction::kAttempt;
  std::uint32_t delay_ms = 0;
};
Resumed resume_delivery(wire::DeliveryRecord& record, const wire::DeliveryRecord& stored,
                        const RetryPolicy& policy, std::int64_t now_ms);

// The outcome of an attempt the URL guard stopped before sending (`guard` is not ok()): a host
// that did not resolve is kConnect (retried), anything else kRefusedByGuard (final).
AttemptOutcome outcome_of(const GuardResult& guard);

}  // namespace chat4all::connector
