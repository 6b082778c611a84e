#include "nodes/runner/supervisor.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

namespace chat4all::runner {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

milliseconds RestartBackoff::next(milliseconds last_uptime) {
  if (last_uptime >= kStableAfter || current_ == milliseconds(0)) {
    current_ = kInitial;
  } else {
    current_ = std::min(current_ * 2, kMax);
  }
  return current_;
}

namespace {

constexpr auto kStopGrace = std::chrono::seconds(10);

struct Child {
  const NodeSpec* node = nullptr;
  pid_t pid = -1;  // -1 while waiting to be restarted
  Clock::time_point started_at{};
  Clock::time_point restart_at{};
  RestartBackoff backoff;
  int restarts = 0;
};

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + strsignal(WTERMSIG(status));
  return "unknown status";
}

bool tcp_port_open(const std::string& host, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  ::inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &address.sin_addr);
  const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return open;
}

// Where a frontend serves its API: HTTPS when it has that endpoint, else plain HTTP (the
// topology makes sure one of them exists).
std::optional<std::uint16_t> api_port(const NodeSpec& frontend) {
  if (auto https = frontend.port("https")) return https;
  return frontend.port("http");
}

}  // namespace

Supervisor::Supervisor(const Topology& topology, std::string executable, std::string host_override)
    : topology_(topology),
      executable_(std::move(executable)),
      host_override_(std::move(host_override)) {}

int Supervisor::run() {
  std::vector<Child> children;
  for (const auto& node : topology_.nodes) {
    const bool here =
        host_override_.empty() ? is_local_host(node.host) : node.host == host_override_;
    if (!here) continue;
    Child child;
    child.node = &node;
    children.push_back(std::move(child));
  }
  if (children.empty()) {
    log_.error("no_local_nodes", {{"topology", topology_.source_path.string()}});
    return 2;
  }

  // Signals are taken synchronously with sigtimedwait: no handler races.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGCHLD);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  const pid_t supervisor_pid = getpid();

  auto start = [&](Child& child) {
    const pid_t pid = fork();
    if (pid == 0) {
      sigprocmask(SIG_UNBLOCK, &signals, nullptr);
      // Own process group: Ctrl-C reaches only the supervisor, which then
      // stops the nodes itself (and does not mistake their exit for a crash).
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != supervisor_pid) _exit(1);  // the supervisor died before prctl
      const std::string topology_path = topology_.source_path.string();
      execl(executable_.c_str(), executable_.c_str(), "node", "--topology", topology_path.c_str(),
            "--name", child.node->name.c_str(), static_cast<char*>(nullptr));
      std::perror("exec chat4all node");
      _exit(127);
    }
    if (pid < 0) {
      log_.error("fork_failed", {{"child", child.node->name}, {"error", std::strerror(errno)}});
      child.restart_at = Clock::now() + child.backoff.next(milliseconds(0));
      return;
    }
    child.pid = pid;
    child.started_at = Clock::now();
    log_.info("node_started", {{"child", child.node->name},
                               {"role", role_name(child.node->role)},
                               {"pid", pid},
                               {"restarts", child.restarts}});
  };

  for (auto& child : children) start(child);

  // Tell the operator where the API is, once the frontends accept connections.
  bool announced = false;
  const auto announce_deadline = Clock::now() + std::chrono::seconds(15);

  bool stopping = false;
  Clock::time_point kill_at{};
  while (true) {
    timespec wait{0, 100 * 1000 * 1000};
    siginfo_t info{};
    const int signal_number = sigtimedwait(&signals, &info, &wait);
    // SIGHUP: the nodes read their certificates again (the frontends; the others ignore it).
    if (signal_number == SIGHUP && !stopping) {
      log_.info("reloading", {{"signal", strsignal(signal_number)}});
      for (auto& child : children)
        if (child.pid > 0) kill(child.pid, SIGHUP);
    }
    if ((signal_number == SIGINT || signal_number == SIGTERM) && !stopping) {
      stopping = true;
      kill_at = Clock::now() + kStopGrace;
      log_.info("stopping", {{"signal", strsignal(signal_number)}});
      for (auto& child : children)
        if (child.pid > 0) kill(child.pid, SIGTERM);
    }

    // Reap every exited child (SIGCHLD coalesces).
    while (true) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      for (auto& child : children) {
        if (child.pid != pid) continue;
        child.pid = -1;
        const auto uptime =
            std::chrono::duration_cast<milliseconds>(Clock::now() - child.started_at);
        if (stopping) {
          log_.info("node_stopped",
                    {{"child", child.node->name}, {"status", describe_exit(status)}});
        } else {
          const auto delay = child.backoff.next(uptime);
          child.restart_at = Clock::now() + delay;
          ++child.restarts;
          log_.warn("node_exited", {{"child", child.node->name},
                                    {"pid", pid},
                                    {"status", describe_exit(status)},
                                    {"uptime_ms", uptime.count()},
                                    {"restart_in_ms", delay.count()}});
        }
      }
    }

    const auto now = Clock::now();
    if (stopping) {
      bool any_alive = false;
      for (auto& child : children) any_alive |= child.pid > 0;
      if (!any_alive) break;
      if (now >= kill_at) {
        for (auto& child : children) {
          if (child.pid <= 0) continue;
          log_.warn("node_killed",
                    {{"child", child.node->name}, {"reason", "did not stop in time"}});
          kill(child.pid, SIGKILL);
        }
        kill_at = now + std::chrono::hours(1);
      }
      continue;
    }
    for (auto& child : children)
      if (child.pid < 0 && now >= child.restart_at) start(child);

    if (!announced) {
      bool ready = true;
      for (const auto& child : children)
        if (child.node->role == NodeRole::kFrontend &&
            !tcp_port_open(child.node->host, *api_port(*child.node)))
          ready = false;
      if (ready || now > announce_deadline) {
        announced = true;
        for (const auto& child : children)
          if (child.node->role == NodeRole::kFrontend)
            std::printf("chat4all: API of %s listening at %s://%s:%u\n", child.node->name.c_str(),
                        child.node->port("https") ? "https" : "http", child.node->host.c_str(),
                        unsigned(*api_port(*child.node)));
        std::printf("chat4all: %zu nodes running from %s; Ctrl-C stops them\n", children.size(),
                    topology_.source_path.c_str());
        std::fflush(stdout);
      }
    }
  }
  log_.info("stopped");
  return 0;
}

}  // namespace chat4all::runner
