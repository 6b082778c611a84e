// The router's channel dispatch core (nodes/router/channel_dispatcher.h),
// driven deterministically: connectors, results and time are inputs.
#include "nodes/router/channel_dispatcher.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

namespace chat4all::router {
namespace {

ChannelSpec channel(const std::string& name, std::uint32_t attempts_max = 3) {
  ChannelSpec spec;
  spec.name = name;
  spec.adapter = name;
  spec.tenant_id = "t";
  spec.attempts_max = attempts_max;
  spec.backoff_initial_ms = 100;
  spec.backoff_max_ms = 1000;
  spec.timeout_ms = 1000;
  return spec;
}

wire::ConnectorStatus status(const std::string& connector, std::uint32_t slots = 4,
                             const std::string& breaker = "closed") {
  wire::ConnectorStatus s;
  s.connector = connector;
  for (const char* name : {"whatsapp", "instagram"})
    s.channels.push_back(wire::ChannelCapacity{name, slots, breaker, true});
  return s;
}

RouteWork work(std::uint64_t index, std::uint64_t seq, std::vector<Target> targets,
               const std::string& conversation = "c1") {
  RouteWork w;
  w.partition = 3;
  w.event.index = index;
  w.event.type = "message.route";
  w.event.tenant_id = "t";
  w.event.conversation_id = conversation;
  w.event.seq = seq;
  w.event.message_id = "m" + std::to_string(seq) + conversation;
  w.event.sender_id = "alice";
  w.event.payload.type = "text";
  w.event.payload.text = "hello " + std::to_string(seq);
  w.targets = std::move(targets);
  return w;
}

Target to(const std::string& recipient, const std::string& channel, const std::string& address) {
  return Target{recipient, channel, address};
}

wire::DeliveryResult answer(const wire::DeliveryJob& job, const std::string& outcome) {
  wire::DeliveryResult r;
  r.job_id = job.job_id;
  r.outcome = outcome;
  if (outcome == "accepted") r.provider_message_id = "p-" + job.delivery_id;
  if (outcome == "retry") r.error = "503";
  return r;
}

// Acknowledges every record write of `out`; returns the states written.
std::vector<std::string> write_all(ChannelDispatcher& d, const DispatchOutput& out) {
  std::vector<std::string> states;
  for (const auto& write : out.records) {
    states.push_back(write.update.delivery.state);
    d.record_written(write.token);
  }
  return states;
}

class DispatcherTest : public ::testing::Test {
 protected:
  ChannelDispatcher d{{channel("whatsapp"), channel("instagram")}, DispatchLimits{}, 7};
};

TEST(ResolveTargetsTest, AllMeansEveryChannelOfTheTenantWithAnIdentity) {
  std::vector<ChannelSpec> channels{channel("whatsapp"), channel("instagram"), channel("telegram")};
  channels[2].tenant_id = "other";
  const std::vector<wire::Identity> identities{{"whatsapp", "+551199"}, {"telegram", "42"}};
  auto all = resolve_targets({}, channels, "t", "bob", identities);
  ASSERT_EQ(all.size(), 1u);  // telegram belongs to another tenant; no instagram identity
  EXPECT_EQ(all[0].channel, "whatsapp");
  EXPECT_EQ(all[0].address, "+551199");
  EXPECT_EQ(resolve_targets({"all"}, channels, "t", "bob", identities).size(), 1u);

  auto named = resolve_targets({"whatsapp", "instagram", "internal", "telegram"}, channels, "t",
                               "bob", identities);
  ASSERT_EQ(named.size(), 3u);  // internal is the stream's
  EXPECT_EQ(named[0].address, "+551199");
  EXPECT_EQ(named[1].channel, "instagram");
  EXPECT_EQ(named[1].address, "");  // reported, not skipped
  EXPECT_EQ(named[2].address, "");  // another tenant's channel reaches nobody here
}

TEST_F(DispatcherTest, MissingIdentityIsRecordedAndTheRestIsSentToALiveConnector) {
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511"), to("bob", "instagram", "")}), 0);
  auto out = d.take_output();
  EXPECT_TRUE(out.jobs.empty()) << "no connector has said it is there";
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].update.delivery.state, wire::kDeliveryNoIdentity);
  EXPECT_EQ(out.records[0].update.delivery.channel, "instagram");
  write_all(d, out);
  EXPECT_TRUE(d.take_output().acks.empty()) << "the whatsapp delivery is still open";

  d.connector_status(status("connector-1"), 10);
  out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 1u);
  const auto& [connector, job] = out.jobs[0];
  EXPECT_EQ(connector, "connector-1");
  EXPECT_EQ(job.delivery_id, "m1c1/bob/whatsapp");
  EXPECT_EQ(job.address, "+5511");
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(job.payload.text, "hello 1");

  d.result(answer(job, "accepted"), 50);
  out = d.take_output();
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].update.delivery.state, wire::kDeliverySent);
  EXPECT_EQ(out.records[0].update.delivery.provider_message_id, "p-m1c1/bob/whatsapp");
  ASSERT_EQ(out.records[0].update.attempt.size(), 1u);
  EXPECT_EQ(out.records[0].update.attempt[0].connector, "connector-1");
  EXPECT_TRUE(out.acks.empty()) << "acknowledged only once the final record is written";
  write_all(d, out);
  out = d.take_output();
  ASSERT_EQ(out.acks.size(), 1u);
  EXPECT_EQ(out.acks[0], std::make_pair(3u, std::uint64_t{1}));
  EXPECT_EQ(d.targets_held(), 0u);
}

TEST_F(DispatcherTest, ALaneSendsOneAtATimeInSeqOrder) {
  d.connector_status(status("connector-1", 16), 0);
  for (std::uint64_t seq = 1; seq <= 3; ++seq)
    d.add(work(seq, seq, {to("bob", "whatsapp", "+5511")}), 0);
  // Another recipient's lane runs beside it.
  d.add(work(4, 4, {to("carol", "whatsapp", "+5522")}), 0);
  auto out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 2u);
  EXPECT_EQ(out.jobs[0].second.seq, 1u);
  EXPECT_EQ(out.jobs[1].second.recipient_id, "carol");
  std::vector<std::uint64_t> bob_seqs{out.jobs[0].second.seq};
  wire::DeliveryJob head = out.jobs[0].second;
  for (int i = 0; i < 2; ++i) {
    d.result(answer(head, "accepted"), 10 + i);
    out = d.take_output();
    ASSERT_EQ(out.jobs.size(), 1u);
    head = out.jobs[0].second;
    bob_seqs.push_back(head.seq);
  }
  EXPECT_EQ(bob_seqs, (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST_F(DispatcherTest, RetriesWithBackoffThenDeadLettersAndTheLaneMovesOn) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  d.add(work(2, 2, {to("bob", "whatsapp", "+5511")}), 0);
  auto job = d.take_output().jobs.at(0).second;
  std::int64_t now = 0;
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    EXPECT_EQ(job.attempt, attempt);
    EXPECT_EQ(job.seq, 1u) << "the second message waits behind the failing head";
    d.result(answer(job, "retry"), now);
    auto out = d.take_output();
    ASSERT_EQ(out.records.size(), 1u);
    const auto& record = out.records[0].update.delivery;
    if (attempt < 3) {
      EXPECT_EQ(record.state, wire::kDeliveryRetrying);
      EXPECT_GE(record.next_attempt_at_ms, now);
      EXPECT_LE(record.next_attempt_at_ms, now + 100 * (1 << (attempt - 1)));
      EXPECT_TRUE(out.jobs.empty());
      now = record.next_attempt_at_ms;
      d.tick(now);
      out = d.take_output();
      ASSERT_EQ(out.jobs.size(), 1u);
      job = out.jobs[0].second;
    } else {
      EXPECT_EQ(record.state, wire::kDeliveryFailed);
      EXPECT_NE(record.error.find("gave up after 3 attempts"), std::string::npos);
      ASSERT_EQ(out.jobs.size(), 1u);
      EXPECT_EQ(out.jobs[0].second.seq, 2u);
    }
  }
  EXPECT_EQ(d.counters().dead_lettered, 1u);
}

TEST_F(DispatcherTest, RejectedIsDeadLetteredAtOnce) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "bad")}), 0);
  auto job = d.take_output().jobs.at(0).second;
  auto r = answer(job, "rejected");
  r.status_code = 400;
  r.error = "invalid recipient";
  d.result(r, 5);
  auto out = d.take_output();
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].update.delivery.state, wire::kDeliveryFailed);
  EXPECT_EQ(out.records[0].update.attempt.at(0).status_code, 400);
}

TEST_F(DispatcherTest, BusyCountsNoAttempt) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  auto job = d.take_output().jobs.at(0).second;
  d.result(answer(job, "busy"), 0);
  EXPECT_TRUE(d.take_output().records.empty());
  d.tick(DispatchLimits{}.busy_wait_ms);
  auto out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 1u);
  EXPECT_EQ(out.jobs[0].second.attempt, 1u);
}

TEST_F(DispatcherTest, AJobOfASilentConnectorGoesToAnotherOne) {
  d.connector_status(status("connector-1", 8), 0);
  d.connector_status(status("connector-2", 4), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  auto out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 1u);
  EXPECT_EQ(out.jobs[0].first, "connector-1") << "most free slots";
  const auto first = out.jobs[0].second;
  // connector-2 keeps reporting, connector-1 dies.
  std::int64_t now = 0;
  while (now <= DispatchLimits{}.connector_silence_ms) {
    now += 500;
    d.connector_status(status("connector-2", 4), now);
    d.tick(now);
  }
  out = d.take_output();
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_EQ(out.records[0].update.attempt.at(0).outcome, "lost");
  now += 2000;  // past any backoff
  d.connector_status(status("connector-2", 4), now);
  d.tick(now);
  out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 1u);
  EXPECT_EQ(out.jobs[0].first, "connector-2");
  EXPECT_EQ(out.jobs[0].second.delivery_id, first.delivery_id);
  EXPECT_EQ(out.jobs[0].second.attempt, 2u);
  // The dead connector's late answer changes nothing.
  d.result(answer(first, "accepted"), now);
  EXPECT_EQ(d.counters().stale_results, 1u);
}

TEST_F(DispatcherTest, NoAnswerWithinTheLeaseIsLost) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  d.take_output();
  const std::int64_t lease = 1000 + DispatchLimits{}.lease_margin_ms;
  for (std::int64_t now = 500; now <= lease; now += 500) {
    d.connector_status(status("connector-1"), now);
    d.tick(now);
  }
  EXPECT_EQ(d.counters().lost, 1u);
}

TEST_F(DispatcherTest, AnOpenBreakerTakesNothingAndHalfOpenOneAtATime) {
  d.connector_status(status("connector-1", 8, "open"), 0);
  for (std::uint64_t i = 1; i <= 3; ++i)
    d.add(work(i, 1, {to("bob", "whatsapp", "+5511")}, "c" + std::to_string(i)), 0);
  EXPECT_TRUE(d.take_output().jobs.empty());
  d.connector_status(status("connector-1", 8, "half_open"), 10);
  auto out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 1u) << "one probe";
  d.result(answer(out.jobs[0].second, "accepted"), 20);
  d.connector_status(status("connector-1", 8, "closed"), 20);
  EXPECT_EQ(d.take_output().jobs.size(), 2u);
}

TEST_F(DispatcherTest, AcksWaitForTheLowestOpenIndex) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  d.add(work(2, 1, {to("bob", "whatsapp", "+5511")}, "c2"), 0);
  d.add(work(3, 1, {}, "c3"), 0);  // nothing to deliver
  auto out = d.take_output();
  ASSERT_EQ(out.jobs.size(), 2u);
  EXPECT_TRUE(out.acks.empty());
  d.result(answer(out.jobs[1].second, "accepted"), 1);
  write_all(d, d.take_output());
  EXPECT_TRUE(d.take_output().acks.empty()) << "index 1 is still open";
  d.result(answer(out.jobs[0].second, "accepted"), 2);
  write_all(d, d.take_output());
  out = d.take_output();
  ASSERT_EQ(out.acks.size(), 1u);
  EXPECT_EQ(out.acks[0].second, 3u);
  EXPECT_EQ(d.cursor(3), 3u);
}

TEST_F(DispatcherTest, AFailedRecordWriteIsWrittenAgainBeforeTheAck) {
  d.connector_status(status("connector-1"), 0);
  d.add(work(1, 1, {to("bob", "whatsapp", "+5511")}), 0);
  d.result(answer(d.take_output().jobs.at(0).second, "accepted"), 1);
  auto out = d.take_output();
  ASSERT_EQ(out.records.size(), 1u);
  d.retry_record(out.records[0]);
  out = d.take_output();
  ASSERT_EQ(out.records.size(), 1u);
  EXPECT_TRUE(out.acks.empty());
  write_all(d, out);
  EXPECT_EQ(d.take_output().acks.size(), 1u);
}

TEST_F(DispatcherTest, ATargetAlreadyDoneIsSkipped) {
  d.connector_status(status("connector-1"), 0);
  Target done = to("bob", "whatsapp", "+5511");
  done.done = true;
  d.add(work(1, 1, {done}), 0);
  auto out = d.take_output();
  EXPECT_TRUE(out.jobs.empty());
  ASSERT_EQ(out.acks.size(), 1u);
}

TEST(DispatcherLimitsTest, StopsAcceptingAtTheBound) {
  DispatchLimits limits;
  limits.targets_max = 2;
  ChannelDispatcher d({channel("whatsapp")}, limits, 1);
  d.add(work(1, 1, {to("bob", "whatsapp", "+1")}), 0);
  EXPECT_TRUE(d.accepting());
  d.add(work(2, 2, {to("bob", "whatsapp", "+1")}), 0);
  EXPECT_FALSE(d.accepting());
}

// Seeded simulation: connectors that die and come back, platforms that fail,
// answers that are lost or late, record writes that fail. Whatever happens:
// per lane at most one job in flight and accepted deliveries in seq order;
// with the platform healthy at the end, every delivery ends, and the outbox
// is acknowledged up to the last index.
TEST(DispatcherSimulationTest, OrderAndCompletenessUnderFaults) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    ChannelDispatcher d({channel("whatsapp", 1000), channel("instagram", 1000)}, DispatchLimits{},
                        seed);
    const std::vector<std::string> connectors{"connector-1", "connector-2", "connector-3"};
    std::map<std::string, bool> alive{
        {"connector-1", true}, {"connector-2", true}, {"connector-3", false}};
    std::map<std::string, std::pair<std::string, wire::DeliveryJob>> pending;  // job id ->
    std::map<std::string, std::uint64_t> last_accepted_seq;                    // lane -> seq
    std::set<std::string> ended;
    std::uint64_t index = 0, expected_targets = 0;
    std::uint64_t acked = 0;
    std::int64_t now = 0;
    auto lane_of = [](const wire::DeliveryJob& job) {
      return job.conversation_id + "|" + job.recipient_id + "|" + job.channel;
    };
    auto drain = [&](bool healthy) {
      auto out = d.take_output();
      for (auto& [connector, job] : out.jobs) {
        for (const auto& [id, p] : pending)
          ASSERT_NE(lane_of(p.second), lane_of(job)) << "two jobs in flight in one lane";
        pending[job.job_id] = {connector, job};
      }
      for (auto& write : out.records) {
        if (!healthy && rng() % 10 == 0) {
          d.retry_record(write);
          continue;
        }
        const auto& r = write.update.delivery;
        if (r.state == wire::kDeliverySent || r.state == wire::kDeliveryFailed ||
            r.state == wire::kDeliveryNoIdentity)
          ended.insert(r.message_id + "/" + r.recipient_id + "/" + r.channel);
        d.record_written(write.token);
      }
      for (auto& [partition, up_to] : out.acks) {
        ASSERT_GT(up_to, acked);
        acked = up_to;
      }
    };
    for (int step = 0; step < 3000; ++step) {
      const bool healthy = step >= 2000;
      now += 50;
      if (!healthy && rng() % 200 == 0) {
        const auto& victim = connectors[rng() % connectors.size()];
        alive[victim] = !alive[victim];
      }
      if (healthy) alive["connector-1"] = true;
      for (const auto& name : connectors)
        if (alive[name]) d.connector_status(status(name, 1 + rng() % 4), now);
      if (step < 1500 && d.accepting() && rng() % 3 == 0) {
        ++index;
        const std::string conversation = "c" + std::to_string(rng() % 4);
        std::vector<Target> targets;
        for (const char* recipient : {"bob", "carol"})
          for (const char* ch : {"whatsapp", "instagram"}) {
            const bool has_identity = rng() % 8 != 0;
            targets.push_back(to(recipient, ch, has_identity ? std::string("+") + recipient : ""));
            ++expected_targets;
          }
        d.add(work(index, index, std::move(targets), conversation), now);
      }
      // Answer some pending jobs.
      std::vector<std::string> ids;
      for (const auto& [id, p] : pending) ids.push_back(id);
      for (const auto& id : ids) {
        auto [connector, job] = pending[id];
        if (!alive[connector]) {
          pending.erase(id);  // died with it: no answer ever
          continue;
        }
        if (rng() % 3 != 0) continue;  // not yet
        pending.erase(id);
        const auto roll = rng() % 10;
        std::string outcome = healthy || roll < 6 ? "accepted"
                              : roll < 8          ? "retry"
                              : roll < 9          ? "busy"
                                                  : "";
        if (outcome.empty()) continue;  // the answer is lost
        if (outcome == "accepted") {
          auto& last = last_accepted_seq[lane_of(job)];
          EXPECT_GT(job.seq, last) << "lane " << lane_of(job) << " out of order, seed " << seed;
          last = job.seq;
        }
        d.result(answer(job, outcome), now);
      }
      d.tick(now);
      drain(healthy);
    }
    EXPECT_EQ(ended.size(), expected_targets) << "seed " << seed;
    EXPECT_EQ(acked, index) << "seed " << seed;
    EXPECT_EQ(d.targets_held(), 0u) << "seed " << seed;
    EXPECT_EQ(d.jobs_in_flight(), 0u) << "seed " << seed;
  }
}

}  // namespace
}  // namespace chat4all::router
