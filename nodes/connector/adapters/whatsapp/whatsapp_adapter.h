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
// The parts it shares with Instagram (connect, webhook screening) are GraphApiAdapter's.
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

class WhatsAppAdapter final : public GraphApiAdapter {
 public:
  // Calls the platform through libcurl (the registered adapter).
  explicit WhatsAppAdapter(const ChannelSpec& channel);
  WhatsAppAdapter(const ChannelSpec& channel, std::shared_ptr<ProviderTransport> transport);

 private:
  nlohmann::json text_message(const OutboundMessage& message) const override;
  nlohmann::json file_message(const OutboundMessage& message) const override;
  SendResult send(const OutboundMessage& message, nlohmann::json body) const override;
  void read_entry(const nlohmann::json& entry, std::vector<InboundEvent>& events) const override;

  const std::string phone_number_id_;
};

}  // namespace chat4all::connector
