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

class InstagramAdapter final : public ChannelAdapter {
 public:
  // Calls the platform through libcurl (the registered adapter).
  explicit InstagramAdapter(const ChannelSpec& channel);
  InstagramAdapter(const ChannelSpec& channel, std::shared_ptr<ProviderTransport> transport);

  // The settings are checked by the constructor. Nothing is sent: a bad access token shows as a
  // rejected first send (HTTP 401, Graph code 190) whose error names it.
  void connect() override {}
  SendResult send_message(const OutboundMessage& message) override;
  SendResult send_file(const OutboundMessage& message) override;
  WebhookResponse on_webhook(const WebhookRequest& request,
                             std::vector<InboundEvent>& events) override;

 private:
  SendResult send(const OutboundMessage& message, nlohmann::json message_body);

  const std::string ig_user_id_;
  const GraphApiClient graph_;
};

}  // namespace chat4all::connector
