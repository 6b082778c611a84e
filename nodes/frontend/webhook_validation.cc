#include "nodes/frontend/webhook_validation.h"

#include <sodium.h>

#include <algorithm>
#include <array>

#include "nodes/connector/url_guard.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

constexpr std::string_view kSecretPrefix = "whsec_";
constexpr std::array<std::string_view, 3> kEvents = {"message.sent", "message.delivered",
                                                     "message.read"};

// Bytes of standard, padded base64 text; nothing when it is not that.
std::optional<std::size_t> base64_length(std::string_view text) {
  std::string bytes(text.size(), '\0');
  std::size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), text.data(),
                        text.size(), nullptr, &length, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  return length;
}

}  // namespace

std::string encode_webhook_secret(std::string_view bytes) {
  std::string text(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(text.data(), text.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  text.resize(text.size() - 1);  // the terminating NUL
  return std::string(kSecretPrefix) + text;
}

std::variant<WebhookCreate, ApiError> parse_webhook_create(std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return *error;
  const json& document = std::get<json>(parsed);
  WebhookCreate webhook;
  if (auto error = read_string(document, "url", true, {1, connector::kUrlLengthMax}, webhook.url))
    return *error;
  if (const auto url = connector::parse_http_url(webhook.url); !url.ok())
    return bad_field("url", "url: " + url.error);

  const json* events = find_field(document, "events");
  if (events == nullptr) return missing_field("events");
  if (!events->is_array() || events->empty())
    return bad_field("events", "events must be a non-empty array of event types");
  for (std::size_t i = 0; i < events->size(); ++i) {
    const std::string path = "events[" + std::to_string(i) + "]";
    const json& item = (*events)[i];
    if (!item.is_string() || std::find(kEvents.begin(), kEvents.end(),
                                       item.get_ref<const std::string&>()) == kEvents.end())
      return bad_field(path,
                       path + " must be one of message.sent, message.delivered, message.read");
    const auto& event = item.get_ref<const std::string&>();
    if (std::find(webhook.events.begin(), webhook.events.end(), event) == webhook.events.end())
      webhook.events.push_back(event);
  }

  if (auto error = read_string(document, "secret", false, {1, 256}, webhook.secret)) return *error;
  if (!webhook.secret.empty()) {
    const auto length = webhook.secret.rfind(kSecretPrefix, 0) == 0
                            ? base64_length(std::string_view(webhook.secret).substr(6))
                            : std::nullopt;
    if (!length || *length < kWebhookSecretBytesMin || *length > kWebhookSecretBytesMax)
      return bad_field("secret", "secret must be \"whsec_\" + base64 of " +
                                     std::to_string(kWebhookSecretBytesMin) + "-" +
                                     std::to_string(kWebhookSecretBytesMax) + " bytes");
  }
  return webhook;
}

}  // namespace chat4all::frontend
