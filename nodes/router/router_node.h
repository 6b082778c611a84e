// The router: forwards each request from a frontend to the storage node that
// leads its conversation's partition, and the reply back.
//
// Wire: a ZMQ ROUTER bound on "rpc" faces the frontends (their DEALERs load-
// balance across routers); one DEALER per storage node carries
// [correlation token][frame] so replies are matched without decoding them.
//
// Leaders move (schema/README.md, "Leaders and how routers find them"): where
// each attempt goes, when a failed one is tried again and when the frontend
// is told kTimeout or kUnavailable is decided by RequestFailover
// (request_failover.h), a pure core this node feeds with replies, send
// outcomes and the time. Every forwarded request waits in a bounded pending
// table with one deadline (limits.router_timeout_ms) that covers all its
// attempts.
//
// Beside forwarding, every router writes the message locator of its share of
// the partitions behind the committed log (LocatorIndexing), and, when the
// topology declares channels and the router a "channels" endpoint, routes
// messages to outside channels (ChannelRouting); each on a thread of its own.
//
// Threading: run() owns every socket on the calling thread until `stop`.
#pragma once

#include <atomic>
#include <chrono>

#include "common/json_log.h"
#include "common/ring.h"
#include "common/topology.h"
#include "nodes/router/request_failover.h"

namespace chat4all::router {

class RouterNode {
 public:
  RouterNode(const Topology& topology, const NodeSpec& self);
  void run(const std::atomic<bool>& stop);

 private:
  const Topology& topology_;
  const NodeSpec& self_;
  Ring ring_;
  Log log_{"router"};
};

}  // namespace chat4all::router
