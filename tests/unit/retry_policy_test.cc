// Retry decisions for webhook deliveries: nodes/connector/retry_policy.h.
#include "nodes/connector/retry_policy.h"

#include <gtest/gtest.h>

#include <random>

#include "common/url_guard.h"
#include "nodes/connector/http_sender.h"

namespace chat4all::connector {
namespace {

constexpr RetryPolicy kPolicy{
    .attempts_max = 10, .backoff_initial_ms = 100, .backoff_max_ms = 5000};

AttemptOutcome answer(int status_code, std::optional<std::uint32_t> retry_after_s = {}) {
  AttemptOutcome outcome;
  outcome.status_code = status_code;
  outcome.retry_after_s = retry_after_s;
  return outcome;
}

AttemptOutcome failure(TransportError error) {
  AttemptOutcome outcome;
  outcome.error = error;
  return outcome;
}

TEST(RetryPolicyTest, TwoHundredsAreDelivered) {
  for (const int status : {200, 201, 202, 204, 299}) {
    const RetryDecision decision = decide_retry(1, answer(status), kPolicy, 0);
    EXPECT_FALSE(decision.retry) << status;
    EXPECT_EQ(decision.final_state, DeliveryState::kDelivered) << status;
  }
  // Even on the last attempt allowed.
  EXPECT_EQ(decide_retry(10, answer(200), kPolicy, 0).final_state, DeliveryState::kDelivered);
}

TEST(RetryPolicyTest, PermanentAnswersFailAtOnce) {
  for (const int status : {100, 301, 302, 304, 400, 401, 403, 404, 405, 410, 413, 422, 600}) {
    const RetryDecision decision = decide_retry(1, answer(status), kPolicy, 12345);
    EXPECT_FALSE(decision.retry) << status;
    EXPECT_EQ(decision.final_state, DeliveryState::kFailed) << status;
  }
  const RetryDecision refused =
      decide_retry(1, failure(TransportError::kRefusedByGuard), kPolicy, 12345);
  EXPECT_FALSE(refused.retry);
  EXPECT_EQ(refused.final_state, DeliveryState::kFailed);
}

TEST(RetryPolicyTest, TransientOutcomesAreRetried) {
  for (const int status : {408, 429, 500, 502, 503, 504, 599}) {
    const RetryDecision decision = decide_retry(1, answer(status), kPolicy, 12345);
    EXPECT_TRUE(decision.retry) << status;
    EXPECT_EQ(decision.final_state, DeliveryState::kRetrying) << status;
  }
  for (const auto error :
       {TransportError::kTimeout, TransportError::kConnect, TransportError::kOther}) {
    const RetryDecision decision = decide_retry(1, failure(error), kPolicy, 12345);
    EXPECT_TRUE(decision.retry);
    EXPECT_EQ(decision.final_state, DeliveryState::kRetrying);
  }
}

TEST(RetryPolicyTest, AttemptsMaxEndsRetries) {
  for (std::uint32_t attempt = 1; attempt < kPolicy.attempts_max; ++attempt)
    EXPECT_TRUE(decide_retry(attempt, answer(503), kPolicy, 7).retry) << attempt;
  const RetryDecision last = decide_retry(kPolicy.attempts_max, answer(503), kPolicy, 7);
  EXPECT_FALSE(last.retry);
  EXPECT_EQ(last.final_state, DeliveryState::kFailed);
  EXPECT_FALSE(decide_retry(kPolicy.attempts_max + 5, answer(503), kPolicy, 7).retry);

  // attempts_max of 1 (and 0, read as 1) means a single attempt.
  RetryPolicy once = kPolicy;
  once.attempts_max = 1;
  EXPECT_FALSE(decide_retry(1, failure(TransportError::kTimeout), once, 7).retry);
  once.attempts_max = 0;
  EXPECT_FALSE(decide_retry(1, failure(TransportError::kTimeout), once, 7).retry);
}

TEST(RetryPolicyTest, DelaysStayWithinTheExponentialCeilingAndCap) {
  std::mt19937_64 random(20240601);
  for (std::uint32_t attempt = 1; attempt < kPolicy.attempts_max; ++attempt) {
    // 100, 200, 400, 800, 1600, 3200, then the 5000 cap.
    const std::uint64_t ceiling_ms = std::min<std::uint64_t>(100ull << (attempt - 1), 5000);
    std::uint32_t smallest_ms = UINT32_MAX;
    std::uint32_t largest_ms = 0;
    for (int i = 0; i < 2000; ++i) {
      const RetryDecision decision = decide_retry(attempt, answer(500), kPolicy, random());
      ASSERT_TRUE(decision.retry);
      ASSERT_LE(decision.delay_ms, ceiling_ms) << "attempt " << attempt;
      smallest_ms = std::min(smallest_ms, decision.delay_ms);
      largest_ms = std::max(largest_ms, decision.delay_ms);
    }
    // Full jitter spreads over the whole [0, ceiling] range.
    EXPECT_LT(smallest_ms, ceiling_ms / 10) << "attempt " << attempt;
    EXPECT_GT(largest_ms, ceiling_ms * 9 / 10) << "attempt " << attempt;
  }
}

TEST(RetryPolicyTest, HugeAttemptNumbersDoNotOverflow) {
  RetryPolicy policy = kPolicy;
  policy.attempts_max = UINT32_MAX;
  policy.backoff_initial_ms = UINT32_MAX;
  policy.backoff_max_ms = UINT32_MAX;
  const RetryDecision decision = decide_retry(1'000'000, answer(503), policy, UINT64_MAX);
  EXPECT_TRUE(decision.retry);
  EXPECT_LE(decision.delay_ms, UINT32_MAX);
  EXPECT_EQ(decide_retry(2, answer(503), policy, UINT32_MAX).delay_ms, UINT32_MAX);
  // No backoff at all is allowed too (and must not loop over the attempt number).
  policy.backoff_initial_ms = 0;
  EXPECT_EQ(decide_retry(4'000'000'000u, answer(503), policy, 12345).delay_ms, 0u);
}

TEST(RetryPolicyTest, TheSameRandomValueGivesTheSameDelay) {
  EXPECT_EQ(decide_retry(3, answer(500), kPolicy, 987654321).delay_ms,
            decide_retry(3, answer(500), kPolicy, 987654321).delay_ms);
  // 987654321 % (400 + 1)
  EXPECT_EQ(decide_retry(3, answer(500), kPolicy, 987654321).delay_ms, 987654321u % 401);
}

TEST(RetryPolicyTest, RetryAfterIsAFloorCappedAtTheMaximum) {
  std::mt19937_64 random(7);
  for (int i = 0; i < 200; ++i) {
    // Attempt 1: jitter alone is at most 100 ms; Retry-After: 2 makes it 2000 ms.
    EXPECT_EQ(decide_retry(1, answer(429, 2), kPolicy, random()).delay_ms, 2000u);
    EXPECT_EQ(decide_retry(1, answer(503, 2), kPolicy, random()).delay_ms, 2000u);
    // A Retry-After beyond the cap waits the cap.
    EXPECT_EQ(decide_retry(1, answer(503, 3600), kPolicy, random()).delay_ms, 5000u);
    // A jitter above the Retry-After keeps the jitter.
    const RetryDecision late = decide_retry(7, answer(503, 1), kPolicy, random());
    EXPECT_GE(late.delay_ms, 1000u);
    EXPECT_LE(late.delay_ms, 5000u);
  }
  // Retry-After never turns a permanent answer into a retry, nor extends attempts_max.
  EXPECT_FALSE(decide_retry(1, answer(400, 1), kPolicy, 0).retry);
  EXPECT_FALSE(decide_retry(10, answer(503, 1), kPolicy, 0).retry);
}

TEST(RetryPolicyTest, StateNames) {
  EXPECT_STREQ(delivery_state_name(DeliveryState::kDelivered), "delivered");
  EXPECT_STREQ(delivery_state_name(DeliveryState::kFailed), "failed");
  EXPECT_STREQ(delivery_state_name(DeliveryState::kRetrying), "retrying");
}

TEST(RetryPolicyTest, OutcomeOfAnHttpResult) {
  HttpResult result;
  result.status_code = 503;
  result.retry_after_s = 9;
  AttemptOutcome outcome = outcome_of(result);
  EXPECT_EQ(outcome.error, TransportError::kNone);
  EXPECT_EQ(outcome.status_code, 503);
  EXPECT_EQ(outcome.retry_after_s, 9u);

  result = HttpResult{};
  result.error = HttpResult::Error::kTimeout;
  EXPECT_EQ(outcome_of(result).error, TransportError::kTimeout);
  result.error = HttpResult::Error::kConnect;
  EXPECT_EQ(outcome_of(result).error, TransportError::kConnect);
  result.error = HttpResult::Error::kOther;
  EXPECT_EQ(outcome_of(result).error, TransportError::kOther);
}

TEST(RetryPolicyTest, AHostThatDoesNotResolveIsRetriedAForbiddenAddressIsNot) {
  // One resolver hiccup must not fail a delivery for good.
  const GuardResult unresolved = check_url("https://hooks.example.invalid/hook", UrlPolicy{});
  ASSERT_FALSE(unresolved.ok());
  EXPECT_EQ(outcome_of(unresolved).error, TransportError::kConnect);
  RetryDecision decision = decide_retry(1, outcome_of(unresolved), kPolicy, 7);
  EXPECT_TRUE(decision.retry);
  EXPECT_EQ(decision.final_state, DeliveryState::kRetrying);
  // ... within the attempts budget like any connection error.
  EXPECT_FALSE(decide_retry(kPolicy.attempts_max, outcome_of(unresolved), kPolicy, 7).retry);

  const GuardResult forbidden = check_url("http://127.0.0.1:9000/hook", UrlPolicy{});
  ASSERT_FALSE(forbidden.ok());
  EXPECT_EQ(outcome_of(forbidden).error, TransportError::kRefusedByGuard);
  decision = decide_retry(1, outcome_of(forbidden), kPolicy, 7);
  EXPECT_FALSE(decision.retry);
  EXPECT_EQ(decision.final_state, DeliveryState::kFailed);

  const GuardResult allowed = check_url("http://127.0.0.1:9000/hook", {.allow_loopback = true});
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(outcome_of(allowed).error, TransportError::kNone);
}

TEST(RetryPolicyTest, AResumedDeliveryKeepsItsAttemptsAndTheirBudget) {
  const RetryPolicy policy{.attempts_max = 4, .backoff_initial_ms = 100, .backoff_max_ms = 5000};
  wire::DeliveryRecord stored{"acme", "wh1", "evt_1", "message.sent", "retrying", {}, 100, 9000};
  stored.attempts = {{1000, 503, "", 5}, {2000, 0, "connection refused", 1}};
  // What a restarted dispatcher starts from: a fresh record.
  wire::DeliveryRecord record{"acme", "wh1", "evt_1", "message.sent", "retrying", {}, 7000};

  Resumed resumed = resume_delivery(record, stored, policy, /*now_ms=*/8000);
  EXPECT_EQ(resumed.action, ResumeAction::kAttempt);
  EXPECT_EQ(resumed.delay_ms, 1000u) << "the rest of the stored wait";
  ASSERT_EQ(record.attempts.size(), 2u);
  EXPECT_EQ(record.attempts[0].at_ms, 1000);
  EXPECT_EQ(record.created_at_ms, 100);
  // The next attempt is the third of four, and the fourth the last.
  EXPECT_TRUE(
      decide_retry(record.attempts.size() + 1, failure(TransportError::kConnect), policy, 1).retry);
  EXPECT_FALSE(decide_retry(4, failure(TransportError::kConnect), policy, 1).retry);

  // A wait past its time is over; one longer than backoff_max_ms is cut to it.
  EXPECT_EQ(resume_delivery(record, stored, policy, 20000).delay_ms, 0u);
  stored.next_attempt_at_ms = 1'000'000;
  EXPECT_EQ(resume_delivery(record, stored, policy, 0).delay_ms, 5000u);

  // A spent budget (attempts_max lowered since) ends it failed, to be stored.
  stored.attempts.resize(4);
  resumed = resume_delivery(record, stored, policy, 0);
  EXPECT_EQ(resumed.action, ResumeAction::kGiveUp);
  EXPECT_EQ(record.state, "failed");
  EXPECT_EQ(record.next_attempt_at_ms, 0);

  // An ended delivery is not made again.
  for (const char* state : {"delivered", "failed"}) {
    stored.state = state;
    EXPECT_EQ(resume_delivery(record, stored, policy, 0).action, ResumeAction::kEnded) << state;
  }
}

}  // namespace
}  // namespace chat4all::connector
