// The frontend's TLS server context: the topology's certificate and key (TlsSettings), TLS 1.2
// and newer only, and a reload that swaps it for new connections while those already open keep
// the context they started with (each EdgeStream holds its own reference).
//
// Thread-safety: current() may be called from any thread at once with reload().
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "common/topology.h"

namespace chat4all::frontend {

class TlsConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A server context for `settings`: the certificate chain and private key (PEM), checked to
// belong together; protocols below TLS 1.2 refused, no renegotiation, no compression. Throws
// TlsConfigError naming the file and OpenSSL's reason when a file cannot be read or used.
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const TlsSettings& settings);

// The leaf certificate's notAfter ("Jan  1 00:00:00 2030 GMT") and whether it has passed.
struct CertificateValidity {
  std::string not_after;
  bool expired = false;
};
CertificateValidity certificate_validity(boost::asio::ssl::context& context);

class TlsContextSource {
 public:
  // Loads the context (throws TlsConfigError: a frontend that cannot serve its certificate does
  // not start).
  explicit TlsContextSource(TlsSettings settings);

  // The context new connections use.
  std::shared_ptr<boost::asio::ssl::context> current() const;

  // Reads the files again. On success new connections get the new context and it returns "";
  // otherwise the current context stays and it returns why.
  std::string reload();

 private:
  const TlsSettings settings_;
  mutable std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> current_;  // guarded by mutex_
};

}  // namespace chat4all::frontend
