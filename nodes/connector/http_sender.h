// Asynchronous HTTP POSTs (webhook deliveries, channel APIs) on libcurl's multi interface,
// driven by one thread the sender owns.
//
// Threading: submit() is thread-safe and never blocks on the network. Completion callbacks run
// on the sender's thread, one at a time: they must be quick, must not throw, and must not
// destroy the sender (they may submit() again). The sender must outlive every submit() call.
//
// Bounds: at most `in_flight_max` posts are on the wire; at most `queue_max` more wait for a
// slot. At that bound submit() refuses (returns false, never calls `done`) and the caller
// decides: retry later, record a failed attempt, shed load.
//
// Shutdown: the destructor stops the thread and drops the callbacks of posts still waiting or
// in flight without calling them (their outcome is unknown: the receiver may or may not have
// got them). Callers that need an answer per post keep their own record (e.g. the durable
// delivery state) and attempt again after a restart.
//
// Safety of what is sent, whatever the URL:
// - redirects are never followed (one could lead to a private address), the answer is the 3xx;
// - only http and https are spoken; proxies from the environment (http_proxy, ...) are ignored,
//   because a proxy would resolve and connect on our behalf past the URL guard;
// - with `pinned_address` the connection goes to exactly that address (curl's CURLOPT_RESOLVE),
//   whatever DNS says by then: pass GuardResult::address from check_url() (url_guard.h) so that
//   the address checked is the address connected to (no DNS rebinding in between). Posts
//   without a pinned address never share connections with pinned ones;
// - at most kResponseBodyPrefixBytes of the answer's body are kept and kResponseBodyReadMax are
//   read; the rest is not downloaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace chat4all::connector {

inline constexpr std::size_t kResponseBodyPrefixBytes = 512;
inline constexpr std::size_t kResponseBodyReadMax = 64 * 1024;
// The connect phase gets at most this much of a post's timeout.
inline constexpr std::uint32_t kConnectTimeoutMaxMs = 5000;

struct HttpPost {
  std::string url;  // http:// or https://
  // Sent as given, e.g. {"content-type", "application/json"}. Without a content-type the body
  // goes out as application/x-www-form-urlencoded (curl's default for POST).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::uint32_t timeout_ms = 10'000;  // whole attempt, connect included; 0 acts as 1
  // Numeric IPv4 or IPv6 address (no brackets) to connect to instead of resolving the URL's
  // host; empty: resolve normally. When the URL's host is an IP literal it must be that same
  // address (else the post fails with kOther without being sent).
  std::string pinned_address;
};

struct HttpResult {
  enum class Error { kNone, kTimeout, kConnect, kOther };

  int status_code = 0;  // 0 when there is no complete HTTP answer (error != kNone)
  Error error = Error::kNone;
  std::string error_message;      // curl's description when error != kNone
  std::uint32_t duration_ms = 0;  // from the start of the transfer (queueing not included)
  std::optional<std::uint32_t> retry_after_s;  // Retry-After (seconds or HTTP date), when > 0
  std::string response_body_prefix;            // the first kResponseBodyPrefixBytes of the body
};

class HttpSender {
 public:
  using Done = std::function<void(HttpResult)>;

  // `in_flight_max` of 0 acts as 1.
  HttpSender(std::size_t in_flight_max, std::size_t queue_max);
  ~HttpSender();
  HttpSender(const HttpSender&) = delete;
  HttpSender& operator=(const HttpSender&) = delete;

  // Queues `post`; `done` is called on the sender's thread once it finished. Returns false (and
  // drops both without calling `done`) when queue_max posts are already waiting.
  bool submit(HttpPost post, Done done);

  // Posts waiting for a slot, for a gauge. Thread-safe.
  std::size_t queued() const;

 private:
  struct Transfer;
  struct Pending {
    HttpPost post;
    Done done;
  };

  void run();
  void start_waiting_transfers();
  void finish_transfer(void* easy, int curl_code);

  const std::size_t in_flight_max_;
  const std::size_t queue_max_;
  void* multi_ = nullptr;  // CURLM*, kept opaque so that users need not include curl

  mutable std::mutex mutex_;
  std::deque<Pending> waiting_;  // guarded by mutex_
  std::size_t started_ = 0;      // guarded by mutex_: taken from waiting_, not yet finished
  bool stopping_ = false;        // guarded by mutex_

  // Owned by the sender's thread.
  std::unordered_map<void*, std::unique_ptr<Transfer>> in_flight_;

  std::thread thread_;
};

}  // namespace chat4all::connector
