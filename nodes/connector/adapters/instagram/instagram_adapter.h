// Instagram direct messages through Meta's Instagram Messaging API (Graph API).
//
// Sends:  POST {base_url}/{api_version}/{ig_user_id}/messages with the access token as Bearer,
// {"recipient":{"id":<address: the user's Instagram-scoped id>},"message":{"text":...}}, or for
// a file "message":{"attachment":{"type":"file","payload":{"url":...}}} (Instagram attachments
// carry no caption: a file message's text is not sent). The answer {"recipient_id","message_id"}
// names the message; deliveries and reads come later by webhook. Errors are Graph-shaped and
// classified as graph_api.h says.
//
// Receives (webhooks, signed with the app secret): {"object":"instagram","entry":[{"messaging":
// [...]}]} where an item with "delivery":{"mids":[...]} is DELIVERED for each mid, "read":{"mid"}
// is READ, and "message":{"mid","text","reply_to"?,"attachments"?} is an inbound message (the
// first attachment's URL as its file id). Our own messages echoed back ("is_echo":true) are
// skipped. The address is always the other user: sender.id.
//
// The parts it shares with WhatsApp (connect, webhook screening) are GraphApiAdapter's.
//
// Settings: ig_user_id (default "me": the account the token belongs to) and the Graph settings
// of graph_api.h (access_token, app_secret required; base_url, api_version, verify_token,
// document_link_prefix optional).
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

class InstagramAdapter final : public GraphApiAdapter {
 public:
  // Calls the platform through libcurl (the registered adapter).
  explicit InstagramAdapter(const ChannelSpec& channel);
  InstagramAdapter(const ChannelSpec& channel, std::shared_ptr<ProviderTransport> transport);

 private:
  nlohmann::json text_message(const OutboundMessage& message) const override;
  nlohmann::json file_message(const OutboundMessage& message) const override;
  SendResult send(const OutboundMessage& message, nlohmann::json message_body) const override;
  void read_entry(const nlohmann::json& entry, std::vector<InboundEvent>& events) const override;

  const std::string ig_user_id_;
};

}  // namespace chat4all::connector
