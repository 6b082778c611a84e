#include "nodes/connector/channel_host.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <zmq.hpp>

#include "common/codec.h"
#include "common/curve.h"
#include "common/ids.h"
#include "common/transport.h"

namespace chat4all::connector {

namespace {

using SteadyClock = std::chrono::steady_clock;

// Platform webhooks are stored by this many threads, each with its own queue. A
// batch goes to the queue its first event's address picks, so what one sender
// (or one recipient's receipts) sends is stored in the order it arrived, while
// different senders are stored side by side.
constexpr std::size_t kInboundShards = 4;
constexpr std::size_t kIdLengthMax = 64;
// A failed batch of polled updates is stored again this often, this many times, before it is
// given up (the platform has handed it over and will not send it again).
constexpr std::uint32_t kPollRetryMs = 1000;
constexpr std::uint32_t kPollRetriesMax = 60;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

bool id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// Failures worth asking the platform to send again: nothing was decided. Every other status is
// a verdict (not found, invalid, conflict) that a retry would only repeat.
bool transient(wire::Status status) {
  switch (status) {
    case wire::Status::kNotOwner:
    case wire::Status::kUnavailable:
    case wire::Status::kTimeout:
    case wire::Status::kStorageFull:
    case wire::Status::kInternal:
      return true;
    default:
      return false;
  }
}

// "channel/webhook" target -> channel name, or nullopt.
std::optional<std::string> webhook_channel(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  const std::string prefix = "/channels/";
  const std::string suffix = "/webhook";
  if (path.size() <= prefix.size() + suffix.size() || path.rfind(prefix, 0) != 0 ||
      path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  std::string name = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  if (name.find('/') != std::string::npos) return std::nullopt;
  return name;
}

WebhookResponse json_error(int status, const std::string& code) {
  return {status, "application/json", nlohmann::json{{"error", code}}.dump()};
}

}  // namespace

std::string inbound_message_id(const std::string& channel, const std::string& provider_id) {
  const std::string raw = channel + "-" + provider_id;
  std::string id;
  id.reserve(raw.size());
  for (char c : raw) id.push_back(id_char(c) ? c : '_');
  if (id == raw && id.size() <= kIdLengthMax) return id;
  // FNV-1a 64 of the raw id: stable across builds, unlike std::hash.
  std::uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : raw) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  static const char* kHex = "0123456789abcdef";
  std::string suffix(17, '-');
  for (int i = 0; i < 16; ++i) suffix[1 + i] = kHex[(hash >> (60 - 4 * i)) & 0xf];
  id.resize(std::min(id.size(), kIdLengthMax - suffix.size()));
  return id + suffix;
}

struct ChannelHost::Channel {
  Channel(ChannelSpec spec_in, std::unique_ptr<ChannelAdapter> adapter_in)
      : spec(std::move(spec_in)),
        adapter(std::move(adapter_in)),
        breaker(spec.breaker_failures, spec.breaker_open_ms),
        labels("channel=\"" + spec.name + "\"") {}

  Counter& sends(const char* outcome) {
    return metrics().counter("chat4all_connector_channel_sends_total",
                             "Delivery jobs answered, by channel and outcome",
                             labels + ",outcome=\"" + outcome + "\"");
  }
  Counter& inbound(const char* kind, const char* result) {
    return metrics().counter("chat4all_connector_channel_inbound_events_total",
                             "Events the platforms reported, by channel, kind and result",
                             labels + ",kind=\"" + kind + "\",result=\"" + result + "\"");
  }
  Counter& webhooks_refused(const char* reason) {
    return metrics().counter("chat4all_connector_channel_webhooks_refused_total",
                             "Webhook requests refused by the channel's adapter, by reason",
                             labels + ",reason=\"" + reason + "\"");
  }

  const ChannelSpec spec;
  const std::unique_ptr<ChannelAdapter> adapter;
  std::atomic<bool> connected{false};

  std::mutex mutex;
  std::condition_variable work_ready;
  CircuitBreaker breaker;  // guarded by mutex
  std::uint32_t busy = 0;  // slots taken (queued or sending); guarded by mutex
  std::deque<Work> work;   // at most spec.concurrency; guarded by mutex

  const std::string labels;
  Gauge& busy_slots = metrics().gauge("chat4all_connector_channel_busy_slots",
                                      "Delivery slots taken, by channel", labels);
  Counter& accepted = sends("accepted");
  Counter& retry = sends("retry");
  Counter& rejected = sends("rejected");
  Counter& busy_answers = sends("busy");
  Counter& deduplicated = sends("deduplicated");
  Counter& messages_stored = inbound("message", "stored");
  Counter& messages_dropped = inbound("message", "dropped");
  Counter& statuses_stored = inbound("status", "stored");
  Counter& statuses_dropped = inbound("status", "dropped");
  Counter& storage_failures = inbound("any", "storage_failed");
  // Webhook requests the adapter refused: no valid signature or secret (401/403), or a verified
  // body it could not read (other 4xx).
  Counter& webhooks_unverified = webhooks_refused("unverified");
  Counter& webhooks_malformed = webhooks_refused("malformed");
};

ChannelHost::ChannelHost(const Topology& topology, const NodeSpec& self, RouterClient& routers,
                         ChannelHostOptions options)
    : topology_(topology),
      self_(self),
      routers_(routers),
      storage_(routers),
      options_(options),
      outbox_dropped_(metrics().counter("chat4all_connector_channel_results_dropped_total",
                                        "Delivery results dropped: outbox full or socket full")),
      frames_rejected_(transport::rejected_frames_counter()) {
  for (const ChannelSpec& spec : topology.channels) {
    if (!self.channels.empty() &&
        std::find(self.channels.begin(), self.channels.end(), spec.name) == self.channels.end())
      continue;
    auto channel = std::make_unique<Channel>(spec, make_adapter(spec));
    by_name_[spec.name] = channel.get();
    channels_.push_back(std::move(channel));
  }
  for (const NodeSpec* router : topology.with_role(NodeRole::kRouter))
    if (router->port("channels")) router_addresses_.push_back(router->zmq_address("channels"));
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
}

ChannelHost::~ChannelHost() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

std::uint16_t ChannelHost::http_port() const {
  return http_ ? http_->port() : 0;
}

void ChannelHost::start() {
  if (started_) return;
  started_ = true;
  if (self_.port("http")) {
    http_ = std::make_unique<InboundHttpServer>(
        self_.host, *self_.port("http"),
        [this](WebhookRequest request, InboundHttpServer::Respond respond) {
          on_webhook(std::move(request), std::move(respond));
        });
  }
  zmq_thread_ = std::thread([this] { run_zmq(); });
  for (auto& channel : channels_) {
    for (std::uint32_t i = 0; i < std::max<std::uint32_t>(1, channel->spec.concurrency); ++i)
      threads_.emplace_back([this, c = channel.get()] { run_worker(*c); });
    threads_.emplace_back([this, c = channel.get()] { run_adapter(*c); });
  }
  if (http_) {
    inbound_.resize(kInboundShards);
    for (std::size_t shard = 0; shard < kInboundShards; ++shard)
      threads_.emplace_back([this, shard] { run_inbound(shard); });
    http_->start();
  }
  log_.info("channel_host_started", {{"channels", channels_.size()},
                                     {"routers", router_addresses_.size()},
                                     {"http_port", http_port()}});
}

void ChannelHost::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(stop_mutex_);
    stopping_.store(true);
  }
  stop_cv_.notify_all();
  if (http_) http_->stop();  // no respond() reaches a client after this
  wake();
  if (zmq_thread_.joinable()) zmq_thread_.join();
  for (auto& channel : channels_) {
    std::lock_guard lock(channel->mutex);
    channel->work_ready.notify_all();
  }
  {
    std::lock_guard lock(inbound_mutex_);
    inbound_cv_.notify_all();
  }
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  log_.info("channel_host_stopped");
}

bool ChannelHost::wait_for_stop(std::uint32_t ms) {
  std::unique_lock lock(stop_mutex_);
  return stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
}

// ---- ZMQ thread ------------------------------------------------------------------------------

void ChannelHost::wake() {
  const std::uint64_t one = 1;
  (void)::write(wake_fd_, &one, sizeof one);
}

void ChannelHost::status_changed() {
  {
    std::lock_guard lock(outbox_mutex_);
    status_dirty_ = true;
  }
  wake();
}

void ChannelHost::post_result(std::size_t router, const wire::Header& job_header,
                              wire::DeliveryResult result) {
  result.connector = self_.name;
  const wire::Header header{wire::kWireVersion, wire::MessageType::kDeliveryResult,
                            job_header.request_id, job_header.trace_id};
  std::string frame = codec::encode(header, result);
  {
    std::lock_guard lock(outbox_mutex_);
    if (outbox_.size() >= options_.outbox_frames_max) {
      // The router's lease on the job runs out and it tries again.
      outbox_dropped_.add();
      return;
    }
    outbox_.push_back({router, std::move(frame)});
  }
  wake();
}

std::string ChannelHost::status_frame() {
  wire::ConnectorStatus status;
  status.connector = self_.name;
  const std::int64_t now = steady_ms();
  for (auto& channel : channels_) {
    std::lock_guard lock(channel->mutex);
    status.channels.push_back({channel->spec.name,
                               std::max<std::uint32_t>(1, channel->spec.concurrency),
                               channel->breaker.state_name(now), channel->connected.load()});
  }
  const wire::Header header{wire::kWireVersion, wire::MessageType::kConnectorStatus,
                            ids::next_request_id(), ids::new_trace_id()};
  return codec::encode(header, status);
}

void ChannelHost::run_zmq() {
  std::vector<zmq::socket_t> dealers;
  for (const auto& address : router_addresses_) {
    zmq::socket_t socket(transport::context(), zmq::socket_type::dealer);
    transport::configure(socket, static_cast<int>(options_.outbox_frames_max));
    socket.set(zmq::sockopt::routing_id, self_.name);
    // Nothing queues for a router that is down: a status would be stale, and a result is
    // covered by the router's lease on the job.
    socket.set(zmq::sockopt::immediate, 1);
    curve::connect(socket, address);
    dealers.push_back(std::move(socket));
  }
  std::vector<zmq::pollitem_t> items;
  for (auto& socket : dealers) items.push_back({socket.handle(), 0, ZMQ_POLLIN, 0});
  items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});

  const auto interval = std::chrono::milliseconds(options_.status_interval_ms);
  auto next_status = SteadyClock::now();
  std::deque<Outgoing> batch;
  while (!stopping_.load()) {
    auto now = SteadyClock::now();
    bool send_status = now >= next_status;
    if (!send_status) {
      transport::poll(items.data(), items.size(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(next_status - now));
    }
    if (stopping_.load()) break;

    if (items.back().revents & ZMQ_POLLIN) {
      std::uint64_t count;
      (void)::read(wake_fd_, &count, sizeof count);
    }
    {
      std::lock_guard lock(outbox_mutex_);
      batch.swap(outbox_);
      send_status = send_status || std::exchange(status_dirty_, false);
    }
    for (auto& out : batch)
      if (!transport::send_multipart(dealers[out.router], {out.frame})) outbox_dropped_.add();
    batch.clear();

    for (std::size_t i = 0; i < dealers.size(); ++i) {
      if (!(items[i].revents & ZMQ_POLLIN)) continue;
      for (int drained = 0; drained < 1024; ++drained) {
        auto frames = transport::receive_multipart(dealers[i]);
        if (frames.empty()) break;
        wire::Header header;
        std::optional<wire::DeliveryJob> job;
        if (frames.size() == 1)
          job = codec::decode_as<wire::DeliveryJob>(transport::view(frames[0]),
                                                    wire::MessageType::kDeliveryJob, &header);
        if (!job) {
          frames_rejected_.add();
          continue;
        }
        on_job(i, header, std::move(*job));
      }
    }
    // Answers on_job posted (busy, dedup hits) go out on the next turn, at once: it woke us.

    if (send_status) {
      const std::string frame = status_frame();
      for (auto& socket : dealers) (void)transport::send_multipart(socket, {frame});
      next_status = SteadyClock::now() + interval;
    }
    for (auto& item : items) item.revents = 0;
  }
}

void ChannelHost::on_job(std::size_t router, const wire::Header& header, wire::DeliveryJob job) {
  wire::DeliveryResult result;
  result.job_id = job.job_id;
  auto found = by_name_.find(job.channel);
  Channel* channel = found == by_name_.end() ? nullptr : found->second;
  if (channel) {
    if (auto accepted = find_accepted(job.delivery_id)) {
      channel->deduplicated.add();
      result.outcome = "accepted";
      result.provider_message_id = std::move(accepted->provider_message_id);
      result.delivered = accepted->delivered;
      return post_result(router, header, std::move(result));
    }
  }
  result.outcome = "busy";
  if (!channel) {
    result.error = "channel not hosted here";
    return post_result(router, header, std::move(result));
  }
  if (!channel->connected.load()) {
    result.error = "channel not connected";
    channel->busy_answers.add();
    return post_result(router, header, std::move(result));
  }
  bool changed = false;
  {
    std::lock_guard lock(channel->mutex);
    const std::uint32_t slots = std::max<std::uint32_t>(1, channel->spec.concurrency);
    if (channel->busy >= slots) {
      result.error = "no free slot";
    } else {
      const std::int64_t now = steady_ms();
      const auto before = channel->breaker.state(now);
      if (!channel->breaker.allow(now)) {
        result.error = "circuit breaker open";
      } else {
        ++channel->busy;
        channel->busy_slots.add(1);
        channel->work.push_back({router, header, std::move(job)});
        channel->work_ready.notify_one();
        result.outcome.clear();
      }
      changed = before != channel->breaker.state(now);
    }
  }
  if (changed) status_changed();
  if (result.outcome.empty()) return;
  channel->busy_answers.add();
  post_result(router, header, std::move(result));
}

std::optional<ChannelHost::Accepted> ChannelHost::find_accepted(const std::string& delivery_id) {
  std::lock_guard lock(dedup_mutex_);
  auto found = dedup_.find(delivery_id);
  if (found == dedup_.end()) return std::nullopt;
  dedup_order_.splice(dedup_order_.begin(), dedup_order_, found->second.second);
  return found->second.first;
}

void ChannelHost::remember_accepted(const std::string& delivery_id, Accepted accepted) {
  std::lock_guard lock(dedup_mutex_);
  auto found = dedup_.find(delivery_id);
  if (found != dedup_.end()) {
    found->second.first = std::move(accepted);
    dedup_order_.splice(dedup_order_.begin(), dedup_order_, found->second.second);
    return;
  }
  dedup_order_.push_front(delivery_id);
  dedup_.emplace(delivery_id, std::make_pair(std::move(accepted), dedup_order_.begin()));
  while (dedup_.size() > std::max<std::size_t>(1, options_.dedup_entries_max)) {
    dedup_.erase(dedup_order_.back());
    dedup_order_.pop_back();
  }
}

// ---- Workers ---------------------------------------------------------------------------------

void ChannelHost::run_worker(Channel& channel) {
  while (true) {
    Work work;
    {
      std::unique_lock lock(channel.mutex);
      channel.work_ready.wait(lock, [&] { return stopping_.load() || !channel.work.empty(); });
      if (stopping_.load()) {
        // Queued jobs are abandoned: no result, the router's lease handles them.
        for (auto& abandoned : channel.work) {
          (void)abandoned;
          channel.breaker.on_abandoned();
          --channel.busy;
          channel.busy_slots.add(-1);
        }
        channel.work.clear();
        return;
      }
      work = std::move(channel.work.front());
      channel.work.pop_front();
    }
    deliver(channel, std::move(work));
  }
}

void ChannelHost::deliver(Channel& channel, Work work) {
  const wire::DeliveryJob& job = work.job;
  OutboundMessage message{job.delivery_id,  job.tenant_id,       job.conversation_id, job.seq,
                          job.message_id,   job.sender_id,       job.recipient_id,    job.address,
                          job.payload.text, job.payload.file_id, job.metadata};
  const auto started = SteadyClock::now();
  SendResult sent;
  bool verdict = true;  // false: the platform was not asked, the breaker learns nothing
  try {
    if (job.payload.type == "text") {
      sent = channel.adapter->send_message(message);
    } else if (job.payload.type == "file") {
      sent = channel.adapter->send_file(message);
    } else {
      verdict = false;
      sent.outcome = SendResult::Outcome::kRejected;
      sent.error = "unknown payload type '" + job.payload.type + "'";
    }
  } catch (const std::exception& e) {
    sent = {};
    sent.outcome = SendResult::Outcome::kRetry;
    sent.error = std::string("adapter failed: ") + e.what();
  }
  const auto duration_ms = static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started).count());

  if (sent.outcome == SendResult::Outcome::kAccepted) record_accepted(channel, job, sent);

  wire::DeliveryResult result;
  result.job_id = job.job_id;
  result.status_code = sent.status_code;
  result.duration_ms = duration_ms;
  switch (sent.outcome) {
    case SendResult::Outcome::kAccepted:
      result.outcome = "accepted";
      result.provider_message_id = sent.provider_message_id;
      result.delivered = sent.delivered;
      channel.accepted.add();
      break;
    case SendResult::Outcome::kRetry:
      result.outcome = "retry";
      result.error = sent.error;
      result.retry_after_ms = sent.retry_after_ms;
      channel.retry.add();
      break;
    case SendResult::Outcome::kRejected:
      result.outcome = "rejected";
      result.error = sent.error;
      channel.rejected.add();
      break;
  }
  bool changed = false;
  {
    std::lock_guard lock(channel.mutex);
    const std::int64_t now = steady_ms();
    const auto before = channel.breaker.state(now);
    if (!verdict)
      channel.breaker.on_abandoned();
    else if (sent.outcome == SendResult::Outcome::kRetry)
      channel.breaker.on_failure(now);
    else
      channel.breaker.on_success(now);
    changed = before != channel.breaker.state(now);
    // The slot is free before the result leaves, so that the router's next job finds it free.
    --channel.busy;
    channel.busy_slots.add(-1);
  }
  if (changed) {
    log_.info("breaker_changed", {{"channel", channel.spec.name},
                                  {"state", [&] {
                                     std::lock_guard lock(channel.mutex);
                                     return std::string(channel.breaker.state_name(steady_ms()));
                                   }()}});
    status_changed();
  }
  if (stopping_.load()) return;  // nobody would send it
  post_result(work.router, work.header, std::move(result));
}

// Before "accepted" goes back: the platform's id is indexed (so that its status reports and
// replies find the message) and, where the platform reports no deliveries, the message is marked
// DELIVERED. Both are waited for, bounded; a failure is logged and the result goes anyway (the
// send happened; sending it again would not mend the index).
void ChannelHost::record_accepted(const Channel& channel, const wire::DeliveryJob& job,
                                  const SendResult& sent) {
  remember_accepted(job.delivery_id, {sent.provider_message_id, sent.delivered});
  struct Wait {
    std::mutex mutex;
    std::condition_variable done;
    int open = 0;
  };
  auto wait = std::make_shared<Wait>();
  auto finish = [this, wait, delivery_id = job.delivery_id](const char* step, wire::Status status) {
    if (status != wire::Status::kOk)
      log_.warn(
          "accepted_record_failed",
          {{"delivery_id", delivery_id}, {"step", step}, {"status", codec::status_name(status)}});
    std::lock_guard lock(wait->mutex);
    --wait->open;
    wait->done.notify_all();
  };
  const bool index = !sent.provider_message_id.empty();
  {
    std::lock_guard lock(wait->mutex);
    wait->open = (index ? 1 : 0) + (sent.delivered ? 1 : 0);
  }
  if (index) {
    wire::ChannelRef ref{channel.spec.name, job.address,         sent.provider_message_id,
                         job.tenant_id,     job.conversation_id, job.message_id,
                         job.recipient_id,  ids::now_ms()};
    storage_.command<StorageClient::Empty>(
        wire::channel_address_key(channel.spec.name, job.address),
        wire::CommandKind::kIndexChannelRef, ref,
        [finish](StorageOutcome<StorageClient::Empty> outcome) {
          finish("index_channel_ref", outcome.status);
        });
  }
  if (sent.delivered) {
    wire::MarkState mark{job.tenant_id,         job.conversation_id, job.recipient_id,
                         wire::kStateDelivered, job.message_id,      0};
    storage_.command<wire::MarkStateResult>(
        job.conversation_id, wire::CommandKind::kMarkState, mark,
        [finish](StorageOutcome<wire::MarkStateResult> outcome) {
          finish("mark_delivered", outcome.status);
        });
  }
  std::unique_lock lock(wait->mutex);
  if (!wait->done.wait_for(lock, std::chrono::milliseconds(options_.storage_timeout_ms),
                           [&] { return wait->open <= 0; }))
    log_.warn("accepted_record_timeout", {{"delivery_id", job.delivery_id}});
}

// ---- Adapter threads -------------------------------------------------------------------------

void ChannelHost::run_adapter(Channel& channel) {
  while (!stopping_.load()) {
    try {
      channel.adapter->connect();
      channel.connected.store(true);
      log_.info("channel_connected", {{"channel", channel.spec.name}});
      status_changed();
      break;
    } catch (const std::exception& e) {
      log_.error("channel_connect_failed", {{"channel", channel.spec.name},
                                            {"error", e.what()},
                                            {"retry_in_ms", options_.connect_retry_ms}});
    }
    if (wait_for_stop(options_.connect_retry_ms)) return;
  }
  std::vector<InboundEvent> events;
  while (!stopping_.load()) {
    events.clear();
    bool more = false;
    try {
      more = channel.adapter->poll_updates(events);
    } catch (const std::exception& e) {
      log_.warn("channel_poll_failed", {{"channel", channel.spec.name}, {"error", e.what()}});
      if (wait_for_stop(kPollRetryMs)) return;
      continue;
    }
    if (!events.empty()) {
      std::uint32_t tries = 0;
      while (!process_events(channel, events)) {
        if (++tries >= kPollRetriesMax) {
          log_.error("channel_poll_batch_dropped",
                     {{"channel", channel.spec.name}, {"events", events.size()}});
          break;
        }
        if (wait_for_stop(kPollRetryMs)) return;
      }
    }
    if (!more) return;  // the adapter does not poll (or stopped polling)
  }
}

// ---- Inbound ---------------------------------------------------------------------------------

void ChannelHost::on_webhook(WebhookRequest request, InboundHttpServer::Respond respond) {
  auto name = webhook_channel(request.target);
  auto found = name ? by_name_.find(*name) : by_name_.end();
  if (found == by_name_.end()) return respond(json_error(404, "unknown_channel"));
  if (request.method != "POST" && request.method != "GET")
    return respond(json_error(405, "method_not_allowed"));
  Channel& channel = *found->second;
  std::vector<InboundEvent> events;
  WebhookResponse response;
  try {
    response = channel.adapter->on_webhook(request, events);
  } catch (const std::exception& e) {
    log_.warn("webhook_failed", {{"channel", channel.spec.name}, {"error", e.what()}});
    return respond(json_error(400, "bad_webhook"));
  }
  if (response.status == 401 || response.status == 403) {
    channel.webhooks_unverified.add();
    log_.debug("webhook_unverified", {{"channel", channel.spec.name}, {"status", response.status}});
  } else if (response.status >= 400 && response.status < 500) {
    channel.webhooks_malformed.add();
  }
  if (response.status < 200 || response.status > 299 || events.empty())
    return respond(std::move(response));
  {
    std::lock_guard lock(inbound_mutex_);
    if (inbound_queued_ < options_.inbound_batches_max) {
      const std::size_t shard = std::hash<std::string>{}(events.front().address) % inbound_.size();
      inbound_[shard].push_back(
          {&channel, std::move(events), std::move(response), std::move(respond)});
      ++inbound_queued_;
      inbound_cv_.notify_all();
      return;
    }
  }
  // At the bound: the platform sends it again later.
  respond(json_error(503, "busy"));
}

void ChannelHost::run_inbound(std::size_t shard) {
  while (true) {
    InboundBatch batch;
    {
      std::unique_lock lock(inbound_mutex_);
      auto& queue = inbound_[shard];
      inbound_cv_.wait(lock, [&] { return stopping_.load() || !queue.empty(); });
      if (stopping_.load()) return;  // the server is stopped: nobody to answer
      batch = std::move(queue.front());
      queue.pop_front();
      --inbound_queued_;
    }
    if (process_events(*batch.channel, batch.events))
      batch.respond(std::move(batch.response));
    else
      batch.respond(json_error(503, "storage_unavailable"));
  }
}

bool ChannelHost::process_events(Channel& channel, const std::vector<InboundEvent>& events) {
  bool ok = true;
  for (const auto& event : events) {
    if (stopping_.load()) return false;
    const bool stored = event.kind == InboundEvent::Kind::kStatus ? process_status(channel, event)
                                                                  : process_message(channel, event);
    if (!stored) {
      channel.storage_failures.add();
      ok = false;
    }
  }
  return ok;
}

namespace {

// Waits (bounded) for one storage answer that `submit` asks for; kTimeout when none came.
template <typename Result, typename Submit>
StorageOutcome<Result> wait_for_storage(Submit submit, std::uint32_t timeout_ms) {
  auto promise = std::make_shared<std::promise<StorageOutcome<Result>>>();
  auto future = promise->get_future();
  submit([promise](StorageOutcome<Result> outcome) { promise->set_value(std::move(outcome)); });
  if (future.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) {
    StorageOutcome<Result> late;
    late.status = wire::Status::kTimeout;
    return late;
  }
  return future.get();
}

}  // namespace

template <typename Result, typename Body>
StorageOutcome<Result> ChannelHost::command(std::string key, wire::CommandKind kind,
                                            const Body& body) {
  return wait_for_storage<Result>(
      [&](auto done) { storage_.command<Result>(std::move(key), kind, body, std::move(done)); },
      options_.storage_timeout_ms);
}

template <typename Result, typename Body>
StorageOutcome<Result> ChannelHost::query(std::string key, wire::QueryKind kind, const Body& body) {
  return wait_for_storage<Result>(
      [&](auto done) { storage_.query<Result>(std::move(key), kind, body, std::move(done)); },
      options_.storage_timeout_ms);
}

wire::Status ChannelHost::append(const wire::AppendRequest& request, std::string* detail) {
  auto promise = std::make_shared<std::promise<std::pair<wire::Status, std::string>>>();
  auto future = promise->get_future();
  const wire::Header header{wire::kWireVersion, wire::MessageType::kAppendRequest,
                            ids::next_request_id(), ids::new_trace_id()};
  routers_.submit(header.request_id, codec::encode(header, request),
                  [promise](wire::Status status, std::optional<codec::Frame> reply) {
                    if (status != wire::Status::kOk)
                      return promise->set_value({status, "no answer"});
                    if (reply->header().type == wire::MessageType::kErrorReply) {
                      auto error = reply->body<wire::ErrorReply>();
                      return promise->set_value({error ? error->status : wire::Status::kInternal,
                                                 error ? error->detail : "malformed error reply"});
                    }
                    auto answer = reply->header().type == wire::MessageType::kAppendReply
                                      ? reply->body<wire::AppendReply>()
                                      : std::nullopt;
                    if (!answer) return promise->set_value({wire::Status::kInternal, "malformed"});
                    promise->set_value({answer->status, answer->detail});
                  });
  if (future.wait_for(std::chrono::milliseconds(options_.storage_timeout_ms)) !=
      std::future_status::ready)
    return wire::Status::kTimeout;
  auto [status, why] = future.get();
  if (detail) *detail = std::move(why);
  return status;
}

bool ChannelHost::process_status(Channel& channel, const InboundEvent& event) {
  const std::string& name = channel.spec.name;
  const std::string key = wire::channel_address_key(name, event.address);
  const wire::ChannelRef lookup{name, event.address, event.provider_message_id};
  StorageOutcome<wire::ChannelRef> found;
  // The send's ref may still be being written when the platform's first report arrives.
  for (std::uint32_t attempt = 1;; ++attempt) {
    found = query<wire::ChannelRef>(key, wire::QueryKind::kFindChannelRef, lookup);
    if (found.ok()) break;
    if (transient(found.status)) return false;
    if (attempt >= options_.ref_lookup_attempts) {
      channel.statuses_dropped.add();
      log_.info("status_without_ref", {{"channel", name},
                                       {"provider_message_id", event.provider_message_id},
                                       {"state", event.state}});
      return true;
    }
    if (wait_for_stop(options_.ref_lookup_interval_ms)) return false;
  }
  const wire::ChannelRef& ref = *found.value;
  std::string state;
  if (event.state == wire::kStateDelivered)
    state = wire::kDeliveryDelivered;
  else if (event.state == wire::kStateRead)
    state = wire::kDeliveryRead;
  else if (event.state == "FAILED")
    state = "failed";
  else {
    channel.statuses_dropped.add();
    log_.debug("status_unknown", {{"channel", name}, {"state", event.state}});
    return true;
  }
  bool ok = true;
  if (state != "failed") {
    auto marked = command<wire::MarkStateResult>(
        ref.conversation_id, wire::CommandKind::kMarkState,
        wire::MarkState{ref.tenant_id, ref.conversation_id, ref.recipient_id, event.state,
                        ref.message_id, 0});
    if (!marked.ok()) {
      log_.warn("status_mark_failed", {{"channel", name},
                                       {"message_id", ref.message_id},
                                       {"status", codec::status_name(marked.status)},
                                       {"detail", marked.detail}});
      if (transient(marked.status)) ok = false;
    }
  }
  wire::ChannelDeliveryUpdate update;
  update.delivery.tenant_id = ref.tenant_id;
  update.delivery.conversation_id = ref.conversation_id;
  update.delivery.message_id = ref.message_id;
  update.delivery.recipient_id = ref.recipient_id;
  update.delivery.channel = name;
  update.delivery.address = event.address;
  update.delivery.state = state;
  update.delivery.provider_message_id = event.provider_message_id;
  update.delivery.error = event.error;
  auto updated = command<wire::ChannelDeliveryRecord>(
      ref.conversation_id, wire::CommandKind::kUpdateChannelDelivery, update);
  if (!updated.ok()) {
    log_.warn("status_delivery_update_failed", {{"channel", name},
                                                {"message_id", ref.message_id},
                                                {"status", codec::status_name(updated.status)},
                                                {"detail", updated.detail}});
    if (transient(updated.status)) ok = false;
  }
  if (ok) channel.statuses_stored.add();
  return ok;
}

bool ChannelHost::process_message(Channel& channel, const InboundEvent& event) {
  const std::string& name = channel.spec.name;
  const std::string& tenant = channel.spec.tenant_id;
  auto drop = [&](const char* why) {
    channel.messages_dropped.add();
    log_.info(
        "inbound_message_dropped",
        {{"channel", name}, {"provider_message_id", event.provider_message_id}, {"reason", why}});
    return true;
  };
  auto user = query<wire::UserRecord>(wire::tenant_key(tenant), wire::QueryKind::kResolveIdentity,
                                      wire::IdentityChange{tenant, "", {name, event.address}});
  if (!user.ok()) return transient(user.status) ? false : drop("unknown_sender");
  const std::string& user_id = user.value->user_id;

  // The conversation: the one replied to, else the one last delivered to this address, else the
  // sender's only one.
  std::string conversation_id;
  const std::string key = wire::channel_address_key(name, event.address);
  std::vector<std::string> provider_ids;
  if (!event.reply_to_provider_message_id.empty())
    provider_ids.push_back(event.reply_to_provider_message_id);
  provider_ids.push_back("");
  for (const auto& provider_id : provider_ids) {
    auto ref = query<wire::ChannelRef>(key, wire::QueryKind::kFindChannelRef,
                                       wire::ChannelRef{name, event.address, provider_id});
    if (ref.ok() && ref.value->tenant_id == tenant) {
      conversation_id = ref.value->conversation_id;
      break;
    }
    if (!ref.ok() && transient(ref.status)) return false;
  }
  if (conversation_id.empty()) {
    auto mine = query<std::vector<std::string>>(wire::tenant_key(tenant),
                                                wire::QueryKind::kListUserConversations,
                                                wire::TenantList{tenant, user_id, "", 2});
    if (!mine.ok() && transient(mine.status)) return false;
    if (mine.ok() && mine.value->size() == 1) conversation_id = mine.value->front();
  }
  if (conversation_id.empty()) return drop("no_conversation");

  wire::AppendRequest request;
  request.conversation_id = conversation_id;
  request.message_id = inbound_message_id(name, event.provider_message_id);
  request.sender_id = user_id;
  if (!event.file_id.empty())
    request.payload = {"file", "", event.file_id};
  else
    request.payload = {"text", event.text, ""};
  request.received_at_ms = ids::now_ms();
  request.tenant_id = tenant;
  if (!(channel.spec.inbound_channels.size() == 1 &&
        channel.spec.inbound_channels.front() == kChannelAll))
    request.channels = channel.spec.inbound_channels;
  request.metadata = nlohmann::json{{"origin",
                                     {{"channel", name},
                                      {"address", event.address},
                                      {"provider_message_id", event.provider_message_id}}}}
                         .dump();

  // One replicated round, as for the frontend: the append is idempotent (a platform's retry gets
  // the stored message back), and the id's locator entry is written behind the log.
  std::string detail;
  const wire::Status appended = append(request, &detail);
  if (appended != wire::Status::kOk) {
    if (transient(appended)) return false;
    log_.info("inbound_append_refused", {{"channel", name},
                                         {"message_id", request.message_id},
                                         {"status", codec::status_name(appended)},
                                         {"detail", detail}});
    return drop("append_refused");
  }
  channel.messages_stored.add();
  return true;
}

}  // namespace chat4all::connector
