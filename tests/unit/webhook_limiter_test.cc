// Per-webhook bounds of the webhook dispatcher: nodes/connector/webhook_limiter.h.
#include "nodes/connector/webhook_limiter.h"

#include <gtest/gtest.h>

#include <vector>

namespace chat4all::connector {
namespace {

TEST(WebhookLimiterTest, OpenDeliveriesOfOneWebhookAreBoundedOthersAreNot) {
  WebhookLimiter limiter(/*open_max=*/3, /*sending_max=*/2);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.try_open("t/dead"));
  EXPECT_FALSE(limiter.try_open("t/dead")) << "a fourth open delivery is shed";
  EXPECT_EQ(limiter.open("t/dead"), 3u);
  // Another webhook (of the same tenant or another) is not held back by it.
  EXPECT_TRUE(limiter.try_open("t/alive"));
  EXPECT_TRUE(limiter.try_open("u/dead"));
  limiter.close("t/dead");
  EXPECT_TRUE(limiter.try_open("t/dead")) << "an ended delivery frees its place";
}

TEST(WebhookLimiterTest, SendingSlotsOfOneWebhookAreBoundedAndPassInOrder) {
  WebhookLimiter limiter(/*open_max=*/10, /*sending_max=*/2);
  std::vector<int> started;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(limiter.try_open("t/slow"));
  EXPECT_TRUE(limiter.send("t/slow", [&] { started.push_back(1); }));
  EXPECT_TRUE(limiter.send("t/slow", [&] { started.push_back(2); }));
  EXPECT_FALSE(limiter.send("t/slow", [&] { started.push_back(3); }));
  EXPECT_FALSE(limiter.send("t/slow", [&] { started.push_back(4); }));
  EXPECT_EQ(started, (std::vector<int>{1, 2}));
  EXPECT_EQ(limiter.sending("t/slow"), 2u);
  EXPECT_EQ(limiter.waiting("t/slow"), 2u);

  // Another webhook still gets a slot at once.
  ASSERT_TRUE(limiter.try_open("t/fast"));
  EXPECT_TRUE(limiter.send("t/fast", [&] { started.push_back(10); }));
  EXPECT_EQ(started.back(), 10);
  EXPECT_FALSE(limiter.sent("t/fast"));
  limiter.close("t/fast");

  // A freed slot passes to the oldest waiting attempt, which the caller runs.
  auto next = limiter.sent("t/slow");
  ASSERT_TRUE(next);
  next();
  EXPECT_EQ(started.back(), 3);
  EXPECT_EQ(limiter.sending("t/slow"), 2u);
  next = limiter.sent("t/slow");
  ASSERT_TRUE(next);
  next();
  EXPECT_EQ(started.back(), 4);
  EXPECT_FALSE(limiter.sent("t/slow"));
  EXPECT_FALSE(limiter.sent("t/slow"));
  EXPECT_EQ(limiter.sending("t/slow"), 0u);
  for (int i = 0; i < 4; ++i) limiter.close("t/slow");
  EXPECT_EQ(limiter.webhooks(), 0u) << "idle webhooks are forgotten";
}

TEST(WebhookLimiterTest, ZeroBoundsActAsOne) {
  WebhookLimiter limiter(0, 0);
  EXPECT_TRUE(limiter.try_open("t/w"));
  EXPECT_FALSE(limiter.try_open("t/w"));
  int runs = 0;
  EXPECT_TRUE(limiter.send("t/w", [&] { ++runs; }));
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace chat4all::connector
