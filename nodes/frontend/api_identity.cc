// Tokens, users, channel identities and service clients (HttpApi, see http_api.h).
#include <sodium.h>

#include "common/ids.h"
#include "nodes/frontend/api_json.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/identity_validation.h"
#include "schema/retention.h"

namespace chat4all::frontend {

using nlohmann::json;
using Empty = StorageClient::Empty;

namespace {

constexpr std::size_t kClientSecretBytes = 32;

// Admins manage every user of their tenant; a user manages itself.
bool may_manage(const Caller& caller, const std::string& user_id) {
  return caller.admin() || caller.subject == user_id;
}

ApiResponse forbidden_for_other_users() {
  return error_response(403, "forbidden", "only an admin or the user itself may do this");
}

// kExists when creating a user: its id, or one of its addresses, which another user has.
ApiResponse user_create_conflict(const StorageOutcome<wire::UserRecord>& outcome,
                                 const std::vector<wire::Identity>& identities) {
  if (outcome.status != wire::Status::kExists) return storage_error(outcome);
  if (outcome.field == "user_id")
    return error_response(409, "user_exists", "a user with this user_id exists", "user_id");
  // Storage names the identity in its detail ("identity <channel>:<address> ...").
  std::string field = "identities";
  for (std::size_t i = 0; i < identities.size(); ++i)
    if (outcome.detail.find(identities[i].channel + ":" + identities[i].address) !=
        std::string::npos)
      field = "identities[" + std::to_string(i) + "].address";
  return error_response(409, "identity_taken", "another user has linked this address", field);
}

ApiResponse created(const json& body, const std::string& location) {
  ApiResponse response = json_response(201, body);
  response.headers.emplace_back("Location", location);
  return response;
}

// The stored argon2id hash of a user or client (`hash`, a field of its record): `next` gets
// the storage status and the hash when there is one.
template <typename Record, typename Next>
void fetch_secret_hash(StorageClient& storage, const wire::TenantLookup& lookup,
                       wire::QueryKind kind, std::string Record::*hash, Next next,
                       const std::string& trace_id) {
  storage.query<Record>(
      wire::tenant_key(lookup.tenant_id), kind, lookup,
      [next, hash](StorageOutcome<Record> outcome) {
        next(outcome.status, outcome.ok() ? std::optional((*outcome.value).*hash) : std::nullopt,
             outcome.detail);
      },
      trace_id);
}

ApiResponse busy() {
  return error_response(429, "too_many_logins",
                        "too many password checks in progress; retry shortly");
}

}  // namespace

// ---- tokens

void HttpApi::issue_token(const ApiRequest& request, Call call) {
  auto parsed = parse_token_request(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  TokenRequest credentials = std::get<TokenRequest>(std::move(parsed));
  const TenantSpec* tenant = topology_.tenant(credentials.tenant_id);
  const std::string role = credentials.client_credentials ? "admin" : "user";
  // An unknown tenant costs the same verification as a wrong password.
  if (tenant == nullptr)
    return verify_and_issue(std::move(call), credentials.tenant_id, credentials.subject, role,
                            std::nullopt, std::move(credentials.secret));
  if (credentials.client_credentials)
    for (const auto& client : tenant->admin_clients)
      if (client.client_id == credentials.subject)
        return verify_and_issue(std::move(call), tenant->id, client.client_id, role,
                                client.secret_hash, std::move(credentials.secret));

  // Then the stored record: its hash, or none (a dummy is verified instead).
  auto continue_with = [this, call, credentials, role](wire::Status status,
                                                       std::optional<std::string> hash,
                                                       const std::string& detail) {
    if (status != wire::Status::kOk && status != wire::Status::kNotFound)
      return call.respond(storage_error(status, detail, ""));
    verify_and_issue(call, credentials.tenant_id, credentials.subject, role, std::move(hash),
                     credentials.secret);
  };
  const wire::TenantLookup lookup{credentials.tenant_id, credentials.subject};
  if (credentials.client_credentials) {
    fetch_secret_hash(storage_, lookup, wire::QueryKind::kGetClient,
                      &wire::ClientRecord::secret_hash, continue_with, call.trace_id);
  } else {
    fetch_secret_hash(storage_, lookup, wire::QueryKind::kGetUser, &wire::UserRecord::password_hash,
                      continue_with, call.trace_id);
  }
}

void HttpApi::verify_and_issue(Call call, std::string tenant, std::string subject, std::string role,
                               std::optional<std::string> hash, std::string secret) {
  const bool queued = logins_.try_submit([this, call, tenant, subject, role, hash, secret] {
    // Unknown subjects are verified against a dummy hash: same cost, so the
    // time of the answer does not tell whether they exist.
    const bool matches = auth::verify_password(hash ? *hash : unknown_user_hash_, secret);
    if (!matches || !hash) {
      log_.debug("login_refused",
                 {{"tenant_id", tenant}, {"subject", subject}, {"trace_id", call.trace_id}});
      return call.respond(
          error_response(401, "invalid_credentials", "the tenant, id or secret is wrong"));
    }
    const std::uint32_t ttl_s = topology_.auth.token_ttl_s;
    ApiResponse response = json_response(
        200, {{"access_token", signer_.issue(subject, ids::now_ms() / 1000, ttl_s, tenant, role)},
              {"token_type", "Bearer"},
              {"expires_in", ttl_s},
              {"tenant_id", tenant},
              {"subject", subject},
              {"role", role}});
    response.headers.emplace_back("Cache-Control", "no-store");
    call.respond(std::move(response));
  });
  if (!queued) call.respond(busy());
}

void HttpApi::hash_then(Call call, std::string secret,
                        std::function<void(Call, std::string)> next) {
  const bool queued =
      logins_.try_submit([call, secret, next] { next(call, auth::hash_password(secret)); });
  if (!queued) call.respond(busy());
}

// ---- users

// Addresses are stored the way the channel's platform names its users, so that
// what it reports (inbound messages, receipts) finds the user.
FieldError HttpApi::normalize_address(wire::Identity& identity, const std::string& field) const {
  const ChannelSpec* channel = topology_.channel(identity.channel);
  if (channel != nullptr && channel->adapter == "whatsapp")
    return normalize_whatsapp_address(identity.address, field);
  return std::nullopt;
}

void HttpApi::create_user(const ApiRequest& request, Call call) {
  auto parsed = parse_user_create(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  UserCreate user = std::get<UserCreate>(std::move(parsed));
  for (std::size_t i = 0; i < user.identities.size(); ++i)
    if (auto error =
            normalize_address(user.identities[i], "identities[" + std::to_string(i) + "].address"))
      return call.respond(error_response(*error));
  std::string password = std::move(user.password);
  hash_then(std::move(call), std::move(password), [this, user](Call call, std::string hash) {
    const std::int64_t now_ms = ids::now_ms();
    const wire::CreateUser command{wire::UserRecord{call.caller.tenant, user.user_id,
                                                    user.display_name, std::move(hash),
                                                    user.identities, now_ms, now_ms}};
    storage_.command<wire::UserRecord>(
        wire::tenant_key(call.caller.tenant), wire::CommandKind::kCreateUser, command,
        [call, command](StorageOutcome<wire::UserRecord> outcome) {
          if (!outcome.ok())
            return call.respond(user_create_conflict(outcome, command.user.identities));
          call.respond(
              created(user_json(*outcome.value, true), "/v1/users/" + outcome.value->user_id));
        },
        call.trace_id);
  });
}

void HttpApi::list_users(const ApiRequest&, Call call) {
  auto parsed = parse_page_query(call.query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  list_page<wire::UserRecord>(
      std::move(call), wire::QueryKind::kListUsers, "", std::get<PageQuery>(parsed), "users",
      json::object(), [](const wire::UserRecord& user) { return user_json(user, true); },
      [](const wire::UserRecord& user) { return user.user_id; });
}

void HttpApi::get_user(const ApiRequest&, Call call) {
  const std::string& user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  storage_.query<wire::UserRecord>(
      wire::tenant_key(call.caller.tenant), wire::QueryKind::kGetUser,
      wire::TenantLookup{call.caller.tenant, user_id},
      on_ok<wire::UserRecord>(call.respond,
                              [call](wire::UserRecord user) {
                                call.respond(json_response(
                                    200, user_json(user, may_manage(call.caller, user.user_id))));
                              }),
      call.trace_id);
}

// A user may not manage another user: 403 for one of its tenant, but 404 for a user that its
// tenant does not have, exactly as for one that does not exist anywhere.
void HttpApi::refuse_managing(Call call, const std::string& user_id) {
  storage_.query<wire::UserRecord>(
      wire::tenant_key(call.caller.tenant), wire::QueryKind::kGetUser,
      wire::TenantLookup{call.caller.tenant, user_id},
      on_ok<wire::UserRecord>(
          call.respond, [call](wire::UserRecord) { call.respond(forbidden_for_other_users()); }),
      call.trace_id);
}

void HttpApi::update_user(const ApiRequest& request, Call call) {
  const std::string user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  if (!may_manage(call.caller, user_id)) return refuse_managing(std::move(call), user_id);
  auto parsed = parse_user_update(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const UserUpdate update = std::get<UserUpdate>(std::move(parsed));

  wire::UpdateUser command{call.caller.tenant,
                           user_id,
                           update.display_name.has_value(),
                           update.display_name.value_or(""),
                           false,
                           "",
                           update.presence_hidden.has_value(),
                           update.presence_hidden.value_or(false)};
  auto store = [this](Call call, wire::UpdateUser command) {
    storage_.command<wire::UserRecord>(
        wire::tenant_key(call.caller.tenant), wire::CommandKind::kUpdateUser, command,
        on_ok<wire::UserRecord>(call.respond,
                                [call](wire::UserRecord user) {
                                  call.respond(json_response(200, user_json(user, true)));
                                }),
        call.trace_id);
  };
  if (!update.password) return store(std::move(call), std::move(command));
  hash_then(std::move(call), *update.password,
            [store, command](Call call, std::string hash) mutable {
              command.set_password_hash = true;
              command.password_hash = std::move(hash);
              store(std::move(call), std::move(command));
            });
}

namespace {

nlohmann::json erase_job_json(const wire::EraseJob& job) {
  return {{"user_id", job.user_id},
          {"state", job.state},
          {"conversations_total", job.conversations.size()},
          {"conversations_done", job.conversations_done},
          {"messages_erased", job.messages_erased},
          {"identities_removed", job.identities_removed},
          {"created_at", job.created_at_ms},
          {"finished_at",
           job.finished_at_ms > 0 ? nlohmann::json(job.finished_at_ms) : nlohmann::json(nullptr)},
          {"url", "/v1/users/" + job.user_id + "/erase"}};
}

}  // namespace

// The user, identities, index and presence go in one entry on the tenant's partition (from
// then on no login); the messages follow, driven from here. Asking again answers the same job.
void HttpApi::erase_user(const ApiRequest&, Call call) {
  const std::string user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  storage_.command<wire::EraseJob>(
      wire::tenant_key(call.caller.tenant), wire::CommandKind::kEraseUser,
      wire::EraseUser{call.caller.tenant, user_id},
      on_ok<wire::EraseJob>(call.respond,
                            [this, call](wire::EraseJob job) {
                              // Its tokens stop here at once (elsewhere within kUserValidityTtlMs).
                              users_.forget(client_key(job.tenant_id, job.user_id));
                              erasures_.drive(job, call.trace_id);
                              ApiResponse response = json_response(202, erase_job_json(job));
                              response.headers.emplace_back("Location",
                                                            "/v1/users/" + job.user_id + "/erase");
                              call.respond(std::move(response));
                            }),
      call.trace_id);
}

void HttpApi::get_erasure(const ApiRequest&, Call call) {
  const std::string user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  storage_.query<wire::EraseJob>(
      wire::tenant_key(call.caller.tenant), wire::QueryKind::kGetEraseJob,
      wire::TenantLookup{call.caller.tenant, user_id},
      on_ok<wire::EraseJob>(call.respond,
                            [this, call](wire::EraseJob job) {
                              erasures_.drive(job, call.trace_id);
                              call.respond(json_response(200, erase_job_json(job)));
                            }),
      call.trace_id);
}

// Only the user, an admin, or someone sharing a conversation with the user
// sees it; anyone else gets the 404 of a user that does not exist (storage
// decides, beside the membership index: nodes/storage/presence.h).
void HttpApi::get_presence(const ApiRequest&, Call call) {
  const std::string& user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  storage_.query<wire::PresenceRecord>(
      wire::tenant_key(call.caller.tenant), wire::QueryKind::kGetPresence,
      wire::PresenceLookup{call.caller.tenant, user_id, call.caller.requester()},
      on_ok<wire::PresenceRecord>(call.respond,
                                  [call](wire::PresenceRecord presence) {
                                    call.respond(json_response(200, presence_json(presence)));
                                  }),
      call.trace_id);
}

void HttpApi::link_identity(const ApiRequest& request, Call call) {
  const std::string& user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  if (!may_manage(call.caller, user_id)) return refuse_managing(std::move(call), user_id);
  auto parsed = parse_identity_link(request.body, call.params[1]);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  if (auto error = normalize_address(std::get<wire::Identity>(parsed), "address"))
    return call.respond(error_response(*error));
  storage_.command<wire::UserRecord>(
      wire::tenant_key(call.caller.tenant), wire::CommandKind::kLinkIdentity,
      wire::IdentityChange{call.caller.tenant, user_id, std::get<wire::Identity>(parsed)},
      [call](StorageOutcome<wire::UserRecord> outcome) {
        if (!outcome.ok())
          return call.respond(storage_error(outcome, FailureCodes{.exists = "identity_taken"}));
        call.respond(json_response(200, user_json(*outcome.value, true)));
      },
      call.trace_id);
}

void HttpApi::unlink_identity(const ApiRequest&, Call call) {
  const std::string& user_id = call.params[0];
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  if (!may_manage(call.caller, user_id)) return refuse_managing(std::move(call), user_id);
  if (auto error = check_channel(call.params[1], "channel"))
    return call.respond(error_response(*error));
  storage_.command<wire::UserRecord>(
      wire::tenant_key(call.caller.tenant), wire::CommandKind::kUnlinkIdentity,
      wire::IdentityChange{call.caller.tenant, user_id, wire::Identity{call.params[1], ""}},
      [call](StorageOutcome<wire::UserRecord> outcome) {
        // Unlinking is idempotent: nothing linked on the channel is done already.
        if (outcome.ok() ||
            (outcome.status == wire::Status::kNotFound && outcome.field == "channel"))
          return call.respond(no_content());
        call.respond(storage_error(outcome));
      },
      call.trace_id);
}

// ---- service clients

void HttpApi::create_client(const ApiRequest& request, Call call) {
  auto parsed = parse_client_create(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  std::string name = std::get<std::string>(std::move(parsed));
  std::string secret_bytes(kClientSecretBytes, '\0');
  randombytes_buf(secret_bytes.data(), secret_bytes.size());
  std::string secret = auth::base64url_encode(secret_bytes);
  hash_then(std::move(call), secret, [this, name, secret](Call call, std::string hash) {
    const wire::ClientRecord client{
        call.caller.tenant, ids::new_random_id("cl_"), name, std::move(hash), "admin",
        ids::now_ms()};
    storage_.command<wire::ClientRecord>(
        wire::tenant_key(call.caller.tenant), wire::CommandKind::kCreateClient,
        wire::CreateClient{client},
        on_ok<wire::ClientRecord>(call.respond,
                                  [call, secret](wire::ClientRecord stored) {
                                    json body = client_json(stored, "api");
                                    body["client_secret"] = secret;
                                    ApiResponse response =
                                        created(body, "/v1/clients/" + stored.client_id);
                                    response.headers.emplace_back("Cache-Control", "no-store");
                                    call.respond(std::move(response));
                                  }),
        call.trace_id);
  });
}

void HttpApi::list_clients(const ApiRequest&, Call call) {
  auto parsed = parse_page_query(call.query);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const PageQuery page = std::get<PageQuery>(parsed);
  // The topology's admin clients lead the first page; they are few and not paged.
  json clients = json::array();
  if (page.after.empty())
    for (const auto& client : topology_.tenant(call.caller.tenant)->admin_clients)
      clients.push_back(client_json(wire::ClientRecord{call.caller.tenant, client.client_id,
                                                       client.client_id, "", "admin", 0},
                                    "topology"));
  list_page<wire::ClientRecord>(
      std::move(call), wire::QueryKind::kListClients, "", page, "clients",
      json{{"clients", std::move(clients)}},
      [](const wire::ClientRecord& client) { return client_json(client, "api"); },
      [](const wire::ClientRecord& client) { return client.client_id; });
}

void HttpApi::delete_client(const ApiRequest&, Call call) {
  const std::string& client_id = call.params[0];
  if (auto error = check_id(client_id, "client_id")) return call.respond(error_response(*error));
  for (const auto& client : topology_.tenant(call.caller.tenant)->admin_clients)
    if (client.client_id == client_id)
      return call.respond(error_response(409, "client_managed_by_topology",
                                         "this client is declared in the topology file; remove "
                                         "it there"));
  storage_.command<Empty>(wire::tenant_key(call.caller.tenant), wire::CommandKind::kDeleteClient,
                          wire::TenantLookup{call.caller.tenant, client_id},
                          on_ok<Empty>(call.respond,
                                       [this, call, client_id](Empty) {
                                         // Its tokens are refused here from now on.
                                         clients_.forget(client_key(call.caller.tenant, client_id));
                                         call.respond(no_content());
                                       }),
                          call.trace_id);
}

}  // namespace chat4all::frontend
