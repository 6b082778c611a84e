// The router's locator indexer (nodes/router/locator_indexer.h) against the real partition
// state machine (nodes/storage/domain.h) on in-memory partitions: messages are stored, the
// indexer's reads, commands and acknowledgements are carried out on the partitions they name,
// and the locator must come to name every stored message, whatever fails or restarts between.
#include "nodes/router/locator_indexer.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <set>

#include "common/codec.h"
#include "nodes/storage/domain.h"
#include "tests/unit/memory_partition_state.h"

namespace chat4all::router {
namespace {

using wire::Status;

// A partition as the storage node holds it; note_appended writes records only.
using Partition = unit::MemoryRecords;

constexpr PartitionId kPartitions = 4;

// Conversations are named "c<p>-..." and locator keys hash by their last character, so a test
// knows where everything lives.
PartitionId partition_of(std::string_view key) {
  if (key.rfind("c", 0) == 0) return static_cast<PartitionId>(key[1] - '0');
  return static_cast<PartitionId>(static_cast<unsigned char>(key.back()) % kPartitions);
}

class Cluster {
 public:
  std::uint64_t store(const std::string& tenant, const std::string& conversation,
                      const std::string& message_id) {
    const PartitionId p = partition_of(conversation);
    wire::StoredMessage message;
    message.conversation_id = conversation;
    message.message_id = message_id;
    message.seq = ++seqs[conversation];
    std::vector<wire::Event> events;
    storage::note_appended(partitions[p], p, message, tenant, false, events);
    stored.push_back({tenant, message_id, conversation});
    return message.seq;
  }

  std::optional<std::string> find(const std::string& tenant, const std::string& message_id) {
    const PartitionId p = partition_of(wire::locator_key(tenant, message_id));
    auto result = storage::run_query(
        partitions[p],
        wire::QueryRequest{wire::locator_key(tenant, message_id), wire::QueryKind::kFindMessage,
                           codec::pack_body(wire::LocateMessage{tenant, message_id})});
    if (result.status != Status::kOk) return std::nullopt;
    return codec::unpack_body<std::string>(result.body);
  }

  std::size_t outbox_size(PartitionId p) {
    auto result = storage::run_query(
        partitions[p],
        wire::QueryRequest{wire::partition_key(p), wire::QueryKind::kReadOutbox,
                           codec::pack_body(wire::ReadOutbox{p, 0, 1024, wire::kOutboxLocator})});
    return codec::unpack_body<std::vector<wire::OutboxEvent>>(result.body)->size();
  }

  // Carries out what the indexer asked for, each step failing with probability `failure`
  // (a failed command may or may not have been applied: a reply lost after the commit).
  void carry_out(LocatorIndexer& indexer, std::int64_t now, double failure = 0) {
    IndexerOutput out = indexer.take_output();
    for (const auto& conflict : out.conflicts) conflicts.push_back(conflict);
    for (const auto& read : out.reads) {
      if (fails(failure)) {
        indexer.outbox_read(read.partition, std::nullopt, now);
        continue;
      }
      auto result = storage::run_query(
          partitions[read.partition],
          wire::QueryRequest{wire::partition_key(read.partition), wire::QueryKind::kReadOutbox,
                             codec::pack_body(wire::ReadOutbox{read.partition, read.after,
                                                               read.limit, wire::kOutboxLocator})});
      ASSERT_EQ(result.status, Status::kOk) << result.detail;
      indexer.outbox_read(read.partition,
                          codec::unpack_body<std::vector<wire::OutboxEvent>>(result.body), now);
    }
    for (const auto& command : out.commands) {
      ASSERT_LE(command.body.entries.size(), wire::kIndexMessagesEntriesMax);
      for (const auto& entry : command.body.entries)
        ASSERT_EQ(partition_of(wire::locator_key(entry.tenant_id, entry.message_id)),
                  command.locator_partition)
            << "an entry sent to a partition that does not hold its locator";
      ++commands_applied;
      const bool lost_before = fails(failure);
      const bool lost_after = !lost_before && fails(failure);
      if (lost_before) {
        indexer.command_done(command.token, std::nullopt, now);
        continue;
      }
      auto result = storage::apply_command(
          partitions[command.locator_partition], command.locator_partition,
          wire::CommandRequest{wire::partition_key(command.locator_partition),
                               wire::CommandKind::kIndexMessages, codec::pack_body(command.body)},
          now);
      ASSERT_EQ(result.status, Status::kOk) << result.detail;
      indexer.command_done(
          command.token,
          lost_after ? std::nullopt : codec::unpack_body<wire::IndexMessagesResult>(result.body),
          now);
    }
    for (const auto& ack : out.acks) {
      if (fails(failure)) {
        indexer.ack_done(ack.partition, ack.up_to, false, now);
        continue;
      }
      auto result = storage::apply_command(
          partitions[ack.partition], ack.partition,
          wire::CommandRequest{
              wire::partition_key(ack.partition), wire::CommandKind::kAckOutbox,
              codec::pack_body(wire::AckOutbox{ack.partition, ack.up_to, wire::kOutboxLocator})},
          now);
      ASSERT_EQ(result.status, Status::kOk);
      indexer.ack_done(ack.partition, ack.up_to, true, now);
    }
  }

  // Every message whose locator entry left its outbox is findable under its conversation (or
  // lost to a conflict that named another conversation first).
  void expect_nothing_acknowledged_is_missing() {
    for (PartitionId p = 0; p < kPartitions; ++p) {
      std::set<std::string> still_queued;
      auto result = storage::run_query(
          partitions[p],
          wire::QueryRequest{wire::partition_key(p), wire::QueryKind::kReadOutbox,
                             codec::pack_body(wire::ReadOutbox{p, 0, 1024, wire::kOutboxLocator})});
      const auto events = codec::unpack_body<std::vector<wire::OutboxEvent>>(result.body);
      ASSERT_TRUE(events.has_value());
      for (const auto& event : *events)
        still_queued.insert(event.tenant_id + "/" + event.message_id);
      for (const auto& entry : stored) {
        if (partition_of(entry.conversation_id) != p) continue;
        if (still_queued.count(entry.tenant_id + "/" + entry.message_id)) continue;
        EXPECT_TRUE(find(entry.tenant_id, entry.message_id).has_value())
            << entry.message_id << " left the outbox of partition " << p << " unindexed";
      }
    }
  }

  std::map<PartitionId, Partition> partitions;
  std::map<std::string, std::uint64_t> seqs;
  std::vector<wire::LocateMessage> stored;
  std::vector<wire::LocatorConflict> conflicts;
  int commands_applied = 0;
  std::mt19937_64 random{1};

 private:
  bool fails(double probability) {
    return probability > 0 && std::uniform_real_distribution<double>(0, 1)(random) < probability;
  }
};

std::vector<PartitionId> all_partitions() {
  std::vector<PartitionId> all;
  for (PartitionId p = 0; p < kPartitions; ++p) all.push_back(p);
  return all;
}

IndexerLimits small_limits() {
  IndexerLimits limits;
  limits.page_events = 8;
  limits.round_entries_max = 16;
  limits.held_per_partition_max = 32;
  limits.idle_poll_ms = 40;
  limits.failure_wait_ms = 200;
  return limits;
}

// Drives the indexer for `ticks` steps of 10 ms from `start`; returns the time reached.
std::int64_t run(Cluster& cluster, LocatorIndexer& indexer, std::int64_t start, int ticks,
                 double failure = 0) {
  std::int64_t now = start;
  for (int i = 0; i < ticks; ++i, now += 10) {
    indexer.tick(now);
    cluster.carry_out(indexer, now, failure);
  }
  return now;
}

TEST(LocatorIndexerTest, EntriesAreIndexedBehindTheLogThenAcknowledged) {
  Cluster cluster;
  cluster.store("acme", "c1-a", "m1");
  cluster.store("acme", "c1-a", "m2");
  cluster.store("acme", "c2-b", "m3");
  EXPECT_FALSE(cluster.find("acme", "m1")) << "nothing is indexed before the indexer runs";
  LocatorIndexer indexer(all_partitions(), partition_of, small_limits());
  run(cluster, indexer, 0, 3);
  EXPECT_EQ(cluster.find("acme", "m1"), "c1-a");
  EXPECT_EQ(cluster.find("acme", "m2"), "c1-a");
  EXPECT_EQ(cluster.find("acme", "m3"), "c2-b");
  EXPECT_EQ(cluster.outbox_size(1), 0u);
  EXPECT_EQ(cluster.outbox_size(2), 0u);
  EXPECT_EQ(indexer.counters().added, 3u);
  EXPECT_EQ(indexer.entries_held(), 0u);
  // Two source partitions, and "m1","m2","m3" end in three different characters: one command
  // per locator partition, all in one round.
  EXPECT_EQ(cluster.commands_applied, 3);
  EXPECT_EQ(indexer.counters().rounds, 1u);
}

TEST(LocatorIndexerTest, ARoundCarriesManyMessagesInOneCommandPerLocatorPartition) {
  Cluster cluster;
  for (int i = 0; i < 12; ++i) cluster.store("acme", "c0-x", "id" + std::to_string(i) + "x");
  // Every id ends in "x": one locator partition for all twelve.
  LocatorIndexer indexer(all_partitions(), partition_of, small_limits());
  indexer.tick(0);
  cluster.carry_out(indexer, 0);  // the first page: 8 of the 12
  indexer.tick(0);
  IndexerOutput out = indexer.take_output();
  ASSERT_EQ(out.commands.size(), 1u);
  EXPECT_EQ(out.commands[0].body.entries.size(), 8u);
  EXPECT_TRUE(out.acks.empty()) << "nothing is acknowledged before its command succeeded";
}

// A failed command is sent again with the same entries; the acknowledgement waits for it, so a
// crash at any point leaves the entry in the outbox.
TEST(LocatorIndexerTest, AFailedCommandHoldsTheAcknowledgementAndIsSentAgain) {
  Cluster cluster;
  cluster.store("acme", "c1-a", "m1");
  LocatorIndexer indexer(all_partitions(), partition_of, small_limits());
  indexer.tick(0);
  cluster.carry_out(indexer, 0);
  indexer.tick(0);
  IndexerOutput out = indexer.take_output();
  ASSERT_EQ(out.commands.size(), 1u);
  indexer.command_done(out.commands[0].token, std::nullopt, 0);
  indexer.tick(100);
  out = indexer.take_output();
  EXPECT_TRUE(out.commands.empty()) << "the failure wait has not passed";
  EXPECT_TRUE(out.acks.empty());
  indexer.tick(200);
  out = indexer.take_output();
  ASSERT_EQ(out.commands.size(), 1u);
  EXPECT_EQ(out.commands[0].body.entries[0].message_id, "m1");
  indexer.command_done(out.commands[0].token, wire::IndexMessagesResult{1, 0, {}}, 200);
  out = indexer.take_output();
  ASSERT_EQ(out.acks.size(), 1u);
  EXPECT_EQ(out.acks[0].partition, 1u);
  EXPECT_EQ(out.acks[0].up_to, 1u);
  EXPECT_EQ(cluster.outbox_size(1), 1u) << "the entry waits in the outbox until acknowledged";
}

// The indexer dies after writing some locator entries and before acknowledging them (or before
// writing them at all): a new one reads the outboxes from their acknowledged point and indexes
// every entry, the ones written already again without change.
TEST(LocatorIndexerTest, ARestartedIndexerLosesNoEntry) {
  Cluster cluster;
  for (int i = 0; i < 40; ++i)
    cluster.store("acme", "c" + std::to_string(i % kPartitions) + "-conv", "m" + std::to_string(i));
  {
    LocatorIndexer first(all_partitions(), partition_of, small_limits());
    first.tick(0);
    cluster.carry_out(first, 0);  // reads
    first.tick(0);
    // The commands are applied, but the indexer is gone before it hears back: no acknowledgement.
    IndexerOutput out = first.take_output();
    ASSERT_FALSE(out.commands.empty());
    for (const auto& command : out.commands)
      storage::apply_command(
          cluster.partitions[command.locator_partition], command.locator_partition,
          wire::CommandRequest{wire::partition_key(command.locator_partition),
                               wire::CommandKind::kIndexMessages, codec::pack_body(command.body)},
          0);
  }
  std::size_t queued = 0;
  for (PartitionId p = 0; p < kPartitions; ++p) queued += cluster.outbox_size(p);
  EXPECT_EQ(queued, 40u) << "nothing was acknowledged";
  LocatorIndexer second(all_partitions(), partition_of, small_limits());
  run(cluster, second, 1000, 30);
  for (const auto& entry : cluster.stored)
    EXPECT_EQ(cluster.find(entry.tenant_id, entry.message_id), entry.conversation_id)
        << entry.message_id;
  for (PartitionId p = 0; p < kPartitions; ++p) EXPECT_EQ(cluster.outbox_size(p), 0u);
  EXPECT_GT(second.counters().replayed, 0u) << "the entries written before were written again";
  EXPECT_EQ(second.counters().added + second.counters().replayed, 40u);
}

// An id reused in another conversation of the tenant: both messages are stored, the first indexed
// keeps the id, the other is reported as a conflict, and both entries leave their outboxes.
TEST(LocatorIndexerTest, AnIdReusedInAnotherConversationIsAConflictAndTheFirstKeepsIt) {
  Cluster cluster;
  cluster.store("acme", "c1-first", "shared");
  LocatorIndexer indexer(all_partitions(), partition_of, small_limits());
  std::int64_t now = run(cluster, indexer, 0, 3);
  cluster.store("acme", "c2-second", "shared");
  cluster.store("other", "c3-elsewhere", "shared");  // another tenant's id is its own
  run(cluster, indexer, now, 10);
  EXPECT_EQ(cluster.find("acme", "shared"), "c1-first");
  EXPECT_EQ(cluster.find("other", "shared"), "c3-elsewhere");
  ASSERT_EQ(cluster.conflicts.size(), 1u);
  EXPECT_EQ(cluster.conflicts[0].refused.conversation_id, "c2-second");
  EXPECT_EQ(cluster.conflicts[0].held_by, "c1-first");
  EXPECT_EQ(indexer.counters().conflicts, 1u);
  EXPECT_EQ(cluster.outbox_size(2), 0u) << "a conflict is an outcome, not a failure to retry";
}

// Seeded: reads, commands (before or after they are applied) and acknowledgements fail at random,
// and the indexer restarts now and then. At every step whatever left an outbox is findable, and
// in the end every stored message is.
TEST(LocatorIndexerTest, RandomFailuresAndRestartsLoseNothing) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Cluster cluster;
    cluster.random.seed(seed);
    std::mt19937_64 random(seed);
    auto indexer = std::make_unique<LocatorIndexer>(all_partitions(), partition_of, small_limits());
    std::int64_t now = 0;
    int next_id = 0;
    for (int step = 0; step < 200; ++step, now += 10) {
      for (int i = static_cast<int>(random() % 4); i > 0; --i, ++next_id)
        cluster.store("acme", "c" + std::to_string(random() % kPartitions) + "-conv",
                      "m" + std::to_string(next_id));
      if (random() % 50 == 0)
        indexer = std::make_unique<LocatorIndexer>(all_partitions(), partition_of, small_limits());
      indexer->tick(now);
      cluster.carry_out(*indexer, now, 0.2);
      ASSERT_NO_FATAL_FAILURE(cluster.expect_nothing_acknowledged_is_missing());
    }
    run(cluster, *indexer, now, 300);  // no more failures: everything gets through
    for (const auto& entry : cluster.stored)
      ASSERT_EQ(cluster.find(entry.tenant_id, entry.message_id), entry.conversation_id)
          << entry.message_id;
    for (PartitionId p = 0; p < kPartitions; ++p) EXPECT_EQ(cluster.outbox_size(p), 0u);
  }
}

// A partition with many entries waiting is read no further than its bound until a round takes
// them; storage keeps the rest.
TEST(LocatorIndexerTest, ReadingStopsAtTheBoundOfEntriesHeld) {
  Cluster cluster;
  for (int i = 0; i < 100; ++i) cluster.store("acme", "c1-busy", "m" + std::to_string(i));
  LocatorIndexer indexer({1}, partition_of, small_limits());
  for (int i = 0; i < 10; ++i) {
    indexer.tick(0);
    IndexerOutput out = indexer.take_output();
    // Answer reads only: commands stay unanswered, so nothing is acknowledged.
    for (const auto& read : out.reads) {
      auto result = storage::run_query(
          cluster.partitions[1],
          wire::QueryRequest{
              wire::partition_key(1), wire::QueryKind::kReadOutbox,
              codec::pack_body(wire::ReadOutbox{1, read.after, read.limit, wire::kOutboxLocator})});
      indexer.outbox_read(1, codec::unpack_body<std::vector<wire::OutboxEvent>>(result.body), 0);
    }
  }
  EXPECT_LE(indexer.entries_held(), small_limits().held_per_partition_max);
  EXPECT_GT(indexer.entries_held(), 0u);
}

}  // namespace
}  // namespace chat4all::router
