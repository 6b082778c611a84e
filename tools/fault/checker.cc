// chat4all-check: reads every conversation an ack log names back over the public HTTP API and
// proves that every acknowledged message is stored exactly once, at its acknowledged seq, in a
// gap-free history, in the order each sender had it acknowledged. See tools/fault/README.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "bench/command_line.h"
#include "bench/http_client.h"
#include "tools/fault/verify.h"

namespace chat4all::fault {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string ack_log;
  std::string url = "http://127.0.0.1:8080";
  std::string tenant = bench::kDevTenant;
  std::string user = "alice";
  std::string password = bench::kDevSecret;
  std::uint32_t page = 500;
  double read_budget_s = 30;
  bool json = false;
};

// The options, with their help text, on `app`.
void define_options(CLI::App& app, Options& options) {
  // As before CLI11: an option given twice keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.description(
      "Reads back every conversation FILE (written by chat4all-http-load --ack-log) names and\n"
      "checks that nothing acknowledged was lost, duplicated or reordered.");
  app.footer(
      "Exit status: 0 when every check passed, 1 when one failed, 2 for bad options or an\n"
      "unreadable log or a failed login.");
  app.add_option("--ack-log", options.ack_log, "the load generator's outcome log")
      ->required()
      ->type_name("FILE");
  app.add_option("--url", options.url, "frontend base URL")->capture_default_str();
  app.add_option("--tenant", options.tenant, "the tenant of the conversations")
      ->capture_default_str();
  app.add_option("--user", options.user, "user to read as, a member of them")
      ->capture_default_str();
  app.add_option("--password", options.password, "that user's password")->capture_default_str();
  app.add_option("--page", options.page, "messages per history page")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--read-budget-s", options.read_budget_s,
                 "per conversation, keep retrying 503/504/connection failures this long before "
                 "calling it unreadable")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_flag("--json", options.json, "print the counts as one JSON object instead of one line");
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app("", "chat4all-check");
  define_options(app, options);
  if (auto exit_status = bench::parse_command_line(app, argc, argv)) return *exit_status;
  std::ifstream in(options.ack_log);
  if (!in) {
    std::fprintf(stderr, "chat4all-check: cannot read %s\n", options.ack_log.c_str());
    return 2;
  }
  std::string parse_error;
  const auto log = parse_ack_log(in, parse_error);
  if (!log) {
    std::fprintf(stderr, "chat4all-check: %s: %s\n", options.ack_log.c_str(), parse_error.c_str());
    return 2;
  }

  std::string url_error;
  const auto target = bench::parse_url(options.url, url_error);
  if (!target) {
    std::fprintf(stderr, "chat4all-check: %s\n", url_error.c_str());
    return 2;
  }
  boost::asio::ip::tcp::endpoint endpoint;
  bench::Token token;
  try {
    endpoint = bench::resolve(*target);
    token = bench::fetch_token(endpoint, *target,
                               bench::Credentials{options.tenant, options.user, options.password});
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chat4all-check: %s\n", error.what());
    return 2;
  }

  std::set<std::string> conversations;
  for (const auto& record : *log) conversations.insert(record.conversation_id);
  const std::string authorization = "Bearer " + token.access_token;
  std::map<std::string, History> histories;
  for (const auto& conversation_id : conversations) {
    std::string error;
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options.read_budget_s));
    if (auto read = bench::read_history(endpoint, *target, authorization, conversation_id, 1,
                                        options.page, deadline, error)) {
      History& history = histories[conversation_id];
      history.last_seq = read->last_seq;
      history.first_seq = read->first_seq;
      history.first_seq_end = read->first_seq_end;
      for (auto& message : read->messages)
        history.messages.push_back({message.seq, std::move(message.message_id)});
    } else {
      // Left out of `histories`, which verify() counts as unreadable, a failure.
      std::fprintf(stderr, "chat4all-check: cannot read %s: %s\n", conversation_id.c_str(),
                   error.c_str());
    }
  }

  const Report report = verify(*log, histories);
  for (const auto& problem : report.problems)
    std::fprintf(stderr, "chat4all-check: %s\n", problem.c_str());
  std::cout << (options.json ? summary_json(report) : summary_line(report)) << std::endl;
  return report.ok() ? 0 : 1;
}

}  // namespace
}  // namespace chat4all::fault

int main(int argc, char** argv) {
  return chat4all::fault::run(argc, argv);
}
