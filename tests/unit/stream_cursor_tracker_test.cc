// The stream's per-connection cursors: nodes/frontend/stream_cursor_tracker.h.
#include "nodes/frontend/stream_cursor_tracker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace chat4all::frontend {
namespace {

using Tracker = StreamCursorTracker;

wire::StoredMessage message(const std::string& conversation_id, std::uint64_t seq) {
  wire::StoredMessage stored;
  stored.conversation_id = conversation_id;
  stored.seq = seq;
  stored.message_id = conversation_id + "-m" + std::to_string(seq);
  return stored;
}

std::vector<wire::StoredMessage> messages(const std::string& conversation_id, std::uint64_t first,
                                          std::uint64_t last) {
  std::vector<wire::StoredMessage> result;
  for (std::uint64_t seq = first; seq <= last; ++seq)
    result.push_back(message(conversation_id, seq));
  return result;
}

std::vector<std::uint64_t> seqs(const std::vector<wire::StoredMessage>& sent) {
  std::vector<std::uint64_t> result;
  for (const auto& m : sent) result.push_back(m.seq);
  return result;
}

// Takes the one read expected for `conversation_id` and checks where it starts.
void expect_read(Tracker& tracker, const std::string& conversation_id, std::uint64_t from_seq) {
  const auto reads = tracker.take_reads(1);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].conversation_id, conversation_id);
  EXPECT_EQ(reads[0].from_seq, from_seq);
}

TEST(StreamCursorTracker, StartsAfterTheDeliveredHorizonAndReadsAtOnce) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 3, 5));
  EXPECT_EQ(tracker.cursor("c1"), 3u);
  expect_read(tracker, "c1", 4);
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 4, 5), 5)),
            (std::vector<std::uint64_t>{4, 5}));
  EXPECT_EQ(tracker.cursor("c1"), 5u);
  EXPECT_FALSE(tracker.wants_reads());  // caught up: nothing more to read
}

TEST(StreamCursorTracker, ResumeCursorWinsOverTheHorizonAndIsClampedToTheLastSeq) {
  Tracker tracker(10);
  tracker.set_resume_cursors({{"c1", 7}, {"c2", 50}});
  ASSERT_TRUE(tracker.add("c1", 2, 9));
  ASSERT_TRUE(tracker.add("c2", 0, 4));
  ASSERT_TRUE(tracker.add("c3", 1, 4));
  EXPECT_EQ(tracker.cursor("c1"), 7u);
  EXPECT_EQ(tracker.cursor("c2"), 4u);  // a client cannot have seen seq 50 of a 4-message log
  EXPECT_EQ(tracker.cursor("c3"), 1u);  // no resume cursor: the horizon
  const auto positions = tracker.positions();
  ASSERT_EQ(positions.size(), 3u);
  EXPECT_EQ(positions[0].conversation_id, "c1");
  EXPECT_EQ(positions[0].last_seq, 9u);
  EXPECT_EQ(positions[0].cursor, 7u);
}

TEST(StreamCursorTracker, ResumeCursorBeyondTheHorizonIsMarkedDelivered) {
  Tracker tracker(10);
  tracker.set_resume_cursors({{"c1", 6}});
  ASSERT_TRUE(tracker.add("c1", 2, 9));
  const auto marks = tracker.take_marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].up_to_seq, 6u);
  Tracker behind(10);
  behind.set_resume_cursors({{"c1", 1}});
  ASSERT_TRUE(behind.add("c1", 2, 9));
  EXPECT_TRUE(behind.take_marks().empty());  // never lower than what storage has
}

TEST(StreamCursorTracker, NeverHandsOutAMessageTwiceOrOutOfOrder) {
  Tracker tracker(10);
  tracker.add("c1", 0, 0);
  expect_read(tracker, "c1", 1);
  EXPECT_TRUE(tracker.on_page("c1", {}, 0).empty());
  tracker.on_hint("c1", 3);
  expect_read(tracker, "c1", 1);
  // Seqs 1..2 arrive; then a page overlapping them (an earlier read's answer,
  // or a log that returns more than asked) only yields what is new.
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 1, 2), 3)),
            (std::vector<std::uint64_t>{1, 2}));
  expect_read(tracker, "c1", 3);  // more to read: seq 3 exists
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 1, 4), 4)),
            (std::vector<std::uint64_t>{3, 4}));
  // A gap stops the run: 5 is missing, so 6 and 7 wait rather than jump ahead.
  tracker.on_hint("c1", 7);
  expect_read(tracker, "c1", 5);
  std::vector<wire::StoredMessage> gap = {message("c1", 6), message("c1", 7)};
  EXPECT_TRUE(tracker.on_page("c1", gap, 7).empty());
  EXPECT_EQ(tracker.cursor("c1"), 4u);
  EXPECT_FALSE(tracker.wants_reads());  // no progress: no spinning until the next hint or resync
  tracker.want_all();
  expect_read(tracker, "c1", 5);
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 5, 7), 7)),
            (std::vector<std::uint64_t>{5, 6, 7}));
}

TEST(StreamCursorTracker, OneReadInFlightPerConversationAndHintsDuringItAreKept) {
  Tracker tracker(10);
  tracker.add("c1", 0, 2);
  expect_read(tracker, "c1", 1);
  tracker.on_hint("c1", 3);                    // while the read is in flight
  EXPECT_TRUE(tracker.take_reads(5).empty());  // still one in flight
  // The read was served before seq 3 was stored: the hint asks for another.
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 1, 2), 2)),
            (std::vector<std::uint64_t>{1, 2}));
  expect_read(tracker, "c1", 3);
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 3, 3), 3)), (std::vector<std::uint64_t>{3}));
  EXPECT_FALSE(tracker.wants_reads());
}

TEST(StreamCursorTracker, HintAtOrBelowTheCursorAsksForNothing) {
  Tracker tracker(10);
  tracker.add("c1", 5, 5);
  expect_read(tracker, "c1", 6);
  tracker.on_page("c1", {}, 5);
  tracker.on_hint("c1", 5);
  tracker.on_hint("c1", 2);
  tracker.on_hint("unknown", 9);
  EXPECT_FALSE(tracker.wants_reads());
  EXPECT_TRUE(tracker.take_reads(3).empty());
}

TEST(StreamCursorTracker, ReadsAreTakenRoundRobinWithinTheBudget) {
  Tracker tracker(10);
  for (const char* id : {"a", "b", "c"}) tracker.add(id, 0, 100);
  auto first = tracker.take_reads(2);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].conversation_id, "a");
  EXPECT_EQ(first[1].conversation_id, "b");
  tracker.on_page("a", messages("a", 1, 10), 100);  // a wants more
  tracker.on_page("b", messages("b", 1, 10), 100);
  auto second = tracker.take_reads(2);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].conversation_id, "c");  // c goes before a comes round again
  EXPECT_EQ(second[1].conversation_id, "a");
  EXPECT_EQ(second[1].from_seq, 11u);
}

TEST(StreamCursorTracker, BacklogAtAddIsCatchingUpAndWhatComesLaterIsLive) {
  Tracker tracker(10);
  tracker.add("old", 0, 3);  // three messages stored before the client came
  tracker.add("new", 0, 0);
  tracker.on_hint("new", 1);
  auto reads = tracker.take_reads(5, /*catch_up_allowed=*/false);
  ASSERT_EQ(reads.size(), 1u);  // the backlog waits for room, live messages do not
  EXPECT_EQ(reads[0].conversation_id, "new");
  EXPECT_FALSE(reads[0].catching_up);
  reads = tracker.take_reads(5);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].conversation_id, "old");
  EXPECT_TRUE(reads[0].catching_up);
  tracker.on_hint("old", 5);
  tracker.on_page("old", messages("old", 1, 3), 5);  // caught up with the backlog
  reads = tracker.take_reads(5, /*catch_up_allowed=*/false);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].from_seq, 4u);
  EXPECT_FALSE(reads[0].catching_up);
}

TEST(StreamCursorTracker, FailedReadIsRetriedOnlyByTheNextHintOrResync) {
  Tracker tracker(10);
  tracker.add("c1", 0, 3);
  expect_read(tracker, "c1", 1);
  tracker.on_read_failed("c1");
  EXPECT_FALSE(tracker.wants_reads());
  tracker.want_all();
  expect_read(tracker, "c1", 1);
}

TEST(StreamCursorTracker, RemovedConversationIgnoresItsLateReply) {
  Tracker tracker(10);
  tracker.add("c1", 0, 3);
  expect_read(tracker, "c1", 1);
  EXPECT_TRUE(tracker.remove("c1"));
  EXPECT_TRUE(tracker.on_page("c1", messages("c1", 1, 3), 3).empty());
  EXPECT_FALSE(tracker.contains("c1"));
  EXPECT_FALSE(tracker.remove("c1"));
  tracker.on_written("c1", 3);
  EXPECT_TRUE(tracker.take_marks().empty());
}

TEST(StreamCursorTracker, DroppedAndAddedAgainNeverRepeatsWhatThisConnectionHandedOut) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 0, 0));
  tracker.on_hint("c1", 3);
  expect_read(tracker, "c1", 1);
  EXPECT_EQ(tracker.on_page("c1", messages("c1", 1, 3), 3).size(), 3u);
  tracker.on_written("c1", 3);
  ASSERT_TRUE(tracker.remove("c1"));  // the user left (or a resync dropped it) ...
  // ... and came back before the DELIVERED mark of 1..3 landed: the stored
  // horizon says 1, but this connection handed out 3 already.
  ASSERT_TRUE(tracker.add("c1", 1, 5));
  EXPECT_EQ(tracker.cursor("c1"), 3u);
  expect_read(tracker, "c1", 4);
  EXPECT_EQ(seqs(tracker.on_page("c1", messages("c1", 2, 5), 5)),
            (std::vector<std::uint64_t>{4, 5}));
  // A horizon beyond the remembered cursor (messages while not a member) wins.
  ASSERT_TRUE(tracker.remove("c1"));
  ASSERT_TRUE(tracker.add("c1", 9, 9));
  EXPECT_EQ(tracker.cursor("c1"), 9u);
}

// A resync wants every conversation; serving them costs a bounded number of
// visits per conversation, not the whole set per read (2,000 conversations:
// linear is about 2 * 2,000 visits, quadratic about 2,000,000).
TEST(StreamCursorTracker, ResyncIsLinearInTheConversations) {
  constexpr std::uint64_t kConversations = 2000;
  Tracker tracker(kConversations);
  for (std::uint64_t i = 0; i < kConversations; ++i)
    ASSERT_TRUE(tracker.add("c" + std::to_string(10000 + i), 1, 1));
  // Half follow a tail holding what they lack; the rest must read storage.
  const auto tail_of = [](const std::string& id) -> std::optional<Tracker::TailView> {
    if (std::stoul(id.substr(1)) % 2 == 0) return Tracker::TailView{1, 2};
    return std::nullopt;
  };
  auto serve_everything = [&] {
    std::size_t served = 0;
    for (;;) {
      served += tracker.take_from_tails(tail_of, true, 64).takes.size();
      const auto reads = tracker.take_reads(4);
      if (reads.empty()) break;
      for (const auto& read : reads) {
        tracker.on_page(read.conversation_id, {}, 1);
        ++served;
      }
    }
    return served;
  };
  serve_everything();  // what add() wanted
  for (std::uint64_t i = 0; i < kConversations; ++i)
    tracker.on_hint("c" + std::to_string(10000 + i), 2);
  const std::uint64_t before = tracker.visits();
  tracker.want_all();  // the resync
  // The storage half is read (4 at a time); the tail half has all the tail
  // holds and waits for it.
  EXPECT_EQ(serve_everything(), kConversations / 2);
  EXPECT_FALSE(tracker.wants_reads());
  EXPECT_LE(tracker.visits() - before, 4 * kConversations);
}

TEST(StreamCursorTracker, BoundedNumberOfConversations) {
  Tracker tracker(2);
  EXPECT_TRUE(tracker.add("a", 0, 0));
  EXPECT_FALSE(tracker.add("a", 0, 0));  // already tracked
  EXPECT_TRUE(tracker.add("b", 0, 0));
  EXPECT_FALSE(tracker.add("c", 0, 0));
  EXPECT_TRUE(tracker.full());
  tracker.remove("a");
  EXPECT_TRUE(tracker.add("c", 0, 0));
}

TEST(StreamCursorTracker, DeliveredMarksAreCoalescedOnePerConversationInFlight) {
  Tracker tracker(10);
  tracker.add("c1", 0, 0);
  tracker.add("c2", 0, 0);
  EXPECT_FALSE(tracker.wants_marks());
  for (std::uint64_t seq = 1; seq <= 5; ++seq) tracker.on_written("c1", seq);
  tracker.on_written("c2", 2);
  auto marks = tracker.take_marks();
  ASSERT_EQ(marks.size(), 2u);  // one per conversation, however many messages
  EXPECT_EQ(marks[0].conversation_id, "c1");
  EXPECT_EQ(marks[0].up_to_seq, 5u);
  EXPECT_EQ(marks[1].up_to_seq, 2u);
  // More is written while the marks are in flight: nothing new until they end.
  tracker.on_written("c1", 7);
  EXPECT_TRUE(tracker.take_marks().empty());
  tracker.on_mark_done("c1", 5, true);
  tracker.on_mark_done("c2", 2, true);
  marks = tracker.take_marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].up_to_seq, 7u);
  tracker.on_mark_done("c1", 7, true);
  EXPECT_FALSE(tracker.wants_marks());
}

TEST(StreamCursorTracker, FailedMarkIsRetriedWithTheHighestHorizon) {
  Tracker tracker(10);
  tracker.add("c1", 0, 0);
  tracker.on_written("c1", 3);
  auto marks = tracker.take_marks();
  ASSERT_EQ(marks.size(), 1u);
  tracker.on_written("c1", 4);
  tracker.on_mark_done("c1", 3, false);
  marks = tracker.take_marks();
  ASSERT_EQ(marks.size(), 1u);
  EXPECT_EQ(marks[0].up_to_seq, 4u);
  tracker.on_mark_done("c1", 4, true);
  tracker.on_written("c1", 2);  // lower than what is recorded: nothing to do
  EXPECT_TRUE(tracker.take_marks().empty());
}

}  // namespace
}  // namespace chat4all::frontend
