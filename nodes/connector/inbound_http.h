// The HTTP/1.1 server on a connector's "http" endpoint, where the platforms (WhatsApp,
// Instagram, Telegram) deliver their webhooks: POST|GET /channels/<channel>/webhook.
//
// It knows nothing about channels: it parses requests into WebhookRequest, hands each to the
// handler with a `respond` callback, and writes what that callback is given. Routing, signature
// checks and storing the events are the connector host's.
//
// Threading: one io thread of the server's own (start() .. stop()) does all the I/O and calls
// the handler, so the handler must be quick and must not block (the adapters' on_webhook only
// parses). `respond` may be called from any thread, later; it takes effect once: a second call,
// a call after the answer timeout, after the connection closed, after stop() or after the
// server is gone is ignored. Requests on one connection are answered in order: the next one is
// read only once the current one is answered. start() and stop() are called by the owner, not
// concurrently with each other; the counters may be read from any thread.
//
// Limits, and what happens at each:
// - body_bytes_max: a larger body (by Content-Length, or as a chunked body grows) gets 413 and
//   the connection is closed after the answer. The rest of what the client is still sending is
//   read and dropped (up to a bound in bytes and time), so that it sees the 413, not a reset.
// - header_bytes_max: a larger request head gets 431 and the connection is closed likewise.
// - connections_max: a connection accepted beyond it is closed at once, without an answer.
// - read_timeout_ms: a request must arrive whole (head and body) within it once it has started
//   (for a new connection: once connected); otherwise the connection is closed. It also bounds
//   writing an answer.
// - idle_timeout_ms: how long a kept-alive connection waits for the next request to start.
// - answer_timeout_ms: the handler's answer must come within it, else the client gets 503 (a
//   platform then sends the webhook again) and the late answer is dropped.
// A request that is not valid HTTP/1.x gets 400 and the connection is closed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>

#include "common/json_log.h"
#include "common/metrics.h"
#include "nodes/connector/channel_adapter.h"

namespace chat4all::connector {

struct InboundHttpLimits {
  std::size_t body_bytes_max = 1u << 20;
  std::size_t header_bytes_max = 16u << 10;
  std::size_t connections_max = 256;
  std::uint32_t read_timeout_ms = 10'000;
  std::uint32_t idle_timeout_ms = 30'000;
  std::uint32_t answer_timeout_ms = 15'000;
};

class InboundHttpServer {
 public:
  using Respond = std::function<void(WebhookResponse)>;
  using Handler = std::function<void(WebhookRequest, Respond respond)>;

  // Binds and listens on host:port at once ("localhost" means 127.0.0.1; port 0 picks a free
  // port, see port()), so that a port in use fails here, before start(). Throws
  // boost::system::system_error when it cannot bind.
  InboundHttpServer(const std::string& host, std::uint16_t port, Handler handler,
                    InboundHttpLimits limits = {});
  // Stops (see stop()).
  ~InboundHttpServer();
  InboundHttpServer(const InboundHttpServer&) = delete;
  InboundHttpServer& operator=(const InboundHttpServer&) = delete;

  // Starts accepting on the server's io thread. Once.
  void start();
  // Closes the listener and every connection (requests waiting for an answer get none) and
  // joins the io thread. Idempotent; returns promptly whatever the handlers are doing. Not from
  // the handler (it runs on the thread stop() joins).
  void stop();

  std::uint16_t port() const { return port_; }
  const InboundHttpLimits& limits() const { return limits_; }

  // For the node to export; readable from any thread. All but open_connections only grow.
  std::uint64_t requests() const { return requests_.value(); }  // parsed whole, handed over
  std::uint64_t rejected_connections() const { return rejected_connections_.value(); }
  std::uint64_t bodies_too_large() const { return bodies_too_large_.value(); }
  std::uint64_t bad_requests() const { return bad_requests_.value(); }        // 400 and 431
  std::uint64_t answer_timeouts() const { return answer_timeouts_.value(); }  // 503 sent
  std::uint64_t read_timeouts() const { return read_timeouts_.value(); }      // request too slow
  std::int64_t open_connections() const { return open_connections_.value(); }

 private:
  class Session;
  struct Gate;

  void accept();
  void close_all();  // on the io thread
  void run_io();

  const InboundHttpLimits limits_;
  const Handler handler_;
  Counter requests_, rejected_connections_, bodies_too_large_, bad_requests_, answer_timeouts_,
      read_timeouts_;
  Gauge open_connections_;
  Log log_{"inbound_http"};
  // Sessions register here on the io thread (or, once it is joined, while io_ is destroyed).
  std::unordered_set<Session*> sessions_;
  bool stopping_ = false;  // io thread
  // Shared with every `respond`: lets it post to io_ while the server runs and makes it a no-op
  // afterwards, however long the handler keeps it.
  std::shared_ptr<Gate> gate_;
  // Destroyed before the members above (reverse order): the io_context destroys sessions still
  // queued in it, and their destructors touch sessions_ and open_connections_.
  boost::asio::io_context io_{1};
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  boost::asio::steady_timer accept_retry_timer_{io_};
  std::uint16_t port_ = 0;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace chat4all::connector
