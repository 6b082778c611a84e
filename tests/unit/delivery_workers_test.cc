// The delivery side's decisions (nodes/connector/delivery_workers.h): slots, the breaker and the
// results, at times the test gives. No thread runs.
#include "nodes/connector/delivery_workers.h"

#include <gtest/gtest.h>

namespace chat4all::connector {
namespace {

class Idle final : public ChannelAdapter {
 public:
  void connect() override {}
  SendResult send_message(const OutboundMessage&) override { return {}; }
  SendResult send_file(const OutboundMessage&) override { return {}; }
  WebhookResponse on_webhook(const WebhookRequest&, std::vector<InboundEvent>&) override {
    return {};
  }
};

ChannelSpec spec(std::uint32_t concurrency) {
  ChannelSpec channel;
  channel.name =
      std::string("workers-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  channel.concurrency = concurrency;
  channel.breaker_failures = 2;
  channel.breaker_open_ms = 1000;
  return channel;
}

DeliveryWork work(const std::string& job_id) {
  DeliveryWork work;
  work.job.job_id = job_id;
  return work;
}

SendResult outcome(SendResult::Outcome kind) {
  SendResult sent;
  sent.outcome = kind;
  return sent;
}

TEST(DeliveryWorkersTest, JobsTakeSlotsUntilNoneIsFree) {
  HostedChannel channel(spec(2), std::make_unique<Idle>());
  bool changed = true;
  auto first = work("j1");
  auto second = work("j2");
  auto third = work("j3");
  EXPECT_EQ(admit(channel, first, 0, changed), std::nullopt);
  EXPECT_FALSE(changed);
  EXPECT_EQ(admit(channel, second, 0, changed), std::nullopt);
  EXPECT_EQ(admit(channel, third, 0, changed), "no free slot");
  EXPECT_EQ(channel.busy, 2u);
  ASSERT_EQ(channel.work.size(), 2u);
  EXPECT_EQ(channel.work.front().job.job_id, "j1");
  // A send that ends frees its slot.
  EXPECT_FALSE(settle(channel, outcome(SendResult::Outcome::kAccepted), true, 10));
  EXPECT_EQ(admit(channel, third, 10, changed), std::nullopt);
}

TEST(DeliveryWorkersTest, ZeroConcurrencyIsOneSlot) {
  HostedChannel channel(spec(0), std::make_unique<Idle>());
  bool changed = false;
  auto first = work("j1");
  auto second = work("j2");
  EXPECT_EQ(admit(channel, first, 0, changed), std::nullopt);
  EXPECT_EQ(admit(channel, second, 0, changed), "no free slot");
}

TEST(DeliveryWorkersTest, FailuresOpenTheBreakerAndItsProbeChangesItsState) {
  HostedChannel channel(spec(4), std::make_unique<Idle>());
  bool changed = false;
  for (int i = 0; i < 2; ++i) {
    auto job = work("j" + std::to_string(i));
    ASSERT_EQ(admit(channel, job, 100, changed), std::nullopt);
  }
  EXPECT_FALSE(settle(channel, outcome(SendResult::Outcome::kRetry), true, 100));
  EXPECT_TRUE(settle(channel, outcome(SendResult::Outcome::kRetry), true, 100));  // opens
  auto refused = work("j3");
  EXPECT_EQ(admit(channel, refused, 500, changed), "circuit breaker open");
  EXPECT_FALSE(changed);
  // At the probe time one job goes through as the probe, and only one.
  EXPECT_EQ(admit(channel, refused, 1100, changed), std::nullopt);
  auto second_probe = work("j4");
  EXPECT_EQ(admit(channel, second_probe, 1100, changed), "circuit breaker open");
  // The probe succeeds: closed again.
  EXPECT_TRUE(settle(channel, outcome(SendResult::Outcome::kAccepted), true, 1200));
  EXPECT_EQ(admit(channel, second_probe, 1200, changed), std::nullopt);
}

TEST(DeliveryWorkersTest, ASendWithoutAVerdictTeachesTheBreakerNothing) {
  HostedChannel channel(spec(4), std::make_unique<Idle>());
  bool changed = false;
  for (int i = 0; i < 3; ++i) {
    auto job = work("j" + std::to_string(i));
    ASSERT_EQ(admit(channel, job, 0, changed), std::nullopt);
    settle(channel, outcome(SendResult::Outcome::kRetry), false, 0);
  }
  EXPECT_EQ(channel.busy, 0u);
  EXPECT_EQ(channel.breaker.consecutive_failures(), 0u);
}

TEST(DeliveryWorkersTest, ResultsCarryWhatTheRouterNeedsForEachOutcome) {
  SendResult accepted = outcome(SendResult::Outcome::kAccepted);
  accepted.provider_message_id = "wamid.1";
  accepted.delivered = true;
  accepted.status_code = 200;
  accepted.error = "ignored";
  auto result = result_of("j1", accepted, 12);
  EXPECT_EQ(result.job_id, "j1");
  EXPECT_EQ(result.outcome, "accepted");
  EXPECT_EQ(result.provider_message_id, "wamid.1");
  EXPECT_TRUE(result.delivered);
  EXPECT_EQ(result.status_code, 200);
  EXPECT_EQ(result.duration_ms, 12u);
  EXPECT_EQ(result.error, "");

  SendResult retry = outcome(SendResult::Outcome::kRetry);
  retry.error = "429";
  retry.retry_after_ms = 700;
  result = result_of("j2", retry, 1);
  EXPECT_EQ(result.outcome, "retry");
  EXPECT_EQ(result.error, "429");
  EXPECT_EQ(result.retry_after_ms, 700u);

  SendResult rejected = outcome(SendResult::Outcome::kRejected);
  rejected.error = "bad recipient";
  rejected.retry_after_ms = 5;
  result = result_of("j3", rejected, 1);
  EXPECT_EQ(result.outcome, "rejected");
  EXPECT_EQ(result.error, "bad recipient");
  EXPECT_EQ(result.retry_after_ms, 0u);
}

}  // namespace
}  // namespace chat4all::connector
