#include "nodes/frontend/api_json.h"

#include "nodes/frontend/message_json.h"

namespace chat4all::frontend {

using nlohmann::json;

json user_json(const wire::UserRecord& user, bool with_identities) {
  json out = {{"user_id", user.user_id},
              {"tenant_id", user.tenant_id},
              {"display_name", user.display_name},
              {"created_at", user.created_at_ms},
              {"updated_at", user.updated_at_ms}};
  if (with_identities) {
    json identities = json::array();
    for (const auto& identity : user.identities)
      identities.push_back({{"channel", identity.channel}, {"address", identity.address}});
    out["identities"] = std::move(identities);
    out["presence_hidden"] = user.presence_hidden;
  }
  return out;
}

json presence_json(const wire::PresenceRecord& presence) {
  json out = {{"user_id", presence.user_id}, {"state", presence.state}, {"last_seen_at", nullptr}};
  if (presence.last_seen_at_ms > 0) out["last_seen_at"] = presence.last_seen_at_ms;
  return out;
}

json client_json(const wire::ClientRecord& client, const std::string& source) {
  return {{"client_id", client.client_id},
          {"name", client.name},
          {"role", client.role.empty() ? "admin" : client.role},
          {"source", source},
          {"created_at", client.created_at_ms}};
}

json conversation_json(const wire::ConversationRecord& conversation) {
  return {{"conversation_id", conversation.conversation_id},
          {"tenant_id", conversation.tenant_id},
          {"type", conversation.type},
          {"name", conversation.name},
          {"members", conversation.members},
          {"created_by",
           conversation.created_by.empty() ? json(nullptr) : json(conversation.created_by)},
          {"metadata", metadata_json(conversation.metadata)},
          {"created_at", conversation.created_at_ms},
          {"updated_at", conversation.updated_at_ms},
          {"retention_s",
           conversation.retention_s > 0 ? json(conversation.retention_s) : json(nullptr)},
          {"first_seq", conversation.first_seq == 0 ? 1 : conversation.first_seq}};
}

json summary_json(const wire::ConversationSummary& summary) {
  json out = conversation_json(summary.conversation);
  out["last_seq"] = summary.last_seq;
  out["last_message"] = summary.last_message.empty()
                            ? json(nullptr)
                            : public_message_json(summary.last_message.front());
  out["unread_count"] = summary.unread_count;
  out["read_up_to_seq"] = summary.horizons.read_up_to;
  out["delivered_up_to_seq"] = summary.horizons.delivered_up_to;
  return out;
}

json recipient_state_json(const wire::RecipientState& state) {
  json history = json::array();
  for (const auto& change : state.history)
    history.push_back({{"state", change.state}, {"at", change.at_ms}});
  return {{"recipient_id", state.recipient_id},
          {"state", state.history.empty() ? wire::kStateSent : state.history.back().state},
          {"history", std::move(history)}};
}

json webhook_json(const wire::WebhookRecord& webhook) {
  return {{"webhook_id", webhook.webhook_id},
          {"url", webhook.url},
          {"events", webhook.events},
          {"created_at", webhook.created_at_ms}};
}

json delivery_json(const wire::DeliveryRecord& delivery) {
  json attempts = json::array();
  for (const auto& attempt : delivery.attempts)
    attempts.push_back(
        {{"at", attempt.at_ms},
         {"status_code", attempt.status_code == 0 ? json(nullptr) : json(attempt.status_code)},
         {"error", attempt.error.empty() ? json(nullptr) : json(attempt.error)},
         {"duration_ms", attempt.duration_ms}});
  return {{"event_id", delivery.event_id},
          {"event_type", delivery.event_type},
          {"state", delivery.state},
          {"attempts", std::move(attempts)},
          {"created_at", delivery.created_at_ms},
          {"next_attempt_at",
           delivery.state == "retrying" ? json(delivery.next_attempt_at_ms) : json(nullptr)}};
}

json channel_delivery_json(const wire::ChannelDeliveryRecord& delivery) {
  json attempts = json::array();
  for (const auto& attempt : delivery.attempts) {
    json shown = {{"at", attempt.at_ms},
                  {"connector", attempt.connector},
                  {"outcome", attempt.outcome},
                  {"duration_ms", attempt.duration_ms}};
    if (attempt.status_code != 0) shown["status_code"] = attempt.status_code;
    if (!attempt.error.empty()) shown["error"] = attempt.error;
    attempts.push_back(std::move(shown));
  }
  json out = {{"recipient_id", delivery.recipient_id}, {"channel", delivery.channel},
              {"address", delivery.address},           {"state", delivery.state},
              {"created_at", delivery.created_at_ms},  {"updated_at", delivery.updated_at_ms},
              {"attempts", std::move(attempts)}};
  if (!delivery.provider_message_id.empty())
    out["provider_message_id"] = delivery.provider_message_id;
  if (!delivery.error.empty()) out["error"] = delivery.error;
  if (delivery.state == wire::kDeliveryRetrying)
    out["next_attempt_at"] = delivery.next_attempt_at_ms;
  return out;
}

}  // namespace chat4all::frontend
