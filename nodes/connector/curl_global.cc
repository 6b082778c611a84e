#include "nodes/connector/curl_global.h"

#include <curl/curl.h>

#include <cstdio>
#include <cstdlib>

namespace chat4all::connector {

void ensure_curl_initialised() {
  static const bool initialised = [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      std::fprintf(stderr, "fatal: libcurl failed to initialise\n");
      std::abort();
    }
    return true;
  }();
  (void)initialised;
}

}  // namespace chat4all::connector
