#include "nodes/connector/channel_host.h"

#include <algorithm>
#include <chrono>

namespace chat4all::connector {

namespace {

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ChannelHost::ChannelHost(const Topology& topology, const NodeSpec& self, RouterClient& routers,
                         ChannelHostOptions options)
    : self_(self),
      storage_(routers),
      options_(options),
      accepted_(options.dedup_entries_max),
      inbound_storage_(storage_),
      ingestion_(inbound_storage_, {options.inbound_batches_max, options.ref_lookup_attempts,
                                    options.ref_lookup_interval_ms}) {
  for (const ChannelSpec& spec : topology.channels) {
    if (!self.channels.empty() &&
        std::find(self.channels.begin(), self.channels.end(), spec.name) == self.channels.end())
      continue;
    auto channel = std::make_unique<HostedChannel>(spec, make_adapter(spec));
    by_name_[spec.name] = channel.get();
    channels_.push_back(std::move(channel));
  }
  std::vector<std::string> router_addresses;
  for (const NodeSpec* router : topology.with_role(NodeRole::kRouter))
    if (router->port("channels")) router_addresses.push_back(router->zmq_address("channels"));

  link_ = std::make_unique<RouterLink>(
      self.name, std::move(router_addresses),
      RouterLinkOptions{options.status_interval_ms, options.outbox_frames_max},
      [this](std::size_t router, const wire::Header& header, wire::DeliveryJob job) {
        auto found = by_name_.find(job.channel);
        workers_->offer(found == by_name_.end() ? nullptr : found->second, router, header,
                        std::move(job));
      },
      [this] { return capacities(); });
  workers_ = std::make_unique<DeliveryWorkers>(
      channel_list(), storage_, accepted_, stop_, options.storage_timeout_ms,
      [this](std::size_t router, const wire::Header& header, wire::DeliveryResult result) {
        link_->post_result(router, header, std::move(result));
      },
      [this] { link_->status_changed(); });
  adapters_ = std::make_unique<AdapterLoops>(
      channel_list(), AdapterLoopOptions{options.connect_retry_ms}, stop_,
      [this](HostedChannel& channel, std::vector<InboundEvent> events,
             std::function<void(bool)> done) {
        ingestion_.ingest(channel, std::move(events), std::move(done));
      },
      [this] { link_->status_changed(); });
}

ChannelHost::~ChannelHost() {
  stop();
}

std::vector<HostedChannel*> ChannelHost::channel_list() const {
  std::vector<HostedChannel*> list;
  for (const auto& channel : channels_) list.push_back(channel.get());
  return list;
}

std::vector<wire::ChannelCapacity> ChannelHost::capacities() const {
  std::vector<wire::ChannelCapacity> list;
  const std::int64_t now = steady_ms();
  for (const auto& channel : channels_) {
    std::lock_guard lock(channel->mutex);
    list.push_back({channel->spec.name, channel->slots(), channel->breaker.state_name(now),
                    channel->connected.load()});
  }
  return list;
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
          ingestion_.on_webhook(by_name_, std::move(request), std::move(respond));
        });
  }
  link_->start();
  workers_->start();
  adapters_->start();
  if (http_) http_->start();
  log_.info(
      "channel_host_started",
      {{"channels", channels_.size()}, {"routers", link_->routers()}, {"http_port", http_port()}});
}

void ChannelHost::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stop_.stop();
  if (http_) http_->stop();  // no respond() reaches a client after this
  link_->stop();
  workers_->join();
  ingestion_.close();  // before the adapter threads: a poll's batch waits for it
  adapters_->join();
  log_.info("channel_host_stopped");
}

}  // namespace chat4all::connector
