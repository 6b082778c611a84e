// The connector's channel host: runs the adapters of the channels this node hosts
// (NodeSpec::channels; empty: every channel of the topology), takes deliveries from the routers
// and turns what the platforms report (webhooks, long polls) into stored messages and states.
//
// Protocol with the routers (schema/wire.h kConnectorStatus, kDeliveryJob, kDeliveryResult): one
// DEALER per router, routing id = this node's name, connected to the router's "channels"
// endpoint; one frame per message. The host sends a ConnectorStatus every status interval and
// right after a breaker or connectedness change, and a DeliveryResult for every job it receives,
// on the DEALER the job came from.
//
// A job is answered "busy" at once (not an attempt: the router tries again) when its channel is
// not hosted here, not connected, its breaker refuses, or all of its `concurrency` slots are
// busy. A delivery id accepted before (bounded LRU) is answered "accepted" again without a send.
// Otherwise a worker of the channel sends it; after an accepted send the platform's id is
// indexed (kIndexChannelRef) and, for platforms without delivery reports, the message is marked
// DELIVERED, both before the result goes back.
//
// Threads, all started by start() and joined by stop():
// - the ZMQ thread: owns every DEALER socket; takes jobs, answers busy and dedup hits, sends the
//   statuses and the results workers post to it (bounded outbox + eventfd wake-up);
// - per channel, `concurrency` worker threads (at most that many jobs wait or run; no queue
//   beyond the slots);
// - per channel, one adapter thread: connect() until it succeeds (every kConnectRetryMs), then
//   poll_updates() in a loop while the adapter polls;
// - the inbound HTTP server's io thread (if the node has an "http" endpoint) and
//   kInboundThreads threads that store the events of webhook requests (bounded queue; at the
//   bound the platform gets 503 and sends again).
// Storage steps go through the RouterClient given to the constructor; it must outlive the host.
//
// Thread-safety: start() and stop() from the owner's thread, once each, in that order.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/json_log.h"
#include "common/metrics.h"
#include "common/router_client.h"
#include "common/storage_client.h"
#include "common/topology.h"
#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/circuit_breaker.h"
#include "nodes/connector/inbound_http.h"
#include "schema/records.h"

namespace chat4all::connector {

struct ChannelHostOptions {
  std::uint32_t status_interval_ms = 500;
  std::uint32_t connect_retry_ms = 5000;
  std::size_t dedup_entries_max = 100'000;  // accepted delivery ids remembered
  std::size_t outbox_frames_max = 10'000;   // results waiting for the ZMQ thread; beyond: dropped
  std::size_t inbound_batches_max = 64;     // webhook requests waiting to be stored; beyond: 503
  std::uint32_t ref_lookup_attempts = 10;   // a status event's ref may still be being written
  std::uint32_t ref_lookup_interval_ms = 200;
  std::uint32_t storage_timeout_ms = 2000;  // wait for one storage answer
};

// The "<channel>-<provider id>" message id of an inbound message, within the id charset
// [A-Za-z0-9._-] and 64 characters: as is when it fits, otherwise a readable prefix and a hash
// of the whole (so that distinct platform ids never share one). Deterministic: a platform's
// retry of the same webhook maps to the same id.
std::string inbound_message_id(const std::string& channel, const std::string& provider_id);

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
  // Stops the HTTP server, the ZMQ thread, the workers (an in-flight send is waited for, up to
  // its transport timeout; its result is not sent) and the adapter threads (a long poll is
  // waited for, up to its timeout). Idempotent.
  void stop();

  std::size_t hosted_channels() const { return channels_.size(); }
  // The inbound server's port (0 without one), for tests.
  std::uint16_t http_port() const;

 private:
  struct Channel;
  struct Outgoing {
    std::size_t router = 0;
    std::string frame;
  };
  struct InboundBatch {
    Channel* channel = nullptr;
    std::vector<InboundEvent> events;
    WebhookResponse response;
    InboundHttpServer::Respond respond;
  };
  struct Accepted {
    std::string provider_message_id;
    bool delivered = false;
  };

  // ZMQ thread.
  void run_zmq();
  void on_job(std::size_t router, const wire::Header& header, wire::DeliveryJob job);
  std::string status_frame();

  // Any thread.
  void post_result(std::size_t router, const wire::Header& job_header, wire::DeliveryResult result);
  void wake();
  void status_changed();
  std::optional<Accepted> find_accepted(const std::string& delivery_id);
  void remember_accepted(const std::string& delivery_id, Accepted accepted);

  // Worker threads.
  void run_worker(Channel& channel);
  struct Work {
    std::size_t router = 0;
    wire::Header header;
    wire::DeliveryJob job;
  };
  void deliver(Channel& channel, Work work);
  void record_accepted(const Channel& channel, const wire::DeliveryJob& job,
                       const SendResult& sent);

  // Adapter threads.
  void run_adapter(Channel& channel);
  bool wait_for_stop(std::uint32_t ms);  // true: stopping

  // Inbound.
  void on_webhook(WebhookRequest request, InboundHttpServer::Respond respond);
  void run_inbound(std::size_t shard);
  // Stores every event; false if a storage step failed in a way worth the platform's retry.
  bool process_events(Channel& channel, const std::vector<InboundEvent>& events);
  bool process_status(Channel& channel, const InboundEvent& event);
  bool process_message(Channel& channel, const InboundEvent& event);

  template <typename Result, typename Body>
  StorageOutcome<Result> command(std::string key, wire::CommandKind kind, const Body& body);
  template <typename Result, typename Body>
  StorageOutcome<Result> query(std::string key, wire::QueryKind kind, const Body& body);
  wire::Status append(const wire::AppendRequest& request, std::string* detail);

  const Topology& topology_;
  const NodeSpec& self_;
  RouterClient& routers_;
  StorageClient storage_;
  const ChannelHostOptions options_;
  Log log_{"channel_host"};
  std::vector<std::string> router_addresses_;
  std::vector<std::unique_ptr<Channel>> channels_;
  std::unordered_map<std::string, Channel*> by_name_;

  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;

  int wake_fd_ = -1;
  std::mutex outbox_mutex_;
  std::deque<Outgoing> outbox_;  // guarded by outbox_mutex_
  bool status_dirty_ = false;    // guarded by outbox_mutex_

  std::mutex dedup_mutex_;
  std::list<std::string> dedup_order_;  // most recent first; guarded by dedup_mutex_
  std::unordered_map<std::string, std::pair<Accepted, std::list<std::string>::iterator>>
      dedup_;  // guarded by dedup_mutex_

  std::mutex inbound_mutex_;
  std::condition_variable inbound_cv_;
  std::vector<std::deque<InboundBatch>> inbound_;  // one per shard; guarded by inbound_mutex_
  std::size_t inbound_queued_ = 0;                 // in all shards; guarded by inbound_mutex_

  Counter& outbox_dropped_;
  Counter& frames_rejected_;

  std::unique_ptr<InboundHttpServer> http_;
  std::thread zmq_thread_;
  std::vector<std::thread> threads_;  // workers, adapter threads, inbound threads
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace chat4all::connector
