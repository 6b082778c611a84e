// Token, user, identity and client bodies: nodes/frontend/identity_validation.h.
#include "nodes/frontend/identity_validation.h"

#include <gtest/gtest.h>

#include "tests/unit/validation_test_util.h"

namespace chat4all::frontend {
namespace {

using nlohmann::json;
using testing::expect_api_error;
using testing::expect_ok;

TEST(TokenRequestTest, PasswordGrantIsTheDefault) {
  const auto request = expect_ok(
      parse_token_request(R"({"tenant_id":"dev","user_id":"alice","password":"s3cret pass"})"));
  EXPECT_FALSE(request.client_credentials);
  EXPECT_EQ(request.tenant_id, "dev");
  EXPECT_EQ(request.subject, "alice");
  EXPECT_EQ(request.secret, "s3cret pass");
  EXPECT_FALSE(expect_ok(parse_token_request(R"({"grant_type":"password","tenant_id":"dev",)"
                                             R"("user_id":"alice","password":"p"})"))
                   .client_credentials);
}

TEST(TokenRequestTest, ClientCredentials) {
  const auto request =
      expect_ok(parse_token_request(R"({"grant_type":"client_credentials","tenant_id":"dev",)"
                                    R"("client_id":"dev-admin","client_secret":"x"})"));
  EXPECT_TRUE(request.client_credentials);
  EXPECT_EQ(request.subject, "dev-admin");
  EXPECT_EQ(request.secret, "x");
  expect_api_error(parse_token_request(R"({"grant_type":"client_credentials","tenant_id":"dev",)"
                                       R"("client_secret":"x"})"),
                   400, "missing_field", "client_id");
  expect_api_error(parse_token_request(R"({"grant_type":"client_credentials","tenant_id":"dev",)"
                                       R"("client_id":"c"})"),
                   400, "missing_field", "client_secret");
}

TEST(TokenRequestTest, Errors) {
  expect_api_error(parse_token_request("nope"), 400, "invalid_json", "");
  expect_api_error(parse_token_request("[]"), 400, "invalid_json", "");
  expect_api_error(parse_token_request(R"({"user_id":"a","password":"x"})"), 400, "missing_field",
                   "tenant_id");
  expect_api_error(parse_token_request(R"({"tenant_id":"a:b","user_id":"a","password":"x"})"), 400,
                   "invalid_field", "tenant_id");
  expect_api_error(parse_token_request(R"({"tenant_id":"dev","password":"x"})"), 400,
                   "missing_field", "user_id");
  expect_api_error(parse_token_request(R"({"tenant_id":"dev","user_id":"a b","password":"x"})"),
                   400, "invalid_field", "user_id");
  expect_api_error(parse_token_request(R"({"tenant_id":"dev","user_id":"alice"})"), 400,
                   "missing_field", "password");
  expect_api_error(parse_token_request(R"({"tenant_id":"dev","user_id":"alice","password":1})"),
                   400, "invalid_field", "password");
  expect_api_error(parse_token_request(R"({"grant_type":"magic","tenant_id":"dev"})"), 400,
                   "unsupported_grant_type", "grant_type");
}

TEST(TokenRequestTest, SecretLengthIsBounded) {
  auto body = [](std::size_t n) {
    return json{{"tenant_id", "dev"}, {"user_id", "alice"}, {"password", std::string(n, 'p')}}
        .dump();
  };
  EXPECT_EQ(expect_ok(parse_token_request(body(1024))).secret.size(), 1024u);
  expect_api_error(parse_token_request(body(1025)), 400, "invalid_field", "password");
  expect_api_error(parse_token_request(body(0)), 400, "invalid_field", "password");
}

TEST(UserCreateTest, ParsesEverything) {
  const auto user = expect_ok(parse_user_create(
      R"({"user_id":"alice","password":"12345678","display_name":"Alice A.","extra":1,)"
      R"("identities":[{"channel":"whatsapp","address":"+5511999"},)"
      R"({"channel":"telegram","address":"@alice"}]})"));
  EXPECT_EQ(user.user_id, "alice");
  EXPECT_EQ(user.password, "12345678");
  EXPECT_EQ(user.display_name, "Alice A.");
  ASSERT_EQ(user.identities.size(), 2u);
  EXPECT_EQ(user.identities[0].channel, "whatsapp");
  EXPECT_EQ(user.identities[1].address, "@alice");
  EXPECT_TRUE(
      expect_ok(parse_user_create(R"({"user_id":"b","password":"12345678"})")).identities.empty());
}

TEST(UserCreateTest, Errors) {
  expect_api_error(parse_user_create(R"({"password":"12345678"})"), 400, "missing_field",
                   "user_id");
  expect_api_error(parse_user_create(R"({"user_id":"a@b","password":"12345678"})"), 400,
                   "invalid_field", "user_id");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"1234567"})"), 400,
                   "invalid_field", "password");
  expect_api_error(
      parse_user_create(json{{"user_id", "a"}, {"password", std::string(257, 'p')}}.dump()), 400,
      "invalid_field", "password");
  expect_api_error(
      parse_user_create(R"({"user_id":"a","password":"12345678","display_name":"a\nb"})"), 400,
      "invalid_field", "display_name");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"12345678","identities":{}})"),
                   400, "invalid_field", "identities");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"12345678","identities":)"
                                     R"([{"channel":"s m s","address":"1"}]})"),
                   400, "invalid_field", "identities[0].channel");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"12345678","identities":)"
                                     R"([{"channel":"telegram"}]})"),
                   400, "missing_field", "identities[0].address");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"12345678","identities":)"
                                     R"([{"channel":"telegram","address":"x"},)"
                                     R"({"channel":"telegram","address":"y"}]})"),
                   400, "invalid_field", "identities[1].channel");
  expect_api_error(
      parse_user_create(
          json{{"user_id", "a"},
               {"password", "12345678"},
               {"identities", {{{"channel", "internal"}, {"address", std::string(129, 'x')}}}}}
              .dump()),
      400, "invalid_field", "identities[0].address");
  expect_api_error(parse_user_create(R"({"user_id":"a","password":"12345678","identities":[5]})"),
                   400, "invalid_field", "identities[0]");
}

TEST(UserUpdateTest, OneOrBoth) {
  UserUpdate update = expect_ok(parse_user_update(R"({"display_name":"New"})"));
  EXPECT_EQ(update.display_name, "New");
  EXPECT_FALSE(update.password);
  update = expect_ok(parse_user_update(R"({"password":"longenough","display_name":""})"));
  EXPECT_EQ(update.password, "longenough");
  EXPECT_EQ(update.display_name, "");
  expect_api_error(parse_user_update("{}"), 400, "missing_field", "display_name");
  expect_api_error(parse_user_update(R"({"display_name":null})"), 400, "missing_field",
                   "display_name");
  expect_api_error(parse_user_update(R"({"password":"short"})"), 400, "invalid_field", "password");
  expect_api_error(parse_user_update(R"({"display_name":7})"), 400, "invalid_field",
                   "display_name");
  update = expect_ok(parse_user_update(R"({"presence_hidden":true})"));
  EXPECT_EQ(update.presence_hidden, true);
  EXPECT_FALSE(update.display_name);
  EXPECT_EQ(expect_ok(parse_user_update(R"({"presence_hidden":false})")).presence_hidden, false);
  expect_api_error(parse_user_update(R"({"presence_hidden":"yes"})"), 400, "invalid_field",
                   "presence_hidden");
  expect_api_error(parse_user_update(R"({"presence_hidden":1})"), 400, "invalid_field",
                   "presence_hidden");
}

TEST(IdentityLinkTest, ChannelFromThePathAddressFromTheBody) {
  const auto identity = expect_ok(parse_identity_link(R"({"address":"+5511"})", "whatsapp"));
  EXPECT_EQ(identity.channel, "whatsapp");
  EXPECT_EQ(identity.address, "+5511");
  expect_api_error(parse_identity_link(R"({"address":"+5511"})", "all"), 400, "invalid_field",
                   "channel");
  expect_api_error(parse_identity_link("{}", "telegram"), 400, "missing_field", "address");
  expect_api_error(parse_identity_link(R"({"address":""})", "telegram"), 400, "invalid_field",
                   "address");
  expect_api_error(parse_identity_link(R"({"address":"a\u0007"})", "telegram"), 400,
                   "invalid_field", "address");
}

TEST(ClientCreateTest, NeedsAName) {
  EXPECT_EQ(expect_ok(parse_client_create(R"({"name":"billing service"})")), "billing service");
  expect_api_error(parse_client_create("{}"), 400, "missing_field", "name");
  expect_api_error(parse_client_create(R"({"name":""})"), 400, "invalid_field", "name");
  expect_api_error(parse_client_create(json{{"name", std::string(129, 'n')}}.dump()), 400,
                   "invalid_field", "name");
}

TEST(WhatsAppAddressTest, BecomesTheDigitsWhatsAppNamesItsUsersBy) {
  for (std::string address : {"+55 (11) 90000-0001", "5511900000001", "+55.11.90000.0001"}) {
    EXPECT_EQ(normalize_whatsapp_address(address, "address"), std::nullopt) << address;
    EXPECT_EQ(address, "5511900000001");
  }
  for (std::string address :
       {"+55 11 9000O-0001", "wa:5511900000001", "12345", "+1234567890123456"}) {
    const std::string before = address;
    const auto error = normalize_whatsapp_address(address, "identities[0].address");
    ASSERT_TRUE(error.has_value()) << address;
    EXPECT_EQ(error->http_status, 400);
    EXPECT_EQ(error->field, "identities[0].address");
    EXPECT_EQ(address, before);  // left as it was
  }
}

}  // namespace
}  // namespace chat4all::frontend
