#include "nodes/storage/apply_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace chat4all::storage {

ApplyWorker::ApplyWorker(MessageStore& store, Limits limits)
    : store_(store),
      limits_(limits),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      apply_seconds_(metrics().latency_histogram("chat4all_storage_apply_seconds",
                                                 "Time from an apply transaction's first turn to "
                                                 "its commit (behind the write-ahead log)")),
      backlog_gauge_(metrics().gauge(
          "chat4all_storage_apply_backlog_bytes",
          "Bytes of entries and snapshots handed to the apply thread, not yet committed")),
      batches_(metrics().counter("chat4all_storage_apply_batches_total",
                                 "Apply transactions committed")) {
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  thread_ = std::thread([this] { run(); });
}

ApplyWorker::~ApplyWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  queued_.notify_all();
  drained_.notify_all();
  thread_.join();
  close(wake_fd_);
}

std::size_t ApplyWorker::bytes_of(const Job& job) {
  constexpr std::size_t kEntryOverheadBytes = 32;  // index, term, keys
  std::size_t bytes = 0;
  for (const auto& ready : job.readies) {
    for (const auto& entry : ready.to_apply) bytes += entry.data.size() + kEntryOverheadBytes;
    for (const auto& entry : ready.new_entries) bytes += entry.data.size() + kEntryOverheadBytes;
    if (ready.install) bytes += ready.install->data.size();
  }
  return bytes;
}

void ApplyWorker::push(Job job) {
  const std::size_t bytes = bytes_of(job);
  std::unique_lock lock(mutex_);
  // Backpressure: the loop waits rather than queueing without bound.
  drained_.wait(
      lock, [&] { return backlog_bytes_ < limits_.backlog_bytes_max || stopping_ || failure_; });
  backlog_bytes_ += bytes;
  backlog_gauge_.set(static_cast<std::int64_t>(backlog_bytes_));
  queue_.push_back(std::move(job));
  lock.unlock();
  queued_.notify_one();
}

std::vector<ApplyWorker::Done> ApplyWorker::take_done() {
  std::lock_guard lock(mutex_);
  return std::exchange(done_, {});
}

void ApplyWorker::clear_wake() {
  std::uint64_t value = 0;
  [[maybe_unused]] auto bytes = read(wake_fd_, &value, sizeof value);
}

void ApplyWorker::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto bytes = write(wake_fd_, &one, sizeof one);
}

std::uint64_t ApplyWorker::durable_batch() const {
  std::lock_guard lock(mutex_);
  return durable_batch_;
}

std::uint64_t ApplyWorker::durable_wal_position() const {
  std::lock_guard lock(mutex_);
  return durable_wal_position_;
}

bool ApplyWorker::over_soft_limit() const {
  std::lock_guard lock(mutex_);
  return backlog_bytes_ >= limits_.backlog_bytes_soft_max;
}

std::optional<std::string> ApplyWorker::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

std::vector<PartitionWrite> writes_of(const std::vector<ApplyWorker::Job>& jobs) {
  std::vector<PartitionWrite> writes;
  for (const auto& job : jobs)
    for (std::size_t i = 0; i < job.readies.size(); ++i)
      writes.push_back({job.partitions[i], &job.readies[i]});
  return writes;
}

void ApplyWorker::fail(const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    failure_ = error.empty() ? std::string("apply failed") : error;
  }
  drained_.notify_all();
  wake();
}

bool ApplyWorker::add(const std::vector<Job>& jobs,
                      std::vector<std::vector<AppendOutcome>>& outcomes) {
  std::string error;
  auto result = store_.batch_add(writes_of(jobs), outcomes, error);
  while (result == MessageStore::WriteResult::kFull) {
    // The open transaction is gone with the full map: grow it and apply
    // everything since the last commit again, in order (same outcomes; the
    // earlier ones were handed back already).
    if (!store_.grow()) break;
    std::vector<std::vector<AppendOutcome>> ignored;
    result = open_jobs_.empty() ? MessageStore::WriteResult::kDurable
                                : store_.batch_add(writes_of(open_jobs_), ignored, error);
    if (result == MessageStore::WriteResult::kDurable)
      result = store_.batch_add(writes_of(jobs), outcomes, error);
  }
  if (result != MessageStore::WriteResult::kDurable) {
    fail(error);
    return false;
  }
  return true;
}

bool ApplyWorker::commit(std::uint64_t wal_position) {
  std::string error;
  auto result = store_.batch_commit(wal_position, error);
  while (result == MessageStore::WriteResult::kFull && store_.grow()) {
    std::vector<std::vector<AppendOutcome>> ignored;
    result = store_.batch_add(writes_of(open_jobs_), ignored, error);
    if (result == MessageStore::WriteResult::kDurable)
      result = store_.batch_commit(wal_position, error);
  }
  if (result != MessageStore::WriteResult::kDurable) {
    fail(error);
    return false;
  }
  return true;
}

void ApplyWorker::hand_back(std::uint64_t batch, const std::vector<Job>& jobs,
                            std::vector<std::vector<AppendOutcome>>& outcomes) {
  Done done{batch, {}};
  std::size_t w = 0;
  for (const auto& job : jobs)
    for (std::size_t i = 0; i < job.readies.size(); ++i, ++w) {
      const consensus::Ready& ready = job.readies[i];
      if (ready.to_apply.empty()) continue;
      Applied& applied = done.applied.emplace_back();
      applied.partition = job.partitions[i];
      applied.first_index = ready.first_apply_index;
      applied.terms.reserve(ready.to_apply.size());
      for (const auto& entry : ready.to_apply) applied.terms.push_back(entry.term);
      applied.outcomes = std::move(outcomes[w]);
    }
  if (done.applied.empty()) return;
  {
    std::lock_guard lock(mutex_);
    done_.push_back(std::move(done));
  }
  wake();
}

void ApplyWorker::run() {
  using Clock = std::chrono::steady_clock;
  std::uint64_t batch = 1;  // the open (or next) transaction
  std::size_t open_bytes = 0;
  std::uint64_t open_position = 0;
  std::uint64_t committed_position = 0;  // of the last commit, not yet surely durable
  Clock::time_point opened;
  Clock::time_point apply_started;
  while (true) {
    std::vector<Job> jobs;
    std::size_t bytes = 0;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      auto has_work = [&] { return !queue_.empty() || stopping_; };
      if (open_jobs_.empty())
        queued_.wait(lock, has_work);
      else
        queued_.wait_until(lock, opened + limits_.commit_interval, has_work);
      if (failure_) return;
      stopping = stopping_;
      while (!queue_.empty() && (jobs.empty() || bytes < limits_.batch_bytes_max)) {
        bytes += bytes_of(queue_.front());
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!jobs.empty()) {
      if (open_jobs_.empty()) opened = apply_started = Clock::now();
      std::vector<std::vector<AppendOutcome>> outcomes;
      if (!add(jobs, outcomes)) return;
      hand_back(batch, jobs, outcomes);
      for (auto& job : jobs) {
        open_position = std::max(open_position, job.wal_position);
        open_jobs_.push_back(std::move(job));
      }
      open_bytes += bytes;
    }
    if (open_jobs_.empty()) {
      if (stopping) return;
      continue;
    }
    const bool interval_over = Clock::now() >= opened + limits_.commit_interval;
    if (!interval_over && open_bytes < limits_.batch_bytes_max && !stopping) continue;
    if (!commit(open_position)) return;
    {
      std::lock_guard lock(mutex_);
      backlog_bytes_ -= std::min(backlog_bytes_, open_bytes);
      backlog_gauge_.set(static_cast<std::int64_t>(backlog_bytes_));
      durable_batch_ = batch;
      // This commit made the one before it durable (see MessageStore's
      // MDB_NOMETASYNC): the log may forget up to that one's position.
      durable_wal_position_ = std::max(durable_wal_position_, committed_position);
      committed_position = open_position;
    }
    apply_seconds_.observe(std::chrono::duration<double>(Clock::now() - apply_started).count());
    batches_.add();
    open_jobs_.clear();
    open_bytes = 0;
    ++batch;
    drained_.notify_all();
    wake();
  }
}

}  // namespace chat4all::storage
