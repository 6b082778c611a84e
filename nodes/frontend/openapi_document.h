// schema/openapi.yaml as it was when this binary was built (embedded by
// CMake from nodes/frontend/openapi_document.cc.in), served at
// GET /v1/openapi.yaml. Empty when the build had no such file.
#pragma once

#include <string_view>

namespace chat4all::frontend {

std::string_view openapi_document();

}  // namespace chat4all::frontend
