#include "bench/http_client.h"

#include <openssl/ssl.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <cctype>
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
  Target target;
  if (url.substr(0, 8) == "https://") {
    target.https = true;
    url.remove_prefix(8);
  } else if (url.substr(0, 7) == "http://") {
    url.remove_prefix(7);
  }
  const std::string_view authority = url.substr(0, url.find('/'));
  target.host_header = authority;
  std::string_view port = target.https ? "443" : "80";
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
    error = "--url must look like http://host:port or https://host:port";
    return std::nullopt;
  }
  target.port = port;
  if (target.https) use_tls(target, "");
  return target;
}

void use_tls(Target& target, const std::string& ca_file) {
  auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  if (ca_file.empty()) {
    context->set_verify_mode(asio::ssl::verify_none);
  } else {
    ErrorCode error;
    context->load_verify_file(ca_file, error);
    if (error)
      throw std::runtime_error("cannot read the CA file " + ca_file + ": " + error.message());
    context->set_verify_mode(asio::ssl::verify_peer);
  }
  target.tls = std::move(context);
}

std::unique_ptr<TlsSocket> tls_client(tcp::socket& socket, const Target& target) {
  auto session = std::make_unique<TlsSocket>(socket, *target.tls);
  SSL_set_tlsext_host_name(session->native_handle(), target.host.c_str());
  SSL_set1_host(session->native_handle(), target.host.c_str());
  return session;
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
  tcp::socket socket(io);
  std::unique_ptr<TlsSocket> tls;
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
  auto fail = [&](const ErrorCode& error) {
    if (done) return;  // the deadline came first
    failure = error;
    done = true;
  };
  // Each step on whichever stream the target speaks.
  auto exchange = [&](auto& stream) {
    http::async_write(stream, request, [&](const ErrorCode& error, std::size_t) {
      if (error) return fail(error);
      http::async_read(stream, buffer, parser,
                       [&](const ErrorCode& error, std::size_t) { fail(error); });
    });
  };

  // Asynchronous with a deadline, so that a server that accepts and then never answers cannot
  // hang the caller: at the deadline the socket is closed and the pending step fails.
  asio::steady_timer deadline(io);
  deadline.expires_after(timeout);
  deadline.async_wait([&](const ErrorCode& error) {
    if (error) return;
    ErrorCode ignored;
    socket.close(ignored);
    if (!done) fail(beast::error::timeout);
  });
  socket.async_connect(endpoint, [&](const ErrorCode& error) {
    if (error) return fail(error);
    if (!target.https) return exchange(socket);
    tls = tls_client(socket, target);
    tls->async_handshake(asio::ssl::stream_base::client, [&](const ErrorCode& error) {
      if (error) return fail(error);
      exchange(*tls);
    });
  });
  while (!done && io.run_one_for(timeout + std::chrono::seconds(1)) > 0) {
  }
  deadline.cancel();

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

namespace {

const Headers kJson = {{"Content-Type", "application/json"}};

// A request retried a few times while the server is busy or between leaders (a transient
// answer), as the first requests to a cluster that has just started may find it.
// Throws when no answer comes back. A retried creation may have happened once already: users
// answer 409 then, and a conversation is made twice (the extra one is simply not used).
HttpAnswer request_patiently(const tcp::endpoint& endpoint, const Target& target, http::verb method,
                             const std::string& path, const std::string& body,
                             const Headers& headers) {
  for (int attempt = 1;; ++attempt) {
    HttpAnswer answer = http_request(endpoint, target, method, path, body, headers, kLoginTimeout);
    const bool busy = is_transient(answer);
    if (busy && attempt < kLoginAttempts) {
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (answer.status == 0)
      throw std::runtime_error(std::string(http::to_string(method)) + " " + path +
                               " failed: " + answer.error);
    return answer;
  }
}

std::runtime_error refused(const std::string& what, const HttpAnswer& answer) {
  return std::runtime_error(what + " answered " + std::to_string(answer.status) + ": " +
                            answer.body.substr(0, 300));
}

}  // namespace

Token fetch_token(const tcp::endpoint& endpoint, const Target& target,
                  const Credentials& credentials) {
  nlohmann::json grant = {{"tenant_id", credentials.tenant}};
  if (credentials.client) {
    grant["grant_type"] = "client_credentials";
    grant["client_id"] = credentials.id;
    grant["client_secret"] = credentials.secret;
  } else {
    grant["user_id"] = credentials.id;
    grant["password"] = credentials.secret;
  }
  const HttpAnswer answer =
      request_patiently(endpoint, target, http::verb::post, "/v1/auth/token", grant.dump(), kJson);
  if (answer.status != 200) throw refused("POST /v1/auth/token as " + credentials.id, answer);
  const auto json = nlohmann::json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json.contains("access_token") || !json["access_token"].is_string())
    throw std::runtime_error("no access_token in the login answer: " + answer.body);
  Token token{json["access_token"].get<std::string>(), 0};
  if (json.contains("expires_in") && json["expires_in"].is_number_integer())
    token.expires_in_s = json["expires_in"].get<std::int64_t>();
  return token;
}

Token prepare_users(const tcp::endpoint& endpoint, const Target& target, const Credentials& admin,
                    const std::string& sender, const std::string& peer,
                    const std::string& password) {
  const Token admin_token = fetch_token(endpoint, target, admin);
  const Headers as_admin = {{"Content-Type", "application/json"},
                            {"Authorization", "Bearer " + admin_token.access_token}};
  for (const auto& user : {sender, peer}) {
    const HttpAnswer answer = request_patiently(
        endpoint, target, http::verb::post, "/v1/users",
        nlohmann::json{{"user_id", user}, {"password", password}}.dump(), as_admin);
    if (answer.status != 201 && answer.status != 409)  // 409: it exists already
      throw refused("POST /v1/users " + user, answer);
  }
  return fetch_token(endpoint, target, Credentials{admin.tenant, sender, password});
}

std::string create_group(const tcp::endpoint& endpoint, const Target& target, const Token& token,
                         const std::string& peer) {
  const HttpAnswer answer = request_patiently(
      endpoint, target, http::verb::post, "/v1/conversations",
      nlohmann::json{{"type", "group"}, {"members", {peer}}}.dump(),
      {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token.access_token}});
  const auto json = nlohmann::json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  // 200: the router retried the creation after a timeout and the first attempt had been stored.
  if ((answer.status != 201 && answer.status != 200) || !json.is_object() ||
      !json.contains("conversation_id") || !json["conversation_id"].is_string())
    throw refused("POST /v1/conversations", answer);
  return json["conversation_id"].get<std::string>();
}

bool is_transient(const HttpAnswer& answer) {
  return answer.status == 0 || answer.status == 429 || answer.status == 500 ||
         answer.status == 502 || answer.status == 503 || answer.status == 504;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<HistoryRead> read_history(const tcp::endpoint& endpoint, const Target& target,
                                        const std::string& authorization,
                                        const std::string& conversation_id, std::uint64_t from_seq,
                                        std::uint32_t page_size,
                                        std::chrono::steady_clock::time_point deadline,
                                        std::string& error) {
  using Clock = std::chrono::steady_clock;
  using nlohmann::json;
  HistoryRead history;
  bool first_page = true;
  while (true) {
    const std::string path = "/v1/conversations/" + percent_encode(conversation_id) +
                             "/messages?from_seq=" + std::to_string(from_seq) +
                             "&limit=" + std::to_string(page_size);
    HttpAnswer answer;
    auto backoff = std::chrono::milliseconds(50);
    while (true) {
      answer = http_request(endpoint, target, http::verb::get, path, "",
                            {{"Authorization", authorization}}, std::chrono::seconds(10));
      if (!is_transient(answer) || Clock::now() + backoff > deadline) break;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
    if (answer.status != 200) {
      error = answer.status == 0
                  ? answer.error
                  : "HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200);
      return std::nullopt;
    }
    const json page = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
    if (!page.is_object() || !page.value("messages", json()).is_array() ||
        !page.value("next_from_seq", json()).is_number_unsigned() ||
        !page.value("has_more", json()).is_boolean() ||
        !page.value("last_seq", json()).is_number_unsigned()) {
      error = "malformed page: " + answer.body.substr(0, 200);
      return std::nullopt;
    }
    for (const auto& message : page["messages"]) {
      if (!message.is_object() || !message.value("seq", json()).is_number_unsigned() ||
          !message.value("message_id", json()).is_string()) {
        error = "malformed message: " + message.dump().substr(0, 200);
        return std::nullopt;
      }
      history.messages.push_back(
          {message["seq"].get<std::uint64_t>(), message["message_id"].get<std::string>()});
    }
    history.last_seq = page["last_seq"].get<std::uint64_t>();
    // Absent from servers without retention: history starts at 1.
    const json first_seq = page.value("first_seq", json(1u));
    history.first_seq_end = first_seq.is_number_unsigned() ? first_seq.get<std::uint64_t>() : 1;
    if (first_page) history.first_seq = history.first_seq_end;
    first_page = false;
    if (!page["has_more"].get<bool>()) return history;
    const auto next = page["next_from_seq"].get<std::uint64_t>();
    // A server that claims more but does not move forward would keep this loop going.
    if (next <= from_seq) {
      error = "paging does not advance at from_seq " + std::to_string(from_seq);
      return std::nullopt;
    }
    from_seq = next;
  }
}

}  // namespace chat4all::bench
