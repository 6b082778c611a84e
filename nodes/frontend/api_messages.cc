// Sending, reading and marking messages, and their channel deliveries (HttpApi, see http_api.h).
#include <chrono>

#include "common/ids.h"
#include "nodes/frontend/api_json.h"
#include "nodes/frontend/http_api.h"
#include "nodes/frontend/message_json.h"

namespace chat4all::frontend {

using nlohmann::json;
using Empty = StorageClient::Empty;

namespace {

constexpr FailureCodes kMessageCodes{.conflict = "message_id_conflict"};

}  // namespace

// The message_id is claimed in the tenant first (its locator), so that one id
// can never name messages in two conversations; only then is it appended.
// Both steps are idempotent, so a client retrying after a 504 repeats both.
// An append that storage refuses, and that names no stored message, releases
// the claim, so a send to a mistyped conversation (or by a non-member) does not
// take the id for good.
void HttpApi::send_message(const ApiRequest& request, Call call) {
  auto parsed = parse_send_message(request.body, call.caller.tenant, call.caller.user(),
                                   message_limits_, ids::now_ms());
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  wire::AppendRequest append_request = std::get<wire::AppendRequest>(std::move(parsed));
  const std::string key = wire::locator_key(call.caller.tenant, append_request.message_id);
  const wire::LocateMessage locate{call.caller.tenant, append_request.message_id,
                                   append_request.conversation_id};
  storage_.command<Empty>(
      key, wire::CommandKind::kLocateMessage, locate,
      [this, call, append_request](StorageOutcome<Empty> outcome) mutable {
        if (outcome.status == wire::Status::kConflict)
          return refuse_taken_message_id(std::move(call), append_request.conversation_id);
        if (!outcome.ok()) return call.respond(storage_error(outcome, kMessageCodes));
        append(std::move(call), std::move(append_request));
      },
      call.trace_id);
}

// The id names a message in another conversation. Only someone who may write to the
// conversation they named learns that (409); anyone else gets what the append would have
// answered (404), so ids cannot be probed from outside a conversation.
void HttpApi::refuse_taken_message_id(Call call, const std::string& conversation_id) {
  storage_.query<wire::ConversationRecord>(
      conversation_id, wire::QueryKind::kGetConversation,
      wire::ConversationLookup{call.caller.tenant, conversation_id, call.caller.requester(), ""},
      on_ok<wire::ConversationRecord>(call.respond,
                                      [call](wire::ConversationRecord) {
                                        call.respond(error_response(
                                            409, "message_id_conflict",
                                            "message_id is used in another conversation",
                                            "message_id"));
                                      }),
      call.trace_id);
}

void HttpApi::append(Call call, wire::AppendRequest append_request) {
  const auto started = std::chrono::steady_clock::now();
  const wire::Header header{wire::kWireVersion, wire::MessageType::kAppendRequest,
                            ids::next_request_id(), call.trace_id};
  const wire::LocateMessage claim{call.caller.tenant, append_request.message_id,
                                  append_request.conversation_id};
  routers_.submit(
      header.request_id, codec::encode(header, append_request),
      [this, call, started, claim](wire::Status status, std::optional<codec::Frame> reply) {
        auto unwrapped = unwrap_reply<wire::AppendReply>(
            status, reply, wire::MessageType::kAppendReply, kMessageCodes);
        if (auto* failure = std::get_if<ApiResponse>(&unwrapped)) {
          log_.debug("send_failed", {{"trace_id", call.trace_id}, {"status", failure->status}});
          if (refusal_names_no_message(status, reply))
            return release_claim(call, claim, std::move(*failure));
          return call.respond(std::move(*failure));
        }
        const auto& answer = std::get<wire::AppendReply>(unwrapped);
        ApiResponse response = json_response(202, {{"status", "accepted"},
                                                   {"message_id", answer.message_id},
                                                   {"conversation_id", answer.conversation_id},
                                                   {"seq", answer.seq}});
        response.headers.emplace_back("Location", "/v1/messages/" + answer.message_id);
        if (answer.duplicate) response.headers.emplace_back("Idempotent-Replayed", "true");
        send_latency_.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        call.respond(std::move(response));
      });
}

// Storage looked at the append and refused it for good (no such conversation, not a member,
// not a recipient) and the id names no message there. Anything else (a timeout, no majority, a
// conflict with a stored message) leaves the claim where it is.
bool HttpApi::refusal_names_no_message(wire::Status status,
                                       const std::optional<codec::Frame>& reply) {
  if (status != wire::Status::kOk || !reply ||
      reply->header().type != wire::MessageType::kAppendReply)
    return false;
  const auto answer = reply->body<wire::AppendReply>();
  return answer && !answer->duplicate &&
         (answer->status == wire::Status::kNotFound || answer->status == wire::Status::kInvalid);
}

// The client hears the refusal once the claim is released, so that a send it makes next (to the
// right conversation) finds the id free. A release that fails leaves the id taken, as before.
void HttpApi::release_claim(Call call, const wire::LocateMessage& claim, ApiResponse refusal) {
  storage_.command<Empty>(
      wire::locator_key(claim.tenant_id, claim.message_id), wire::CommandKind::kReleaseMessage,
      claim,
      [call, refusal = std::move(refusal)](StorageOutcome<Empty>) mutable {
        call.respond(std::move(refusal));
      },
      call.trace_id);
}

void HttpApi::find_message(Call call, std::function<void(Call, std::string)> next) {
  const std::string& message_id = call.params[0];
  if (auto error = check_id(message_id, "message_id")) return call.respond(error_response(*error));
  storage_.query<std::string>(
      wire::locator_key(call.caller.tenant, message_id), wire::QueryKind::kFindMessage,
      wire::LocateMessage{call.caller.tenant, message_id, ""},
      [call, next](StorageOutcome<std::string> outcome) {
        if (!outcome.ok()) return call.respond(storage_error(outcome));
        next(call, std::move(*outcome.value));
      },
      call.trace_id);
}

void HttpApi::get_message(const ApiRequest&, Call call) {
  find_message(std::move(call), [this](Call call, std::string conversation_id) {
    storage_.query<wire::MessageWithStates>(
        conversation_id, wire::QueryKind::kGetMessage,
        wire::ConversationLookup{call.caller.tenant, conversation_id, call.caller.requester(),
                                 call.params[0]},
        on_ok<wire::MessageWithStates>(call.respond,
                                       [call](wire::MessageWithStates found) {
                                         json body = public_message_json(found.message);
                                         json states = json::array();
                                         for (const auto& state : found.states)
                                           states.push_back(recipient_state_json(state));
                                         body["states"] = std::move(states);
                                         call.respond(json_response(200, body));
                                       }),
        call.trace_id);
  });
}

// Found like the message itself (an unknown id, another tenant's, or one of a conversation the
// caller is not in: 404); storage narrows the records to the caller's own unless it is the
// sender or an admin.
void HttpApi::get_channel_deliveries(const ApiRequest&, Call call) {
  find_message(std::move(call), [this](Call call, std::string conversation_id) {
    const wire::ConversationLookup lookup{call.caller.tenant, conversation_id,
                                          call.caller.requester(), call.params[0]};
    storage_.query<std::vector<wire::ChannelDeliveryRecord>>(
        conversation_id, wire::QueryKind::kListChannelDeliveries, lookup,
        on_ok<std::vector<wire::ChannelDeliveryRecord>>(
            call.respond,
            [call, conversation_id](std::vector<wire::ChannelDeliveryRecord> records) {
              json deliveries = json::array();
              for (const auto& record : records)
                deliveries.push_back(channel_delivery_json(record));
              call.respond(json_response(200, {{"message_id", call.params[0]},
                                               {"conversation_id", conversation_id},
                                               {"deliveries", std::move(deliveries)}}));
            }),
        call.trace_id);
  });
}

void HttpApi::mark_message_delivered(const ApiRequest&, Call call) {
  mark_message(std::move(call), wire::kStateDelivered);
}

void HttpApi::mark_message_read(const ApiRequest&, Call call) {
  mark_message(std::move(call), wire::kStateRead);
}

void HttpApi::mark_message(Call call, const char* state) {
  find_message(std::move(call), [this, state](Call call, std::string conversation_id) {
    const wire::MarkState mark{
        call.caller.tenant, conversation_id, call.caller.subject, state, call.params[0], 0};
    storage_.command<wire::MarkStateResult>(
        conversation_id, wire::CommandKind::kMarkState, mark,
        [call](StorageOutcome<wire::MarkStateResult> outcome) {
          // A member that is not a recipient (the sender, or left out by `to`).
          if (outcome.status == wire::Status::kInvalid && outcome.field == "message_id")
            return call.respond(error_response(403, "not_a_recipient",
                                               "only a recipient of the message may mark it"));
          if (!outcome.ok()) return call.respond(storage_error(outcome));
          call.respond(json_response(200, recipient_state_json(outcome.value->message_state)));
        },
        call.trace_id);
  });
}

}  // namespace chat4all::frontend
