// The LMDB conversation store: nodes/storage/message_store.h.
#include "nodes/storage/message_store.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/test_util.h"

namespace chat4all::storage {
namespace {

using unit::TempDir;
using wire::Status;

constexpr std::int64_t kStoredAt = 1700000000999;

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

class MessageStoreTest : public ::testing::Test {
 protected:
  MessageStore::Options options(std::uint64_t initial = 1 << 20, std::uint64_t max = 16 << 20) {
    MessageStore::Options o;
    o.directory = dir_.path() / "store";
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

  // Appends one message and returns its outcome.
  AppendOutcome append(const wire::AppendRequest& request) {
    auto outcomes = store().append_batch({request}, kStoredAt);
    EXPECT_EQ(outcomes.size(), 1u);
    return outcomes.at(0);
  }

  std::vector<std::uint64_t> seqs(const HistoryPage& page) {
    std::vector<std::uint64_t> result;
    for (const auto& m : page.messages) result.push_back(m.seq);
    return result;
  }

  TempDir dir_;
  std::unique_ptr<MessageStore> store_;
};

TEST_F(MessageStoreTest, SeqsStartAtOneAndAreSequential) {
  for (std::uint64_t i = 1; i <= 5; ++i) {
    const auto outcome = append(message("conv", "m" + std::to_string(i)));
    EXPECT_EQ(outcome.status, Status::kOk);
    EXPECT_EQ(outcome.seq, i);
    EXPECT_FALSE(outcome.duplicate);
    EXPECT_EQ(outcome.detail, "");
  }
  const HistoryPage page = store().read("conv", 1, 100);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(page.last_seq, 5u);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2, 3, 4, 5}));
}

TEST_F(MessageStoreTest, ConversationsHaveIndependentSeqs) {
  const auto outcomes =
      store().append_batch({message("a", "1"), message("b", "1"), message("a", "2"),
                            message("c", "x"), message("b", "2"), message("a", "3")},
                           kStoredAt);
  ASSERT_EQ(outcomes.size(), 6u);
  const std::vector<std::uint64_t> expected = {1, 1, 2, 1, 2, 3};
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].status, Status::kOk) << i;
    EXPECT_EQ(outcomes[i].seq, expected[i]) << i;
  }
  EXPECT_EQ(append(message("b", "3")).seq, 3u);
  EXPECT_EQ(store().read("a", 1, 10).last_seq, 3u);
  EXPECT_EQ(store().read("b", 1, 10).last_seq, 3u);
  EXPECT_EQ(store().read("c", 1, 10).last_seq, 1u);
}

TEST_F(MessageStoreTest, StoredMessageKeepsEveryField) {
  wire::AppendRequest request = message("conv-9", "msg-1", "caf\xc3\xa9 \xf0\x9f\x98\x80");
  request.recipients = {"bob", "carol"};
  request.received_at_ms = 1234;
  ASSERT_EQ(append(request).status, Status::kOk);
  const HistoryPage page = store().read("conv-9", 1, 10);
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
  EXPECT_EQ(m.stored_at_ms, kStoredAt);
}

TEST_F(MessageStoreTest, EmptyBatchIsFine) {
  EXPECT_TRUE(store().append_batch({}, kStoredAt).empty());
  EXPECT_EQ(store().read("conv", 1, 10).last_seq, 0u);
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

  const HistoryPage page = store().read("conv", 1, 10);
  EXPECT_EQ(page.last_seq, 2u);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0].payload.text, "first");
  EXPECT_EQ(page.messages[0].received_at_ms, 1700000000000) << "the original stays";
  EXPECT_EQ(append(message("conv", "m3")).seq, 3u) << "a duplicate must not use up a seq";
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
        }()}) {
    const auto outcome = append(changed);
    EXPECT_EQ(outcome.status, Status::kConflict);
    EXPECT_EQ(outcome.seq, 1u);
    EXPECT_FALSE(outcome.detail.empty());
  }
  const HistoryPage page = store().read("conv", 1, 10);
  EXPECT_EQ(page.last_seq, 1u);
  ASSERT_EQ(page.messages.size(), 1u);
  EXPECT_EQ(page.messages[0].payload.text, "original");
}

TEST_F(MessageStoreTest, MessageIdsAreScopedToTheirConversation) {
  EXPECT_EQ(append(message("a", "same-id")).seq, 1u);
  const auto other = append(message("b", "same-id", "other content"));
  EXPECT_EQ(other.status, Status::kOk);
  EXPECT_FALSE(other.duplicate);
  EXPECT_EQ(other.seq, 1u);
}

TEST_F(MessageStoreTest, DuplicateInsideOneBatch) {
  const auto outcomes =
      store().append_batch({message("conv", "m1", "x"), message("conv", "m2", "y"),
                            message("conv", "m1", "x"), message("conv", "m2", "changed")},
                           kStoredAt);
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
  const HistoryPage page = store().read("conv", 1, 10);
  EXPECT_EQ(page.last_seq, 2u);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2}));
}

TEST_F(MessageStoreTest, ReadPages) {
  std::vector<wire::AppendRequest> batch;
  for (int i = 1; i <= 10; ++i) batch.push_back(message("conv", "m" + std::to_string(i)));
  store().append_batch(batch, kStoredAt);

  auto page = store().read("conv", 1, 3);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(page.last_seq, 10u);
  page = store().read("conv", 4, 3);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{4, 5, 6}));
  page = store().read("conv", 9, 3);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{9, 10}));
  page = store().read("conv", 10, 1);
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{10}));
  page = store().read("conv", 11, 3);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_EQ(page.last_seq, 10u);
  page = store().read("conv", 0, 2);  // seq 0 does not exist; starts at 1
  EXPECT_EQ(seqs(page), (std::vector<std::uint64_t>{1, 2}));
  page = store().read("conv", 1, 0);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_TRUE(page.messages.empty());
  page = store().read("conv", 0xffffffffffffffffull, 10);
  EXPECT_TRUE(page.messages.empty());
  EXPECT_EQ(page.last_seq, 10u);
  EXPECT_EQ(store().read("conv", 1, 1000).messages.size(), 10u);
}

TEST_F(MessageStoreTest, ReadOfAnUnknownConversationIsEmpty) {
  append(message("known", "m"));
  const HistoryPage page = store().read("unknown", 1, 10);
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
    const HistoryPage page = store().read(conversation, 1, 100);
    EXPECT_EQ(page.last_seq, 3u) << conversation;
    ASSERT_EQ(page.messages.size(), 3u) << conversation;
    for (const auto& m : page.messages) {
      EXPECT_EQ(m.conversation_id, conversation);
      EXPECT_EQ(m.payload.text, conversation);
    }
    EXPECT_TRUE(store().read(conversation, 4, 100).messages.empty()) << conversation;
  }
}

TEST_F(MessageStoreTest, DataSurvivesReopening) {
  store().append_batch({message("a", "1", "one"), message("a", "2", "two"), message("b", "1")},
                       kStoredAt);
  reopen();
  HistoryPage page = store().read("a", 1, 10);
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
  EXPECT_EQ(store().read("a", 1, 10).last_seq, 3u);
  EXPECT_EQ(store().read("b", 1, 10).last_seq, 1u);
}

TEST_F(MessageStoreTest, OpeningAnUnusableDirectoryThrows) {
  unit::write_text_file(dir_.path() / "plain-file", "x");
  MessageStore::Options o = options();
  o.directory = dir_.path() / "plain-file";
  EXPECT_THROW(MessageStore{o}, std::runtime_error);
  o.directory = dir_.path() / "plain-file" / "below";
  EXPECT_THROW(MessageStore{o}, std::runtime_error);
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

TEST_F(MessageStoreTest, FullStoreRefusesTheWholeBatchAndKeepsEarlierData) {
  constexpr std::uint64_t kMap = 128 << 10;  // LMDB needs a few pages; this holds a few dozen KiB
  MessageStore small(options(kMap, kMap));
  ASSERT_EQ(small.append_batch({message("conv", "early-1"), message("conv", "early-2")}, kStoredAt)
                .at(1)
                .status,
            Status::kOk);

  // ~400 KiB in one batch cannot fit; the first messages of it could.
  auto batch = big_batch("conv", "big-", 100, 4000);
  batch.insert(batch.begin(), message("conv", "early-1"));  // a duplicate in the failing batch
  batch.push_back(message("other", "o-1"));
  const auto outcomes = small.append_batch(batch, kStoredAt);
  ASSERT_EQ(outcomes.size(), batch.size());
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].status, Status::kStorageFull) << i;
    EXPECT_EQ(outcomes[i].seq, 0u) << i;
    EXPECT_FALSE(outcomes[i].duplicate) << i;
    EXPECT_FALSE(outcomes[i].detail.empty()) << i;
  }
  EXPECT_EQ(small.map_size_bytes(), kMap);

  // Nothing of the failed batch is visible; the earlier data is intact.
  HistoryPage page = small.read("conv", 1, 1000);
  EXPECT_EQ(page.status, Status::kOk);
  EXPECT_EQ(page.last_seq, 2u);
  ASSERT_EQ(page.messages.size(), 2u);
  EXPECT_EQ(page.messages[0].message_id, "early-1");
  EXPECT_EQ(page.messages[1].message_id, "early-2");
  EXPECT_TRUE(small.read("other", 1, 10).messages.empty());
  EXPECT_EQ(small.read("other", 1, 10).last_seq, 0u);

  // The store still works, and the failed batch's ids were never recorded.
  const auto retry = small.append_batch({message("conv", "big-0", "small now")}, kStoredAt);
  EXPECT_EQ(retry.at(0).status, Status::kOk);
  EXPECT_FALSE(retry.at(0).duplicate);
  EXPECT_EQ(retry.at(0).seq, 3u);
}

TEST_F(MessageStoreTest, FullStoreStaysConsistentAcrossReopen) {
  constexpr std::uint64_t kMap = 128 << 10;
  {
    MessageStore small(options(kMap, kMap));
    small.append_batch({message("conv", "early-1")}, kStoredAt);
    const auto outcomes = small.append_batch(big_batch("conv", "big-", 60, 4000), kStoredAt);
    EXPECT_EQ(outcomes.at(0).status, Status::kStorageFull);
  }
  MessageStore reopened(options(kMap, kMap));
  const HistoryPage page = reopened.read("conv", 1, 1000);
  EXPECT_EQ(page.last_seq, 1u);
  EXPECT_EQ(page.messages.size(), 1u);
}

TEST_F(MessageStoreTest, MapGrowsUpToItsMaximum) {
  constexpr std::uint64_t kInitial = 128 << 10;
  MessageStore growing(options(kInitial, 8 << 20));
  EXPECT_EQ(growing.map_size_bytes(), kInitial);
  const auto outcomes = growing.append_batch(big_batch("conv", "big-", 100, 4000), kStoredAt);
  ASSERT_EQ(outcomes.size(), 100u);
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    EXPECT_EQ(outcomes[i].status, Status::kOk) << i;
    EXPECT_EQ(outcomes[i].seq, i + 1) << i;
  }
  EXPECT_GT(growing.map_size_bytes(), kInitial);
  EXPECT_LE(growing.map_size_bytes(), std::uint64_t{8 << 20});
  const HistoryPage page = growing.read("conv", 1, 1000);
  EXPECT_EQ(page.last_seq, 100u);
  EXPECT_EQ(page.messages.size(), 100u);
}

TEST_F(MessageStoreTest, GrownStoreReopensWithItsData) {
  constexpr std::uint64_t kInitial = 128 << 10;
  {
    MessageStore growing(options(kInitial, 8 << 20));
    growing.append_batch(big_batch("conv", "big-", 100, 4000), kStoredAt);
  }
  MessageStore reopened(options(kInitial, 8 << 20));
  EXPECT_GT(reopened.map_size_bytes(), kInitial) << "the map must fit the data already there";
  EXPECT_EQ(reopened.read("conv", 1, 1000).messages.size(), 100u);
  EXPECT_EQ(reopened.append_batch(big_batch("conv", "more-", 10, 4000), kStoredAt).at(9).seq, 110u);
}

TEST_F(MessageStoreTest, GrowthStopsAtTheMaximum) {
  constexpr std::uint64_t kInitial = 128 << 10, kMax = 256 << 10;
  MessageStore capped(options(kInitial, kMax));
  const auto outcomes = capped.append_batch(big_batch("conv", "big-", 200, 4000), kStoredAt);
  for (const auto& outcome : outcomes) EXPECT_EQ(outcome.status, Status::kStorageFull);
  EXPECT_EQ(capped.map_size_bytes(), kMax);
  EXPECT_EQ(capped.read("conv", 1, 10).last_seq, 0u);
}

}  // namespace
}  // namespace chat4all::storage
