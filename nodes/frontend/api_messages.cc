// Sending, reading and marking messages, and their channel deliveries (HttpApi, see http_api.h).
#include <algorithm>
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

// A message_id the locator does not know is looked up this many times, kLocatorRetryDelay apart
// (about 300 ms in all), before the answer is 404: long enough for the routers to index a
// message another frontend accepted just now.
constexpr int kLocatorLookupTries = 3;
constexpr std::chrono::milliseconds kLocatorRetryDelay{150};

std::int64_t steady_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// One replicated round: the append goes straight to the conversation's partition, which decides
// the seq and the dedup verdict (per conversation). The id's locator entry is written behind the
// committed log by the routers (nodes/router/locator_indexer.h); until then this frontend finds
// the message through accepted_ (read-your-writes).
void HttpApi::send_message(const ApiRequest& request, Call call) {
  auto parsed = parse_send_message(request.body, call.caller.tenant, call.caller.user(),
                                   message_limits_, ids::now_ms());
  if (auto* error = std::get_if<ApiError>(&parsed)) return call.respond(error_response(*error));
  auto append_request = std::get<wire::AppendRequest>(std::move(parsed));
  if (append_request.payload.type == "file")
    return attach_file(std::move(call), std::move(append_request));
  append(std::move(call), std::move(append_request));
}

// A file message names a complete file its sender uploaded, or one sent into this conversation
// before; the file's record then lists the conversation (so that its members may read it)
// before the message is stored, and the message carries what the record says of the file.
void HttpApi::attach_file(Call call, wire::AppendRequest append_request) {
  const std::string tenant = call.caller.tenant;
  const wire::TenantLookup lookup{tenant, append_request.payload.file_id};
  auto refuse = [call](const std::string& why) {
    call.respond(error_response(400, "invalid_field", why, "payload.file_id"));
  };
  storage_.query<wire::FileRecord>(
      wire::tenant_key(tenant), wire::QueryKind::kGetFile, lookup,
      [this, call, append_request = std::move(append_request), refuse,
       tenant](StorageOutcome<wire::FileRecord> outcome) mutable {
        if (outcome.status == wire::Status::kNotFound)
          return refuse("no file with this id: upload it first (POST /v1/files)");
        if (!outcome.ok()) return call.respond(storage_error(outcome));
        const wire::FileRecord& file = *outcome.value;
        const auto& shared = file.conversations;
        const bool may_use =
            file.owner_id == append_request.sender_id ||
            std::find(shared.begin(), shared.end(), append_request.conversation_id) != shared.end();
        if (!may_use) return refuse("no file with this id that the sender may send");
        if (file.state != wire::kFileComplete)
          return refuse("the file's upload is not complete (" + std::to_string(file.offset) +
                        " of " + std::to_string(file.length) + " bytes)");
        wire::Payload& payload = append_request.payload;
        payload.file_name = file.name;
        payload.file_size = file.length;
        payload.media_type = file.media_type;
        payload.sha256 = file.sha256;
        storage_.command<wire::FileRecord>(
            wire::tenant_key(tenant), wire::CommandKind::kShareFile,
            wire::ShareFile{tenant, file.file_id, append_request.conversation_id},
            [this, call, append_request](StorageOutcome<wire::FileRecord> shared) mutable {
              if (!shared.ok()) return call.respond(storage_error(shared));
              append(std::move(call), std::move(append_request));
            },
            call.trace_id);
      },
      call.trace_id);
}

void HttpApi::append(Call call, wire::AppendRequest append_request) {
  const auto started = std::chrono::steady_clock::now();
  const wire::Header header{wire::kWireVersion, wire::MessageType::kAppendRequest,
                            ids::next_request_id(), call.trace_id};
  routers_.submit(
      header.request_id, codec::encode(header, append_request),
      [this, call, started](wire::Status status, std::optional<codec::Frame> reply) {
        auto unwrapped = unwrap_reply<wire::AppendReply>(
            status, reply, wire::MessageType::kAppendReply, kMessageCodes);
        if (auto* failure = std::get_if<ApiResponse>(&unwrapped)) {
          log_.debug("send_failed", {{"trace_id", call.trace_id}, {"status", failure->status}});
          return call.respond(std::move(*failure));
        }
        const auto& answer = std::get<wire::AppendReply>(unwrapped);
        accepted_.remember(call.caller.tenant, answer.message_id, answer.conversation_id,
                           steady_now_ms());
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

void HttpApi::find_message(Call call, std::function<void(Call, std::string)> next) {
  const std::string& message_id = call.params[0];
  if (auto error = check_id(message_id, "message_id")) return call.respond(error_response(*error));
  look_up_message(std::move(call), std::move(next), kLocatorLookupTries);
}

// The locator first (it names the conversation that holds the id for the whole tenant); when it
// does not know the id yet, what this frontend accepted; when neither does, the locator again
// after a short wait, since another frontend may have accepted it a moment ago and its entry is
// on its way. The caller's tenant is part of every key, so nothing of another tenant is found.
void HttpApi::look_up_message(Call call, std::function<void(Call, std::string)> next,
                              int tries_left) {
  const std::string message_id = call.params[0];
  storage_.query<std::string>(
      wire::locator_key(call.caller.tenant, message_id), wire::QueryKind::kFindMessage,
      wire::LocateMessage{call.caller.tenant, message_id, ""},
      [this, call, next, tries_left, message_id](StorageOutcome<std::string> outcome) mutable {
        if (outcome.ok()) return next(std::move(call), std::move(*outcome.value));
        if (outcome.status != wire::Status::kNotFound) return call.respond(storage_error(outcome));
        if (auto accepted = accepted_.find(call.caller.tenant, message_id, steady_now_ms()))
          return next(std::move(call), std::move(*accepted));
        if (tries_left <= 1) return call.respond(storage_error(outcome));
        auto respond = call.respond;
        const bool scheduled = lookup_retries_.schedule(
            kLocatorRetryDelay,
            [this, call = std::move(call), next = std::move(next), tries_left]() mutable {
              look_up_message(std::move(call), std::move(next), tries_left - 1);
            });
        // At the bound of waiting retries the answer is the one the locator gave.
        if (!scheduled) respond(storage_error(outcome));
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
