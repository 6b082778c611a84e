// libcurl's process-wide set-up, in one place for every part of the connector that uses curl
// (HttpSender's multi handle, CurlTransport's easy handles).
//
// curl_global_init() is not safe to race with itself or with other curl calls before libcurl
// 7.84; two function-local statics in two files would each run it once, possibly at the same
// time. One here runs it exactly once per process. curl_global_cleanup() is never called:
// senders and transports may live until exit, and the process' exit frees everything anyway.
//
// Thread-safe. Aborts the process if libcurl cannot initialise (nothing could be sent).
#pragma once

namespace chat4all::connector {

void ensure_curl_initialised();

}  // namespace chat4all::connector
