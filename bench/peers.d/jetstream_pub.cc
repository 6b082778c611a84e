// jetstream-pub: synchronous JetStream publishers for bench/peers.
//
// Creates (or reuses) a file-storage stream with the given number of replicas, then runs
// --publishers threads, each with its own connection, each publishing --size-byte messages with
// js_Publish (one message in flight per publisher: it waits for the stream's ack before it sends
// the next one), for --warmup-s + --duration-s seconds. Only publishes started after the warmup
// are measured. Prints one JSON line on stdout; progress and errors go to stderr.
//
// Built by bench/peers with the C client from Debian (libnats-dev):
//   g++ -std=c++20 -O2 -pthread jetstream_pub.cc $(pkg-config --cflags --libs libnats)
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> urls;
  std::string stream = "PEERS";
  std::string subject = "peers.bench";
  int publishers = 16;
  int size = 200;
  int replicas = 3;
  double duration_s = 10;
  double warmup_s = 1;
  int setup_timeout_s = 30;
};

struct Result {
  std::vector<double> latencies_us;  // measured, acknowledged publishes
  long errors = 0;                   // measured publishes that failed or timed out
  long connect_failures = 0;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "jetstream-pub: %s\n"
               "usage: jetstream-pub --url nats://H:P[,nats://H:P...] [--publishers N] [--size B]\n"
               "       [--replicas R] [--duration-s S] [--warmup-s S] [--stream NAME]\n"
               "       [--subject SUBJ] [--setup-timeout-s S]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
    std::string value = argv[++i];
    if (arg == "--url") {
      size_t start = 0;
      while (start <= value.size()) {
        size_t comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        if (comma > start) o.urls.push_back(value.substr(start, comma - start));
        start = comma + 1;
      }
    } else if (arg == "--publishers") {
      o.publishers = std::atoi(value.c_str());
    } else if (arg == "--size") {
      o.size = std::atoi(value.c_str());
    } else if (arg == "--replicas") {
      o.replicas = std::atoi(value.c_str());
    } else if (arg == "--duration-s") {
      o.duration_s = std::atof(value.c_str());
    } else if (arg == "--warmup-s") {
      o.warmup_s = std::atof(value.c_str());
    } else if (arg == "--stream") {
      o.stream = value;
    } else if (arg == "--subject") {
      o.subject = value;
    } else if (arg == "--setup-timeout-s") {
      o.setup_timeout_s = std::atoi(value.c_str());
    } else {
      usage(("unknown option " + arg).c_str());
    }
  }
  if (o.urls.empty()) usage("--url is required");
  if (o.publishers < 1 || o.size < 1 || o.replicas < 1 || o.duration_s <= 0 || o.warmup_s < 0)
    usage("bad value");
  return o;
}

// The stream is created once the cluster has a JetStream meta leader; until then js_AddStream
// fails, so it is retried within --setup-timeout-s.
bool create_stream(const Options& o) {
  const auto deadline = Clock::now() + std::chrono::seconds(o.setup_timeout_s);
  std::string last_error = "no attempt";
  while (Clock::now() < deadline) {
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsStatus s = natsConnection_ConnectTo(&nc, o.urls.front().c_str());
    if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, nullptr);
    if (s == NATS_OK) {
      jsStreamConfig cfg;
      jsStreamConfig_Init(&cfg);
      const char* subjects[] = {o.subject.c_str()};
      cfg.Name = o.stream.c_str();
      cfg.Subjects = subjects;
      cfg.SubjectsLen = 1;
      cfg.Storage = js_FileStorage;
      cfg.Replicas = o.replicas;
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
      if (si != nullptr) jsStreamInfo_Destroy(si);
      if (s != NATS_OK) last_error = std::string(natsStatus_GetText(s)) + " (" +
                                     nats_GetLastError(nullptr) + ")";
    } else {
      last_error = natsStatus_GetText(s);
    }
    if (js != nullptr) jsCtx_Destroy(js);
    if (nc != nullptr) natsConnection_Destroy(nc);
    if (s == NATS_OK) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  std::fprintf(stderr, "jetstream-pub: could not create stream %s: %s\n", o.stream.c_str(),
               last_error.c_str());
  return false;
}

void publisher(const Options& o, int index, Clock::time_point measure_from,
               Clock::time_point stop_at, Result& result) {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // Publishers are spread over the servers, as clients of a cluster would be.
  const std::string& url = o.urls[index % o.urls.size()];
  if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK ||
      natsConnection_JetStream(&js, nc, nullptr) != NATS_OK) {
    result.connect_failures++;
    if (nc != nullptr) natsConnection_Destroy(nc);
    return;
  }
  std::string payload(o.size, 'x');
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  result.latencies_us.reserve(1 << 16);
  while (true) {
    const auto start = Clock::now();
    if (start >= stop_at) break;
    jsPubAck* ack = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Publish(&ack, js, o.subject.c_str(), payload.data(),
                              static_cast<int>(payload.size()), &po, &jerr);
    const auto end = Clock::now();
    if (ack != nullptr) jsPubAck_Destroy(ack);
    if (start < measure_from) continue;
    if (s == NATS_OK) {
      result.latencies_us.push_back(
          std::chrono::duration<double, std::micro>(end - start).count());
    } else {
      result.errors++;
    }
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (nats_Open(-1) != NATS_OK) {
    std::fprintf(stderr, "jetstream-pub: nats_Open failed\n");
    return 1;
  }
  if (!create_stream(o)) return 1;
  std::fprintf(stderr, "jetstream-pub: stream %s (%d replicas, file storage) ready; %d publishers\n",
               o.stream.c_str(), o.replicas, o.publishers);

  const auto begin = Clock::now();
  const auto measure_from =
      begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup_s));
  const auto stop_at = measure_from + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(o.duration_s));
  std::vector<Result> results(static_cast<size_t>(o.publishers));
  std::vector<std::thread> threads;
  for (int i = 0; i < o.publishers; ++i)
    threads.emplace_back(publisher, std::cref(o), i, measure_from, stop_at,
                         std::ref(results[static_cast<size_t>(i)]));
  for (auto& t : threads) t.join();
  const double duration_s = std::chrono::duration<double>(Clock::now() - measure_from).count();

  std::vector<double> all;
  long errors = 0, connect_failures = 0;
  for (auto& r : results) {
    all.insert(all.end(), r.latencies_us.begin(), r.latencies_us.end());
    errors += r.errors;
    connect_failures += r.connect_failures;
  }
  const double acked = static_cast<double>(all.size());
  const double p50 = percentile(all, 0.50) / 1000.0;
  const double p99 = percentile(all, 0.99) / 1000.0;
  std::printf(
      "{\"publishers\":%d,\"size\":%d,\"replicas\":%d,\"acked\":%.0f,\"errors\":%ld,"
      "\"connect_failures\":%ld,\"duration_s\":%.3f,\"msgs_per_s\":%.1f,\"p50_ms\":%.3f,"
      "\"p99_ms\":%.3f}\n",
      o.publishers, o.size, o.replicas, acked, errors, connect_failures, duration_s,
      duration_s > 0 ? acked / duration_s : 0.0, p50, p99);
  nats_Close();
  return acked > 0 ? 0 : 1;
}
