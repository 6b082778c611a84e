// Blocking HTTP/1.1 helpers shared by the load generator and the fault checker: URL parsing,
// address resolution, one bounded request on a fresh connection, and the login.
//
// The load generator's request path does not use these (it has its own allocation-free
// engine); they serve the few requests around it, where clarity matters more than speed.
#pragma once

// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
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
  bool https = false;
  // With https: the client context every connection is made with (see use_tls()).
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// "http://host:port" or "https://host:port" (port 80 and 443 when left out). On failure returns
// nothing and sets `error`. An https target does not check the server's certificate until
// use_tls() is given a CA file.
std::optional<Target> parse_url(std::string_view url, std::string& error);

// Makes `target`'s client TLS context: the server certificate is checked against `ca_file`
// (PEM) and the URL's host name; with an empty `ca_file` it is not checked at all (a load
// generator measuring a test certificate). TLS 1.2 and newer. Throws std::runtime_error when
// the file cannot be read.
void use_tls(Target& target, const std::string& ca_file);

// A client TLS session over `socket` for `target` (SNI and the name check set).
using TlsSocket = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;
std::unique_ptr<TlsSocket> tls_client(boost::asio::ip::tcp::socket& socket, const Target& target);

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

// Who logs in: a user of a tenant (password grant) or a service client (client_credentials).
struct Credentials {
  std::string tenant;
  std::string id;  // user_id or client_id
  std::string secret;
  bool client = false;
};

// The defaults of topology/local.yaml: tenant "dev" and its admin client.
inline constexpr const char* kDevTenant = "dev";
inline constexpr const char* kDevAdminClient = "dev-admin";
inline constexpr const char* kDevSecret = "chat4all-dev";

// POST /v1/auth/token; retried a few times while the server is busy (429/503). Throws with a
// readable message when no token comes back.
Token fetch_token(const boost::asio::ip::tcp::endpoint& endpoint, const Target& target,
                  const Credentials& credentials);

// What a load run needs before it starts. With the admin client's token, creates users `sender`
// and `peer` (both with `password`; users that exist already are kept, so their password must be
// `password`), and returns a token of `sender`. Throws with a readable message on failure.
Token prepare_users(const boost::asio::ip::tcp::endpoint& endpoint, const Target& target,
                    const Credentials& admin, const std::string& sender, const std::string& peer,
                    const std::string& password);

// Creates a group conversation of the token's user and `peer`; returns its id (chosen by the
// server). Throws with a readable message on failure.
std::string create_group(const boost::asio::ip::tcp::endpoint& endpoint, const Target& target,
                         const Token& token, const std::string& peer);

// No answer, 429, 500, 502, 503 or 504: the outcome may change on a retry (the token's rate
// limit, a node restarting, an election under way).
bool is_transient(const HttpAnswer& answer);

// Percent-encodes everything but RFC 3986's unreserved characters, for a path segment.
std::string percent_encode(std::string_view text);

struct HistoryEntry {
  std::uint64_t seq = 0;
  std::string message_id;
};

struct HistoryRead {
  std::vector<HistoryEntry> messages;  // pages joined in the order they were read
  std::uint64_t last_seq = 0;          // the server's newest seq, from the last page
  // Where history started (retention expired what was below) when the first page and the
  // last page were read; 1 without retention.
  std::uint64_t first_seq = 1, first_seq_end = 1;
};

// GET /v1/conversations/{id}/messages from `from_seq` to the end, `page_size` at a time.
// Transient answers are retried (backoff 50 ms doubling to 1 s) until `deadline`: a storage
// node that is catching up answers 503/504 for a while. Nothing, with `error` set, when a
// page cannot be read, is malformed, or paging does not advance.
std::optional<HistoryRead> read_history(const boost::asio::ip::tcp::endpoint& endpoint,
                                        const Target& target, const std::string& authorization,
                                        const std::string& conversation_id, std::uint64_t from_seq,
                                        std::uint32_t page_size,
                                        std::chrono::steady_clock::time_point deadline,
                                        std::string& error);

}  // namespace chat4all::bench
