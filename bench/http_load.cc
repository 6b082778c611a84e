// chat4all-http-load: drives POST /v1/messages over HTTP/1.1 keep-alive connections and
// reports throughput and latency percentiles. This file sets a run up (users, conversations,
// the plan), runs the generator (load_generator.h) on its I/O threads and reports; the options
// are http_load_options.h's.

// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "bench/command_line.h"
#include "bench/http_client.h"
#include "bench/http_load_options.h"
#include "bench/load_generator.h"

namespace chat4all::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

using Options = LoadOptions;

// ---------------------------------------------------------------------------------------------
// Setup

std::string new_run_id() {
  std::random_device entropy;
  const std::uint64_t bits = (std::uint64_t{entropy()} << 32) ^ entropy();
  char text[16];
  std::snprintf(text, sizeof text, "r%08llx", static_cast<unsigned long long>(bits & 0xffffffff));
  return text;
}

// Every connection is a file descriptor; ask for enough of them.
void raise_open_file_limit(std::uint64_t needed) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
  limit.rlim_cur = std::min<rlim_t>(needed, limit.rlim_max);
  setrlimit(RLIMIT_NOFILE, &limit);
}

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& time) { return time.tv_sec + time.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double to_seconds(Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Milliseconds, rounded to 0.1 microsecond.
double to_ms(std::uint64_t nanoseconds) {
  return std::round(nanoseconds / 100.0) / 1e4;
}

// ---------------------------------------------------------------------------------------------

int run(int argc, char** argv) {
  Options options;
  CLI::App app("", "chat4all-http-load");
  define_load_options(app, options);
  if (auto exit_status = parse_command_line(app, argc, argv)) return *exit_status;
  std::string url_error;
  auto target = parse_url(options.url, url_error);
  if (!target) {
    std::fprintf(stderr, "chat4all-http-load: %s\n", url_error.c_str());
    return 2;
  }
  if (target->https && !options.cacert.empty()) {
    try {
      use_tls(*target, options.cacert);
    } catch (const std::exception& error) {
      std::fprintf(stderr, "chat4all-http-load: %s\n", error.what());
      return 2;
    }
  }
  options.threads = std::min(options.threads, options.connections);

  Plan plan;
  plan.target = *target;
  Token token;
  try {
    plan.endpoint = resolve(*target);
    std::fprintf(stderr, "chat4all-http-load: creating users %s, %s and %llu conversations\n",
                 options.user.c_str(), options.peer.c_str(),
                 static_cast<unsigned long long>(options.conversations));
    token =
        prepare_users(plan.endpoint, *target,
                      Credentials{options.tenant, options.client_id, options.client_secret, true},
                      options.user, options.peer, options.password);
    for (std::uint64_t i = 0; i < options.conversations; ++i)
      plan.conversation_ids.push_back(create_group(plan.endpoint, *target, token, options.peer));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chat4all-http-load: %s\n", error.what());
    return 1;
  }
  const double run_s = options.warmup_s + options.duration_s;
  if (token.expires_in_s > 0 && run_s > static_cast<double>(token.expires_in_s))
    std::fprintf(stderr,
                 "chat4all-http-load: warning: the token expires after %lld s; later "
                 "requests will get 401\n",
                 static_cast<long long>(token.expires_in_s));

  raise_open_file_limit(options.connections + 64);
  plan.run_id = new_run_id();
  plan.request_head = "POST /v1/messages HTTP/1.1\r\nHost: " + target->host_header +
                      "\r\nAuthorization: Bearer " + token.access_token +
                      "\r\nContent-Type: application/json\r\n";
  plan.connections = options.connections;
  plan.conversations = options.conversations;
  plan.rate = options.rate;
  plan.ns_per_message = options.rate > 0 ? 1e9 / options.rate : 0;
  plan.message_cap = options.messages;
  plan.request_timeout =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
  plan.ack_mode = !options.ack_log.empty();
  plan.retry_window =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.retry_s));
  plan.retry_attempts = options.retry_attempts;
  // Fail before the run rather than lose its outcomes after it.
  std::ofstream ack_log;
  if (plan.ack_mode) {
    ack_log.open(options.ack_log, std::ios::out | std::ios::trunc);
    if (!ack_log) {
      std::fprintf(stderr, "chat4all-http-load: cannot write %s\n", options.ack_log.c_str());
      return 2;
    }
  }

  std::vector<std::unique_ptr<Worker>> workers;
  for (std::uint32_t i = 0; i < options.threads; ++i)
    workers.push_back(std::make_unique<Worker>(plan));
  for (std::uint32_t i = 0; i < options.connections; ++i)
    workers[i % options.threads]->add_connection(i);

  char mode[64] = "closed loop";
  if (options.rate > 0) std::snprintf(mode, sizeof mode, "open loop at %.6g msgs/s", options.rate);
  std::fprintf(stderr,
               "chat4all-http-load: run %s, %s as %s, %u connections, %u I/O threads, %llu "
               "conversations, %s, warmup %.3g s + %.3g s\n",
               plan.run_id.c_str(), options.url.c_str(), options.user.c_str(), options.connections,
               options.threads, static_cast<unsigned long long>(options.conversations), mode,
               options.warmup_s, options.duration_s);

  // Ctrl-C and SIGTERM go to this thread alone (workers inherit the mask), which stops the
  // sending and still prints the summary. A second one ends the process at once.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const double cpu_before = cpu_seconds();
  plan.start = Clock::now();
  plan.warmup_end = plan.start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.warmup_s));
  plan.send_end = plan.warmup_end + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options.duration_s));
  // Every request written before send_end gets its full timeout before the drain cuts it.
  plan.drain_end = plan.send_end + plan.request_timeout + 2 * kSweepInterval;
  // A message first sent just before send_end may retry for its whole window.
  if (plan.ack_mode) plan.drain_end += plan.retry_window + kMaxBackoff;

  std::atomic<std::uint32_t> running{static_cast<std::uint32_t>(workers.size())};
  std::vector<std::thread> threads;
  for (auto& worker : workers)
    threads.emplace_back([&worker, &running] {
      worker->run();
      running.fetch_sub(1);
    });

  bool interrupted = false;
  Clock::time_point sending_stopped = plan.send_end;
  while (running.load() > 0) {
    const timespec poll{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &poll) < 0) continue;  // timeout or EINTR
    if (interrupted) std::_Exit(130);
    interrupted = true;
    std::fprintf(stderr, "chat4all-http-load: stopping; collecting answers in flight\n");
    plan.stop_requested.store(true);
    sending_stopped = std::min(sending_stopped, Clock::now());
    for (auto& worker : workers) worker->hurry(Clock::now() + plan.request_timeout);
  }
  for (auto& thread : threads) thread.join();
  const Clock::time_point finished = Clock::now();
  const double cpu_used = cpu_seconds() - cpu_before;

  RunStats total;
  for (const auto& worker : workers) total.merge(worker->stats());

  // The measured window: from the end of the warmup to the last measured answer.
  const Clock::time_point window_end =
      total.last_measured_answer.value_or(std::min(finished, sending_stopped));
  const double duration_s = std::max(0.0, to_seconds(window_end - plan.warmup_end));
  const double msgs_per_s = duration_s > 0 ? total.accepted / duration_s : 0;
  std::uint64_t error_count = 0;
  for (const auto& [kind, count] : total.errors) error_count += count;
  std::uint64_t scheduled = 0;  // open loop: messages due inside the measured window
  if (options.rate > 0)
    scheduled = static_cast<std::uint64_t>(std::ceil(run_s * options.rate) -
                                           std::ceil(options.warmup_s * options.rate));
  const LatencyHistogram& latency = total.latency;

  std::fprintf(stderr, "\n");
  std::fprintf(stderr,
               "  measured   %.3f s after %.3g s warmup (%llu warmup requests left out)%s\n",
               duration_s, options.warmup_s, static_cast<unsigned long long>(total.warmup_sent),
               interrupted ? ", interrupted" : "");
  std::fprintf(stderr, "  sent       %llu", static_cast<unsigned long long>(total.sent));
  if (options.rate > 0)
    std::fprintf(stderr, " of %llu scheduled at %.6g msgs/s",
                 static_cast<unsigned long long>(scheduled), options.rate);
  std::fprintf(stderr, "\n  accepted   %llu (202), %.1f msgs/s\n",
               static_cast<unsigned long long>(total.accepted), msgs_per_s);
  std::fprintf(stderr, "  errors     %llu\n", static_cast<unsigned long long>(error_count));
  std::uint64_t acknowledged = 0;
  for (const auto& outcome : total.outcomes) acknowledged += outcome.acknowledged ? 1 : 0;
  if (plan.ack_mode) {
    write_ack_log(ack_log, plan.run_id, plan.conversation_ids, total.outcomes);
    ack_log.close();
    if (!ack_log)
      std::fprintf(stderr, "chat4all-http-load: writing %s failed\n", options.ack_log.c_str());
    std::fprintf(stderr,
                 "  messages   %llu: %llu acknowledged, %llu unknown, %llu retries; outcomes in "
                 "%s\n",
                 static_cast<unsigned long long>(total.outcomes.size()),
                 static_cast<unsigned long long>(acknowledged),
                 static_cast<unsigned long long>(total.outcomes.size() - acknowledged),
                 static_cast<unsigned long long>(total.retries), options.ack_log.c_str());
  }
  for (const auto& [kind, count] : total.errors) {
    std::fprintf(stderr, "    %-20s %llu\n", kind.c_str(), static_cast<unsigned long long>(count));
    if (kind.rfind("http_", 0) == 0) {
      const auto sample = total.first_error_body.find(std::atoi(kind.c_str() + 5));
      if (sample != total.first_error_body.end())
        std::fprintf(stderr, "      first answer: %s\n", sample->second.c_str());
    }
  }
  std::fprintf(stderr,
               "  latency ms %s min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
               "mean %.3f\n",
               options.rate > 0 ? "(from due time)" : "(from send)", to_ms(latency.min()),
               to_ms(latency.value_at(0.5)), to_ms(latency.value_at(0.9)),
               to_ms(latency.value_at(0.99)), to_ms(latency.value_at(0.999)), to_ms(latency.max()),
               latency.mean() / 1e6);
  std::fprintf(stderr, "  generator  %.2f s CPU in %.2f s wall (%.0f%% of one core)\n\n", cpu_used,
               to_seconds(finished - plan.start),
               100 * cpu_used / std::max(1e-9, to_seconds(finished - plan.start)));

  // Keys in a fixed order, the headline figures first.
  nlohmann::ordered_json errors = nlohmann::ordered_json::object();
  for (const auto& [kind, count] : total.errors) errors[kind] = count;
  nlohmann::ordered_json result = {
      {"sent", total.sent},
      {"accepted", total.accepted},
      {"errors", errors},
      {"duration_s", std::round(duration_s * 1000) / 1000},
      {"msgs_per_s", std::round(msgs_per_s * 10) / 10},
      {"p50_ms", to_ms(latency.value_at(0.5))},
      {"p90_ms", to_ms(latency.value_at(0.9))},
      {"p99_ms", to_ms(latency.value_at(0.99))},
      {"p999_ms", to_ms(latency.value_at(0.999))},
      {"max_ms", to_ms(latency.max())},
      {"mean_ms", std::round(latency.mean() / 100) / 1e4},
      {"connections", options.connections},
      {"conversations", options.conversations},
      {"rate", options.rate},
      {"scheduled", scheduled},
      {"warmup_s", options.warmup_s},
      {"timeout_s", options.timeout_s},
      {"threads", options.threads},
      {"run_id", plan.run_id},
      {"generator_cpu_s", std::round(cpu_used * 100) / 100},
      {"interrupted", interrupted},
  };
  if (plan.ack_mode) {
    result["messages"] = total.outcomes.size();
    result["acknowledged"] = acknowledged;
    result["unknown"] = total.outcomes.size() - acknowledged;
    result["retries"] = total.retries;
    result["ack_log"] = options.ack_log;
  }
  std::cout << result.dump() << std::endl;
  return total.accepted > 0 ? 0 : 1;
}

}  // namespace
}  // namespace chat4all::bench

int main(int argc, char** argv) {
  return chat4all::bench::run(argc, argv);
}
