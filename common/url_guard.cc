#include "common/url_guard.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>

namespace chat4all::connector {
namespace {

UrlParseResult parse_error(std::string message) {
  UrlParseResult result;
  result.error = std::move(message);
  return result;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  });
  return out;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex_digit(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f');
}

// WHATWG's "ends in a number": a host whose last label is decimal or 0x-hex is read as IPv4
// by browsers and by inet_aton() (which getaddrinfo() uses), in forms such as "127.1" or
// "0x7f.1". Only the canonical dotted quad is accepted, so that every component agrees on it.
bool looks_numeric(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  const std::size_t dot = host.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  if (std::all_of(last.begin(), last.end(), is_digit)) return true;
  return last.starts_with("0x") && std::all_of(last.begin() + 2, last.end(), is_hex_digit);
}

// Lower-case letters, digits, '-' and '_' in labels of 1..63 characters, 253 in all; one
// trailing dot (a fully qualified name) is allowed.
std::string host_name_error(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return "host name must be 1..253 characters";
  std::size_t label_length = 0;
  for (const char c : host) {
    if (c == '.') {
      if (label_length == 0) return "host name has an empty label";
      label_length = 0;
      continue;
    }
    if (!(is_digit(c) || (c >= 'a' && c <= 'z') || c == '-' || c == '_'))
      return std::string("host name contains '") + c + "' (use punycode for international names)";
    if (++label_length > 63) return "host name has a label longer than 63 characters";
  }
  if (label_length == 0) return "host name has an empty label";
  return "";
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || !std::all_of(text.begin(), text.end(), is_digit))
    return std::nullopt;
  std::uint32_t port = 0;
  for (const char c : text) port = port * 10 + static_cast<std::uint32_t>(c - '0');
  if (port == 0 || port > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(port);
}

struct Ipv4Range {
  std::uint32_t prefix;
  int bits;
  AddressClass address_class;
};

// The non-public entries of IANA's IPv4 special-purpose address registry (RFC 6890 and its
// updates), plus multicast and the former class E.
constexpr std::array<Ipv4Range, 15> kIpv4Ranges = {{
    {0x00000000, 8, AddressClass::kUnspecified},  // 0.0.0.0/8 "this network"
    {0x0A000000, 8, AddressClass::kPrivate},      // 10.0.0.0/8
    {0x64400000, 10, AddressClass::kCgnat},       // 100.64.0.0/10
    {0x7F000000, 8, AddressClass::kLoopback},     // 127.0.0.0/8
    {0xA9FE0000, 16, AddressClass::kLinkLocal},   // 169.254.0.0/16
    {0xAC100000, 12, AddressClass::kPrivate},     // 172.16.0.0/12
    {0xC0000000, 24, AddressClass::kReserved},    // 192.0.0.0/24 protocol assignments
    {0xC0000200, 24, AddressClass::kReserved},    // 192.0.2.0/24 TEST-NET-1
    {0xC0586300, 24, AddressClass::kReserved},    // 192.88.99.0/24 6to4 relay anycast
    {0xC0A80000, 16, AddressClass::kPrivate},     // 192.168.0.0/16
    {0xC6120000, 15, AddressClass::kReserved},    // 198.18.0.0/15 benchmarking
    {0xC6336400, 24, AddressClass::kReserved},    // 198.51.100.0/24 TEST-NET-2
    {0xCB007100, 24, AddressClass::kReserved},    // 203.0.113.0/24 TEST-NET-3
    {0xE0000000, 4, AddressClass::kMulticast},    // 224.0.0.0/4
    {0xF0000000, 4, AddressClass::kReserved},     // 240.0.0.0/4, 255.255.255.255 included
}};

// `address` in host byte order.
AddressClass classify_ipv4(std::uint32_t address) {
  for (const Ipv4Range& range : kIpv4Ranges) {
    const std::uint32_t mask = ~std::uint32_t{0} << (32 - range.bits);
    if ((address & mask) == range.prefix) return range.address_class;
  }
  return AddressClass::kPublic;
}

std::uint32_t ipv4_at(const unsigned char* bytes) {
  return (std::uint32_t{bytes[0]} << 24) | (std::uint32_t{bytes[1]} << 16) |
         (std::uint32_t{bytes[2]} << 8) | std::uint32_t{bytes[3]};
}

AddressClass classify_ipv6(const unsigned char* b) {
  static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr unsigned char kNat64Prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  static constexpr unsigned char kZero[15] = {};
  if (std::memcmp(b, kZero, 15) == 0) {
    if (b[15] == 0) return AddressClass::kUnspecified;
    if (b[15] == 1) return AddressClass::kLoopback;
  }
  // Addresses that carry an IPv4 address reach that address: judge them by it.
  if (std::memcmp(b, kMappedPrefix, 12) == 0 || std::memcmp(b, kNat64Prefix, 12) == 0)
    return classify_ipv4(ipv4_at(b + 12));
  if (b[0] == 0xff) return AddressClass::kMulticast;
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressClass::kLinkLocal;  // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddressClass::kPrivate;    // fec0::/10
  if ((b[0] & 0xfe) == 0xfc) return AddressClass::kPrivate;                    // fc00::/7
  // Only 2000::/3 is allocated for global unicast; the rest of ::/8 (IPv4-compatible),
  // 100::/64 (discard), 64:ff9b:1::/48 (local NAT64) ... is not a place to send webhooks.
  if ((b[0] & 0xe0) != 0x20) return AddressClass::kReserved;
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
    return AddressClass::kReserved;  // 2001:db8::/32 documentation
  if (b[0] == 0x20 && b[1] == 0x01 && (b[2] & 0xfe) == 0)
    return AddressClass::kReserved;  // 2001::/23 protocol assignments (Teredo included)
  if (b[0] == 0x20 && b[1] == 0x02) return AddressClass::kReserved;  // 2002::/16 6to4
  if (b[0] == 0x3f && b[1] == 0xff && (b[2] & 0xf0) == 0)
    return AddressClass::kReserved;  // 3fff::/20 documentation
  return AddressClass::kPublic;
}

// "a loopback", "an unspecified", ...
std::string with_article(AddressClass address_class) {
  const std::string name = address_class_name(address_class);
  const bool vowel = std::string_view("aeiou").find(name.front()) != std::string_view::npos;
  return (vowel ? "an " : "a ") + name;
}

std::string address_text(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, text,
                sizeof text);
  else if (address->sa_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, text,
                sizeof text);
  return text;
}

GuardResult guard_error(std::string message) {
  GuardResult result;
  result.error = std::move(message);
  return result;
}

}  // namespace

UrlParseResult parse_http_url(std::string_view url) {
  if (url.empty()) return parse_error("URL is empty");
  if (url.size() > kUrlLengthMax)
    return parse_error("URL is longer than " + std::to_string(kUrlLengthMax) + " characters");
  for (const char c : url) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f)
      return parse_error("URL contains a space, a control or a non-ASCII character");
  }
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos)
    return parse_error("URL must be absolute (http://... or https://...)");
  UrlParseResult result;
  ParsedUrl& parsed = result.url;
  parsed.scheme = lower(url.substr(0, scheme_end));
  if (parsed.scheme != "http" && parsed.scheme != "https")
    return parse_error("scheme must be http or https");

  const std::string_view rest = url.substr(scheme_end + 3);
  const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  std::string_view target = rest.substr(authority_end);
  target = target.substr(0, target.find('#'));  // the fragment never leaves the client
  parsed.target =
      target.empty() || target.front() == '?' ? "/" + std::string(target) : std::string(target);

  if (authority.find('@') != std::string_view::npos)
    return parse_error("URL must not contain user info (user@host)");
  std::string_view host;
  std::optional<std::string_view> port_text;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return parse_error("IPv6 host is missing its ']'");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return parse_error("unexpected text after the IPv6 host");
      port_text = after.substr(1);
    }
    in6_addr ipv6{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &ipv6) != 1)
      return parse_error("IPv6 host is malformed (zone ids are not accepted)");
    char canonical[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &ipv6, canonical, sizeof canonical);
    parsed.host = canonical;
    parsed.host_is_ip = true;
  } else {
    const std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    if (host.empty()) return parse_error("URL has no host");
    parsed.host = lower(host);
    if (looks_numeric(parsed.host)) {
      in_addr ipv4{};
      if (::inet_pton(AF_INET, parsed.host.c_str(), &ipv4) != 1)
        return parse_error("host looks numeric but is not a dotted-quad IPv4 address");
      parsed.host_is_ip = true;
    } else if (std::string error = host_name_error(parsed.host); !error.empty()) {
      return parse_error(std::move(error));
    }
  }

  if (port_text) {
    const auto port = parse_port(*port_text);
    if (!port) return parse_error("port must be a number in 1..65535");
    parsed.port = *port;
  } else {
    parsed.port = parsed.scheme == "https" ? 443 : 80;
  }
  return result;
}

const char* address_class_name(AddressClass address_class) {
  switch (address_class) {
    case AddressClass::kPublic:
      return "public";
    case AddressClass::kLoopback:
      return "loopback";
    case AddressClass::kPrivate:
      return "private";
    case AddressClass::kLinkLocal:
      return "link-local";
    case AddressClass::kCgnat:
      return "carrier-grade NAT";
    case AddressClass::kUnspecified:
      return "unspecified";
    case AddressClass::kMulticast:
      return "multicast";
    case AddressClass::kReserved:
      return "reserved";
  }
  return "reserved";
}

AddressClass classify(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* ipv4 = reinterpret_cast<const sockaddr_in*>(address);
    return classify_ipv4(ntohl(ipv4->sin_addr.s_addr));
  }
  if (address->sa_family == AF_INET6) {
    const auto* ipv6 = reinterpret_cast<const sockaddr_in6*>(address);
    return classify_ipv6(ipv6->sin6_addr.s6_addr);
  }
  return AddressClass::kReserved;
}

std::optional<AddressClass> classify_ip(std::string_view address) {
  const std::string text(address);
  in_addr ipv4{};
  if (::inet_pton(AF_INET, text.c_str(), &ipv4) == 1) return classify_ipv4(ntohl(ipv4.s_addr));
  in6_addr ipv6{};
  if (::inet_pton(AF_INET6, text.c_str(), &ipv6) == 1) return classify_ipv6(ipv6.s6_addr);
  return std::nullopt;
}

bool is_allowed(AddressClass address_class, const UrlPolicy& policy) {
  switch (address_class) {
    case AddressClass::kPublic:
      return true;
    case AddressClass::kLoopback:
      return policy.allow_loopback;
    case AddressClass::kPrivate:
    case AddressClass::kLinkLocal:
    case AddressClass::kCgnat:
      return policy.allow_private;
    case AddressClass::kUnspecified:
    case AddressClass::kMulticast:
    case AddressClass::kReserved:
      return false;
  }
  return false;
}

GuardResult check_url(std::string_view url, const UrlPolicy& policy) {
  UrlParseResult parsed = parse_http_url(url);
  if (!parsed.ok()) return guard_error(std::move(parsed.error));
  GuardResult result;
  result.url = std::move(parsed.url);
  const std::string& host = result.url.host;

  if (result.url.host_is_ip) {
    const AddressClass address_class = classify_ip(host).value_or(AddressClass::kReserved);
    if (!is_allowed(address_class, policy))
      return guard_error("host is " + with_article(address_class) + " address (" + host + ")");
    result.address = host;
    return result;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
  if (rc != 0) {
    GuardResult unresolved =
        guard_error("host does not resolve (" + std::string(::gai_strerror(rc)) + ")");
    unresolved.unresolved = true;
    return unresolved;
  }

  std::string first_ipv4;
  std::string first_ipv6;
  for (const addrinfo* entry = addresses.get(); entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_addr == nullptr) continue;
    const AddressClass address_class = classify(entry->ai_addr);
    const std::string text = address_text(entry->ai_addr);
    if (!is_allowed(address_class, policy))
      return guard_error("host resolves to " + with_article(address_class) + " address (" + text +
                         ")");
    std::string& first = entry->ai_family == AF_INET ? first_ipv4 : first_ipv6;
    if (first.empty()) first = text;
  }
  // IPv4 first: the connection is pinned to one address, so there is no fallback between
  // families (Happy Eyeballs), and many hosts and containers have no IPv6 route.
  result.address = !first_ipv4.empty() ? first_ipv4 : first_ipv6;
  if (result.address.empty()) {
    GuardResult unresolved = guard_error("host has no addresses");
    unresolved.unresolved = true;
    return unresolved;
  }
  return result;
}

}  // namespace chat4all::connector
