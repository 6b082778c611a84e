#include "nodes/frontend/api_support.h"

namespace chat4all::frontend {

using nlohmann::json;

ApiResponse json_response(int status, const json& body) {
  return ApiResponse{
      status, body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json", {}};
}

ApiResponse error_response(const ApiError& error) {
  ApiResponse response{error.http_status, error.to_json(), "application/json", {}};
  if (error.http_status == 429 || error.http_status == 503)
    response.headers.emplace_back("Retry-After", "1");
  if (error.http_status == 401)
    response.headers.emplace_back("WWW-Authenticate", "Bearer error=\"invalid_token\"");
  return response;
}

ApiResponse error_response(int status, const std::string& code, const std::string& message,
                           const std::string& field) {
  return error_response(ApiError{status, code, message, field});
}

ApiResponse no_content() {
  return ApiResponse{204, "", "application/json", {}};
}

void set_header(ApiResponse& response, const std::string& name, std::string value) {
  for (auto& [existing, old_value] : response.headers)
    if (existing == name) {
      old_value = std::move(value);
      return;
    }
  response.headers.emplace_back(name, std::move(value));
}

ApiResponse storage_error(wire::Status status, const std::string& detail, const std::string& field,
                          const FailureCodes& codes) {
  auto with_detail = [&](std::string message) {
    return detail.empty() ? message : message + " (" + detail + ")";
  };
  switch (status) {
    case wire::Status::kNotFound:
      return error_response(404, codes.not_found, detail.empty() ? "not found" : detail);
    case wire::Status::kExists:
      return error_response(409, codes.exists, detail.empty() ? "exists already" : detail, field);
    case wire::Status::kConflict:
      return error_response(409, codes.conflict, detail.empty() ? "conflict" : detail, field);
    case wire::Status::kInvalid:
      return error_response(400, "invalid_field", detail.empty() ? "invalid request" : detail,
                            field);
    case wire::Status::kTimeout:
      return error_response(504, "upstream_timeout",
                            with_detail("storage did not confirm in time; the outcome is unknown, "
                                        "retry (with the same message_id when sending)"));
    case wire::Status::kUnavailable:
    case wire::Status::kNotOwner:
      return error_response(503, "unavailable",
                            with_detail("no storage node can take the request now"));
    case wire::Status::kStorageFull:
      return error_response(507, "storage_full", with_detail("storage is full"));
    case wire::Status::kOk:
    case wire::Status::kInternal:
      break;
  }
  return error_response(500, "internal", detail.empty() ? "internal error" : detail);
}

}  // namespace chat4all::frontend
