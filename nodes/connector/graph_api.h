// What the WhatsApp Cloud API and Instagram Messaging adapters share: both are Meta Graph API
// products, with the same base URL and version in the path, Bearer-token calls, Graph-shaped
// errors ({"error":{"message","type","code",...}}), and the same webhooks: a GET subscription
// handshake (hub.mode / hub.verify_token / hub.challenge) and POSTs signed with
// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body, app secret)>`.
//
// Settings read (see read_graph_api_config): base_url (default https://graph.facebook.com),
// api_version (default v21.0), access_token (required), app_secret (required),
// verify_token (optional: without it every subscription handshake is refused),
// document_link_prefix (optional: a file's link is prefix + file_id, else the file_id itself).
//
// Thread-safety: a GraphApiClient is immutable after construction; any thread may call it.
// libsodium must have been initialised (auth::init_crypto()); the constructor makes sure.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/provider_http.h"

namespace chat4all::connector {

struct GraphApiConfig {
  std::string platform;  // "whatsapp" or "instagram": names the platform in error messages
  std::string base_url;  // without a trailing slash
  std::string api_version;
  std::string access_token;
  std::string app_secret;
  std::string verify_token;
  std::string document_link_prefix;
  std::uint32_t timeout_ms = 10'000;  // one call to the platform (the channel's timeout_ms)
};

// Reads the shared settings of `channel`; throws AdapterConfigError naming a missing one.
GraphApiConfig read_graph_api_config(const ChannelSpec& channel, std::string platform);

// Graph error codes that mean "slow down" whatever the HTTP status: 4 (application request
// limit), 613 (calls to this API exceeded the rate limit), 80007 (Instagram / WhatsApp Business
// account rate limit), 130429 (WhatsApp Cloud API throughput reached), 131056 (WhatsApp pair rate
// limit: too many messages to one recipient).
bool is_graph_rate_limit_code(long long code);

// True when `signature_header` is "sha256=" + the lower- or upper-case hex HMAC-SHA256 of `body`
// under `app_secret`. Compares in constant time.
bool verify_hub_signature(std::string_view app_secret, std::string_view body,
                          std::string_view signature_header);

// "sha256=<hex>": what Meta sends for `body`; for tests and simulators.
std::string hub_signature(std::string_view app_secret, std::string_view body);

class GraphApiClient {
 public:
  GraphApiClient(GraphApiConfig config, std::shared_ptr<ProviderTransport> transport);

  // POSTs `body` to {base_url}/{api_version}/{node}/messages with the access token. On a 2xx
  // answer, the message is accepted with the id `message_id_of` reads from the answer's JSON
  // ("" when the answer has none: the platform took the message, so sending it again would
  // duplicate it). Other answers are classified by failed_send() (provider_http.h).
  SendResult send(const std::string& node, const nlohmann::json& body,
                  const std::function<std::string(const nlohmann::json&)>& message_id_of) const;

  // The link of a file message: document_link_prefix + file_id.
  std::string file_link(const std::string& file_id) const;

  // The part of a webhook that does not depend on the product: answers the GET subscription
  // handshake, refuses other verbs and badly signed POSTs (401), and parses the body of a good
  // POST into `payload`. Returns the answer to send when the request is dealt with, or nullopt
  // when `payload` holds a verified body for the adapter to read (a body that is not JSON is
  // answered 400).
  std::optional<WebhookResponse> screen_webhook(const WebhookRequest& request,
                                                nlohmann::json& payload) const;

  const GraphApiConfig& config() const { return config_; }

 private:
  SendResult failed(const ProviderResponse& response) const;

  const GraphApiConfig config_;
  const std::shared_ptr<ProviderTransport> transport_;
};

// The answer Meta expects once a webhook's events are taken.
WebhookResponse graph_event_received();

// What the two Graph products' adapters share beyond the client: nothing to connect (the
// settings are checked by the constructor; a bad access token shows as a rejected first send,
// HTTP 401 with Graph code 190, whose error names it), a text or a file sent through one
// product-shaped send(), and webhooks screened by the client, kept only when they are about the
// product's "object", and read entry by entry. A product adapter says only what differs.
//
// Thread-safety: immutable after construction; every method may be called from any thread.
class GraphApiAdapter : public ChannelAdapter {
 public:
  void connect() override {}
  SendResult send_message(const OutboundMessage& message) override;
  SendResult send_file(const OutboundMessage& message) override;
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override;

 protected:
  // `webhook_object`: the "object" of the product's webhooks ("whatsapp_business_account",
  // "instagram"); webhooks of other objects (another product on the same app) carry nothing.
  GraphApiAdapter(GraphApiConfig config, std::shared_ptr<ProviderTransport> transport,
                  std::string webhook_object);

  // The product's message body of a text, of a file.
  virtual nlohmann::json text_message(const OutboundMessage& message) const = 0;
  virtual nlohmann::json file_message(const OutboundMessage& message) const = 0;
  // Sends `message_body` (as made above) to `message`'s recipient.
  virtual SendResult send(const OutboundMessage& message, nlohmann::json message_body) const = 0;
  // Appends the events of one "entry" of a verified webhook.
  virtual void read_entry(const nlohmann::json& entry, std::vector<InboundEvent>& events) const = 0;

  const GraphApiClient graph_;

 private:
  const std::string webhook_object_;
};

}  // namespace chat4all::connector
