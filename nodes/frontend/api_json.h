// The JSON the public API answers with, made from storage records (messages:
// nodes/frontend/message_json.h, shared with the stream). Pure functions. Secrets (password_hash,
// secret_hash, webhook secrets) are never written by any of them.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "schema/records.h"

namespace chat4all::frontend {

// `with_identities`: only admins and the user itself see them (and presence_hidden).
nlohmann::json user_json(const wire::UserRecord& user, bool with_identities);
// `source`: "api" or "topology".
nlohmann::json client_json(const wire::ClientRecord& client, const std::string& source);
// {"user_id","state","last_seen_at"}; last_seen_at null when online or unknown (hidden). The
// stream's presence frame is this with "type" added.
nlohmann::json presence_json(const wire::PresenceRecord& presence);
nlohmann::json conversation_json(const wire::ConversationRecord& conversation);
// The conversation as one member sees it: last message, unread count, horizons.
nlohmann::json summary_json(const wire::ConversationSummary& summary);
nlohmann::json recipient_state_json(const wire::RecipientState& state);
nlohmann::json webhook_json(const wire::WebhookRecord& webhook);  // without its secret
nlohmann::json delivery_json(const wire::DeliveryRecord& delivery);
// One message to one recipient on one outside channel, with its attempts. Empty optional strings
// (provider_message_id, error, an attempt's error) and a zero status_code are left out;
// next_attempt_at only while "retrying".
nlohmann::json channel_delivery_json(const wire::ChannelDeliveryRecord& delivery);

}  // namespace chat4all::frontend
