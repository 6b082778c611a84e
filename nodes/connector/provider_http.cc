#include "nodes/connector/provider_http.h"

#include <curl/curl.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "nodes/connector/curl_global.h"
#include "nodes/connector/retry_policy.h"

namespace chat4all::connector {

std::string append_curl_headers(const std::vector<std::pair<std::string, std::string>>& fields,
                                curl_slist*& list) {
  for (const auto& [name, value] : fields) {
    // A line break would let a header value start a header (or a body) of its own.
    if (name.empty() || name.find_first_of(":\r\n") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos)
      return "invalid header: " + name;
    // "name:" with nothing after it tells curl to remove the header; "name;" sends it empty.
    const std::string line = value.empty() ? name + ";" : name + ": " + value;
    curl_slist* appended = curl_slist_append(list, line.c_str());
    if (appended == nullptr) return "out of memory";
    list = appended;
  }
  return {};
}

namespace {

// The calling thread's easy handle, reset to no options but keeping its connection cache.
// Freed when the thread ends.
CURL* thread_easy_handle() {
  struct Holder {
    CURL* easy = nullptr;
    ~Holder() {
      if (easy != nullptr) curl_easy_cleanup(easy);
    }
  };
  thread_local Holder holder;
  if (holder.easy == nullptr)
    holder.easy = curl_easy_init();
  else
    curl_easy_reset(holder.easy);
  return holder.easy;
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

// What one call collects while curl runs it.
struct Exchange {
  ProviderResponse response;
  bool body_too_large = false;
  char error_buffer[CURL_ERROR_SIZE] = {};

  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto& exchange = *static_cast<Exchange*>(user);
    const std::size_t bytes = size * count;
    if (exchange.response.body.size() + bytes > kProviderResponseBytesMax) {
      // Returning less than given makes curl abort the transfer (CURLE_WRITE_ERROR).
      exchange.body_too_large = true;
      return 0;
    }
    exchange.response.body.append(data, bytes);
    return bytes;
  }

  static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
    auto& headers = static_cast<Exchange*>(user)->response.headers;
    const std::size_t bytes = size * count;
    const std::string_view line(data, bytes);
    // An interim answer (100 Continue) has headers of its own; keep only the final answer's.
    if (line.starts_with("HTTP/")) headers.clear();
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && colon > 0)
      headers[lower(trim(line.substr(0, colon)))] = std::string(trim(line.substr(colon + 1)));
    return bytes;
  }
};

// Sets every option for `request`; returns an error message, empty on success. `headers` is
// filled with the list the handle reads, for the caller to free after the transfer.
std::string configure(CURL* easy, const ProviderRequest& request, Exchange& exchange,
                      curl_slist*& headers) {
  if (auto error = append_curl_headers(request.headers, headers); !error.empty()) return error;
  // curl would ask for "100 Continue" before bodies over 1 KiB and wait for it; send at once.
  curl_slist* appended = curl_slist_append(headers, "Expect:");
  if (appended == nullptr) return "out of memory";
  headers = appended;

  const long timeout_ms = std::max<std::uint32_t>(request.timeout_ms, 1);
  bool ok = true;
  const auto set = [&](CURLoption option, auto value) {
    ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
  };
  set(CURLOPT_ERRORBUFFER, exchange.error_buffer);
  set(CURLOPT_URL, request.url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_PROXY, "");  // "" disables proxies, including those named by the environment
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TIMEOUT_MS, timeout_ms);
  set(CURLOPT_CONNECTTIMEOUT_MS, std::min<long>(timeout_ms, kProviderConnectTimeoutMaxMs));
  set(CURLOPT_USERAGENT, "chat4all");
  set(CURLOPT_HTTPHEADER, headers);
  set(CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kProviderResponseBytesMax));
  set(CURLOPT_WRITEFUNCTION, &Exchange::on_body);
  set(CURLOPT_WRITEDATA, static_cast<void*>(&exchange));
  set(CURLOPT_HEADERFUNCTION, &Exchange::on_header);
  set(CURLOPT_HEADERDATA, static_cast<void*>(&exchange));
  if (request.method == "GET") {
    set(CURLOPT_HTTPGET, 1L);
  } else {
    if (request.method != "POST") set(CURLOPT_CUSTOMREQUEST, request.method.c_str());
    set(CURLOPT_POST, 1L);
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    set(CURLOPT_POSTFIELDS, request.body.data());  // not copied: `request` outlives the call
  }
  return ok ? "" : "curl refused an option";
}

}  // namespace

std::string ProviderResponse::header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string() : it->second;
}

CurlTransport::CurlTransport() {
  ensure_curl_initialised();
}

ProviderResponse CurlTransport::perform(const ProviderRequest& request) {
  Exchange exchange;
  CURL* easy = thread_easy_handle();
  if (easy == nullptr) {
    exchange.response.error = "curl_easy_init failed";
    return exchange.response;
  }
  curl_slist* headers = nullptr;
  std::string error = configure(easy, request, exchange, headers);
  CURLcode code = CURLE_OK;
  if (error.empty()) code = curl_easy_perform(easy);
  long status = 0;
  if (error.empty()) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  // The handle is reused: it must not keep pointers into this call's buffers and list.
  curl_easy_reset(easy);
  curl_slist_free_all(headers);

  ProviderResponse& response = exchange.response;
  if (error.empty() && code == CURLE_OK && status > 0) {
    response.status = static_cast<int>(status);
    return response;
  }
  if (!error.empty())
    response.error = std::move(error);
  else if (exchange.body_too_large || code == CURLE_FILESIZE_EXCEEDED)
    response.error = "answer larger than " + std::to_string(kProviderResponseBytesMax) + " bytes";
  else
    response.error =
        exchange.error_buffer[0] != '\0' ? exchange.error_buffer : curl_easy_strerror(code);
  response.status = 0;
  response.body.clear();
  response.headers.clear();
  return response;
}

SendResult failed_send(const ProviderResponse& response, bool rate_limited,
                       std::uint32_t retry_after_ms, std::string error) {
  SendResult result;
  result.status_code = response.status;
  result.retry_after_ms = retry_after_ms;
  result.error = std::move(error);
  const bool worth_retrying =
      response.status == 0 || rate_limited || is_retryable_status(response.status);
  result.outcome = worth_retrying ? SendResult::Outcome::kRetry : SendResult::Outcome::kRejected;
  return result;
}

std::uint32_t retry_after_seconds_to_ms(long long seconds) {
  if (seconds <= 0) return 0;
  if (seconds >= kProviderRetryAfterMaxMs / 1000) return kProviderRetryAfterMaxMs;
  return static_cast<std::uint32_t>(seconds * 1000);
}

std::uint32_t retry_after_header_ms(const ProviderResponse& response) {
  const std::string value(trim(response.header("retry-after")));
  long long seconds = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  // An HTTP date is possible too; platforms send seconds, and a date is taken as "not said".
  if (error != std::errc() || end != value.data() + value.size()) return 0;
  return retry_after_seconds_to_ms(seconds);
}

bool secrets_equal(std::string_view expected, std::string_view offered) {
  if (expected.size() != offered.size()) return false;
  if (expected.empty()) return true;
  return sodium_memcmp(expected.data(), offered.data(), expected.size()) == 0;
}

std::string json_string(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return {};
  const auto it = object.find(key);
  if (it == object.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  return {};
}

std::int64_t json_integer(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return 0;
  const auto it = object.find(key);
  if (it == object.end()) return 0;
  if (it->is_number_integer()) return it->get<std::int64_t>();
  if (!it->is_string()) return 0;
  const auto& text = it->get_ref<const std::string&>();
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() ? value : 0;
}

const nlohmann::json& json_member(const nlohmann::json& object, const char* key) {
  static const nlohmann::json kAbsent;
  if (!object.is_object()) return kAbsent;
  const auto it = object.find(key);
  if (it == object.end() || !(it->is_object() || it->is_array())) return kAbsent;
  return *it;
}

}  // namespace chat4all::connector
