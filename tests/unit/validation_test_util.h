// Assertions on the variant<T, ApiError> that the request parsers return.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "nodes/frontend/validation_support.h"

namespace chat4all::frontend::testing {

template <typename T>
T expect_ok(const std::variant<T, ApiError>& result) {
  if (const auto* error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->to_json();
    return {};
  }
  return std::get<T>(result);
}

// Checks status, code and field of an error, and that it has a message.
template <typename T>
void expect_api_error(const std::variant<T, ApiError>& result, int status, const std::string& code,
                      const std::string& field) {
  const auto* error = std::get_if<ApiError>(&result);
  ASSERT_NE(error, nullptr) << "expected an error";
  EXPECT_EQ(error->http_status, status) << error->to_json();
  EXPECT_EQ(error->code, code) << error->to_json();
  EXPECT_EQ(error->field, field) << error->to_json();
  EXPECT_FALSE(error->message.empty());
}

}  // namespace chat4all::frontend::testing
