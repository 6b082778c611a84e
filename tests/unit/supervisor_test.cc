// Restart delays of the runner: RestartBackoff (nodes/runner/supervisor.h).
#include "nodes/runner/supervisor.h"

#include <gtest/gtest.h>

namespace chat4all::runner {
namespace {

using std::chrono::milliseconds;

TEST(RestartBackoffTest, StartsAt250MsAndDoublesUpTo10s) {
  RestartBackoff backoff;
  const milliseconds crash_fast(100);
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(250));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(500));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(1000));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(2000));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(4000));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(8000));
  EXPECT_EQ(backoff.next(crash_fast), milliseconds(10000));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(backoff.next(crash_fast), milliseconds(10000));
}

TEST(RestartBackoffTest, Constants) {
  EXPECT_EQ(RestartBackoff::kInitial, milliseconds(250));
  EXPECT_EQ(RestartBackoff::kMax, milliseconds(10000));
  EXPECT_EQ(RestartBackoff::kStableAfter, milliseconds(30000));
}

TEST(RestartBackoffTest, FirstDelayIs250MsWhateverTheUptime) {
  RestartBackoff quick, stable;
  EXPECT_EQ(quick.next(milliseconds(0)), milliseconds(250));
  EXPECT_EQ(stable.next(milliseconds(3600000)), milliseconds(250));
}

TEST(RestartBackoffTest, StableRunResets) {
  RestartBackoff backoff;
  for (int i = 0; i < 10; ++i) backoff.next(milliseconds(10));
  EXPECT_EQ(backoff.next(milliseconds(10)), milliseconds(10000));
  EXPECT_EQ(backoff.next(RestartBackoff::kStableAfter), milliseconds(250));
  EXPECT_EQ(backoff.next(milliseconds(10)), milliseconds(500));
  EXPECT_EQ(backoff.next(milliseconds(10)), milliseconds(1000));
  EXPECT_EQ(backoff.next(milliseconds(120000)), milliseconds(250));
}

TEST(RestartBackoffTest, RunJustShortOfStableDoesNotReset) {
  RestartBackoff backoff;
  backoff.next(milliseconds(0));
  backoff.next(milliseconds(0));  // 500
  EXPECT_EQ(backoff.next(RestartBackoff::kStableAfter - milliseconds(1)), milliseconds(1000));
}

TEST(RestartBackoffTest, InstancesAreIndependent) {
  RestartBackoff a, b;
  a.next(milliseconds(0));
  a.next(milliseconds(0));
  EXPECT_EQ(a.next(milliseconds(0)), milliseconds(1000));
  EXPECT_EQ(b.next(milliseconds(0)), milliseconds(250));
}

}  // namespace
}  // namespace chat4all::runner
