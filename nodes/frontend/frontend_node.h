// The frontend node: an asynchronous HTTP/1.1 server (Boost.Beast) carrying
// the public API (HttpApi) to outside clients, with keep-alive, a body size
// bound (413) and an idle timeout per connection.
//
// Threading: run() starts `limits.http_threads` event-loop threads plus the
// RouterClient and WorkerPool threads, and returns when `stop` becomes true.
#pragma once

#include <atomic>

#include "common/json_log.h"
#include "common/topology.h"

namespace chat4all::frontend {

class FrontendNode {
 public:
  FrontendNode(const Topology& topology, const NodeSpec& self);
  void run(const std::atomic<bool>& stop);

 private:
  const Topology& topology_;
  const NodeSpec& self_;
  Log log_{"frontend"};
};

}  // namespace chat4all::frontend
