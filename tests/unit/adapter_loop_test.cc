// The adapter side of the channel host (nodes/connector/adapter_loop.h): connecting until it
// works, polling while the adapter polls, and storing each polled batch (again when it fails)
// before the next poll.
#include "nodes/connector/adapter_loop.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>

namespace chat4all::connector {
namespace {

using namespace std::chrono_literals;

// Fails its first `connect_failures` connects, then hands out `polls` one event each (the poll
// after the last returns false: polling ends).
class Poller final : public ChannelAdapter {
 public:
  Poller(int connect_failures, int polls) : connect_failures_(connect_failures), polls_(polls) {}
  void connect() override {
    std::lock_guard lock(mutex_);
    ++connects_;
    if (connects_ <= connect_failures_) throw std::runtime_error("platform down");
  }
  SendResult send_message(const OutboundMessage&) override { return {}; }
  SendResult send_file(const OutboundMessage&) override { return {}; }
  WebhookResponse on_webhook(const WebhookRequest&, std::vector<InboundEvent>&) override {
    return {};
  }
  bool poll_updates(std::vector<InboundEvent>& events) override {
    std::lock_guard lock(mutex_);
    if (polled_ >= polls_) return false;
    InboundEvent event;
    event.provider_message_id = "u" + std::to_string(++polled_);
    events.push_back(event);
    return true;
  }
  int connects() {
    std::lock_guard lock(mutex_);
    return connects_;
  }

 private:
  std::mutex mutex_;
  const int connect_failures_;
  const int polls_;
  int connects_ = 0;
  int polled_ = 0;
};

ChannelSpec spec() {
  ChannelSpec channel;
  channel.name =
      std::string("loop-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  return channel;
}

// What the loops asked to store, answered from a script (true when it runs out).
struct Store {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> batches;  // the first event's id of each attempt
  std::deque<bool> verdicts;
  int status_changes = 0;

  bool wait_batches(std::size_t count) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, 5s, [&] { return batches.size() >= count; });
  }
};

class AdapterLoopTest : public ::testing::Test {
 protected:
  void run(HostedChannel& channel, AdapterLoopOptions options) {
    loops_ = std::make_unique<AdapterLoops>(
        std::vector<HostedChannel*>{&channel}, options, stop_,
        [this](HostedChannel&, std::vector<InboundEvent> events, std::function<void(bool)> done) {
          bool verdict = true;
          {
            std::lock_guard lock(store_.mutex);
            store_.batches.push_back(events.front().provider_message_id);
            if (!store_.verdicts.empty()) {
              verdict = store_.verdicts.front();
              store_.verdicts.pop_front();
            }
            store_.changed.notify_all();
          }
          done(verdict);
        },
        [this] {
          std::lock_guard lock(store_.mutex);
          ++store_.status_changes;
          store_.changed.notify_all();
        });
    loops_->start();
  }
  void TearDown() override {
    stop_.stop();
    if (loops_) loops_->join();
  }

  StopSignal stop_;
  Store store_;
  std::unique_ptr<AdapterLoops> loops_;
};

TEST_F(AdapterLoopTest, ConnectsAgainUntilItWorksThenReportsIt) {
  auto adapter = std::make_unique<Poller>(2, 0);
  Poller& poller = *adapter;
  HostedChannel channel(spec(), std::move(adapter));
  run(channel, {1, 1, 5});
  std::unique_lock lock(store_.mutex);
  ASSERT_TRUE(store_.changed.wait_for(lock, 5s, [&] { return store_.status_changes == 1; }));
  EXPECT_TRUE(channel.connected.load());
  EXPECT_EQ(poller.connects(), 3);
}

TEST_F(AdapterLoopTest, EachPolledBatchIsStoredBeforeTheNextPollAndRetriedWhenItFails) {
  HostedChannel channel(spec(), std::make_unique<Poller>(0, 2));
  {
    std::lock_guard lock(store_.mutex);
    store_.verdicts = {false, false, true, true};
  }
  run(channel, {1, 1, 5});
  ASSERT_TRUE(store_.wait_batches(4));
  std::lock_guard lock(store_.mutex);
  EXPECT_EQ(store_.batches, (std::vector<std::string>{"u1", "u1", "u1", "u2"}));
}

TEST_F(AdapterLoopTest, ABatchThatKeepsFailingIsGivenUpAfterItsRetries) {
  HostedChannel channel(spec(), std::make_unique<Poller>(0, 2));
  {
    std::lock_guard lock(store_.mutex);
    store_.verdicts = {false, false, false};
  }
  run(channel, {1, 1, 3});
  ASSERT_TRUE(store_.wait_batches(4));
  std::lock_guard lock(store_.mutex);
  EXPECT_EQ(store_.batches, (std::vector<std::string>{"u1", "u1", "u1", "u2"}));
}

TEST_F(AdapterLoopTest, StopEndsAWaitForAStoreThatNeverAnswers) {
  HostedChannel channel(spec(), std::make_unique<Poller>(0, 1));
  loops_ = std::make_unique<AdapterLoops>(
      std::vector<HostedChannel*>{&channel}, AdapterLoopOptions{1, 1, 3}, stop_,
      [this](HostedChannel&, std::vector<InboundEvent>, std::function<void(bool)>) {
        std::lock_guard lock(store_.mutex);
        store_.batches.push_back("held");
        store_.changed.notify_all();
      },
      [] {});
  loops_->start();
  ASSERT_TRUE(store_.wait_batches(1));
  stop_.stop();
  loops_->join();  // returns: the test would time out otherwise
  loops_.reset();
}

}  // namespace
}  // namespace chat4all::connector
