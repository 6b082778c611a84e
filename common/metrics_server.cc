#include "common/metrics_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace chat4all {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct MetricsServer::Impl {
  MetricsRegistry& registry;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;

  explicit Impl(MetricsRegistry& r) : registry(r) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;
      serve(std::make_shared<tcp::socket>(std::move(socket)));
      accept();
    });
  }

  void serve(std::shared_ptr<tcp::socket> socket) {
    auto buffer = std::make_shared<beast::flat_buffer>(8192);
    auto request = std::make_shared<http::request<http::string_body>>();
    http::async_read(
        *socket, *buffer, *request,
        [this, socket, buffer, request](beast::error_code ec, std::size_t) {
          if (ec) return;
          auto response = std::make_shared<http::response<http::string_body>>();
          response->version(request->version());
          response->keep_alive(false);
          if (request->method() == http::verb::get && request->target() == "/metrics") {
            response->result(http::status::ok);
            response->set(http::field::content_type, "text/plain; version=0.0.4");
            response->body() = registry.render();
          } else {
            response->result(http::status::not_found);
            response->set(http::field::content_type, "application/json");
            response->body() =
                R"({"error":{"code":"not_found","message":"only GET /metrics is served here"}})";
          }
          response->prepare_payload();
          http::async_write(*socket, *response, [socket, response](beast::error_code, std::size_t) {
            beast::error_code ignored;
            socket->shutdown(tcp::socket::shutdown_send, ignored);
          });
        });
  }
};

MetricsServer::MetricsServer(MetricsRegistry& registry, const std::string& host, std::uint16_t port)
    : impl_(std::make_unique<Impl>(registry)) {
  const tcp::endpoint endpoint(asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host),
                               port);
  impl_->acceptor.open(endpoint.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(endpoint);
  impl_->acceptor.listen();
  impl_->accept();
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

MetricsServer::~MetricsServer() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace chat4all
