// The router's failover core (nodes/router/request_failover.h) with scripted time: the test
// plays the shell, deciding which sends the sockets take and when replies and time come.
#include "nodes/router/request_failover.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chat4all::router {
namespace {

using namespace std::chrono_literals;
using Kind = FailoverAction::Kind;
using Time = RequestFailover::Time;

const std::vector<std::string> kNodes = {"storage-1", "storage-2", "storage-3"};
constexpr PartitionId kPartition = 5;
const Time kStart = Time{} + 1000s;

class RequestFailoverTest : public ::testing::Test {
 protected:
  RequestFailoverTest()
      : ring_(kNodes, 16, 3),
        failover_(ring_, kNodes, 1500ms, 7),
        replicas_(ring_.replicas(kPartition)) {}

  // The actions of one call, with every send taken or refused as `taken` says.
  RequestFailover::Actions carry_out(RequestFailover::Actions actions, Time now,
                                     const std::function<bool(const std::string&)>& taken) {
    RequestFailover::Actions all;
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const FailoverAction action = actions[i];
      all.push_back(action);
      if (action.kind == Kind::kSend)
        failover_.sent(action.token, action.node, taken(action.node), now, actions);
    }
    return all;
  }
  RequestFailover::Actions start(std::uint64_t token, Time now,
                                 const std::function<bool(const std::string&)>& taken) {
    RequestFailover::Actions actions;
    failover_.start(token, kPartition, now, actions);
    return carry_out(std::move(actions), now, taken);
  }
  RequestFailover::Actions reply(std::uint64_t token, const std::string& from,
                                 const wire::ErrorReply& error, Time now, bool* pass_on = nullptr) {
    RequestFailover::Actions actions;
    const bool over = failover_.on_reply(token, from, &error, now, actions);
    if (pass_on) *pass_on = over;
    return carry_out(std::move(actions), now, [](const std::string&) { return true; });
  }
  RequestFailover::Actions expire(
      Time now, const std::function<bool(const std::string&)>& taken = [](const std::string&) {
        return true;
      }) {
    RequestFailover::Actions actions;
    failover_.expire(now, actions);
    return carry_out(std::move(actions), now, taken);
  }
  static std::vector<std::string> sends(const RequestFailover::Actions& actions) {
    std::vector<std::string> nodes;
    for (const auto& action : actions)
      if (action.kind == Kind::kSend) nodes.push_back(action.node);
    return nodes;
  }
  static bool has(const RequestFailover::Actions& actions, Kind kind) {
    for (const auto& action : actions)
      if (action.kind == kind) return true;
    return false;
  }
  static const std::function<bool(const std::string&)> kTaken;

  const Ring ring_;
  RequestFailover failover_;
  const std::vector<std::string> replicas_;
};

const std::function<bool(const std::string&)> RequestFailoverTest::kTaken = [](const std::string&) {
  return true;
};

TEST_F(RequestFailoverTest, TheFirstAttemptGoesToTheCachedLeaderAndItsAnswerEndsTheRequest) {
  auto actions = start(1, kStart, kTaken);
  EXPECT_EQ(sends(actions), std::vector<std::string>{replicas_[0]});
  EXPECT_FALSE(actions[0].retry);
  EXPECT_TRUE(has(actions, Kind::kForwarded));
  EXPECT_TRUE(failover_.awaits(1, replicas_[0]));
  EXPECT_FALSE(failover_.awaits(1, replicas_[1]));
  RequestFailover::Actions none;
  EXPECT_TRUE(failover_.on_reply(1, replicas_[0], nullptr, kStart + 5ms, none));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(failover_.size(), 0u);
  // Nothing is due later for it.
  EXPECT_TRUE(expire(kStart + 10s).empty());
}

TEST_F(RequestFailoverTest, AHintOfTheCurrentEpochIsFollowedAtOnceAndRemembered) {
  start(1, kStart, kTaken);
  const wire::ErrorReply not_owner{wire::Status::kNotOwner, "", replicas_[2], kPartition, 3};
  bool pass_on = true;
  auto actions = reply(1, replicas_[0], not_owner, kStart + 2ms, &pass_on);
  EXPECT_FALSE(pass_on);
  ASSERT_TRUE(has(actions, Kind::kLeaderChanged));
  EXPECT_EQ(actions[0].node, replicas_[2]);
  EXPECT_EQ(actions[0].epoch, 3u);
  EXPECT_EQ(actions[0].previous_epoch, 0u);
  EXPECT_STREQ(actions[0].reason, "hint");
  EXPECT_EQ(sends(actions), std::vector<std::string>{replicas_[2]});
  EXPECT_FALSE(has(actions, Kind::kForwarded));  // counted once per request
  // The next request goes straight there.
  EXPECT_EQ(sends(start(2, kStart + 3ms, kTaken)), std::vector<std::string>{replicas_[2]});
}

TEST_F(RequestFailoverTest, AStaleHintOrOneNamingTheSenderIsNoHint) {
  start(1, kStart, kTaken);
  reply(1, replicas_[0], {wire::Status::kNotOwner, "", replicas_[1], kPartition, 5}, kStart);
  // replicas_[1] is the leader of epoch 5 now; a hint of epoch 4 is older.
  auto stale = reply(1, replicas_[1], {wire::Status::kNotOwner, "", replicas_[2], kPartition, 4},
                     kStart + 1ms);
  EXPECT_TRUE(sends(stale).empty());  // a retry after a backoff, not a send now
  // The backoff's jitter is over the upper half of 20 ms.
  EXPECT_TRUE(sends(expire(kStart + 1ms + 9ms)).empty());
  auto retried = expire(kStart + 1ms + 20ms);
  ASSERT_EQ(sends(retried).size(), 1u);
  EXPECT_EQ(sends(retried)[0], replicas_[2]);  // the next replica after the sender
  EXPECT_TRUE(retried[0].retry);
}

TEST_F(RequestFailoverTest, AnUnreachableLeaderIsAvoidedByLaterRequests) {
  auto refused = [&](const std::string& node) { return node != replicas_[0]; };
  auto actions = start(1, kStart, refused);
  EXPECT_EQ(sends(actions), std::vector<std::string>{replicas_[0]});
  ASSERT_TRUE(has(actions, Kind::kLeaderChanged));
  EXPECT_STREQ(actions[1].reason, "unreachable");
  EXPECT_FALSE(has(actions, Kind::kForwarded));
  // The retry after the backoff goes to the next replica...
  EXPECT_EQ(sends(expire(kStart + 20ms, refused)), std::vector<std::string>{replicas_[1]});
  // ... and a new request starts there.
  EXPECT_EQ(sends(start(2, kStart + 21ms, refused)), std::vector<std::string>{replicas_[1]});
}

TEST_F(RequestFailoverTest, ASilentNodeIsLeftAfterTheAttemptTimeoutAndItsHintIgnored) {
  EXPECT_EQ(failover_.attempt_timeout(), 375ms);  // a quarter of 1500 ms
  start(1, kStart, kTaken);
  EXPECT_TRUE(expire(kStart + 374ms).empty());
  auto silent = expire(kStart + 375ms);
  ASSERT_TRUE(has(silent, Kind::kLeaderChanged));
  EXPECT_STREQ(silent[0].reason, "silent");
  EXPECT_FALSE(failover_.awaits(1, replicas_[0]));
  auto retried = expire(kStart + 375ms + 20ms);
  EXPECT_EQ(sends(retried), std::vector<std::string>{replicas_[1]});
  // replicas_[1] points back at the silent node: no hint.
  auto back = reply(1, replicas_[1], {wire::Status::kNotOwner, "", replicas_[0], kPartition, 0},
                    kStart + 400ms);
  EXPECT_TRUE(sends(back).empty());
  EXPECT_EQ(sends(expire(kStart + 400ms + 40ms)), std::vector<std::string>{replicas_[2]});
}

TEST_F(RequestFailoverTest, UnavailableEverywhereIsGivenUpAfterTheAttemptsWithTheLastReason) {
  Time now = kStart;
  auto actions = start(1, now, kTaken);
  int sent = 1;
  for (;;) {
    const std::string at = sends(actions).empty() ? "" : sends(actions).back();
    ASSERT_FALSE(at.empty());
    actions = reply(1, at, {wire::Status::kUnavailable, "no leader", "", kPartition, 0}, now);
    if (has(actions, Kind::kGiveUp)) break;
    now += kRetryBackoffMax;  // every backoff is over by then
    actions = expire(now);
    if (has(actions, Kind::kGiveUp)) break;
    ++sent;
  }
  EXPECT_EQ(sent, kAttemptsMax);
  const auto& give_up = actions.back();
  EXPECT_EQ(give_up.kind, Kind::kGiveUp);
  EXPECT_EQ(give_up.partition, kPartition);
  EXPECT_NE(give_up.detail.find("after 8 attempts"), std::string::npos) << give_up.detail;
  EXPECT_NE(give_up.detail.find("answered unavailable"), std::string::npos) << give_up.detail;
  EXPECT_EQ(failover_.size(), 0u);
  // The deadline of a request already given up passes silently.
  EXPECT_TRUE(expire(kStart + 2s).empty());
}

TEST_F(RequestFailoverTest, BackoffsDoubleUpToTheMaximum) {
  start(1, kStart, kTaken);
  Time now = kStart;
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 5; ++i) {
    const std::string at = replicas_[static_cast<std::size_t>(i) % 3];
    reply(1, at, {wire::Status::kUnavailable, "", "", kPartition, 0}, now);
    // The earliest time the retry comes out.
    Time due = now;
    while (sends(expire(due)).empty()) due += 1ms;
    waits.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(due - now));
    now = due;
  }
  const std::vector<std::chrono::milliseconds> upper = {20ms, 40ms, 80ms, 160ms, 200ms};
  for (std::size_t i = 0; i < waits.size(); ++i) {
    EXPECT_GE(waits[i], upper[i] / 2) << i;
    EXPECT_LE(waits[i], upper[i]) << i;
  }
}

TEST_F(RequestFailoverTest, TheDeadlineWinsOverARetryDueAtTheSameTime) {
  start(1, kStart, kTaken);
  reply(1, replicas_[0], {wire::Status::kUnavailable, "", "", kPartition, 0}, kStart + 1490ms);
  auto actions = expire(kStart + 1500ms);
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].kind, Kind::kTimeout);
  EXPECT_EQ(failover_.size(), 0u);
}

TEST_F(RequestFailoverTest, WaitTimeIsTheNextThingDueAtMostTheCap) {
  EXPECT_EQ(failover_.wait_time(kStart, 100ms), 100ms);
  start(1, kStart, kTaken);
  // The attempt timeout (375 ms) is further than the cap.
  EXPECT_EQ(failover_.wait_time(kStart, 100ms), 100ms);
  EXPECT_EQ(failover_.wait_time(kStart + 300ms, 100ms), 76ms);
  reply(1, replicas_[0], {wire::Status::kUnavailable, "", "", kPartition, 0}, kStart + 300ms);
  EXPECT_LE(failover_.wait_time(kStart + 300ms, 100ms), 21ms);
}

TEST_F(RequestFailoverTest, ARefusalThatIsAnAnswerIsPassedOn) {
  start(1, kStart, kTaken);
  bool pass_on = false;
  auto actions =
      reply(1, replicas_[0], {wire::Status::kNotFound, "no such conversation"}, kStart, &pass_on);
  EXPECT_TRUE(pass_on);
  EXPECT_TRUE(actions.empty());
  EXPECT_EQ(failover_.size(), 0u);
}

}  // namespace
}  // namespace chat4all::router
