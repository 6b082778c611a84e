// The router's channel routing shell around ChannelDispatcher
// (channel_dispatcher.h): it reads the channel outbox of the partitions this
// router owns, resolves each message into targets (the recipients' channel
// identities; what the delivery records say is done already), hands jobs to
// connectors on the "channels" endpoint (ZMQ ROUTER; connectors connect
// DEALERs named after themselves and report with ConnectorStatus), writes
// the delivery records and acknowledges the outbox.
//
// Partitions are split among routers by name order: router i of n owns the
// partitions p with p % n == i. A router that stops leaves its partitions'
// outboxes unacknowledged; it (or a restarted one) reads them again and skips
// what the records say has ended, so nothing is lost and at most the
// deliveries in flight at that moment are sent again.
//
// Threading: start() runs a thread of its own that owns the socket and the
// dispatcher; storage answers (RouterClient thread) are posted to it through
// a bounded inbox.
#pragma once

#include <atomic>
#include <memory>

#include "common/json_log.h"
#include "common/loop_thread.h"
#include "common/topology.h"

namespace chat4all::router {

class ChannelRouting {
 public:
  ChannelRouting(const Topology& topology, const NodeSpec& self);
  ~ChannelRouting();  // stops
  void start();
  void stop();

 private:
  class Loop;
  const Topology& topology_;
  const NodeSpec& self_;
  Log log_{"channel_routing"};
  LoopThread thread_;  // last: stopped before the members it uses go
};

}  // namespace chat4all::router
