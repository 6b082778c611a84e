// The pure core of `state` frames (nodes/frontend/stream_state_tracker.h):
// reads by cursor in the conversation's state log, each step sent once, a
// lost hint made good by the next head learned.
#include "nodes/frontend/stream_state_tracker.h"

#include <gtest/gtest.h>

namespace chat4all::frontend {
namespace {

wire::StateLogEntry entry(std::uint64_t index) {
  wire::StateLogEntry entry;
  entry.index = index;
  entry.seq = index;
  entry.state = wire::kStateDelivered;
  return entry;
}

wire::StatePage page(std::vector<std::uint64_t> indexes, std::uint64_t scanned_to,
                     std::uint64_t head) {
  wire::StatePage page;
  for (auto index : indexes) page.entries.push_back(entry(index));
  page.scanned_to = scanned_to;
  page.head = head;
  return page;
}

TEST(StreamStateTrackerTest, StartsAtTheHeadAndReadsOnlyWhatCameAfter) {
  StreamStateTracker tracker;
  EXPECT_TRUE(tracker.add("c", 7));
  EXPECT_FALSE(tracker.add("c", 9));
  EXPECT_FALSE(tracker.wants_reads());  // nothing new yet
  tracker.on_head("c", 7);
  EXPECT_FALSE(tracker.wants_reads());
  tracker.on_head("c", 9);
  auto reads = tracker.take_reads(4);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].after_index, 7u);
  // Entries at or below the cursor never go out twice, even if a reply repeats them.
  auto sent = tracker.on_page("c", page({7, 8, 9}, 9, 9));
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].index, 8u);
  EXPECT_EQ(sent[1].index, 9u);
  EXPECT_FALSE(tracker.wants_reads());
}

TEST(StreamStateTrackerTest, AHintWithoutAnIndexReadsAndALostHintIsMadeGoodByTheNextHead) {
  StreamStateTracker tracker;
  tracker.add("c", 0);
  tracker.on_hint("c");
  auto reads = tracker.take_reads(4);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(tracker.on_page("c", page({1}, 1, 1)).size(), 1u);
  // Steps 2 and 3 were made and their hints lost; a message read tells the head.
  EXPECT_FALSE(tracker.wants_reads());
  tracker.on_head("c", 3);
  reads = tracker.take_reads(4);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].after_index, 1u);
  EXPECT_EQ(tracker.on_page("c", page({2, 3}, 3, 3)).size(), 2u);
}

TEST(StreamStateTrackerTest, OneReadInFlightPerConversationAndAHintMeanwhileReadsAgain) {
  StreamStateTracker tracker;
  tracker.add("c", 0);
  tracker.on_hint("c");
  ASSERT_EQ(tracker.take_reads(4).size(), 1u);
  tracker.on_hint("c");
  tracker.on_head("c", 5);
  EXPECT_TRUE(tracker.take_reads(4).empty());  // the read in flight answers first
  tracker.on_page("c", page({1}, 1, 1));       // answered before steps 2..5 were made
  auto reads = tracker.take_reads(4);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].after_index, 1u);
}

TEST(StreamStateTrackerTest, OtherSendersStepsAreSkippedByTheCursorAndPagesContinue) {
  StreamStateTracker tracker;
  tracker.add("c", 0);
  tracker.on_head("c", 10000);
  ASSERT_EQ(tracker.take_reads(1).size(), 1u);
  // The storage looked at 4,096 entries and found two of this user's.
  EXPECT_EQ(tracker.on_page("c", page({5, 4000}, 4096, 10000)).size(), 2u);
  auto reads = tracker.take_reads(1);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].after_index, 4096u);
  // A reply that makes no progress does not spin: the next head or hint reads again.
  EXPECT_TRUE(tracker.on_page("c", page({}, 4096, 10000)).empty());
  EXPECT_FALSE(tracker.wants_reads());
  tracker.on_hint("c");
  EXPECT_TRUE(tracker.wants_reads());
}

TEST(StreamStateTrackerTest, ReadsAreSharedRoundRobinAndFailedOrDroppedOnesAreForgotten) {
  StreamStateTracker tracker;
  for (const char* id : {"a", "b", "c"}) {
    tracker.add(id, 0);
    tracker.on_head(id, 1);
  }
  auto first = tracker.take_reads(2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].conversation_id, "a");
  EXPECT_EQ(first[1].conversation_id, "b");
  tracker.on_read_failed("a");
  EXPECT_TRUE(tracker.remove("b"));
  EXPECT_TRUE(tracker.on_page("b", page({1}, 1, 1)).empty());  // answered after it was dropped
  auto second = tracker.take_reads(2);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].conversation_id, "c");
  tracker.on_head("a", 1);  // learned again: read again
  EXPECT_EQ(tracker.take_reads(2).size(), 1u);
}

}  // namespace
}  // namespace chat4all::frontend
