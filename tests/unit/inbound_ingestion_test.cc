// Inbound ingestion (nodes/connector/inbound_ingestion.h) against scripted storage: every
// storage step is recorded and answered by the test, and time passes only when the test runs
// the retries it scheduled. No thread, socket or clock.
#include "nodes/connector/inbound_ingestion.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <typeinfo>
#include <vector>

namespace chat4all::connector {
namespace {

template <typename Result>
StorageOutcome<Result> ok(Result value) {
  StorageOutcome<Result> outcome;
  outcome.status = wire::Status::kOk;
  outcome.value = std::move(value);
  return outcome;
}

template <typename Result>
StorageOutcome<Result> failed(wire::Status status) {
  StorageOutcome<Result> outcome;
  outcome.status = status;
  return outcome;
}

// Records each step and holds its answer until the test gives it.
class ScriptedStorage final : public InboundStorage {
 public:
  struct Step {
    std::string what;  // "find_ref", "mark", "update", "resolve", "list", "append"
    wire::ChannelRef lookup;
    wire::MarkState mark;
    wire::ChannelDeliveryUpdate update;
    wire::AppendRequest append;
    std::function<void(const void*)> answer;  // takes a StorageOutcome<...>* of `type`
    const std::type_info* type = nullptr;

    template <typename Result>
    void give(StorageOutcome<Result> outcome) {
      ASSERT_TRUE(answer && *type == typeid(Result)) << what << " answered with the wrong type";
      answer(&outcome);
    }
  };

  void find_channel_ref(const wire::ChannelRef& lookup, Done<wire::ChannelRef> done) override {
    Step step = hold("find_ref", std::move(done));
    step.lookup = lookup;
    steps.push_back(std::move(step));
  }
  void mark_state(const wire::MarkState& mark, Done<wire::MarkStateResult> done) override {
    Step step = hold("mark", std::move(done));
    step.mark = mark;
    steps.push_back(std::move(step));
  }
  void update_channel_delivery(const wire::ChannelDeliveryUpdate& update,
                               Done<wire::ChannelDeliveryRecord> done) override {
    Step step = hold("update", std::move(done));
    step.update = update;
    steps.push_back(std::move(step));
  }
  void resolve_identity(const wire::IdentityChange&, Done<wire::UserRecord> done) override {
    steps.push_back(hold("resolve", std::move(done)));
  }
  void list_user_conversations(const wire::TenantList&,
                               Done<std::vector<std::string>> done) override {
    steps.push_back(hold("list", std::move(done)));
  }
  void append(const wire::AppendRequest& request, Done<wire::AppendReply> done) override {
    Step step = hold("append", std::move(done));
    step.append = request;
    steps.push_back(std::move(step));
  }
  bool after(std::uint32_t ms, std::function<void()> task) override {
    if (!timers_allowed) return false;
    waited_ms += ms;
    timers.push_back(std::move(task));
    return true;
  }
  std::int64_t now_ms() override { return 1'700'000'000'000; }

  // The oldest unanswered step; fails the test if it is not `what`.
  Step next(const std::string& what) {
    EXPECT_FALSE(steps.empty()) << "expected " << what;
    if (steps.empty()) return {};
    Step step = std::move(steps.front());
    steps.pop_front();
    EXPECT_EQ(step.what, what);
    return step;
  }
  template <typename Result>
  void answer(const std::string& what, StorageOutcome<Result> outcome) {
    Step step = next(what);
    if (step.answer) step.give(std::move(outcome));
  }
  void run_timers() {
    auto due = std::move(timers);
    timers.clear();
    for (auto& task : due) task();
  }

  std::deque<Step> steps;
  std::vector<std::function<void()>> timers;
  bool timers_allowed = true;
  std::uint32_t waited_ms = 0;

 private:
  template <typename Result>
  Step hold(const char* what, Done<Result> done) {
    Step step;
    step.what = what;
    step.type = &typeid(Result);
    step.answer = [done = std::move(done)](const void* outcome) {
      done(*static_cast<const StorageOutcome<Result>*>(outcome));
    };
    return step;
  }
};

class Silent final : public ChannelAdapter {
 public:
  void connect() override {}
  SendResult send_message(const OutboundMessage&) override { return {}; }
  SendResult send_file(const OutboundMessage&) override { return {}; }
  // "message:<address>" carries one message; "refuse" is answered 401; other bodies nothing.
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override {
    if (request.body == "refuse") return {401, "text/plain", "no"};
    if (request.body.rfind("message:", 0) == 0) {
      InboundEvent event;
      event.address = request.body.substr(8);
      event.provider_message_id = "in-" + event.address;
      event.text = "hi";
      events.push_back(event);
    }
    return {200, "text/plain", "ok"};
  }
};

ChannelSpec spec(const std::string& name) {
  ChannelSpec channel;
  channel.name = name;
  channel.adapter = "silent";
  channel.tenant_id = "t1";
  return channel;
}

InboundEvent status(const std::string& state) {
  InboundEvent event;
  event.kind = InboundEvent::Kind::kStatus;
  event.address = "+5511";
  event.provider_message_id = "p-1";
  event.state = state;
  return event;
}

InboundEvent message(const std::string& reply_to = "") {
  InboundEvent event;
  event.kind = InboundEvent::Kind::kMessage;
  event.address = "+5511";
  event.provider_message_id = "wamid.1";
  event.text = "hello";
  event.reply_to_provider_message_id = reply_to;
  return event;
}

wire::ChannelRef ref(const std::string& tenant = "t1") {
  return {"ig", "+5511", "p-1", tenant, "c1", "m1", "bob", 0};
}

class InboundIngestionTest : public ::testing::Test {
 protected:
  InboundIngestionTest()
      : channel_(spec(::testing::UnitTest::GetInstance()->current_test_info()->name()),
                 std::make_unique<Silent>()),
        ingestion_(storage_, {2, 3, 200}) {}

  // Ingests `events`; the verdict once it comes.
  std::optional<bool>& ingest(std::vector<InboundEvent> events) {
    verdict_.reset();
    ingestion_.ingest(channel_, std::move(events), [this](bool stored) { verdict_ = stored; });
    return verdict_;
  }

  ScriptedStorage storage_;
  HostedChannel channel_;
  InboundIngestion ingestion_;
  std::optional<bool> verdict_;
};

TEST_F(InboundIngestionTest, ADeliveredStatusMarksTheMessageAndUpdatesItsDelivery) {
  auto& verdict = ingest({status("DELIVERED")});
  auto lookup = storage_.next("find_ref");
  EXPECT_EQ(lookup.lookup.provider_message_id, "p-1");
  EXPECT_EQ(lookup.lookup.address, "+5511");
  lookup.give(ok(ref()));
  auto mark = storage_.next("mark");
  EXPECT_EQ(mark.mark.state, "DELIVERED");
  EXPECT_EQ(mark.mark.message_id, "m1");
  EXPECT_EQ(mark.mark.user_id, "bob");
  EXPECT_FALSE(verdict);  // nothing is done before storage answers
  mark.give(ok(wire::MarkStateResult{}));
  auto update = storage_.next("update");
  EXPECT_EQ(update.update.delivery.state, "delivered");
  EXPECT_EQ(update.update.delivery.conversation_id, "c1");
  update.give(ok(wire::ChannelDeliveryRecord{}));
  EXPECT_EQ(verdict, true);
  EXPECT_EQ(channel_.statuses_stored.value(), 1u);
}

TEST_F(InboundIngestionTest, AFailedStatusOnlyUpdatesTheDelivery) {
  auto& verdict = ingest({status("FAILED")});
  storage_.answer("find_ref", ok(ref()));
  auto update = storage_.next("update");
  EXPECT_EQ(update.update.delivery.state, "failed");
  update.give(ok(wire::ChannelDeliveryRecord{}));
  EXPECT_EQ(verdict, true);
}

TEST_F(InboundIngestionTest, AStatusWhoseRefIsNotYetWrittenIsLookedUpAgainThenDropped) {
  auto& verdict = ingest({status("READ")});
  for (int attempt = 1; attempt <= 3; ++attempt) {
    storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
    EXPECT_TRUE(storage_.steps.empty());
    if (attempt < 3) {
      ASSERT_EQ(storage_.timers.size(), 1u) << "attempt " << attempt;
      storage_.run_timers();
    }
  }
  EXPECT_EQ(storage_.waited_ms, 400u);  // two waits of ref_lookup_interval_ms
  EXPECT_EQ(verdict, true);             // dropped on purpose: nothing to retry
  EXPECT_EQ(channel_.statuses_dropped.value(), 1u);
}

TEST_F(InboundIngestionTest, ARefFoundOnTheSecondLookupIsMarked) {
  ingest({status("READ")});
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
  storage_.run_timers();
  storage_.answer("find_ref", ok(ref()));
  EXPECT_EQ(storage_.next("mark").mark.state, "READ");
}

TEST_F(InboundIngestionTest, ATransientFailureAsksThePlatformToSendAgain) {
  auto& verdict = ingest({status("READ")});
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kTimeout));
  EXPECT_EQ(verdict, false);
  EXPECT_EQ(channel_.storage_failures.value(), 1u);
}

TEST_F(InboundIngestionTest, NoRoomToWaitForARetryIsATransientFailure) {
  storage_.timers_allowed = false;
  auto& verdict = ingest({status("READ")});
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
  EXPECT_EQ(verdict, false);
}

TEST_F(InboundIngestionTest, AnUnknownStateIsDropped) {
  auto& verdict = ingest({status("TYPING")});
  storage_.answer("find_ref", ok(ref()));
  EXPECT_TRUE(storage_.steps.empty());
  EXPECT_EQ(verdict, true);
  EXPECT_EQ(channel_.statuses_dropped.value(), 1u);
}

TEST_F(InboundIngestionTest, AReplyIsAppendedToTheConversationItRepliesTo) {
  auto& verdict = ingest({message("p-1")});
  storage_.answer("resolve", ok(wire::UserRecord{"t1", "alice"}));
  auto lookup = storage_.next("find_ref");
  EXPECT_EQ(lookup.lookup.provider_message_id, "p-1");
  lookup.give(ok(ref()));
  auto append = storage_.next("append");
  EXPECT_EQ(append.append.conversation_id, "c1");
  EXPECT_EQ(append.append.sender_id, "alice");
  EXPECT_EQ(append.append.message_id, inbound_message_id(channel_.spec.name, "wamid.1"));
  EXPECT_EQ(append.append.payload.text, "hello");
  EXPECT_EQ(append.append.received_at_ms, 1'700'000'000'000);
  append.give(ok(wire::AppendReply{}));
  EXPECT_EQ(verdict, true);
  EXPECT_EQ(channel_.messages_stored.value(), 1u);
}

TEST_F(InboundIngestionTest, WithoutARefTheSendersOnlyConversationIsUsed) {
  auto& verdict = ingest({message()});
  storage_.answer("resolve", ok(wire::UserRecord{"t1", "alice"}));
  // The address's last delivery belongs to another tenant: not ours.
  EXPECT_EQ(storage_.steps.front().lookup.provider_message_id, "");
  storage_.answer("find_ref", ok(ref("t2")));
  storage_.answer("list", ok(std::vector<std::string>{"c9"}));
  EXPECT_EQ(storage_.next("append").append.conversation_id, "c9");
  EXPECT_FALSE(verdict);
}

TEST_F(InboundIngestionTest, ASenderWithSeveralConversationsAndNoRefIsDropped) {
  auto& verdict = ingest({message()});
  storage_.answer("resolve", ok(wire::UserRecord{"t1", "alice"}));
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
  storage_.answer("list", ok(std::vector<std::string>{"c1", "c2"}));
  EXPECT_TRUE(storage_.steps.empty());
  EXPECT_EQ(verdict, true);
  EXPECT_EQ(channel_.messages_dropped.value(), 1u);
}

TEST_F(InboundIngestionTest, AnUnknownSenderIsDroppedAndAnUnavailableDirectoryRetried) {
  auto& dropped = ingest({message()});
  storage_.answer("resolve", failed<wire::UserRecord>(wire::Status::kNotFound));
  EXPECT_EQ(dropped, true);
  auto& retried = ingest({message()});
  storage_.answer("resolve", failed<wire::UserRecord>(wire::Status::kUnavailable));
  EXPECT_EQ(retried, false);
}

TEST_F(InboundIngestionTest, ARefusedAppendIsDroppedAndATimedOutOneRetried) {
  auto& refused = ingest({message()});
  storage_.answer("resolve", ok(wire::UserRecord{"t1", "alice"}));
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
  storage_.answer("list", ok(std::vector<std::string>{"c1"}));
  storage_.answer("append", failed<wire::AppendReply>(wire::Status::kInvalid));
  EXPECT_EQ(refused, true);
  auto& timed_out = ingest({message()});
  storage_.answer("resolve", ok(wire::UserRecord{"t1", "alice"}));
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kNotFound));
  storage_.answer("list", ok(std::vector<std::string>{"c1"}));
  storage_.answer("append", failed<wire::AppendReply>(wire::Status::kTimeout));
  EXPECT_EQ(timed_out, false);
}

TEST_F(InboundIngestionTest, EventsOfABatchAreStoredOneAfterAnotherAndOneFailureFailsIt) {
  auto& verdict = ingest({status("TYPING"), status("READ")});
  storage_.answer("find_ref", ok(ref()));  // the first: dropped
  // Only now the second starts.
  ASSERT_EQ(storage_.steps.size(), 1u);
  storage_.answer("find_ref", failed<wire::ChannelRef>(wire::Status::kUnavailable));
  EXPECT_EQ(verdict, false);
}

TEST_F(InboundIngestionTest, NothingRunsAfterClose) {
  auto& verdict = ingest({status("READ")});
  ingestion_.close();
  storage_.answer("find_ref", ok(ref()));
  EXPECT_TRUE(storage_.steps.empty());
  EXPECT_FALSE(verdict);
  ingest({status("READ")});
  EXPECT_TRUE(storage_.steps.empty());
}

TEST_F(InboundIngestionTest, WebhookBatchesOfOneSenderAreStoredInOrderAndBounded) {
  const std::unordered_map<std::string, HostedChannel*> channels{{channel_.spec.name, &channel_}};
  const std::string target = "/channels/" + channel_.spec.name + "/webhook";
  std::vector<int> answers;
  auto post = [&](const std::string& body) {
    ingestion_.on_webhook(
        channels, WebhookRequest{"POST", target, {}, body},
        [&answers](WebhookResponse response) { answers.push_back(response.status); });
  };
  post("message:+1");  // stored at once
  post("message:+1");  // waits behind it (same sender, same shard)
  post("message:+1");  // waits: two waiting is the bound
  post("message:+1");  // beyond the bound
  EXPECT_EQ(answers, (std::vector<int>{503}));
  ASSERT_EQ(storage_.steps.size(), 1u);  // one batch at a time per shard
  storage_.answer("resolve", failed<wire::UserRecord>(wire::Status::kNotFound));
  EXPECT_EQ(answers, (std::vector<int>{503, 200}));
  storage_.answer("resolve", failed<wire::UserRecord>(wire::Status::kUnavailable));
  EXPECT_EQ(answers, (std::vector<int>{503, 200, 503}));
  storage_.answer("resolve", failed<wire::UserRecord>(wire::Status::kNotFound));
  EXPECT_EQ(answers, (std::vector<int>{503, 200, 503, 200}));
  EXPECT_TRUE(storage_.steps.empty());
}

TEST_F(InboundIngestionTest, WebhooksAreAnsweredByTheirAdapterWhenThereIsNothingToStore) {
  const std::unordered_map<std::string, HostedChannel*> channels{{channel_.spec.name, &channel_}};
  std::vector<int> answers;
  auto call = [&](const std::string& method, const std::string& target, const std::string& body) {
    ingestion_.on_webhook(channels, WebhookRequest{method, target, {}, body},
                          [&answers](WebhookResponse r) { answers.push_back(r.status); });
  };
  const std::string target = "/channels/" + channel_.spec.name + "/webhook?hub.mode=x";
  call("POST", "/channels/elsewhere/webhook", "");
  call("DELETE", target, "");
  call("GET", target, "");
  call("POST", target, "refuse");
  EXPECT_EQ(answers, (std::vector<int>{404, 405, 200, 401}));
  EXPECT_EQ(channel_.webhooks_unverified.value(), 1u);
  EXPECT_TRUE(storage_.steps.empty());
}

// Storage that refuses every step before the call returns, as RouterClient does at its bound.
class RefusingStorage final : public InboundStorage {
 public:
  void find_channel_ref(const wire::ChannelRef&, Done<wire::ChannelRef> done) override {
    done(failed<wire::ChannelRef>(wire::Status::kUnavailable));
  }
  void mark_state(const wire::MarkState&, Done<wire::MarkStateResult> done) override {
    done(failed<wire::MarkStateResult>(wire::Status::kUnavailable));
  }
  void update_channel_delivery(const wire::ChannelDeliveryUpdate&,
                               Done<wire::ChannelDeliveryRecord> done) override {
    done(failed<wire::ChannelDeliveryRecord>(wire::Status::kUnavailable));
  }
  void resolve_identity(const wire::IdentityChange&, Done<wire::UserRecord> done) override {
    done(failed<wire::UserRecord>(wire::Status::kUnavailable));
  }
  void list_user_conversations(const wire::TenantList&,
                               Done<std::vector<std::string>> done) override {
    done(failed<std::vector<std::string>>(wire::Status::kUnavailable));
  }
  void append(const wire::AppendRequest&, Done<wire::AppendReply> done) override {
    done(failed<wire::AppendReply>(wire::Status::kUnavailable));
  }
  bool after(std::uint32_t, std::function<void()>) override { return false; }
  std::int64_t now_ms() override { return 0; }
};

TEST(InboundIngestionInlineTest, AnswersBeforeTheCallReturnsDoNotDeepenTheStack) {
  RefusingStorage storage;
  InboundIngestion ingestion(storage, {});
  HostedChannel channel(spec("inline"), std::make_unique<Silent>());
  // Enough events that one stack frame each would overflow the stack.
  std::vector<InboundEvent> events(500'000, message());
  std::optional<bool> verdict;
  ingestion.ingest(channel, std::move(events), [&](bool stored) { verdict = stored; });
  EXPECT_EQ(verdict, false);
  EXPECT_EQ(channel.storage_failures.value(), 500'000u);
}

TEST(InboundIngestionPureTest, WebhookTargetsNameOneChannel) {
  EXPECT_EQ(webhook_channel("/channels/wa/webhook"), "wa");
  EXPECT_EQ(webhook_channel("/channels/wa/webhook?hub.challenge=1"), "wa");
  EXPECT_EQ(webhook_channel("/channels//webhook"), std::nullopt);
  EXPECT_EQ(webhook_channel("/channels/a/b/webhook"), std::nullopt);
  EXPECT_EQ(webhook_channel("/channel/wa/webhook"), std::nullopt);
  EXPECT_EQ(webhook_channel("/channels/wa/hook"), std::nullopt);
}

TEST(InboundIngestionPureTest, PlatformStatesMapToDeliveryStates) {
  EXPECT_EQ(channel_delivery_state("DELIVERED"), "delivered");
  EXPECT_EQ(channel_delivery_state("READ"), "read");
  EXPECT_EQ(channel_delivery_state("FAILED"), "failed");
  EXPECT_EQ(channel_delivery_state("SENT"), std::nullopt);
  EXPECT_TRUE(transient(wire::Status::kNotOwner));
  EXPECT_TRUE(transient(wire::Status::kStorageFull));
  EXPECT_FALSE(transient(wire::Status::kNotFound));
  EXPECT_FALSE(transient(wire::Status::kInvalid));
}

TEST(InboundIngestionPureTest, AnInboundFileKeepsItsIdAndTheChannelsOrigin) {
  ChannelSpec channel = spec("wa");
  channel.inbound_channels = {"wa", "telegram"};
  InboundEvent event = message();
  event.file_id = "media-7";
  const auto request = inbound_append(channel, event, "alice", "c1", 42);
  EXPECT_EQ(request.payload.type, "file");
  EXPECT_EQ(request.payload.file_id, "media-7");
  EXPECT_EQ(request.channels, (std::vector<std::string>{"wa", "telegram"}));
  EXPECT_EQ(request.tenant_id, "t1");
  EXPECT_EQ(request.received_at_ms, 42);
  EXPECT_NE(request.metadata.find("\"provider_message_id\":\"wamid.1\""), std::string::npos);
  channel.inbound_channels = {kChannelAll};
  EXPECT_TRUE(inbound_append(channel, event, "alice", "c1", 42).channels.empty());
}

}  // namespace
}  // namespace chat4all::connector
