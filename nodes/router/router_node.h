// The router: forwards each request from a frontend to the storage node that
// leads its conversation's partition, and the reply back.
//
// Wire: a ZMQ ROUTER bound on "rpc" faces the frontends (their DEALERs load-
// balance across routers); one DEALER per storage node carries
// [correlation token][frame] so replies are matched without decoding them.
//
// Leaders move (schema/README.md, "Leaders and how routers find them"), so
// the router keeps a partition -> (leader, epoch) cache (LeaderCache) and
// sends to the cached leader. A "not the leader, try X" answer of a current
// epoch corrects the cache and is followed at once; a node that is not
// connected, or that answers "unavailable", sends the request on to the next
// replica after a backoff. Every forwarded request waits in a bounded pending
// table with one deadline (limits.router_timeout_ms) that covers all its
// attempts: at the deadline the frontend gets kTimeout; when kAttemptsMax
// attempts failed first, it gets kUnavailable.
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

namespace chat4all::router {

// Sends of one request (the first and every retry, refused sends included)
// before the frontend is told the partition has no reachable leader. Eight
// lets a request try each of three replicas twice and still follow two leader
// hints during an election, while the backoffs in between (at most
// 20+40+80+160+200+200+200 = 900 ms) end well inside the default
// router_timeout_ms of 1500, so a partition without a leader gets a prompt
// 503 with Retry-After instead of a 504 whose outcome the client cannot know.
inline constexpr int kAttemptsMax = 8;

// Pause before a retry that no hint points at: long enough for an election
// to make progress, short next to the request deadline. Doubles per retry of
// the same request up to the maximum.
inline constexpr std::chrono::milliseconds kRetryBackoffFirst{20};
inline constexpr std::chrono::milliseconds kRetryBackoffMax{200};

// A node that holds an attempt this long without answering is treated as
// gone for that request (a paused or cut-off leader keeps its connection but
// never answers): the request moves to the next replica, and the node's hint
// is not followed back to it. A quarter of router_timeout_ms, at least this.
inline constexpr std::chrono::milliseconds kAttemptTimeoutMin{100};

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
