#include "nodes/frontend/frontend_node.h"

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <limits>
#include <memory>
#include <optional>
#include <thread>
#include <variant>

#include "common/ids.h"
#include "common/router_client.h"
#include "common/topology_change.h"
#include "common/topology_follower.h"
#include "nodes/frontend/edge_stream.h"
#include "nodes/frontend/edge_tls.h"
#include "nodes/frontend/file_api.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/stream_hub.h"
#include "nodes/frontend/stream_session.h"

namespace chat4all::frontend {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(60);
// A TLS client has this long to finish its handshake.
constexpr auto kTlsHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kStreamDrain = std::chrono::seconds(1);
// The request line and headers together (Beast's default); a longer head is answered 431.
constexpr std::uint32_t kHeaderBytesMax = 8 * 1024;

struct HttpMetrics {
  Counter& ok = metrics().counter("chat4all_http_responses_total", "HTTP responses by class",
                                  "class=\"2xx\"");
  Counter& client_error = metrics().counter("chat4all_http_responses_total",
                                            "HTTP responses by class", "class=\"4xx\"");
  Counter& server_error = metrics().counter("chat4all_http_responses_total",
                                            "HTTP responses by class", "class=\"5xx\"");
  Gauge& connections = metrics().gauge("chat4all_http_connections", "Open client connections");
  // Clients that did not complete a TLS handshake: plain HTTP on the https port, a client that
  // refuses the certificate or offers only old protocols, or one too slow.
  Counter& tls_handshake_failures =
      metrics().counter("chat4all_http_tls_handshake_failures_total",
                        "TLS handshakes on the https endpoint that failed or timed out");
};

// One client connection: read a request, answer it (possibly later, from
// another thread: the answer is posted back to this connection's strand),
// then read the next. Requests on one connection are answered in order. A
// WebSocket upgrade of GET /v1/stream hands the connection to a StreamSession.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(EdgeStream stream, HttpApi& api, FileApi& files, StreamHub& streams,
          RouterClient& routers, HttpMetrics& stats, std::uint32_t body_bytes_max)
      : stream_(std::move(stream)),
        api_(api),
        files_(files),
        streams_(streams),
        routers_(routers),
        stats_(stats),
        body_bytes_max_(body_bytes_max) {
    stats_.connections.add(1);
  }
  ~Session() { stats_.connections.add(-1); }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (!self->stream_.is_tls()) return self->read();
      self->tcp().expires_after(kTlsHandshakeTimeout);
      self->stream_.async_handshake([self](beast::error_code ec) {
        if (!ec) return self->read();
        self->stats_.tls_handshake_failures.add();
        self->log_.debug("tls_handshake_failed", {{"error", ec.message()}});
      });
    });
  }

 private:
  beast::tcp_stream& tcp() { return stream_.next_layer(); }

  // The head first: a file upload's body and a file's content stream (file_api.h); every other
  // body is read whole, within body_bytes_max.
  void read() {
    head_parser_.emplace();
    head_parser_->header_limit(kHeaderBytesMax);
    // Bodies are bounded by the parser that reads them (below, and file_api.h for uploads).
    // (Not boost::none: this Beast compares a declared length with it and refuses every body.)
    head_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    tcp().expires_after(kIdleTimeout);
    http::async_read_header(
        stream_, buffer_, *head_parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_head(ec); });
  }

  void on_head(beast::error_code ec) {
    if (ec) return on_read(ec);
    const auto& head = head_parser_->get();
    if (FileApi::handles({head.target().data(), head.target().size()})) {
      file_request_ = file_request(head);
      if (FileApi::streams_upload(*file_request_)) return begin_upload();
      if (FileApi::streams_download(*file_request_)) return begin_download();
    } else {
      file_request_.reset();
    }
    // A declared length is checked here: the parser checked it against the head parser's
    // limit (none) already. A chunked body is checked as it comes.
    if (const auto length = head_parser_->content_length(); length && *length > body_bytes_max_)
      return on_read(http::error::body_limit);
    parser_.emplace(std::move(*head_parser_));
    parser_->body_limit(body_bytes_max_);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  static FileRequest file_request(const http::request<http::empty_body>& head) {
    FileRequest request;
    request.method = std::string(head.method_string());
    request.target = std::string(head.target());
    for (const char* name :
         {"authorization", "content-type", "tus-resumable", "upload-length", "upload-metadata",
          "upload-offset", "upload-checksum", "range", "if-none-match", "expect"})
      if (auto value = head.find(name); value != head.end())
        request.headers[name] = std::string(value->value());
    request.chunked = head.chunked();
    if (auto length = head.find(http::field::content_length); length != head.end())
      request.content_length = tus::parse_count({length->value().data(), length->value().size()});
    return request;
  }

  // ---- uploads: one piece (at most a chunk) in memory; the next is read once it is stored.
  void begin_upload() {
    keep_alive_ = head_parser_->get().keep_alive();
    version_ = head_parser_->get().version();
    tcp().expires_never();  // the API answers within its own bound
    files_.begin_upload(
        *file_request_, [self = shared_from_this()](std::shared_ptr<FileApi::Upload> upload,
                                                    std::optional<ApiResponse> answer) {
          asio::post(self->stream_.get_executor(),
                     [self, upload, answer = std::move(answer)]() mutable {
                       if (answer) return self->refuse_body(std::move(*answer));
                       self->upload_ = std::move(upload);
                       self->body_parser_.emplace(std::move(*self->head_parser_));
                       // The upload's length bounds it (store_piece refuses bytes past it).
                       self->body_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
                       self->piece_.resize(wire::kChunkBytesMax);
                       self->piece_filled_ = 0;
                       if (self->file_request_->header("expect") == "100-continue")
                         return self->send_continue();
                       self->read_piece();
                     });
        });
  }

  // The body will not be read: answer, then close once the client has read it.
  void refuse_body(ApiResponse answer) {
    if (!file_request_->has_body()) return write(std::move(answer));
    keep_alive_ = false;
    linger_after_write_ = true;
    write(std::move(answer));
  }

  void send_continue() {
    auto interim =
        std::make_shared<http::response<http::empty_body>>(http::status::continue_, version_);
    http::async_write(stream_, *interim,
                      [self = shared_from_this(), interim](beast::error_code ec, std::size_t) {
                        if (ec) return self->close();
                        self->read_piece();
                      });
  }

  void read_piece() {
    auto& body = body_parser_->get().body();
    body.data = piece_.data() + piece_filled_;
    body.size = piece_.size() - piece_filled_;
    tcp().expires_after(kIdleTimeout);
    http::async_read(
        stream_, buffer_, *body_parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_piece(ec); });
  }

  void on_piece(beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    piece_filled_ = piece_.size() - body_parser_->get().body().size;
    const bool done = !ec && body_parser_->is_done();
    // A body cut short (the client went away or stalled) keeps what came, unless a checksum
    // must cover the whole of it; the client resumes from the offset HEAD gives.
    const bool broken = static_cast<bool>(ec);
    if (broken && !FileApi::keeps_partial(*upload_)) piece_filled_ = 0;
    // Past the declared length: store_piece refuses it, with the reason.
    if (piece_filled_ > FileApi::remaining(*upload_) || piece_filled_ == piece_.size() ||
        ((done || broken) && piece_filled_ > 0))
      return store_piece(done, broken);
    if (done) return finish_upload();
    if (broken) return end_upload();
    read_piece();
  }

  void store_piece(bool done, bool broken) {
    std::string piece = std::move(piece_);
    piece.resize(piece_filled_);
    piece_filled_ = 0;
    tcp().expires_never();
    files_.store_piece(
        upload_, std::move(piece),
        [self = shared_from_this(), done, broken](std::optional<ApiResponse> failed) {
          asio::post(self->stream_.get_executor(),
                     [self, done, broken, failed = std::move(failed)]() mutable {
                       if (failed) {
                         self->end_upload();
                         if (broken) return self->close();
                         return self->refuse_body(std::move(*failed));
                       }
                       if (broken) {
                         self->end_upload();
                         return self->close();
                       }
                       if (done) return self->finish_upload();
                       self->piece_.resize(wire::kChunkBytesMax);
                       self->read_piece();
                     });
        });
  }

  void finish_upload() {
    ApiResponse answer = files_.finish_upload(*upload_);
    end_upload();
    write(std::move(answer));
  }

  void end_upload() {
    upload_.reset();
    body_parser_.reset();
    piece_ = std::string();  // the chunk buffer goes with the transfer
  }

  // ---- downloads: the head, then each piece as a replica gives it.
  void begin_download() {
    keep_alive_ = head_parser_->get().keep_alive();
    version_ = head_parser_->get().version();
    tcp().expires_never();
    files_.begin_download(*file_request_,
                          [self = shared_from_this()](std::shared_ptr<FileApi::Download> download,
                                                      std::optional<ApiResponse> answer) {
                            asio::post(self->stream_.get_executor(),
                                       [self, download, answer = std::move(answer)]() mutable {
                                         if (answer) return self->write(std::move(*answer));
                                         self->send_download(std::move(download));
                                       });
                          });
  }

  void send_download(std::shared_ptr<FileApi::Download> download) {
    const ApiResponse& head = FileApi::head(*download);
    auto response = std::make_shared<http::response<http::empty_body>>(
        static_cast<http::status>(head.status), version_);
    response->set(http::field::server, "chat4all");
    response->set(http::field::content_type, head.content_type);
    for (const auto& [name, value] : head.headers) response->set(name, value);
    response->content_length(FileApi::content_length(*download));
    response->keep_alive(keep_alive_);
    stats_.ok.add();
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*response);
    tcp().expires_after(kIdleTimeout);
    http::async_write_header(stream_, *serializer,
                             [self = shared_from_this(), response, serializer, download](
                                 beast::error_code ec, std::size_t) {
                               if (ec) return self->close();
                               self->send_piece(download, 0);
                             });
  }

  void send_piece(std::shared_ptr<FileApi::Download> download, std::size_t index) {
    if (index == FileApi::pieces(*download)) {
      if (!keep_alive_) return close();
      return read();
    }
    tcp().expires_never();
    files_.fetch(download, index,
                 [self = shared_from_this(), download, index](std::optional<std::string> bytes) {
                   asio::post(self->stream_.get_executor(),
                              [self, download, index, bytes = std::move(bytes)]() mutable {
                                // No replica could give the piece: the answer is cut short and the
                                // connection closed, so the client sees fewer bytes than
                                // Content-Length and asks again.
                                if (!bytes) return self->close_now();
                                auto held = std::make_shared<std::string>(std::move(*bytes));
                                self->tcp().expires_after(kIdleTimeout);
                                asio::async_write(self->stream_, asio::buffer(*held),
                                                  [self, download, index, held](
                                                      beast::error_code ec, std::size_t) {
                                                    if (ec) return self->close_now();
                                                    self->send_piece(download, index + 1);
                                                  });
                              });
                 });
  }

  void close_now() {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  // The request could not be read whole: answer, then close once the client has read it.
  void refuse_unparsed(int status, const char* code, const std::string& message) {
    keep_alive_ = false;
    linger_after_write_ = true;
    write(
        ApiResponse{status, ApiError{status, code, message, ""}.to_json(), "application/json", {}});
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit)
      return refuse_unparsed(
          413, "payload_too_large",
          "the request body exceeds " + std::to_string(body_bytes_max_) + " bytes");
    if (ec == http::error::header_limit) {
      return refuse_unparsed(
          431, "request_header_too_large",
          "the request line and headers exceed " + std::to_string(kHeaderBytesMax) + " bytes");
    }
    // A request that breaks HTTP's grammar gets a JSON 400 too; a peer that went away mid-way
    // (end_of_stream, partial_message) or a socket error gets nothing, there is no one to tell.
    if (ec && ec.category() == make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return refuse_unparsed(400, "malformed_request", "the request is not valid HTTP/1.1");
    if (ec) return close();
    auto& request = parser_->get();
    keep_alive_ = request.keep_alive();
    version_ = request.version();
    if (file_request_) {
      file_request_->body = std::move(request.body());
      tcp().expires_never();
      return files_.handle(*file_request_, [self = shared_from_this()](ApiResponse response) {
        asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
          self->write(std::move(response));
        });
      });
    }
    if (is_stream_target({request.target().data(), request.target().size()})) return open_stream();
    ApiRequest api_request{std::string(request.method_string()),
                           std::string(request.target()),
                           std::string(request[http::field::authorization]),
                           std::string(request[http::field::content_type]),
                           std::move(request.body()),
                           std::string(request["Idempotency-Key"])};
    tcp().expires_never();  // the API answers within its own bound
    auto respond = [self = shared_from_this()](ApiResponse response) {
      asio::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response));
      });
    };
    try {
      api_.handle(api_request, respond);
    } catch (const std::exception& error) {
      // A bug in one request's handling must not take the node down with it.
      log_.error("handler_failed", {{"error", error.what()}});
      respond(ApiResponse{
          500, ApiError{500, "internal", "internal error", ""}.to_json(), "application/json", {}});
    }
  }

  // GET /v1/stream: authenticated and within the connection bound, the
  // connection becomes a stream session; otherwise a plain JSON error.
  void open_stream() {
    auto& request = parser_->get();
    auto refuse = [&](const StreamRefusal& refusal) {
      ApiResponse response{refusal.http_status, refusal.body(), "application/json", {}};
      if (refusal.http_status == 426) response.headers.emplace_back("Upgrade", "websocket");
      if (refusal.http_status == 401)
        response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
      if (refusal.http_status == 503 || refusal.http_status == 429)
        response.headers.emplace_back("Retry-After", "1");
      write(std::move(response));
    };
    if (!beast::websocket::is_upgrade(request))
      return refuse({426, "upgrade_required", "GET /v1/stream is a WebSocket: send an upgrade"});
    const auto authorization = request[http::field::authorization];
    const auto target = request.target();
    auto admitted = streams_.admit({authorization.data(), authorization.size()},
                                   {target.data(), target.size()}, ids::now_ms() / 1000);
    if (auto* refusal = std::get_if<StreamRefusal>(&admitted)) return refuse(*refusal);
    // The session takes the connection, TLS state and all; this one ends here.
    std::make_shared<StreamSession>(
        std::move(stream_), std::move(std::get<StreamAdmission>(admitted)), streams_, routers_)
        ->start(parser_->release());
  }

  void write(ApiResponse api_response) {
    auto response = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(api_response.status), version_);
    response->set(http::field::server, "chat4all");
    response->set(http::field::content_type, api_response.content_type);
    for (auto& [name, value] : api_response.headers) response->set(name, value);
    response->keep_alive(keep_alive_);
    response->body() = std::move(api_response.body);
    response->prepare_payload();
    (api_response.status >= 500   ? stats_.server_error
     : api_response.status >= 400 ? stats_.client_error
                                  : stats_.ok)
        .add();
    tcp().expires_after(kIdleTimeout);
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, std::size_t) {
                        if (!ec && self->linger_after_write_) return self->linger();
                        if (ec || !self->keep_alive_) return self->close();
                        self->read();
                      });
  }

  // The answer is complete: TLS says so with close_notify (bounded by the idle timeout) and TCP
  // with a FIN; the socket closes when the session goes.
  void close() {
    if (!stream_.is_tls()) return shutdown_send();
    tcp().expires_after(kLingerTimeout);
    stream_.async_shutdown(
        [self = shared_from_this()](beast::error_code) { self->shutdown_send(); });
  }
  void shutdown_send() {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // After answering 413 mid-body: the client is still sending. Closing at once
  // would reset the connection and it would see a broken pipe instead of the
  // answer, so read and discard what it still sends, up to a bound in bytes
  // and time, and close when it finishes.
  // Over TLS the rest is read through the TLS layer (close_notify would end reading it).
  void linger() {
    if (!stream_.is_tls()) shutdown_send();
    tcp().expires_after(kLingerTimeout);
    linger_next();
  }
  void linger_next() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                              self->lingered_bytes_ += bytes;
                              if (ec || self->lingered_bytes_ > kLingerBytesMax)
                                return;  // dropped: socket closes
                              self->linger_next();
                            });
  }

  static constexpr auto kLingerTimeout = std::chrono::seconds(5);
  static constexpr std::size_t kLingerBytesMax = 64u << 20;

  EdgeStream stream_;
  beast::flat_buffer buffer_{16 * 1024};
  bool linger_after_write_ = false;
  std::size_t lingered_bytes_ = 0;
  std::array<char, 16 * 1024> discard_{};
  std::optional<http::request_parser<http::empty_body>> head_parser_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::request_parser<http::buffer_body>> body_parser_;
  std::optional<FileRequest> file_request_;
  std::shared_ptr<FileApi::Upload> upload_;
  std::string piece_;  // an upload's next chunk, at most wire::kChunkBytesMax bytes
  std::size_t piece_filled_ = 0;
  HttpApi& api_;
  FileApi& files_;
  StreamHub& streams_;
  RouterClient& routers_;
  HttpMetrics& stats_;
  std::uint32_t body_bytes_max_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  Log log_{"http"};
};

}  // namespace

FrontendNode::FrontendNode(const Topology& topology, const NodeSpec& self)
    : topology_(topology), self_(self) {}

void FrontendNode::report_certificate(boost::asio::ssl::context& context) {
  const CertificateValidity validity = certificate_validity(context);
  const nlohmann::json fields = {{"certificate_file", topology_.tls.certificate_file.string()},
                                 {"not_after", validity.not_after}};
  if (validity.expired)
    log_.warn("tls_certificate_expired", fields);
  else
    log_.info("tls_certificate", fields);
}

void FrontendNode::run(const std::atomic<bool>& stop, std::atomic<bool>& reload) {
  // Throws when the certificate or key cannot be used: a frontend that cannot serve its
  // certificate does not start, before it starts anything else.
  std::optional<TlsContextSource> tls;
  if (self_.port("https")) {
    tls.emplace(topology_.tls);
    report_certificate(*tls->current());
  }
  std::vector<std::string> router_addresses;
  for (const NodeSpec* router : topology_.with_role(NodeRole::kRouter))
    router_addresses.push_back(router->zmq_address("rpc"));
  // Destruction runs bottom-up: the router client's thread (whose callbacks
  // post to `io` and own sessions) stops before `io` goes, and `stats` and
  // `streams`, which session destructors touch, outlive both. The event
  // subscriber's thread, which posts to stream sessions, is stopped below
  // before `io` goes.
  HttpMetrics stats;
  StreamHub streams(topology_, self_.name);
  const std::uint32_t threads = topology_.limits.http_threads;
  asio::io_context io(static_cast<int>(threads));
  RouterClient routers(router_addresses, topology_.limits.request_timeout_ms,
                       topology_.limits.pending_requests_max);
  HttpApi api(topology_, self_, routers);
  FileApi files(topology_, api, routers);
  streams.presence().start(routers);
  // A newer topology version: connect to the routers it adds, drop those it removes.
  TopologyFollower follower(topology_, self_.name, routers,
                            [&routers](std::shared_ptr<const Topology> next, std::uint64_t) {
                              routers.set_routers(router_rpc_addresses(*next));
                            });
  const std::string host = self_.host == "localhost" ? "127.0.0.1" : self_.host;

  // One acceptor per endpoint: "http" hands out plain streams, "https" TLS ones.
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::function<void(tcp::acceptor&, bool)> accept = [&](tcp::acceptor& acceptor, bool with_tls) {
    acceptor.async_accept(
        asio::make_strand(io), [&, with_tls](beast::error_code ec, tcp::socket socket) {
          if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);
            beast::tcp_stream connection(std::move(socket));
            EdgeStream stream = with_tls ? EdgeStream(std::move(connection), tls->current())
                                         : EdgeStream(std::move(connection));
            std::make_shared<Session>(std::move(stream), api, files, streams, routers, stats,
                                      topology_.limits.body_bytes_max)
                ->start();
          } else if (ec == asio::error::operation_aborted) {
            return;
          } else {
            log_.warn("accept_failed", {{"error", ec.message()}});
          }
          accept(acceptor, with_tls);
        });
  };
  nlohmann::json listening = nlohmann::json::object();
  for (const char* scheme : {"http", "https"}) {
    const auto port = self_.port(scheme);
    if (!port) continue;
    const tcp::endpoint endpoint(asio::ip::make_address(host), *port);
    auto& acceptor =
        *acceptors.emplace_back(std::make_unique<tcp::acceptor>(asio::make_strand(io)));
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
    accept(acceptor, std::string_view(scheme) == "https");
    listening[scheme] = std::string(scheme) + "://" + host + ":" + std::to_string(*port);
  }
  if (!self_.port("http")) listening["http"] = "off";

  // On stop, stream sessions are closed with 1001 and get kStreamDrain to
  // finish the close handshake before the event loop stops.
  asio::steady_timer stop_watch(io);
  std::optional<std::chrono::steady_clock::time_point> drain_deadline;
  std::function<void()> watch = [&] {
    stop_watch.expires_after(std::chrono::milliseconds(100));
    stop_watch.async_wait([&](beast::error_code) {
      // SIGHUP: new connections get the files' certificate; open ones keep theirs.
      if (reload.exchange(false) && tls) {
        if (const std::string error = tls->reload(); error.empty()) {
          log_.info("tls_reloaded",
                    {{"certificate_file", topology_.tls.certificate_file.string()}});
          report_certificate(*tls->current());
        } else {
          log_.error("tls_reload_failed", {{"error", error}, {"kept", "the previous certificate"}});
        }
      }
      if (stop.load() && !drain_deadline) {
        drain_deadline = std::chrono::steady_clock::now() + kStreamDrain;
        streams.close_all();
      }
      if (drain_deadline &&
          (streams.open_sessions() == 0 || std::chrono::steady_clock::now() >= *drain_deadline))
        return io.stop();
      watch();
    });
  };
  watch();

  log_.info("listening", {{"endpoints", listening}, {"routers", router_addresses.size()}});
  std::vector<std::thread> workers;
  for (std::uint32_t i = 1; i < threads; ++i) workers.emplace_back([&] { io.run(); });
  io.run();
  for (auto& worker : workers) worker.join();
  streams.presence().stop();  // its users offline at once, while the routers still answer
  streams.stop_events();
  log_.info("stopped");
}

}  // namespace chat4all::frontend
