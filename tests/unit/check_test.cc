// The always-on invariant check (common/check.h): on in this build whatever NDEBUG says.
#include "common/check.h"

#include <gtest/gtest.h>

namespace chat4all {
namespace {

TEST(CheckTest, AHeldInvariantCostsNothingVisible) {
  int evaluated = 0;
  CHAT4ALL_CHECK(++evaluated == 1, "the condition is evaluated exactly once");
  EXPECT_EQ(evaluated, 1);
}

// The unit tests are built like the nodes (RelWithDebInfo, NDEBUG defined): the check still
// runs.
TEST(CheckDeathTest, ABrokenInvariantAbortsNamingItEvenWithNdebug) {
  const int slots = 2;
  const int busy = 3;
  EXPECT_DEATH(CHAT4ALL_CHECK(busy <= slots, "a channel never holds more jobs than its slots"),
               "invariant broken: a channel never holds more jobs than its slots \\(busy <= "
               "slots\\)");
}

}  // namespace
}  // namespace chat4all
