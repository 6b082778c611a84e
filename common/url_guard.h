// SSRF guard for URLs the platform calls on a user's behalf (webhooks): the URL must be plain
// http(s) and every address its host resolves to must be public, unless the topology allows
// loopback or private targets (local development, tests, on-premises receivers).
//
// check_url() resolves the host with getaddrinfo(): it BLOCKS for as long as DNS takes (up to
// the resolver's timeouts, seconds), so it must run off event loops (a worker thread or pool).
// Everything else here is pure. All functions are thread-safe.
//
// Resolving again at connect time could give another answer (DNS rebinding: a public address at
// check time, 127.0.0.1 a moment later). GuardResult::address is the address that passed; pin
// the connection to it (HttpPost::pinned_address, i.e. curl's CURLOPT_RESOLVE) so that the
// address checked is the address connected to.
//
// Errors are values: the `error` text says what is wrong in terms a user registering a webhook
// can act on ("host resolves to a loopback address (127.0.0.1)").
//
// Two roles use it (the frontend checks a webhook when it is registered, the connector before
// each call), so it lives in common/; its names stay in the connector's namespace, the role
// whose outbound calls it guards.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace chat4all::connector {

inline constexpr std::size_t kUrlLengthMax = 2048;

struct ParsedUrl {
  std::string scheme;  // "http" or "https" (lower case)
  // Lower-case DNS name, dotted-quad IPv4, or IPv6 without brackets.
  std::string host;
  bool host_is_ip = false;  // host is an IPv4 or IPv6 literal
  std::uint16_t port = 0;   // as given, or 80 / 443 by scheme
  std::string target;       // path and query as given, "/" when empty; never the fragment
};

struct UrlParseResult {
  ParsedUrl url;
  std::string error;  // empty on success
  bool ok() const { return error.empty(); }
};

// Parses an absolute http(s) URL strictly: refuses other schemes, user info ("user@host"), an
// empty host, characters outside printable ASCII (spaces, controls; hosts must be punycode),
// ports outside 1..65535, URLs longer than kUrlLengthMax, and hosts that look numeric but are
// not a dotted quad ("127.1", "0x7f.0.0.1", "2130706433"): resolvers read those as IPv4 in
// ways that differ between libraries.
UrlParseResult parse_http_url(std::string_view url);

enum class AddressClass {
  kPublic,
  kLoopback,     // 127/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10 (deprecated site-local)
  kLinkLocal,    // 169.254/16 (cloud metadata services live here), fe80::/10
  kCgnat,        // 100.64/10 (carrier-grade NAT, RFC 6598)
  kUnspecified,  // 0/8, ::
  kMulticast,    // 224/4, ff00::/8
  kReserved,     // documentation, benchmarking, protocol assignments, 240/4, broadcast, and
                 // IPv6 outside 2000::/3; never reachable or never meant to be
};

// "public", "loopback", "private", "link-local", "carrier-grade NAT", "unspecified",
// "multicast", "reserved".
const char* address_class_name(AddressClass address_class);

// Classifies an AF_INET or AF_INET6 address; other families are kReserved. IPv4-mapped
// (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) IPv6 addresses are classified as the IPv4
// address they carry.
AddressClass classify(const sockaddr* address);
// The same for a numeric address in text (IPv6 without brackets); nullopt if it is not one.
std::optional<AddressClass> classify_ip(std::string_view address);

struct UrlPolicy {
  bool allow_loopback = false;
  bool allow_private = false;  // private, link-local and carrier-grade NAT
  // Unspecified, multicast and reserved addresses are always refused.
};

bool is_allowed(AddressClass address_class, const UrlPolicy& policy);

struct GuardResult {
  ParsedUrl url;
  // The address to connect to (numeric, IPv6 without brackets): the first IPv4 address the host
  // resolved to, else the first IPv6 one. The host itself when it is an IP literal.
  std::string address;
  std::string error;  // empty on success
  // With an error: the host did not resolve (getaddrinfo failed, temporarily or not, or gave no
  // address). That says nothing about where the URL leads, so it is a connection failure worth
  // another attempt, not a refusal; only a URL or an address that is not allowed is refused.
  bool unresolved = false;
  bool ok() const { return error.empty(); }
};

// Parses `url`, resolves its host (blocking, see above) and refuses it if ANY of the addresses
// is not allowed by `policy`: a receiver must not be able to mix a private address into an
// otherwise public name and have it tried.
GuardResult check_url(std::string_view url, const UrlPolicy& policy);

}  // namespace chat4all::connector
