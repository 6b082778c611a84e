#include "nodes/router/locator_indexing.h"

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "common/metrics.h"
#include "common/ring.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/task_inbox.h"
#include "nodes/router/locator_indexer.h"

namespace chat4all::router {

namespace {

using Clock = std::chrono::steady_clock;
using Empty = StorageClient::Empty;

// The loop wakes at least this often to tick the indexer (its reads fall due by time).
constexpr auto kTickInterval = std::chrono::milliseconds(10);
// Storage answers waiting for the loop. They are bounded by the router client's pending limit
// already; one refused at this bound is redone (its read, command or acknowledgement is repeated
// after the indexer's failure wait, since it is reported failed).
constexpr std::size_t kInboxMax = 100000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

struct IndexingMetrics {
  Counter& added = metrics().counter("chat4all_router_locator_entries_added_total",
                                     "Message ids indexed for the first time");
  Counter& replayed = metrics().counter(
      "chat4all_router_locator_entries_replayed_total",
      "Locator entries written again (after a restart or a retried command): no change");
  Counter& conflicts = metrics().counter(
      "chat4all_router_locator_conflicts_total",
      "Messages whose id another conversation of the tenant holds in the locator already");
  Counter& failures = metrics().counter(
      "chat4all_router_locator_failures_total",
      "Outbox reads, index commands and acknowledgements that failed and are repeated");
  Gauge& held = metrics().gauge("chat4all_router_locator_entries_held",
                                "Locator entries read from outboxes and not yet acknowledged");
};

class Loop {
 public:
  Loop(const Topology& topology, const NodeSpec& self, Log& log)
      : log_(log),
        ring_(topology.storage_node_names(), topology.partition_count, topology.replication_factor,
              topology.virtual_nodes),
        indexer_(topology.partitions_read_by(NodeRole::kRouter, self.name),
                 [this](std::string_view key) { return ring_.partition_of(key); }) {
    std::vector<std::string> routers;
    for (const NodeSpec* node : topology.with_role(NodeRole::kRouter))
      routers.push_back(node->zmq_address("rpc"));
    client_ = std::make_unique<RouterClient>(routers, topology.limits.request_timeout_ms,
                                             topology.limits.pending_requests_max);
    storage_ = std::make_unique<StorageClient>(*client_);
    log_.info("started",
              {{"partitions", topology.partitions_read_by(NodeRole::kRouter, self.name).size()}});
  }

  ~Loop() {
    storage_.reset();
    client_.reset();  // no storage answer is posted after this
  }

  void run(const std::atomic<bool>& stopping) {
    IndexingMetrics stats;
    IndexerCounters reported;
    while (!stopping.load()) {
      indexer_.tick(now_ms());
      carry_out(indexer_.take_output());
      for (auto& task : inbox_.take(Clock::now() + kTickInterval)) task();
      carry_out(indexer_.take_output());
      const IndexerCounters& now = indexer_.counters();
      stats.added.add(now.added - reported.added);
      stats.replayed.add(now.replayed - reported.replayed);
      stats.conflicts.add(now.conflicts - reported.conflicts);
      stats.failures.add((now.reads_failed + now.commands_failed + now.acks_failed) -
                         (reported.reads_failed + reported.commands_failed + reported.acks_failed));
      reported = now;
      stats.held.set(static_cast<std::int64_t>(indexer_.entries_held()));
    }
  }

 private:
  // A completion the inbox refuses is reported failed on this thread's next turn through
  // `refused_`, so the indexer repeats the step instead of waiting for it for good. `refused_`
  // holds at most one entry per request in flight, which the router client bounds
  // (limits.pending_requests_max).
  void post(std::function<void()> task, std::function<void()> on_refused) {
    if (!inbox_.post(std::move(task))) {
      std::lock_guard lock(refused_mutex_);
      refused_.push_back(std::move(on_refused));
    }
  }

  void carry_out(IndexerOutput output) {
    {
      std::deque<std::function<void()>> refused;
      {
        std::lock_guard lock(refused_mutex_);
        refused.swap(refused_);
      }
      for (auto& task : refused) task();
    }
    for (const OutboxRead& read : output.reads) {
      const PartitionId p = read.partition;
      storage_->query<std::vector<wire::OutboxEvent>>(
          wire::partition_key(p), wire::QueryKind::kReadOutbox,
          wire::ReadOutbox{p, read.after, read.limit, wire::kOutboxLocator},
          [this, p](StorageOutcome<std::vector<wire::OutboxEvent>> outcome) {
            post(
                [this, p, outcome = std::move(outcome)]() mutable {
                  indexer_.outbox_read(p, std::move(outcome.value), now_ms());
                },
                [this, p] { indexer_.outbox_read(p, std::nullopt, now_ms()); });
          });
    }
    for (IndexCommand& command : output.commands) {
      const std::uint64_t token = command.token;
      storage_->command<wire::IndexMessagesResult>(
          wire::partition_key(command.locator_partition), wire::CommandKind::kIndexMessages,
          command.body,
          [this, token, partition = command.locator_partition](
              StorageOutcome<wire::IndexMessagesResult> outcome) {
            post(
                [this, token, partition, outcome = std::move(outcome)]() mutable {
                  if (!outcome.ok())
                    log_.debug("index_command_failed",
                               {{"locator_partition", partition},
                                {"status", codec::status_name(outcome.status)},
                                {"detail", outcome.detail}});
                  indexer_.command_done(token, std::move(outcome.value), now_ms());
                },
                [this, token] { indexer_.command_done(token, std::nullopt, now_ms()); });
          });
    }
    for (const OutboxAck& ack : output.acks) {
      const PartitionId p = ack.partition;
      const std::uint64_t up_to = ack.up_to;
      storage_->command<Empty>(
          wire::partition_key(p), wire::CommandKind::kAckOutbox,
          wire::AckOutbox{p, up_to, wire::kOutboxLocator},
          [this, p, up_to](StorageOutcome<Empty> outcome) {
            const bool ok = outcome.ok();
            post([this, p, up_to, ok] { indexer_.ack_done(p, up_to, ok, now_ms()); },
                 [this, p, up_to] { indexer_.ack_done(p, up_to, false, now_ms()); });
          });
    }
    if (!output.conflicts.empty()) {
      // Rare (a client reusing an id in another conversation): one line per batch, not per id.
      const wire::LocatorConflict& first = output.conflicts.front();
      log_.warn("locator_conflicts", {{"count", output.conflicts.size()},
                                      {"tenant_id", first.refused.tenant_id},
                                      {"message_id", first.refused.message_id},
                                      {"conversation_id", first.refused.conversation_id},
                                      {"held_by", first.held_by}});
    }
  }

  Log& log_;
  Ring ring_;
  LocatorIndexer indexer_;
  TaskInbox inbox_{kInboxMax};
  std::mutex refused_mutex_;
  std::deque<std::function<void()>> refused_;  // guarded by refused_mutex_
  std::unique_ptr<RouterClient> client_;
  std::unique_ptr<StorageClient> storage_;
};

}  // namespace

LocatorIndexing::LocatorIndexing(const Topology& topology, const NodeSpec& self)
    : topology_(topology), self_(self) {}

LocatorIndexing::~LocatorIndexing() {
  stop();
}

void LocatorIndexing::start() {
  thread_.start(log_, [this](const std::atomic<bool>& stopping) {
    Loop loop(topology_, self_, log_);
    loop.run(stopping);
  });
}

void LocatorIndexing::stop() {
  thread_.stop();
}

}  // namespace chat4all::router
