// The node-wide write-ahead log (nodes/storage/write_ahead_log.h), its replay
// into the tables after a crash, and the apply thread that writes the tables
// behind it (nodes/storage/apply_worker.h).
#include "nodes/storage/write_ahead_log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "nodes/storage/apply_worker.h"
#include "tests/unit/test_util.h"

namespace chat4all::storage {
namespace {

using consensus::HardState;
using consensus::Ready;
using unit::TempDir;
using wire::LogEntry;

constexpr PartitionId kP = 7;

LogEntry append_entry(const std::string& conversation, const std::string& message_id,
                      std::uint64_t term = 1) {
  wire::AppendRequest request;
  request.conversation_id = conversation;
  request.message_id = message_id;
  request.sender_id = "alice";
  request.recipients = {"bob"};
  request.payload = {"text", "hello " + message_id};
  wire::ReplicatedCommand command{request, 1700000000000};
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, command);
  return LogEntry{term, std::string(buffer.data(), buffer.size())};
}

// A replica's turn that stores `entries` from `first_index` on (and nothing else).
Ready log_change(std::uint64_t first_index, std::vector<LogEntry> entries,
                 std::optional<HardState> hard_state = std::nullopt) {
  Ready ready;
  ready.hard_state = std::move(hard_state);
  ready.first_new_index = first_index;
  ready.new_entries = std::move(entries);
  return ready;
}

std::string record_of(PartitionId partition, const Ready& ready) {
  return encode_wal_record({{partition, &ready}});
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<MessageStore> store;
  std::unique_ptr<WriteAheadLog> wal;

  Fixture() { open(); }
  // As a restarted node opens them.
  void open() {
    wal.reset();
    store.reset();
    store = std::make_unique<MessageStore>(MessageStore::Options{dir.path() / "store"});
    wal = std::make_unique<WriteAheadLog>(WriteAheadLog::Options{dir.path() / "wal"},
                                          store->wal_checkpoint() + 1);
  }
  std::uint64_t append(const std::string& record, std::uint64_t forget_through = 0) {
    std::string error;
    auto position = wal->append(record, forget_through, error);
    EXPECT_TRUE(position) << error;
    return position.value_or(0);
  }
  std::vector<std::uint64_t> positions_after(std::uint64_t after) const {
    std::vector<std::uint64_t> positions;
    wal->replay(after,
                [&](std::uint64_t position, std::string_view) { positions.push_back(position); });
    return positions;
  }
};

TEST(WriteAheadLogTest, RecordsRoundTripWithHardStateEntriesAndInstall) {
  Ready ready =
      log_change(5, {append_entry("c1", "m1", 2), LogEntry{2, ""}}, HardState{2, "storage-2"});
  ready.install = consensus::SnapshotInstall{4, 1, "snapshot-bytes"};
  Ready plain = log_change(9, {append_entry("c2", "m2", 3)});
  const auto records = decode_wal_record(encode_wal_record({{kP, &ready}, {kP + 1, &plain}}));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].partition, kP);
  ASSERT_TRUE(records[0].hard_state);
  EXPECT_EQ(*records[0].hard_state, (HardState{2, "storage-2"}));
  EXPECT_EQ(records[0].first_new_index, 5u);
  ASSERT_EQ(records[0].new_entries.size(), 2u);
  EXPECT_EQ(records[0].new_entries[0].data, ready.new_entries[0].data);
  EXPECT_EQ(records[0].new_entries[1].term, 2u);
  ASSERT_TRUE(records[0].install);
  EXPECT_EQ(records[0].install->index, 4u);
  EXPECT_EQ(records[0].install->data, "snapshot-bytes");
  EXPECT_EQ(records[1].partition, kP + 1);
  EXPECT_FALSE(records[1].hard_state);
  EXPECT_FALSE(records[1].install);
  EXPECT_EQ(records[1].first_new_index, 9u);
}

TEST(WriteAheadLogTest, UndecodableRecordIsRefusedWithAReason) {
  EXPECT_THROW(decode_wal_record("\xc1 not msgpack"), std::runtime_error);
  EXPECT_THROW(decode_wal_record(""), std::runtime_error);
}

TEST(WriteAheadLogTest, OnlyConsensusStateMustBeDurable) {
  Ready apply_only;
  apply_only.first_apply_index = 3;
  apply_only.to_apply = {LogEntry{1, ""}};
  apply_only.trim_to = 2;
  EXPECT_FALSE(must_be_durable(apply_only));
  EXPECT_TRUE(must_be_durable(log_change(1, {LogEntry{1, ""}})));
  Ready vote;
  vote.hard_state = HardState{3, "storage-1"};
  EXPECT_TRUE(must_be_durable(vote));
}

TEST(WriteAheadLogTest, PositionsIncreaseAndSurviveAReopen) {
  Fixture f;
  const Ready ready = log_change(1, {append_entry("c", "m1")});
  const std::uint64_t first = f.append(record_of(kP, ready));
  const std::uint64_t second = f.append(record_of(kP, ready));
  EXPECT_EQ(second, first + 1);
  EXPECT_EQ(f.positions_after(0), (std::vector<std::uint64_t>{first, second}));
  EXPECT_EQ(f.positions_after(first), (std::vector<std::uint64_t>{second}));
  f.open();
  EXPECT_EQ(f.wal->last_position(), second);
  EXPECT_EQ(f.append(record_of(kP, ready)), second + 1);
}

TEST(WriteAheadLogTest, ForgottenRecordsAreGoneAndPositionsAreNotReused) {
  Fixture f;
  const Ready ready = log_change(1, {append_entry("c", "m1")});
  for (int i = 0; i < 5; ++i) f.append(record_of(kP, ready));
  // Forgetting rides on the next append's transaction.
  const std::uint64_t sixth = f.append(record_of(kP, ready), 4);
  EXPECT_EQ(f.positions_after(0), (std::vector<std::uint64_t>{5, sixth}));
  const std::uint64_t seventh = f.append(record_of(kP, ready), sixth);
  EXPECT_EQ(f.positions_after(0), (std::vector<std::uint64_t>{seventh}));
  // A log emptied of everything still never hands out a position the tables' checkpoint
  // may already name.
  WriteAheadLog fresh(WriteAheadLog::Options{f.dir.path() / "other"}, 100);
  std::string error;
  EXPECT_EQ(fresh.append("x", 0, error), 100u);
}

// A node that crashed after its log record was durable and before the apply
// thread wrote the tables: the replay puts the hard state and the log into the
// tables, and the checkpoint moves, so a second replay has nothing to do.
TEST(WriteAheadLogTest, ReplayBringsTheTablesConsensusStateUpToTheLog) {
  Fixture f;
  const std::uint64_t p1 = f.append(
      record_of(kP, log_change(1, {LogEntry{1, ""}, append_entry("c", "m1")}, HardState{1, "n1"})));
  // A later leader's turn replaced the second entry and added one.
  const std::uint64_t p2 =
      f.append(record_of(kP, log_change(2, {append_entry("c", "m2", 2), append_entry("c", "m3", 2)},
                                        HardState{2, "n2"})));
  f.open();  // the crash: the tables never saw either record
  EXPECT_EQ(f.store->wal_checkpoint(), 0u);
  EXPECT_EQ(replay_write_ahead_log(*f.wal, *f.store), 2u);
  EXPECT_EQ(f.store->wal_checkpoint(), p2);
  const consensus::Restored restored = f.store->load_partition(kP);
  EXPECT_EQ(restored.hard_state, (HardState{2, "n2"}));
  ASSERT_EQ(restored.entries.size(), 3u);
  EXPECT_EQ(restored.entries[0].term, 1u);
  EXPECT_EQ(restored.entries[1].data, append_entry("c", "m2", 2).data);
  EXPECT_EQ(restored.entries[2].data, append_entry("c", "m3", 2).data);
  // Nothing was applied: the cores apply committed entries again.
  EXPECT_EQ(restored.applied_index, 0u);
  EXPECT_TRUE(f.store->read(kP, "c", 1, 10).messages.empty());
  EXPECT_EQ(replay_write_ahead_log(*f.wal, *f.store), 0u);
  EXPECT_GT(p2, p1);
}

// Records the apply thread had already committed to the tables are not
// replayed over them again (a replayed truncation would undo later state).
TEST(WriteAheadLogTest, ReplayStartsAfterTheCheckpoint) {
  Fixture f;
  const Ready first = log_change(1, {append_entry("c", "m1")}, HardState{1, "n1"});
  const std::uint64_t p1 = f.append(record_of(kP, first));
  std::vector<std::vector<AppendOutcome>> outcomes;
  std::string error;
  ASSERT_EQ(f.store->write_turn({{kP, &first}}, outcomes, error, {}, p1),
            MessageStore::WriteResult::kDurable);
  const std::uint64_t p2 =
      f.append(record_of(kP, log_change(2, {append_entry("c", "m2")}, HardState{3, "n3"})));
  f.open();
  EXPECT_EQ(replay_write_ahead_log(*f.wal, *f.store), 1u);
  EXPECT_EQ(f.store->wal_checkpoint(), p2);
  const auto restored = f.store->load_partition(kP);
  EXPECT_EQ(restored.entries.size(), 2u);
  EXPECT_EQ(restored.hard_state.term, 3u);
}

// The apply thread answers appends with the seqs the log gives them, in
// order, many turns per transaction, and moves the checkpoint.
TEST(ApplyWorkerTest, AppliesTurnsInOrderAndHandsBackTheirOutcomes) {
  Fixture f;
  ApplyWorker worker(*f.store, ApplyWorker::Limits{});
  std::uint64_t index = 1;
  for (std::uint64_t turn = 1; turn <= 20; ++turn) {
    ApplyWorker::Job job;
    job.wal_position = turn;
    Ready ready = log_change(index, {append_entry("c", "m" + std::to_string(2 * turn)),
                                     append_entry("c", "m" + std::to_string(2 * turn + 1))});
    ready.first_apply_index = index;
    ready.to_apply = ready.new_entries;
    index += 2;
    job.partitions.push_back(kP);
    job.readies.push_back(std::move(ready));
    worker.push(std::move(job));
  }
  std::vector<std::uint64_t> seqs;
  std::vector<std::uint64_t> indexes;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (seqs.size() < 40 && std::chrono::steady_clock::now() < deadline) {
    for (auto& done : worker.take_done())
      for (auto& applied : done.applied) {
        EXPECT_EQ(applied.partition, kP);
        for (std::size_t k = 0; k < applied.outcomes.size(); ++k) {
          EXPECT_EQ(applied.outcomes[k].status, wire::Status::kOk);
          seqs.push_back(applied.outcomes[k].seq);
          indexes.push_back(applied.first_index + k);
          EXPECT_EQ(applied.terms[k], 1u);
        }
      }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(seqs.size(), 40u);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i], i + 1);
    EXPECT_EQ(indexes[i], i + 1);
  }
  while (f.store->wal_checkpoint() < 20 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(f.store->wal_checkpoint(), 20u);
  EXPECT_GE(worker.durable_batch(), 1u);
  EXPECT_FALSE(worker.failure());
  // The log may forget only what a later commit made surely durable.
  EXPECT_LT(worker.durable_wal_position(), 20u);
  EXPECT_EQ(f.store->read(kP, "c", 1, 100).messages.size(), 40u);
}

// What is queued when the worker stops is applied, not dropped.
TEST(ApplyWorkerTest, StoppingAppliesWhatIsQueued) {
  Fixture f;
  {
    ApplyWorker worker(*f.store, ApplyWorker::Limits{});
    for (std::uint64_t i = 1; i <= 5; ++i) {
      ApplyWorker::Job job;
      job.wal_position = i;
      Ready ready = log_change(i, {append_entry("c", "m" + std::to_string(i))});
      ready.first_apply_index = i;
      ready.to_apply = ready.new_entries;
      job.partitions.push_back(kP);
      job.readies.push_back(std::move(ready));
      worker.push(std::move(job));
    }
  }
  EXPECT_EQ(f.store->wal_checkpoint(), 5u);
  EXPECT_EQ(f.store->read(kP, "c", 1, 100).messages.size(), 5u);
}

// Bytes behind the log count until their transaction commits: over the soft
// bound leaders refuse new proposals.
TEST(ApplyWorkerTest, TheBacklogCountsBytesUntilTheCommit) {
  Fixture f;
  ApplyWorker::Limits limits;
  limits.backlog_bytes_soft_max = 4096;
  limits.commit_interval = std::chrono::hours(1);  // commits only when stopping
  ApplyWorker worker(*f.store, limits);
  EXPECT_FALSE(worker.over_soft_limit());
  ApplyWorker::Job job;
  job.wal_position = 1;
  Ready ready = log_change(1, {LogEntry{1, std::string(5000, 'x')}});
  job.partitions.push_back(kP);
  job.readies.push_back(std::move(ready));
  worker.push(std::move(job));
  EXPECT_TRUE(worker.over_soft_limit());
  EXPECT_EQ(worker.durable_batch(), 0u);
}

// A turn the tables cannot take (here a snapshot that does not decode) stops
// the worker and says why; it answers nothing of that turn and never blocks
// the loop that pushes after it.
TEST(ApplyWorkerTest, AFailedApplyIsReportedAndStopsTakingWork) {
  Fixture f;
  ApplyWorker::Limits limits;
  limits.backlog_bytes_max = 1;  // every push after the first would wait for a commit
  ApplyWorker worker(*f.store, limits);
  ApplyWorker::Job job;
  job.wal_position = 1;
  Ready ready;
  ready.install = consensus::SnapshotInstall{5, 1, "\xc1 not a snapshot"};
  job.partitions.push_back(kP);
  job.readies.push_back(std::move(ready));
  worker.push(std::move(job));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!worker.failure() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(worker.failure());
  EXPECT_NE(worker.failure()->find("undecodable"), std::string::npos) << *worker.failure();
  worker.push(ApplyWorker::Job{2, {kP}, {log_change(1, {append_entry("c", "m1")})}});
  EXPECT_TRUE(worker.take_done().empty());
  EXPECT_EQ(worker.durable_batch(), 0u);
  EXPECT_EQ(f.store->wal_checkpoint(), 0u);
}

}  // namespace
}  // namespace chat4all::storage
