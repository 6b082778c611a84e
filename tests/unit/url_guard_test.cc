// SSRF guard for webhook URLs: common/url_guard.h.
#include "common/url_guard.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

namespace chat4all::connector {
namespace {

TEST(UrlGuardTest, ParsesWellFormedUrls) {
  struct Case {
    std::string url, scheme, host;
    bool host_is_ip;
    std::uint16_t port;
    std::string target;
  };
  const std::vector<Case> cases = {
      {"https://hooks.example.com/chat4all", "https", "hooks.example.com", false, 443, "/chat4all"},
      {"http://hooks.example.com", "http", "hooks.example.com", false, 80, "/"},
      {"HTTPS://Hooks.Example.COM:8443/a/B?x=1&y=%20", "https", "hooks.example.com", false, 8443,
       "/a/B?x=1&y=%20"},
      {"https://example.com?x=1", "https", "example.com", false, 443, "/?x=1"},
      {"https://example.com/p#fragment", "https", "example.com", false, 443, "/p"},
      {"https://example.com.:1/", "https", "example.com.", false, 1, "/"},
      {"http://my_host-1.internal:65535/", "http", "my_host-1.internal", false, 65535, "/"},
      {"http://93.184.216.34/x", "http", "93.184.216.34", true, 80, "/x"},
      {"http://[2606:2800:220:1:248:1893:25C8:1946]:8080/x", "http",
       "2606:2800:220:1:248:1893:25c8:1946", true, 8080, "/x"},
      {"https://[::1]", "https", "::1", true, 443, "/"},
      {"https://[::ffff:127.0.0.1]/", "https", "::ffff:127.0.0.1", true, 443, "/"},
  };
  for (const Case& c : cases) {
    const UrlParseResult result = parse_http_url(c.url);
    ASSERT_TRUE(result.ok()) << c.url << ": " << result.error;
    EXPECT_EQ(result.url.scheme, c.scheme) << c.url;
    EXPECT_EQ(result.url.host, c.host) << c.url;
    EXPECT_EQ(result.url.host_is_ip, c.host_is_ip) << c.url;
    EXPECT_EQ(result.url.port, c.port) << c.url;
    EXPECT_EQ(result.url.target, c.target) << c.url;
  }
}

TEST(UrlGuardTest, RefusesMalformedOrDangerousUrls) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "URL is empty"},
      {"ftp://example.com/", "scheme must be http or https"},
      {"file:///etc/passwd", "scheme must be http or https"},
      {"gopher://example.com/", "scheme must be http or https"},
      {"example.com/hook", "URL must be absolute"},
      {"//example.com/hook", "URL must be absolute"},
      {"https://user:pass@example.com/", "user info"},
      {"https://example.com@127.0.0.1/", "user info"},
      {"https:///path", "URL has no host"},
      {"https://:80/path", "URL has no host"},
      {"https://exa mple.com/", "space"},
      {"https://example.com/a b", "space"},
      {"https://example.com/\r\nHost: evil", "control"},
      {std::string("https://example.com/\0", 21), "control"},
      {"https://bücher.example/", "non-ASCII"},
      {"https://example.com:0/", "port must be"},
      {"https://example.com:65536/", "port must be"},
      {"https://example.com:/", "port must be"},
      {"https://example.com:80x/", "port must be"},
      {"https://example.com:-1/", "port must be"},
      {"https://example..com/", "empty label"},
      {"https://.example.com/", "empty label"},
      {"https://exa$mple.com/", "contains '$'"},
      {"https://example.com\\@evil.com/", "user info"},
      {"https://127.1/", "not a dotted-quad"},
      {"https://2130706433/", "not a dotted-quad"},
      {"https://0x7f.0.0.1/", "not a dotted-quad"},
      {"https://0177.0.0.1/", "not a dotted-quad"},
      {"https://1.2.3.4.5/", "not a dotted-quad"},
      {"https://[::1/", "missing its ']'"},
      {"https://[::1]x/", "unexpected text"},
      {"https://[fe80::1%25eth0]/", "IPv6 host is malformed"},
      {"https://[example.com]/", "IPv6 host is malformed"},
      {"https://" + std::string(64, 'a') + ".com/", "longer than 63"},
      {"https://example.com/" + std::string(2100, 'a'), "longer than 2048"},
  };
  for (const auto& [url, error] : cases) {
    const UrlParseResult result = parse_http_url(url);
    EXPECT_FALSE(result.ok()) << url;
    EXPECT_NE(result.error.find(error), std::string::npos)
        << url << ": got \"" << result.error << "\", want \"" << error << "\"";
  }
}

TEST(UrlGuardTest, ClassifiesIpv4) {
  const std::vector<std::pair<std::string, AddressClass>> cases = {
      {"93.184.216.34", AddressClass::kPublic},
      {"8.8.8.8", AddressClass::kPublic},
      {"1.1.1.1", AddressClass::kPublic},
      {"0.0.0.0", AddressClass::kUnspecified},
      {"0.255.255.255", AddressClass::kUnspecified},
      {"10.0.0.1", AddressClass::kPrivate},
      {"10.255.255.255", AddressClass::kPrivate},
      {"11.0.0.1", AddressClass::kPublic},
      {"100.63.255.255", AddressClass::kPublic},
      {"100.64.0.1", AddressClass::kCgnat},
      {"100.127.255.255", AddressClass::kCgnat},
      {"100.128.0.0", AddressClass::kPublic},
      {"127.0.0.1", AddressClass::kLoopback},
      {"127.255.255.254", AddressClass::kLoopback},
      {"169.254.169.254", AddressClass::kLinkLocal},
      {"172.15.255.255", AddressClass::kPublic},
      {"172.16.0.1", AddressClass::kPrivate},
      {"172.31.255.255", AddressClass::kPrivate},
      {"172.32.0.0", AddressClass::kPublic},
      {"192.0.0.8", AddressClass::kReserved},
      {"192.0.2.1", AddressClass::kReserved},
      {"192.88.99.1", AddressClass::kReserved},
      {"192.167.255.255", AddressClass::kPublic},
      {"192.168.1.1", AddressClass::kPrivate},
      {"192.169.0.0", AddressClass::kPublic},
      {"198.17.255.255", AddressClass::kPublic},
      {"198.18.0.1", AddressClass::kReserved},
      {"198.19.255.255", AddressClass::kReserved},
      {"198.20.0.0", AddressClass::kPublic},
      {"198.51.100.7", AddressClass::kReserved},
      {"203.0.113.9", AddressClass::kReserved},
      {"223.255.255.255", AddressClass::kPublic},
      {"224.0.0.1", AddressClass::kMulticast},
      {"239.255.255.250", AddressClass::kMulticast},
      {"240.0.0.1", AddressClass::kReserved},
      {"255.255.255.255", AddressClass::kReserved},
  };
  for (const auto& [address, expected] : cases)
    EXPECT_EQ(classify_ip(address), expected) << address;
}

TEST(UrlGuardTest, ClassifiesIpv6AndMappedIpv4) {
  const std::vector<std::pair<std::string, AddressClass>> cases = {
      {"2606:2800:220:1:248:1893:25c8:1946", AddressClass::kPublic},
      {"2a00:1450:4001:82b::200e", AddressClass::kPublic},
      {"2001:4860:4860::8888", AddressClass::kPublic},
      {"::", AddressClass::kUnspecified},
      {"::1", AddressClass::kLoopback},
      {"::2", AddressClass::kReserved},
      {"::127.0.0.1", AddressClass::kReserved},  // deprecated IPv4-compatible
      {"::ffff:127.0.0.1", AddressClass::kLoopback},
      {"::ffff:7f00:1", AddressClass::kLoopback},
      {"::ffff:10.1.2.3", AddressClass::kPrivate},
      {"::ffff:169.254.169.254", AddressClass::kLinkLocal},
      {"::ffff:0.0.0.0", AddressClass::kUnspecified},
      {"::ffff:93.184.216.34", AddressClass::kPublic},
      {"64:ff9b::127.0.0.1", AddressClass::kLoopback},
      {"64:ff9b::93.184.216.34", AddressClass::kPublic},
      {"64:ff9b:1::1", AddressClass::kReserved},
      {"100::1", AddressClass::kReserved},
      {"fc00::1", AddressClass::kPrivate},
      {"fd12:3456:789a::1", AddressClass::kPrivate},
      {"fe80::1", AddressClass::kLinkLocal},
      {"febf:ffff::1", AddressClass::kLinkLocal},
      {"fec0::1", AddressClass::kPrivate},
      {"ff02::1", AddressClass::kMulticast},
      {"ff05::1:3", AddressClass::kMulticast},
      {"2001:db8::1", AddressClass::kReserved},
      {"2001::1", AddressClass::kReserved},  // Teredo
      {"2001:1ff::1", AddressClass::kReserved},
      {"2001:200::1", AddressClass::kPublic},
      {"2002:7f00:1::1", AddressClass::kReserved},  // 6to4
      {"3fff::1", AddressClass::kReserved},
      {"3fff:1000::1", AddressClass::kPublic},
      {"4000::1", AddressClass::kReserved},
  };
  for (const auto& [address, expected] : cases)
    EXPECT_EQ(classify_ip(address), expected) << address;
  EXPECT_FALSE(classify_ip("example.com"));
  EXPECT_FALSE(classify_ip("127.1"));
  EXPECT_FALSE(classify_ip("[::1]"));
}

TEST(UrlGuardTest, ClassifiesSockaddrs) {
  sockaddr_in ipv4{};
  ipv4.sin_family = AF_INET;
  ASSERT_EQ(::inet_pton(AF_INET, "192.168.0.10", &ipv4.sin_addr), 1);
  EXPECT_EQ(classify(reinterpret_cast<const sockaddr*>(&ipv4)), AddressClass::kPrivate);
  sockaddr_in6 ipv6{};
  ipv6.sin6_family = AF_INET6;
  ASSERT_EQ(::inet_pton(AF_INET6, "::ffff:127.0.0.2", &ipv6.sin6_addr), 1);
  EXPECT_EQ(classify(reinterpret_cast<const sockaddr*>(&ipv6)), AddressClass::kLoopback);
  sockaddr unix_family{};
  unix_family.sa_family = AF_UNIX;
  EXPECT_EQ(classify(&unix_family), AddressClass::kReserved);
}

TEST(UrlGuardTest, PolicyDecisions) {
  const UrlPolicy strict;
  const UrlPolicy loopback{.allow_loopback = true};
  const UrlPolicy lan{.allow_private = true};
  const UrlPolicy both{.allow_loopback = true, .allow_private = true};
  EXPECT_TRUE(is_allowed(AddressClass::kPublic, strict));
  for (const auto address_class :
       {AddressClass::kLoopback, AddressClass::kPrivate, AddressClass::kLinkLocal,
        AddressClass::kCgnat, AddressClass::kUnspecified, AddressClass::kMulticast,
        AddressClass::kReserved})
    EXPECT_FALSE(is_allowed(address_class, strict)) << address_class_name(address_class);
  EXPECT_TRUE(is_allowed(AddressClass::kLoopback, loopback));
  EXPECT_FALSE(is_allowed(AddressClass::kPrivate, loopback));
  EXPECT_FALSE(is_allowed(AddressClass::kLoopback, lan));
  EXPECT_TRUE(is_allowed(AddressClass::kPrivate, lan));
  EXPECT_TRUE(is_allowed(AddressClass::kLinkLocal, lan));
  EXPECT_TRUE(is_allowed(AddressClass::kCgnat, lan));
  for (const auto address_class :
       {AddressClass::kUnspecified, AddressClass::kMulticast, AddressClass::kReserved})
    EXPECT_FALSE(is_allowed(address_class, both)) << address_class_name(address_class);
}

TEST(UrlGuardTest, ChecksIpLiteralsWithoutResolving) {
  GuardResult result = check_url("http://127.0.0.1:8080/hook", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.error, "host is a loopback address (127.0.0.1)");

  result = check_url("http://127.0.0.1:8080/hook", UrlPolicy{.allow_loopback = true});
  ASSERT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.address, "127.0.0.1");
  EXPECT_EQ(result.url.port, 8080);
  EXPECT_EQ(result.url.target, "/hook");

  result = check_url("https://[::ffff:169.254.169.254]/latest/meta-data", UrlPolicy{});
  EXPECT_EQ(result.error, "host is a link-local address (::ffff:169.254.169.254)");
  result = check_url("https://0.0.0.0/", UrlPolicy{.allow_loopback = true, .allow_private = true});
  EXPECT_EQ(result.error, "host is an unspecified address (0.0.0.0)");
  result = check_url("https://100.64.1.1/", UrlPolicy{});
  EXPECT_EQ(result.error, "host is a carrier-grade NAT address (100.64.1.1)");

  result = check_url("https://93.184.216.34/hook", UrlPolicy{});
  ASSERT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.address, "93.184.216.34");

  result = check_url("ftp://93.184.216.34/", UrlPolicy{});
  EXPECT_EQ(result.error, "scheme must be http or https");
}

TEST(UrlGuardTest, ResolvesLocalhostAndRefusesItUnlessAllowed) {
  // "localhost" resolves from /etc/hosts (or glibc's built-in), no DNS server involved.
  GuardResult result = check_url("http://localhost:9000/hook", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.error.starts_with("host resolves to a loopback address (")) << result.error;

  result = check_url("http://localhost:9000/hook", UrlPolicy{.allow_private = true});
  EXPECT_FALSE(result.ok()) << "private does not cover loopback";

  result = check_url("http://LocalHost:9000/hook", UrlPolicy{.allow_loopback = true});
  ASSERT_TRUE(result.ok()) << result.error;
  EXPECT_EQ(result.url.host, "localhost");
  EXPECT_EQ(classify_ip(result.address), AddressClass::kLoopback) << result.address;
  // IPv4 is preferred when the name has both.
  EXPECT_EQ(result.address, "127.0.0.1");
}

TEST(UrlGuardTest, AHostThatDoesNotResolveIsUnresolvedNotRefused) {
  // ".invalid" never resolves (RFC 6761): what a resolver outage looks like to getaddrinfo.
  GuardResult result = check_url("https://hooks.example.invalid/hook", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_TRUE(result.unresolved) << result.error;
  EXPECT_TRUE(result.error.starts_with("host does not resolve (")) << result.error;

  // What a host resolves to, or the URL itself, being forbidden is a refusal.
  result = check_url("http://localhost:9000/hook", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_FALSE(result.unresolved);
  result = check_url("http://10.0.0.1/hook", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_FALSE(result.unresolved);
  result = check_url("ftp://hooks.example.invalid/", UrlPolicy{});
  EXPECT_FALSE(result.ok());
  EXPECT_FALSE(result.unresolved);
}

}  // namespace
}  // namespace chat4all::connector
