#include "common/interval_limiter.h"

#include <gtest/gtest.h>

namespace chat4all {
namespace {

TEST(IntervalLimiterTest, OneEventPerKeyPerInterval) {
  IntervalLimiter limiter(3000, 100);
  EXPECT_TRUE(limiter.allow("ann/c1", 0));
  EXPECT_FALSE(limiter.allow("ann/c1", 1));
  EXPECT_FALSE(limiter.allow("ann/c1", 2999));
  EXPECT_TRUE(limiter.allow("ben/c1", 2999));  // keys are independent
  EXPECT_TRUE(limiter.allow("ann/c1", 3000));
  EXPECT_FALSE(limiter.allow("ann/c1", 5999));  // the interval runs from the last allowed one
  EXPECT_TRUE(limiter.allow("ann/c1", 6000));
}

TEST(IntervalLimiterTest, AFullLimiterForgetsOldKeysAndOtherwiseRefuses) {
  IntervalLimiter limiter(1000, 2);
  EXPECT_TRUE(limiter.allow("a", 0));
  EXPECT_TRUE(limiter.allow("b", 500));
  EXPECT_FALSE(limiter.allow("c", 900));  // both still within their interval: refused
  EXPECT_EQ(limiter.size(), 2u);
  EXPECT_TRUE(limiter.allow("c", 1900));  // a and b are old by now: forgotten
  EXPECT_EQ(limiter.size(), 1u);
  EXPECT_FALSE(limiter.allow("c", 1901));
}

}  // namespace
}  // namespace chat4all
