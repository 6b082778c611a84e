#include "bench/http_load_options.h"

namespace chat4all::bench {

void define_load_options(CLI::App& app, LoadOptions& options) {
  // As before CLI11: an option given twice keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.description(
      "Sends POST /v1/messages to a Chat4All frontend and reports throughput and latency.");
  app.footer(
      "The run ends by itself after warmup + duration, plus at most --timeout-s to collect "
      "answers\n"
      "still in flight. The human summary goes to stderr; stdout gets one JSON line.");
  add_session_options(app, options, "frontend base URL, http://host:port or https://host:port",
                      "user that sends, created if missing");
  app.add_option("--cacert", options.cacert,
                 "with https: check the frontend's certificate against this CA (PEM); without it "
                 "the certificate is not checked")
      ->type_name("FILE");
  app.add_option("--connections", options.connections,
                 "keep-alive connections, one request in flight each")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--conversations", options.conversations,
                 "group conversations of both users, created before the run and used round-robin")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000'000}))
      ->capture_default_str();
  app.add_option("--duration-s", options.duration_s, "measured seconds after the warmup")
      ->check(CLI::Range(0.001, 86400.0))
      ->capture_default_str();
  app.add_option("--warmup-s", options.warmup_s, "seconds sent but left out of the statistics")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--messages", options.messages,
                 "stop after N requests in total, warmup included (0: no cap)")
      ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1'000'000'000'000}))
      ->capture_default_str();
  app.add_option("--rate", options.rate,
                 "target messages/s over all connections, open loop; latency counts from each "
                 "message's due time (0: closed loop, as fast as answers come back; otherwise at "
                 "least 0.01)")
      ->check(CLI::Validator(
          [](const std::string& text) {
            double rate = 0;
            if (!parse_number<double>(text, 0, 10'000'000, rate) || (rate > 0 && rate < 0.01))
              return std::string("0, or between 0.01 and 10000000");
            return std::string();
          },
          "RATE"))
      ->capture_default_str();
  app.add_option("--timeout-s", options.timeout_s,
                 "an answer not back after S seconds counts as a timeout and the connection is "
                 "reopened (the frontend itself answers 504 after limits.request_timeout_ms)")
      ->check(CLI::Range(0.01, 600.0))
      ->capture_default_str();
  app.add_option("--threads", options.threads, "client I/O threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--ack-log", options.ack_log,
                 "behave like a careful client and record every message's outcome in FILE: a "
                 "message answered 429/500/502/503/504, or lost with its connection, is sent again "
                 "with the same message_id until it is acknowledged or its retry budget is spent "
                 "(then its outcome is \"unknown\"); see tools/fault/README.md for the format")
      ->type_name("FILE")
      ->check([](const std::string& text) {
        return text.empty() ? std::string("a file name") : std::string();
      });
  app.add_option("--retry-s", options.retry_s,
                 "with --ack-log: stop retrying a message S seconds after its first attempt")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--retry-attempts", options.retry_attempts,
                 "with --ack-log: attempts per message at most")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
}

}  // namespace chat4all::bench
