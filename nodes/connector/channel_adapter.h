// The interface every channel adapter implements, and the registry that finds
// one by the type a topology's `channels:` entry names.
//
// Adding a channel: a folder nodes/connector/adapters/<type>/ whose .cc files
// define a ChannelAdapter and register it with CHAT4ALL_REGISTER_ADAPTER, and
// a `channels:` entry in the topology. The build compiles every adapter folder
// into the binary; no other file changes (docs/channels.md walks through it).
//
// What the connector host does around an adapter, so that no adapter has to:
// it takes deliveries from the routers, runs at most `concurrency` sends at
// once on its own threads, keeps the circuit breaker, deduplicates by
// delivery id, records the provider's message id, and turns InboundEvents
// into stored messages and message states.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/topology.h"

namespace chat4all::connector {

// A configuration problem of an adapter (missing or malformed setting); the
// connector refuses to start with it.
class AdapterConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One delivery: one message to one recipient on this channel.
struct OutboundMessage {
  std::string delivery_id;  // "<message_id>/<recipient_id>/<channel>": the same on every retry
  std::string tenant_id;
  std::string conversation_id;
  std::uint64_t seq = 0;
  std::string message_id;
  std::string sender_id;
  std::string recipient_id;
  std::string address;   // the recipient's identity on the channel (phone number, IGSID, chat id)
  std::string text;      // payload type "text"
  std::string file_id;   // payload type "file"
  std::string metadata;  // JSON object text, or empty
};

struct SendResult {
  enum class Outcome {
    kAccepted,  // the platform took it (provider_message_id names it there)
    kRetry,     // a failure that may pass: timeout, connection error, 408, 429, 5xx
    kRejected,  // a failure that will not: bad recipient, bad credentials, 4xx
  };
  Outcome outcome = Outcome::kRetry;
  std::string provider_message_id;
  // The platform sends no delivery reports (Telegram): being accepted is
  // as far as it goes, so the host marks the message DELIVERED at once.
  bool delivered = false;
  int status_code = 0;               // the platform's HTTP status; 0 when none came
  std::string error;                 // with kRetry / kRejected: what the platform or transport said
  std::uint32_t retry_after_ms = 0;  // the platform asked to wait this long (429 Retry-After)
};

// A request a platform sent to  POST|GET /channels/<name>/webhook  on a
// connector's "http" endpoint.
struct WebhookRequest {
  std::string method;
  std::string target;                          // path and query, as sent
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  std::string header(const std::string& lower_case_name) const;
  // The decoded value of a query parameter, or "".
  std::string query_parameter(const std::string& name) const;
};

struct WebhookResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

// What a platform reported: a message one of its users sent to us, or the
// state of a message we sent.
struct InboundEvent {
  enum class Kind { kMessage, kStatus };
  Kind kind = Kind::kMessage;
  // kMessage: who sent it; kStatus: the recipient whose state it is.
  std::string address;
  // kMessage: the platform's id of the inbound message (deduplicates the
  // platform's own retries); kStatus: the id send_message returned.
  std::string provider_message_id;
  std::string state;  // kStatus: "DELIVERED" | "READ" | "FAILED"
  std::string error;  // kStatus FAILED: why
  std::string text;   // kMessage
  std::string file_id;
  // kMessage: the platform id of our message it replies to, when it says.
  std::string reply_to_provider_message_id;
  std::int64_t at_ms = 0;  // when the platform says it happened; 0: unknown
};

class ChannelAdapter {
 public:
  virtual ~ChannelAdapter() = default;

  // Checks the configuration and, where the platform allows, the credentials.
  // Throws on failure; the host logs it and tries again later, sending
  // nothing through this adapter until it succeeds.
  virtual void connect() = 0;

  // Blocking; the host calls them from its worker threads, several at once,
  // each bounded by the channel's timeout_ms.
  virtual SendResult send_message(const OutboundMessage& message) = 0;
  virtual SendResult send_file(const OutboundMessage& message) = 0;

  // A request from the platform: verify it (signature, secret token), answer
  // it, and append the events it carries. Called on the HTTP thread: parse,
  // do not call out. With a 2xx answer and events, the host answers only
  // once the events are stored (503 if that failed, so that the platform
  // sends them again).
  virtual WebhookResponse on_webhook(const WebhookRequest& request,
                                     std::vector<InboundEvent>& events) = 0;

  // Platforms that hand out updates only when asked (Telegram's getUpdates):
  // the host calls this in a loop on a thread of its own while it returns
  // true. Blocking (long polling) is fine; return false to stop polling.
  virtual bool poll_updates(std::vector<InboundEvent>& events) { return false; }
};

using AdapterFactory = std::function<std::unique_ptr<ChannelAdapter>(const ChannelSpec&)>;

// Registers `type` (once per process); returns true so that it can
// initialise a static. Throws if the type is registered twice.
bool register_adapter(const std::string& type, AdapterFactory factory);
// An adapter for `channel` (by channel.adapter); throws AdapterConfigError for
// an unknown type or what the factory throws.
std::unique_ptr<ChannelAdapter> make_adapter(const ChannelSpec& channel);
std::vector<std::string> registered_adapter_types();

// Settings of a channel, with errors that name the channel and the key.
std::string setting(const ChannelSpec& channel, const std::string& key);  // required
std::string setting_or(const ChannelSpec& channel, const std::string& key,
                       const std::string& fallback);
long setting_number_or(const ChannelSpec& channel, const std::string& key, long fallback);

}  // namespace chat4all::connector

// In an adapter's .cc file, at namespace scope:
//   CHAT4ALL_REGISTER_ADAPTER("whatsapp", WhatsAppAdapter)
#define CHAT4ALL_REGISTER_ADAPTER(type, AdapterClass)                     \
  static const bool chat4all_adapter_registered_##AdapterClass =          \
      ::chat4all::connector::register_adapter(                            \
          type,                                                           \
          [](const ::chat4all::ChannelSpec& channel)                      \
              -> std::unique_ptr<::chat4all::connector::ChannelAdapter> { \
            return std::make_unique<AdapterClass>(channel);               \
          });
