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
      apply_seconds_(metrics().latency_histogram(
          "chat4all_storage_apply_seconds",
          "Time of one apply transaction (many turns' tables, behind the write-ahead log)")),
      backlog_gauge_(metrics().gauge("chat4all_storage_apply_backlog_entries",
                                     "Entries written to the write-ahead log, not yet applied")),
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

std::size_t ApplyWorker::entries_of(const Job& job) {
  std::size_t entries = 0;
  for (const auto& ready : job.readies) entries += ready.to_apply.size() + ready.new_entries.size();
  return entries;
}

void ApplyWorker::push(Job job) {
  const std::size_t entries = entries_of(job);
  std::unique_lock lock(mutex_);
  // Backpressure: the loop waits rather than queueing without bound.
  drained_.wait(lock, [&] {
    return backlog_entries_ < limits_.backlog_entries_max || stopping_ || failure_;
  });
  backlog_entries_ += entries;
  backlog_gauge_.set(static_cast<std::int64_t>(backlog_entries_));
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
  return backlog_entries_ >= limits_.backlog_entries_soft_max;
}

std::optional<std::string> ApplyWorker::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

void ApplyWorker::run() {
  std::uint64_t batch = 0;
  while (true) {
    std::vector<Job> jobs;
    std::size_t entries = 0;
    {
      std::unique_lock lock(mutex_);
      queued_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() || failure_) return;
      // Everything queued forms one transaction, up to the batch bound.
      while (!queue_.empty() && (jobs.empty() || entries < limits_.batch_entries_max)) {
        entries += entries_of(queue_.front());
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    ++batch;
    std::vector<PartitionWrite> writes;
    std::uint64_t wal_position = 0;
    for (const auto& job : jobs) {
      wal_position = std::max(wal_position, job.wal_position);
      for (std::size_t i = 0; i < job.readies.size(); ++i)
        writes.push_back({job.partitions[i], &job.readies[i]});
    }
    bool handed_back = false;
    auto hand_back = [&](const std::vector<std::vector<AppendOutcome>>& outcomes) {
      // A retry after the map grew yields the same outcomes: hand them once.
      if (handed_back) return;
      handed_back = true;
      Done done{batch, {}};
      for (std::size_t w = 0; w < writes.size(); ++w) {
        const consensus::Ready& ready = *writes[w].ready;
        if (ready.to_apply.empty()) continue;
        Applied& applied = done.applied.emplace_back();
        applied.partition = writes[w].partition;
        applied.first_index = ready.first_apply_index;
        applied.terms.reserve(ready.to_apply.size());
        for (const auto& entry : ready.to_apply) applied.terms.push_back(entry.term);
        applied.outcomes = outcomes[w];
      }
      {
        std::lock_guard lock(mutex_);
        done_.push_back(std::move(done));
      }
      wake();
    };
    const auto started = std::chrono::steady_clock::now();
    std::vector<std::vector<AppendOutcome>> outcomes;
    std::string error;
    const auto result = store_.write_turn(writes, outcomes, error, hand_back, wal_position);
    {
      std::lock_guard lock(mutex_);
      backlog_entries_ -= std::min(backlog_entries_, entries);
      backlog_gauge_.set(static_cast<std::int64_t>(backlog_entries_));
      if (result == MessageStore::WriteResult::kDurable) {
        durable_batch_ = batch;
        durable_wal_position_ = std::max(durable_wal_position_, wal_position);
      } else {
        failure_ = error.empty() ? std::string("apply failed") : error;
      }
    }
    if (result == MessageStore::WriteResult::kDurable) {
      apply_seconds_.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      batches_.add();
    }
    drained_.notify_all();
    wake();
  }
}

}  // namespace chat4all::storage
