#include "nodes/connector/inbound_http.h"

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

namespace chat4all::connector {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Milliseconds = std::chrono::milliseconds;

namespace {

// After an error answer the client may still be sending (the rest of a body over the limit):
// read and drop at most this much for at most this long, so that it reads the answer instead
// of a connection reset, then close.
constexpr std::size_t kLingerBytesMax = 8u << 20;
constexpr auto kLingerTimeoutMax = std::chrono::seconds(5);
// A failing accept (out of descriptors) is tried again after this pause instead of spinning.
constexpr auto kAcceptRetryDelay = Milliseconds(100);
// The first read of a request that starts on an idle kept-alive connection.
constexpr std::size_t kFirstReadBytes = 4096;

WebhookResponse error_response(int status, const char* code, const std::string& message) {
  return WebhookResponse{status, "application/json",
                         nlohmann::json{{"error", code}, {"message", message}}.dump()};
}

std::string lower_case(beast::string_view text) {
  std::string lowered(text.data(), text.size());
  for (char& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lowered;
}

bool is_parse_error(const beast::error_code& ec) {
  static const auto& http_category = http::make_error_code(http::error::bad_method).category();
  return ec.category() == http_category;
}

}  // namespace

// Lets a `respond` post to the io_context while the server runs, and makes it a no-op once
// stop() has begun (the io_context may be gone by the time a handler answers).
struct InboundHttpServer::Gate {
  std::mutex mutex;
  asio::io_context* io = nullptr;  // null once stopping
};

// One client connection, driven on the io thread: read a request, hand it to the handler, wait
// for its answer (or the answer timeout), write it, then wait for the next request.
class InboundHttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(InboundHttpServer& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)), answer_timer_(server.io_) {
    server_.sessions_.insert(this);
    server_.open_connections_.add(1);
  }
  ~Session() {
    server_.sessions_.erase(this);
    server_.open_connections_.add(-1);
  }

  void start() { read_request(); }

  // stop(): every pending operation ends with operation_aborted, and none starts again.
  void close() {
    answer_timer_.cancel();
    stream_.close();
  }

 private:
  const InboundHttpLimits& limits() const { return server_.limits_; }

  // On a kept-alive connection: wait (idle timeout) for the next request to start.
  void wait_for_request() {
    if (buffer_.size() > 0) return read_request();  // pipelined: it has started
    stream_.expires_after(Milliseconds(limits().idle_timeout_ms));
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes),
                            [self = shared_from_this()](beast::error_code ec, std::size_t bytes) {
                              // Idle timeout, the client closed, or stop(): the session ends.
                              if (ec || self->server_.stopping_) return;
                              self->buffer_.commit(bytes);
                              self->read_request();
                            });
  }

  void read_request() {
    parser_.emplace();
    parser_->body_limit(limits().body_bytes_max);
    parser_->header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(limits().header_bytes_max, UINT32_MAX)));
    stream_.expires_after(Milliseconds(limits().read_timeout_ms));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (server_.stopping_) return;
    if (ec == http::error::body_limit) {
      server_.bodies_too_large_.add();
      server_.log_.debug("body_too_large", {{"limit_bytes", limits().body_bytes_max}});
      return fail(error_response(
          413, "payload_too_large",
          "the request body exceeds " + std::to_string(limits().body_bytes_max) + " bytes"));
    }
    if (ec == http::error::header_limit) {
      server_.bad_requests_.add();
      return fail(error_response(
          431, "header_too_large",
          "the request head exceeds " + std::to_string(limits().header_bytes_max) + " bytes"));
    }
    if (ec == beast::error::timeout) {
      server_.read_timeouts_.add();
      server_.log_.debug("read_timeout");
      return;  // dropped: the socket closes
    }
    // The client closed (between requests or in the middle of one): nothing to answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) return;
    if (ec && is_parse_error(ec)) {
      server_.bad_requests_.add();
      server_.log_.debug("bad_request", {{"error", ec.message()}});
      return fail(error_response(400, "bad_request", "not a valid HTTP/1.1 request"));
    }
    if (ec) return;  // reset, or another transport error

    auto& message = parser_->get();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    WebhookRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
      auto [it, inserted] =
          request.headers.emplace(lower_case(field.name_string()), std::string(field.value()));
      // A repeated header is one list (RFC 9110, 5.3).
      if (!inserted) it->second.append(", ").append(field.value().data(), field.value().size());
    }
    request.body = std::move(message.body());
    server_.requests_.add();

    const std::uint64_t answer_id = ++answer_id_;
    awaiting_answer_ = true;
    stream_.expires_never();  // the answer timer bounds the wait
    answer_timer_.expires_after(Milliseconds(limits().answer_timeout_ms));
    answer_timer_.async_wait([self = shared_from_this(), answer_id](beast::error_code ec) {
      if (ec || !self->awaiting_answer_ || self->answer_id_ != answer_id) return;
      self->server_.answer_timeouts_.add();
      self->server_.log_.debug("answer_timeout",
                               {{"timeout_ms", self->limits().answer_timeout_ms}});
      self->answer(answer_id, error_response(503, "answer_timeout",
                                             "the webhook was not handled in time; send it again"));
    });

    Respond respond = [gate = server_.gate_, weak = weak_from_this(),
                       answer_id](WebhookResponse response) {
      std::lock_guard lock(gate->mutex);
      if (gate->io == nullptr) return;
      asio::post(*gate->io, [weak, answer_id, response = std::move(response)]() mutable {
        if (auto self = weak.lock()) self->answer(answer_id, std::move(response));
      });
    };
    try {
      server_.handler_(std::move(request), respond);
    } catch (const std::exception& error) {
      // A bug in handling one request must not take the node down. If the handler answered
      // before it threw, that answer stands and this one is dropped.
      server_.log_.error("handler_failed", {{"error", error.what()}});
      respond(error_response(500, "internal", "internal error"));
    }
  }

  // The first answer for request `answer_id` wins; any later one is dropped.
  void answer(std::uint64_t answer_id, WebhookResponse response) {
    if (server_.stopping_ || !awaiting_answer_ || answer_id != answer_id_) return;
    awaiting_answer_ = false;
    answer_timer_.cancel();
    write(std::move(response), /*linger_after=*/false);
  }

  // An answer to a request that could not be read whole: then close.
  void fail(WebhookResponse response) {
    keep_alive_ = false;
    write(std::move(response), /*linger_after=*/true);
  }

  void write(WebhookResponse answer, bool linger_after) {
    auto response = std::make_shared<http::response<http::string_body>>();
    response->version(version_ == 10 ? 10 : 11);
    const bool known_status = answer.status >= 100 && answer.status <= 999;
    response->result(static_cast<unsigned>(known_status ? answer.status : 500));
    response->set(http::field::server, "chat4all");
    if (!answer.content_type.empty()) response->set(http::field::content_type, answer.content_type);
    response->keep_alive(keep_alive_);
    response->body() = std::move(answer.body);
    response->prepare_payload();
    stream_.expires_after(Milliseconds(limits().read_timeout_ms));
    http::async_write(
        stream_, *response,
        [self = shared_from_this(), response, linger_after](beast::error_code ec, std::size_t) {
          if (ec || self->server_.stopping_) return;
          if (linger_after) return self->linger();
          if (!self->keep_alive_) return self->shutdown_send();
          self->wait_for_request();
        });
  }

  // The answer is complete; the socket closes when the session goes.
  void shutdown_send() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  void linger() {
    shutdown_send();
    buffer_.clear();
    stream_.expires_after(
        std::min<Milliseconds>(Milliseconds(limits().read_timeout_ms), kLingerTimeoutMax));
    linger_next();
  }

  void linger_next() {
    stream_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](
                                                        beast::error_code ec, std::size_t bytes) {
      self->lingered_bytes_ += bytes;
      if (ec || self->server_.stopping_ || self->lingered_bytes_ > kLingerBytesMax)
        return;  // dropped: the socket closes
      self->linger_next();
    });
  }

  InboundHttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  asio::steady_timer answer_timer_;
  std::uint64_t answer_id_ = 0;
  bool awaiting_answer_ = false;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  std::size_t lingered_bytes_ = 0;
  std::array<char, 16 * 1024> discard_{};
};

InboundHttpServer::InboundHttpServer(const std::string& host, std::uint16_t port, Handler handler,
                                     InboundHttpLimits limits)
    : limits_(limits), handler_(std::move(handler)), gate_(std::make_shared<Gate>()) {
  gate_->io = &io_;
  const tcp::endpoint endpoint(asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host),
                               port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  port_ = acceptor_.local_endpoint().port();
}

InboundHttpServer::~InboundHttpServer() {
  stop();
}

void InboundHttpServer::start() {
  if (thread_.joinable() || stopped_) return;
  asio::post(io_, [this] { accept(); });
  thread_ = std::thread([this] { run_io(); });
  log_.info("listening", {{"port", port_},
                          {"body_bytes_max", limits_.body_bytes_max},
                          {"connections_max", limits_.connections_max}});
}

void InboundHttpServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard lock(gate_->mutex);
    gate_->io = nullptr;
  }
  if (thread_.joinable()) {
    // Once everything is closed, every pending operation ends and run() returns.
    asio::post(io_, [this] { close_all(); });
    thread_.join();
    log_.info("stopped", {{"requests", requests()}});
  } else {
    close_all();  // never started: nothing runs on io_
  }
}

void InboundHttpServer::close_all() {
  stopping_ = true;
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  for (Session* session : sessions_) session->close();
}

void InboundHttpServer::run_io() {
  for (;;) {
    try {
      io_.run();
      return;
    } catch (const std::exception& error) {
      log_.error("io_failed", {{"error", error.what()}});
    }
  }
}

void InboundHttpServer::accept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (stopping_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      log_.warn("accept_failed", {{"error", ec.message()}});
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](beast::error_code ec) {
        if (!ec && !stopping_) accept();
      });
      return;
    }
    if (sessions_.size() >= limits_.connections_max) {
      rejected_connections_.add();
      log_.debug("connection_rejected", {{"connections_max", limits_.connections_max}});
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(*this, std::move(socket))->start();
    }
    accept();
  });
}

}  // namespace chat4all::connector
