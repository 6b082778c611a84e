// `chat4all up`: starts every node a topology declares for this host as its
// own process and keeps them running.
//
// A node that exits while the supervisor is not stopping is restarted after
// a backoff (RestartBackoff) and the exit and restart are logged. SIGINT or
// SIGTERM stops every node with SIGTERM, waits up to `stop_grace`, then
// SIGKILLs what is left. Children get PR_SET_PDEATHSIG, so a supervisor that
// is itself killed does not leave nodes behind.
//
// Single-threaded; run() blocks until the topology is stopped.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/json_log.h"
#include "common/topology.h"

namespace chat4all::runner {

// Restart delays: 250 ms doubling to 10 s for a node that keeps crashing; a
// node that stayed up for `stable_after` starts again from 250 ms. Pure.
class RestartBackoff {
 public:
  static constexpr auto kInitial = std::chrono::milliseconds(250);
  static constexpr auto kMax = std::chrono::milliseconds(10000);
  static constexpr auto kStableAfter = std::chrono::milliseconds(30000);

  // Delay before the next start, given how long the last run lasted.
  std::chrono::milliseconds next(std::chrono::milliseconds last_uptime);

 private:
  std::chrono::milliseconds current_{0};
};

class Supervisor {
 public:
  Supervisor(const Topology& topology, std::string executable, std::string host_override);
  int run();  // exit code for the process

 private:
  const Topology& topology_;
  std::string executable_;
  std::string host_override_;
  Log log_{"runner"};
};

}  // namespace chat4all::runner
