// A conversation's shared tail: nodes/frontend/conversation_tail_core.h, and
// how a stream's cursors take from it (StreamCursorTracker::take_from_tails).
#include "nodes/frontend/conversation_tail_core.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "nodes/frontend/stream_cursor_tracker.h"

namespace chat4all::frontend {
namespace {

using Core = ConversationTailCore;
using Tracker = StreamCursorTracker;

std::vector<Core::Entry> entries(std::uint64_t first, std::uint64_t last,
                                 std::size_t frame_bytes = 10) {
  std::vector<Core::Entry> result;
  for (std::uint64_t seq = first; seq <= last; ++seq)
    result.push_back({seq, std::make_shared<const std::string>(frame_bytes, 'x')});
  return result;
}

std::vector<std::uint64_t> window_seqs(const Core& core) {
  std::vector<std::uint64_t> result;
  for (const auto& entry : core.window()) result.push_back(entry.seq);
  return result;
}

TEST(ConversationTailCore, StartsAfterTheLastSeqAndReadsOnlyWhenAHintNamesMore) {
  Core core(5, 100, 1 << 20);
  EXPECT_EQ(core.cursor(), 5u);
  EXPECT_EQ(core.window_first(), 6u);  // empty
  EXPECT_FALSE(core.take_read());
  core.on_hint(5);  // had it already
  EXPECT_FALSE(core.take_read());
  core.on_hint(7);
  EXPECT_EQ(core.take_read(), 6u);
  EXPECT_FALSE(core.take_read());  // one in flight
  EXPECT_TRUE(core.on_page(entries(6, 7), 7));
  EXPECT_EQ(core.cursor(), 7u);
  EXPECT_EQ(window_seqs(core), (std::vector<std::uint64_t>{6, 7}));
  EXPECT_FALSE(core.wants_read());
}

TEST(ConversationTailCore, HintsDuringAReadAskForAnotherOnlyBeyondWhatItWasIssuedFor) {
  Core core(0, 100, 1 << 20);
  core.on_hint(3);
  ASSERT_EQ(core.take_read(), 1u);
  // A thousand streams each wake the tail for seq 3: the read in flight brings it.
  for (int i = 0; i < 1000; ++i) core.on_hint(3);
  EXPECT_FALSE(core.wants_read());
  core.on_hint(4);  // stored after the read was issued: it may miss it
  EXPECT_TRUE(core.wants_read());
  EXPECT_TRUE(core.on_page(entries(1, 3), 3));
  EXPECT_EQ(core.take_read(), 4u);
}

TEST(ConversationTailCore, PagesThroughWhatIsLeftAndNeverSkipsAGapOrRepeats) {
  Core core(0, 100, 1 << 20);
  core.want();
  ASSERT_EQ(core.take_read(), 1u);
  auto page = entries(1, 2);
  auto beyond_gap = entries(4, 4);
  page.insert(page.end(), beyond_gap.begin(), beyond_gap.end());
  EXPECT_TRUE(core.on_page(std::move(page), 10));
  EXPECT_EQ(core.cursor(), 2u);                  // 4 waits behind the gap
  ASSERT_EQ(core.take_read(), 3u);               // more to read: at once
  EXPECT_TRUE(core.on_page(entries(2, 5), 10));  // 2 again is skipped
  EXPECT_EQ(window_seqs(core), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  ASSERT_EQ(core.take_read(), 6u);
  EXPECT_FALSE(core.on_page({}, 10));  // no progress: no spinning
  EXPECT_FALSE(core.wants_read());
}

TEST(ConversationTailCore, FailedReadIsRetriedByTheNextHintOrResync) {
  Core core(0, 100, 1 << 20);
  core.on_hint(1);
  ASSERT_EQ(core.take_read(), 1u);
  core.on_read_failed();
  EXPECT_FALSE(core.take_read());
  core.want();  // the resync
  EXPECT_EQ(core.take_read(), 1u);
}

TEST(ConversationTailCore, WindowKeepsTheNewestWithinItsMessageAndByteBounds) {
  Core by_count(0, 3, 1 << 20);
  by_count.want();
  by_count.take_read();
  by_count.on_page(entries(1, 5), 5);
  EXPECT_EQ(window_seqs(by_count), (std::vector<std::uint64_t>{3, 4, 5}));
  EXPECT_EQ(by_count.window_first(), 3u);
  EXPECT_EQ(by_count.window_bytes(), 30u);

  Core by_bytes(0, 100, 25);
  by_bytes.want();
  by_bytes.take_read();
  by_bytes.on_page(entries(1, 5), 5);
  EXPECT_EQ(window_seqs(by_bytes), (std::vector<std::uint64_t>{4, 5}));
  by_bytes.want();
  by_bytes.take_read();
  by_bytes.on_page(entries(6, 6, 1000), 6);  // alone beyond the bound: still kept
  EXPECT_EQ(window_seqs(by_bytes), (std::vector<std::uint64_t>{6}));

  by_count.keep_newest_only();
  EXPECT_EQ(window_seqs(by_count), (std::vector<std::uint64_t>{5}));
  EXPECT_EQ(by_count.window_bytes(), 10u);
}

// ---- a stream taking from tails

struct FakeTails {
  std::map<std::string, Tracker::TailView> views;
  Tracker::TailLookup lookup() {
    return [this](const std::string& id) -> std::optional<Tracker::TailView> {
      const auto it = views.find(id);
      if (it == views.end()) return std::nullopt;
      return it->second;
    };
  }
};

TEST(StreamCursorTrackerTails, CaughtUpStreamTakesNewMessagesFromTheWindowWithoutReading) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 5, 5));
  FakeTails tails;
  tails.views["c1"] = {6, 5};  // empty window at the tail's cursor 5
  auto plan = tracker.take_from_tails(tails.lookup(), true, 64);
  EXPECT_TRUE(plan.takes.empty());
  EXPECT_TRUE(plan.wakes.empty());
  EXPECT_FALSE(tracker.wants_reads());  // waits for the tail, reads nothing
  EXPECT_TRUE(tracker.take_reads(4).empty());

  tails.views["c1"] = {6, 8};  // the tail read 6..8 and tells
  tracker.on_hint("c1", 8);
  plan = tracker.take_from_tails(tails.lookup(), true, 64);
  ASSERT_EQ(plan.takes.size(), 1u);
  EXPECT_EQ(plan.takes[0].from_seq, 6u);
  EXPECT_EQ(plan.takes[0].to_seq, 8u);
  EXPECT_FALSE(plan.takes[0].catching_up);
  EXPECT_EQ(tracker.cursor("c1"), 8u);
  EXPECT_FALSE(tracker.wants_reads());

  // The same window again (a late or repeated tell): nothing twice.
  tracker.on_hint("c1", 8);
  plan = tracker.take_from_tails(tails.lookup(), true, 64);
  EXPECT_TRUE(plan.takes.empty());
}

TEST(StreamCursorTrackerTails, StreamBehindTheWindowReadsStorageThenJoinsTheWindow) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 0, 100));  // a backlog of 100
  FakeTails tails;
  tails.views["c1"] = {90, 120};
  auto plan = tracker.take_from_tails(tails.lookup(), true, 64);
  EXPECT_TRUE(plan.takes.empty());
  auto reads = tracker.take_reads(4);
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].from_seq, 1u);
  std::vector<wire::StoredMessage> page;
  for (std::uint64_t seq = 1; seq <= 89; ++seq) page.push_back({"c1", seq});
  EXPECT_EQ(tracker.on_page("c1", std::move(page), 120).size(), 89u);
  // Now inside the window; the backlog part is paced: at most 5 per take.
  plan = tracker.take_from_tails(tails.lookup(), true, 5);
  ASSERT_EQ(plan.takes.size(), 1u);
  EXPECT_EQ(plan.takes[0].from_seq, 90u);
  EXPECT_EQ(plan.takes[0].to_seq, 94u);
  EXPECT_TRUE(plan.takes[0].catching_up);
  EXPECT_TRUE(tracker.wants_reads());
  // No room for backlog: the catching-up conversation waits, nothing is read.
  plan = tracker.take_from_tails(tails.lookup(), false, 5);
  EXPECT_TRUE(plan.takes.empty());
  EXPECT_TRUE(tracker.take_reads(4, false).empty());
  plan = tracker.take_from_tails(tails.lookup(), true, 64);
  ASSERT_EQ(plan.takes.size(), 1u);
  EXPECT_EQ(plan.takes[0].from_seq, 95u);
  EXPECT_EQ(plan.takes[0].to_seq, 120u);
  EXPECT_EQ(tracker.cursor("c1"), 120u);
  EXPECT_FALSE(tracker.wants_reads());
}

TEST(StreamCursorTrackerTails, WakesTheTailForASeqItHasNotReadAndNeverReadsItself) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 3, 3));
  FakeTails tails;
  tails.views["c1"] = {4, 3};
  tracker.on_hint("c1", 6);  // the stream's own hint came before the tail's
  auto plan = tracker.take_from_tails(tails.lookup(), true, 64);
  ASSERT_EQ(plan.wakes.size(), 1u);
  EXPECT_EQ(plan.wakes[0].conversation_id, "c1");
  EXPECT_EQ(plan.wakes[0].seq, 6u);
  EXPECT_TRUE(tracker.take_reads(4).empty());
  tracker.want_all();  // a resync: waits on the tail, which resyncs itself
  plan = tracker.take_from_tails(tails.lookup(), true, 64);
  EXPECT_EQ(plan.wakes.size(), 1u);
  EXPECT_TRUE(tracker.take_reads(4).empty());
}

TEST(StreamCursorTrackerTails, WithoutATailOrWithAReadInFlightItReadsAsBefore) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c1", 0, 2));
  ASSERT_TRUE(tracker.add("c2", 0, 2));
  FakeTails tails;
  tails.views["c2"] = {1, 4};
  auto reads = tracker.take_reads(1);  // c1 first
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0].conversation_id, "c1");
  tails.views["c1"] = {1, 4};  // a tail, but c1 has a read in flight: its reply first
  auto plan = tracker.take_from_tails(tails.lookup(), true, 64);
  ASSERT_EQ(plan.takes.size(), 1u);
  EXPECT_EQ(plan.takes[0].conversation_id, "c2");
  tails.views.erase("c1");
  EXPECT_EQ(tracker.on_page("c1", {{"c1", 1}, {"c1", 2}}, 2).size(), 2u);
  EXPECT_FALSE(tracker.wants_reads());
}

}  // namespace
}  // namespace chat4all::frontend

namespace chat4all::frontend {
namespace {

TEST(ConversationTailCore, ACursorBelowWhereHistoryStartsMovesUpToIt) {
  Core core(2, 100, 1 << 20);
  core.on_hint(9);
  ASSERT_EQ(core.take_read(), 3u);
  // 3-6 expired before the read: the log starts at 7 and nothing below will come.
  EXPECT_TRUE(core.on_page(entries(7, 9), 9, 7));
  EXPECT_EQ(core.cursor(), 9u);
  EXPECT_EQ(window_seqs(core), (std::vector<std::uint64_t>{7, 8, 9}));
}

TEST(StreamCursorTracker, ACursorBelowWhereHistoryStartsMovesUpToIt) {
  Tracker tracker(10);
  ASSERT_TRUE(tracker.add("c", 0, 1));
  const auto sent = tracker.on_page("c", {}, 8, 6);
  EXPECT_TRUE(sent.empty());
  wire::StoredMessage message;
  message.conversation_id = "c";
  message.seq = 6;
  const auto next = tracker.on_page("c", {message}, 8, 6);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].seq, 6u);
}

}  // namespace
}  // namespace chat4all::frontend
