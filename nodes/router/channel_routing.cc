#include "nodes/router/channel_routing.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>

#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/metrics.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/transport.h"
#include "nodes/router/channel_dispatcher.h"

namespace chat4all::router {

namespace {

using Clock = std::chrono::steady_clock;
using Empty = StorageClient::Empty;

constexpr std::uint32_t kOutboxPageEvents = 64;
constexpr std::int64_t kIdlePollMs = 200;     // an empty outbox is read again after this
constexpr std::int64_t kFailureWaitMs = 500;  // after a storage failure
constexpr std::int64_t kIdentityTtlMs = 5000;
constexpr std::size_t kIdentityCacheMax = 100000;
constexpr std::size_t kInboxMax = 200000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

bool is_final(const std::string& state) {
  return state == wire::kDeliverySent || state == wire::kDeliveryDelivered ||
         state == wire::kDeliveryRead || state == wire::kDeliveryFailed ||
         state == wire::kDeliveryNoIdentity;
}

struct RoutingMetrics {
  Gauge& targets = metrics().gauge("chat4all_router_channel_deliveries_held",
                                   "Channel deliveries read from outboxes and not yet ended");
  Gauge& in_flight =
      metrics().gauge("chat4all_router_channel_jobs_in_flight", "Jobs handed to connectors");
  Gauge& jobs = metrics().gauge("chat4all_router_channel_jobs_total", "Jobs sent to connectors");
  Gauge& accepted =
      metrics().gauge("chat4all_router_channel_accepted_total", "Deliveries a platform accepted");
  Gauge& retries =
      metrics().gauge("chat4all_router_channel_retries_total", "Attempts that will be retried");
  Gauge& dead_lettered = metrics().gauge("chat4all_router_channel_dead_lettered_total",
                                         "Deliveries given up (state failed)");
  Gauge& lost =
      metrics().gauge("chat4all_router_channel_lost_total",
                      "Jobs without an answer within the lease or from a silent connector");
  Gauge& no_identity = metrics().gauge("chat4all_router_channel_no_identity_total",
                                       "Recipients without an identity on a chosen channel");
};

}  // namespace

class ChannelRouting::Loop {
 public:
  Loop(const Topology& topology, const NodeSpec& self, Log& log)
      : topology_(topology),
        self_(self),
        log_(log),
        dispatcher_(topology.channels, DispatchLimits{}, std::random_device{}()),
        socket_(transport::context(), zmq::socket_type::router) {
    std::vector<std::string> routers;
    for (const NodeSpec* node : topology.with_role(NodeRole::kRouter))
      routers.push_back(node->zmq_address("rpc"));
    for (std::uint32_t p : topology.partitions_read_by(NodeRole::kRouter, self.name)) readers_[p];
    client_ = std::make_unique<RouterClient>(routers, topology.limits.request_timeout_ms,
                                             topology.limits.pending_requests_max);
    storage_ = std::make_unique<StorageClient>(*client_);
    transport::configure(socket_, 100000);
    socket_.set(zmq::sockopt::router_mandatory, 1);  // a job for a gone connector fails at once
    curve::serve(socket_, "router.channels", {NodeRole::kConnector});
    socket_.bind(transport::bind_address(self, "channels"));
    log_.info("listening", {{"channels", transport::bind_address(self, "channels")},
                            {"partitions", readers_.size()}});
  }

  ~Loop() {
    storage_.reset();
    client_.reset();  // no storage answer is posted after this
  }

  void run(const std::atomic<bool>& stopping) {
    RoutingMetrics stats;
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    while (!stopping.load()) {
      transport::poll(&item, 1, std::chrono::milliseconds(10));
      const std::int64_t now = now_ms();
      receive(now);
      for (auto& task : take_inbox()) task();
      retry_due_records(now);
      dispatcher_.tick(now);
      read_outboxes(now);
      flush(now);
      const auto& c = dispatcher_.counters();
      stats.targets.set(static_cast<std::int64_t>(dispatcher_.targets_held()));
      stats.in_flight.set(static_cast<std::int64_t>(dispatcher_.jobs_in_flight()));
      stats.jobs.set(static_cast<std::int64_t>(c.jobs_sent));
      stats.accepted.set(static_cast<std::int64_t>(c.accepted));
      stats.retries.set(static_cast<std::int64_t>(c.retries));
      stats.dead_lettered.set(static_cast<std::int64_t>(c.dead_lettered));
      stats.lost.set(static_cast<std::int64_t>(c.lost));
      stats.no_identity.set(static_cast<std::int64_t>(c.no_identity));
    }
  }

 private:
  struct Reader {
    bool busy = false;
    std::int64_t next_read_ms = 0;
    std::uint64_t cursor = 0;  // highest index handed to the dispatcher
  };
  // One page of one partition's outbox while its targets are resolved.
  struct Batch {
    std::uint32_t partition = 0;
    std::vector<wire::OutboxEvent> events;
    std::vector<std::vector<wire::ChannelDeliveryRecord>> records;  // per event
    std::map<std::string, std::vector<wire::Identity>> identities;  // tenant/user
    int waiting = 0;
    bool failed = false;
  };

  void post(std::function<void()> task) {
    std::lock_guard lock(mutex_);
    if (inbox_.size() >= kInboxMax) {
      // Only storage answers arrive here, and they are bounded by the
      // client's pending limit; a drop would stall one partition until restart.
      log_.error("inbox_full", {});
      return;
    }
    inbox_.push_back(std::move(task));
  }
  std::deque<std::function<void()>> take_inbox() {
    std::lock_guard lock(mutex_);
    return std::exchange(inbox_, {});
  }

  void receive(std::int64_t now) {
    for (int i = 0; i < 1000; ++i) {
      auto frames = transport::receive_multipart(socket_);
      if (frames.size() != 2) return;
      auto frame = codec::decode(transport::view(frames[1]));
      if (!frame) continue;
      if (frame->header().type == wire::MessageType::kConnectorStatus) {
        if (auto status = frame->body<wire::ConnectorStatus>())
          dispatcher_.connector_status(*status, now);
      } else if (frame->header().type == wire::MessageType::kDeliveryResult) {
        if (auto result = frame->body<wire::DeliveryResult>()) dispatcher_.result(*result, now);
      }
    }
  }

  void read_outboxes(std::int64_t now) {
    for (auto& [partition, reader] : readers_) {
      if (reader.busy || now < reader.next_read_ms || !dispatcher_.accepting()) continue;
      reader.busy = true;
      const std::uint32_t p = partition;
      storage_->query<std::vector<wire::OutboxEvent>>(
          wire::partition_key(p), wire::QueryKind::kReadOutbox,
          wire::ReadOutbox{p, reader.cursor, kOutboxPageEvents, wire::kOutboxChannels},
          [this, p](StorageOutcome<std::vector<wire::OutboxEvent>> outcome) {
            post([this, p, outcome = std::move(outcome)]() mutable {
              page_read(p, std::move(outcome));
            });
          });
    }
  }

  void page_read(std::uint32_t partition, StorageOutcome<std::vector<wire::OutboxEvent>> outcome) {
    Reader& reader = readers_[partition];
    if (!outcome.ok() || outcome.value->empty()) {
      reader.busy = false;
      reader.next_read_ms = now_ms() + (outcome.ok() ? kIdlePollMs : kFailureWaitMs);
      return;
    }
    auto batch = std::make_shared<Batch>();
    batch->partition = partition;
    batch->events = std::move(*outcome.value);
    batch->records.resize(batch->events.size());
    const std::int64_t now = now_ms();
    // Count every lookup first, so that one answering at once cannot finish the batch early.
    std::vector<std::pair<std::string, std::string>> users;  // tenant, user to look up
    for (const auto& event : batch->events)
      for (const auto& recipient : event.recipients) {
        const std::string key = event.tenant_id + "/" + recipient;
        auto cached = identity_cache_.find(key);
        if (cached != identity_cache_.end() && cached->second.first > now) {
          batch->identities[key] = cached->second.second;
        } else if (!batch->identities.count(key)) {
          batch->identities[key] = {};
          users.emplace_back(event.tenant_id, recipient);
        }
      }
    batch->waiting = static_cast<int>(batch->events.size() + users.size());
    for (std::size_t i = 0; i < batch->events.size(); ++i) {
      const auto& event = batch->events[i];
      storage_->query<std::vector<wire::ChannelDeliveryRecord>>(
          event.conversation_id, wire::QueryKind::kListChannelDeliveries,
          wire::ConversationLookup{event.tenant_id, event.conversation_id, "", event.message_id},
          [this, batch, i](StorageOutcome<std::vector<wire::ChannelDeliveryRecord>> outcome) {
            post([this, batch, i, outcome = std::move(outcome)]() mutable {
              if (outcome.ok())
                batch->records[i] = std::move(*outcome.value);
              else if (outcome.status != wire::Status::kNotFound)
                batch->failed = true;
              answered(batch);
            });
          });
    }
    for (const auto& [tenant, user] : users) {
      storage_->query<wire::UserRecord>(
          wire::tenant_key(tenant), wire::QueryKind::kGetUser, wire::TenantLookup{tenant, user},
          [this, batch, key = tenant + "/" + user](StorageOutcome<wire::UserRecord> outcome) {
            post([this, batch, key, outcome = std::move(outcome)]() mutable {
              if (outcome.ok()) {
                batch->identities[key] = outcome.value->identities;
              } else if (outcome.status != wire::Status::kNotFound) {
                batch->failed = true;
              }
              if (!batch->failed) {
                if (identity_cache_.size() >= kIdentityCacheMax) identity_cache_.clear();
                identity_cache_[key] = {now_ms() + kIdentityTtlMs, batch->identities[key]};
              }
              answered(batch);
            });
          });
    }
  }

  void answered(const std::shared_ptr<Batch>& batch) {
    if (--batch->waiting > 0) return;
    Reader& reader = readers_[batch->partition];
    reader.busy = false;
    if (batch->failed) {
      reader.next_read_ms = now_ms() + kFailureWaitMs;  // the same page again
      return;
    }
    const std::int64_t now = now_ms();
    for (std::size_t i = 0; i < batch->events.size(); ++i) {
      auto& event = batch->events[i];
      RouteWork work;
      work.partition = batch->partition;
      for (const auto& recipient : event.recipients) {
        auto targets =
            resolve_targets(event.channels, topology_.channels, event.tenant_id, recipient,
                            batch->identities[event.tenant_id + "/" + recipient]);
        for (auto& target : targets) {
          for (const auto& record : batch->records[i])
            if (record.recipient_id == target.recipient_id && record.channel == target.channel) {
              target.done = is_final(record.state);
              target.attempts_made = static_cast<std::uint32_t>(record.attempts.size());
            }
          work.targets.push_back(std::move(target));
        }
      }
      reader.cursor = std::max(reader.cursor, event.index);
      work.event = std::move(event);
      dispatcher_.add(std::move(work), now);
    }
    reader.next_read_ms = now;
  }

  void retry_due_records(std::int64_t now) {
    while (!record_retries_.empty() && record_retries_.front().first <= now) {
      dispatcher_.retry_record(std::move(record_retries_.front().second));
      record_retries_.pop_front();
    }
  }

  void send_job(const std::string& connector, const wire::DeliveryJob& job, std::int64_t now) {
    wire::Header header;
    header.type = wire::MessageType::kDeliveryJob;
    header.request_id = ++next_request_;
    header.trace_id = ids::new_trace_id();
    if (transport::send_multipart(socket_, {connector, codec::encode(header, job)})) return;
    // Not connected to this router (router_mandatory), or its queue is full.
    wire::DeliveryResult busy;
    busy.job_id = job.job_id;
    busy.connector = connector;
    busy.outcome = "busy";
    dispatcher_.result(busy, now);
  }

  void write_record(RecordWrite write) {
    const std::string key = write.update.delivery.conversation_id;
    const wire::ChannelDeliveryUpdate update = write.update;
    storage_->command<wire::ChannelDeliveryRecord>(
        key, wire::CommandKind::kUpdateChannelDelivery, update,
        [this, write = std::move(write)](StorageOutcome<wire::ChannelDeliveryRecord> outcome) {
          post([this, write, outcome = std::move(outcome)]() mutable {
            // A conversation that is gone keeps no records: nothing to retry.
            if (outcome.ok() || outcome.status == wire::Status::kNotFound ||
                outcome.status == wire::Status::kInvalid) {
              if (!outcome.ok())
                log_.warn(
                    "delivery_record_refused",
                    {{"message_id", write.update.delivery.message_id}, {"detail", outcome.detail}});
              dispatcher_.record_written(write.token);
            } else {
              record_retries_.emplace_back(now_ms() + kFailureWaitMs, std::move(write));
            }
          });
        });
  }

  void flush(std::int64_t now) {
    // A job refused at once (busy) may hand the lane to another connector at
    // once: a few rounds, the rest next turn of the loop.
    for (int round = 0; round < 4; ++round) {
      DispatchOutput out = dispatcher_.take_output();
      if (out.jobs.empty() && out.records.empty() && out.acks.empty()) return;
      for (const auto& [connector, job] : out.jobs) send_job(connector, job, now);
      for (auto& write : out.records) write_record(std::move(write));
      for (const auto& [partition, up_to] : out.acks)
        storage_->command<Empty>(wire::partition_key(partition), wire::CommandKind::kAckOutbox,
                                 wire::AckOutbox{partition, up_to, wire::kOutboxChannels},
                                 [](StorageOutcome<Empty>) {});
    }
  }

  const Topology& topology_;
  const NodeSpec& self_;
  Log& log_;
  ChannelDispatcher dispatcher_;
  zmq::socket_t socket_;
  std::unique_ptr<RouterClient> client_;
  std::unique_ptr<StorageClient> storage_;
  std::map<std::uint32_t, Reader> readers_;
  std::map<std::string, std::pair<std::int64_t, std::vector<wire::Identity>>> identity_cache_;
  std::deque<std::pair<std::int64_t, RecordWrite>> record_retries_;
  std::uint64_t next_request_ = 0;
  std::mutex mutex_;
  std::deque<std::function<void()>> inbox_;
};

ChannelRouting::ChannelRouting(const Topology& topology, const NodeSpec& self)
    : topology_(topology), self_(self) {}

ChannelRouting::~ChannelRouting() {
  stop();
}

void ChannelRouting::start() {
  thread_.start(log_, [this](const std::atomic<bool>& stopping) {
    Loop loop(topology_, self_, log_);
    loop.run(stopping);
  });
}

void ChannelRouting::stop() {
  thread_.stop();
}

}  // namespace chat4all::router
