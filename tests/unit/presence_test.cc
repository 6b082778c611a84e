// Presence in the replicated state (nodes/storage/presence.h), driven through
// apply_command / run_query on an in-memory partition: reports, leases and
// their expiry, who may see a presence, hidden users, and the events that
// announce a change on the user's conversations.
#include "nodes/storage/presence.h"

#include <gtest/gtest.h>

#include "common/codec.h"
#include "tests/unit/memory_partition_state.h"

namespace chat4all::storage {
namespace {

using wire::Status;

constexpr const char* kTenant = "acme";
constexpr std::uint32_t kLeaseMs = 15000;

class PresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* user : {"ann", "ben", "cid", "dan"}) {
      wire::UserRecord record;
      record.tenant_id = kTenant;
      record.user_id = user;
      ASSERT_EQ(command(wire::CommandKind::kCreateUser, wire::CreateUser{record}, 1).status,
                Status::kOk);
    }
    // ann and ben share c1, ann and cid share c2; dan shares nothing.
    index("c1", {"ann", "ben"});
    index("c2", {"ann", "cid"});
  }

  void index(const std::string& conversation, std::vector<std::string> users) {
    ASSERT_EQ(command(wire::CommandKind::kIndexMembership,
                      wire::IndexMembership{kTenant, conversation, std::move(users), true}, 1)
                  .status,
              Status::kOk);
  }

  template <typename Body>
  DomainResult command(wire::CommandKind kind, const Body& body, std::int64_t at_ms) {
    return apply_command(
        state_, 3, wire::CommandRequest{wire::tenant_key(kTenant), kind, codec::pack_body(body)},
        at_ms);
  }

  DomainResult report(const std::string& frontend, std::vector<std::string> online,
                      std::vector<std::string> offline, std::int64_t at_ms) {
    return command(
        wire::CommandKind::kReportPresence,
        wire::PresenceReport{kTenant, frontend, kLeaseMs, std::move(online), std::move(offline)},
        at_ms);
  }

  DomainResult lookup(const std::string& user, const std::string& requester) {
    return run_query(state_, wire::QueryRequest{
                                 wire::tenant_key(kTenant), wire::QueryKind::kGetPresence,
                                 codec::pack_body(wire::PresenceLookup{kTenant, user, requester})});
  }

  wire::PresenceRecord presence(const std::string& user, const std::string& requester = "") {
    DomainResult result = lookup(user, requester);
    EXPECT_EQ(result.status, Status::kOk) << result.detail;
    return codec::unpack_body<wire::PresenceRecord>(result.body).value_or(wire::PresenceRecord{});
  }

  std::vector<wire::PresenceLease> expired(std::int64_t at_ms) {
    DomainResult result = run_query(
        state_, wire::QueryRequest{wire::partition_key(3), wire::QueryKind::kExpiredPresenceLeases,
                                   codec::pack_body(wire::PresenceSweep{at_ms, 64})});
    EXPECT_EQ(result.status, Status::kOk);
    return codec::unpack_body<std::vector<wire::PresenceLease>>(result.body).value();
  }

  unit::MemoryRecords state_;
};

// "conversation:user:state:at" of each presence event.
std::vector<std::string> described(const std::vector<wire::Event>& events) {
  std::vector<std::string> out;
  for (const auto& event : events) {
    EXPECT_EQ(event.kind, "presence");
    EXPECT_EQ(event.tenant_id, kTenant);
    out.push_back(event.conversation_id + ":" + event.user_id + ":" + event.state + ":" +
                  std::to_string(event.at_ms));
  }
  return out;
}

using Strings = std::vector<std::string>;

TEST_F(PresenceTest, OnlineWhileAnyFrontendHoldsAStreamThenOfflineWithLastSeen) {
  EXPECT_EQ(presence("ann").state, "offline");
  EXPECT_EQ(presence("ann").last_seen_at_ms, 0);

  DomainResult first = report("fe-1.a", {"ann"}, {}, 1000);
  ASSERT_EQ(first.status, Status::kOk);
  EXPECT_FALSE(codec::unpack_body<wire::PresenceReportResult>(first.body)->lease_was_live);
  // Announced once on each of ann's conversations, nowhere else.
  EXPECT_EQ(described(first.events), (Strings{"c1:ann:online:0", "c2:ann:online:0"}));
  EXPECT_EQ(presence("ann").state, "online");

  // A second frontend: no change anyone sees.
  DomainResult second = report("fe-2.b", {"ann"}, {}, 1100);
  EXPECT_TRUE(second.events.empty());
  // The first lets go: still online through the second.
  DomainResult release = report("fe-1.a", {}, {"ann"}, 1200);
  EXPECT_TRUE(codec::unpack_body<wire::PresenceReportResult>(release.body)->lease_was_live);
  EXPECT_TRUE(release.events.empty());
  EXPECT_EQ(presence("ann").state, "online");

  DomainResult gone = report("fe-2.b", {}, {"ann"}, 5000);
  EXPECT_EQ(described(gone.events), (Strings{"c1:ann:offline:5000", "c2:ann:offline:5000"}));
  EXPECT_EQ(presence("ann").state, "offline");
  EXPECT_EQ(presence("ann").last_seen_at_ms, 5000);

  // Reporting what is already so changes nothing and announces nothing.
  EXPECT_TRUE(report("fe-2.b", {}, {"ann"}, 6000).events.empty());
  EXPECT_EQ(presence("ann").last_seen_at_ms, 5000);
}

TEST_F(PresenceTest, ACrashedFrontendsUsersGoOfflineWhenItsLeaseExpires) {
  report("fe-1.a", {"ann", "ben"}, {}, 1000);
  report("fe-2.b", {"ben"}, {}, 1000);
  // fe-2 keeps renewing, fe-1 is silent from now on.
  report("fe-2.b", {}, {}, 12000);
  EXPECT_TRUE(expired(1000 + kLeaseMs - 1).empty());
  auto leases = expired(1000 + kLeaseMs);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].frontend, "fe-1.a");
  EXPECT_EQ(leases[0].renewed_at_ms, 1000);

  DomainResult expiry = command(wire::CommandKind::kExpirePresence,
                                wire::PresenceExpiry{kTenant, "fe-1.a"}, 1000 + kLeaseMs + 50);
  ASSERT_EQ(expiry.status, Status::kOk);
  // ann goes, last seen when fe-1 last vouched for her; ben stays through fe-2.
  EXPECT_EQ(described(expiry.events), (Strings{"c1:ann:offline:1000", "c2:ann:offline:1000"}));
  EXPECT_EQ(presence("ann").state, "offline");
  EXPECT_EQ(presence("ann").last_seen_at_ms, 1000);
  EXPECT_EQ(presence("ben").state, "online");
  EXPECT_TRUE(expired(1000 + kLeaseMs + 100).empty());

  // A late report of the expired instance learns its lease was not live, so it reports all again.
  DomainResult late = report("fe-1.a", {"ann"}, {}, 17000);
  EXPECT_FALSE(codec::unpack_body<wire::PresenceReportResult>(late.body)->lease_was_live);
  EXPECT_EQ(presence("ann").state, "online");
}

TEST_F(PresenceTest, AnExpiryOvertakenByARenewalChangesNothing) {
  report("fe-1.a", {"ann"}, {}, 1000);
  ASSERT_EQ(expired(1000 + kLeaseMs).size(), 1u);  // what the sweep saw
  report("fe-1.a", {}, {}, 1000 + kLeaseMs + 10);  // the renewal applied first
  DomainResult expiry = command(wire::CommandKind::kExpirePresence,
                                wire::PresenceExpiry{kTenant, "fe-1.a"}, 1000 + kLeaseMs + 20);
  EXPECT_EQ(expiry.status, Status::kOk);
  EXPECT_TRUE(expiry.events.empty());
  EXPECT_EQ(presence("ann").state, "online");
}

TEST_F(PresenceTest, OnlyTheUserAdminsAndThoseSharingAConversationSeeIt) {
  report("fe-1.a", {"ann"}, {}, 1000);
  EXPECT_EQ(presence("ann", "ann").state, "online");
  EXPECT_EQ(presence("ann", "ben").state, "online");
  EXPECT_EQ(presence("ann", "cid").state, "online");
  EXPECT_EQ(presence("ann", "").state, "online");
  // ben and cid share nothing with each other; dan shares nothing with anyone.
  EXPECT_EQ(lookup("cid", "ben").status, Status::kNotFound);
  EXPECT_EQ(lookup("ann", "dan").status, Status::kNotFound);
  // Exactly as for a user that does not exist.
  DomainResult missing = lookup("zed", "ann");
  EXPECT_EQ(missing.status, Status::kNotFound);
  EXPECT_EQ(missing.field, "user_id");
  EXPECT_EQ(lookup("ann", "dan").detail, missing.detail);
}

TEST_F(PresenceTest, AHiddenUserIsOfflineWithoutLastSeenToOthersAndItsChangesAreNotAnnounced) {
  report("fe-1.a", {"ann"}, {}, 1000);
  wire::UpdateUser hide{kTenant, "ann", false, "", false, "", true, true};
  DomainResult hidden = command(wire::CommandKind::kUpdateUser, hide, 2000);
  ASSERT_EQ(hidden.status, Status::kOk);
  EXPECT_TRUE(codec::unpack_body<wire::UserRecord>(hidden.body)->presence_hidden);
  // Online at the time: the others see her go offline, with nothing to tell of when.
  EXPECT_EQ(described(hidden.events), (Strings{"c1:ann:offline:0", "c2:ann:offline:0"}));
  EXPECT_EQ(presence("ann", "ben").state, "offline");
  EXPECT_EQ(presence("ann", "ann").state, "online");  // she sees herself as she is

  EXPECT_TRUE(report("fe-1.a", {}, {"ann"}, 3000).events.empty());
  EXPECT_EQ(presence("ann", "ben").last_seen_at_ms, 0);
  EXPECT_EQ(presence("ann", "ann").last_seen_at_ms, 3000);
  EXPECT_TRUE(report("fe-1.a", {"ann"}, {}, 4000).events.empty());

  // Shown again while online: announced online; the same flag again announces nothing.
  wire::UpdateUser show{kTenant, "ann", false, "", false, "", true, false};
  EXPECT_EQ(described(command(wire::CommandKind::kUpdateUser, show, 5000).events),
            (Strings{"c1:ann:online:0", "c2:ann:online:0"}));
  EXPECT_TRUE(command(wire::CommandKind::kUpdateUser, show, 5100).events.empty());
  EXPECT_EQ(presence("ann", "ben").state, "online");
}

TEST_F(PresenceTest, MalformedReportsAreRefusedWithoutChange) {
  const auto before = state_.records;
  EXPECT_EQ(report("bad/name", {"ann"}, {}, 1000).field, "frontend");
  EXPECT_EQ(report("fe-1.a", {"a/b"}, {}, 1000).status, Status::kInvalid);
  EXPECT_EQ(command(wire::CommandKind::kReportPresence,
                    wire::PresenceReport{kTenant, "fe-1.a", 10, {"ann"}, {}}, 1000)
                .field,
            "lease_ms");
  Strings many(wire::kPresenceReportUsersMax + 1, "ann");
  EXPECT_EQ(report("fe-1.a", many, {}, 1000).status, Status::kInvalid);
  EXPECT_EQ(state_.records, before);
}

TEST_F(PresenceTest, TypingIsAllowedOnlyToMembersOfTheConversation) {
  wire::ConversationRecord record;
  record.tenant_id = kTenant;
  record.conversation_id = "c1";
  record.type = "group";
  record.members = {"ann", "ben"};
  record.created_by = "ann";
  ASSERT_EQ(
      command(wire::CommandKind::kCreateConversation, wire::CreateConversation{record}, 1).status,
      Status::kOk);
  auto typing = [&](const std::string& tenant, const std::string& conversation,
                    const std::string& user) {
    return run_query(
               state_,
               wire::QueryRequest{conversation, wire::QueryKind::kTyping,
                                  codec::pack_body(wire::TypingNotice{tenant, conversation, user})})
        .status;
  };
  EXPECT_EQ(typing(kTenant, "c1", "ben"), Status::kOk);
  EXPECT_EQ(typing(kTenant, "c1", "cid"), Status::kNotFound);
  EXPECT_EQ(typing(kTenant, "c1", ""), Status::kNotFound);
  EXPECT_EQ(typing("other", "c1", "ben"), Status::kNotFound);
  EXPECT_EQ(typing(kTenant, "c9", "ben"), Status::kNotFound);
}

}  // namespace
}  // namespace chat4all::storage
