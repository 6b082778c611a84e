#include "nodes/frontend/webhook_validation.h"

#include <algorithm>
#include <array>

#include "common/url_guard.h"
#include "common/webhook_signature.h"

namespace chat4all::frontend {

using nlohmann::json;

namespace {

constexpr std::array<std::string_view, 3> kEvents = {"message.sent", "message.delivered",
                                                     "message.read"};

}  // namespace

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
  if (!webhook.secret.empty() && !webhook::secret_bytes(webhook.secret))
    return bad_field("secret", "secret must be \"whsec_\" + base64 of " +
                                   std::to_string(webhook::kSecretBytesMin) + "-" +
                                   std::to_string(webhook::kSecretBytesMax) + " bytes");
  return webhook;
}

}  // namespace chat4all::frontend
