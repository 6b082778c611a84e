// The channel host's link to the routers (nodes/connector/router_link.h) against a fake router:
// jobs reach the handler, results and statuses reach the router, and the outbox is bounded.
#include "nodes/connector/router_link.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "tests/unit/fake_router.h"

namespace chat4all::connector {
namespace {

using namespace std::chrono_literals;
using test_support::FakeRouter;

struct Jobs {
  std::mutex mutex;
  std::condition_variable arrived;
  std::vector<std::pair<std::size_t, wire::DeliveryJob>> received;
  wire::Header last_header;
};

class RouterLinkTest : public ::testing::Test {
 protected:
  std::unique_ptr<RouterLink> make_link(RouterLinkOptions options = {100, 10'000}) {
    return std::make_unique<RouterLink>(
        "connector-7",
        std::vector<std::string>{"tcp://127.0.0.1:" + std::to_string(router_.port())}, options,
        [this](std::size_t router, const wire::Header& header, wire::DeliveryJob job) {
          std::lock_guard lock(jobs_.mutex);
          jobs_.received.emplace_back(router, std::move(job));
          jobs_.last_header = header;
          jobs_.arrived.notify_all();
        },
        [this] {
          return std::vector<wire::ChannelCapacity>{{"wa", 3, "closed", connected_.load()}};
        });
  }

  FakeRouter router_;
  Jobs jobs_;
  std::atomic<bool> connected_{false};
};

TEST_F(RouterLinkTest, StatusesNameTheConnectorAndFollowAChange) {
  auto link = make_link({60'000, 10});  // only the first status comes by the clock
  link->start();
  // Statuses sent before the DEALER is connected are dropped (nothing queues for a router that
  // is down): ask again until one arrives.
  std::optional<wire::ConnectorStatus> first;
  for (int attempt = 0; attempt < 30 && !first; ++attempt) {
    link->status_changed();
    first = router_.receive<wire::ConnectorStatus>(wire::MessageType::kConnectorStatus, 100ms);
  }
  ASSERT_TRUE(first);
  EXPECT_EQ(router_.peer(), "connector-7");
  EXPECT_EQ(first->connector, "connector-7");
  ASSERT_EQ(first->channels.size(), 1u);
  EXPECT_EQ(first->channels[0].slots, 3u);
  EXPECT_FALSE(first->channels[0].connected);
  connected_ = true;
  link->status_changed();
  // Statuses asked for above may still be on their way; with no periodic status during the
  // test, only the one this change asked for can say "connected".
  EXPECT_TRUE(router_.status_where(
      [](const wire::ConnectorStatus& status) { return status.channels[0].connected; }));
}

TEST_F(RouterLinkTest, JobsReachTheHandlerAndResultsGoBackAnsweringThem) {
  auto link = make_link();
  link->start();
  ASSERT_TRUE(router_.receive<wire::ConnectorStatus>(wire::MessageType::kConnectorStatus));
  wire::DeliveryJob job;
  job.job_id = "j1";
  job.channel = "wa";
  router_.send_job(job);
  wire::Header header;
  {
    std::unique_lock lock(jobs_.mutex);
    ASSERT_TRUE(jobs_.arrived.wait_for(lock, 3s, [&] { return !jobs_.received.empty(); }));
    header = jobs_.last_header;
    ASSERT_EQ(jobs_.received.size(), 1u);
    EXPECT_EQ(jobs_.received[0].first, 0u);
    EXPECT_EQ(jobs_.received[0].second.job_id, "j1");
  }
  wire::DeliveryResult result;
  result.job_id = "j1";
  result.outcome = "accepted";
  link->post_result(0, header, result);
  auto answer = router_.receive<wire::DeliveryResult>(wire::MessageType::kDeliveryResult);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->job_id, "j1");
  EXPECT_EQ(answer->connector, "connector-7");
}

TEST_F(RouterLinkTest, ResultsBeyondTheOutboxBoundAreDroppedAndCounted) {
  auto link = make_link({60'000, 2});  // not started: results wait in the outbox
  Counter& dropped = metrics().counter("chat4all_connector_channel_results_dropped_total",
                                       "Delivery results dropped: outbox full or socket full");
  const auto before = dropped.value();
  wire::Header header;
  for (int i = 0; i < 3; ++i) link->post_result(0, header, wire::DeliveryResult{});
  EXPECT_EQ(dropped.value(), before + 1);
}

}  // namespace
}  // namespace chat4all::connector
