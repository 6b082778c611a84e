// The fault checker's verdict: each failure it exists to catch, crafted by hand, must fail it,
// and a clean run with unknown outcomes must pass.
#include <gtest/gtest.h>

#include <sstream>

#include "tools/fault/verify.h"

namespace chat4all::fault {
namespace {

AckRecord ack(std::string session, std::uint64_t index, std::string conversation,
              std::string message_id, std::uint64_t seq) {
  return {std::move(session), index, std::move(conversation), std::move(message_id), true, seq};
}

AckRecord unknown(std::string session, std::uint64_t index, std::string conversation,
                  std::string message_id) {
  return {std::move(session), index, std::move(conversation), std::move(message_id), false, 0};
}

History history(std::vector<StoredMessage> messages) {
  History result;
  result.last_seq = messages.empty() ? 0 : messages.back().seq;
  result.messages = std::move(messages);
  return result;
}

// Two sessions interleaving in one conversation, one message of unknown outcome stored.
struct CleanRun {
  std::vector<AckRecord> log = {ack("0", 0, "c1", "m0-0", 1),  ack("1", 0, "c1", "m1-0", 2),
                                unknown("0", 1, "c1", "m0-1"), ack("1", 1, "c1", "m1-1", 4),
                                ack("0", 2, "c2", "m0-2", 1),  unknown("1", 2, "c2", "m1-2")};
  std::map<std::string, History> histories = {
      {"c1", history({{1, "m0-0"}, {2, "m1-0"}, {3, "m0-1"}, {4, "m1-1"}})},
      {"c2", history({{1, "m0-2"}})}};
};

TEST(FaultVerify, CleanRunPassesAndCounts) {
  const CleanRun run;
  const Report report = verify(run.log, run.histories);
  EXPECT_TRUE(report.ok()) << summary_line(report);
  EXPECT_EQ(report.sent, 6u);
  EXPECT_EQ(report.acknowledged, 4u);
  EXPECT_EQ(report.unknown, 2u);
  EXPECT_EQ(report.found, 4u);
  EXPECT_EQ(report.unknown_found, 1u);
  EXPECT_EQ(report.lost + report.duplicated + report.out_of_order + report.gaps, 0u);
  EXPECT_EQ(report.conversations, 2u);
  EXPECT_EQ(report.stored, 5u);
  EXPECT_TRUE(report.problems.empty());
}

TEST(FaultVerify, LostAcknowledgedMessageFails) {
  CleanRun run;
  // m1-1 gone and the history renumbered around it, so only the loss is wrong.
  run.histories["c1"] = history({{1, "m0-0"}, {2, "m1-0"}, {3, "m0-1"}});
  run.log[3].seq = 0;
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.lost, 1u);
  EXPECT_EQ(report.found, 3u);
  EXPECT_EQ(report.gaps, 0u);
  ASSERT_FALSE(report.problems.empty());
  EXPECT_NE(report.problems[0].find("m1-1"), std::string::npos);
}

TEST(FaultVerify, DuplicatedMessageFails) {
  CleanRun run;
  run.histories["c2"] = history({{1, "m0-2"}, {2, "m0-2"}});
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.duplicated, 1u);
  EXPECT_EQ(report.lost, 0u);
}

TEST(FaultVerify, UnknownOutcomeStoredTwiceFails) {
  CleanRun run;
  run.histories["c2"] = history({{1, "m0-2"}, {2, "m1-2"}, {3, "m1-2"}});
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.duplicated, 1u);
}

TEST(FaultVerify, GapInSequenceFails) {
  CleanRun run;
  run.histories["c1"] = history({{1, "m0-0"}, {2, "m1-0"}, {4, "m1-1"}});
  run.log[3].seq = 4;
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.gaps, 1u);
  EXPECT_EQ(report.lost, 0u);
}

TEST(FaultVerify, HistoryNotStartingAtOneFails) {
  CleanRun run;
  run.histories["c2"] = history({{2, "m0-2"}});
  run.log[4].seq = 2;
  EXPECT_EQ(verify(run.log, run.histories).gaps, 1u);
}

TEST(FaultVerify, SeqGoingBackwardsFails) {
  CleanRun run;
  run.histories["c1"] = history({{1, "m0-0"}, {2, "m1-0"}, {2, "m0-1"}, {3, "m1-1"}});
  run.histories["c1"].last_seq = 3;
  run.log[3].seq = 3;
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_GE(report.gaps, 1u);
}

TEST(FaultVerify, MissingTailFails) {
  CleanRun run;
  run.histories["c2"].last_seq = 2;  // the server says there is a seq 2 it did not return
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.gaps, 1u);
}

TEST(FaultVerify, ReorderedSessionFails) {
  // Session 0 had m0-0 acknowledged before m0-1, but the store put m0-1 first. The acked
  // seqs are unknown (0) so that only the order is at fault.
  const std::vector<AckRecord> log = {ack("0", 0, "c1", "m0-0", 0), ack("0", 1, "c1", "m0-1", 0)};
  const std::map<std::string, History> histories = {{"c1", history({{1, "m0-1"}, {2, "m0-0"}})}};
  const Report report = verify(log, histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.out_of_order, 1u);
  EXPECT_EQ(report.wrong_seq, 0u);
  EXPECT_EQ(report.gaps, 0u);
}

TEST(FaultVerify, OrderIsPerSessionAndConversation) {
  // Different sessions may interleave in any order, and one session's order across two
  // conversations is not comparable.
  const std::vector<AckRecord> log = {ack("0", 0, "c1", "a", 2), ack("1", 0, "c1", "b", 1),
                                      ack("0", 1, "c2", "c", 1), ack("0", 2, "c1", "d", 3)};
  const std::map<std::string, History> histories = {{"c1", history({{1, "b"}, {2, "a"}, {3, "d"}})},
                                                    {"c2", history({{1, "c"}})}};
  const Report report = verify(log, histories);
  EXPECT_TRUE(report.ok()) << summary_line(report);
}

TEST(FaultVerify, OrderUsesSendIndexNotLogPosition) {
  // The log's line order must not matter: the session's index is the acknowledgement order.
  const std::vector<AckRecord> log = {ack("0", 1, "c1", "second", 2),
                                      ack("0", 0, "c1", "first", 1)};
  const std::map<std::string, History> histories = {{"c1", history({{1, "first"}, {2, "second"}})}};
  EXPECT_TRUE(verify(log, histories).ok());
}

TEST(FaultVerify, WrongSeqFails) {
  CleanRun run;
  run.log[0].seq = 7;
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.wrong_seq, 1u);
}

TEST(FaultVerify, MessageInAnotherConversationFails) {
  CleanRun run;
  run.histories["c2"] = history({{1, "m0-2"}, {2, "m0-0"}});
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.misplaced, 1u);
}

TEST(FaultVerify, UnreadableConversationFails) {
  CleanRun run;
  run.histories.erase("c2");
  const Report report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.unreadable, 1u);
  EXPECT_EQ(report.lost, 0u);  // not claimed lost: it could not be looked at
}

TEST(FaultVerify, ForeignMessagesAreCountedNotFailed) {
  CleanRun run;
  run.histories["c2"] = history({{1, "m0-2"}, {2, "someone-else"}});
  const Report report = verify(run.log, run.histories);
  EXPECT_TRUE(report.ok()) << summary_line(report);
  EXPECT_EQ(report.foreign, 1u);
}

TEST(FaultVerify, ProblemsAreCapped) {
  std::vector<AckRecord> log;
  for (int i = 0; i < 50; ++i) log.push_back(ack("0", i, "c1", "m" + std::to_string(i), i + 1));
  const Report report = verify(log, {{"c1", History{}}}, 5);
  EXPECT_EQ(report.lost, 50u);
  EXPECT_EQ(report.problems.size(), 5u);
}

TEST(FaultVerify, SummaryNamesEveryCount) {
  const CleanRun run;
  const std::string line = summary_line(verify(run.log, run.histories));
  for (const char* name : {"sent=6", "acknowledged=4", "unknown=2", "found=4", "lost=0",
                           "duplicated=0", "out_of_order=0", "result=ok"})
    EXPECT_NE(line.find(name), std::string::npos) << line;
  const std::string json = summary_json(verify(run.log, run.histories));
  EXPECT_NE(json.find("\"out_of_order\":0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"ok\":true"), std::string::npos) << json;
}

TEST(FaultAckLog, ParsesRecordsAndSkipsComments) {
  std::istringstream in(
      "# chat4all ack log v1 run=r1 conversations=2\n"
      "3\t0\tbench-1\tr1-3-0\tack\t12\t1\t-\n"
      "3\t1\tbench-0\tr1-3-1\tunknown\t0\t9\thttp_503\n");
  std::string error;
  const auto log = parse_ack_log(in, error);
  ASSERT_TRUE(log) << error;
  ASSERT_EQ(log->size(), 2u);
  EXPECT_EQ((*log)[0].session, "3");
  EXPECT_EQ((*log)[0].conversation_id, "bench-1");
  EXPECT_EQ((*log)[0].message_id, "r1-3-0");
  EXPECT_TRUE((*log)[0].acknowledged);
  EXPECT_EQ((*log)[0].seq, 12u);
  EXPECT_FALSE((*log)[1].acknowledged);
  EXPECT_EQ((*log)[1].index, 1u);
}

TEST(FaultAckLog, RejectsMalformedLines) {
  for (const char* bad : {"3\t0\tbench-1\tr1-3-0\tack\t12\t1\n",       // a field short
                          "3\t0\tbench-1\tr1-3-0\tmaybe\t12\t1\t-\n",  // unknown outcome
                          "3\tx\tbench-1\tr1-3-0\tack\t12\t1\t-\n",    // index not a number
                          "3\t0\t\tr1-3-0\tack\t12\t1\t-\n"}) {        // no conversation
    std::istringstream in(std::string("# header\n") + bad);
    std::string error;
    EXPECT_FALSE(parse_ack_log(in, error)) << bad;
    EXPECT_NE(error.find("line 2"), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace chat4all::fault

namespace chat4all::fault {
namespace {

TEST(FaultVerify, ExpiredBelowFirstSeqIsNotLostButBelowItOnlyByTheRule) {
  CleanRun run;
  // Retention expired seqs 1-2 of c1: history starts at 3.
  run.histories["c1"] = history({{3, "m0-1"}, {4, "m1-1"}});
  run.histories["c1"].first_seq = run.histories["c1"].first_seq_end = 3;
  Report report = verify(run.log, run.histories);
  EXPECT_TRUE(report.ok()) << summary_line(report);
  EXPECT_EQ(report.expired, 2u);
  EXPECT_EQ(report.lost, 0u);
  EXPECT_NE(summary_line(report).find(" expired=2 "), std::string::npos);

  // Missing at or above first_seq is lost, whatever expired below.
  run.histories["c1"] = history({{3, "m0-1"}});
  run.histories["c1"].last_seq = 4;
  run.histories["c1"].first_seq = run.histories["c1"].first_seq_end = 3;
  report = verify(run.log, run.histories);
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(report.lost, 1u);

  // History that grew its start while it was read may jump to the last page's first_seq,
  // never beyond it.
  run.histories["c1"] = history({{1, "m0-0"}, {3, "m0-1"}, {4, "m1-1"}});
  run.histories["c1"].first_seq = 1;
  run.histories["c1"].first_seq_end = 3;
  report = verify(run.log, run.histories);
  EXPECT_TRUE(report.ok()) << summary_line(report);
  EXPECT_EQ(report.expired, 1u);
  run.histories["c1"].first_seq_end = 2;
  report = verify(run.log, run.histories);
  EXPECT_EQ(report.gaps, 1u);
}

}  // namespace
}  // namespace chat4all::fault
