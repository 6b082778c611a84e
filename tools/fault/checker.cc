// chat4all-check: reads every conversation an ack log names back over the public HTTP API and
// proves that every acknowledged message is stored exactly once, at its acknowledged seq, in a
// gap-free history, in the order each sender had it acknowledged. See tools/fault/README.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "bench/http_client.h"
#include "tools/fault/verify.h"

namespace chat4all::fault {
namespace {

using bench::HttpAnswer;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kUsage = R"(usage: chat4all-check --ack-log FILE [options]

Reads back every conversation FILE (written by chat4all-http-load --ack-log) names and checks
that nothing acknowledged was lost, duplicated or reordered.

  --ack-log FILE         the load generator's outcome log (required)
  --url URL              frontend base URL (default http://127.0.0.1:8080)
  --user ID              user to read as (default alice)
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
  std::string user = "alice";
  std::string password = "chat4all-dev";
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

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

class Reader {
 public:
  Reader(const Options& options, const bench::Target& target,
         const boost::asio::ip::tcp::endpoint& endpoint, std::string token)
      : options_(options), target_(target), endpoint_(endpoint), token_(std::move(token)) {}

  // The whole history, or nothing (with `error` set) when it could not be read within the
  // budget. A storage node that is still catching up answers 503/504 for a while; that is
  // waited out, not reported.
  std::optional<History> read(const std::string& conversation_id, std::string& error) {
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(options_.read_budget_s));
    History history;
    std::uint64_t from_seq = 1;
    while (true) {
      const std::string path = "/v1/conversations/" + percent_encode(conversation_id) +
                               "/messages?from_seq=" + std::to_string(from_seq) +
                               "&limit=" + std::to_string(options_.page);
      HttpAnswer answer;
      auto backoff = std::chrono::milliseconds(50);
      while (true) {
        answer =
            bench::http_request(endpoint_, target_, boost::beast::http::verb::get, path, "",
                                {{"Authorization", "Bearer " + token_}}, std::chrono::seconds(10));
        const bool transient = answer.status == 0 || answer.status == 500 || answer.status == 502 ||
                               answer.status == 503 || answer.status == 504;
        if (!transient) break;
        if (Clock::now() + backoff > deadline) {
          error = answer.status == 0 ? answer.error : "HTTP " + std::to_string(answer.status);
          return std::nullopt;
        }
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      }
      if (answer.status != 200) {
        error = "HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200);
        return std::nullopt;
      }
      const json page = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
      if (!page.is_object() || !page.contains("messages") || !page["messages"].is_array() ||
          !page.value("next_from_seq", json()).is_number_unsigned() ||
          !page.value("has_more", json()).is_boolean() ||
          !page.value("last_seq", json()).is_number_unsigned()) {
        error = "malformed page: " + answer.body.substr(0, 200);
        return std::nullopt;
      }
      for (const auto& message : page["messages"]) {
        if (!message.is_object() || !message.value("seq", json()).is_number_unsigned() ||
            !message.value("message_id", json()).is_string()) {
          error = "malformed message: " + message.dump().substr(0, 200);
          return std::nullopt;
        }
        history.messages.push_back(
            {message["seq"].get<std::uint64_t>(), message["message_id"].get<std::string>()});
      }
      history.last_seq = page["last_seq"].get<std::uint64_t>();
      if (!page["has_more"].get<bool>()) return history;
      const auto next = page["next_from_seq"].get<std::uint64_t>();
      // A server that claims more but does not move forward would keep this loop going.
      if (next <= from_seq && page["messages"].empty()) {
        error = "paging does not advance at from_seq " + std::to_string(from_seq);
        return std::nullopt;
      }
      from_seq = next;
    }
  }

 private:
  const Options& options_;
  const bench::Target& target_;
  const boost::asio::ip::tcp::endpoint& endpoint_;
  const std::string token_;
};

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
    token = bench::fetch_token(endpoint, *target, options.user, options.password);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chat4all-check: %s\n", error.what());
    return 2;
  }

  std::set<std::string> conversations;
  for (const auto& record : *log) conversations.insert(record.conversation_id);
  Reader reader(options, *target, endpoint, token.access_token);
  std::map<std::string, History> histories;
  for (const auto& conversation_id : conversations) {
    std::string error;
    if (auto history = reader.read(conversation_id, error)) {
      histories.emplace(conversation_id, std::move(*history));
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
