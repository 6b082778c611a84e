// Retention and erasure on the apply path (nodes/storage/retention.h and
// erasure.h through MessageStore): the leader's sweep, kExpireMessages,
// kSetRetention and the erasure commands as committed log entries, on several
// stores that must end identical, one of them lagging and catching up by a
// snapshot install in between.
#include "nodes/storage/retention.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/codec.h"
#include "nodes/storage/erasure.h"
#include "nodes/storage/message_store.h"
#include "schema/records.h"
#include "tests/unit/test_util.h"

namespace chat4all::storage {
namespace {

using consensus::Ready;
using wire::LogEntry;
using wire::Status;

constexpr PartitionId kP = 5;
const std::string kTenant = "acme";
const std::string kConversation = "c_retained";

LogEntry entry_of(const wire::ReplicatedCommand& command) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, command);
  return LogEntry{1, std::string(buffer.data(), buffer.size())};
}

template <typename Body>
LogEntry command(wire::CommandKind kind, const Body& body, std::int64_t at_ms) {
  return entry_of({{}, at_ms, wire::CommandRequest{kConversation, kind, codec::pack_body(body)}});
}

LogEntry create_conversation(std::int64_t at_ms, const std::string& type = "private") {
  wire::ConversationRecord record;
  record.tenant_id = kTenant;
  record.conversation_id = kConversation;
  record.type = type;
  record.members = {"alice", "bob"};
  record.created_by = "alice";
  return command(wire::CommandKind::kCreateConversation, wire::CreateConversation{record}, at_ms);
}

LogEntry send(const std::string& id, std::int64_t stored_at_ms, const std::string& sender = "alice",
              const std::string& metadata = "") {
  wire::AppendRequest append;
  append.metadata = metadata;
  append.conversation_id = kConversation;
  append.message_id = id;
  append.sender_id = sender;
  append.payload = {"text", "text of " + id};
  append.tenant_id = kTenant;
  return entry_of({append, stored_at_ms});
}

LogEntry expire(std::int64_t cutoff_ms, std::uint64_t up_to_seq, std::int64_t at_ms) {
  return command(wire::CommandKind::kExpireMessages,
                 wire::MessageExpiry{kTenant, kConversation, cutoff_ms, up_to_seq}, at_ms);
}

// A replica's store, applying committed entries in order as its own leader would hand them.
class Replica {
 public:
  Replica(const unit::TempDir& dir, const std::string& name) {
    MessageStore::Options options;
    options.directory = dir.path() / name;
    options.map_size_initial_bytes = 1 << 20;
    options.map_size_max_bytes = 64 << 20;
    store = std::make_unique<MessageStore>(options);
  }
  std::vector<AppendOutcome> apply(const std::vector<LogEntry>& entries) {
    const consensus::Restored restored = store->load_partition(kP);
    const std::uint64_t last = restored.snapshot_index + restored.entries.size();
    Ready ready;
    ready.first_new_index = ready.first_apply_index = last + 1;
    ready.new_entries = ready.to_apply = entries;
    std::vector<std::vector<AppendOutcome>> outcomes;
    std::string error;
    EXPECT_EQ(store->write_turn({PartitionWrite{kP, &ready}}, outcomes, error),
              MessageStore::WriteResult::kDurable)
        << error;
    return outcomes.at(0);
  }
  void install_from(const Replica& leader) {
    std::uint64_t index = 0;
    Ready ready;
    const std::string data = leader.store->snapshot(kP, index);
    ready.install = consensus::SnapshotInstall{index, 1, data};
    ready.first_new_index = index + 1;
    std::vector<std::vector<AppendOutcome>> outcomes;
    std::string error;
    ASSERT_EQ(store->write_turn({PartitionWrite{kP, &ready}}, outcomes, error),
              MessageStore::WriteResult::kDurable)
        << error;
  }
  std::string state() const {
    std::uint64_t index = 0;
    return store->snapshot(kP, index);
  }
  wire::ReadReply history(std::uint64_t from = 1) const {
    wire::ReadRequest read{kConversation, from, 1000, kTenant, "alice"};
    return store->read_history(kP, read, 1000);
  }
  wire::QueryReply query(wire::QueryKind kind, const std::string& body) const {
    return store->query(kP, wire::QueryRequest{kConversation, kind, body});
  }

  std::unique_ptr<MessageStore> store;
};

std::vector<std::uint64_t> seqs(const wire::ReadReply& reply) {
  std::vector<std::uint64_t> out;
  for (const auto& message : reply.messages) out.push_back(message.seq);
  return out;
}

std::vector<std::uint64_t> range(std::uint64_t first, std::uint64_t last) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t seq = first; seq <= last; ++seq) out.push_back(seq);
  return out;
}

TEST(Retention, RetentionIsTheShorterOfTenantAndConversation) {
  EXPECT_FALSE(retention_ms(0, 0));
  EXPECT_EQ(retention_ms(60000, 0), 60000);
  EXPECT_EQ(retention_ms(0, 30), 30000);
  EXPECT_EQ(retention_ms(60000, 30), 30000);
  EXPECT_EQ(retention_ms(10000, 30), 10000);
}

TEST(Retention, ExpiryWithALaggingReplicaAndASnapshotInBetweenLeavesEveryReplicaEqual) {
  unit::TempDir dir;
  Replica leader(dir, "leader"), follower(dir, "follower"), lagging(dir, "lagging");
  std::vector<LogEntry> first{create_conversation(500)};
  for (int i = 1; i <= 20; ++i) first.push_back(send("m" + std::to_string(i), 1000 * i));
  // Messages stored at or before 5,500 go, and no further than seq 20.
  const std::vector<LogEntry> second{expire(5500, 20, 21000)};
  for (Replica* replica : {&leader, &follower, &lagging}) replica->apply(first);
  for (Replica* replica : {&leader, &follower}) {
    const auto outcomes = replica->apply(second);
    ASSERT_EQ(outcomes.at(0).status, Status::kOk) << outcomes.at(0).detail;
    auto result = codec::unpack_body<wire::MessageExpiryResult>(outcomes.at(0).body);
    ASSERT_TRUE(result);
    EXPECT_EQ(result->expired, 5u);
    EXPECT_EQ(result->first_seq, 6u);
  }
  // The lagging replica missed `second` and catches up from the leader's state.
  EXPECT_NE(lagging.state(), leader.state());
  lagging.install_from(leader);
  EXPECT_EQ(lagging.state(), leader.state());

  std::vector<LogEntry> third;
  for (int i = 21; i <= 25; ++i) third.push_back(send("m" + std::to_string(i), 1000 * i));
  // A cutoff beyond the entry's own stamp is held to the stamp; the head decided bounds it too.
  third.push_back(expire(12000, 25, 26000));
  third.push_back(expire(99000, 14, 26500));
  for (Replica* replica : {&leader, &follower, &lagging}) replica->apply(third);

  for (Replica* replica : {&leader, &follower, &lagging}) {
    const wire::ReadReply history = replica->history();
    ASSERT_EQ(history.status, Status::kOk);
    EXPECT_EQ(history.first_seq, 15u);
    EXPECT_EQ(history.last_seq, 25u) << "the head stays: seqs are never reused";
    EXPECT_EQ(seqs(history), range(15, 25));
    EXPECT_EQ(seqs(replica->history(3)), range(15, 25)) << "a read below first_seq starts there";
    wire::ReadRequest backward{kConversation, 1, 50, kTenant, "alice", 16};
    EXPECT_EQ(seqs(replica->store->read_history(kP, backward, 50)), range(15, 15));
    const wire::QueryReply gone = replica->query(
        wire::QueryKind::kGetMessage,
        codec::pack_body(wire::ConversationLookup{kTenant, kConversation, "alice", "m3"}));
    EXPECT_EQ(gone.status, Status::kNotFound);
    const wire::QueryReply summary = replica->query(
        wire::QueryKind::kConversationSummary,
        codec::pack_body(wire::ConversationLookup{kTenant, kConversation, "alice", ""}));
    auto record = codec::unpack_body<wire::ConversationSummary>(summary.body);
    ASSERT_TRUE(record);
    EXPECT_EQ(record->conversation.first_seq, 15u);
  }
  EXPECT_EQ(follower.state(), leader.state());
  EXPECT_EQ(lagging.state(), leader.state());

  // Its dedup entry went with it: the same id again is a new message with a new seq.
  const auto again = leader.apply({send("m3", 30000)});
  EXPECT_EQ(again.at(0).status, Status::kOk);
  EXPECT_FALSE(again.at(0).duplicate);
  EXPECT_EQ(again.at(0).seq, 26u);
}

TEST(Retention, OneEntryExpiresABoundedBatch) {
  unit::TempDir dir;
  Replica replica(dir, "one");
  std::vector<LogEntry> log{create_conversation(1)};
  const std::uint64_t count = wire::kExpiryMessagesPerCommandMax + 100;
  for (std::uint64_t i = 1; i <= count; ++i) log.push_back(send("m" + std::to_string(i), 1000));
  log.push_back(expire(2000, count, 3000));
  const auto outcomes = replica.apply(log);
  auto result = codec::unpack_body<wire::MessageExpiryResult>(outcomes.back().body);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->expired, wire::kExpiryMessagesPerCommandMax);
  EXPECT_EQ(replica.history().first_seq, wire::kExpiryMessagesPerCommandMax + 1);
  replica.apply({expire(2000, count, 3000)});
  EXPECT_EQ(replica.history().first_seq, count + 1);
  EXPECT_TRUE(replica.history().messages.empty());
  EXPECT_EQ(replica.history().last_seq, count);
}

TEST(Retention, TheSweepProposesWhatIsDueByTheLeadersClockOnly) {
  unit::TempDir dir;
  Replica replica(dir, "sweep");
  std::vector<LogEntry> log{create_conversation(1)};
  for (int i = 1; i <= 4; ++i) log.push_back(send("m" + std::to_string(i), 10000 * i));
  replica.apply(log);
  auto sweep = [&](std::int64_t at_ms, std::int64_t tenant_ms) {
    wire::RetentionSweep body{at_ms, {}, {}, 100};
    if (tenant_ms) body.tenant_retention_ms.emplace_back(kTenant, tenant_ms);
    const auto reply = replica.store->query(
        kP, wire::QueryRequest{wire::partition_key(kP), wire::QueryKind::kRetentionSweep,
                               codec::pack_body(body)});
    EXPECT_EQ(reply.status, Status::kOk);
    return codec::unpack_body<wire::RetentionSweepResult>(reply.body)
        .value_or(wire::RetentionSweepResult{});
  };
  EXPECT_TRUE(sweep(1000000, 0).expiries.empty()) << "no retention: kept forever";
  EXPECT_TRUE(sweep(15000, 10000).expiries.empty()) << "the oldest is not due yet";
  const auto due = sweep(25000, 10000);
  ASSERT_EQ(due.expiries.size(), 1u);
  EXPECT_EQ(due.expiries[0].cutoff_ms, 15000);
  EXPECT_EQ(due.expiries[0].up_to_seq, 4u);
  EXPECT_TRUE(due.next_after.empty()) << "the whole partition was scanned";

  // A conversation's own retention shortens the tenant's; longer is refused.
  auto set = [&](std::int64_t seconds, const std::string& by, std::int64_t tenant_s) {
    return replica
        .apply({command(wire::CommandKind::kSetRetention,
                        wire::SetRetention{kTenant, kConversation, by, seconds, tenant_s}, 50000)})
        .at(0);
  };
  EXPECT_EQ(set(100, "alice", 60).status, Status::kInvalid);
  EXPECT_EQ(set(0, "alice", 60).status, Status::kInvalid);
  EXPECT_EQ(set(5, "mallory", 60).status, Status::kNotFound);
  EXPECT_EQ(set(5, "bob", 60).status, Status::kOk) << "any member of a private conversation";
  const auto shortened = sweep(25000, 60000);
  ASSERT_EQ(shortened.expiries.size(), 1u);
  EXPECT_EQ(shortened.expiries[0].cutoff_ms, 20000);
  replica.apply({expire(shortened.expiries[0].cutoff_ms, 4, 25000)});
  EXPECT_EQ(seqs(replica.history()), range(3, 4));
}

TEST(Retention, OnlyTheCreatorOfAGroupChangesItsRetention) {
  unit::TempDir dir;
  Replica replica(dir, "group");
  replica.apply({create_conversation(1, "group")});
  auto set = [&](const std::string& by) {
    return replica
        .apply({command(wire::CommandKind::kSetRetention,
                        wire::SetRetention{kTenant, kConversation, by, 30, 0}, 2)})
        .at(0);
  };
  const AppendOutcome refused = set("bob");
  EXPECT_EQ(refused.status, Status::kInvalid);
  EXPECT_EQ(refused.field, "retention_s");
  EXPECT_EQ(set("alice").status, Status::kOk);
  EXPECT_EQ(set("").status, Status::kOk) << "an admin of the tenant";
}

TEST(Retention, OutboxEventsOfExpiredMessagesAreBlanked) {
  unit::TempDir dir;
  Replica replica(dir, "outbox");
  replica.apply(
      {create_conversation(1), send("m1", 1000), send("m2", 5000), expire(2000, 2, 6000)});
  const auto reply = replica.store->query(
      kP,
      wire::QueryRequest{wire::partition_key(kP), wire::QueryKind::kReadOutbox,
                         codec::pack_body(wire::ReadOutbox{kP, 0, 100, wire::kOutboxWebhooks})});
  auto events = codec::unpack_body<std::vector<wire::OutboxEvent>>(reply.body);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u) << "still there to be acknowledged";
  EXPECT_EQ((*events)[0].type, "message.expired");
  EXPECT_EQ((*events)[1].type, "message.sent");
}

// ---- erasure

LogEntry create_user(const std::string& user, std::int64_t at_ms) {
  wire::UserRecord record;
  record.tenant_id = kTenant;
  record.user_id = user;
  record.identities = {{"whatsapp", "+5511" + user}};
  return command(wire::CommandKind::kCreateUser, wire::CreateUser{record}, at_ms);
}

template <typename Result>
Result result_of(const AppendOutcome& outcome) {
  EXPECT_EQ(outcome.status, Status::kOk) << outcome.detail;
  return codec::unpack_body<Result>(outcome.body).value_or(Result{});
}

bool log_mentions(const MessageStore& store, const std::string& text) {
  for (const auto& entry : store.load_partition(kP).entries)
    if (entry.data.find(text) != std::string::npos) return true;
  return false;
}

TEST(Erasure, ErasureWithALaggingReplicaAndASnapshotInBetweenLeavesEveryReplicaEqual) {
  unit::TempDir dir;
  Replica leader(dir, "leader"), follower(dir, "follower"), lagging(dir, "lagging");
  const std::vector<LogEntry> first{
      create_conversation(1),
      create_user("bob", 2),
      command(wire::CommandKind::kIndexMembership,
              wire::IndexMembership{kTenant, kConversation, {"alice", "bob"}, true}, 3),
      send("m1", 10),
      send("m2", 20, "bob", R"({"secret":"bob's"})"),
      send("m3", 30),
      send("m4", 40, "bob")};
  const std::vector<LogEntry> begin{
      command(wire::CommandKind::kEraseUser, wire::EraseUser{kTenant, "bob"}, 50)};
  for (Replica* replica : {&leader, &follower, &lagging}) replica->apply(first);
  for (Replica* replica : {&leader, &follower}) {
    const auto job = result_of<wire::EraseJob>(replica->apply(begin).at(0));
    EXPECT_EQ(job.state, wire::kErasePending);
    EXPECT_EQ(job.conversations, std::vector<std::string>{kConversation});
    EXPECT_EQ(job.identities_removed, 1u);
  }
  lagging.install_from(leader);

  const std::vector<LogEntry> messages{
      command(wire::CommandKind::kEraseMessages,
              wire::EraseMessages{kTenant, kConversation, "bob", 1}, 60),
      command(wire::CommandKind::kEraseProgress, wire::EraseProgress{kTenant, "bob", 0, 2}, 70),
      // A replay of the progress changes nothing.
      command(wire::CommandKind::kEraseProgress, wire::EraseProgress{kTenant, "bob", 0, 2}, 80)};
  for (Replica* replica : {&leader, &follower, &lagging}) {
    const auto outcomes = replica->apply(messages);
    const auto erased = result_of<wire::EraseMessagesResult>(outcomes.at(0));
    EXPECT_EQ(erased.erased, 2u);
    EXPECT_TRUE(erased.done);
    EXPECT_EQ(result_of<wire::EraseJob>(outcomes.at(2)).messages_erased, 2u);
  }

  // A replica that replays the leader's stored log from the start (its scrubbed entries)
  // ends where the others are.
  Replica replayed(dir, "replayed");
  std::vector<LogEntry> stored = leader.store->load_partition(kP).entries;
  ASSERT_EQ(stored.size(), first.size() + begin.size() + messages.size());
  replayed.apply(stored);
  EXPECT_FALSE(log_mentions(*leader.store, "text of m2")) << "the stored log was scrubbed";
  EXPECT_FALSE(log_mentions(*leader.store, "bob's"));
  EXPECT_TRUE(log_mentions(*leader.store, "text of m1")) << "alice's messages are untouched";

  for (Replica* replica : {&leader, &follower, &lagging, &replayed}) {
    const wire::ReadReply history = replica->history();
    ASSERT_EQ(history.messages.size(), 4u);
    EXPECT_EQ(seqs(history), range(1, 4)) << "order and seqs stay";
    EXPECT_FALSE(history.messages[0].erased);
    EXPECT_EQ(history.messages[0].payload.text, "text of m1");
    for (int i : {1, 3}) {
      EXPECT_TRUE(history.messages[i].erased);
      EXPECT_TRUE(history.messages[i].payload.text.empty());
      EXPECT_TRUE(history.messages[i].metadata.empty());
      EXPECT_EQ(history.messages[i].sender_id, "bob");
    }
    const auto user = replica->query(wire::QueryKind::kGetUser,
                                     codec::pack_body(wire::TenantLookup{kTenant, "bob"}));
    EXPECT_EQ(user.status, Status::kNotFound) << "no login from now on";
    const auto identity = replica->query(
        wire::QueryKind::kResolveIdentity,
        codec::pack_body(wire::IdentityChange{kTenant, "", {"whatsapp", "+5511bob"}}));
    EXPECT_EQ(identity.status, Status::kNotFound);
    const auto job = replica->query(wire::QueryKind::kGetEraseJob,
                                    codec::pack_body(wire::TenantLookup{kTenant, "bob"}));
    auto done = codec::unpack_body<wire::EraseJob>(job.body);
    ASSERT_TRUE(done);
    EXPECT_EQ(done->state, wire::kEraseDone);
    EXPECT_EQ(done->conversations_done, 1u);
  }
  EXPECT_EQ(follower.state(), leader.state());
  EXPECT_EQ(lagging.state(), leader.state());
  EXPECT_EQ(replayed.state(), leader.state());
  EXPECT_EQ(leader.state().find("text of m4"), std::string::npos) << "nor in a snapshot";

  // Asking again answers the same job.
  const auto again = result_of<wire::EraseJob>(leader.apply(begin).at(0));
  EXPECT_EQ(again.state, wire::kEraseDone);
  EXPECT_EQ(again.messages_erased, 2u);
}

TEST(Erasure, AnErasedUsersIdIsNotGivenOutAgain) {
  // Its old tokens are refused by the record's absence alone, so a new user must not bring
  // the record back.
  unit::TempDir dir;
  Replica replica(dir, "reuse");
  const auto outcomes =
      replica.apply({create_user("bob", 1),
                     command(wire::CommandKind::kEraseUser, wire::EraseUser{kTenant, "bob"}, 2),
                     create_user("bob", 3), create_user("carol", 4)});
  EXPECT_EQ(outcomes.at(1).status, Status::kOk) << outcomes.at(1).detail;
  EXPECT_EQ(outcomes.at(2).status, Status::kExists);
  EXPECT_EQ(outcomes.at(2).field, "user_id");
  EXPECT_EQ(outcomes.at(3).status, Status::kOk) << outcomes.at(3).detail;
}

TEST(Erasure, AnUnknownUserIsNotFoundAndALongConversationIsErasedInBoundedSteps) {
  unit::TempDir dir;
  Replica replica(dir, "bounded");
  std::vector<LogEntry> log{create_conversation(1)};
  const std::uint64_t count = wire::kEraseScanMax + 10;
  for (std::uint64_t i = 1; i <= count; ++i)
    log.push_back(send("m" + std::to_string(i), 10, i % 2 ? "alice" : "bob"));
  log.push_back(command(wire::CommandKind::kEraseUser, wire::EraseUser{kTenant, "nobody"}, 20));
  const auto outcomes = replica.apply(log);
  EXPECT_EQ(outcomes.back().status, Status::kNotFound);
  EXPECT_EQ(outcomes.back().field, "user_id");
  const auto step = result_of<wire::EraseMessagesResult>(
      replica
          .apply({command(wire::CommandKind::kEraseMessages,
                          wire::EraseMessages{kTenant, kConversation, "bob", 1}, 30)})
          .at(0));
  EXPECT_FALSE(step.done);
  EXPECT_EQ(step.next_seq, wire::kEraseScanMax + 1);
  EXPECT_EQ(step.erased, wire::kEraseScanMax / 2);
  const auto last = result_of<wire::EraseMessagesResult>(
      replica
          .apply({command(wire::CommandKind::kEraseMessages,
                          wire::EraseMessages{kTenant, kConversation, "bob", step.next_seq}, 40)})
          .at(0));
  EXPECT_TRUE(last.done);
  EXPECT_EQ(last.erased, 5u);
}

}  // namespace
}  // namespace chat4all::storage
