#include "bench/http_client.h"

#include <boost/beast/core.hpp>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

namespace chat4all::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

namespace {

constexpr auto kLoginTimeout = std::chrono::seconds(30);
constexpr int kLoginAttempts = 5;
constexpr std::size_t kBodyLimit = 64 << 20;

}  // namespace

std::optional<Target> parse_url(std::string_view url, std::string& error) {
  if (url.substr(0, 8) == "https://") {
    error = "https is not supported; the frontend speaks plain HTTP";
    return std::nullopt;
  }
  if (url.substr(0, 7) == "http://") url.remove_prefix(7);
  const std::string_view authority = url.substr(0, url.find('/'));
  Target target;
  target.host_header = authority;
  std::string_view port = "80";
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "bad IPv6 address in --url";
      return std::nullopt;
    }
    target.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') {
        error = "bad --url";
        return std::nullopt;
      }
      port = authority.substr(close + 2);
    }
  } else {
    const auto colon = authority.rfind(':');
    target.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  std::uint32_t port_number = 0;
  if (target.host.empty() || !parse_number<std::uint32_t>(port, 1, 65535, port_number)) {
    error = "--url must look like http://host:port";
    return std::nullopt;
  }
  target.port = port;
  return target;
}

tcp::endpoint resolve(const Target& target) {
  asio::io_context io;
  tcp::resolver resolver(io);
  const auto results = resolver.resolve(target.host, target.port);
  for (const auto& entry : results)
    if (entry.endpoint().address().is_v4()) return entry.endpoint();
  if (results.empty()) throw std::runtime_error("cannot resolve " + target.host);
  return results.begin()->endpoint();
}

HttpAnswer http_request(const tcp::endpoint& endpoint, const Target& target, http::verb method,
                        const std::string& path, const std::string& body, const Headers& headers,
                        std::chrono::milliseconds timeout) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  http::request<http::string_body> request{method, path, 11};
  request.set(http::field::host, target.host_header);
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  ErrorCode failure;
  bool done = false;

  // Asynchronous with the stream's own deadline, so that a server that accepts and then
  // never answers cannot hang the caller.
  stream.expires_after(timeout);
  stream.async_connect(endpoint, [&](const ErrorCode& error) {
    if (error) {
      failure = error;
      done = true;
      return;
    }
    http::async_write(stream, request, [&](const ErrorCode& error, std::size_t) {
      if (error) {
        failure = error;
        done = true;
        return;
      }
      http::async_read(stream, buffer, parser, [&](const ErrorCode& error, std::size_t) {
        failure = error;
        done = true;
      });
    });
  });
  io.run_for(timeout + std::chrono::seconds(1));

  HttpAnswer answer;
  if (!done) {
    answer.error = "timed out";
  } else if (failure) {
    answer.error = failure == beast::error::timeout ? "timed out" : failure.message();
  } else {
    answer.status = static_cast<int>(parser.get().result_int());
    answer.body = std::move(parser.get().body());
  }
  return answer;
}

Token fetch_token(const tcp::endpoint& endpoint, const Target& target, const std::string& user,
                  const std::string& password) {
  const std::string body = nlohmann::json{{"user_id", user}, {"password", password}}.dump();
  for (int attempt = 1;; ++attempt) {
    const HttpAnswer answer =
        http_request(endpoint, target, http::verb::post, "/v1/auth/token", body,
                     {{"Content-Type", "application/json"}}, kLoginTimeout);
    if (answer.status == 0) throw std::runtime_error("login failed: " + answer.error);
    if ((answer.status == 429 || answer.status == 503) && attempt < kLoginAttempts) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (answer.status != 200)
      throw std::runtime_error("POST /v1/auth/token answered " + std::to_string(answer.status) +
                               ": " + answer.body);
    const auto json = nlohmann::json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || !json.contains("access_token") || !json["access_token"].is_string())
      throw std::runtime_error("no access_token in the login answer: " + answer.body);
    Token token{json["access_token"].get<std::string>(), 0};
    if (json.contains("expires_in") && json["expires_in"].is_number_integer())
      token.expires_in_s = json["expires_in"].get<std::int64_t>();
    return token;
  }
}

}  // namespace chat4all::bench
