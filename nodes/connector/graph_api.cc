#include "nodes/connector/graph_api.h"

#include <sodium.h>

#include <array>
#include <stdexcept>
#include <utility>

namespace chat4all::connector {
namespace {

constexpr std::string_view kSignaturePrefix = "sha256=";

using Mac = std::array<unsigned char, crypto_auth_hmacsha256_BYTES>;

Mac hmac_sha256(std::string_view key, std::string_view body) {
  // The init/update/final form takes a key of any length (Meta's app secrets are 32 hex
  // characters); crypto_auth_hmacsha256() would want exactly 32 bytes.
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(key.data()),
                              key.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  Mac mac{};
  crypto_auth_hmacsha256_final(&state, mac.data());
  sodium_memzero(&state, sizeof state);
  return mac;
}

WebhookResponse answer(int status, std::string body) {
  WebhookResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

std::string without_trailing_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

}  // namespace

GraphApiConfig read_graph_api_config(const ChannelSpec& channel, std::string platform) {
  GraphApiConfig config;
  config.platform = std::move(platform);
  config.base_url =
      without_trailing_slash(setting_or(channel, "base_url", "https://graph.facebook.com"));
  config.api_version = setting_or(channel, "api_version", "v21.0");
  config.access_token = setting(channel, "access_token");
  config.app_secret = setting(channel, "app_secret");
  config.verify_token = setting_or(channel, "verify_token", "");
  config.document_link_prefix = setting_or(channel, "document_link_prefix", "");
  config.timeout_ms = channel.timeout_ms;
  if (config.base_url.empty() || config.api_version.empty())
    throw AdapterConfigError("channel '" + channel.name +
                             "': settings.base_url and settings.api_version must not be empty");
  return config;
}

bool is_graph_rate_limit_code(long long code) {
  return code == 4 || code == 613 || code == 80007 || code == 130429 || code == 131056;
}

bool verify_hub_signature(std::string_view app_secret, std::string_view body,
                          std::string_view signature_header) {
  if (!signature_header.starts_with(kSignaturePrefix)) return false;
  const std::string_view hex = signature_header.substr(kSignaturePrefix.size());
  Mac offered{};
  std::size_t offered_length = 0;
  const char* hex_end = nullptr;
  if (hex.size() != 2 * offered.size() ||
      sodium_hex2bin(offered.data(), offered.size(), hex.data(), hex.size(), nullptr,
                     &offered_length, &hex_end) != 0 ||
      offered_length != offered.size() || hex_end != hex.data() + hex.size())
    return false;
  const Mac expected = hmac_sha256(app_secret, body);
  return sodium_memcmp(expected.data(), offered.data(), expected.size()) == 0;
}

std::string hub_signature(std::string_view app_secret, std::string_view body) {
  const Mac mac = hmac_sha256(app_secret, body);
  std::array<char, 2 * crypto_auth_hmacsha256_BYTES + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), mac.data(), mac.size());
  return std::string(kSignaturePrefix) + hex.data();
}

GraphApiClient::GraphApiClient(GraphApiConfig config, std::shared_ptr<ProviderTransport> transport)
    : config_(std::move(config)), transport_(std::move(transport)) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  if (transport_ == nullptr) throw std::invalid_argument("GraphApiClient needs a transport");
}

SendResult GraphApiClient::send(
    const std::string& node, const nlohmann::json& body,
    const std::function<std::string(const nlohmann::json&)>& message_id_of) const {
  ProviderRequest request;
  request.method = "POST";
  request.url = config_.base_url + "/" + config_.api_version + "/" + node + "/messages";
  request.headers = {{"Authorization", "Bearer " + config_.access_token},
                     {"Content-Type", "application/json"}};
  request.body = body.dump();
  request.timeout_ms = config_.timeout_ms;
  const ProviderResponse response = transport_->perform(request);
  if (response.status < 200 || response.status > 299) return failed(response);

  SendResult result;
  result.outcome = SendResult::Outcome::kAccepted;
  result.status_code = response.status;
  const auto answer_json = nlohmann::json::parse(response.body, nullptr, false);
  if (!answer_json.is_discarded()) result.provider_message_id = message_id_of(answer_json);
  return result;
}

SendResult GraphApiClient::failed(const ProviderResponse& response) const {
  if (response.status == 0)
    return failed_send(response, false, 0, config_.platform + ": no answer: " + response.error);
  // {"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,...}}
  const auto body = nlohmann::json::parse(response.body, nullptr, false);
  const nlohmann::json& error = json_member(body, "error");
  const std::int64_t code = json_integer(error, "code");
  std::string message = json_string(error, "message");
  if (message.empty()) message = response.body.substr(0, 200);
  std::string text =
      config_.platform + ": HTTP " + std::to_string(response.status) + ": " + message;
  if (code != 0) text += " (code " + std::to_string(code) + ")";
  return failed_send(response, is_graph_rate_limit_code(code), retry_after_header_ms(response),
                     std::move(text));
}

std::string GraphApiClient::file_link(const std::string& file_id) const {
  return config_.document_link_prefix + file_id;
}

std::optional<WebhookResponse> GraphApiClient::screen_webhook(const WebhookRequest& request,
                                                              nlohmann::json& payload) const {
  if (request.method == "GET") {
    // The subscription handshake: Meta proves it was given our verify token, we echo its
    // challenge. Without a configured token no one can subscribe.
    const bool verified =
        request.query_parameter("hub.mode") == "subscribe" && !config_.verify_token.empty() &&
        secrets_equal(config_.verify_token, request.query_parameter("hub.verify_token"));
    if (!verified) return answer(403, "verification failed");
    return answer(200, request.query_parameter("hub.challenge"));
  }
  if (request.method != "POST") return answer(405, "method not allowed");
  if (!verify_hub_signature(config_.app_secret, request.body,
                            request.header("x-hub-signature-256")))
    return answer(401, "bad or missing X-Hub-Signature-256");
  payload = nlohmann::json::parse(request.body, nullptr, false);
  if (payload.is_discarded() || !payload.is_object())
    return answer(400, "body is not a JSON object");
  return std::nullopt;
}

WebhookResponse graph_event_received() {
  return answer(200, "EVENT_RECEIVED");
}

GraphApiAdapter::GraphApiAdapter(GraphApiConfig config,
                                 std::shared_ptr<ProviderTransport> transport,
                                 std::string webhook_object)
    : graph_(std::move(config), std::move(transport)), webhook_object_(std::move(webhook_object)) {}

SendResult GraphApiAdapter::send_message(const OutboundMessage& message) {
  return send(message, text_message(message));
}

SendResult GraphApiAdapter::send_file(const OutboundMessage& message) {
  return send(message, file_message(message));
}

WebhookResponse GraphApiAdapter::on_webhook(const WebhookRequest& request,
                                            std::vector<InboundEvent>& events) {
  nlohmann::json payload;
  if (auto answered = graph_.screen_webhook(request, payload)) return *answered;
  if (json_string(payload, "object") != webhook_object_) return graph_event_received();
  for (const nlohmann::json& entry : json_member(payload, "entry")) read_entry(entry, events);
  return graph_event_received();
}

}  // namespace chat4all::connector
