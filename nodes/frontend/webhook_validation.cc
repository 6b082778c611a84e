#include "nodes/frontend/webhook_validation.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>

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

bool is_webhook_url(std::string_view url) {
  std::string_view rest;
  if (url.substr(0, 7) == "http://") {
    rest = url.substr(7);
  } else if (url.substr(0, 8) == "https://") {
    rest = url.substr(8);
  } else {
    return false;
  }
  for (const unsigned char c : url)
    if (c <= 0x20 || c >= 0x7f) return false;
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
  // host, [v6 host] or either with :port
  std::string_view host = authority, port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return false;
      port = after.substr(1);
      if (port.empty()) return false;
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return false;
  }
  if (host.empty()) return false;
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      }))
    return false;
  return port.empty() || std::stoul(std::string(port)) - 1 < 65535;
}

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
  if (auto error = read_string(document, "url", true, {1, kWebhookUrlBytesMax}, webhook.url))
    return *error;
  if (!is_webhook_url(webhook.url))
    return bad_field("url", "url must be an absolute http:// or https:// URL with a host");

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
