#include "nodes/connector/http_sender.h"

#include <arpa/inet.h>
#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>

#include "nodes/connector/curl_global.h"
#include "nodes/connector/provider_http.h"

namespace chat4all::connector {
namespace {

// How long the thread sleeps when nothing happens; curl_multi_wakeup() and curl's own timers
// cut it short, so this only bounds how long a lost wake-up could delay a post.
constexpr int kIdlePollMs = 1000;

CURLM* as_multi(void* multi) {
  return static_cast<CURLM*>(multi);
}

// The family and bytes of a numeric IPv4 or IPv6 address (brackets allowed), to compare two
// spellings of one address; nullopt for anything else.
std::optional<std::string> ip_bytes(std::string text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  in_addr ipv4{};
  if (::inet_pton(AF_INET, text.c_str(), &ipv4) == 1)
    return "4" + std::string(reinterpret_cast<const char*>(&ipv4), sizeof ipv4);
  in6_addr ipv6{};
  if (::inet_pton(AF_INET6, text.c_str(), &ipv6) == 1)
    return "6" + std::string(reinterpret_cast<const char*>(&ipv6), sizeof ipv6);
  return std::nullopt;
}

HttpResult::Error error_kind(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return HttpResult::Error::kTimeout;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return HttpResult::Error::kConnect;
    default:
      return HttpResult::Error::kOther;
  }
}

}  // namespace

struct HttpSender::Transfer {
  Transfer(HttpPost post_in, Done done_in) : post(std::move(post_in)), done(std::move(done_in)) {}
  ~Transfer() {
    // curl may read the lists until the handle is gone, so they are freed after it.
    if (easy != nullptr) curl_easy_cleanup(easy);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
  }
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;

  // Sets every option; returns an error message, empty on success.
  std::string configure();
  // curl's write callback: keeps the body's prefix, stops reading at kResponseBodyReadMax.
  static std::size_t keep_body_prefix(char* data, std::size_t size, std::size_t count, void* user);

  HttpPost post;
  Done done;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  curl_slist* resolve = nullptr;
  std::string body_prefix;
  std::size_t body_bytes_read = 0;
  bool body_cut = false;  // we stopped reading the body on purpose (kResponseBodyReadMax)
  char error_buffer[CURL_ERROR_SIZE] = {};
};

std::size_t HttpSender::Transfer::keep_body_prefix(char* data, std::size_t size, std::size_t count,
                                                   void* user) {
  auto& transfer = *static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  if (transfer.body_prefix.size() < kResponseBodyPrefixBytes)
    transfer.body_prefix.append(
        data, std::min(bytes, kResponseBodyPrefixBytes - transfer.body_prefix.size()));
  transfer.body_bytes_read += bytes;
  if (transfer.body_bytes_read > kResponseBodyReadMax) {
    // Returning less than given makes curl abort with CURLE_WRITE_ERROR: the status is known,
    // and a receiver streaming an endless body must not hold the slot until the timeout.
    transfer.body_cut = true;
    return 0;
  }
  return bytes;
}

namespace {

// "+host:port:address" pinning the URL's host to `address`; the "+" lets the entry expire from
// curl's DNS cache (after 60 s) instead of piling up one permanent entry per host ever sent to.
// Returns an error message, empty on success; `entry` stays empty when nothing is to be pinned.
std::string resolve_entry(const HttpPost& post, std::string& entry) {
  const auto pinned = ip_bytes(post.pinned_address);
  if (!pinned) return "pinned address is not a numeric IP address: " + post.pinned_address;
  // The host and port as curl itself reads them from the URL, so that the entry matches the
  // name curl looks up.
  CURLU* url = curl_url();
  if (url == nullptr) return "out of memory";
  char* host = nullptr;
  char* port = nullptr;
  std::string error;
  if (curl_url_set(url, CURLUPART_URL, post.url.c_str(), 0) != CURLUE_OK ||
      curl_url_get(url, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
      curl_url_get(url, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
    error = "malformed URL";
  } else if (const auto literal = ip_bytes(host)) {
    // curl connects to an IP literal host without resolving it, so the pin cannot apply: the
    // literal must be the pinned (checked) address itself. A mismatch means the URL was read
    // differently by whoever checked it.
    if (*literal != *pinned) error = "the URL's host is an IP address other than the pinned one";
  } else if (host[0] == '[') {
    error = "unsupported IPv6 host";  // e.g. with a zone id: never resolved, so never pinned
  } else {
    const bool is_ipv6 = pinned->front() == '6';
    entry = std::string("+") + host + ":" + port + ":" +
            (is_ipv6 ? "[" + post.pinned_address + "]" : post.pinned_address);
  }
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(url);
  return error;
}

}  // namespace

std::string HttpSender::Transfer::configure() {
  easy = curl_easy_init();
  if (easy == nullptr) return "curl_easy_init failed";

  if (auto error = append_curl_headers(post.headers, headers); !error.empty()) return error;
  // curl asks for "100 Continue" before bodies over 1 KiB and waits up to a second for it;
  // webhook receivers rarely answer it, so the body goes at once.
  if (curl_slist* appended = curl_slist_append(headers, "Expect:"); appended != nullptr)
    headers = appended;
  else
    return "out of memory";

  if (!post.pinned_address.empty()) {
    std::string entry;
    if (std::string error = resolve_entry(post, entry); !error.empty()) return error;
    if (!entry.empty()) {
      resolve = curl_slist_append(nullptr, entry.c_str());
      if (resolve == nullptr) return "out of memory";
    }
  }

  const long timeout_ms = std::max<std::uint32_t>(post.timeout_ms, 1);
  const long connect_timeout_ms = std::min<long>(timeout_ms, kConnectTimeoutMaxMs);
  bool ok = true;
  const auto set = [&](CURLoption option, auto value) {
    ok = ok && curl_easy_setopt(easy, option, value) == CURLE_OK;
  };
  set(CURLOPT_PRIVATE, static_cast<void*>(this));
  set(CURLOPT_ERRORBUFFER, error_buffer);
  set(CURLOPT_URL, post.url.c_str());
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_PROXY, "");  // "" disables proxies, including those named by the environment
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_TIMEOUT_MS, timeout_ms);
  set(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
  set(CURLOPT_USERAGENT, "chat4all");
  set(CURLOPT_HTTPHEADER, headers);
  set(CURLOPT_POST, 1L);
  set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post.body.size()));
  set(CURLOPT_POSTFIELDS, post.body.data());  // not copied: `post` outlives the handle
  set(CURLOPT_WRITEFUNCTION, &keep_body_prefix);
  set(CURLOPT_WRITEDATA, static_cast<void*>(this));
  if (resolve != nullptr) {
    set(CURLOPT_RESOLVE, resolve);
  } else if (post.pinned_address.empty()) {
    // Connections are pooled per sender and matched by host name, not address: an unpinned
    // post must neither leave behind a connection that a pinned post would reuse (it may lead
    // to an address the guard never saw) nor reuse one.
    set(CURLOPT_FRESH_CONNECT, 1L);
    set(CURLOPT_FORBID_REUSE, 1L);
  }
  return ok ? "" : "curl refused an option";
}

HttpSender::HttpSender(std::size_t in_flight_max, std::size_t queue_max)
    : in_flight_max_(std::max<std::size_t>(in_flight_max, 1)), queue_max_(queue_max) {
  ensure_curl_initialised();
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    std::fprintf(stderr, "fatal: curl_multi_init failed\n");
    std::abort();
  }
  thread_ = std::thread([this] { run(); });
}

HttpSender::~HttpSender() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  curl_multi_wakeup(as_multi(multi_));
  thread_.join();
  // Unfinished posts are dropped without their callbacks (see the header).
  for (auto& [easy, transfer] : in_flight_) curl_multi_remove_handle(as_multi(multi_), easy);
  in_flight_.clear();
  waiting_.clear();
  curl_multi_cleanup(as_multi(multi_));
}

bool HttpSender::submit(HttpPost post, Done done) {
  {
    std::lock_guard lock(mutex_);
    // Posts beyond the free in-flight slots are the ones waiting; at most queue_max_ of them.
    if (stopping_ || waiting_.size() + started_ >= in_flight_max_ + queue_max_) return false;
    waiting_.push_back(Pending{std::move(post), std::move(done)});
  }
  curl_multi_wakeup(as_multi(multi_));
  return true;
}

std::size_t HttpSender::queued() const {
  std::lock_guard lock(mutex_);
  return waiting_.size();
}

void HttpSender::run() {
  CURLM* multi = as_multi(multi_);
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    start_waiting_transfers();
    int running = 0;
    curl_multi_perform(multi, &running);
    bool finished_any = false;
    int messages_left = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &messages_left)) {
      if (message->msg != CURLMSG_DONE) continue;
      // The message dies with the handle: copy what is needed first.
      CURL* easy = message->easy_handle;
      const CURLcode code = message->data.result;
      finish_transfer(easy, code);
      finished_any = true;
    }
    // A finished post freed a slot: start the next one before sleeping.
    if (!finished_any) curl_multi_poll(multi, nullptr, 0, kIdlePollMs, nullptr);
  }
}

void HttpSender::start_waiting_transfers() {
  while (true) {
    Pending next;
    {
      std::lock_guard lock(mutex_);
      if (waiting_.empty() || started_ >= in_flight_max_) return;
      next = std::move(waiting_.front());
      waiting_.pop_front();
      ++started_;
    }
    auto transfer = std::make_unique<Transfer>(std::move(next.post), std::move(next.done));
    std::string error = transfer->configure();
    if (error.empty() && curl_multi_add_handle(as_multi(multi_), transfer->easy) != CURLM_OK)
      error = "curl_multi_add_handle failed";
    if (error.empty()) {
      CURL* easy = transfer->easy;
      in_flight_.emplace(easy, std::move(transfer));
      continue;
    }
    HttpResult result;
    result.error = HttpResult::Error::kOther;
    result.error_message = std::move(error);
    Done done = std::move(transfer->done);
    transfer.reset();
    {
      std::lock_guard lock(mutex_);
      --started_;
    }
    done(std::move(result));
  }
}

void HttpSender::finish_transfer(void* easy, int curl_code) {
  const auto found = in_flight_.find(easy);
  if (found == in_flight_.end()) return;
  std::unique_ptr<Transfer> transfer = std::move(found->second);
  in_flight_.erase(found);
  curl_multi_remove_handle(as_multi(multi_), easy);

  const auto code = static_cast<CURLcode>(curl_code);
  HttpResult result;
  long status = 0;
  curl_off_t total_us = 0;
  curl_off_t retry_after_s = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us);
  curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after_s);
  result.duration_ms = static_cast<std::uint32_t>(
      std::min<curl_off_t>(total_us / 1000, std::numeric_limits<std::uint32_t>::max()));
  const bool answered = code == CURLE_OK || (code == CURLE_WRITE_ERROR && transfer->body_cut);
  if (answered && status > 0) {
    result.status_code = static_cast<int>(status);
    if (retry_after_s > 0)
      result.retry_after_s = static_cast<std::uint32_t>(
          std::min<curl_off_t>(retry_after_s, std::numeric_limits<std::uint32_t>::max()));
    result.response_body_prefix = std::move(transfer->body_prefix);
  } else {
    result.error = answered ? HttpResult::Error::kOther : error_kind(code);
    result.error_message =
        transfer->error_buffer[0] != '\0' ? transfer->error_buffer : curl_easy_strerror(code);
  }

  Done done = std::move(transfer->done);
  transfer.reset();
  {
    // Before the callback, so that a callback submitting again finds the slot free.
    std::lock_guard lock(mutex_);
    --started_;
  }
  done(std::move(result));
}

}  // namespace chat4all::connector
