// Responses made from storage records: nodes/frontend/api_json.h.
#include "nodes/frontend/api_json.h"

#include <gtest/gtest.h>

namespace chat4all::frontend {
namespace {

using nlohmann::json;

TEST(ApiJsonTest, UsersNeverShowTheirHashAndIdentitiesOnlyWhenAsked) {
  const wire::UserRecord user{
      "dev", "alice", "Alice", "$argon2id$secret-hash", {{"whatsapp", "+55"}}, 10, 20};
  const json full = user_json(user, true);
  EXPECT_EQ(full["user_id"], "alice");
  EXPECT_EQ(full["tenant_id"], "dev");
  EXPECT_EQ(full["created_at"], 10);
  EXPECT_EQ(full["updated_at"], 20);
  EXPECT_EQ(full["identities"], (json::array({{{"channel", "whatsapp"}, {"address", "+55"}}})));
  EXPECT_FALSE(user_json(user, false).contains("identities"));
  for (const auto& shown : {full, user_json(user, false)})
    EXPECT_EQ(shown.dump().find("argon2id"), std::string::npos);
}

TEST(ApiJsonTest, ClientsAndWebhooksNeverShowTheirSecrets) {
  const wire::ClientRecord client{"dev", "cl_1", "svc", "$argon2id$hash", "admin", 5};
  const json shown = client_json(client, "api");
  EXPECT_EQ(shown["client_id"], "cl_1");
  EXPECT_EQ(shown["role"], "admin");
  EXPECT_EQ(shown["source"], "api");
  EXPECT_EQ(shown.dump().find("argon2id"), std::string::npos);
  const wire::WebhookRecord webhook{"dev", "wh_1", "http://a", {"message.read"}, "whsec_abc", 7};
  EXPECT_FALSE(webhook_json(webhook).contains("secret"));
  EXPECT_EQ(webhook_json(webhook).dump().find("whsec_"), std::string::npos);
}

TEST(ApiJsonTest, StatesAndSummaries) {
  const wire::RecipientState state{"bob", {{"SENT", 1}, {"DELIVERED", 2}, {"READ", 3}}};
  const json shown = recipient_state_json(state);
  EXPECT_EQ(shown["state"], "READ");
  EXPECT_EQ(shown["history"].size(), 3u);
  EXPECT_EQ(shown["history"][1], (json{{"state", "DELIVERED"}, {"at", 2}}));

  wire::ConversationSummary summary;
  summary.conversation = {"dev", "c_1", "group", "Team", "", {"alice", "bob"}, "", 1, 2};
  summary.last_seq = 9;
  summary.unread_count = 4;
  summary.horizons = {7, 5};
  json out = summary_json(summary);
  EXPECT_EQ(out["last_message"], nullptr);
  EXPECT_EQ(out["created_by"], nullptr);
  EXPECT_EQ(out["read_up_to_seq"], 5);
  EXPECT_EQ(out["delivered_up_to_seq"], 7);
  EXPECT_EQ(out["unread_count"], 4);
  EXPECT_EQ(out["metadata"], json::object());
  summary.conversation.metadata = R"({"topic":"x"})";
  summary.last_message.push_back(wire::StoredMessage{"c_1", 9});
  out = summary_json(summary);
  EXPECT_EQ(out["last_message"]["seq"], 9);
  EXPECT_EQ(out["metadata"], (json{{"topic", "x"}}));
}

TEST(ApiJsonTest, ChannelDeliveriesShowEveryFieldAndLeaveOutEmptyOnes) {
  wire::ChannelDeliveryRecord delivery;
  delivery.tenant_id = "dev";
  delivery.conversation_id = "c_1";
  delivery.message_id = "m_1";
  delivery.seq = 3;
  delivery.recipient_id = "bob";
  delivery.channel = "whatsapp";
  delivery.address = "+5511";
  delivery.state = wire::kDeliverySent;
  delivery.attempts = {{100, "connector-1", "retry", 503, "service unavailable", 40},
                       {200, "connector-2", "accepted", 200, "", 12}};
  delivery.provider_message_id = "wamid.1";
  delivery.created_at_ms = 90;
  delivery.updated_at_ms = 212;
  delivery.next_attempt_at_ms = 150;  // left from the retry: not shown once sent
  const json expected = {{"recipient_id", "bob"},
                         {"channel", "whatsapp"},
                         {"address", "+5511"},
                         {"state", "sent"},
                         {"provider_message_id", "wamid.1"},
                         {"created_at", 90},
                         {"updated_at", 212},
                         {"attempts", json::array({{{"at", 100},
                                                    {"connector", "connector-1"},
                                                    {"outcome", "retry"},
                                                    {"status_code", 503},
                                                    {"error", "service unavailable"},
                                                    {"duration_ms", 40}},
                                                   {{"at", 200},
                                                    {"connector", "connector-2"},
                                                    {"outcome", "accepted"},
                                                    {"status_code", 200},
                                                    {"duration_ms", 12}}})}};
  EXPECT_EQ(channel_delivery_json(delivery), expected);

  delivery.state = wire::kDeliveryRetrying;
  delivery.provider_message_id.clear();
  delivery.attempts = {{100, "connector-1", "lost", 0, "no answer from the connector", 5000}};
  json shown = channel_delivery_json(delivery);
  EXPECT_EQ(shown["next_attempt_at"], 150);
  EXPECT_FALSE(shown.contains("provider_message_id"));
  EXPECT_FALSE(shown.contains("error"));
  EXPECT_FALSE(shown["attempts"][0].contains("status_code"));
  EXPECT_EQ(shown["attempts"][0]["error"], "no answer from the connector");

  delivery.state = wire::kDeliveryNoIdentity;
  delivery.address.clear();
  delivery.attempts.clear();
  delivery.error = "bob has no whatsapp identity";
  shown = channel_delivery_json(delivery);
  EXPECT_FALSE(shown.contains("next_attempt_at"));
  EXPECT_EQ(shown["address"], "");
  EXPECT_EQ(shown["error"], "bob has no whatsapp identity");
  EXPECT_EQ(shown["attempts"], json::array());
}

}  // namespace
}  // namespace chat4all::frontend
