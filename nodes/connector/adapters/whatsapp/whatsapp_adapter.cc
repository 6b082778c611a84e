#include "nodes/connector/adapters/whatsapp/whatsapp_adapter.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <utility>

namespace chat4all::connector {
namespace {

using nlohmann::json;

// Inbound message types whose payload is a media object {"id", "caption"?, ...}.
constexpr std::array<std::string_view, 5> kMediaTypes = {"document", "image", "audio", "video",
                                                         "sticker"};

void add_status(const json& status, std::vector<InboundEvent>& events) {
  const std::string state = json_string(status, "status");
  InboundEvent event;
  event.kind = InboundEvent::Kind::kStatus;
  if (state == "delivered") {
    event.state = "DELIVERED";
  } else if (state == "read") {
    event.state = "READ";
  } else if (state == "failed") {
    event.state = "FAILED";
    const json& errors = json_member(status, "errors");
    if (errors.is_array() && !errors.empty()) {
      event.error = json_string(errors.front(), "title");
      const std::int64_t code = json_integer(errors.front(), "code");
      if (code != 0) event.error += " (code " + std::to_string(code) + ")";
    }
    if (event.error.empty()) event.error = "failed";
  } else {
    return;  // "sent" (accepted, which send_message already knew) and states yet unknown
  }
  event.provider_message_id = json_string(status, "id");
  event.address = json_string(status, "recipient_id");
  event.at_ms = json_integer(status, "timestamp") * 1000;
  if (event.provider_message_id.empty()) return;
  events.push_back(std::move(event));
}

void add_message(const json& message, std::vector<InboundEvent>& events) {
  InboundEvent event;
  event.kind = InboundEvent::Kind::kMessage;
  event.address = json_string(message, "from");
  event.provider_message_id = json_string(message, "id");
  event.at_ms = json_integer(message, "timestamp") * 1000;
  event.reply_to_provider_message_id = json_string(json_member(message, "context"), "id");
  const std::string type = json_string(message, "type");
  if (type == "text") {
    event.text = json_string(json_member(message, "text"), "body");
  } else if (std::find(kMediaTypes.begin(), kMediaTypes.end(), type) != kMediaTypes.end()) {
    const json& media = json_member(message, type.c_str());
    event.file_id = json_string(media, "id");
    event.text = json_string(media, "caption");
    if (event.file_id.empty()) return;
  } else {
    return;
  }
  if (event.address.empty() || event.provider_message_id.empty()) return;
  events.push_back(std::move(event));
}

}  // namespace

WhatsAppAdapter::WhatsAppAdapter(const ChannelSpec& channel)
    : WhatsAppAdapter(channel, std::make_shared<CurlTransport>()) {}

WhatsAppAdapter::WhatsAppAdapter(const ChannelSpec& channel,
                                 std::shared_ptr<ProviderTransport> transport)
    : GraphApiAdapter(read_graph_api_config(channel, "whatsapp"), std::move(transport),
                      "whatsapp_business_account"),
      phone_number_id_(setting(channel, "phone_number_id")) {}

SendResult WhatsAppAdapter::send(const OutboundMessage& message, json body) const {
  body["messaging_product"] = "whatsapp";
  body["recipient_type"] = "individual";
  body["to"] = message.address;
  return graph_.send(phone_number_id_, body, [](const json& answer) {
    const json& messages = json_member(answer, "messages");
    return messages.is_array() && !messages.empty() ? json_string(messages.front(), "id")
                                                    : std::string();
  });
}

json WhatsAppAdapter::text_message(const OutboundMessage& message) const {
  return json{{"type", "text"}, {"text", {{"body", message.text}}}};
}

json WhatsAppAdapter::file_message(const OutboundMessage& message) const {
  json document{{"link", graph_.file_link(message.file_id)}};
  if (!message.text.empty()) document["caption"] = message.text;
  return json{{"type", "document"}, {"document", std::move(document)}};
}

void WhatsAppAdapter::read_entry(const json& entry, std::vector<InboundEvent>& events) const {
  for (const json& change : json_member(entry, "changes")) {
    if (json_string(change, "field") != "messages") continue;
    const json& value = json_member(change, "value");
    for (const json& status : json_member(value, "statuses")) add_status(status, events);
    for (const json& message : json_member(value, "messages")) add_message(message, events);
  }
}

CHAT4ALL_REGISTER_ADAPTER("whatsapp", WhatsAppAdapter)

}  // namespace chat4all::connector
