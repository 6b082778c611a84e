// chat4all-failover-probe: measures how long writes stop when a storage node is killed.
//
// One thread per probed conversation writes to it continuously, one request at a time, as a
// careful client does (a failed attempt is sent again under the same message_id). The probe
// itself sends SIGKILL to the victim, so the kill instant is known to the microsecond rather
// than guessed from a script's clock, and then keeps writing until every conversation has been
// acknowledged again. Finally it reads back every message it saw acknowledged.
//
// The figure: for each conversation, the gap is the time from the kill until the first 202
// answering a request *sent* after the kill. A request sent before the kill and answered after
// it does not count, since it may have been decided by the old leader before it died; what a
// user cares about is when a write issued after the crash goes through.

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/command_line.h"
#include "bench/http_client.h"
#include "common/ring.h"
#include "common/topology.h"

namespace chat4all::bench {
namespace {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using std::chrono::milliseconds;

struct Options : SessionOptions {
  std::string topology;
  std::uint32_t per_partition = 2;
  std::uint32_t conversations = 256;
  std::uint32_t interval_ms = 100;
  std::uint32_t timeout_ms = 1000;
  std::int64_t kill_pid = 0;
  double kill_after_s = 3;
  double max_wait_s = 30;
  double affected_ms = 100;
  double read_budget_s = 30;
  bool json = false;
};

// The options, with their help text, on `app`.
void define_options(CLI::App& app, Options& options) {
  // As before CLI11: an option given twice keeps its last value.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.description(
      "Writes continuously to many conversations, SIGKILLs --kill-pid after --kill-after-s\n"
      "seconds, and reports for each conversation the time from the kill until the first write\n"
      "sent after the kill was acknowledged (202). Then reads back every acknowledged message.");
  app.footer(
      "Exit status: 0 when every conversation recovered and every acknowledged message was read\n"
      "back at its acknowledged seq, 1 otherwise, 2 for bad options, a failed login or a missing\n"
      "PID.");
  add_session_options(app, options, "frontend base URL", "user to write as, created if missing");
  app.add_option("--topology", options.topology,
                 "create group conversations until every partition of FILE's ring has "
                 "--per-partition of them (else --conversations N of them)")
      ->type_name("FILE");
  app.add_option("--per-partition", options.per_partition, "with --topology")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--conversations", options.conversations, "without --topology")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--interval-ms", options.interval_ms,
                 "one write per conversation every MS ms while nothing fails")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--timeout-ms", options.timeout_ms, "client timeout of one attempt")
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();
  app.add_option("--kill-pid", options.kill_pid,
                 "the process to SIGKILL; without it nothing is killed and the \"kill\" is only "
                 "the instant the gaps are measured from (a baseline)")
      ->check(CLI::Range(std::int64_t{2}, std::int64_t{1} << 30));
  app.add_option("--kill-after-s", options.kill_after_s, "seconds of writing before the kill")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--max-wait-s", options.max_wait_s,
                 "after the kill, give up on conversations not acknowledged by then")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--affected-ms", options.affected_ms,
                 "a conversation whose gap is above MS is \"affected\"")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--read-budget-s", options.read_budget_s,
                 "per conversation, retry failing history reads this long")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_flag("--json", options.json, "print the result as one JSON object on stdout");
}

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string new_run_id() {
  std::random_device entropy;
  char text[16];
  std::snprintf(text, sizeof text, "f%08x", static_cast<unsigned>(entropy()));
  return text;
}

std::string wall_clock_text(std::chrono::system_clock::time_point at) {
  const auto ms = std::chrono::duration_cast<milliseconds>(at.time_since_epoch()).count();
  const std::time_t seconds = ms / 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::snprintf(text, sizeof text, "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
                static_cast<int>(ms % 1000));
  return text;
}

struct Acked {
  std::string message_id;
  std::uint64_t seq = 0;
};

// Written by its conversation's thread only until the threads are joined; read afterwards.
struct Probe {
  std::string conversation_id;
  std::int64_t partition = -1;  // -1: no --topology
  std::vector<Acked> acked;
  std::vector<std::string> unsettled;  // started, never acknowledged (cut off at the end)
  std::optional<Clock::time_point> first_ack_after_kill;
  std::uint64_t failed_attempts_after_kill = 0;
  std::map<std::string, std::uint64_t> failures;  // by kind, over the whole run
  std::string fatal;                              // an answer no retry can fix
};

// What the conversation threads share with the main thread.
class Shared {
 public:
  void kill_happened(Clock::time_point at) {
    {
      std::lock_guard lock(mutex_);
      kill_at_ = at;
    }
    wake_.notify_all();
  }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
  }
  bool stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
  }
  std::optional<Clock::time_point> kill_at() {
    std::lock_guard lock(mutex_);
    return kill_at_;
  }
  // Sleeps until `until`, or less: at the kill every idle conversation writes at once, so that
  // a gap measures the cluster and not where the pacing happened to be.
  void pause(Clock::time_point until, bool wake_on_kill) {
    std::unique_lock lock(mutex_);
    wake_.wait_until(lock, until, [&] { return stopping_ || (wake_on_kill && kill_at_); });
  }

  std::atomic<std::uint32_t> warm{0};       // conversations with an ack
  std::atomic<std::uint32_t> recovered{0};  // conversations acked after the kill
  std::atomic<std::uint32_t> fatal{0};

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Clock::time_point> kill_at_;
  bool stopping_ = false;
};

struct Context {
  const Options& options;
  const Target& target;
  const boost::asio::ip::tcp::endpoint& endpoint;
  std::string authorization;
  std::string run_id;
  Shared& shared;
};

std::string failure_kind(const HttpAnswer& answer) {
  if (answer.status != 0) return "http_" + std::to_string(answer.status);
  return answer.error == "timed out" ? "timeout" : "connection";
}

void write_conversation(const Context& context, std::size_t index, Probe& probe) {
  const auto interval = milliseconds(context.options.interval_ms);
  const auto timeout = milliseconds(context.options.timeout_ms);
  const Headers headers = {{"Content-Type", "application/json"},
                           {"Authorization", context.authorization}};
  bool warm = false;
  for (std::uint64_t number = 0; !context.shared.stopping(); ++number) {
    const std::string message_id =
        context.run_id + "-" + std::to_string(index) + "-" + std::to_string(number);
    const std::string body = json{{"conversation_id", probe.conversation_id},
                                  {"message_id", message_id},
                                  {"payload", {{"type", "text"}, {"text", "failover probe"}}}}
                                 .dump();
    const auto first_sent = Clock::now();
    // Short and capped: the backoff bounds how late a recovered partition is noticed.
    auto backoff = milliseconds(10);
    bool acknowledged = false;
    while (!context.shared.stopping()) {
      const auto sent = Clock::now();
      const HttpAnswer answer = http_request(context.endpoint, context.target, http::verb::post,
                                             "/v1/messages", body, headers, timeout);
      const auto answered = Clock::now();
      // Read after the answer: the main thread records the kill instant before it kills, so a
      // request sent after that instant is always recognised here.
      const auto kill_at = context.shared.kill_at();
      const bool sent_after_kill = kill_at && sent >= *kill_at;
      if (answer.status == 202) {
        const json reply = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
        std::uint64_t seq = 0;
        if (reply.is_object() && reply.value("seq", json()).is_number_unsigned())
          seq = reply["seq"].get<std::uint64_t>();
        probe.acked.push_back({message_id, seq});
        if (!warm) {
          warm = true;
          context.shared.warm.fetch_add(1);
        }
        if (sent_after_kill && !probe.first_ack_after_kill) {
          probe.first_ack_after_kill = answered;
          context.shared.recovered.fetch_add(1);
        }
        acknowledged = true;
        break;
      }
      if (!is_transient(answer)) {
        probe.fatal = "HTTP " + std::to_string(answer.status) + ": " + answer.body.substr(0, 200);
        context.shared.fatal.fetch_add(1);
        probe.unsettled.push_back(message_id);
        return;
      }
      ++probe.failures[failure_kind(answer)];
      if (kill_at && answered >= *kill_at && !probe.first_ack_after_kill)
        ++probe.failed_attempts_after_kill;
      context.shared.pause(Clock::now() + backoff, /*wake_on_kill=*/false);
      backoff = std::min(backoff * 2, milliseconds(100));
    }
    if (!acknowledged) {
      probe.unsettled.push_back(message_id);
      return;
    }
    // A conversation still waiting for its first write after the kill must not sit out an
    // interval that began before it.
    context.shared.pause(first_sent + interval, /*wake_on_kill=*/!probe.first_ack_after_kill);
  }
}

// Reads the conversation from the lowest acknowledged seq on and checks that each acknowledged
// message sits at the seq it was acknowledged with, once.
struct Verdict {
  std::uint64_t acknowledged = 0;
  std::uint64_t found = 0;
  std::uint64_t lost = 0;
  std::uint64_t wrong_seq = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t unreadable = 0;
  std::vector<std::string> problems;
};

void verify(const Context& context, const Probe& probe, Verdict& verdict) {
  verdict.acknowledged += probe.acked.size();
  if (probe.acked.empty()) return;
  std::uint64_t from_seq = UINT64_MAX;
  for (const auto& acked : probe.acked) from_seq = std::min(from_seq, acked.seq);
  from_seq = std::max<std::uint64_t>(from_seq, 1);
  const std::string prefix = context.run_id + "-";
  std::map<std::string, std::vector<std::uint64_t>> stored;  // this run's messages only
  const auto fail = [&](const std::string& why) {
    ++verdict.unreadable;
    verdict.problems.push_back(probe.conversation_id + ": unreadable: " + why);
  };
  std::string error;
  const auto read =
      read_history(context.endpoint, context.target, context.authorization, probe.conversation_id,
                   from_seq, 500, Clock::now() + seconds(context.options.read_budget_s), error);
  if (!read) return fail(error);
  for (const auto& message : read->messages)
    if (message.message_id.compare(0, prefix.size(), prefix) == 0)
      stored[message.message_id].push_back(message.seq);
  for (const auto& [id, seqs] : stored) {
    if (seqs.size() > 1) {
      ++verdict.duplicated;
      verdict.problems.push_back(probe.conversation_id + ": " + id + " stored " +
                                 std::to_string(seqs.size()) + " times");
    }
  }
  for (const auto& acked : probe.acked) {
    const auto it = stored.find(acked.message_id);
    if (it == stored.end()) {
      ++verdict.lost;
      verdict.problems.push_back(probe.conversation_id + ": " + acked.message_id +
                                 " acknowledged at seq " + std::to_string(acked.seq) +
                                 " is missing");
    } else if (std::find(it->second.begin(), it->second.end(), acked.seq) == it->second.end()) {
      ++verdict.wrong_seq;
      verdict.problems.push_back(probe.conversation_id + ": " + acked.message_id +
                                 " acknowledged at seq " + std::to_string(acked.seq) +
                                 ", stored at " + std::to_string(it->second.front()));
    } else {
      ++verdict.found;
    }
  }
}

// Nearest-rank percentile of sorted values.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

// Conversation ids are the server's choice, so covering every partition means creating
// conversations until each has --per-partition of them; the rest are left unused.
std::vector<Probe> choose_conversations(const Options& options,
                                        const std::function<std::string()>& create) {
  std::vector<Probe> probes;
  if (options.topology.empty()) {
    for (std::uint32_t i = 0; i < options.conversations; ++i)
      probes.emplace_back().conversation_id = create();
    return probes;
  }
  const Topology topology = load_topology(options.topology);
  const Ring ring(topology.storage_node_names(), topology.partition_count,
                  topology.replication_factor, topology.virtual_nodes);
  std::vector<std::uint32_t> count(ring.partition_count(), 0);
  std::uint32_t missing = ring.partition_count();
  // Far beyond the expected number of draws (the coupon collector's), so only a ring this
  // tool misreads can reach it.
  const std::uint64_t attempts_max = 50ull * ring.partition_count() * options.per_partition;
  for (std::uint64_t attempt = 0; missing > 0; ++attempt) {
    if (attempt == attempts_max)
      throw std::runtime_error("created " + std::to_string(attempt) +
                               " conversations without covering every partition");
    std::string id = create();
    const auto partition = ring.partition_of(id);
    if (count[partition] >= options.per_partition) continue;
    if (++count[partition] == options.per_partition) --missing;
    Probe& probe = probes.emplace_back();
    probe.conversation_id = std::move(id);
    probe.partition = partition;
  }
  return probes;
}

int run(int argc, char** argv) {
  Options options;
  CLI::App app("", "chat4all-failover-probe");
  define_options(app, options);
  if (auto exit_status = bench::parse_command_line(app, argc, argv)) return *exit_status;
  // Checked up front: a victim that is already gone would make every figure meaningless.
  if (options.kill_pid && ::kill(static_cast<pid_t>(options.kill_pid), 0) != 0) {
    std::fprintf(stderr, "chat4all-failover-probe: no process %lld to kill: %s\n",
                 static_cast<long long>(options.kill_pid), std::strerror(errno));
    return 2;
  }
  std::string error;
  const auto target = parse_url(options.url, error);
  if (!target) {
    std::fprintf(stderr, "chat4all-failover-probe: %s\n", error.c_str());
    return 2;
  }
  std::vector<Probe> probes;
  boost::asio::ip::tcp::endpoint endpoint;
  Token token;
  try {
    endpoint = resolve(*target);
    token =
        prepare_users(endpoint, *target,
                      Credentials{options.tenant, options.client_id, options.client_secret, true},
                      options.user, options.peer, options.password);
    probes = choose_conversations(
        options, [&] { return create_group(endpoint, *target, token, options.peer); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chat4all-failover-probe: %s\n", e.what());
    return 2;
  }
  std::set<std::int64_t> partitions;
  for (const auto& probe : probes) partitions.insert(probe.partition);

  Shared shared;
  const Context context{options,      *target, endpoint, "Bearer " + token.access_token,
                        new_run_id(), shared};
  std::fprintf(stderr, "run %s: %zu conversations%s, one write each every %u ms\n",
               context.run_id.c_str(), probes.size(),
               options.topology.empty()
                   ? ""
                   : (" over " + std::to_string(partitions.size()) + " partitions").c_str(),
               options.interval_ms);

  const auto start = Clock::now();
  std::vector<std::thread> threads;
  threads.reserve(probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i)
    threads.emplace_back([&, i] { write_conversation(context, i, probes[i]); });

  // A conversation that never got a write through before the kill would report a gap that
  // is not the kill's doing; give a slow start a bounded extra while.
  std::this_thread::sleep_until(start + seconds(options.kill_after_s));
  const auto warm_deadline = Clock::now() + std::chrono::seconds(10);
  while (shared.warm.load() < probes.size() && shared.fatal.load() == 0 &&
         Clock::now() < warm_deadline)
    std::this_thread::sleep_for(milliseconds(10));
  const std::uint32_t warm = shared.warm.load();

  const auto kill_wall = std::chrono::system_clock::now();
  const auto kill_at = Clock::now();
  shared.kill_happened(kill_at);
  if (options.kill_pid && ::kill(static_cast<pid_t>(options.kill_pid), SIGKILL) != 0)
    std::fprintf(stderr, "chat4all-failover-probe: kill %lld: %s\n",
                 static_cast<long long>(options.kill_pid), std::strerror(errno));
  std::fprintf(stderr, "%s pid %lld at %s, %.1f s after the start (%u/%zu conversations warm)\n",
               options.kill_pid ? "SIGKILL" : "baseline, no kill:",
               static_cast<long long>(options.kill_pid), wall_clock_text(kill_wall).c_str(),
               std::chrono::duration<double>(kill_at - start).count(), warm, probes.size());

  const auto give_up = kill_at + seconds(options.max_wait_s);
  while (shared.recovered.load() + shared.fatal.load() < probes.size() && Clock::now() < give_up)
    std::this_thread::sleep_for(milliseconds(5));
  shared.stop();
  for (auto& thread : threads) thread.join();
  const double writing_s = std::chrono::duration<double>(Clock::now() - start).count();

  // Gaps.
  std::vector<double> all_gaps;
  std::vector<std::pair<double, const Probe*>> affected;
  std::uint32_t unrecovered = 0;
  std::set<std::int64_t> affected_partitions;
  std::map<std::string, std::uint64_t> failures;
  std::vector<std::string> fatal;
  for (const auto& probe : probes) {
    for (const auto& [kind, count] : probe.failures) failures[kind] += count;
    if (!probe.fatal.empty()) fatal.push_back(probe.conversation_id + ": " + probe.fatal);
    if (!probe.first_ack_after_kill) {
      ++unrecovered;
      affected_partitions.insert(probe.partition);
      continue;
    }
    const double gap = ms_between(kill_at, *probe.first_ack_after_kill);
    all_gaps.push_back(gap);
    if (gap > options.affected_ms) {
      affected.emplace_back(gap, &probe);
      affected_partitions.insert(probe.partition);
    }
  }
  std::sort(all_gaps.begin(), all_gaps.end());
  std::sort(affected.begin(), affected.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<double> affected_gaps;
  for (const auto& [gap, probe] : affected) affected_gaps.push_back(gap);
  std::sort(affected_gaps.begin(), affected_gaps.end());

  // Read-back.
  Verdict verdict;
  std::uint64_t unsettled = 0;
  for (const auto& probe : probes) {
    unsettled += probe.unsettled.size();
    verify(context, probe, verdict);
  }
  const bool loss = verdict.lost || verdict.wrong_seq || verdict.duplicated || verdict.unreadable;
  const bool ok = !loss && unrecovered == 0 && fatal.empty();

  const double max_gap = all_gaps.empty() ? 0 : all_gaps.back();
  std::fprintf(stderr,
               "gap = kill -> 202 of the first write sent after the kill, per conversation\n"
               "  all %zu recovered: max %.0f ms, p50 %.0f ms; unrecovered after %.0f s: %u\n"
               "  affected (gap > %.0f ms): %zu conversations%s: max %.0f ms, p50 %.0f ms, "
               "p99 %.0f ms\n",
               all_gaps.size(), max_gap, percentile(all_gaps, 50), options.max_wait_s, unrecovered,
               options.affected_ms, affected.size(),
               options.topology.empty() ? ""
                                        : (" in " + std::to_string(affected_partitions.size()) +
                                           "/" + std::to_string(partitions.size()) + " partitions")
                                              .c_str(),
               affected_gaps.empty() ? 0 : affected_gaps.back(), percentile(affected_gaps, 50),
               percentile(affected_gaps, 99));
  std::string failure_text;
  for (const auto& [kind, count] : failures)
    failure_text += " " + kind + "=" + std::to_string(count);
  std::fprintf(stderr, "  failed attempts (retried):%s\n",
               failure_text.empty() ? " none" : failure_text.c_str());
  std::fprintf(stderr,
               "read-back: acknowledged %llu, found %llu, lost %llu, wrong_seq %llu, "
               "duplicated %llu, unreadable %llu (unsettled at the end: %llu)\n",
               static_cast<unsigned long long>(verdict.acknowledged),
               static_cast<unsigned long long>(verdict.found),
               static_cast<unsigned long long>(verdict.lost),
               static_cast<unsigned long long>(verdict.wrong_seq),
               static_cast<unsigned long long>(verdict.duplicated),
               static_cast<unsigned long long>(verdict.unreadable),
               static_cast<unsigned long long>(unsettled));
  for (std::size_t i = 0; i < verdict.problems.size() && i < 20; ++i)
    std::fprintf(stderr, "  problem: %s\n", verdict.problems[i].c_str());
  for (std::size_t i = 0; i < fatal.size() && i < 5; ++i)
    std::fprintf(stderr, "  fatal: %s\n", fatal[i].c_str());

  if (options.json) {
    json slowest = json::array();
    for (std::size_t i = 0; i < affected.size() && i < 20; ++i) {
      json entry = {{"conversation", affected[i].second->conversation_id},
                    {"gap_ms", std::round(affected[i].first * 10) / 10},
                    {"failed_attempts", affected[i].second->failed_attempts_after_kill}};
      if (affected[i].second->partition >= 0) entry["partition"] = affected[i].second->partition;
      slowest.push_back(entry);
    }
    const auto round1 = [](double v) { return std::round(v * 10) / 10; };
    json out = {{"run_id", context.run_id},
                {"kill_pid", options.kill_pid},
                {"kill_wall", wall_clock_text(kill_wall)},
                {"kill_unix_ms",
                 std::chrono::duration_cast<milliseconds>(kill_wall.time_since_epoch()).count()},
                {"conversations", probes.size()},
                {"warm_at_kill", warm},
                {"recovered", all_gaps.size()},
                {"unrecovered", unrecovered},
                {"max_gap_ms", round1(max_gap)},
                {"p50_gap_ms", round1(percentile(all_gaps, 50))},
                {"affected_ms", options.affected_ms},
                {"affected", affected.size()},
                {"affected_max_ms", round1(affected_gaps.empty() ? 0 : affected_gaps.back())},
                {"affected_p50_ms", round1(percentile(affected_gaps, 50))},
                {"affected_p99_ms", round1(percentile(affected_gaps, 99))},
                {"slowest", slowest},
                {"failures", failures},
                {"acknowledged", verdict.acknowledged},
                {"found", verdict.found},
                {"lost", verdict.lost},
                {"wrong_seq", verdict.wrong_seq},
                {"duplicated", verdict.duplicated},
                {"unreadable", verdict.unreadable},
                {"unsettled", unsettled},
                {"writing_s", round1(writing_s)},
                {"ok", ok}};
    if (!options.topology.empty()) {
      out["partitions"] = partitions.size();
      out["affected_partitions"] = affected_partitions.size();
    }
    std::cout << out.dump() << std::endl;
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace chat4all::bench

int main(int argc, char** argv) {
  return chat4all::bench::run(argc, argv);
}
