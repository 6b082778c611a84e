// The frontend's link to the routers: one ZMQ DEALER connected to every
// router (ZeroMQ spreads requests across the connected ones), driven by its
// own thread so that the HTTP event loop never touches a socket or blocks.
//
// submit() may be called from any thread. The callback runs on the client's
// thread exactly once: with the reply frame, or with kTimeout after
// `request_timeout_ms`, or with kUnavailable when no router is connected or
// the pending limit is reached. Callbacks must be quick (post work elsewhere).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/codec.h"
#include "common/json_log.h"

namespace chat4all {

class RouterClient {
 public:
  // reply is set when status == kOk (the router or storage answered);
  // otherwise status says why there is no answer.
  using Callback = std::function<void(wire::Status status, std::optional<codec::Frame> reply)>;

  RouterClient(std::vector<std::string> router_addresses, std::uint32_t request_timeout_ms,
               std::uint32_t pending_requests_max);
  ~RouterClient();  // stops the thread; callbacks of requests still pending are not run
  RouterClient(const RouterClient&) = delete;
  RouterClient& operator=(const RouterClient&) = delete;

  void submit(std::uint64_t request_id, std::string frame, Callback callback);

  // From now on the client is connected to exactly `router_addresses` (a newer topology
  // version): new ones are connected, removed ones dropped, on the client's thread. Requests
  // already sent to a dropped router time out (kTimeout), like any unanswered request.
  void set_routers(std::vector<std::string> router_addresses);

 private:
  struct Submission {
    std::uint64_t request_id;
    std::string frame;
    Callback callback;
  };
  void run();

  std::vector<std::string> router_addresses_;
  std::chrono::milliseconds timeout_;
  std::uint32_t pending_max_;
  int wake_fd_ = -1;  // eventfd: submit() -> client thread
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;
  std::vector<Submission> inbox_;                           // guarded by mutex_
  std::optional<std::vector<std::string>> routers_wanted_;  // guarded by mutex_: set_routers()
  std::size_t in_flight_ = 0;                               // guarded by mutex_: inbox + pending

  Log log_{"router_client"};
  std::thread thread_;
};

}  // namespace chat4all
