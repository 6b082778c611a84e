#include "nodes/connector/adapters/instagram/instagram_adapter.h"

#include <utility>

namespace chat4all::connector {
namespace {

using nlohmann::json;

InboundEvent status_event(const std::string& address, std::string mid, std::string state,
                          std::int64_t at_ms) {
  InboundEvent event;
  event.kind = InboundEvent::Kind::kStatus;
  event.address = address;
  event.provider_message_id = std::move(mid);
  event.state = std::move(state);
  event.at_ms = at_ms;
  return event;
}

void add_item(const json& item, std::vector<InboundEvent>& events) {
  const std::string sender = json_string(json_member(item, "sender"), "id");
  const std::int64_t at_ms = json_integer(item, "timestamp");
  if (sender.empty()) return;

  if (const json& delivery = json_member(item, "delivery"); delivery.is_object()) {
    for (const json& mid : json_member(delivery, "mids"))
      if (mid.is_string() && !mid.get_ref<const std::string&>().empty())
        events.push_back(status_event(sender, mid.get<std::string>(), "DELIVERED", at_ms));
    return;
  }
  if (const json& read = json_member(item, "read"); read.is_object()) {
    std::string mid = json_string(read, "mid");
    if (!mid.empty()) events.push_back(status_event(sender, std::move(mid), "READ", at_ms));
    return;
  }
  const json& message = json_member(item, "message");
  if (!message.is_object()) return;  // reactions, postbacks, ...: nothing we carry
  // Our own sends come back as echoes (sender is then our account): they are not inbound.
  if (message.contains("is_echo") && message["is_echo"].is_boolean() &&
      message["is_echo"].get<bool>())
    return;
  InboundEvent event;
  event.kind = InboundEvent::Kind::kMessage;
  event.address = sender;
  event.provider_message_id = json_string(message, "mid");
  event.text = json_string(message, "text");
  event.reply_to_provider_message_id = json_string(json_member(message, "reply_to"), "mid");
  event.at_ms = at_ms;
  const json& attachments = json_member(message, "attachments");
  if (attachments.is_array() && !attachments.empty())
    event.file_id = json_string(json_member(attachments.front(), "payload"), "url");
  if (event.provider_message_id.empty() || (event.text.empty() && event.file_id.empty())) return;
  events.push_back(std::move(event));
}

}  // namespace

InstagramAdapter::InstagramAdapter(const ChannelSpec& channel)
    : InstagramAdapter(channel, std::make_shared<CurlTransport>()) {}

InstagramAdapter::InstagramAdapter(const ChannelSpec& channel,
                                   std::shared_ptr<ProviderTransport> transport)
    : GraphApiAdapter(read_graph_api_config(channel, "instagram"), std::move(transport),
                      "instagram"),
      ig_user_id_(setting_or(channel, "ig_user_id", "me")) {
  if (ig_user_id_.empty())
    throw AdapterConfigError("channel '" + channel.name + "': settings.ig_user_id is empty");
}

SendResult InstagramAdapter::send(const OutboundMessage& message, json message_body) const {
  const json body{{"recipient", {{"id", message.address}}}, {"message", std::move(message_body)}};
  return graph_.send(ig_user_id_, body,
                     [](const json& answer) { return json_string(answer, "message_id"); });
}

json InstagramAdapter::text_message(const OutboundMessage& message) const {
  return json{{"text", message.text}};
}

json InstagramAdapter::file_message(const OutboundMessage& message) const {
  return json{{"attachment",
               {{"type", "file"}, {"payload", {{"url", graph_.file_link(message.file_id)}}}}}};
}

void InstagramAdapter::read_entry(const json& entry, std::vector<InboundEvent>& events) const {
  for (const json& item : json_member(entry, "messaging")) add_item(item, events);
}

CHAT4ALL_REGISTER_ADAPTER("instagram", InstagramAdapter)

}  // namespace chat4all::connector
