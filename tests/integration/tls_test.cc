// HTTPS and WSS at the frontend's "https" endpoint, with certificates made by the openssl
// command line in the test's own directory: a client that trusts the test CA completes the
// handshake, reads the API and opens a stream; it refuses an expired certificate; plain HTTP is
// refused when the topology has no "http" endpoint; SIGHUP swaps the certificate for new
// connections while an open one carries on.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <thread>
#include <tuple>

#include "tests/integration/cluster.h"

namespace chat4all::testing {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

// A test CA and the frontend certificates it signs, made with the openssl command line in `dir`.
class Certificates {
 public:
  explicit Certificates(fs::path dir) : dir_(std::move(dir)) {
    run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key "
        "-out ca.crt -days 2 -subj '/CN=Chat4All test CA'");
    std::ofstream(dir_ / "san.cnf") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  }

  fs::path ca_file() const { return dir_ / "ca.crt"; }
  fs::path certificate_file() const { return dir_ / "frontend.crt"; }
  fs::path key_file() const { return dir_ / "frontend.key"; }

  // A certificate for "localhost" signed by the CA, with `organization` in its subject, made
  // into frontend.crt and frontend.key (replaced by rename, as an operator's tooling would).
  // `expired`: valid for one day in 2020 (the clock is faked for openssl alone).
  void issue(const std::string& organization, bool expired = false) {
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout next.key "
        "-out next.csr -subj '/O=" +
        organization + "/CN=localhost'");
    run(std::string(expired ? "faketime '2020-01-01 00:00:00' " : "") +
        "openssl x509 -req -in next.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days " +
        (expired ? "1" : "2") + " -extfile san.cnf -out next.crt");
    fs::rename(dir_ / "next.key", key_file());
    fs::rename(dir_ / "next.crt", certificate_file());
  }

 private:
  void run(const std::string& command) const {
    const std::string line = "cd '" + dir_.string() + "' && " + command + " >>openssl.log 2>&1";
    if (std::system(line.c_str()) != 0)
      throw std::runtime_error("failed: " + command + " (see " + (dir_ / "openssl.log").string() +
                               ")");
  }

  fs::path dir_;
};

// Runs `io` until `done` or `timeout`; false on timeout.
bool run_until(asio::io_context& io, const bool& done, std::chrono::milliseconds timeout) {
  io.restart();
  const auto deadline = Clock::now() + timeout;
  while (!done && Clock::now() < deadline) io.run_for(50ms);
  return done;
}

// A client TLS context that trusts only the test CA and checks the name "localhost".
// `max_version`: the newest protocol it offers (0: any).
ssl::context client_context(const fs::path& ca_file, int max_version = 0) {
  ssl::context context(ssl::context::tls_client);
  context.load_verify_file(ca_file.string());
  context.set_verify_mode(ssl::verify_peer);
  if (max_version != 0) {
    // Old protocols need the lowest security level on the client's side.
    SSL_CTX_set_security_level(context.native_handle(), 0);
    SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_VERSION);
    SSL_CTX_set_max_proto_version(context.native_handle(), max_version);
  }
  return context;
}

// One client connection to the https endpoint; requests on it are kept alive.
class TlsConnection {
 public:
  TlsConnection(std::uint16_t port, const fs::path& ca_file, int max_version = 0)
      : context_(client_context(ca_file, max_version)), stream_(io_, context_) {
    SSL_set1_host(stream_.native_handle(), "localhost");
    SSL_set_tlsext_host_name(stream_.native_handle(), "localhost");
    bool done = false;
    beast::error_code error;
    beast::get_lowest_layer(stream_).async_connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
        [&](beast::error_code ec) {
          error = ec;
          done = true;
        });
    if (!run_until(io_, done, 5s) || error) {
      handshake_error_ = "connect failed";
      return;
    }
    done = false;
    stream_.async_handshake(ssl::stream_base::client, [&](beast::error_code ec) {
      error = ec;
      done = true;
    });
    if (!run_until(io_, done, 5s))
      handshake_error_ = "handshake timed out";
    else if (error)
      handshake_error_ = error.message();
    verify_result_ = SSL_get_verify_result(stream_.native_handle());
  }

  bool connected() const { return handshake_error_.empty(); }
  const std::string& handshake_error() const { return handshake_error_; }
  long verify_result() const { return verify_result_; }

  // The server certificate's subject, one line ("/O=first/CN=localhost").
  std::string peer_subject() {
    X509* peer = SSL_get1_peer_certificate(stream_.native_handle());
    if (peer == nullptr) return "";
    char line[512];
    X509_NAME_oneline(X509_get_subject_name(peer), line, sizeof line);
    X509_free(peer);
    return line;
  }

  HttpResult request(const std::string& method, const std::string& target,
                     const std::string& body = "",
                     const std::map<std::string, std::string>& headers = {}) {
    HttpResult result;
    http::request<http::string_body> request(http::string_to_verb(method), target, 11);
    request.set(http::field::host, "localhost");
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    bool done = false;
    beast::error_code error;
    http::async_write(stream_, request, [&](beast::error_code ec, std::size_t) {
      error = ec;
      done = true;
    });
    if (!run_until(io_, done, 5s) || error) return result;
    http::response<http::string_body> response;
    done = false;
    http::async_read(stream_, buffer_, response, [&](beast::error_code ec, std::size_t) {
      error = ec;
      done = true;
    });
    if (!run_until(io_, done, 5s) || error) return result;
    result.status = response.result_int();
    result.body = response.body();
    return result;
  }

 private:
  asio::io_context io_;
  ssl::context context_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::string handshake_error_;
  long verify_result_ = X509_V_OK;
};

// Opens GET /v1/stream over TLS with `token`, resumes and returns the "ready" frame ("" and a
// failure when any step fails).
std::string wss_ready_frame(std::uint16_t port, const fs::path& ca_file, const std::string& token) {
  asio::io_context io;
  ssl::context context = client_context(ca_file);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> socket(io, context);
  SSL_set1_host(socket.next_layer().native_handle(), "localhost");
  SSL_set_tlsext_host_name(socket.next_layer().native_handle(), "localhost");
  bool done = false;
  beast::error_code error;
  auto step = [&](const char* what) {
    const bool finished = run_until(io, done, 5s);
    done = false;
    if (finished && !error) return true;
    ADD_FAILURE() << what << ": " << (finished ? error.message() : "timed out");
    return false;
  };
  auto completion = [&](beast::error_code ec, auto&&...) {
    error = ec;
    done = true;
  };
  beast::get_lowest_layer(socket).async_connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
      [&](beast::error_code ec) { completion(ec); });
  if (!step("connect")) return "";
  socket.next_layer().async_handshake(ssl::stream_base::client,
                                      [&](beast::error_code ec) { completion(ec); });
  if (!step("tls handshake")) return "";
  socket.set_option(websocket::stream_base::decorator([token](websocket::request_type& request) {
    request.set(http::field::authorization, "Bearer " + token);
  }));
  socket.async_handshake("localhost", "/v1/stream", [&](beast::error_code ec) { completion(ec); });
  if (!step("websocket upgrade")) return "";
  const std::string resume = json{{"type", "resume"}}.dump();
  socket.text(true);
  socket.async_write(asio::buffer(resume), completion);
  if (!step("resume")) return "";
  beast::flat_buffer frame;
  socket.async_read(frame, completion);
  if (!step("ready")) return "";
  std::string text = beast::buffers_to_string(frame.data());
  socket.async_close(websocket::close_code::normal, [&](beast::error_code ec) { completion(ec); });
  step("close");
  return text;
}

// Polls `done` until it holds or `timeout` passed.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("command -v openssl >/dev/null && command -v faketime >/dev/null") != 0)
      GTEST_SKIP() << "openssl or faketime is not installed (tools/bootstrap installs them)";
    certificates_.emplace(certificates_dir_.path());
  }

  // A one-storage cluster whose frontend serves HTTPS with the current certificate; each node
  // its own process (so that SIGHUP reaches the frontend itself).
  void start(bool plain_http) {
    ClusterOptions options;
    options.storage_nodes = 1;
    options.replication_factor = 1;
    options.tls_certificate_file = certificates_->certificate_file().string();
    options.tls_private_key_file = certificates_->key_file().string();
    options.plain_http = plain_http;
    cluster_ = std::make_unique<TestCluster>(options);
    for (const char* node : {"storage-1", "router-1", "frontend-1"}) cluster_->start_node(node);
  }

  // Waits (bounded) until GET /healthz answers 200 over TLS.
  bool https_ready() {
    return eventually(
        [&] {
          TlsConnection connection(cluster_->https_port(), certificates_->ca_file());
          return connection.connected() && connection.request("GET", "/healthz").status == 200;
        },
        20s);
  }

  std::string logs() const { return cluster_ ? cluster_->read_log("frontend-1") : ""; }

  TempDir certificates_dir_;
  std::optional<Certificates> certificates_;
  std::unique_ptr<TestCluster> cluster_;
};

TEST_F(TlsTest, HttpsAndWssWithTheTopologysCertificate) {
  certificates_->issue("first");
  ASSERT_NO_FATAL_FAILURE(start(/*plain_http=*/true));
  ASSERT_TRUE(cluster_->wait_ready()) << logs();
  ASSERT_TRUE(https_ready()) << logs();

  TlsConnection connection(cluster_->https_port(), certificates_->ca_file());
  ASSERT_TRUE(connection.connected()) << connection.handshake_error();
  EXPECT_EQ(connection.peer_subject(), "/O=first/CN=localhost");
  // The API over TLS: a token, then a user's request on the same kept-alive connection.
  const auto token = connection.request(
      "POST", "/v1/auth/token",
      json{{"tenant_id", kTenant}, {"user_id", "alice"}, {"password", kPassword}}.dump(),
      {{"Content-Type", "application/json"}});
  ASSERT_EQ(token.status, 200) << token.body;
  const std::string access_token = token.json().value("access_token", "");
  ASSERT_FALSE(access_token.empty()) << token.body;
  const auto conversations = connection.request("GET", "/v1/conversations", "",
                                                {{"Authorization", "Bearer " + access_token}});
  EXPECT_EQ(conversations.status, 200) << conversations.body;

  // The stream over the same listener: WSS.
  const std::string ready =
      wss_ready_frame(cluster_->https_port(), certificates_->ca_file(), access_token);
  const json frame = json::parse(ready, nullptr, false);
  EXPECT_EQ(frame.value("type", ""), "ready") << ready;
  EXPECT_EQ(frame.value("user_id", ""), "alice") << ready;

  // Only TLS 1.2 and newer: a client that offers at most TLS 1.1 gets no session.
  TlsConnection old_client(cluster_->https_port(), certificates_->ca_file(), TLS1_1_VERSION);
  EXPECT_FALSE(old_client.connected());
}

TEST_F(TlsTest, AClientRefusesAnExpiredCertificate) {
  certificates_->issue("expired", /*expired=*/true);
  ASSERT_NO_FATAL_FAILURE(start(/*plain_http=*/true));
  ASSERT_TRUE(cluster_->wait_ready()) << logs();
  TlsConnection connection(cluster_->https_port(), certificates_->ca_file());
  EXPECT_FALSE(connection.connected());
  EXPECT_EQ(connection.verify_result(), X509_V_ERR_CERT_HAS_EXPIRED)
      << X509_verify_cert_error_string(connection.verify_result()) << " / "
      << connection.handshake_error();
  // The frontend said so when it loaded it.
  EXPECT_NE(logs().find("tls_certificate_expired"), std::string::npos) << logs();
}

TEST_F(TlsTest, PlainHttpIsRefusedWhenTheFrontendHasNoHttpEndpoint) {
  certificates_->issue("first");
  ASSERT_NO_FATAL_FAILURE(start(/*plain_http=*/false));
  ASSERT_TRUE(https_ready()) << logs();
  EXPECT_EQ(cluster_->http_port(), 0);
  // Plain HTTP on the https port gets no HTTP answer: the TLS handshake fails and the
  // connection is closed.
  const HttpResult plain = http_request(cluster_->https_port(), "GET", "/healthz", "", {}, 5s);
  EXPECT_EQ(plain.status, 0) << plain.body;
  TlsConnection connection(cluster_->https_port(), certificates_->ca_file());
  ASSERT_TRUE(connection.connected()) << connection.handshake_error();
  const std::string metrics = connection.request("GET", "/metrics").body;
  EXPECT_EQ(metrics.find("chat4all_http_tls_handshake_failures_total 0"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("chat4all_http_tls_handshake_failures_total"), std::string::npos)
      << metrics;
  EXPECT_NE(logs().find("\"http\":\"off\""), std::string::npos) << logs();
}

TEST_F(TlsTest, SighupSwapsTheCertificateForNewConnectionsAndKeepsOpenOnes) {
  certificates_->issue("first");
  ASSERT_NO_FATAL_FAILURE(start(/*plain_http=*/true));
  ASSERT_TRUE(cluster_->wait_ready()) << logs();
  TlsConnection open(cluster_->https_port(), certificates_->ca_file());
  ASSERT_TRUE(open.connected()) << open.handshake_error();
  ASSERT_EQ(open.request("GET", "/healthz").status, 200);

  certificates_->issue("second");
  cluster_->signal_node("frontend-1", SIGHUP);
  std::string subject;
  EXPECT_TRUE(eventually(
      [&] {
        TlsConnection fresh(cluster_->https_port(), certificates_->ca_file());
        subject = fresh.peer_subject();
        return subject == "/O=second/CN=localhost";
      },
      10s))
      << subject << "\n"
      << logs();
  // The connection opened before the reload carries on, with the certificate it began with.
  EXPECT_EQ(open.request("GET", "/healthz").status, 200);
  EXPECT_EQ(open.peer_subject(), "/O=first/CN=localhost");

  // Files that cannot be used are logged and change nothing.
  std::ofstream(certificates_->key_file()) << "not a key\n";
  cluster_->signal_node("frontend-1", SIGHUP);
  EXPECT_TRUE(
      eventually([&] { return logs().find("tls_reload_failed") != std::string::npos; }, 10s))
      << logs();
  TlsConnection after(cluster_->https_port(), certificates_->ca_file());
  EXPECT_EQ(after.peer_subject(), "/O=second/CN=localhost");
  EXPECT_EQ(after.request("GET", "/healthz").status, 200);
}

// A frontend that cannot serve its certificate does not start, and says why.
TEST_F(TlsTest, AFrontendWhoseKeyCannotBeUsedRefusesToStart) {
  certificates_->issue("first");
  ClusterOptions options;
  options.storage_nodes = 1;
  options.replication_factor = 1;
  options.tls_certificate_file = certificates_->certificate_file().string();
  options.tls_private_key_file = certificates_->key_file().string();
  TestCluster cluster(options);
  const std::vector<std::string> node = {"node", "--topology", cluster.topology_path().string(),
                                         "--name", "frontend-1"};

  std::ofstream(certificates_->key_file()) << "not a key\n";
  auto [status, error] = run_chat4all(node);
  EXPECT_NE(status, 0);
  EXPECT_NE(error.find("cannot use the private key in " + certificates_->key_file().string()),
            std::string::npos)
      << error;

  // A key of another certificate.
  const fs::path other_key = certificates_->key_file();
  certificates_->issue("second");
  const std::string second_key = [&] {
    std::ifstream in(other_key);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  certificates_->issue("third");
  std::ofstream(certificates_->key_file()) << second_key;
  std::tie(status, error) = run_chat4all(node);
  EXPECT_NE(status, 0);
  // OpenSSL finds it as the key is loaded ("key values mismatch").
  EXPECT_NE(error.find("private key in " + certificates_->key_file().string()), std::string::npos)
      << error;
  EXPECT_NE(error.find("mismatch"), std::string::npos) << error;
}

}  // namespace
}  // namespace chat4all::testing
