// The bounded memory of accepted deliveries: nodes/connector/accepted_deliveries.h.
#include "nodes/connector/accepted_deliveries.h"

#include <gtest/gtest.h>

namespace chat4all::connector {
namespace {

TEST(AcceptedDeliveriesTest, RemembersWhatWasAccepted) {
  AcceptedDeliveries accepted(10);
  EXPECT_FALSE(accepted.find("m1/bob/wa"));
  accepted.remember("m1/bob/wa", {"wamid.1", false});
  accepted.remember("m2/bob/tg", {"42", true});
  auto first = accepted.find("m1/bob/wa");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->provider_message_id, "wamid.1");
  EXPECT_FALSE(first->delivered);
  EXPECT_TRUE(accepted.find("m2/bob/tg")->delivered);
  // Remembering again replaces.
  accepted.remember("m1/bob/wa", {"wamid.2", true});
  EXPECT_EQ(accepted.find("m1/bob/wa")->provider_message_id, "wamid.2");
  EXPECT_EQ(accepted.size(), 2u);
}

TEST(AcceptedDeliveriesTest, ForgetsTheLeastRecentlyUsedPastTheBound) {
  AcceptedDeliveries accepted(2);
  accepted.remember("a", {"pa", false});
  accepted.remember("b", {"pb", false});
  EXPECT_TRUE(accepted.find("a"));  // a is now the most recent
  accepted.remember("c", {"pc", false});
  EXPECT_EQ(accepted.size(), 2u);
  EXPECT_FALSE(accepted.find("b"));
  EXPECT_TRUE(accepted.find("a"));
  EXPECT_TRUE(accepted.find("c"));
  // Refreshing an entry counts as a use too.
  accepted.remember("a", {"pa2", false});
  accepted.remember("d", {"pd", false});
  EXPECT_FALSE(accepted.find("c"));
  EXPECT_EQ(accepted.find("a")->provider_message_id, "pa2");
}

TEST(AcceptedDeliveriesTest, ABoundOfZeroKeepsOne) {
  AcceptedDeliveries accepted(0);
  accepted.remember("a", {"pa", false});
  EXPECT_TRUE(accepted.find("a"));
  accepted.remember("b", {"pb", false});
  EXPECT_FALSE(accepted.find("a"));
  EXPECT_EQ(accepted.size(), 1u);
}

}  // namespace
}  // namespace chat4all::connector
