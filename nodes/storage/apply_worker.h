// The apply thread of a storage node: writes the consensus output of loop
// turns (log changes, hard states, snapshot installs, trims and committed
// entries) into the store's tables behind the write-ahead log, many turns in
// one LMDB transaction, and hands the outcomes of the applied entries back to
// the loop to answer its clients.
//
// Why a thread of its own: the tables are B-trees keyed by conversations and
// ids, so a commit touches pages all over the file and costs milliseconds;
// the loop only waits for the write-ahead log's append. Outcomes are handed
// back once a turn's records are in the open transaction, before the
// commit's fsync: the entries are committed in the replicated log already
// and their outcomes are a function of that log, so a crash before the
// commit ends in the same answers after the restart re-applies them.
// `durable_batch()` says when the tables hold a batch, for reads that must
// see what was answered.
//
// Threading: push(), take_done() and the accessors are called by the loop's
// thread; the worker thread owns the store's write side. wake_fd() becomes
// readable (an eventfd; read it to reset) whenever there is something new for
// the loop: outcomes, a durable batch, or a failure.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "nodes/storage/consensus.h"
#include "nodes/storage/message_store.h"

namespace chat4all::storage {

class ApplyWorker {
 public:
  struct Limits {
    // Bytes of entries (to apply and to store) and snapshots queued behind
    // the write-ahead log or in the open transaction. Over
    // `backlog_bytes_soft_max` leaders refuse new proposals (503, the router
    // retries); at `backlog_bytes_max` push() waits for the worker, which
    // stops the loop from taking more.
    std::size_t backlog_bytes_soft_max = 32ull << 20;
    std::size_t backlog_bytes_max = 128ull << 20;
    std::size_t batch_bytes_max = 8ull << 20;  // per transaction (at least one turn)
    // A transaction stays open this long after its first turn, taking the
    // turns that follow, so that one commit (two fsyncs) covers them: the
    // disk's flushes are shared by every node on the machine. Reads wait for
    // the commit, so this is also what a read may wait behind writes.
    std::chrono::milliseconds commit_interval{5};
  };

  // One loop turn's share: the Readies of its partitions (their messages
  // already sent), after its write-ahead log record, if any, is durable.
  struct Job {
    std::uint64_t wal_position = 0;  // the last record written at or before this turn
    std::vector<PartitionId> partitions;
    std::vector<consensus::Ready> readies;
  };

  // What the loop needs to answer one partition's applied entries.
  struct Applied {
    PartitionId partition = 0;
    std::uint64_t first_index = 0;
    std::vector<std::uint64_t> terms;     // of the entries, in index order
    std::vector<AppendOutcome> outcomes;  // one per entry
  };
  struct Done {
    std::uint64_t batch = 0;  // durable once durable_batch() >= batch
    std::vector<Applied> applied;
  };

  ApplyWorker(MessageStore& store, Limits limits);
  ~ApplyWorker();  // applies what is queued, then stops
  ApplyWorker(const ApplyWorker&) = delete;
  ApplyWorker& operator=(const ApplyWorker&) = delete;

  void push(Job job);
  std::vector<Done> take_done();
  int wake_fd() const { return wake_fd_; }
  void clear_wake();

  // The last committed transaction: what reads may now see.
  std::uint64_t durable_batch() const;
  // The write-ahead log position the tables hold even after a power loss
  // (one commit behind durable_batch()): the log may forget up to here.
  std::uint64_t durable_wal_position() const;
  bool over_soft_limit() const;
  // Set when a batch could not be written; the node must stop taking writes.
  std::optional<std::string> failure() const;

 private:
  void run();
  // Applies `jobs` to the open transaction, growing the map (and adding the
  // open transaction's earlier jobs again) when it is full. False on failure.
  bool add(const std::vector<Job>& jobs, std::vector<std::vector<AppendOutcome>>& outcomes);
  bool commit(std::uint64_t wal_position);
  void hand_back(std::uint64_t batch, const std::vector<Job>& jobs,
                 std::vector<std::vector<AppendOutcome>>& outcomes);
  void fail(const std::string& error);
  void wake();
  static std::size_t bytes_of(const Job& job);

  MessageStore& store_;
  const Limits limits_;
  int wake_fd_ = -1;

  mutable std::mutex mutex_;
  std::condition_variable queued_, drained_;
  std::deque<Job> queue_;
  std::size_t backlog_bytes_ = 0;
  std::vector<Done> done_;
  std::uint64_t durable_batch_ = 0;
  std::uint64_t durable_wal_position_ = 0;
  std::optional<std::string> failure_;
  // The worker thread's own: jobs in the open transaction, not yet committed.
  std::vector<Job> open_jobs_;
  bool stopping_ = false;

  Histogram& apply_seconds_;
  Gauge& backlog_gauge_;
  Counter& batches_;
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace chat4all::storage
