// WhatsApp through Meta's WhatsApp Cloud API.
//
// Sends:  POST {base_url}/{api_version}/{phone_number_id}/messages with the access token as
// Bearer, {"messaging_product":"whatsapp","recipient_type":"individual","to":<address>,
// "type":"text","text":{"body":...}}, or for a file "type":"document","document":{"link":...,
// "caption":<text, when there is one>}. The answer {"messages":[{"id":"wamid..."}]} names the
// message; WhatsApp reports its deliveries later, by webhook, so an accepted send is not yet
// delivered. Errors are Graph-shaped and classified as graph_api.h says.
//
// Receives (webhooks, signed with the app secret): "statuses" delivered / read / failed become
// DELIVERED / READ / FAILED ("sent" only repeats that the message was accepted); "messages" of
// type text, and of the media types (document, image, audio, video, sticker, whose media id
// becomes the file id and caption the text), become inbound messages with the message they
// reply to (context.id). Other message types (reactions, locations, ...) are not carried.
//
// Settings: phone_number_id (required) and the Graph settings of graph_api.h (access_token,
// app_secret required; base_url, api_version, verify_token, document_link_prefix optional).
//
// Thread-safety: immutable after construction; every method may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nodes/connector/channel_adapter.h"
#include "nodes/connector/graph_api.h"
#include "nodes/connector/provider_http.h"

namespace chat4all::connector {

class WhatsAppAdapter final : public ChannelAdapter {
 public:
  // Calls the platform through libcurl (the registered adapter).
  explicit WhatsAppAdapter(const ChannelSpec& channel);
  WhatsAppAdapter(const ChannelSpec& channel, std::shared_ptr<ProviderTransport> transport);

  // The settings are checked by the constructor. Nothing is sent: a bad access token shows as a
  // rejected first send (HTTP 401, Graph code 190) whose error names it.
  void connect() override {}
  SendResult send_message(const OutboundMessage& message) override;
  SendResult send_file(const OutboundMessage& message) override;
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override;

 private:
  SendResult send(const OutboundMessage& message, nlohmann::json body);

  const std::string phone_number_id_;
  const GraphApiClient graph_;
};

}  // namespace chat4all::connector
