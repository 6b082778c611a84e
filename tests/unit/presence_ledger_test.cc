// The frontend's presence reports (nodes/frontend/presence_ledger.h) and the
// stream's filter of repeated presence events (presence_frame_filter.h).
#include "nodes/frontend/presence_ledger.h"

#include <gtest/gtest.h>

#include "nodes/frontend/presence_frame_filter.h"

namespace chat4all::frontend {
namespace {

using Strings = std::vector<std::string>;

PresenceLedger::Settings settings() {
  PresenceLedger::Settings s;
  s.grace_ms = 3000;
  s.renew_ms = 5000;
  s.retry_ms = 1000;
  s.users_per_report_max = 1000;
  return s;
}

// Takes the reports due and answers each as storage would (ok, lease live).
std::vector<PresenceLedger::Report> exchange(PresenceLedger& ledger, std::int64_t now_ms,
                                             bool ok = true, bool live = true) {
  auto reports = ledger.take_reports(now_ms);
  for (const auto& report : reports) ledger.on_reported(report, ok, live, now_ms);
  return reports;
}

TEST(PresenceLedgerTest, OnlyTransitionsAreReportedAndOfflineOnlyAfterTheGrace) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  ledger.opened("t", "ann", 10);  // a second device: nothing more to tell
  auto reports = exchange(ledger, 20, true, false);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].tenant_id, "t");
  EXPECT_EQ(reports[0].online, Strings{"ann"});
  EXPECT_TRUE(reports[0].offline.empty());
  EXPECT_TRUE(exchange(ledger, 30).empty());

  ledger.closed("t", "ann", 100);
  EXPECT_TRUE(exchange(ledger, 200).empty());  // one stream is still open
  ledger.closed("t", "ann", 1000);
  EXPECT_TRUE(exchange(ledger, 3999).empty());  // within the grace
  reports = exchange(ledger, 4000);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].offline, Strings{"ann"});
  EXPECT_EQ(ledger.users(), 0u);
  EXPECT_TRUE(ledger.idle());
}

TEST(PresenceLedgerTest, AReconnectWithinTheGraceIsNeverReported) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  exchange(ledger, 0, true, false);
  ledger.closed("t", "ann", 1000);
  ledger.opened("t", "ann", 2500);
  EXPECT_TRUE(exchange(ledger, 4500).empty());
  EXPECT_EQ(ledger.users(), 1u);
}

TEST(PresenceLedgerTest, AStreamGoneBeforeAnyReportIsNeverReported) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  ledger.closed("t", "ann", 5);
  EXPECT_TRUE(exchange(ledger, 10).empty());
  EXPECT_EQ(ledger.users(), 0u);
}

TEST(PresenceLedgerTest, OneReportInFlightPerTenantAndFailuresAreRetriedLater) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  ledger.opened("u", "ben", 0);
  auto first = ledger.take_reports(0);
  ASSERT_EQ(first.size(), 2u);  // one per tenant
  ledger.opened("t", "cid", 1);
  EXPECT_TRUE(ledger.take_reports(2).empty());  // both tenants have one in flight
  ledger.on_reported(first[0], false, false, 10);
  ledger.on_reported(first[1], true, false, 10);
  EXPECT_TRUE(ledger.take_reports(500).empty());  // "t" waits for its retry
  auto retry = ledger.take_reports(1010);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].tenant_id, "t");
  EXPECT_EQ(retry[0].online, (Strings{"ann", "cid"}));
}

TEST(PresenceLedgerTest, TheLeaseIsRenewedWhileUsersAreOnlineAndALostLeaseResendsEveryone) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  ledger.opened("t", "ben", 0);
  exchange(ledger, 0, true, false);
  EXPECT_TRUE(exchange(ledger, 4999).empty());
  auto renewal = ledger.take_reports(5000);
  ASSERT_EQ(renewal.size(), 1u);
  EXPECT_TRUE(renewal[0].online.empty());
  EXPECT_TRUE(renewal[0].offline.empty());
  // Storage says the lease was not live: it dropped what this instance had said.
  ledger.on_reported(renewal[0], true, false, 5000);
  auto again = exchange(ledger, 5001);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].online, (Strings{"ann", "ben"}));
}

TEST(PresenceLedgerTest, CloseAllReportsEveryoneOfflineAtOnce) {
  PresenceLedger ledger(settings());
  ledger.opened("t", "ann", 0);
  exchange(ledger, 0, true, false);
  EXPECT_FALSE(ledger.idle());
  ledger.close_all();
  auto reports = exchange(ledger, 1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].offline, Strings{"ann"});
  EXPECT_TRUE(ledger.idle());
  ledger.closed("t", "ann", 2);  // the session's own release, later: nothing happens
  EXPECT_TRUE(ledger.take_reports(3).empty());
}

TEST(PresenceLedgerTest, AReportNamesAtMostTheBoundAndTheRestFollow) {
  PresenceLedger::Settings small = settings();
  small.users_per_report_max = 2;
  PresenceLedger ledger(small);
  for (const char* user : {"a", "b", "c"}) ledger.opened("t", user, 0);
  auto first = exchange(ledger, 0, true, false);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].online.size(), 2u);
  auto second = exchange(ledger, 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].online, Strings{"c"});
}

TEST(PresenceFrameFilterTest, LetsOneChangeThroughOnceWhateverTopicsItCameOn) {
  PresenceFrameFilter filter(2);
  EXPECT_TRUE(filter.first("ann", "online", 0));
  EXPECT_FALSE(filter.first("ann", "online", 0));  // the same change, another conversation
  EXPECT_TRUE(filter.first("ann", "offline", 500));
  EXPECT_FALSE(filter.first("ann", "offline", 500));
  EXPECT_TRUE(filter.first("ann", "online", 0));
  EXPECT_TRUE(filter.first("ben", "online", 0));
  EXPECT_TRUE(filter.first("cid", "online", 0));  // at the bound: forgets, never grows
  EXPECT_TRUE(filter.first("ann", "online", 0));  // forgotten: framed once more
}

}  // namespace
}  // namespace chat4all::frontend
