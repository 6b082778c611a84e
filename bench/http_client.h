// Blocking HTTP/1.1 helpers shared by the load generator and the fault checker: URL parsing,
// address resolution, one bounded request on a fresh connection, and the login.
//
// The load generator's request path does not use these (it has its own allocation-free
// engine); they serve the few requests around it, where clarity matters more than speed.
#pragma once

// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace chat4all::bench {

template <typename Number>
bool parse_number(std::string_view text, Number min, Number max, Number& out) {
  Number value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return false;
  if (!(value >= min && value <= max)) return false;  // also rejects NaN
  out = value;
  return true;
}

struct Target {
  std::string host;
  std::string port;
  std::string host_header;  // "host:port", as the Host header wants it
};

// "http://host:port"; https is refused. On failure returns nothing and sets `error`.
std::optional<Target> parse_url(std::string_view url, std::string& error);

// Prefers IPv4, as the frontend binds it. Throws when the name does not resolve.
boost::asio::ip::tcp::endpoint resolve(const Target& target);

struct HttpAnswer {
  int status = 0;     // 0: no answer; `error` says why
  std::string error;  // connection or timeout failure
  std::string body;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request on a fresh connection, the whole exchange bounded by `timeout`.
HttpAnswer http_request(const boost::asio::ip::tcp::endpoint& endpoint, const Target& target,
                        boost::beast::http::verb method, const std::string& path,
                        const std::string& body, const Headers& headers,
                        std::chrono::milliseconds timeout);

struct Token {
  std::string access_token;
  std::int64_t expires_in_s = 0;
};

// POST /v1/auth/token; retried a few times while the server is busy (429/503). Throws with a
// readable message when no token comes back.
Token fetch_token(const boost::asio::ip::tcp::endpoint& endpoint, const Target& target,
                  const std::string& user, const std::string& password);

}  // namespace chat4all::bench
