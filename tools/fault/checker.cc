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

#include "bench/http_client.h"
#include "tools/fault/verify.h"

namespace chat4all::fault {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(usage: chat4all-check --ack-log FILE [options]

Reads back every conversation FILE (written by chat4all-http-load --ack-log) names and checks
that nothing acknowledged was lost, duplicated or reordered.

  --ack-log FILE         the load generator's outcome log (required)
  --url URL              frontend base URL (default http://127.0.0.1:8080)
  --tenant ID            the tenant of the conversations (default dev)
  --user ID              user to read as, a member of them (default alice)
  --password PASSWORD    that user's password (default chat4all-dev)
  --page N               messages per history page (default 500)
  --read-budget-s S      per conversation, keep retrying 503/504/connection failures this long
                         before calling it unreadable (default 30)
  --json                 print the counts as one JSON object instead of one line
  --help                 this text

Exit status: 0 when every check passed, 1 when one failed, 2 for bad options or an unreadable
log or a failed login.
)";

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

std::optional<std::string> parse_options(int argc, char** argv, Options& options, bool& help) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help = true;
      return std::nullopt;
    }
    if (arg == "--json") {
      options.json = true;
      continue;
    }
    const std::string_view name = arg.substr(0, arg.find('='));
    std::string_view value;
    if (name.size() < arg.size()) {
      value = arg.substr(name.size() + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return std::string(name) + " needs a value";
    }
    bool ok = true;
    if (name == "--ack-log") {
      options.ack_log = value;
    } else if (name == "--url") {
      options.url = value;
    } else if (name == "--tenant") {
      options.tenant = value;
    } else if (name == "--user") {
      options.user = value;
    } else if (name == "--password") {
      options.password = value;
    } else if (name == "--page") {
      ok = bench::parse_number<std::uint32_t>(value, 1, 100000, options.page);
    } else if (name == "--read-budget-s") {
      ok = bench::parse_number<double>(value, 0, 3600, options.read_budget_s);
    } else {
      return "unknown option " + std::string(name);
    }
    if (!ok) return "bad value '" + std::string(value) + "' for " + std::string(name);
  }
  if (options.ack_log.empty()) return std::string("--ack-log is required");
  return std::nullopt;
}

int run(int argc, char** argv) {
  Options options;
  bool help = false;
  if (auto error = parse_options(argc, argv, options, help)) {
    std::fprintf(stderr, "chat4all-check: %s\n\n%s", error->c_str(), kUsage);
    return 2;
  }
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
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
