// The byte stream of one client connection at the edge: plain TCP (the "http" endpoint) or TLS
// over TCP (the "https" endpoint). The HTTP session and the WebSocket stream session are written
// once against this type, whichever listener accepted the connection.
//
// It meets Beast's AsyncStream requirements, so http::async_read/async_write and
// websocket::stream<EdgeStream> work on it; next_layer() is the TCP stream in both cases, so
// beast::get_lowest_layer() reaches the timeouts and the socket; teardown()/async_teardown() let
// a WebSocket close end the TLS session properly (close_notify) before the TCP one.
//
// A TLS stream keeps the SSL context it was made with alive (a reload on SIGHUP swaps the
// context for new connections only; see TlsContextSource).
//
// Thread-safety: as for the streams it wraps: one operation of each kind at a time, on the
// connection's strand.
#pragma once

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/teardown.hpp>
#include <memory>
#include <utility>
#include <variant>

namespace chat4all::frontend {

class EdgeStream {
 public:
  using TcpStream = boost::beast::tcp_stream;
  using TlsStream = boost::beast::ssl_stream<TcpStream>;
  using executor_type = TcpStream::executor_type;

  // Plain TCP.
  explicit EdgeStream(TcpStream tcp) : stream_(std::move(tcp)) {}
  // TLS over `tcp` with `context`; the server handshake is still to be done (handshake()).
  EdgeStream(TcpStream tcp, std::shared_ptr<boost::asio::ssl::context> context)
      : context_(std::move(context)),
        stream_(std::in_place_type<TlsStream>, std::move(tcp), *context_) {}
  // A moved-from stream is closed (Beast's guarantee for its TCP stream) and must not be used.
  EdgeStream(EdgeStream&&) = default;

  bool is_tls() const { return std::holds_alternative<TlsStream>(stream_); }

  executor_type get_executor() noexcept { return next_layer().get_executor(); }

  TcpStream& next_layer() noexcept {
    if (auto* tls = std::get_if<TlsStream>(&stream_)) return tls->next_layer();
    return std::get<TcpStream>(stream_);
  }

  // The TLS server handshake (completes at once with no error on a plain stream).
  template <class Handler>
  void async_handshake(Handler&& handler) {
    if (auto* tls = std::get_if<TlsStream>(&stream_))
      return tls->async_handshake(boost::asio::ssl::stream_base::server,
                                  std::forward<Handler>(handler));
    boost::asio::post(get_executor(), [handler = std::forward<Handler>(handler)]() mutable {
      handler(boost::beast::error_code{});
    });
  }

  // Ends the TLS session (close_notify) when there is one; then, or at once, `handler`.
  template <class Handler>
  void async_shutdown(Handler&& handler) {
    if (auto* tls = std::get_if<TlsStream>(&stream_))
      return tls->async_shutdown(std::forward<Handler>(handler));
    boost::asio::post(get_executor(), [handler = std::forward<Handler>(handler)]() mutable {
      handler(boost::beast::error_code{});
    });
  }

  template <class MutableBuffers, class ReadHandler>
  auto async_read_some(const MutableBuffers& buffers, ReadHandler&& handler) {
    return boost::asio::async_initiate<ReadHandler, void(boost::beast::error_code, std::size_t)>(
        [this](auto&& initiated, const MutableBuffers& to) {
          std::visit([&](auto& stream) { stream.async_read_some(to, std::move(initiated)); },
                     stream_);
        },
        handler, buffers);
  }

  template <class ConstBuffers, class WriteHandler>
  auto async_write_some(const ConstBuffers& buffers, WriteHandler&& handler) {
    return boost::asio::async_initiate<WriteHandler, void(boost::beast::error_code, std::size_t)>(
        [this](auto&& initiated, const ConstBuffers& from) {
          std::visit([&](auto& stream) { stream.async_write_some(from, std::move(initiated)); },
                     stream_);
        },
        handler, buffers);
  }

  // The WebSocket closing handshake's last step (found by argument-dependent lookup).
  friend void teardown(boost::beast::role_type role, EdgeStream& stream,
                       boost::beast::error_code& ec) {
    using boost::beast::websocket::teardown;
    std::visit([&](auto& inner) { teardown(role, inner, ec); }, stream.stream_);
  }
  template <class TeardownHandler>
  friend void async_teardown(boost::beast::role_type role, EdgeStream& stream,
                             TeardownHandler&& handler) {
    using boost::beast::websocket::async_teardown;
    std::visit(
        [&](auto& inner) { async_teardown(role, inner, std::forward<TeardownHandler>(handler)); },
        stream.stream_);
  }

 private:
  std::shared_ptr<boost::asio::ssl::context> context_;  // outlives stream_ (declared first)
  std::variant<TcpStream, TlsStream> stream_;
};

}  // namespace chat4all::frontend
