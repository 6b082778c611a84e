// The partition state machine beyond the log (nodes/storage/domain.h) on an
// in-memory PartitionState: directory, membership, states, horizons, history.
#include "nodes/storage/domain.h"

#include <gtest/gtest.h>

#include <map>

#include "common/codec.h"
#include "tests/unit/memory_partition_state.h"

namespace chat4all::storage {
namespace {

using wire::Status;

class MemoryState final : public unit::MemoryRecords {
 public:
  std::optional<wire::StoredMessage> message(std::string_view conversation,
                                             std::uint64_t seq) const override {
    auto it = messages.find({std::string(conversation), seq});
    if (it == messages.end()) return std::nullopt;
    return it->second;
  }
  std::uint64_t head(std::string_view conversation) const override {
    auto it = heads.find(std::string(conversation));
    return it == heads.end() ? 0 : it->second;
  }
  std::optional<std::uint64_t> seq_of(std::string_view conversation,
                                      std::string_view message_id) const override {
    for (const auto& [key, message] : messages)
      if (key.first == conversation && message.message_id == message_id) return key.second;
    return std::nullopt;
  }

  // What the message store does for an append, minus dedup.
  DomainResult append(wire::AppendRequest request, std::int64_t at_ms) {
    DomainResult check = check_append(*this, request);
    if (check.status != Status::kOk) return check;
    const std::uint64_t seq = ++heads[request.conversation_id];
    wire::StoredMessage stored{request.conversation_id,
                               seq,
                               request.message_id,
                               request.sender_id,
                               request.recipients,
                               request.payload,
                               at_ms,
                               at_ms};
    messages[{request.conversation_id, seq}] = stored;
    check.outbox_dropped = note_appended(*this, 7, stored, request.tenant_id,
                                         /*route_to_channels=*/true, check.events);
    return check;
  }

  std::map<std::pair<std::string, std::uint64_t>, wire::StoredMessage> messages;
  std::map<std::string, std::uint64_t> heads;
};

template <typename Body>
DomainResult command(MemoryState& state, std::string key, wire::CommandKind kind, const Body& body,
                     std::int64_t at_ms = 1000) {
  return apply_command(state, 7, wire::CommandRequest{std::move(key), kind, codec::pack_body(body)},
                       at_ms);
}

template <typename Result, typename Body>
Result query_ok(const MemoryState& state, wire::QueryKind kind, const Body& body) {
  DomainResult result = run_query(state, wire::QueryRequest{"k", kind, codec::pack_body(body)});
  EXPECT_EQ(result.status, Status::kOk) << result.detail;
  return codec::unpack_body<Result>(result.body).value();
}

wire::ConversationRecord conversation(const std::string& tenant, const std::string& id,
                                      std::vector<std::string> members,
                                      const std::string& type = "group") {
  wire::ConversationRecord record;
  record.tenant_id = tenant;
  record.conversation_id = id;
  record.type = type;
  record.members = std::move(members);
  record.created_by = record.members.front();
  return record;
}

wire::AppendRequest message(const std::string& tenant, const std::string& conversation,
                            const std::string& id, const std::string& sender) {
  wire::AppendRequest request;
  request.tenant_id = tenant;
  request.conversation_id = conversation;
  request.message_id = id;
  request.sender_id = sender;
  request.payload = {"text", "hi " + id};
  return request;
}

std::vector<std::string> states_of(const wire::RecipientState& state) {
  std::vector<std::string> states;
  for (const auto& change : state.history) states.push_back(change.state);
  return states;
}

TEST(DomainTest, UsersAndIdentitiesAreUniquePerTenant) {
  MemoryState state;
  wire::UserRecord alice{"acme", "alice", "Alice", "hash", {{"whatsapp", "+5511"}}};
  EXPECT_EQ(command(state, "t", wire::CommandKind::kCreateUser, wire::CreateUser{alice}).status,
            Status::kOk);
  EXPECT_EQ(command(state, "t", wire::CommandKind::kCreateUser, wire::CreateUser{alice}).status,
            Status::kExists);
  wire::UserRecord bob{"acme", "bob", "", "hash", {{"whatsapp", "+5511"}}};
  DomainResult taken = command(state, "t", wire::CommandKind::kCreateUser, wire::CreateUser{bob});
  EXPECT_EQ(taken.status, Status::kExists);
  EXPECT_EQ(taken.field, "identities");
  // The same user id in another tenant is another user.
  alice.tenant_id = "other";
  EXPECT_EQ(command(state, "t", wire::CommandKind::kCreateUser, wire::CreateUser{alice}).status,
            Status::kOk);
  auto found = query_ok<wire::UserRecord>(state, wire::QueryKind::kResolveIdentity,
                                          wire::IdentityChange{"acme", "", {"whatsapp", "+5511"}});
  EXPECT_EQ(found.user_id, "alice");
  EXPECT_EQ(found.tenant_id, "acme");
  auto missing = query_ok<std::vector<std::string>>(state, wire::QueryKind::kMissingUsers,
                                                    wire::UserSet{"acme", {"alice", "zed"}});
  EXPECT_EQ(missing, std::vector<std::string>{"zed"});
  // Relinking moves the address index with it.
  EXPECT_EQ(command(state, "t", wire::CommandKind::kLinkIdentity,
                    wire::IdentityChange{"acme", "alice", {"whatsapp", "+5522"}})
                .status,
            Status::kOk);
  bob.identities = {{"whatsapp", "+5511"}};
  EXPECT_EQ(command(state, "t", wire::CommandKind::kCreateUser, wire::CreateUser{bob}).status,
            Status::kOk);
}

TEST(DomainTest, OnlyMembersOfTheTenantMayWriteAndRead) {
  MemoryState state;
  ASSERT_EQ(command(state, "c1", wire::CommandKind::kCreateConversation,
                    wire::CreateConversation{conversation("acme", "c1", {"alice", "bob"})})
                .status,
            Status::kOk);
  DomainResult sent = state.append(message("acme", "c1", "m1", "alice"), 10);
  ASSERT_EQ(sent.status, Status::kOk);
  EXPECT_EQ(state.messages.at({"c1", 1}).recipients, std::vector<std::string>{"bob"});
  EXPECT_EQ(state.append(message("acme", "c1", "m2", "mallory"), 11).status, Status::kNotFound);
  EXPECT_EQ(state.append(message("other", "c1", "m3", "alice"), 12).status, Status::kNotFound);
  EXPECT_EQ(state.append(message("acme", "nope", "m4", "alice"), 13).status, Status::kNotFound);
  auto to_stranger = message("acme", "c1", "m5", "alice");
  to_stranger.recipients = {"mallory"};
  EXPECT_EQ(state.append(to_stranger, 14).field, "to");

  wire::ReadRequest read{"c1", 1, 50, "acme", "bob"};
  EXPECT_EQ(read_history(state, read, 500).messages.size(), 1u);
  read.requester_id = "mallory";
  EXPECT_EQ(read_history(state, read, 500).status, Status::kNotFound);
  read.requester_id = "";
  read.tenant_id = "other";
  EXPECT_EQ(read_history(state, read, 500).status, Status::kNotFound);
}

TEST(DomainTest, PrivateConversationsHaveFixedMembersAndReturnTheExistingOne) {
  MemoryState state;
  auto record = conversation("acme", "dm_1", {"alice", "bob"}, "private");
  ASSERT_EQ(command(state, "dm_1", wire::CommandKind::kCreateConversation,
                    wire::CreateConversation{record})
                .status,
            Status::kOk);
  DomainResult again = command(state, "dm_1", wire::CommandKind::kCreateConversation,
                               wire::CreateConversation{record});
  EXPECT_EQ(again.status, Status::kExists);
  EXPECT_EQ(codec::unpack_body<wire::ConversationRecord>(again.body)->members, record.members);
  EXPECT_EQ(command(state, "dm_1", wire::CommandKind::kAddMembers,
                    wire::ChangeMembers{"acme", "dm_1", "alice", {"carol"}})
                .status,
            Status::kInvalid);
  record.members.push_back("carol");
  record.conversation_id = "dm_2";
  EXPECT_EQ(command(state, "dm_2", wire::CommandKind::kCreateConversation,
                    wire::CreateConversation{record})
                .status,
            Status::kInvalid);
}

TEST(DomainTest, MembersJoinAndLeave) {
  MemoryState state;
  command(state, "g", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "g", {"alice", "bob"})});
  ASSERT_EQ(state.append(message("acme", "g", "before", "alice"), 1).status, Status::kOk);
  DomainResult added = command(state, "g", wire::CommandKind::kAddMembers,
                               wire::ChangeMembers{"acme", "g", "bob", {"carol", "alice"}});
  ASSERT_EQ(added.status, Status::kOk);
  // A new member starts at the join: nothing earlier is unread or undelivered.
  auto joined = query_ok<wire::ConversationSummary>(state, wire::QueryKind::kConversationSummary,
                                                    wire::ConversationLookup{"acme", "g", "carol"});
  EXPECT_EQ(joined.unread_count, 0u);
  EXPECT_EQ(joined.horizons.delivered_up_to, 1u);
  EXPECT_EQ(codec::unpack_body<wire::ConversationRecord>(added.body)->members.size(), 3u);
  ASSERT_EQ(added.events.size(), 1u);  // only carol joined
  EXPECT_EQ(added.events[0].user_id, "carol");
  // Not the creator: may not remove others, may leave.
  EXPECT_EQ(command(state, "g", wire::CommandKind::kRemoveMember,
                    wire::ChangeMembers{"acme", "g", "bob", {"carol"}})
                .status,
            Status::kInvalid);
  EXPECT_EQ(command(state, "g", wire::CommandKind::kRemoveMember,
                    wire::ChangeMembers{"acme", "g", "bob", {"bob"}})
                .status,
            Status::kOk);
  EXPECT_EQ(state.append(message("acme", "g", "m1", "bob"), 5).status, Status::kNotFound);
  EXPECT_EQ(command(state, "g", wire::CommandKind::kRemoveMember,
                    wire::ChangeMembers{"acme", "g", "alice", {"carol"}})
                .status,
            Status::kOk);
}

TEST(DomainTest, TheMemberLimitIsCheckedWhereTheChangeIsApplied) {
  MemoryState state;
  command(state, "g", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "g", {"alice", "bob"})});
  // Two new members would make four: refused whole, naming the field.
  DomainResult over = command(state, "g", wire::CommandKind::kAddMembers,
                              wire::ChangeMembers{"acme", "g", "alice", {"carol", "dave"}, 3});
  EXPECT_EQ(over.status, Status::kInvalid);
  EXPECT_EQ(over.field, "members");
  EXPECT_TRUE(over.events.empty());
  // Members already in and repeated names do not count twice.
  DomainResult fits =
      command(state, "g", wire::CommandKind::kAddMembers,
              wire::ChangeMembers{"acme", "g", "alice", {"carol", "carol", "bob"}, 3});
  ASSERT_EQ(fits.status, Status::kOk);
  EXPECT_EQ(codec::unpack_body<wire::ConversationRecord>(fits.body)->members,
            (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ(command(state, "g", wire::CommandKind::kAddMembers,
                    wire::ChangeMembers{"acme", "g", "alice", {"dave"}, 3})
                .status,
            Status::kInvalid);
}

// wire::ChangeMembers as it was logged before it had members_max.
struct ChangeMembersWithoutLimit {
  std::string tenant_id, conversation_id, by;
  std::vector<std::string> users;
  MSGPACK_DEFINE(tenant_id, conversation_id, by, users);
};

TEST(DomainTest, AMemberChangeLoggedWithoutALimitDecodesUnbounded) {
  const auto decoded = codec::unpack_body<wire::ChangeMembers>(
      codec::pack_body(ChangeMembersWithoutLimit{"acme", "g", "alice", {"carol"}}));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->users, std::vector<std::string>{"carol"});
  EXPECT_EQ(decoded->members_max, 0u);
}

TEST(DomainTest, StatesOnlyMoveForwardWithTheirHistory) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob", "carol"})});
  state.append(message("acme", "c", "m1", "alice"), 100);
  auto mark = [&](const std::string& user, const char* target, std::int64_t at) {
    return command(state, "c", wire::CommandKind::kMarkState,
                   wire::MarkState{"acme", "c", user, target, "m1", 0}, at);
  };
  // READ first: DELIVERED and READ are both recorded, at the same time.
  DomainResult read = mark("bob", wire::kStateRead, 200);
  ASSERT_EQ(read.status, Status::kOk);
  auto result = codec::unpack_body<wire::MarkStateResult>(read.body).value();
  EXPECT_EQ(states_of(result.message_state),
            (std::vector<std::string>{"SENT", "DELIVERED", "READ"}));
  EXPECT_EQ(read.events.size(), 2u);
  // A late DELIVERED changes nothing and emits nothing.
  DomainResult late = mark("bob", wire::kStateDelivered, 300);
  EXPECT_EQ(late.events.size(), 0u);
  EXPECT_EQ(states_of(codec::unpack_body<wire::MarkStateResult>(late.body)->message_state).size(),
            3u);
  EXPECT_EQ(mark("alice", wire::kStateRead, 300).status, Status::kInvalid);  // the sender
  EXPECT_EQ(mark("mallory", wire::kStateRead, 300).status, Status::kNotFound);

  auto with_states = query_ok<wire::MessageWithStates>(
      state, wire::QueryKind::kGetMessage, wire::ConversationLookup{"acme", "c", "alice", "m1"});
  ASSERT_EQ(with_states.states.size(), 2u);  // the sender sees every recipient
  EXPECT_EQ(with_states.states[0].recipient_id, "bob");
  EXPECT_EQ(with_states.states[0].history.back().at_ms, 200);
  EXPECT_EQ(states_of(with_states.states[1]), std::vector<std::string>{"SENT"});
  EXPECT_EQ(with_states.states[1].history[0].at_ms, 100);

  auto own = query_ok<wire::MessageWithStates>(
      state, wire::QueryKind::kGetMessage, wire::ConversationLookup{"acme", "c", "carol", "m1"});
  ASSERT_EQ(own.states.size(), 1u);  // another recipient sees only its own
  EXPECT_EQ(own.states[0].recipient_id, "carol");

  auto outbox = query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                                         wire::ReadOutbox{7, 0, 100});
  ASSERT_EQ(outbox.size(), 3u);  // sent, delivered, read
  EXPECT_EQ(outbox[0].type, "message.sent");
  EXPECT_EQ(outbox[2].type, "message.read");
  EXPECT_EQ(outbox[2].recipient_id, "bob");
  EXPECT_NE(outbox[1].event_id, outbox[2].event_id);
  command(state, "#partition:7", wire::CommandKind::kAckOutbox, wire::AckOutbox{7, 2});
  outbox = query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                                    wire::ReadOutbox{7, 0, 100});
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].index, 3u);

  // A leader whose clock is behind the one that stored the message stamps no earlier time.
  ASSERT_EQ(mark("carol", wire::kStateDelivered, 40).status, Status::kOk);
  auto carol = query_ok<wire::MessageWithStates>(
      state, wire::QueryKind::kGetMessage, wire::ConversationLookup{"acme", "c", "carol", "m1"});
  ASSERT_EQ(carol.states.size(), 1u);
  ASSERT_EQ(carol.states[0].history.size(), 2u);
  EXPECT_EQ(carol.states[0].history[1].at_ms, 100);
}

TEST(DomainTest, OutboxOverflowDropsTheOldestAndRecordsItForTheWebhooksThatMissedIt) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob"})});
  const wire::WebhookRecord sent_hook{
      "acme", "wh_sent", "https://example.com/h", {"message.sent"}, "whsec_x"};
  const wire::WebhookRecord read_hook{
      "acme", "wh_read", "https://example.com/h", {"message.read"}, "whsec_x"};
  command(state, "t", wire::CommandKind::kCreateWebhook, wire::CreateWebhook{sent_hook}, 1);
  command(state, "t", wire::CommandKind::kCreateWebhook, wire::CreateWebhook{read_hook}, 1);
  for (std::uint64_t i = 1; i <= kOutboxEventsMax; ++i)
    ASSERT_TRUE(state.append(message("acme", "c", "m" + std::to_string(i), "alice"), 10)
                    .outbox_dropped.empty());
  // One more: the oldest unacknowledged event of each stream goes, and says so.
  const DomainResult full = state.append(message("acme", "c", "m_last", "alice"), 20);
  ASSERT_EQ(full.status, Status::kOk);
  // The webhook event, the locator entry and the channel route.
  ASSERT_EQ(full.outbox_dropped.size(), 3u);
  EXPECT_EQ(full.outbox_dropped[0], "evt_00000007_0000000000000001");
  EXPECT_EQ(full.outbox_dropped[1], "locate_00000007_0000000000000001");
  EXPECT_EQ(full.outbox_dropped[2], "route_00000007_0000000000000001");
  EXPECT_EQ(query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                                     wire::ReadOutbox{7, 0, 1})
                .front()
                .index,
            2u);

  // The webhook that would have been sent it can see that it was dropped.
  auto records = query_ok<std::vector<wire::DeliveryRecord>>(
      state, wire::QueryKind::kListDeliveries, wire::TenantList{"acme", "wh_sent", "", 10});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].event_id, "evt_00000007_0000000000000001");
  EXPECT_EQ(records[0].event_type, "message.sent");
  EXPECT_EQ(records[0].state, "failed");
  EXPECT_EQ(records[0].created_at_ms, 20);
  ASSERT_EQ(records[0].attempts.size(), 1u);
  EXPECT_EQ(records[0].attempts[0].status_code, 0);
  EXPECT_NE(records[0].attempts[0].error.find("dropped from the outbox"), std::string::npos)
      << records[0].attempts[0].error;
  // One that does not hear message.sent has nothing to see.
  EXPECT_TRUE(
      query_ok<std::vector<wire::DeliveryRecord>>(state, wire::QueryKind::kListDeliveries,
                                                  wire::TenantList{"acme", "wh_read", "", 10})
          .empty());
}

TEST(DomainTest, AWebhookKeepsItsNewestDeliveryRecords) {
  MemoryState state;
  const wire::WebhookRecord hook{
      "acme", "wh1", "https://example.com/h", {"message.sent"}, "whsec_x"};
  command(state, "t", wire::CommandKind::kCreateWebhook, wire::CreateWebhook{hook});
  auto record = [&](const std::string& event_id, const std::string& status,
                    std::uint32_t kept_max) {
    wire::DeliveryRecord delivery{"acme", "wh1", event_id, "message.sent", status, {}, 1, 0};
    return command(state, "t", wire::CommandKind::kRecordDelivery,
                   wire::RecordDelivery{delivery, kept_max})
        .status;
  };
  auto listed = [&] {
    std::vector<std::string> ids;
    for (const auto& delivery : query_ok<std::vector<wire::DeliveryRecord>>(
             state, wire::QueryKind::kListDeliveries, wire::TenantList{"acme", "wh1", "", 100}))
      ids.push_back(delivery.event_id + ":" + delivery.state);
    return ids;
  };
  // Recorded first in the order e, b, d, a: "newest" is by first record, not by id.
  for (const char* id : {"evt_e", "evt_b", "evt_d"})
    ASSERT_EQ(record(id, "retrying", 3), Status::kOk);
  EXPECT_EQ(record("evt_e", "delivered", 3), Status::kOk) << "an update keeps its place";
  EXPECT_EQ(listed(),
            (std::vector<std::string>{"evt_b:retrying", "evt_d:retrying", "evt_e:delivered"}));
  EXPECT_EQ(record("evt_a", "retrying", 3), Status::kOk);
  EXPECT_EQ(listed(),
            (std::vector<std::string>{"evt_a:retrying", "evt_b:retrying", "evt_d:retrying"}));
  // 0 (an entry logged before the bound travelled) keeps the webhook's last bound.
  EXPECT_EQ(record("evt_c", "retrying", 0), Status::kOk);
  EXPECT_EQ(listed(),
            (std::vector<std::string>{"evt_a:retrying", "evt_c:retrying", "evt_d:retrying"}));
  // A smaller bound trims at once.
  EXPECT_EQ(record("evt_f", "retrying", 2), Status::kOk);
  EXPECT_EQ(listed(), (std::vector<std::string>{"evt_c:retrying", "evt_f:retrying"}));

  // Deleting the webhook takes its records and their order with it.
  command(state, "t", wire::CommandKind::kDeleteWebhook, wire::TenantLookup{"acme", "wh1"});
  for (const auto& [key, value] : state.records)
    EXPECT_FALSE(key.starts_with("D/") || key.starts_with("d/")) << key;
}

TEST(DomainTest, OneDeliveryRecordIsFoundByWebhookAndEvent) {
  MemoryState state;
  const wire::WebhookRecord hook{
      "acme", "wh1", "https://example.com/h", {"message.sent"}, "whsec_x"};
  command(state, "t", wire::CommandKind::kCreateWebhook, wire::CreateWebhook{hook});
  wire::DeliveryRecord delivery{"acme", "wh1", "evt_1", "message.sent", "retrying", {}, 5, 900};
  delivery.attempts = {{10, 503, "", 3}};
  command(state, "t", wire::CommandKind::kRecordDelivery, wire::RecordDelivery{delivery, 10});
  auto found = query_ok<wire::DeliveryRecord>(state, wire::QueryKind::kGetDelivery,
                                              wire::DeliveryLookup{"acme", "wh1", "evt_1"});
  EXPECT_EQ(found.state, "retrying");
  ASSERT_EQ(found.attempts.size(), 1u);
  EXPECT_EQ(found.attempts[0].status_code, 503);
  EXPECT_EQ(found.next_attempt_at_ms, 900);
  for (const auto& lookup :
       {wire::DeliveryLookup{"acme", "wh1", "evt_2"}, wire::DeliveryLookup{"acme", "wh2", "evt_1"},
        wire::DeliveryLookup{"other", "wh1", "evt_1"}})
    EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kGetDelivery,
                                                  codec::pack_body(lookup)})
                  .status,
              Status::kNotFound);
}

TEST(DomainTest, ChannelOutboxDeliveryRecordsAndPlatformRefs) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob"})});
  state.append(message("acme", "c", "m1", "alice"), 10);
  auto routes = query_ok<std::vector<wire::OutboxEvent>>(
      state, wire::QueryKind::kReadOutbox, wire::ReadOutbox{7, 0, 100, wire::kOutboxChannels});
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0].type, "message.route");
  EXPECT_EQ(routes[0].recipients, std::vector<std::string>{"bob"});
  EXPECT_EQ(routes[0].payload.text, "hi m1");
  // The streams are acknowledged apart.
  command(state, "#partition:7", wire::CommandKind::kAckOutbox,
          wire::AckOutbox{7, 1, wire::kOutboxChannels});
  EXPECT_TRUE(
      query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                               wire::ReadOutbox{7, 0, 100, wire::kOutboxChannels})
          .empty());
  EXPECT_EQ(query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                                     wire::ReadOutbox{7, 0, 100})
                .size(),
            1u);
  EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kReadOutbox,
                                                codec::pack_body(wire::ReadOutbox{7, 0, 1, 9})})
                .status,
            Status::kInvalid);

  // A delivery record: attempts append, the state only moves up (but a
  // platform may fail what it accepted).
  wire::ChannelDeliveryUpdate update;
  update.delivery = {"acme", "c", "m1", 1, "bob", "whatsapp", "+5511", wire::kDeliveryRetrying};
  update.attempt.push_back(wire::ChannelAttempt{20, "connector-1", "retry", 503, "down", 5});
  EXPECT_EQ(command(state, "c", wire::CommandKind::kUpdateChannelDelivery, update, 20).status,
            Status::kOk);
  update.delivery.state = wire::kDeliverySent;
  update.delivery.provider_message_id = "wamid.1";
  update.attempt[0] = wire::ChannelAttempt{30, "connector-2", "accepted", 200, "", 4};
  command(state, "c", wire::CommandKind::kUpdateChannelDelivery, update, 30);
  wire::ChannelDeliveryUpdate late;
  late.delivery = update.delivery;
  late.delivery.state = wire::kDeliveryRetrying;  // a late report of an earlier attempt
  late.delivery.provider_message_id.clear();
  command(state, "c", wire::CommandKind::kUpdateChannelDelivery, late, 31);
  wire::ChannelDeliveryUpdate missing = update;
  missing.delivery.channel = "instagram";
  missing.delivery.address.clear();
  missing.delivery.state = wire::kDeliveryNoIdentity;
  missing.attempt.clear();
  command(state, "c", wire::CommandKind::kUpdateChannelDelivery, missing, 32);
  auto records = query_ok<std::vector<wire::ChannelDeliveryRecord>>(
      state, wire::QueryKind::kListChannelDeliveries,
      wire::ConversationLookup{"acme", "c", "alice", "m1"});
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].channel, "instagram");
  EXPECT_EQ(records[0].state, wire::kDeliveryNoIdentity);
  EXPECT_EQ(records[1].state, wire::kDeliverySent);
  EXPECT_EQ(records[1].provider_message_id, "wamid.1");
  ASSERT_EQ(records[1].attempts.size(), 2u);
  EXPECT_EQ(records[1].attempts[0].status_code, 503);
  EXPECT_EQ(records[1].attempts[1].connector, "connector-2");
  EXPECT_EQ(records[1].created_at_ms, 20);
  wire::ChannelDeliveryUpdate refused = late;
  refused.delivery.state = wire::kDeliveryFailed;
  refused.delivery.error = "131026 undeliverable";
  command(state, "c", wire::CommandKind::kUpdateChannelDelivery, refused, 40);
  records = query_ok<std::vector<wire::ChannelDeliveryRecord>>(
      state, wire::QueryKind::kListChannelDeliveries,
      wire::ConversationLookup{"acme", "c", "", "m1"});
  EXPECT_EQ(records[1].state, wire::kDeliveryFailed);
  EXPECT_EQ(records[1].error, "131026 undeliverable");
  // Not visible to a non-member or another tenant; a bad state is refused.
  EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kListChannelDeliveries,
                                                codec::pack_body(wire::ConversationLookup{
                                                    "acme", "c", "mallory", "m1"})})
                .status,
            Status::kNotFound);
  update.delivery.state = "teleported";
  EXPECT_EQ(command(state, "c", wire::CommandKind::kUpdateChannelDelivery, update).status,
            Status::kInvalid);
  update.delivery.state = wire::kDeliverySent;
  update.delivery.tenant_id = "other";
  EXPECT_EQ(command(state, "c", wire::CommandKind::kUpdateChannelDelivery, update).status,
            Status::kNotFound);

  // Platform refs: by id, and the last conversation of an address.
  wire::ChannelRef ref{"whatsapp", "+5511", "wamid.1", "acme", "c", "m1", "bob"};
  EXPECT_EQ(
      command(state, "chaddr:whatsapp:+5511", wire::CommandKind::kIndexChannelRef, ref, 50).status,
      Status::kOk);
  auto found = query_ok<wire::ChannelRef>(state, wire::QueryKind::kFindChannelRef,
                                          wire::ChannelRef{"whatsapp", "+5511", "wamid.1"});
  EXPECT_EQ(found.message_id, "m1");
  EXPECT_EQ(found.at_ms, 50);
  found = query_ok<wire::ChannelRef>(state, wire::QueryKind::kFindChannelRef,
                                     wire::ChannelRef{"whatsapp", "+5511", ""});
  EXPECT_EQ(found.conversation_id, "c");
  EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kFindChannelRef,
                                                codec::pack_body(wire::ChannelRef{
                                                    "whatsapp", "+5522", "wamid.1"})})
                .status,
            Status::kNotFound);
  // Bounded per address: the oldest are forgotten.
  for (std::size_t i = 0; i < wire::kChannelRefsPerAddress; ++i) {
    ref.provider_message_id = "wamid.n" + std::to_string(i);
    command(state, "chaddr:whatsapp:+5511", wire::CommandKind::kIndexChannelRef, ref, 60);
  }
  EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kFindChannelRef,
                                                codec::pack_body(wire::ChannelRef{
                                                    "whatsapp", "+5511", "wamid.1"})})
                .status,
            Status::kNotFound);
}

TEST(DomainTest, ReadHorizonMovesForwardOnlyAndCountsUnread) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob"})});
  for (int i = 1; i <= 5; ++i)
    state.append(message("acme", "c", "m" + std::to_string(i), i == 3 ? "bob" : "alice"), i);
  auto summary = query_ok<wire::ConversationSummary>(state, wire::QueryKind::kConversationSummary,
                                                     wire::ConversationLookup{"acme", "c", "bob"});
  EXPECT_EQ(summary.last_seq, 5u);
  EXPECT_EQ(summary.unread_count, 4u);  // bob's own message is not unread
  ASSERT_EQ(summary.last_message.size(), 1u);
  EXPECT_EQ(summary.last_message[0].message_id, "m5");

  auto horizon = [&](std::uint64_t up_to) {
    DomainResult result = command(state, "c", wire::CommandKind::kMarkState,
                                  wire::MarkState{"acme", "c", "bob", "READ", "", up_to});
    EXPECT_EQ(result.status, Status::kOk);
    return codec::unpack_body<wire::MarkStateResult>(result.body)->horizons;
  };
  EXPECT_EQ(horizon(4).read_up_to, 4u);
  EXPECT_EQ(horizon(2).read_up_to, 4u);       // never back
  EXPECT_EQ(horizon(99).read_up_to, 5u);      // clamped to the last seq
  EXPECT_EQ(horizon(5).delivered_up_to, 5u);  // read implies delivered
  summary = query_ok<wire::ConversationSummary>(state, wire::QueryKind::kConversationSummary,
                                                wire::ConversationLookup{"acme", "c", "bob"});
  EXPECT_EQ(summary.unread_count, 0u);
  auto m4 = query_ok<wire::MessageWithStates>(state, wire::QueryKind::kGetMessage,
                                              wire::ConversationLookup{"acme", "c", "alice", "m4"});
  EXPECT_EQ(m4.states[0].history.back().state, "READ");
}

TEST(DomainTest, TheStateLogKeepsEveryStepInOrderForItsSenderAndDropsTheOldest) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob", "carol"})});
  state.append(message("acme", "c", "m1", "alice"), 100);
  state.append(message("acme", "c", "m2", "bob"), 101);
  auto summary = query_ok<wire::ConversationSummary>(
      state, wire::QueryKind::kConversationSummary, wire::ConversationLookup{"acme", "c", "alice"});
  EXPECT_EQ(summary.state_head, 0u);
  auto mark = [&](const std::string& user, const char* target, const std::string& id) {
    ASSERT_EQ(command(state, "c", wire::CommandKind::kMarkState,
                      wire::MarkState{"acme", "c", user, target, id, 0}, 200)
                  .status,
              Status::kOk);
  };
  mark("bob", wire::kStateRead, "m1");         // 1 DELIVERED, 2 READ
  mark("alice", wire::kStateDelivered, "m2");  // 3 DELIVERED (bob's message)
  mark("carol", wire::kStateDelivered, "m1");  // 4 DELIVERED
  mark("carol", wire::kStateDelivered, "m1");  // no step: nothing logged
  auto read = [&](const std::string& sender, std::uint64_t after, std::uint32_t limit = 64) {
    return query_ok<wire::StatePage>(state, wire::QueryKind::kReadStates,
                                     wire::ReadStates{"acme", "c", sender, sender, after, limit});
  };
  wire::StatePage alices = read("alice", 0);
  EXPECT_EQ(alices.head, 4u);
  EXPECT_EQ(alices.scanned_to, 4u);
  ASSERT_EQ(alices.entries.size(), 3u);  // bob's message's step is not hers
  EXPECT_EQ(alices.entries[0].index, 1u);
  EXPECT_EQ(alices.entries[0].recipient_id, "bob");
  EXPECT_EQ(alices.entries[0].state, "DELIVERED");
  EXPECT_EQ(alices.entries[1].state, "READ");
  EXPECT_EQ(alices.entries[2].recipient_id, "carol");
  EXPECT_EQ(alices.entries[2].message_id, "m1");
  EXPECT_EQ(alices.entries[2].seq, 1u);
  // By cursor, a page at a time; the cursor passes the entries it skipped.
  wire::StatePage first = read("alice", 0, 2);
  ASSERT_EQ(first.entries.size(), 2u);
  EXPECT_EQ(first.scanned_to, 2u);
  wire::StatePage rest = read("alice", first.scanned_to);
  ASSERT_EQ(rest.entries.size(), 1u);
  EXPECT_EQ(rest.entries[0].index, 4u);
  EXPECT_EQ(read("alice", rest.scanned_to).entries.size(), 0u);
  EXPECT_EQ(read("alice", rest.scanned_to).scanned_to, 4u);
  // Every read and summary says how far the log goes, so a stream knows when to read it.
  EXPECT_EQ(query_ok<wire::ConversationSummary>(state, wire::QueryKind::kConversationSummary,
                                                wire::ConversationLookup{"acme", "c", "alice"})
                .state_head,
            4u);
  EXPECT_EQ(read_history(state, wire::ReadRequest{"c", 1, 10, "acme", "alice"}, 100).state_head,
            4u);
  // Only members read it.
  EXPECT_EQ(run_query(state, wire::QueryRequest{"c", wire::QueryKind::kReadStates,
                                                codec::pack_body(wire::ReadStates{
                                                    "acme", "c", "mallory", "alice", 0, 10})})
                .status,
            Status::kNotFound);

  // A horizon over many messages logs a step for each, and the log keeps only the newest.
  const std::uint64_t more = wire::kStateLogEntriesMax + 5;
  for (std::uint64_t i = 0; i < more; ++i)
    state.append(message("acme", "c", "n" + std::to_string(i), "alice"), 300);
  for (int step = 0; step < 2; ++step)  // a horizon moves at most kHorizonStepMax at a time
    ASSERT_EQ(command(state, "c", wire::CommandKind::kMarkState,
                      wire::MarkState{"acme", "c", "bob", wire::kStateDelivered, "", 2 + more}, 400)
                  .status,
              Status::kOk);
  wire::StatePage late = read("alice", 3);
  EXPECT_EQ(late.head, 4 + more);
  EXPECT_EQ(late.first_index, late.head - wire::kStateLogEntriesMax + 1);
  ASSERT_FALSE(late.entries.empty());
  EXPECT_EQ(late.entries.front().index, late.first_index);  // from the oldest kept
  EXPECT_EQ(late.entries.size(), 64u);
  std::size_t kept = 0;
  for (const auto& [key, value] : state.records)
    if (key.rfind("T/", 0) != std::string::npos) ++kept;
  EXPECT_EQ(kept, wire::kStateLogEntriesMax);
}

TEST(DomainTest, HistoryPagesBackwardAndSinceATime) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob"})});
  for (int i = 1; i <= 10; ++i)
    state.append(message("acme", "c", "m" + std::to_string(i), "alice"), i * 100);
  wire::ReadRequest request{"c", 1, 3, "acme", "bob"};
  request.before_seq = 11;
  auto page = read_history(state, request, 500);
  ASSERT_EQ(page.messages.size(), 3u);
  EXPECT_EQ(page.messages.front().seq, 8u);
  EXPECT_EQ(page.messages.back().seq, 10u);
  request.before_seq = 3;
  page = read_history(state, request, 500);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages.front().seq, 1u);
  request.before_seq = 0;
  request.since_ms = 450;
  page = read_history(state, request, 500);
  ASSERT_EQ(page.messages.size(), 3u);
  EXPECT_EQ(page.messages.front().seq, 5u);
  request.since_ms = 5000;
  EXPECT_TRUE(read_history(state, request, 500).messages.empty());
}

// Logs written before the locator moved behind the log hold claims and releases; they are
// applied as they were. A claim made for a refused append is released, but only the claim for
// that conversation.
TEST(DomainTest, ClaimsOfOlderLogsAreReleasedOnlyForTheirConversation) {
  MemoryState state;
  auto claim = [&](const char* conversation) {
    return command(state, "l", wire::CommandKind::kLocateMessage,
                   wire::LocateMessage{"acme", "m1", conversation})
        .status;
  };
  auto release = [&](const char* conversation) {
    return command(state, "l", wire::CommandKind::kReleaseMessage,
                   wire::LocateMessage{"acme", "m1", conversation})
        .status;
  };
  EXPECT_EQ(claim("typo"), Status::kOk);
  EXPECT_EQ(claim("c1"), Status::kConflict);
  EXPECT_EQ(release("c1"), Status::kOk);  // names another conversation: kept
  EXPECT_EQ(claim("c1"), Status::kConflict);
  EXPECT_EQ(release("typo"), Status::kOk);
  EXPECT_EQ(release("typo"), Status::kOk);  // a retry
  EXPECT_EQ(claim("c1"), Status::kOk);
  EXPECT_EQ(query_ok<std::string>(state, wire::QueryKind::kFindMessage,
                                  wire::LocateMessage{"acme", "m1", ""}),
            "c1");
}

// A stored message puts its locator entry on the locator outbox, and only there: the locator
// itself is written later, by kIndexMessages, once the append is committed.
TEST(DomainTest, AStoredMessageIsIndexedBehindTheLogThroughTheLocatorOutbox) {
  MemoryState state;
  command(state, "c", wire::CommandKind::kCreateConversation,
          wire::CreateConversation{conversation("acme", "c", {"alice", "bob"})});
  ASSERT_EQ(state.append(message("acme", "c", "m1", "alice"), 10).status, Status::kOk);
  ASSERT_EQ(state.append(message("acme", "c", "m2", "alice"), 11).status, Status::kOk);
  // Not findable yet: nothing was written in front of the append.
  const wire::LocateMessage lookup_m1{"acme", "m1", ""};
  EXPECT_EQ(run_query(state, wire::QueryRequest{"k", wire::QueryKind::kFindMessage,
                                                codec::pack_body(lookup_m1)})
                .status,
            Status::kNotFound);
  auto entries = query_ok<std::vector<wire::OutboxEvent>>(
      state, wire::QueryKind::kReadOutbox, wire::ReadOutbox{7, 0, 100, wire::kOutboxLocator});
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].type, "message.locate");
  EXPECT_EQ(entries[0].tenant_id, "acme");
  EXPECT_EQ(entries[0].message_id, "m1");
  EXPECT_EQ(entries[0].conversation_id, "c");
  EXPECT_EQ(entries[0].seq, 1u);
  EXPECT_EQ(entries[0].event_id, "locate_00000007_0000000000000001");
  EXPECT_EQ(entries[1].message_id, "m2");

  // What an indexer does with them: one command for the locator partition, then the ack.
  wire::IndexMessages index;
  for (const auto& entry : entries)
    index.entries.push_back({entry.tenant_id, entry.message_id, entry.conversation_id});
  auto result = codec::unpack_body<wire::IndexMessagesResult>(
                    command(state, "#partition:7", wire::CommandKind::kIndexMessages, index).body)
                    .value();
  EXPECT_EQ(result.added, 2u);
  EXPECT_EQ(query_ok<std::string>(state, wire::QueryKind::kFindMessage,
                                  wire::LocateMessage{"acme", "m2", ""}),
            "c");
  command(state, "#partition:7", wire::CommandKind::kAckOutbox,
          wire::AckOutbox{7, 2, wire::kOutboxLocator});
  EXPECT_TRUE(
      query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                               wire::ReadOutbox{7, 0, 100, wire::kOutboxLocator})
          .empty());
  // The other streams are untouched by that acknowledgement.
  EXPECT_EQ(query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                                     wire::ReadOutbox{7, 0, 100})
                .size(),
            2u);
  wire::AppendRequest tenantless = message("", "bare", "m3", "alice");
  ASSERT_EQ(state.append(tenantless, 12).status, Status::kOk);
  EXPECT_TRUE(
      query_ok<std::vector<wire::OutboxEvent>>(state, wire::QueryKind::kReadOutbox,
                                               wire::ReadOutbox{7, 0, 100, wire::kOutboxLocator})
          .empty())
      << "a message without a tenant has no locator";
}

// The first conversation indexed under an id keeps it; a replay changes nothing; another tenant's
// id is another id.
TEST(DomainTest, IndexingKeepsTheFirstConversationOfAnIdAndReportsTheRest) {
  MemoryState state;
  auto index = [&](std::vector<wire::LocateMessage> entries) {
    DomainResult result = command(state, "#partition:3", wire::CommandKind::kIndexMessages,
                                  wire::IndexMessages{std::move(entries)});
    EXPECT_EQ(result.status, Status::kOk) << result.detail;
    return codec::unpack_body<wire::IndexMessagesResult>(result.body)
        .value_or(wire::IndexMessagesResult{});
  };
  auto first = index({{"acme", "m1", "c1"}, {"acme", "m2", "c1"}, {"acme", "m1", "c2"}});
  EXPECT_EQ(first.added, 2u);
  ASSERT_EQ(first.conflicts.size(), 1u);
  EXPECT_EQ(first.conflicts[0].refused.conversation_id, "c2");
  EXPECT_EQ(first.conflicts[0].held_by, "c1");
  auto replay = index({{"acme", "m1", "c1"}, {"acme", "m2", "c1"}, {"other", "m1", "c2"}});
  EXPECT_EQ(replay.added, 1u);  // the other tenant's m1
  EXPECT_EQ(replay.replayed, 2u);
  EXPECT_TRUE(replay.conflicts.empty());
  EXPECT_EQ(query_ok<std::string>(state, wire::QueryKind::kFindMessage,
                                  wire::LocateMessage{"acme", "m1", ""}),
            "c1");
  EXPECT_EQ(query_ok<std::string>(state, wire::QueryKind::kFindMessage,
                                  wire::LocateMessage{"other", "m1", ""}),
            "c2");
  EXPECT_EQ(run_query(state, wire::QueryRequest{"l", wire::QueryKind::kFindMessage,
                                                codec::pack_body(wire::LocateMessage{"x", "m1"})})
                .status,
            Status::kNotFound);
  // An entry that names no conversation refuses the whole command, which changes nothing.
  DomainResult bad = command(state, "#partition:3", wire::CommandKind::kIndexMessages,
                             wire::IndexMessages{{{"acme", "m9", "c1"}, {"acme", "m8", ""}}});
  EXPECT_EQ(bad.status, Status::kInvalid);
  const wire::LocateMessage m9{"acme", "m9", ""};
  EXPECT_EQ(
      run_query(state, wire::QueryRequest{"l", wire::QueryKind::kFindMessage, codec::pack_body(m9)})
          .status,
      Status::kNotFound);
  wire::IndexMessages too_many;
  too_many.entries.assign(wire::kIndexMessagesEntriesMax + 1, {"acme", "m", "c1"});
  EXPECT_EQ(command(state, "#partition:3", wire::CommandKind::kIndexMessages, too_many).status,
            Status::kInvalid);
}

TEST(DomainTest, MalformedBodiesAreRefusedWithoutChange) {
  MemoryState state;
  DomainResult result =
      apply_command(state, 7, wire::CommandRequest{"t", wire::CommandKind::kCreateUser, "\xc1"}, 1);
  EXPECT_EQ(result.status, Status::kInvalid);
  EXPECT_TRUE(state.records.empty());
}

}  // namespace
}  // namespace chat4all::storage
