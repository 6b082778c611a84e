// The frontend node: an asynchronous HTTP/1.1 server (Boost.Beast) carrying
// the public API (HttpApi) to outside clients, with keep-alive, a body size
// bound (413) and an idle timeout per connection.
//
// It listens on the node's "http" endpoint (plain HTTP and WebSocket) and on
// its "https" endpoint (the same over TLS 1.2+ with the topology's certificate);
// either may be left out of the topology, so plain HTTP can be off.
//
// Threading: run() starts `limits.http_threads` event-loop threads plus the
// RouterClient and WorkerPool threads, and returns when `stop` becomes true.
// When `reload` becomes true (SIGHUP) it is reset and the certificate and key
// are read again: new connections use them, open ones keep what they started
// with; files that cannot be used are logged and the old certificate stays.
#pragma once

#include <atomic>
#include <boost/asio/ssl/context.hpp>

#include "common/json_log.h"
#include "common/topology.h"

namespace chat4all::frontend {

class FrontendNode {
 public:
  FrontendNode(const Topology& topology, const NodeSpec& self);
  void run(const std::atomic<bool>& stop, std::atomic<bool>& reload);

 private:
  // Logs the certificate's expiry (a warning once it has passed).
  void report_certificate(boost::asio::ssl::context& context);

  const Topology& topology_;
  const NodeSpec& self_;
  Log log_{"frontend"};
};

}  // namespace chat4all::frontend
