// Conversations, members, horizons and history (HttpApi, see http_api.h).
#include <algorithm>

#include "common/ids.h"
#include "nodes/frontend/api_json.h"
#include "nodes/frontend/conversation_validation.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/message_json.h"
#include "schema/retention.h"

namespace chat4all::frontend {

using nlohmann::json;
using Empty = StorageClient::Empty;

namespace {

// Storage commands one horizon call may take (each moves it over up to kHorizonStepMax
// messages of storage's, 10,000): a million messages marked in one call.
constexpr int kHorizonRoundsMax = 100;

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

void HttpApi::index_membership(Call call, std::string conversation_id,
                               std::vector<std::string> users, bool joined, ApiResponse response) {
  const std::string key = wire::tenant_key(call.caller.tenant);
  storage_.command<Empty>(
      key, wire::CommandKind::kIndexMembership,
      wire::IndexMembership{call.caller.tenant, std::move(conversation_id), std::move(users),
                            joined},
      on_ok<Empty>(call.respond, [call, response = std::move(response)](
                                     Empty) mutable { call.respond(std::move(response)); }),
      call.trace_id);
}

void HttpApi::answer_summary(Call call, std::string conversation_id, int status) {
  storage_.query<wire::ConversationSummary>(
      conversation_id, wire::QueryKind::kConversationSummary,
      wire::ConversationLookup{call.caller.tenant, conversation_id, call.caller.requester(), ""},
      on_ok<wire::ConversationSummary>(call.respond,
                                       [call, status](wire::ConversationSummary summary) {
                                         call.respond(json_response(status, summary_json(summary)));
                                       }),
      call.trace_id);
}

// Unknown members first (one query on the tenant), then the conversation on
// its own partition, then the members' index on the tenant's. A private
// conversation's id is derived from its pair, and a group's from the caller's
// Idempotency-Key when there is one, so creating it again meets kExists: the
// existing one is answered (200, Idempotent-Replayed), after indexing its
// members again in case the first creation stopped before that step.
void HttpApi::create_conversation(const ApiRequest& request, Call call) {
  auto parsed =
      parse_conversation_create(request.body, call.caller.user(), topology_.limits.members_max);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  ConversationCreate create = std::get<ConversationCreate>(std::move(parsed));
  if (!request.idempotency_key.empty())
    if (auto error = check_id(request.idempotency_key, "Idempotency-Key"))
      return call.respond(error_response(*error));
  const std::string& tenant = call.caller.tenant;
  std::string conversation_id =
      create.is_private ? private_conversation_id(tenant, create.members[0], create.members[1])
      : request.idempotency_key.empty()
          ? ids::new_random_id("c_")
          : keyed_group_id(tenant, call.caller.role, call.caller.subject, request.idempotency_key);
  const std::int64_t now_ms = ids::now_ms();
  wire::ConversationRecord record{tenant,
                                  std::move(conversation_id),
                                  create.is_private ? "private" : "group",
                                  std::move(create.name),
                                  std::move(create.metadata),
                                  std::move(create.members),
                                  call.caller.user(),
                                  now_ms,
                                  now_ms};

  auto store = [this](Call call, wire::ConversationRecord record) {
    const std::string id = record.conversation_id;
    storage_.command<wire::ConversationRecord>(
        id, wire::CommandKind::kCreateConversation, wire::CreateConversation{record},
        [this, call, id](StorageOutcome<wire::ConversationRecord> outcome) {
          if (outcome.ok()) {
            ApiResponse response = json_response(201, conversation_json(*outcome.value));
            response.headers.emplace_back("Location", "/v1/conversations/" + id);
            return index_membership(call, id, outcome.value->members, true, std::move(response));
          }
          if (outcome.status != wire::Status::kExists) return call.respond(storage_error(outcome));
          storage_.query<wire::ConversationRecord>(
              id, wire::QueryKind::kGetConversation,
              wire::ConversationLookup{call.caller.tenant, id, call.caller.requester(), ""},
              on_ok<wire::ConversationRecord>(
                  call.respond,
                  [this, call, id](wire::ConversationRecord existing) {
                    ApiResponse response = json_response(200, conversation_json(existing));
                    response.headers.emplace_back("Idempotent-Replayed", "true");
                    index_membership(call, id, existing.members, true, std::move(response));
                  }),
              call.trace_id);
        },
        call.trace_id);
  };

  storage_.query<std::vector<std::string>>(
      wire::tenant_key(tenant), wire::QueryKind::kMissingUsers,
      wire::UserSet{tenant, record.members},
      on_ok<std::vector<std::string>>(
          call.respond,
          [call, record, store](std::vector<std::string> missing) mutable {
            if (!missing.empty())
              return call.respond(error_response(
                  400, "unknown_members", "these users do not exist: " + join(missing), "members"));
            store(std::move(call), std::move(record));
          }),
      call.trace_id);
}

// The conversation ids first (the user's index on the tenant's partition),
// then every conversation's summary from its own partition, all at once.
void HttpApi::list_conversations(const ApiRequest&, Call call) {
  auto parsed = parse_page_query(call.query, "user_id");
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const PageQuery page = std::get<PageQuery>(parsed);
  std::string user_id = call.caller.user();
  if (call.caller.admin()) {
    if (page.extra.empty()) return call.respond(error_response(missing_field("user_id")));
    if (auto error = check_name(page.extra, "user_id")) return call.respond(error_response(*error));
    user_id = page.extra;
  } else if (!page.extra.empty() && page.extra != user_id) {
    return call.respond(error_response(403, "forbidden",
                                       "a user token lists only its own conversations", "user_id"));
  }

  storage_.query<std::vector<
      std::string>>(wire::tenant_key(call.caller.tenant), wire::QueryKind::kListUserConversations,
                    wire::TenantList{call.caller.tenant, user_id, page.after, page.limit},
                    on_ok<std::vector<std::string>>(
                        call.respond,
                        [this, call, user_id, page](std::vector<std::string> conversation_ids) {
                          const json next = next_after(conversation_ids, page.limit,
                                                       [](const std::string& id) { return id; });
                          gather<wire::ConversationSummary>(
                              conversation_ids.size(),
                              [&](std::size_t i,
                                  std::function<void(StorageOutcome<wire::ConversationSummary>)>
                                      done) {
                                storage_.query<wire::ConversationSummary>(
                                    conversation_ids[i], wire::QueryKind::kConversationSummary,
                                    wire::ConversationLookup{call.caller.tenant,
                                                             conversation_ids[i], user_id, ""},
                                    std::move(done), call.trace_id);
                              },
                              [call, next](
                                  std::vector<StorageOutcome<wire::ConversationSummary>> outcomes) {
                                json items = json::array();
                                for (const auto& outcome : outcomes) {
                                  // The index may still list a conversation the user has just left.
                                  if (outcome.status == wire::Status::kNotFound) continue;
                                  if (!outcome.ok()) return call.respond(storage_error(outcome));
                                  items.push_back(summary_json(*outcome.value));
                                }
                                call.respond(json_response(
                                    200,
                                    {{"conversations", std::move(items)}, {"next_after", next}}));
                              });
                        }),
                    call.trace_id);
}

void HttpApi::get_conversation(const ApiRequest&, Call call) {
  std::string conversation_id = call.params[0];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  answer_summary(std::move(call), std::move(conversation_id), 200);
}

// Retention only (the one field a conversation changes after creation). Who may is checked
// where the change is applied: a member of a private conversation, a group's creator, an admin.
void HttpApi::update_conversation(const ApiRequest& request, Call call) {
  std::string conversation_id = call.params[0];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  const TenantSpec* tenant = topology_.tenant(call.caller.tenant);
  const std::int64_t tenant_retention_s = tenant ? tenant->retention_s : 0;
  auto parsed =
      parse_conversation_update(request.body, tenant_retention_s, TenantSpec::kRetentionSMax);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  storage_.command<wire::ConversationRecord>(
      conversation_id, wire::CommandKind::kSetRetention,
      wire::SetRetention{call.caller.tenant, conversation_id, call.caller.requester(),
                         std::get<std::int64_t>(parsed), tenant_retention_s},
      on_ok<wire::ConversationRecord>(call.respond,
                                      [this, call, conversation_id](wire::ConversationRecord) {
                                        answer_summary(call, conversation_id, 200);
                                      }),
      call.trace_id);
}

void HttpApi::with_group(Call call, const std::string& conversation_id,
                         std::function<void(Call, wire::ConversationRecord)> next) {
  storage_.query<wire::ConversationRecord>(
      conversation_id, wire::QueryKind::kGetConversation,
      wire::ConversationLookup{call.caller.tenant, conversation_id, call.caller.requester(), ""},
      on_ok<wire::ConversationRecord>(call.respond,
                                      [call, next](wire::ConversationRecord conversation) {
                                        if (conversation.type != "group")
                                          return call.respond(error_response(
                                              409, "private_conversation",
                                              "the members of a private conversation are fixed"));
                                        next(call, std::move(conversation));
                                      }),
      call.trace_id);
}

// The group (a private one answers 409), then unknown users, then the change,
// then the users' index. The member limit is checked where the change is applied.
void HttpApi::add_members(const ApiRequest& request, Call call) {
  const std::string conversation_id = call.params[0];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  auto parsed = parse_members_add(request.body, topology_.limits.members_max);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const auto users = std::get<std::vector<std::string>>(std::move(parsed));

  // The group first: a conversation the caller cannot see answers 404 whatever the users.
  with_group(std::move(call), conversation_id,
             [this, conversation_id, users](Call call, wire::ConversationRecord) {
               storage_.query<std::vector<std::string>>(
                   wire::tenant_key(call.caller.tenant), wire::QueryKind::kMissingUsers,
                   wire::UserSet{call.caller.tenant, users},
                   on_ok<std::vector<std::string>>(
                       call.respond,
                       [this, call, conversation_id, users](std::vector<std::string> missing) {
                         if (!missing.empty())
                           return call.respond(error_response(
                               400, "unknown_members", "these users do not exist: " + join(missing),
                               "members"));
                         add_members_to(call, conversation_id, users);
                       }),
                   call.trace_id);
             });
}

void HttpApi::add_members_to(Call call, const std::string& conversation_id,
                             const std::vector<std::string>& users) {
  storage_.command<wire::ConversationRecord>(
      conversation_id, wire::CommandKind::kAddMembers,
      wire::ChangeMembers{call.caller.tenant, conversation_id, call.caller.requester(), users,
                          topology_.limits.members_max},
      on_ok<wire::ConversationRecord>(
          call.respond,
          [this, call, conversation_id, users](wire::ConversationRecord conversation) {
            index_membership(call, conversation_id, users, true,
                             json_response(200, conversation_json(conversation)));
          }),
      call.trace_id);
}

// A member leaves; the creator or an admin removes anyone.
void HttpApi::remove_member(const ApiRequest&, Call call) {
  const std::string conversation_id = call.params[0];
  const std::string user_id = call.params[1];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  if (auto error = check_name(user_id, "user_id")) return call.respond(error_response(*error));
  with_group(std::move(call), conversation_id,
             [this, conversation_id, user_id](Call call, wire::ConversationRecord group) {
               const std::string& by = call.caller.user();
               if (!by.empty() && by != user_id && by != group.created_by)
                 return call.respond(error_response(
                     403, "forbidden", "only the group's creator or an admin removes others"));
               storage_.command<wire::ConversationRecord>(
                   conversation_id, wire::CommandKind::kRemoveMember,
                   wire::ChangeMembers{call.caller.tenant, conversation_id, by, {user_id}},
                   on_ok<wire::ConversationRecord>(
                       call.respond,
                       [this, call, conversation_id, user_id](wire::ConversationRecord) {
                         index_membership(call, conversation_id, {user_id}, false, no_content());
                       }),
                   call.trace_id);
             });
}

void HttpApi::mark_conversation_read(const ApiRequest& request, Call call) {
  mark_horizon(request, std::move(call), wire::kStateRead);
}

void HttpApi::mark_conversation_delivered(const ApiRequest& request, Call call) {
  mark_horizon(request, std::move(call), wire::kStateDelivered);
}

void HttpApi::mark_horizon(const ApiRequest& request, Call call, const char* state) {
  const std::string conversation_id = call.params[0];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  auto parsed = parse_horizon_update(request.body);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const wire::MarkState mark{call.caller.tenant,
                             conversation_id,
                             call.caller.subject,
                             state,
                             "",
                             std::get<std::uint64_t>(parsed)};
  move_horizon(std::move(call), mark, kHorizonRoundsMax);
}

// Storage moves a horizon over at most kHorizonStepMax messages per command (one command is
// one bounded piece of work in the replicated log), so one call takes as many commands as it
// needs, up to kHorizonRoundsMax; past that the answer shows how far it got.
void HttpApi::move_horizon(Call call, wire::MarkState mark, int rounds_left) {
  storage_.command<wire::MarkStateResult>(
      mark.conversation_id, wire::CommandKind::kMarkState, mark,
      on_ok<wire::MarkStateResult>(
          call.respond,
          [this, call, mark, rounds_left](wire::MarkStateResult) {
            // The horizons and the conversation's last_seq, read back together.
            storage_.query<wire::ConversationSummary>(
                mark.conversation_id, wire::QueryKind::kConversationSummary,
                wire::ConversationLookup{call.caller.tenant, mark.conversation_id,
                                         call.caller.subject, ""},
                on_ok<wire::ConversationSummary>(
                    call.respond,
                    [this, call, mark, rounds_left](wire::ConversationSummary summary) {
                      const std::uint64_t reached = mark.state == std::string(wire::kStateRead)
                                                        ? summary.horizons.read_up_to
                                                        : summary.horizons.delivered_up_to;
                      if (reached < std::min(mark.up_to_seq, summary.last_seq) && rounds_left > 1)
                        return move_horizon(call, mark, rounds_left - 1);
                      call.respond(json_response(
                          200, {{"conversation_id", mark.conversation_id},
                                {"user_id", call.caller.subject},
                                {"read_up_to_seq", summary.horizons.read_up_to},
                                {"delivered_up_to_seq", summary.horizons.delivered_up_to},
                                {"last_seq", summary.last_seq}}));
                    }),
                call.trace_id);
          }),
      call.trace_id);
}

void HttpApi::read_history(const ApiRequest&, Call call) {
  const std::string conversation_id = call.params[0];
  if (auto error = check_id(conversation_id, "conversation_id"))
    return call.respond(error_response(*error));
  auto parsed = parse_history_query(call.query, topology_.limits.history_page_max);
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  const HistoryQuery page = std::get<HistoryQuery>(parsed);

  const wire::ReadRequest read{conversation_id,    page.from_seq,           page.limit,
                               call.caller.tenant, call.caller.requester(), page.before_seq,
                               page.since_ms};
  const wire::Header header{wire::kWireVersion, wire::MessageType::kReadRequest,
                            ids::next_request_id(), call.trace_id};
  routers_.submit(
      header.request_id, codec::encode(header, read),
      [call, conversation_id, page](wire::Status status, std::optional<codec::Frame> reply) {
        auto unwrapped =
            unwrap_reply<wire::ReadReply>(status, reply, wire::MessageType::kReadReply);
        if (auto* failure = std::get_if<ApiResponse>(&unwrapped))
          return call.respond(std::move(*failure));
        const auto& answer = std::get<wire::ReadReply>(unwrapped);
        json messages = json::array();
        for (const auto& message : answer.messages)
          messages.push_back(public_message_json(message));
        const HistoryPageEnd end =
            history_page_end(page, answer.messages, answer.last_seq, answer.first_seq);
        call.respond(json_response(
            200, {{"conversation_id", conversation_id},
                  {"messages", std::move(messages)},
                  {"direction", page.backward ? "backward" : "forward"},
                  {"next_cursor", end.next_cursor ? json(*end.next_cursor) : json(nullptr)},
                  {"end_of_history", end.end_of_history},
                  {"last_seq", answer.last_seq},
                  {"first_seq", std::max<std::uint64_t>(answer.first_seq, 1)},
                  {"next_from_seq", end.next_from_seq},
                  {"has_more", !end.end_of_history}}));
      });
}

}  // namespace chat4all::frontend
