#include "nodes/connector/connector_node.h"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "common/ids.h"
#include "common/metrics.h"
#include "common/metrics_server.h"
#include "common/ring.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/task_inbox.h"
#include "common/topology_change.h"
#include "common/topology_follower.h"
#include "common/url_guard.h"
#include "common/webhook_signature.h"
#include "common/worker_pool.h"
#include "nodes/connector/channel_host.h"
#include "nodes/connector/http_sender.h"
#include "nodes/connector/retry_policy.h"
#include "nodes/connector/webhook_limiter.h"

namespace chat4all::connector {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr auto kOutboxPollInterval = std::chrono::milliseconds(250);
constexpr auto kWebhooksCacheTtl = std::chrono::seconds(2);
// Webhook URLs are resolved (getaddrinfo, which waits as long as DNS takes) on
// these threads, so one tenant's slow resolver never stalls the dispatcher.
constexpr std::uint32_t kUrlCheckThreads = 4;
// When the checks are this far behind, an attempt waits kSenderFullRetry and
// tries again (not counted as an attempt), as when the sender is at its bound.
constexpr auto kSenderFullRetry = std::chrono::milliseconds(200);
constexpr std::uint32_t kOutboxPageEvents = 64;
// Events of one partition read and not yet ended (some delivery open); at the bound the outbox is
// read no further until one ends. Events that ended are not held: the acknowledgement waits for
// the oldest open one only. A webhook holds at most webhooks.open_per_webhook_max of them (see
// WebhookLimiter), less than this bound, so one dead receiver cannot stop the reading alone.
constexpr std::size_t kEventsInFlightPerPartitionMax = 1024;
constexpr auto kWebhooksRefetchDelay = std::chrono::milliseconds(500);
constexpr std::size_t kInboxMax = 100000;

struct Stats {
  Counter& attempts =
      metrics().counter("chat4all_connector_webhook_attempts_total", "Webhook POST attempts made");
  Counter& delivered = metrics().counter("chat4all_connector_webhook_delivered_total",
                                         "Webhook deliveries answered 2xx");
  Counter& failed = metrics().counter("chat4all_connector_webhook_failed_total",
                                      "Webhook deliveries given up (final answer or attempts)");
  Counter& events =
      metrics().counter("chat4all_connector_outbox_events_total", "Outbox events read and handled");
  Gauge& in_flight =
      metrics().gauge("chat4all_connector_webhook_deliveries_pending", "Deliveries not ended");
  Counter& shed = metrics().counter(
      "chat4all_connector_webhook_shed_total",
      "Webhook deliveries failed unattempted: the webhook had open_per_webhook_max open");
};

std::string event_body(const wire::OutboxEvent& event) {
  json data = {
      {"message_id", event.message_id},
      {"conversation_id", event.conversation_id},
      {"seq", event.seq},
      {"sender_id", event.sender_id},
      {"recipient_id", event.recipient_id.empty() ? json(nullptr) : json(event.recipient_id)},
      {"state", event.state},
      {"at", event.at_ms}};
  return json{{"id", event.event_id},
              {"type", event.type},
              {"timestamp", event.at_ms},
              {"data", std::move(data)}}
      .dump();
}

class Dispatcher {
 public:
  Dispatcher(const Topology& topology, std::vector<PartitionId> partitions, StorageClient& storage,
             Log& log)
      : topology_(topology),
        storage_(storage),
        log_(log),
        sender_(topology.webhooks.in_flight_max, topology.webhooks.in_flight_max * 4),
        policy_{topology.webhooks.attempts_max, topology.webhooks.backoff_initial_ms,
                topology.webhooks.backoff_max_ms},
        url_policy_{topology.webhooks.allow_loopback, topology.webhooks.allow_private},
        url_checks_(kUrlCheckThreads, topology.webhooks.in_flight_max * 4),
        limiter_(
            topology.webhooks.open_per_webhook_max,
            std::min(topology.webhooks.sending_per_webhook_max, topology.webhooks.in_flight_max)) {
    for (PartitionId p : partitions) partitions_[p];
  }

  // A newer topology version shares the outboxes among other connectors: from now on this
  // one reads `partitions`. A partition it gives up is no longer read; what it read of it
  // still ends and is acknowledged. One it takes over is read from its acknowledged horizon,
  // so events the connector that left had read and not acknowledged are delivered again (at
  // least once; receivers deduplicate by event id). Any thread. False when the inbox is full
  // (the caller tries again).
  bool reassign(std::vector<PartitionId> partitions) {
    return inbox_.post([this, partitions = std::move(partitions)] {
      for (auto& [id, partition] : partitions_) partition.owned = false;
      for (PartitionId p : partitions) partitions_[p].owned = true;
      log_.info("outbox_partitions_reassigned", {{"partitions", partitions.size()}});
    });
  }

  void run(const std::atomic<bool>& stop) {
    while (!stop.load(std::memory_order_relaxed)) {
      const auto now = Clock::now();
      for (auto& [id, partition] : partitions_)
        if (partition.owned && !partition.reading && partition.next_poll <= now &&
            partition.events.size() < kEventsInFlightPerPartitionMax)
          poll(id, partition);
      while (!timers_.empty() && timers_.begin()->first <= now) {
        auto task = std::move(timers_.begin()->second);
        timers_.erase(timers_.begin());
        task();
      }
      auto until = now + std::chrono::milliseconds(100);
      if (!timers_.empty()) until = std::min(until, timers_.begin()->first);
      for (auto& task : inbox_.take(until)) task();
    }
  }

 private:
  struct Delivery {
    wire::WebhookRecord webhook;
    wire::DeliveryRecord record;
    std::string limiter_key;  // "<tenant>/<webhook_id>"
    bool loaded = false;      // a record stored by an earlier run was looked for
  };
  struct Event {
    wire::OutboxEvent event;
    std::size_t deliveries_open = 0;
  };
  struct Partition {
    std::uint64_t after = 0;    // every event up to here is acknowledged
    std::uint64_t read_to = 0;  // every event up to here was read
    // Read and not ended (webhooks not looked up yet, or a delivery open); at most
    // kEventsInFlightPerPartitionMax. Everything read below the first of them has ended.
    std::map<std::uint64_t, Event> events;
    bool reading = false;
    Clock::time_point next_poll{};
    bool owned = true;  // this connector reads the partition's outbox (reassign())
  };
  struct TenantWebhooks {
    std::vector<wire::WebhookRecord> webhooks;
    Clock::time_point fetched_at;
    std::int64_t fetched_at_ms = 0;  // wall clock, compared with the events' times
    bool fetching = false;
    std::vector<std::pair<PartitionId, std::uint64_t>> waiting;  // events to resolve
  };

  void post(std::function<void()> task) { (void)inbox_.post(std::move(task)); }

  void poll(PartitionId id, Partition& partition) {
    partition.reading = true;
    const std::uint64_t after = std::max(partition.after, partition.read_to);
    storage_.query<std::vector<wire::OutboxEvent>>(
        wire::partition_key(id), wire::QueryKind::kReadOutbox,
        wire::ReadOutbox{id, after, kOutboxPageEvents},
        [this, id](StorageOutcome<std::vector<wire::OutboxEvent>> outcome) {
          post([this, id, outcome = std::move(outcome)]() mutable {
            on_outbox(id, std::move(outcome));
          });
        });
  }

  void on_outbox(PartitionId id, StorageOutcome<std::vector<wire::OutboxEvent>> outcome) {
    Partition& partition = partitions_[id];
    partition.reading = false;
    const bool full = outcome.ok() && outcome.value->size() == kOutboxPageEvents;
    partition.next_poll = full ? Clock::now() : Clock::now() + kOutboxPollInterval;
    if (!outcome.ok()) return;
    for (auto& event : *outcome.value) {
      if (event.index <= std::max(partition.after, partition.read_to)) continue;
      const std::uint64_t index = event.index;
      partition.read_to = index;
      const std::string tenant = event.tenant_id;
      partition.events[index].event = std::move(event);
      stats_.events.add();
      resolve_later(tenant, id, index);
    }
  }

  // Finds the tenant's webhooks (cached briefly) and starts the event's deliveries.
  void resolve_later(const std::string& tenant_id, PartitionId id, std::uint64_t index) {
    TenantWebhooks& tenant = tenants_[tenant_id];
    tenant.waiting.emplace_back(id, index);
    if (tenant.fetching) return;
    // The cached list serves only events that happened before it was read, so
    // that a webhook registered just before an event always gets it.
    const std::int64_t event_at_ms = partitions_[id].events[index].event.at_ms;
    if (tenant.fetched_at != Clock::time_point{} &&
        Clock::now() - tenant.fetched_at < kWebhooksCacheTtl && tenant.fetched_at_ms > event_at_ms)
      return start_waiting(tenant_id);
    fetch_webhooks(tenant_id);
  }

  void fetch_webhooks(const std::string& tenant_id) {
    TenantWebhooks& tenant = tenants_[tenant_id];
    tenant.fetching = true;
    const std::int64_t fetch_started_ms = ids::now_ms();
    storage_.query<std::vector<wire::WebhookRecord>>(
        wire::tenant_key(tenant_id), wire::QueryKind::kListWebhooks,
        wire::TenantList{tenant_id, "", "", 1000},
        [this, tenant_id,
         fetch_started_ms](StorageOutcome<std::vector<wire::WebhookRecord>> outcome) {
          post([this, tenant_id, fetch_started_ms, outcome = std::move(outcome)]() mutable {
            TenantWebhooks& tenant = tenants_[tenant_id];
            tenant.fetching = false;
            if (!outcome.ok()) {
              // Storage unreachable: the events wait (they hold the acknowledgement) and the
              // list is asked for again shortly.
              tenant.fetching = true;
              timers_.emplace(Clock::now() + kWebhooksRefetchDelay,
                              [this, tenant_id] { fetch_webhooks(tenant_id); });
              return;
            }
            tenant.webhooks = std::move(*outcome.value);
            tenant.fetched_at = Clock::now();
            tenant.fetched_at_ms = fetch_started_ms;
            start_waiting(tenant_id);
          });
        });
  }

  void start_waiting(const std::string& tenant_id) {
    TenantWebhooks& tenant = tenants_[tenant_id];
    for (auto [id, index] : std::exchange(tenant.waiting, {})) {
      auto found = partitions_[id].events.find(index);
      if (found == partitions_[id].events.end()) continue;
      Event& event = found->second;
      for (const auto& webhook : tenant.webhooks) {
        if (std::find(webhook.events.begin(), webhook.events.end(), event.event.type) ==
            webhook.events.end())
          continue;
        // A webhook hears what happens once it is registered, not a backlog that
        // was still in the outbox then (both times are storage clocks).
        if (event.event.at_ms < webhook.created_at_ms) continue;
        auto delivery = std::make_shared<Delivery>();
        delivery->webhook = webhook;
        delivery->record = {tenant_id,        webhook.webhook_id, event.event.event_id,
                            event.event.type, "retrying",         {},
                            ids::now_ms()};
        delivery->limiter_key = tenant_id + "/" + webhook.webhook_id;
        if (!limiter_.try_open(delivery->limiter_key)) {
          shed(*delivery);
          continue;
        }
        ++event.deliveries_open;
        stats_.in_flight.add(1);
        attempt(id, index, delivery);
      }
      if (event.deliveries_open == 0) finish_event(id, index);
    }
  }

  // The webhook has open_per_webhook_max deliveries open already (its receiver is slow or down):
  // this one ends at once, recorded failed with the reason, so that the receiver cannot hold
  // back the outbox for every other webhook (docs/api.md, Webhooks).
  void shed(Delivery& delivery) {
    stats_.shed.add();
    log_.debug("webhook_delivery_shed", {{"webhook_id", delivery.webhook.webhook_id},
                                         {"event_id", delivery.record.event_id}});
    const std::int64_t now_ms = ids::now_ms();
    delivery.record.state = delivery_state_name(DeliveryState::kFailed);
    delivery.record.attempts.push_back(
        {now_ms, 0,
         "not attempted: the webhook already has " +
             std::to_string(topology_.webhooks.open_per_webhook_max) +
             " deliveries open (webhooks.open_per_webhook_max)",
         0});
    storage_.command<StorageClient::Empty>(
        wire::tenant_key(delivery.record.tenant_id), wire::CommandKind::kRecordDelivery,
        wire::RecordDelivery{delivery.record, topology_.webhooks.deliveries_kept_max},
        [](StorageOutcome<StorageClient::Empty>) {});
  }

  // Every attempt first asks whether the webhook still exists, so that one
  // deleted while its event waited or was being retried is called no more.
  void attempt(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    if (!delivery->loaded) return load_record(id, index, delivery);
    const wire::TenantLookup lookup{delivery->record.tenant_id, delivery->webhook.webhook_id};
    storage_.query<wire::WebhookRecord>(
        wire::tenant_key(lookup.tenant_id), wire::QueryKind::kGetWebhook, lookup,
        [this, id, index, delivery](StorageOutcome<wire::WebhookRecord> outcome) {
          post([this, id, index, delivery, status = outcome.status] {
            if (status == wire::Status::kNotFound) return abandon(id, index, delivery);
            if (status != wire::Status::kOk) {
              // Storage unreachable: ask again shortly.
              timers_.emplace(Clock::now() + std::chrono::milliseconds(500),
                              [this, id, index, delivery] { attempt(id, index, delivery); });
              return;
            }
            send_attempt(id, index, delivery);
          });
        });
  }

  // Before the first attempt: a record an earlier run stored for this event (the connector
  // restarted before the outbox was acknowledged past it) is continued, so that its attempts
  // count against attempts_max and its history is kept rather than overwritten.
  void load_record(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    const wire::DeliveryLookup lookup{delivery->record.tenant_id, delivery->webhook.webhook_id,
                                      delivery->record.event_id};
    storage_.query<wire::DeliveryRecord>(
        wire::tenant_key(lookup.tenant_id), wire::QueryKind::kGetDelivery, lookup,
        [this, id, index, delivery](StorageOutcome<wire::DeliveryRecord> outcome) {
          post([this, id, index, delivery, outcome = std::move(outcome)] {
            if (outcome.status == wire::Status::kNotFound ||
                outcome.status == wire::Status::kInvalid) {  // none, or a storage node too old
              delivery->loaded = true;
              return attempt(id, index, delivery);
            }
            if (!outcome.ok()) {
              timers_.emplace(Clock::now() + std::chrono::milliseconds(500),
                              [this, id, index, delivery] { attempt(id, index, delivery); });
              return;
            }
            delivery->loaded = true;
            const Resumed resumed =
                resume_delivery(delivery->record, *outcome.value, policy_, ids::now_ms());
            log_.debug("webhook_delivery_resumed",
                       {{"webhook_id", delivery->webhook.webhook_id},
                        {"event_id", delivery->record.event_id},
                        {"state", delivery->record.state},
                        {"attempts", delivery->record.attempts.size()}});
            switch (resumed.action) {
              case ResumeAction::kEnded:
                return delivery_ended(id, index, *delivery);
              case ResumeAction::kGiveUp:
                record(*delivery);
                stats_.failed.add();
                return delivery_ended(id, index, *delivery);
              case ResumeAction::kAttempt:
                if (resumed.delay_ms == 0) return attempt(id, index, delivery);
                timers_.emplace(Clock::now() + std::chrono::milliseconds(resumed.delay_ms),
                                [this, id, index, delivery] { attempt(id, index, delivery); });
                return;
            }
          });
        });
  }

  void record(const Delivery& delivery) {
    storage_.command<StorageClient::Empty>(
        wire::tenant_key(delivery.record.tenant_id), wire::CommandKind::kRecordDelivery,
        wire::RecordDelivery{delivery.record, topology_.webhooks.deliveries_kept_max},
        [](StorageOutcome<StorageClient::Empty>) {});
  }

  // The delivery ended (any way): its places are freed and its event may be finished.
  void delivery_ended(PartitionId id, std::uint64_t index, const Delivery& delivery) {
    stats_.in_flight.add(-1);
    limiter_.close(delivery.limiter_key);
    auto found = partitions_[id].events.find(index);
    if (found != partitions_[id].events.end() && --found->second.deliveries_open == 0)
      finish_event(id, index);
  }

  // The webhook was deleted: its delivery ends without a record (they went with it).
  void abandon(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    log_.debug("webhook_gone", {{"webhook_id", delivery->webhook.webhook_id},
                                {"event_id", delivery->record.event_id}});
    delivery_ended(id, index, *delivery);
  }

  // Takes one of the webhook's sending slots (or waits for one), then send_slotted().
  void send_attempt(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    limiter_.send(delivery->limiter_key,
                  [this, id, index, delivery] { send_slotted(id, index, delivery); });
  }

  // The attempt no longer holds its slot: the webhook's next waiting attempt gets it.
  void release_slot(const Delivery& delivery) {
    if (auto next = limiter_.sent(delivery.limiter_key)) post(std::move(next));
  }

  // Resolves and checks the URL on the check pool, then sends from the dispatcher's thread.
  void send_slotted(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    const bool queued = url_checks_.try_submit([this, id, index, delivery] {
      const std::int64_t started_ms = ids::now_ms();
      GuardResult guard = check_url(delivery->webhook.url, url_policy_);
      post([this, id, index, delivery, started_ms, guard = std::move(guard)] {
        send_checked(id, index, delivery, started_ms, guard);
      });
    });
    if (!queued) retry_soon(id, index, delivery);
  }

  void retry_soon(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery) {
    release_slot(*delivery);
    timers_.emplace(Clock::now() + kSenderFullRetry,
                    [this, id, index, delivery] { send_attempt(id, index, delivery); });
  }

  void send_checked(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery,
                    std::int64_t started_ms, const GuardResult& guard) {
    auto found = partitions_[id].events.find(index);
    // An open delivery keeps its event: a missing one is a bug.
    if (found == partitions_[id].events.end()) {
      log_.error("webhook_event_missing", {{"event_id", delivery->record.event_id}});
      release_slot(*delivery);
      limiter_.close(delivery->limiter_key);
      stats_.in_flight.add(-1);
      return;
    }
    const wire::OutboxEvent& event = found->second.event;
    stats_.attempts.add();
    // Checked before every attempt, and the connection pinned to the address
    // checked: DNS cannot swap in a private address in between.
    // A host that did not resolve is a connection error and retried; a refused URL or
    // address, and a malformed secret, end the delivery.
    auto key = webhook::secret_bytes(delivery->webhook.secret);
    if (!guard.ok() || !key) {
      HttpResult refused;
      refused.error = guard.unresolved ? HttpResult::Error::kConnect : HttpResult::Error::kOther;
      refused.error_message = guard.ok() ? "webhook secret is malformed" : guard.error;
      AttemptOutcome outcome = outcome_of(guard);
      if (guard.ok()) outcome.error = TransportError::kRefusedByGuard;
      return attempt_ended(id, index, delivery, started_ms, refused, outcome);
    }
    const std::string body = event_body(event);
    const std::int64_t timestamp_s = started_ms / 1000;
    HttpPost post;
    post.url = delivery->webhook.url;
    post.pinned_address = guard.address;
    post.timeout_ms = topology_.webhooks.timeout_ms;
    post.headers = {{"content-type", "application/json"},
                    {"user-agent", "chat4all-webhooks/1"},
                    {"webhook-id", event.event_id},
                    {"webhook-timestamp", std::to_string(timestamp_s)},
                    {"webhook-signature", webhook::sign(*key, event.event_id, timestamp_s, body)}};
    post.body = body;
    const bool queued =
        sender_.submit(std::move(post), [this, id, index, delivery, started_ms](HttpResult result) {
          post_result(id, index, delivery, started_ms, std::move(result));
        });
    // The sender is at its bound: the attempt (and its check) is made again shortly.
    if (!queued) retry_soon(id, index, delivery);
  }

  void post_result(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery,
                   std::int64_t started_ms, HttpResult result) {
    post([this, id, index, delivery, started_ms, result = std::move(result)] {
      attempt_ended(id, index, delivery, started_ms, result, outcome_of(result));
    });
  }

  void attempt_ended(PartitionId id, std::uint64_t index, std::shared_ptr<Delivery> delivery,
                     std::int64_t started_ms, const HttpResult& result,
                     const AttemptOutcome& outcome) {
    release_slot(*delivery);
    wire::DeliveryAttempt attempt_record{started_ms, result.status_code, result.error_message,
                                         result.duration_ms};
    delivery->record.attempts.push_back(std::move(attempt_record));
    const auto attempt_number = static_cast<std::uint32_t>(delivery->record.attempts.size());
    std::uint64_t random = 0;
    randombytes_buf(&random, sizeof random);
    const RetryDecision decision = decide_retry(attempt_number, outcome, policy_, random);
    delivery->record.state = delivery_state_name(decision.final_state);
    delivery->record.next_attempt_at_ms = decision.retry ? ids::now_ms() + decision.delay_ms : 0;
    storage_.command<StorageClient::Empty>(
        wire::tenant_key(delivery->record.tenant_id), wire::CommandKind::kRecordDelivery,
        wire::RecordDelivery{delivery->record, topology_.webhooks.deliveries_kept_max},
        [](StorageOutcome<StorageClient::Empty>) {});
    if (decision.retry) {
      timers_.emplace(Clock::now() + std::chrono::milliseconds(decision.delay_ms),
                      [this, id, index, delivery] { attempt(id, index, delivery); });
      return;
    }
    (decision.final_state == DeliveryState::kDelivered ? stats_.delivered : stats_.failed).add();
    log_.debug("webhook_delivery_ended", {{"webhook_id", delivery->webhook.webhook_id},
                                          {"event_id", delivery->record.event_id},
                                          {"state", delivery->record.state},
                                          {"attempts", attempt_number}});
    stats_.in_flight.add(-1);
    limiter_.close(delivery->limiter_key);
    auto found = partitions_[id].events.find(index);
    if (found == partitions_[id].events.end()) return;
    if (--found->second.deliveries_open == 0) finish_event(id, index);
  }

  // An event whose deliveries all ended; acknowledges the outbox up to the
  // first event still open (everything read, when none is).
  void finish_event(PartitionId id, std::uint64_t index) {
    Partition& partition = partitions_[id];
    partition.events.erase(index);
    const std::uint64_t up_to =
        partition.events.empty() ? partition.read_to : partition.events.begin()->first - 1;
    if (up_to <= partition.after) return;
    partition.after = up_to;
    storage_.command<StorageClient::Empty>(wire::partition_key(id), wire::CommandKind::kAckOutbox,
                                           wire::AckOutbox{id, up_to},
                                           [](StorageOutcome<StorageClient::Empty>) {});
  }

  const Topology& topology_;
  StorageClient& storage_;
  Log& log_;
  Stats stats_;
  // Work handed to the dispatcher's thread from other threads. At the bound a completion is
  // dropped and its event is delivered again after the outbox is re-read (at least once).
  // Before sender_: the sender's thread posts here until it is stopped.
  TaskInbox inbox_{kInboxMax};
  HttpSender sender_;
  RetryPolicy policy_;
  UrlPolicy url_policy_;
  // After inbox_: its threads post there until they are joined.
  WorkerPool url_checks_;
  WebhookLimiter limiter_;
  std::map<PartitionId, Partition> partitions_;
  std::map<std::string, TenantWebhooks> tenants_;
  std::multimap<Clock::time_point, std::function<void()>> timers_;
};

}  // namespace

ConnectorNode::ConnectorNode(const Topology& topology, const NodeSpec& self)
    : topology_(topology), self_(self) {}

void ConnectorNode::run(const std::atomic<bool>& stop) {
  std::optional<MetricsServer> metrics_server;
  if (auto port = self_.port("metrics")) metrics_server.emplace(metrics(), self_.host, *port);

  const std::size_t connectors = topology_.with_role(NodeRole::kConnector).size();
  std::vector<PartitionId> partitions =
      topology_.partitions_read_by(NodeRole::kConnector, self_.name);

  std::vector<std::string> routers;
  for (const NodeSpec* node : topology_.with_role(NodeRole::kRouter))
    routers.push_back(node->zmq_address("rpc"));
  auto router_client = std::make_unique<RouterClient>(routers, topology_.limits.request_timeout_ms,
                                                      topology_.limits.pending_requests_max);
  StorageClient storage(*router_client);

  // The channels this node hosts (NodeSpec::channels; empty: every one), beside the dispatcher.
  std::unique_ptr<ChannelHost> host;
  try {
    host = std::make_unique<ChannelHost>(topology_, self_, *router_client);
  } catch (const AdapterConfigError& e) {
    log_.error("channel_config_invalid", {{"error", e.what()}});
    throw;
  }
  if (host->hosted_channels() == 0) host.reset();
  if (host) host->start();

  log_.info("started", {{"partitions", partitions.size()},
                        {"connectors", connectors},
                        {"channels", host ? host->hosted_channels() : 0}});
  Dispatcher dispatcher(topology_, std::move(partitions), storage, log_);
  // A newer topology version: connect to the routers it lists, and read the outboxes of this
  // connector's share among the connectors it lists (a connector that left is taken over).
  auto follower = std::make_unique<TopologyFollower>(
      topology_, self_.name, *router_client,
      [&](std::shared_ptr<const Topology> next, std::uint64_t) {
        router_client->set_routers(router_rpc_addresses(*next));
        auto share = next->partitions_read_by(NodeRole::kConnector, self_.name);
        for (int attempt = 0; attempt < 50 && !dispatcher.reassign(share); ++attempt)
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
      });
  dispatcher.run(stop);
  follower.reset();        // before the dispatcher and the router client it uses
  if (host) host->stop();  // before the router client: the host waits on storage through it
  router_client.reset();   // no storage reply reaches the dispatcher after this
  log_.info("stopped");
}

}  // namespace chat4all::connector
