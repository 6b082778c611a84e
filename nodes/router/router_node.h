// The router: forwards each request from a frontend to the storage node that
// owns its conversation's partition, and the reply back.
//
// Wire: a ZMQ ROUTER bound on "rpc" faces the frontends (their DEALERs load-
// balance across routers); one DEALER per storage node carries
// [correlation token][frame] so replies are matched without decoding them.
// Every forwarded request waits in a bounded pending table with a deadline
// (limits.router_timeout_ms); at the deadline the frontend gets a kTimeout
// error, a storage node that cannot be reached gets kUnavailable at once, and
// a kNotOwner answer is retried once at the owner it names.
//
// Threading: run() owns every socket on the calling thread until `stop`.
#pragma once

#include <atomic>

#include "common/json_log.h"
#include "common/ring.h"
#include "common/topology.h"

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
