// The frontend's memory of the messages it accepted (nodes/frontend/accepted_messages.h).
#include "nodes/frontend/accepted_messages.h"

#include <gtest/gtest.h>

namespace chat4all::frontend {
namespace {

TEST(AcceptedMessagesTest, FindsWhatItAcceptedOnlyInItsTenant) {
  AcceptedMessages accepted(10, 60000);
  accepted.remember("acme", "m1", "c1", 0);
  EXPECT_EQ(accepted.find("acme", "m1", 10), "c1");
  EXPECT_FALSE(accepted.find("other", "m1", 10)) << "another tenant's id is another id";
  EXPECT_FALSE(accepted.find("acme", "m2", 10));
  // The key cannot be forged by moving characters between tenant and id.
  accepted.remember("ab", "c", "c9", 0);
  EXPECT_FALSE(accepted.find("a", "bc", 10));
}

TEST(AcceptedMessagesTest, TheFirstConversationOfAnIdStays) {
  AcceptedMessages accepted(10, 60000);
  accepted.remember("acme", "m1", "c1", 0);
  accepted.remember("acme", "m1", "c2", 5);
  EXPECT_EQ(accepted.find("acme", "m1", 10), "c1");
  EXPECT_EQ(accepted.size(), 1u);
}

TEST(AcceptedMessagesTest, EntriesAgeOut) {
  AcceptedMessages accepted(10, 1000);
  accepted.remember("acme", "m1", "c1", 0);
  accepted.remember("acme", "m2", "c1", 500);
  EXPECT_EQ(accepted.find("acme", "m1", 999), "c1");
  EXPECT_FALSE(accepted.find("acme", "m1", 1000));
  // Aged entries are dropped as new ones come, so they do not hold room.
  accepted.remember("acme", "m3", "c1", 1200);
  EXPECT_EQ(accepted.size(), 2u);
  EXPECT_EQ(accepted.find("acme", "m2", 1200), "c1");
}

TEST(AcceptedMessagesTest, AtTheBoundTheOldestIsForgotten) {
  AcceptedMessages accepted(3, 60000);
  for (int i = 1; i <= 4; ++i)
    accepted.remember("acme", "m" + std::to_string(i), "c" + std::to_string(i), i);
  EXPECT_EQ(accepted.size(), 3u);
  EXPECT_FALSE(accepted.find("acme", "m1", 10));
  EXPECT_EQ(accepted.find("acme", "m2", 10), "c2");
  EXPECT_EQ(accepted.find("acme", "m4", 10), "c4");
}

}  // namespace
}  // namespace chat4all::frontend
