// The router's failover decisions for forwarded requests, as a pure core: where each attempt
// goes, when a failed one is tried again and where, when a silent node is given up for a request,
// and when the frontend is told "timeout" or "unavailable". No sockets, no clock, no threads: the
// time is an argument of every call and the randomness (the backoff's jitter) comes from a seed,
// so a test can script a whole failover (router_node.h has the shell that does the I/O).
//
// The rules (schema/README.md, "Leaders and how routers find them"):
// - the first attempt goes to the partition's cached leader (LeaderCache);
// - a send the socket refuses (node not connected) marks the node avoided in the cache and
//   retries at the next replica after a backoff;
// - "unavailable" retries at the next replica after a backoff; "not the leader, try X" of a
//   current epoch corrects the cache and is followed at once; a hint of an older epoch than the
//   cache's, or one naming the sender, a silent node or a node outside the topology, is no hint;
// - a node that holds an attempt for attempt_timeout without answering is avoided for the
//   request (its hint is not followed back to it) and the request moves on;
// - backoffs start at kRetryBackoffFirst, double per retry up to kRetryBackoffMax, and are
//   jittered over their upper half;
// - after kAttemptsMax sends (refused ones included) the request is given up (kUnavailable);
//   at its deadline (timeout after it came) it is answered kTimeout, whatever else is due then.
//
// Only the node holding a request's current attempt may end it (awaits()): any other reply
// answers an attempt already given up, and passing it on could answer the frontend twice.
#pragma once

#include <chrono>
#include <cstdint>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/deadline_queue.h"
#include "common/ring.h"
#include "nodes/router/leader_cache.h"
#include "schema/wire.h"

namespace chat4all::router {

// Sends of one request (the first and every retry, refused sends included) before the frontend
// is told the partition has no reachable leader. Eight lets a request try each of three replicas
// twice and still follow two leader hints during an election, while the backoffs in between (at
// most 20+40+80+160+200+200+200 = 900 ms) end well inside the default router_timeout_ms of 1500,
// so a partition without a leader gets a prompt 503 with Retry-After instead of a 504 whose
// outcome the client cannot know.
inline constexpr int kAttemptsMax = 8;

// Pause before a retry that no hint points at: long enough for an election to make progress,
// short next to the request deadline. Doubles per retry of the same request up to the maximum.
inline constexpr std::chrono::milliseconds kRetryBackoffFirst{20};
inline constexpr std::chrono::milliseconds kRetryBackoffMax{200};

// A node that holds an attempt this long without answering is treated as gone for that request
// (a paused or cut-off leader keeps its connection but never answers): the request moves to the
// next replica, and the node's hint is not followed back to it. A quarter of router_timeout_ms,
// at least this.
inline constexpr std::chrono::milliseconds kAttemptTimeoutMin{100};

// What the shell must do (in order) after a call.
struct FailoverAction {
  enum class Kind {
    kSend,           // send request `token` to `node` now, then report sent()
    kForwarded,      // the request left this router for the first time (a metric)
    kGiveUp,         // answer kUnavailable with `detail` (partition set); the request is over
    kTimeout,        // answer kTimeout; the request is over
    kLeaderChanged,  // the cache of `partition` moved to `node` at `epoch` (log, metric)
  };
  Kind kind = Kind::kSend;
  std::uint64_t token = 0;
  std::string node;
  bool retry = false;  // kSend: not the request's first attempt
  std::string detail;
  PartitionId partition = 0;
  std::uint64_t epoch = 0;
  std::uint64_t previous_epoch = 0;  // kLeaderChanged: differs from epoch after an election
  const char* reason = "";           // kLeaderChanged: "hint", "unreachable", "silent"
};

class RequestFailover {
 public:
  using Time = std::chrono::steady_clock::time_point;
  using Actions = std::vector<FailoverAction>;

  // `storage_nodes`: the nodes a hint may name. `timeout`: a request's deadline after it came.
  RequestFailover(const Ring& ring, std::vector<std::string> storage_nodes,
                  std::chrono::milliseconds timeout, std::uint32_t jitter_seed);

  std::chrono::milliseconds attempt_timeout() const { return attempt_timeout_; }
  std::size_t size() const { return requests_.size(); }
  bool contains(std::uint64_t token) const { return requests_.count(token) > 0; }

  // A new request for `partition`: its first attempt.
  void start(std::uint64_t token, PartitionId partition, Time now, Actions& out);
  // Whether the socket took the kSend of `token` to `node`.
  void sent(std::uint64_t token, const std::string& node, bool taken, Time now, Actions& out);
  // Whether a reply of `from` for `token` answers the request's current attempt.
  bool awaits(std::uint64_t token, const std::string& from) const;
  // An awaited reply, with its ErrorReply if it is one: true when it is the answer to pass on
  // (the request is over), false when the request goes on (actions in `out`).
  bool on_reply(std::uint64_t token, const std::string& from, const wire::ErrorReply* error,
                Time now, Actions& out);
  // Deadlines, silent attempts and retries due at `now`, in that order.
  void expire(Time now, Actions& out);
  // How long the shell may wait for input before calling expire(): at most `cap`.
  std::chrono::milliseconds wait_time(Time now, std::chrono::milliseconds cap) const;

 private:
  struct Request {
    PartitionId partition = 0;
    int attempts = 0;        // sends tried, refused ones included
    bool forwarded = false;  // some attempt left this router
    // The node holding the current attempt; only its answer counts. Empty while the request
    // waits out a backoff or its send is being made.
    std::string awaiting;
    std::string retry_node;  // where the attempt after the backoff goes
    std::chrono::milliseconds backoff = kRetryBackoffFirst;
    std::string last_failure;  // why the latest attempt failed, for the final answer
    Time attempt_started;
    std::string silent_node;  // held an attempt of this request without answering
  };
  using Requests = std::unordered_map<std::uint64_t, Request>;
  // Requests waiting out a backoff, earliest first. Their delays differ (unlike the deadlines),
  // so a heap rather than a DeadlineQueue; an entry whose request has ended meanwhile is skipped
  // when it comes due.
  using RetryQueue =
      std::priority_queue<std::pair<Time, std::uint64_t>,
                          std::vector<std::pair<Time, std::uint64_t>>, std::greater<>>;

  void attempt(Requests::iterator it, std::string node, Actions& out);
  void retry_later(Requests::iterator it, std::string node, std::string why, Time now,
                   Actions& out);
  void give_up(Requests::iterator it, Actions& out);
  void avoid(PartitionId partition, const std::string& node, const char* reason, Actions& out);
  void leader_changed(PartitionId partition, std::uint64_t previous_epoch, const char* reason,
                      Actions& out);

  LeaderCache leaders_;
  const std::set<std::string> storage_nodes_;
  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds attempt_timeout_;
  std::minstd_rand jitter_;
  Requests requests_;
  DeadlineQueue deadlines_;
  DeadlineQueue attempt_deadlines_;
  RetryQueue retries_;
};

}  // namespace chat4all::router
