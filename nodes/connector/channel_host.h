// The connector's channel host: runs the adapters of the channels this node hosts
// (NodeSpec::channels; empty: every channel of the topology), takes deliveries from the routers
// and turns what the platforms report (webhooks, long polls) into stored messages and states.
//
// It puts together four parts, each in its own file:
// - RouterLink (router_link.h): the DEALERs to the routers, on a thread of their own: jobs in,
//   results and statuses out;
// - DeliveryWorkers (delivery_workers.h): admits each job into a slot of its channel (or answers
//   busy, or "accepted" again from AcceptedDeliveries) and sends it on a worker thread;
// - AdapterLoops (adapter_loop.h): per channel, connects the adapter and polls it;
// - InboundIngestion (inbound_ingestion.h): stores the events of webhooks and polls, driven by
//   storage answers, behind the inbound HTTP server (if the node has an "http" endpoint).
// The channels they share are HostedChannel (hosted_channel.h). Storage steps go through the
// RouterClient given to the constructor; it must outlive the host.
//
// Thread-safety: start() and stop() from the owner's thread, once each, in that order.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/json_log.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/topology.h"
#include "nodes/connector/accepted_deliveries.h"
#include "nodes/connector/adapter_loop.h"
#include "nodes/connector/delivery_workers.h"
#include "nodes/connector/hosted_channel.h"
#include "nodes/connector/inbound_http.h"
#include "nodes/connector/inbound_ingestion.h"
#include "nodes/connector/router_link.h"

namespace chat4all::connector {

struct ChannelHostOptions {
  std::uint32_t status_interval_ms = 500;
  std::uint32_t connect_retry_ms = 5000;
  std::size_t dedup_entries_max = 100'000;  // accepted delivery ids remembered
  std::size_t outbox_frames_max = 10'000;   // results waiting for the ZMQ thread; beyond: dropped
  std::size_t inbound_batches_max = 64;     // webhook requests waiting to be stored; beyond: 503
  std::uint32_t ref_lookup_attempts = 10;   // a status event's ref may still be being written
  std::uint32_t ref_lookup_interval_ms = 200;
  // A worker waits this long for the records of an accepted send; inbound storage steps are
  // bounded by the RouterClient's own request timeout.
  std::uint32_t storage_timeout_ms = 2000;
};

class ChannelHost {
 public:
  // Makes the adapters of the hosted channels; throws AdapterConfigError if one cannot be made.
  ChannelHost(const Topology& topology, const NodeSpec& self, RouterClient& routers,
              ChannelHostOptions options = {});
  ~ChannelHost();  // stops
  ChannelHost(const ChannelHost&) = delete;
  ChannelHost& operator=(const ChannelHost&) = delete;

  // Binds the inbound HTTP server (throws if its port is taken) and starts every thread.
  void start();
  // Stops the HTTP server, the router link, the workers (an in-flight send is waited for, up to
  // its transport timeout; its result is not sent), inbound ingestion, and the adapter threads
  // (a long poll is waited for, up to its timeout). Idempotent.
  void stop();

  std::size_t hosted_channels() const { return channels_.size(); }
  // The inbound server's port (0 without one), for tests.
  std::uint16_t http_port() const;

 private:
  std::vector<HostedChannel*> channel_list() const;
  std::vector<wire::ChannelCapacity> capacities() const;

  const NodeSpec& self_;
  StorageClient storage_;
  const ChannelHostOptions options_;
  Log log_{"channel_host"};
  std::vector<std::unique_ptr<HostedChannel>> channels_;
  std::unordered_map<std::string, HostedChannel*> by_name_;

  StopSignal stop_;
  AcceptedDeliveries accepted_;
  RoutedInboundStorage inbound_storage_;
  InboundIngestion ingestion_;
  std::unique_ptr<RouterLink> link_;
  std::unique_ptr<DeliveryWorkers> workers_;
  std::unique_ptr<AdapterLoops> adapters_;
  std::unique_ptr<InboundHttpServer> http_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace chat4all::connector
