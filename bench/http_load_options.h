// chat4all-http-load's options, and their --help, from one definition (CLI11).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "bench/command_line.h"

namespace chat4all::bench {

struct LoadOptions : SessionOptions {
  std::uint32_t connections = 64;
  std::uint64_t conversations = 1000;
  double duration_s = 10;
  double warmup_s = 1;
  std::uint64_t messages = 0;  // 0: no cap
  double rate = 0;             // 0: closed loop
  double timeout_s = 5;
  std::uint32_t threads = 1;
  std::string ack_log;  // empty: fire and forget, no retries
  std::string cacert;   // https: the CA that signed the frontend's certificate
  double retry_s = 15;
  std::uint32_t retry_attempts = 40;
};

// Puts the options, with their help text, on `app`; parsing fills `options`.
void define_load_options(CLI::App& app, LoadOptions& options);

}  // namespace chat4all::bench
