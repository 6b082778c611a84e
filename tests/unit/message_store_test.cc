// The LMDB store of a storage node: nodes/storage/message_store.h.
//
// The store is driven the way the storage node's loop drives it: every turn is
// a hand-built consensus::Ready per partition (hard state, log change, snapshot
// install, committed entries to apply, trim) handed to write_turn().
#include "nodes/storage/message_store.h"

#include <gtest/gtest.h>
#include <lmdb.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/test_util.h"

namespace chat4all::storage {
namespace {

using consensus::HardState;
using consensus::Ready;
using consensus::Restored;
using unit::TempDir;
using wire::LogEntry;
using wire::Status;
using WriteResult = MessageStore::WriteResult;

constexpr std::int64_t kStoredAt = 1700000000999;
constexpr PartitionId kP = 3;      // the partition most tests use
constexpr PartitionId kOther = 4;  // its neighbour in the key space

wire::AppendRequest message(const std::string& conversation, const std::string& id,
                            const std::string& text = "hello",
                            const std::string& sender = "alice") {
  wire::AppendRequest r;
  r.conversation_id = conversation;
  r.message_id = id;
  r.sender_id = sender;
  r.recipients = {"bob"};
  r.payload = {"text", text};
  r.received_at_ms = 1700000000000;
  return r;
}

// A log entry as a leader proposes it: msgpack ReplicatedCommand.
LogEntry command_entry(const wire::AppendRequest& request, std::uint64_t term = 1,
                       std::int64_t stored_at_ms = kStoredAt) {
  wire::ReplicatedCommand command{request, stored_at_ms};
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, command);
  return LogEntry{term, std::string(buffer.data(), buffer.size())};
}

LogEntry noop_entry(std::uint64_t term = 1) {
  return LogEntry{term, ""};
}

std::vector<LogEntry> command_entries(const std::vector<wire::AppendRequest>& requests,
                                      std::uint64_t term = 1) {
  std::vector<LogEntry> entries;
  for (const auto& r : requests) entries.push_back(command_entry(r, term));
  return entries;
}

// A batch of `count` messages of `text_bytes` each.
std::vector<wire::AppendRequest> big_batch(const std::string& conversation,
                                           const std::string& prefix, int count,
                                           std::size_t text_bytes) {
  std::vector<wire::AppendRequest> batch;
  for (int i = 0; i < count; ++i)
    batch.push_back(
        message(conversation, prefix + std::to_string(i), std::string(text_bytes, 'x')));
  return batch;
}

std::vector<std::uint64_t> seqs(const wire::ReadReply& page) {
  std::vector<std::uint64_t> result;
  for (const auto& m : page.messages) result.push_back(m.seq);
  return result;
}

// Everything of a page, as one comparable value.
std::string page_bytes(const wire::ReadReply& page) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, std::tie(page.status, page.messages, page.last_seq, page.detail));
  return std::string(buffer.data(), buffer.size());
}

std::vector<std::uint64_t> terms(const std::vector<LogEntry>& entries) {
  std::vector<std::uint64_t> result;
  for (const auto& e : entries) result.push_back(e.term);
  return result;
}

std::vector<std::string> datas(const std::vector<LogEntry>& entries) {
  std::vector<std::string> result;
  for (const auto& e : entries) result.push_back(e.data);
  return result;
}

struct Turn {
  WriteResult result = WriteResult::kFailed;
  std::vector<std::vector<AppendOutcome>> outcomes;
  std::string error;
};

Turn write(MessageStore& store, const std::vector<PartitionWrite>& writes) {
  Turn turn;
  turn.result = store.write_turn(writes, turn.outcomes, turn.error);
  return turn;
}

Turn write(MessageStore& store, PartitionId partition, const Ready& ready) {
  return write(store, {PartitionWrite{partition, &ready}});
}

// The Ready of a single replica that appends `entries` to its log and, being
// the whole quorum, commits and applies them in the same turn (the log must
// be fully applied before).
Ready append_and_apply(const MessageStore& store, PartitionId partition,
                       std::vector<LogEntry> entries) {
  const Restored restored = store.load_partition(partition);
  const std::uint64_t last = restored.snapshot_index + restored.entries.size();
  EXPECT_EQ(restored.applied_index, last) << "helper needs a fully applied log";
  Ready ready;
  if (!entries.empty()) {
    ready.first_new_index = last + 1;
    ready.new_entries = entries;
    ready.first_apply_index = last + 1;
    ready.to_apply = std::move(entries);
  }
  return ready;
}

// Commits and applies `requests` on `partition` in one turn; the outcomes.
std::vector<AppendOutcome> commit(MessageStore& store, PartitionId partition,
                                  const std::vector<wire::AppendRequest>& requests) {
  const Ready ready = append_and_apply(store, partition, command_entries(requests));
  Turn turn = write(store, partition, ready);
  EXPECT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  EXPECT_EQ(turn.outcomes.size(), 1u);
  if (turn.outcomes.empty()) return {};
  EXPECT_EQ(turn.outcomes[0].size(), requests.size());
  return turn.outcomes[0];
}

// Applies already-logged committed entries [first, first + entries.size()).
Ready apply_only(std::uint64_t first, std::vector<LogEntry> entries) {
  Ready ready;
  ready.first_apply_index = first;
  ready.to_apply = std::move(entries);
  return ready;
}

class MessageStoreTest : public ::testing::Test {
 protected:
  MessageStore::Options options(std::uint64_t initial = 1 << 20, std::uint64_t max = 16 << 20,
                                const std::string& name = "store") {
    MessageStore::Options o;
    o.directory = dir_.path() / name;
    o.map_size_initial_bytes = initial;
    o.map_size_max_bytes = max;
    return o;
  }
  MessageStore& store() {
    if (!store_) store_ = std::make_unique<MessageStore>(options());
    return *store_;
  }
  void reopen() {
    store_.reset();
    store_ = std::make_unique<MessageStore>(options());
  }

  std::vector<AppendOutcome> append_batch(const std::vector<wire::AppendRequest>& requests,
                                          PartitionId partition = kP) {
    return commit(store(), partition, requests);
  }
  // Appends one message and returns its outcome.
  AppendOutcome append(const wire::AppendRequest& request, PartitionId partition = kP) {
    auto outcomes = append_batch({request}, partition);
    EXPECT_EQ(outcomes.size(), 1u);
    return outcomes.empty() ? AppendOutcome{} : outcomes.at(0);
  }
  wire::ReadReply read(const std::string& conversation, std::uint64_t from = 1,
                       std::uint32_t limit = 1000, PartitionId partition = kP) {
    return store().read(partition, conversation, from, limit);
  }

  TempDir dir_;
  std::unique_ptr<MessageStore> store_;
};

// --- Applying committed entries ---------------------------------------------

TEST_F(MessageStoreTest, SeqsStartAtOneAndAreSequential) {
  for (std::uint64_t i = 1; i <= 5; ++i) {
    const auto outcome = append(message("conv", "m" + std::to_string(i)));
    EXPECT_EQ(outcome.status, Status::kOk);
    EXPECT_EQ(outcome.seq, i);
    EXPECT_FALSE(outcome.duplicate);
    EXPECT_EQ(outcome.detail, "");
  }
  const wire::ReadReply page = read("conv", 1, 100);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(page.last_seq, 5u);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(store().load_partition(kP).applied_index, 5u);
}

TEST_F(MessageStoreTest, ConversationsHaveIndependentSeqs) {
  const auto outcomes = append_batch({message("a", "1"), message("b", "1"), message("a", "2"),
                                      message("c", "x"), message("b", "2"), message("a", "3")});
  ASSERT_EQ(outcomes.size(), 6u);
  const std::vector<std::uint64_t> expected = {1, 1, 2, 1, 2, 3};
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].status, Status::kOk) << i;
    EXPECT_EQ(outcomes[i].seq, expected[i]) << i;
  }
  EXPECT_EQ(append(message("b", "3")).seq, 3u);
  EXPECT_EQ(read("a").last_seq, 3u);
  EXPECT_EQ(read("b").last_seq, 3u);
  EXPECT_EQ(read("c").last_seq, 1u);
}

TEST_F(MessageStoreTest, StoredMessageKeepsEveryField) {
  wire::AppendRequest request = message("conv-9", "msg-1", "caf\xc3\xa9 \xf0\x9f\x98\x80");
  request.recipients = {"bob", "carol"};
  request.received_at_ms = 1234;
  const Ready ready = append_and_apply(store(), kP, {command_entry(request, 1, 987654321)});
  ASSERT_EQ(write(store(), kP, ready).result, WriteResult::kDurable);
  const wire::ReadReply page = read("conv-9");
  ASSERT_EQ(page.messages.size(), 1u);
  const wire::StoredMessage& m = page.messages[0];
  EXPECT_EQ(m.conversation_id, "conv-9");
  EXPECT_EQ(m.seq, 1u);
  EXPECT_EQ(m.message_id, "msg-1");
  EXPECT_EQ(m.sender_id, "alice");
  EXPECT_EQ(m.recipients, (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(m.payload.type, "text");
  EXPECT_EQ(m.payload.text, request.payload.text);
  EXPECT_EQ(m.received_at_ms, 1234);
  EXPECT_EQ(m.stored_at_ms, 987654321) << "stored_at_ms comes from the committed command";
}

TEST_F(MessageStoreTest, EmptyTurnsAreFine) {
  std::vector<std::vector<AppendOutcome>> outcomes{{AppendOutcome{}}};
  std::string error;
  EXPECT_EQ(store().write_turn({}, outcomes, error), WriteResult::kDurable) << error;
  EXPECT_TRUE(outcomes.empty());

  const Ready empty;
  const Turn turn = write(store(), kP, empty);
  EXPECT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  ASSERT_EQ(turn.outcomes.size(), 1u);
  EXPECT_TRUE(turn.outcomes[0].empty());
  EXPECT_EQ(read("conv").last_seq, 0u);
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, HardState{});
  EXPECT_TRUE(restored.entries.empty());
  EXPECT_EQ(restored.applied_index, 0u);
}

TEST_F(MessageStoreTest, DuplicateReturnsTheOriginalSeqAndWritesNothing) {
  ASSERT_EQ(append(message("conv", "m1", "first")).seq, 1u);
  ASSERT_EQ(append(message("conv", "m2", "second")).seq, 2u);

  wire::AppendRequest retry = message("conv", "m1", "first");
  retry.received_at_ms += 5000;  // a retry arrives later; still the same message
  const auto outcome = append(retry);
  EXPECT_EQ(outcome.status, Status::kOk);
  EXPECT_EQ(outcome.seq, 1u);
  EXPECT_TRUE(outcome.duplicate);

  const wire::ReadReply page = read("conv");
  EXPECT_EQ(page.last_seq, 2u);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0].payload.text, "first");
  EXPECT_EQ(page.messages[0].received_at_ms, 1700000000000) << "the original stays";
  EXPECT_EQ(append(message("conv", "m3")).seq, 3u) << "a duplicate must not use up a seq";
  EXPECT_EQ(store().load_partition(kP).applied_index, 4u) << "a duplicate is still applied";
}

TEST_F(MessageStoreTest, SameMessageIdWithOtherContentIsAConflict) {
  ASSERT_EQ(append(message("conv", "m1", "original")).seq, 1u);
  for (const auto& changed :
       {message("conv", "m1", "different text"), message("conv", "m1", "original", "mallory"),
        [] {
          auto r = message("conv", "m1", "original");
          r.recipients = {"carol"};
          return r;
        }(),
        [] {
          auto r = message("conv", "m1", "original");
          r.payload.type = "file";
          return r;
        }(),
        [] {
          auto r = message("conv", "m1", "original");
          r.channels = {"internal"};
          return r;
        }(),
        [] {
          auto r = message("conv", "m1", "original");
          r.metadata = R"({"priority":"high"})";
          return r;
        }()}) {
    const auto outcome = append(changed);
    EXPECT_EQ(outcome.status, Status::kConflict);
    EXPECT_EQ(outcome.seq, 1u);
    EXPECT_FALSE(outcome.detail.empty());
  }
  const wire::ReadReply page = read("conv");
  EXPECT_EQ(page.last_seq, 1u);
  ASSERT_EQ(page.messages.size(), 1u);
  EXPECT_EQ(page.messages[0].payload.text, "original");
}

// Recipients and channels are sets: a retry that lists them in another order is the same message.
TEST_F(MessageStoreTest, ARetryMayListRecipientsAndChannelsInAnyOrder) {
  auto original = message("conv", "m1", "hello");
  original.recipients = {"bob", "carol"};
  original.channels = {"whatsapp", "instagram"};
  original.metadata = R"({"a":1})";
  ASSERT_EQ(append(original).status, Status::kOk);
  auto retry = original;
  retry.recipients = {"carol", "bob"};
  retry.channels = {"instagram", "whatsapp"};
  const auto outcome = append(retry);
  EXPECT_EQ(outcome.status, Status::kOk);
  EXPECT_TRUE(outcome.duplicate);
  EXPECT_EQ(outcome.seq, 1u);
}

TEST_F(MessageStoreTest, MessageIdsAreScopedToTheirConversation) {
  EXPECT_EQ(append(message("a", "same-id")).seq, 1u);
  const auto other = append(message("b", "same-id", "other content"));
  EXPECT_EQ(other.status, Status::kOk);
  EXPECT_FALSE(other.duplicate);
  EXPECT_EQ(other.seq, 1u);
}

TEST_F(MessageStoreTest, DuplicateInsideOneTurn) {
  const auto outcomes =
      append_batch({message("conv", "m1", "x"), message("conv", "m2", "y"),
                    message("conv", "m1", "x"), message("conv", "m2", "changed")});
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_EQ(outcomes[0].status, Status::kOk);
  EXPECT_EQ(outcomes[0].seq, 1u);
  EXPECT_FALSE(outcomes[0].duplicate);
  EXPECT_EQ(outcomes[1].seq, 2u);
  EXPECT_EQ(outcomes[2].status, Status::kOk);
  EXPECT_EQ(outcomes[2].seq, 1u);
  EXPECT_TRUE(outcomes[2].duplicate);
  EXPECT_EQ(outcomes[3].status, Status::kConflict);
  EXPECT_EQ(outcomes[3].seq, 2u);
  const wire::ReadReply page = read("conv");
  EXPECT_EQ(page.last_seq, 2u);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(MessageStoreTest, ReadPages) {
  std::vector<wire::AppendRequest> batch;
  for (int i = 1; i <= 10; ++i) batch.push_back(message("conv", "m" + std::to_string(i)));
  append_batch(batch);

  auto page = read("conv", 1, 3);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(page.last_seq, 10u);
  page = read("conv", 4, 3);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{4, 5, 6}));
  page = read("conv", 9, 3);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{9, 10}));
  page = read("conv", 10, 1);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{10}));
  page = read("conv", 11, 3);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_EQ(page.last_seq, 10u);
  page = read("conv", 0, 2);  // seq 0 does not exist; starts at 1
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2}));
  page = read("conv", 1, 0);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_TRUE(page.messages.empty());
  page = read("conv", 0xffffffffffffffffull, 10);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_EQ(page.last_seq, 10u);
  EXPECT_EQ(read("conv", 1, 1000).messages.size(), 10u);
}

TEST_F(MessageStoreTest, ReadOfAnUnknownConversationIsEmpty) {
  append(message("known", "m"));
  const wire::ReadReply page = read("unknown");
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_EQ(page.last_seq, 0u);
}

TEST_F(MessageStoreTest, ConversationsWhoseIdsArePrefixesDoNotMix) {
  // "c" sorts right before "c-2" / "c.x" / "c2" in the key space.
  for (const std::string conversation : {"c", "c-2", "c.x", "c2", "b", "d"})
    for (int i = 1; i <= 3; ++i)
      append(message(conversation, "m" + std::to_string(i), conversation));
  for (const std::string conversation : {"c", "c-2", "c.x", "c2", "b", "d"}) {
    const wire::ReadReply page = read(conversation, 1, 100);
    EXPECT_EQ(page.last_seq, 3u) << conversation;
    ASSERT_EQ(page.messages.size(), 3u) << conversation;
    for (const auto& m : page.messages) {
      EXPECT_EQ(m.conversation_id, conversation);
      EXPECT_EQ(m.payload.text, conversation);
    }
    EXPECT_TRUE(read(conversation, 4, 100).messages.empty()) << conversation;
  }
}

TEST_F(MessageStoreTest, DataSurvivesReopening) {
  append_batch({message("a", "1", "one"), message("a", "2", "two"), message("b", "1")});
  reopen();
  wire::ReadReply page = read("a");
  EXPECT_EQ(page.last_seq, 2u);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[1].payload.text, "two");
  // Seqs continue and dedup survives.
  EXPECT_EQ(append(message("a", "3")).seq, 3u);
  const auto dup = append(message("a", "1", "one"));
  EXPECT_TRUE(dup.duplicate);
  EXPECT_EQ(dup.seq, 1u);
  EXPECT_EQ(append(message("a", "2", "not two")).status, Status::kConflict);
  reopen();
  EXPECT_EQ(read("a").last_seq, 3u);
  EXPECT_EQ(read("b").last_seq, 1u);
  EXPECT_EQ(store().load_partition(kP).applied_index, 6u);
}

TEST_F(MessageStoreTest, OpeningAnUnusableDirectoryThrows) {
  unit::write_text_file(dir_.path() / "plain-file", "x");
  MessageStore::Options o = options();
  o.directory = dir_.path() / "plain-file";
  EXPECT_THROW(MessageStore{o}, std::runtime_error);
  o.directory = dir_.path() / "plain-file" / "below";
  EXPECT_THROW(MessageStore{o}, std::runtime_error);
}

TEST_F(MessageStoreTest, AStoreOfTheEarlierLayoutIsRefused) {
  // What a node built before replication left behind: messages keyed without
  // the partition, no layout version.
  const auto directory = dir_.path() / "old";
  std::filesystem::create_directories(directory);
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), MDB_SUCCESS);
  mdb_env_set_maxdbs(env, 8);
  ASSERT_EQ(mdb_env_open(env, directory.c_str(), 0, 0640), MDB_SUCCESS);
  MDB_txn* txn = nullptr;
  MDB_dbi messages = 0;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), MDB_SUCCESS);
  ASSERT_EQ(mdb_dbi_open(txn, "messages", MDB_CREATE, &messages), MDB_SUCCESS);
  std::string key("conv\0\0\0\0\0\0\0\0\1", 13), value = "old record";
  MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
  ASSERT_EQ(mdb_put(txn, messages, &k, &v, 0), MDB_SUCCESS);
  ASSERT_EQ(mdb_txn_commit(txn), MDB_SUCCESS);
  mdb_env_close(env);

  MessageStore::Options o = options();
  o.directory = directory;
  try {
    MessageStore store(o);
    ADD_FAILURE() << "an old-layout store opened";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("earlier layout"), std::string::npos) << e.what();
  }
  // A fresh store records its layout and reopens.
  store().load_partition(kP);
  reopen();
}

TEST_F(MessageStoreTest, UndecodableEntryIsInvalidAndTheRestOfTheTurnGoesOn) {
  const LogEntry good = command_entry(message("conv", "m1"));
  LogEntry truncated = command_entry(message("conv", "m-truncated"));
  truncated.data.pop_back();
  const std::vector<LogEntry> entries = {
      good,
      LogEntry{1, "\xc1"},                    // a byte msgpack never uses
      LogEntry{1, "garbage"},                 // msgpack, but not a ReplicatedCommand
      truncated,                              // cut short
      command_entry(message("conv", "m2")),   // still applied, with the next seq
      command_entry(message("other", "o1")),  // other conversations too
  };
  const Ready ready = append_and_apply(store(), kP, entries);
  const Turn turn = write(store(), kP, ready);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  ASSERT_EQ(turn.outcomes.size(), 1u);
  const auto& outcomes = turn.outcomes[0];
  ASSERT_EQ(outcomes.size(), entries.size());
  EXPECT_EQ(outcomes[0].status, Status::kOk);
  EXPECT_EQ(outcomes[0].seq, 1u);
  for (std::size_t k : {1u, 2u, 3u}) {
    EXPECT_EQ(outcomes[k].status, Status::kInvalid) << k;
    EXPECT_EQ(outcomes[k].seq, 0u) << k;
    EXPECT_FALSE(outcomes[k].duplicate) << k;
    EXPECT_FALSE(outcomes[k].detail.empty()) << k;
  }
  EXPECT_EQ(outcomes[4].status, Status::kOk);
  EXPECT_EQ(outcomes[4].seq, 2u) << "an invalid entry does not use up a seq";
  EXPECT_EQ(outcomes[5].status, Status::kOk);
  EXPECT_EQ(outcomes[5].seq, 1u);

  EXPECT_EQ(seqs(read("conv")), (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(read("conv").messages[1].message_id, "m2");
  EXPECT_EQ(read("other").last_seq, 1u);
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.applied_index, 6u) << "invalid entries are applied (as nothing)";
  EXPECT_EQ(datas(restored.entries), datas(entries)) << "the log keeps them as they are";
}

TEST_F(MessageStoreTest, NoOpEntryAdvancesAppliedIndexWithoutAMessage) {
  ASSERT_EQ(append(message("conv", "m1")).seq, 1u);
  std::uint64_t applied = 0;
  const std::string before = store().snapshot(kP, applied);
  ASSERT_EQ(applied, 1u);

  // A new leader's no-op, in its own term.
  const Ready ready = append_and_apply(store(), kP, {noop_entry(2)});
  const Turn turn = write(store(), kP, ready);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  ASSERT_EQ(turn.outcomes.size(), 1u);
  ASSERT_EQ(turn.outcomes[0].size(), 1u);
  EXPECT_EQ(turn.outcomes[0][0].status, Status::kOk);
  EXPECT_EQ(turn.outcomes[0][0].seq, 0u);
  EXPECT_FALSE(turn.outcomes[0][0].duplicate);

  EXPECT_EQ(store().snapshot(kP, applied), before) << "the state machine did not change";
  EXPECT_EQ(applied, 2u);
  EXPECT_EQ(read("conv").last_seq, 1u);
  reopen();
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.applied_index, 2u);
  ASSERT_EQ(restored.entries.size(), 2u);
  EXPECT_EQ(restored.entries[1].term, 2u);
  EXPECT_TRUE(restored.entries[1].data.empty());
  EXPECT_EQ(append(message("conv", "m2")).seq, 2u);
}

// --- Consensus state ---------------------------------------------------------

TEST_F(MessageStoreTest, FreshPartitionLoadsEmpty) {
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, HardState{});
  EXPECT_EQ(restored.snapshot_index, 0u);
  EXPECT_EQ(restored.snapshot_term, 0u);
  EXPECT_EQ(restored.applied_index, 0u);
  EXPECT_TRUE(restored.entries.empty());
  std::uint64_t applied = 99;
  const std::string data = store().snapshot(kP, applied);
  EXPECT_EQ(applied, 0u);
  msgpack::object_handle handle = msgpack::unpack(data.data(), data.size());
  const auto snapshot = handle.get().as<wire::PartitionSnapshot>();
  EXPECT_TRUE(snapshot.messages.empty());
  EXPECT_TRUE(snapshot.heads.empty());
  EXPECT_TRUE(snapshot.dedup.empty());
}

TEST_F(MessageStoreTest, HardStateAndLogSurviveReopening) {
  // A follower: votes, then stores entries it does not know committed yet.
  Ready vote;
  vote.hard_state = HardState{7, "storage-2"};
  ASSERT_EQ(write(store(), kP, vote).result, WriteResult::kDurable);
  reopen();
  Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, (HardState{7, "storage-2"}));
  EXPECT_TRUE(restored.entries.empty());

  Ready append;
  append.hard_state = HardState{8, ""};
  append.first_new_index = 1;
  append.new_entries = {command_entry(message("conv", "m1"), 6), noop_entry(8),
                        command_entry(message("conv", "m2"), 8)};
  ASSERT_EQ(write(store(), kP, append).result, WriteResult::kDurable);
  reopen();
  restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, (HardState{8, ""}));
  EXPECT_EQ(restored.snapshot_index, 0u);
  EXPECT_EQ(restored.applied_index, 0u);
  EXPECT_EQ(terms(restored.entries), (std::vector<std::uint64_t>{6, 8, 8}));
  EXPECT_EQ(datas(restored.entries), datas(append.new_entries));
  EXPECT_EQ(read("conv").last_seq, 0u) << "stored is not applied";

  // A Ready without hard_state leaves it alone.
  Ready more;
  more.first_new_index = 4;
  more.new_entries = {noop_entry(8)};
  ASSERT_EQ(write(store(), kP, more).result, WriteResult::kDurable);
  reopen();
  restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, (HardState{8, ""}));
  EXPECT_EQ(terms(restored.entries), (std::vector<std::uint64_t>{6, 8, 8, 8}));
}

TEST_F(MessageStoreTest, AppliedIndexPersists) {
  const std::vector<LogEntry> entries = command_entries(
      {message("conv", "m1"), message("conv", "m2"), message("conv", "m3"), message("x", "m1")});
  Ready stored;
  stored.first_new_index = 1;
  stored.new_entries = entries;
  ASSERT_EQ(write(store(), kP, stored).result, WriteResult::kDurable);
  EXPECT_EQ(store().load_partition(kP).applied_index, 0u);

  // Committed later, applied over two turns.
  Turn turn = write(store(), kP, apply_only(1, {entries[0], entries[1]}));
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  EXPECT_EQ(turn.outcomes.at(0).at(1).seq, 2u);
  reopen();
  Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.applied_index, 2u);
  EXPECT_EQ(restored.entries.size(), 4u);
  EXPECT_EQ(read("conv").last_seq, 2u);

  turn = write(store(), kP, apply_only(3, {entries[2], entries[3]}));
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  EXPECT_EQ(turn.outcomes.at(0).at(0).seq, 3u);
  EXPECT_EQ(turn.outcomes.at(0).at(1).seq, 1u);
  reopen();
  EXPECT_EQ(store().load_partition(kP).applied_index, 4u);
  std::uint64_t applied = 0;
  store().snapshot(kP, applied);
  EXPECT_EQ(applied, 4u);
  EXPECT_EQ(read("conv").last_seq, 3u);
}

TEST_F(MessageStoreTest, FirstNewIndexReplacesTheTail) {
  Ready first;
  first.hard_state = HardState{1, "n1"};
  first.first_new_index = 1;
  for (int i = 1; i <= 5; ++i)
    first.new_entries.push_back(command_entry(message("conv", "t1-" + std::to_string(i)), 1));
  ASSERT_EQ(write(store(), kP, first).result, WriteResult::kDurable);

  // A new leader of term 2 overwrites the uncommitted entries from index 3.
  Ready replace;
  replace.hard_state = HardState{2, "n2"};
  replace.first_new_index = 3;
  replace.new_entries = {command_entry(message("conv", "t2-3"), 2),
                         command_entry(message("conv", "t2-4"), 2)};
  ASSERT_EQ(write(store(), kP, replace).result, WriteResult::kDurable);
  reopen();
  Restored restored = store().load_partition(kP);
  EXPECT_EQ(terms(restored.entries), (std::vector<std::uint64_t>{1, 1, 2, 2}))
      << "index 5 of term 1 must be gone";
  EXPECT_EQ(restored.entries[0].data, first.new_entries[0].data);
  EXPECT_EQ(restored.entries[1].data, first.new_entries[1].data);
  EXPECT_EQ(restored.entries[2].data, replace.new_entries[0].data);
  EXPECT_EQ(restored.entries[3].data, replace.new_entries[1].data);

  // A truncation without new entries shortens the log.
  Ready cut;
  cut.first_new_index = 2;
  ASSERT_EQ(write(store(), kP, cut).result, WriteResult::kDurable);
  restored = store().load_partition(kP);
  EXPECT_EQ(terms(restored.entries), (std::vector<std::uint64_t>{1}));

  // Applying what was finally committed gives the replacing leader's messages.
  Ready grow;
  grow.first_new_index = 2;
  grow.new_entries = {command_entry(message("conv", "t3-2"), 3)};
  grow.first_apply_index = 1;
  grow.to_apply = {restored.entries[0], grow.new_entries[0]};
  const Turn turn = write(store(), kP, grow);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  const wire::ReadReply page = read("conv");
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0].message_id, "t1-1");
  EXPECT_EQ(page.messages[1].message_id, "t3-2");
}

TEST_F(MessageStoreTest, LongTailTruncationStopsAtThePartition) {
  // Enough entries to span many LMDB pages, between neighbours on both sides.
  const std::string filler(300, 'f');
  for (PartitionId p : {kP - 1, kP, kOther}) {
    Ready ready;
    ready.first_new_index = 1;
    for (int i = 1; i <= 600; ++i) ready.new_entries.push_back(LogEntry{p, filler});
    ASSERT_EQ(write(store(), p, ready).result, WriteResult::kDurable);
  }
  Ready cut;
  cut.first_new_index = 11;
  cut.new_entries = {LogEntry{9, "new"}};
  ASSERT_EQ(write(store(), kP, cut).result, WriteResult::kDurable);
  reopen();
  const Restored restored = store().load_partition(kP);
  ASSERT_EQ(restored.entries.size(), 11u);
  EXPECT_EQ(restored.entries[9].term, kP);
  EXPECT_EQ(restored.entries[10].term, 9u);
  EXPECT_EQ(restored.entries[10].data, "new");
  for (PartitionId p : {kP - 1, kOther}) {
    const Restored neighbour = store().load_partition(p);
    EXPECT_EQ(neighbour.entries.size(), 600u) << p;
    EXPECT_EQ(neighbour.entries.back().term, p);
  }
}

TEST_F(MessageStoreTest, TrimDropsEntriesAndMovesTheSnapshotPoint) {
  const std::string filler(300, 'f');
  std::vector<LogEntry> entries;
  for (int i = 1; i <= 500; ++i)
    entries.push_back(
        command_entry(message("conv", "m" + std::to_string(i), filler), i <= 200 ? 1 : 2));
  {
    Ready ready;
    ready.first_new_index = 1;
    ready.new_entries = entries;
    ready.first_apply_index = 1;
    ready.to_apply = entries;
    ASSERT_EQ(write(store(), kP, ready).result, WriteResult::kDurable);
  }
  append_batch({message("neighbour", "n1")}, kOther);

  // A leader trims what every replica has: in the same turn as an apply.
  Ready trim = append_and_apply(store(), kP, {command_entry(message("conv", "m501"), 2)});
  trim.trim_to = 300;
  trim.trim_term = 2;
  ASSERT_EQ(write(store(), kP, trim).result, WriteResult::kDurable);
  reopen();
  Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.snapshot_index, 300u);
  EXPECT_EQ(restored.snapshot_term, 2u);
  EXPECT_EQ(restored.applied_index, 501u);
  ASSERT_EQ(restored.entries.size(), 201u) << "entries 301..501";
  EXPECT_EQ(restored.entries.front().data, entries[300].data);
  EXPECT_EQ(restored.entries.back().data, trim.new_entries[0].data);

  // Trimming does not touch the applied state nor other partitions.
  EXPECT_EQ(read("conv").last_seq, 501u);
  EXPECT_EQ(read("conv", 1, 1).messages.at(0).message_id, "m1");
  EXPECT_EQ(read("neighbour", 1, 10, kOther).last_seq, 1u);
  EXPECT_EQ(store().load_partition(kOther).entries.size(), 1u);

  // Appending continues after the trimmed log; a second trim moves on.
  Ready next = append_and_apply(store(), kP, {noop_entry(3)});
  next.trim_to = 501;
  next.trim_term = 2;
  ASSERT_EQ(write(store(), kP, next).result, WriteResult::kDurable);
  restored = store().load_partition(kP);
  EXPECT_EQ(restored.snapshot_index, 501u);
  EXPECT_EQ(restored.snapshot_term, 2u);
  EXPECT_EQ(restored.applied_index, 502u);
  ASSERT_EQ(restored.entries.size(), 1u);
  EXPECT_EQ(restored.entries[0].term, 3u);
}

TEST_F(MessageStoreTest, LoadPartitionRefusesALogWithAHole) {
  Ready ready;
  ready.first_new_index = 1;
  ready.new_entries = {noop_entry(), noop_entry()};
  ASSERT_EQ(write(store(), kP, ready).result, WriteResult::kDurable);
  Ready beyond;  // breaks the shell's contract: index 3 is skipped
  beyond.first_new_index = 4;
  beyond.new_entries = {noop_entry()};
  ASSERT_EQ(write(store(), kP, beyond).result, WriteResult::kDurable);
  EXPECT_THROW(store().load_partition(kP), std::runtime_error);
  EXPECT_NO_THROW(store().load_partition(kOther));
}

TEST_F(MessageStoreTest, PartitionsAreIndependent) {
  // Same conversation and message ids in both partitions, different content.
  Ready three = append_and_apply(
      store(), kP, command_entries({message("conv", "m1", "p3"), message("conv", "m2", "p3")}, 5));
  three.hard_state = HardState{5, "n1"};
  ASSERT_EQ(write(store(), kP, three).result, WriteResult::kDurable);

  Restored four = store().load_partition(kOther);
  EXPECT_EQ(four.hard_state, HardState{});
  EXPECT_TRUE(four.entries.empty());
  EXPECT_EQ(four.applied_index, 0u);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 0u);
  EXPECT_TRUE(read("conv", 1, 10, kOther).messages.empty());

  // No dedup across partitions: m1 with other content is a new message in 4.
  Ready four_ready =
      append_and_apply(store(), kOther, command_entries({message("conv", "m1", "p4")}, 2));
  four_ready.hard_state = HardState{2, "n3"};
  const Turn turn = write(store(), kOther, four_ready);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  EXPECT_EQ(turn.outcomes.at(0).at(0).status, Status::kOk);
  EXPECT_FALSE(turn.outcomes.at(0).at(0).duplicate);
  EXPECT_EQ(turn.outcomes.at(0).at(0).seq, 1u);

  // One turn touching both partitions.
  Ready both3 = append_and_apply(store(), kP, command_entries({message("conv", "m3", "p3")}, 5));
  Ready both4 =
      append_and_apply(store(), kOther, command_entries({message("conv", "m2", "p4")}, 2));
  const Turn both = write(store(), {{kP, &both3}, {kOther, &both4}});
  ASSERT_EQ(both.result, WriteResult::kDurable) << both.error;
  ASSERT_EQ(both.outcomes.size(), 2u);
  EXPECT_EQ(both.outcomes[0].at(0).seq, 3u);
  EXPECT_EQ(both.outcomes[1].at(0).seq, 2u);

  reopen();
  const Restored p3 = store().load_partition(kP);
  const Restored p4 = store().load_partition(kOther);
  EXPECT_EQ(p3.hard_state, (HardState{5, "n1"}));
  EXPECT_EQ(p4.hard_state, (HardState{2, "n3"}));
  EXPECT_EQ(terms(p3.entries), (std::vector<std::uint64_t>{5, 5, 5}));
  EXPECT_EQ(terms(p4.entries), (std::vector<std::uint64_t>{2, 2}));
  EXPECT_EQ(p3.applied_index, 3u);
  EXPECT_EQ(p4.applied_index, 2u);
  for (const auto& m : read("conv", 1, 10, kP).messages) EXPECT_EQ(m.payload.text, "p3");
  for (const auto& m : read("conv", 1, 10, kOther).messages) EXPECT_EQ(m.payload.text, "p4");
  EXPECT_EQ(read("conv", 1, 10, kP).last_seq, 3u);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 2u);
  EXPECT_EQ(read("conv", 1, 10, 5).last_seq, 0u) << "an unused partition is empty";
  EXPECT_TRUE(store().load_partition(5).entries.empty());
}

// --- Replicas agree ------------------------------------------------------------

// A committed log with everything the state machine has to handle.
std::vector<LogEntry> mixed_log() {
  std::vector<LogEntry> log;
  log.push_back(noop_entry(1));
  for (int i = 0; i < 120; ++i) {
    const std::string conversation = "conv-" + std::to_string(i % 7);
    log.push_back(
        command_entry(message(conversation, "m" + std::to_string(i), "text " + std::to_string(i)),
                      1 + i / 40, kStoredAt + i));
    if (i % 11 == 3)  // a retry of an earlier message, arriving later
      log.push_back(
          command_entry(message("conv-" + std::to_string((i - 3) % 7), "m" + std::to_string(i - 3),
                                "text " + std::to_string(i - 3)),
                        1 + i / 40, kStoredAt + 1000 + i));
    if (i % 13 == 5)  // a reused message_id with other content
      log.push_back(command_entry(message(conversation, "m" + std::to_string(i), "changed"),
                                  1 + i / 40, kStoredAt + 2000 + i));
    if (i % 17 == 0) log.push_back(LogEntry{1 + std::uint64_t(i) / 40, "\xc1"});
    if (i % 40 == 39) log.push_back(noop_entry(2 + i / 40));
  }
  return log;
}

// Appends and applies `log` on `store` in turns of `chunk` entries.
std::vector<AppendOutcome> apply_in_chunks(MessageStore& store, PartitionId partition,
                                           const std::vector<LogEntry>& log, std::size_t chunk) {
  std::vector<AppendOutcome> all;
  for (std::size_t from = 0; from < log.size(); from += chunk) {
    const std::vector<LogEntry> part(log.begin() + from,
                                     log.begin() + std::min(log.size(), from + chunk));
    const Ready ready = append_and_apply(store, partition, part);
    Turn turn = write(store, partition, ready);
    EXPECT_EQ(turn.result, WriteResult::kDurable) << turn.error;
    all.insert(all.end(), turn.outcomes.at(0).begin(), turn.outcomes.at(0).end());
  }
  return all;
}

TEST_F(MessageStoreTest, SameCommittedLogGivesSameStateOnTwoStores) {
  const std::vector<LogEntry> log = mixed_log();
  MessageStore a(options(1 << 20, 16 << 20, "a"));
  MessageStore b(options(1 << 20, 16 << 20, "b"));
  commit(b, kOther, {message("conv-1", "elsewhere")});  // b has unrelated data too
  const auto outcomes_a = apply_in_chunks(a, kP, log, log.size());
  const auto outcomes_b = apply_in_chunks(b, kP, log, 7);  // other turn boundaries
  ASSERT_EQ(outcomes_a.size(), log.size());
  ASSERT_EQ(outcomes_b.size(), log.size());
  int duplicates = 0, conflicts = 0, invalid = 0;
  for (std::size_t k = 0; k < log.size(); ++k) {
    EXPECT_EQ(outcomes_a[k].status, outcomes_b[k].status) << k;
    EXPECT_EQ(outcomes_a[k].seq, outcomes_b[k].seq) << k;
    EXPECT_EQ(outcomes_a[k].duplicate, outcomes_b[k].duplicate) << k;
    duplicates += outcomes_a[k].duplicate && outcomes_a[k].status == Status::kOk;
    conflicts += outcomes_a[k].status == Status::kConflict;
    invalid += outcomes_a[k].status == Status::kInvalid;
  }
  EXPECT_GT(duplicates, 0);
  EXPECT_GT(conflicts, 0);
  EXPECT_GT(invalid, 0);

  for (int c = 0; c < 7; ++c) {
    const std::string conversation = "conv-" + std::to_string(c);
    const wire::ReadReply page_a = a.read(kP, conversation, 1, 1000);
    const wire::ReadReply page_b = b.read(kP, conversation, 1, 1000);
    EXPECT_EQ(page_a.status, Status::kOk);
    EXPECT_GT(page_a.messages.size(), 10u);
    EXPECT_EQ(seqs(page_a).back(), page_a.last_seq) << "gap-free: seqs 1..last";
    EXPECT_EQ(seqs(page_a).size(), page_a.last_seq);
    EXPECT_EQ(page_bytes(page_a), page_bytes(page_b)) << conversation;
    EXPECT_EQ(page_bytes(a.read(kP, conversation, 5, 3)),
              page_bytes(b.read(kP, conversation, 5, 3)));
  }
  std::uint64_t applied_a = 0, applied_b = 0;
  EXPECT_EQ(a.snapshot(kP, applied_a), b.snapshot(kP, applied_b));
  EXPECT_EQ(applied_a, log.size());
  EXPECT_EQ(applied_b, log.size());
}

TEST_F(MessageStoreTest, SnapshotInstallReplacesThePartitionState) {
  MessageStore a(options(1 << 20, 16 << 20, "a"));
  MessageStore b(options(1 << 20, 16 << 20, "b"));
  // A: the leader's state.
  apply_in_chunks(a, kP, mixed_log(), 50);
  // B: a replica that diverged long ago, with its own data for kP (other
  // content under the same ids, and a conversation A never saw), and data
  // in other partitions.
  apply_in_chunks(b, kP,
                  command_entries({message("conv-0", "m0", "stale"), message("conv-0", "zz"),
                                   message("only-on-b", "x"), message("conv-3", "m3", "stale")}),
                  10);
  Ready b_vote;
  b_vote.hard_state = HardState{9, "n1"};
  ASSERT_EQ(write(b, kP, b_vote).result, WriteResult::kDurable);
  apply_in_chunks(b, kOther, command_entries({message("conv-0", "m0", "p4")}), 10);
  apply_in_chunks(b, kP - 1, command_entries({message("conv-0", "m0", "p2")}), 10);
  const std::string other_before = [&] {
    std::uint64_t ignored = 0;
    return b.snapshot(kOther, ignored) + b.snapshot(kP - 1, ignored);
  }();

  std::uint64_t applied = 0;
  const std::string data = a.snapshot(kP, applied);
  ASSERT_EQ(applied, mixed_log().size());
  Ready install;
  install.install = consensus::SnapshotInstall{applied, 4, data};
  install.first_new_index = applied + 1;  // as the core hands it: the stored tail goes
  const Turn turn = write(b, kP, install);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  ASSERT_EQ(turn.outcomes.size(), 1u);
  EXPECT_TRUE(turn.outcomes[0].empty());

  for (MessageStore* store : {&a, &b}) {
    SCOPED_TRACE(store == &a ? "a" : "b");
    std::uint64_t snapshot_applied = 0;
    EXPECT_EQ(store->snapshot(kP, snapshot_applied), data);
    EXPECT_EQ(snapshot_applied, applied);
  }
  for (const std::string conversation :
       {"conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "conv-5", "conv-6", "only-on-b"})
    EXPECT_EQ(page_bytes(a.read(kP, conversation, 1, 1000)),
              page_bytes(b.read(kP, conversation, 1, 1000)))
        << conversation;
  EXPECT_EQ(b.read(kP, "only-on-b", 1, 10).last_seq, 0u);
  EXPECT_TRUE(b.read(kP, "only-on-b", 1, 10).messages.empty());

  const Restored restored = b.load_partition(kP);
  EXPECT_EQ(restored.hard_state, (HardState{9, "n1"})) << "install keeps the hard state";
  EXPECT_EQ(restored.snapshot_index, applied);
  EXPECT_EQ(restored.snapshot_term, 4u);
  EXPECT_EQ(restored.applied_index, applied);
  EXPECT_TRUE(restored.entries.empty()) << "B's own log of the partition is gone";

  // Other partitions of B are untouched.
  std::uint64_t ignored = 0;
  EXPECT_EQ(b.snapshot(kOther, ignored) + b.snapshot(kP - 1, ignored), other_before);
  EXPECT_EQ(b.read(kOther, "conv-0", 1, 10).messages.at(0).payload.text, "p4");
  EXPECT_EQ(b.load_partition(kOther).entries.size(), 1u);
  EXPECT_EQ(b.load_partition(kP - 1).entries.size(), 1u);

  // Both replicas go on identically: dedup, conflicts and new seqs.
  const wire::ReadReply original = a.read(kP, "conv-2", 1, 1);
  ASSERT_EQ(original.messages.size(), 1u);
  const wire::StoredMessage& first = original.messages[0];
  wire::AppendRequest retry = message("conv-2", first.message_id, first.payload.text);
  retry.received_at_ms += 60000;
  const std::vector<LogEntry> after =
      command_entries({retry, message("conv-2", first.message_id, "changed"),
                       message("conv-2", "brand-new"), message("only-on-b", "x")},
                      5);
  const auto outcomes_a = apply_in_chunks(a, kP, after, 10);
  const auto outcomes_b = apply_in_chunks(b, kP, after, 10);
  ASSERT_EQ(outcomes_b.size(), 4u);
  EXPECT_EQ(outcomes_b[0].status, Status::kOk);
  EXPECT_TRUE(outcomes_b[0].duplicate);
  EXPECT_EQ(outcomes_b[0].seq, 1u);
  EXPECT_EQ(outcomes_b[1].status, Status::kConflict);
  EXPECT_EQ(outcomes_b[1].seq, 1u);
  EXPECT_EQ(outcomes_b[2].status, Status::kOk);
  EXPECT_FALSE(outcomes_b[2].duplicate);
  EXPECT_EQ(outcomes_b[2].seq, a.read(kP, "conv-2", 1, 1).last_seq);
  EXPECT_EQ(outcomes_b[3].status, Status::kOk);
  EXPECT_FALSE(outcomes_b[3].duplicate) << "B's old dedup record is gone";
  EXPECT_EQ(outcomes_b[3].seq, 1u);
  for (std::size_t k = 0; k < after.size(); ++k) {
    EXPECT_EQ(outcomes_a[k].status, outcomes_b[k].status) << k;
    EXPECT_EQ(outcomes_a[k].seq, outcomes_b[k].seq) << k;
    EXPECT_EQ(outcomes_a[k].duplicate, outcomes_b[k].duplicate) << k;
  }
  std::uint64_t applied_a = 0, applied_b = 0;
  EXPECT_EQ(a.snapshot(kP, applied_a), b.snapshot(kP, applied_b));
  EXPECT_EQ(applied_a, applied_b);
  const Restored after_b = b.load_partition(kP);
  EXPECT_EQ(after_b.snapshot_index, applied);
  EXPECT_EQ(after_b.entries.size(), after.size());
}

TEST_F(MessageStoreTest, InstallingAnEmptySnapshotClearsThePartition) {
  MessageStore empty(options(1 << 20, 16 << 20, "empty"));
  std::uint64_t applied = 7;
  const std::string data = empty.snapshot(kP, applied);
  ASSERT_EQ(applied, 0u);

  append_batch({message("conv", "m1"), message("conv", "m2")});
  append_batch({message("conv", "m1")}, kOther);
  Ready install;
  install.install = consensus::SnapshotInstall{10, 3, data};
  install.first_new_index = 11;
  install.new_entries = {noop_entry(3)};
  install.first_apply_index = 11;
  install.to_apply = install.new_entries;
  const Turn turn = write(store(), kP, install);
  ASSERT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  reopen();
  EXPECT_EQ(read("conv").last_seq, 0u);
  EXPECT_TRUE(read("conv").messages.empty());
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.snapshot_index, 10u);
  EXPECT_EQ(restored.snapshot_term, 3u);
  EXPECT_EQ(restored.applied_index, 11u);
  EXPECT_EQ(terms(restored.entries), (std::vector<std::uint64_t>{3}));
  const auto outcome = append(message("conv", "m1"));
  EXPECT_FALSE(outcome.duplicate);
  EXPECT_EQ(outcome.seq, 1u);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 1u);
}

TEST_F(MessageStoreTest, DeletingUpToTheEndOfTheDatabaseWorks) {
  // One partition only, so truncating its tail deletes the last records of
  // the log table and installing a snapshot empties every table.
  const std::string filler(300, 'f');
  commit(store(), kOther, big_batch("conv", "m", 300, 300));
  Ready stored;
  stored.first_new_index = 301;
  for (int i = 0; i < 300; ++i) stored.new_entries.push_back(LogEntry{2, filler});
  ASSERT_EQ(write(store(), kOther, stored).result, WriteResult::kDurable);
  Ready cut;
  cut.first_new_index = 305;
  ASSERT_EQ(write(store(), kOther, cut).result, WriteResult::kDurable);
  EXPECT_EQ(store().load_partition(kOther).entries.size(), 304u);

  MessageStore empty(options(1 << 20, 16 << 20, "empty"));
  std::uint64_t applied = 0;
  Ready install;
  install.install = consensus::SnapshotInstall{1000, 5, empty.snapshot(kOther, applied)};
  install.first_new_index = 1001;
  ASSERT_EQ(write(store(), kOther, install).result, WriteResult::kDurable);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 0u);
  EXPECT_TRUE(store().load_partition(kOther).entries.empty());
  std::string data = store().snapshot(kOther, applied);
  EXPECT_EQ(data, empty.snapshot(kOther, applied));

  // The emptied store keeps working.
  const auto outcomes = commit(store(), kOther, {message("conv", "m0", filler)});
  EXPECT_EQ(outcomes.at(0).seq, 1u);
  EXPECT_FALSE(outcomes.at(0).duplicate);
  reopen();
  const Restored restored = store().load_partition(kOther);
  EXPECT_EQ(restored.snapshot_index, 1000u);
  EXPECT_EQ(restored.applied_index, 1001u);
  EXPECT_EQ(restored.entries.size(), 1u);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 1u);
}

TEST_F(MessageStoreTest, UndecodableSnapshotFailsTheTurnAndWritesNothing) {
  append_batch({message("conv", "m1")});
  Ready install;
  install.hard_state = HardState{4, "n2"};
  install.install = consensus::SnapshotInstall{10, 3, "not a snapshot"};
  Ready other = append_and_apply(store(), kOther, command_entries({message("conv", "m1")}));
  const Turn turn = write(store(), {{kOther, &other}, {kP, &install}});
  EXPECT_EQ(turn.result, WriteResult::kFailed);
  EXPECT_FALSE(turn.error.empty());
  const Restored restored = store().load_partition(kP);
  EXPECT_EQ(restored.hard_state, HardState{});
  EXPECT_EQ(restored.snapshot_index, 0u);
  EXPECT_EQ(restored.applied_index, 1u);
  EXPECT_EQ(read("conv").last_seq, 1u);
  EXPECT_EQ(read("conv", 1, 10, kOther).last_seq, 0u) << "the whole turn is abandoned";
  EXPECT_TRUE(store().load_partition(kOther).entries.empty());
}

// --- Map size ------------------------------------------------------------------

TEST_F(MessageStoreTest, FullStoreRefusesTheWholeTurnAndKeepsEarlierData) {
  constexpr std::uint64_t kMap = 128 << 10;  // LMDB needs a few pages; this holds a few dozen KiB
  MessageStore small(options(kMap, kMap));
  ASSERT_EQ(
      commit(small, kP, {message("conv", "early-1"), message("conv", "early-2")}).at(1).status,
      Status::kOk);
  Ready vote;
  vote.hard_state = HardState{1, "n1"};
  ASSERT_EQ(write(small, kP, vote).result, WriteResult::kDurable);
  const Restored before = small.load_partition(kP);

  // ~800 KiB in one turn cannot fit; the first messages of it could.
  auto batch = big_batch("conv", "big-", 100, 4000);
  batch.insert(batch.begin(), message("conv", "early-1"));  // a duplicate in the failing turn
  batch.push_back(message("other", "o-1"));
  Ready big = append_and_apply(small, kP, command_entries(batch, 2));
  big.hard_state = HardState{2, ""};
  Ready little = append_and_apply(small, kOther, command_entries({message("x", "1")}));
  const Turn turn = write(small, {{kOther, &little}, {kP, &big}});
  EXPECT_EQ(turn.result, WriteResult::kFull);
  EXPECT_FALSE(turn.error.empty());
  EXPECT_EQ(small.map_size_bytes(), kMap);

  // Nothing of the failed turn is visible; the earlier data is intact.
  wire::ReadReply page = small.read(kP, "conv", 1, 1000);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(page.last_seq, 2u);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0].message_id, "early-1");
  EXPECT_EQ(page.messages[1].message_id, "early-2");
  EXPECT_TRUE(small.read(kP, "other", 1, 10).messages.empty());
  EXPECT_EQ(small.read(kP, "other", 1, 10).last_seq, 0u);
  EXPECT_EQ(small.read(kOther, "x", 1, 10).last_seq, 0u);
  const Restored after = small.load_partition(kP);
  EXPECT_EQ(after.hard_state, before.hard_state);
  EXPECT_EQ(after.applied_index, 2u);
  EXPECT_EQ(datas(after.entries), datas(before.entries));
  EXPECT_TRUE(small.load_partition(kOther).entries.empty());

  // The store still works, and the failed turn's ids were never recorded.
  const auto retry = commit(small, kP, {message("conv", "big-0", "small now")});
  EXPECT_EQ(retry.at(0).status, Status::kOk);
  EXPECT_FALSE(retry.at(0).duplicate);
  EXPECT_EQ(retry.at(0).seq, 3u);
}

TEST_F(MessageStoreTest, FullStoreStaysConsistentAcrossReopen) {
  constexpr std::uint64_t kMap = 128 << 10;
  {
    MessageStore small(options(kMap, kMap));
    commit(small, kP, {message("conv", "early-1")});
    const Ready big =
        append_and_apply(small, kP, command_entries(big_batch("conv", "big-", 60, 4000)));
    EXPECT_EQ(write(small, kP, big).result, WriteResult::kFull);
  }
  MessageStore reopened(options(kMap, kMap));
  const wire::ReadReply page = reopened.read(kP, "conv", 1, 1000);
  EXPECT_EQ(page.last_seq, 1u);
  EXPECT_EQ(page.messages.size(), 1u);
  const Restored restored = reopened.load_partition(kP);
  EXPECT_EQ(restored.entries.size(), 1u);
  EXPECT_EQ(restored.applied_index, 1u);
}

TEST_F(MessageStoreTest, MapGrowsByDoublingUpToItsMaximum) {
  constexpr std::uint64_t kInitial = 128 << 10, kMax = 8 << 20;
  MessageStore growing(options(kInitial, kMax));
  EXPECT_EQ(growing.map_size_bytes(), kInitial);
  const auto outcomes = commit(growing, kP, big_batch("conv", "big-", 100, 4000));
  ASSERT_EQ(outcomes.size(), 100u);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].status, Status::kOk) << i;
    EXPECT_EQ(outcomes[i].seq, i + 1) << i;
  }
  const std::uint64_t grown = growing.map_size_bytes();
  EXPECT_GT(grown, kInitial);
  EXPECT_LE(grown, kMax);
  EXPECT_EQ(grown % kInitial, 0u);
  EXPECT_EQ((grown / kInitial) & (grown / kInitial - 1), 0u) << "initial times a power of two";
  const wire::ReadReply page = growing.read(kP, "conv", 1, 1000);
  EXPECT_EQ(page.last_seq, 100u);
  EXPECT_EQ(page.messages.size(), 100u);

  // The last step stops at the maximum when doubling would pass it.
  constexpr std::uint64_t kOddMax = 384 << 10;
  MessageStore capped(options(kInitial, kOddMax, "capped"));
  commit(capped, kP, big_batch("conv", "big-", 20, 4000));  // ~160 KiB with its log
  EXPECT_EQ(capped.map_size_bytes(), 256u << 10);
  const Ready more =
      append_and_apply(capped, kP, command_entries(big_batch("conv", "more-", 15, 4000)));
  const Turn turn = write(capped, kP, more);
  EXPECT_EQ(turn.result, WriteResult::kDurable) << turn.error;
  EXPECT_EQ(capped.map_size_bytes(), kOddMax);
}

TEST_F(MessageStoreTest, GrownStoreReopensWithItsData) {
  constexpr std::uint64_t kInitial = 128 << 10;
  {
    MessageStore growing(options(kInitial, 8 << 20));
    commit(growing, kP, big_batch("conv", "big-", 100, 4000));
  }
  MessageStore reopened(options(kInitial, 8 << 20));
  EXPECT_GT(reopened.map_size_bytes(), kInitial) << "the map must fit the data already there";
  EXPECT_EQ(reopened.read(kP, "conv", 1, 1000).messages.size(), 100u);
  EXPECT_EQ(reopened.load_partition(kP).entries.size(), 100u);
  EXPECT_EQ(commit(reopened, kP, big_batch("conv", "more-", 10, 4000)).at(9).seq, 110u);
}

TEST_F(MessageStoreTest, GrowthStopsAtTheMaximum) {
  constexpr std::uint64_t kInitial = 128 << 10, kMax = 256 << 10;
  MessageStore capped(options(kInitial, kMax));
  const Ready big =
      append_and_apply(capped, kP, command_entries(big_batch("conv", "big-", 200, 4000)));
  const Turn turn = write(capped, kP, big);
  EXPECT_EQ(turn.result, WriteResult::kFull);
  EXPECT_EQ(capped.map_size_bytes(), kMax);
  EXPECT_EQ(capped.read(kP, "conv", 1, 10).last_seq, 0u);
  EXPECT_TRUE(capped.load_partition(kP).entries.empty());
}

// Fills `store` in big turns until one does not fit, then in small ones until
// one does not fit either; returns the number of turns.
int fill(MessageStore& store) {
  int turns = 0;
  for (int i = 0; turns < 100; ++i, ++turns) {
    const Ready ready = append_and_apply(
        store, kP, command_entries(big_batch("conv", "big-" + std::to_string(i) + "-", 8, 3000)));
    if (write(store, kP, ready).result == WriteResult::kFull) break;
    if (turns == 4) {
      EXPECT_FALSE(store.nearly_full()) << "about a quarter used";
    }
  }
  EXPECT_GT(turns, 4);
  for (int i = 0; turns < 200; ++i, ++turns) {
    const Ready ready = append_and_apply(
        store, kP, command_entries({message("conv", "small-" + std::to_string(i), "s")}));
    if (write(store, kP, ready).result == WriteResult::kFull) break;
  }
  EXPECT_LT(turns, 200);
  return turns;
}

TEST_F(MessageStoreTest, NearlyFullOnlyAtTheMaximumAndMostlyUsed) {
  EXPECT_FALSE(store().nearly_full()) << "fresh, below its maximum";
  constexpr std::uint64_t kMap = 1 << 20;
  MessageStore at_max(options(kMap, kMap, "at-max"));
  EXPECT_FALSE(at_max.nearly_full()) << "fresh, at its maximum but empty";
  fill(at_max);
  EXPECT_TRUE(at_max.nearly_full());
  EXPECT_EQ(at_max.map_size_bytes(), kMap);
  EXPECT_FALSE(store().nearly_full());
}

TEST_F(MessageStoreTest, NearlyFullAfterGrowingAndAfterReopening) {
  constexpr std::uint64_t kInitial = 256 << 10, kMax = 1 << 20;
  {
    MessageStore growing(options(kInitial, kMax));
    fill(growing);
    EXPECT_EQ(growing.map_size_bytes(), kMax);
    EXPECT_TRUE(growing.nearly_full());
  }
  // Reopened with a small initial size, LMDB maps just what the data needs,
  // which is below the maximum; the store is as full as before.
  MessageStore reopened(options(kInitial, kMax));
  EXPECT_LE(reopened.map_size_bytes(), kMax);
  EXPECT_TRUE(reopened.nearly_full());
  // And a store that reopens below 90% of its maximum is not nearly full.
  MessageStore half(options(kInitial, kMax, "half"));
  commit(half, kP, big_batch("conv", "big-", 40, 3000));
  EXPECT_FALSE(half.nearly_full());
}

}  // namespace
}  // namespace chat4all::storage
