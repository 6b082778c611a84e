// Blocking HTTP calls from channel adapters to their platforms' APIs (WhatsApp Cloud API,
// Instagram Messaging, Telegram Bot API), the one rule by which a failed call becomes a
// SendResult, and readers for the JSON the platforms send.
//
// Adapters call out through ProviderTransport rather than libcurl so that tests hand them a fake
// that records requests and returns canned answers; the registered adapters use CurlTransport.
//
// Unlike HttpSender (http_sender.h), which posts to URLs that users register and so guards
// against SSRF, these calls go to the platform URLs an operator configured in the topology: the
// URLs are trusted, the answers are read whole (up to kProviderResponseBytesMax) and connections
// are reused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nodes/connector/channel_adapter.h"

struct curl_slist;

namespace chat4all::connector {

// A platform answer larger than this is not read: the call fails with an error (status 0).
inline constexpr std::size_t kProviderResponseBytesMax = 4 * 1024 * 1024;
// The connect phase gets at most this much of a call's timeout.
inline constexpr std::uint32_t kProviderConnectTimeoutMaxMs = 5000;
// A Retry-After longer than this is taken as this: one answer must not park a channel for days.
inline constexpr std::uint32_t kProviderRetryAfterMaxMs = 3'600'000;

struct ProviderRequest {
  std::string method = "POST";  // "GET", "POST", or another verb (sent with the body)
  std::string url;              // http:// or https://
  // Sent as given, e.g. {"content-type", "application/json"}.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::uint32_t timeout_ms = 10'000;  // the whole call, connect included; 0 acts as 1
};

struct ProviderResponse {
  int status = 0;  // the HTTP status; 0 when no (usable) answer came: see `error`
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case; the last of repeated ones
  std::string error;                           // with status 0: what the transport said

  std::string header(const std::string& lower_case_name) const;
};

// Thread-safe: adapters call perform() from several worker threads at once.
class ProviderTransport {
 public:
  virtual ~ProviderTransport() = default;
  // Never throws for network failures: they come back as status 0 with an error.
  virtual ProviderResponse perform(const ProviderRequest& request) = 0;
};

// Appends request header fields to a libcurl header list (both the provider transport and the
// webhook sender build theirs with it); an error message, empty when every field was valid.
std::string append_curl_headers(const std::vector<std::pair<std::string, std::string>>& fields,
                                curl_slist*& list);

// ProviderTransport over libcurl easy handles: one handle per calling thread, kept between calls
// so that TLS connections to the platform are reused. Redirects are not followed (the answer is
// the 3xx), proxies named by the environment are ignored, only http and https are spoken, and
// no signal is used for timeouts (CURLOPT_NOSIGNAL), so that any thread may call.
class CurlTransport final : public ProviderTransport {
 public:
  CurlTransport();
  ProviderResponse perform(const ProviderRequest& request) override;
};

// The one rule for a call that did not succeed, shared by every adapter: no answer (timeout,
// connection error), 408, 429, 5xx, or an answer the platform marks as throttling
// (`rate_limited`, whatever its status) are worth another attempt (kRetry); any other answer is
// a refusal that repeating will not change (kRejected). `error` says what the platform said.
SendResult failed_send(const ProviderResponse& response, bool rate_limited,
                       std::uint32_t retry_after_ms, std::string error);

// The answer's Retry-After header (in seconds) in milliseconds, at most
// kProviderRetryAfterMaxMs; 0 when absent or not a number of seconds.
std::uint32_t retry_after_header_ms(const ProviderResponse& response);

// Seconds a platform asked to wait, in milliseconds, at most kProviderRetryAfterMaxMs.
std::uint32_t retry_after_seconds_to_ms(long long seconds);

// Compares two secrets (verify tokens, secret tokens) in time that does not depend on where they
// differ; only a difference in length is answered early.
bool secrets_equal(std::string_view expected, std::string_view offered);

// Readers of untrusted JSON that never throw: "" / 0 when `object` is not an object, or the key is
// absent or of another type. Whole numbers and their decimal strings are read as either
// ("timestamp":"1700000000" in WhatsApp, "chat":{"id":-100123} in Telegram).
std::string json_string(const nlohmann::json& object, const char* key);
std::int64_t json_integer(const nlohmann::json& object, const char* key);
// The member `key` of `object` when it is an object or array, else an empty (null) value.
const nlohmann::json& json_member(const nlohmann::json& object, const char* key);

}  // namespace chat4all::connector
