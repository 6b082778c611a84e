#include "nodes/frontend/edge_tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <utility>

namespace chat4all::frontend {

namespace ssl = boost::asio::ssl;

namespace {

// OpenSSL's queued reasons, oldest first, cleared.
std::string openssl_errors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown reason" : text;
}

[[noreturn]] void fail(const std::string& what, const std::filesystem::path& file) {
  throw TlsConfigError("tls: " + what + " " + file.string() + ": " + openssl_errors());
}

}  // namespace

std::shared_ptr<ssl::context> make_server_tls_context(const TlsSettings& settings) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  ERR_clear_error();
  // TLS 1.0 and 1.1 are deprecated (RFC 8996); SSLv2/3 are gone from OpenSSL 3 anyway.
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1)
    throw TlsConfigError("tls: cannot require TLS 1.2: " + openssl_errors());
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::no_compression | ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(native, settings.certificate_file.c_str()) != 1)
    fail("cannot use the certificate chain in", settings.certificate_file);
  if (SSL_CTX_use_PrivateKey_file(native, settings.private_key_file.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("cannot use the private key in", settings.private_key_file);
  if (SSL_CTX_check_private_key(native) != 1)
    fail("the private key does not match the certificate in", settings.certificate_file);
  return context;
}

CertificateValidity certificate_validity(ssl::context& context) {
  CertificateValidity validity;
  X509* leaf = SSL_CTX_get0_certificate(context.native_handle());
  if (leaf == nullptr) return validity;
  const ASN1_TIME* not_after = X509_get0_notAfter(leaf);
  validity.expired = X509_cmp_current_time(not_after) < 0;
  BIO* out = BIO_new(BIO_s_mem());
  if (out != nullptr && ASN1_TIME_print(out, not_after) == 1) {
    char* data = nullptr;
    const long length = BIO_get_mem_data(out, &data);
    validity.not_after.assign(data, static_cast<std::size_t>(length));
  }
  BIO_free(out);
  return validity;
}

TlsContextSource::TlsContextSource(TlsSettings settings)
    : settings_(std::move(settings)), current_(make_server_tls_context(settings_)) {}

std::shared_ptr<ssl::context> TlsContextSource::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

std::string TlsContextSource::reload() {
  std::shared_ptr<ssl::context> fresh;
  try {
    fresh = make_server_tls_context(settings_);
  } catch (const TlsConfigError& error) {
    return error.what();
  }
  std::lock_guard lock(mutex_);
  current_ = std::move(fresh);
  return "";
}

}  // namespace chat4all::frontend
