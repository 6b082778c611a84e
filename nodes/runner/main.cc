// chat4all: the one executable of every node role.
//
//   chat4all up FILE [--host NAME]           start and supervise this host's nodes
//   chat4all node --topology FILE --name N   run one node in the foreground
//   chat4all check FILE                      validate a topology file
//   chat4all topology apply FILE [--dry-run] [--moves-at-once N] [--move-timeout-s S]
//                                            change the running cluster's topology
//   chat4all keygen FILE [--host NAME]       make this host's missing Curve key pairs
//   chat4all hash-password                   argon2id hash of a password read on stdin
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "common/auth.h"
#include "common/curve.h"
#include "common/json_log.h"
#include "common/router_client.h"
#include "common/topology.h"
#include "common/topology_change.h"
#include "common/topology_follower.h"
#include "nodes/connector/connector_node.h"
#include "nodes/frontend/frontend_node.h"
#include "nodes/router/router_node.h"
#include "nodes/runner/supervisor.h"
#include "nodes/runner/topology_apply.h"
#include "nodes/storage/storage_node.h"

namespace {

std::atomic<bool> stop_requested{false};
// SIGHUP: the frontend reads its TLS certificate and key again; other roles ignore it.
std::atomic<bool> reload_requested{false};

void request_stop(int) {
  stop_requested.store(true);
}

void request_reload(int) {
  reload_requested.store(true);
}

int usage() {
  std::fprintf(stderr,
               "usage:\n"
               "  chat4all up FILE [--host NAME]          start this host's nodes of a topology\n"
               "  chat4all node --topology FILE --name N  run one node\n"
               "  chat4all check FILE                     validate a topology file\n"
               "  chat4all topology apply FILE [--dry-run] [--moves-at-once N] "
               "[--move-timeout-s S]\n"
               "                                          change the running cluster's topology\n"
               "  chat4all keygen FILE [--host NAME]      make this host's nodes' Curve key pairs\n"
               "  chat4all hash-password                  hash a password read from stdin\n");
  return 2;
}

std::string self_executable(const char* argv0) {
  char path[4096];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return argv0;
  path[length] = '\0';
  return path;
}

int run_node(const std::string& topology_path, const std::string& name) {
  const chat4all::Topology topology = chat4all::load_topology(topology_path);
  const chat4all::NodeSpec* self = topology.find(name);
  if (!self) {
    std::fprintf(stderr, "%s: no node named '%s'\n", topology_path.c_str(), name.c_str());
    return 2;
  }
  chat4all::init_logging(name);
  struct sigaction action {};
  action.sa_handler = request_stop;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  struct sigaction reload {};
  reload.sa_handler = request_reload;
  sigaction(SIGHUP, &reload, nullptr);
  signal(SIGPIPE, SIG_IGN);

  chat4all::Log log("node");
  log.info("starting", {{"role", chat4all::role_name(self->role)},
                        {"topology", topology.source_path.string()},
                        {"pid", getpid()}});
  // Before any socket of the node, and gone after all of them: every socket between nodes goes
  // through it, and a node whose ZAP handler cannot start throws here and does not start.
  chat4all::curve::NodeSecurity security(topology, *self);
  switch (self->role) {
    case chat4all::NodeRole::kFrontend:
      chat4all::frontend::FrontendNode(topology, *self).run(stop_requested, reload_requested);
      break;
    case chat4all::NodeRole::kRouter:
      chat4all::router::RouterNode(topology, *self).run(stop_requested);
      break;
    case chat4all::NodeRole::kStorage: {
      // Storage nodes read the stored topology version through the routers, so that they admit
      // the nodes a newer version adds (curve::learn) and say when their file is older.
      chat4all::RouterClient routers(chat4all::router_rpc_addresses(topology),
                                     topology.limits.request_timeout_ms, 64);
      chat4all::TopologyFollower follower(
          topology, name, routers, [](std::shared_ptr<const chat4all::Topology>, std::uint64_t) {});
      chat4all::storage::StorageNode(topology, *self).run(stop_requested);
      break;
    }
    case chat4all::NodeRole::kConnector:
      chat4all::connector::ConnectorNode(topology, *self).run(stop_requested);
      break;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  chat4all::auth::init_crypto();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  const std::string command = args[0];
  try {
    if (command == "up" && (args.size() == 2 || (args.size() == 4 && args[2] == "--host"))) {
      const chat4all::Topology topology = chat4all::load_topology(args[1]);
      chat4all::init_logging("runner");
      // Made before any node starts, so that no node waits on a peer to make its key pair.
      if (topology.curve.enabled)
        chat4all::curve::ensure_local_key_pairs(topology, args.size() == 4 ? args[3] : "");
      return chat4all::runner::Supervisor(topology, self_executable(argv[0]),
                                          args.size() == 4 ? args[3] : "")
          .run();
    }
    if (command == "node") {
      std::string topology_path, name;
      for (std::size_t i = 1; i + 1 < args.size(); i += 2) {
        if (args[i] == "--topology")
          topology_path = args[i + 1];
        else if (args[i] == "--name")
          name = args[i + 1];
        else
          return usage();
      }
      if (topology_path.empty() || name.empty() || args.size() != 5) return usage();
      return run_node(topology_path, name);
    }
    if (command == "topology" && args.size() >= 3 && args[1] == "apply") {
      chat4all::runner::ApplyOptions options;
      options.file = args[2];
      for (std::size_t i = 3; i < args.size(); ++i) {
        auto number = [&](std::uint32_t& out) {
          if (i + 1 >= args.size()) return false;
          const std::string& text = args[++i];
          if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
              text.size() > 6)
            return false;
          out = static_cast<std::uint32_t>(std::stoul(text));
          return out > 0;
        };
        if (args[i] == "--dry-run")
          options.dry_run = true;
        else if (args[i] == "--moves-at-once"    ? !number(options.moves_at_once)
                 : args[i] == "--move-timeout-s" ? !number(options.move_timeout_s)
                                                 : true)
          return usage();
      }
      chat4all::init_logging("topology", "warn");  // the plan and progress go to stdout
      return chat4all::runner::apply_topology(options);
    }
    if (command == "check" && args.size() == 2) {
      const chat4all::Topology topology = chat4all::load_topology(args[1]);
      std::printf("%s: ok (%zu nodes, %u partitions, replication factor %u)\n", args[1].c_str(),
                  topology.nodes.size(), topology.partition_count, topology.replication_factor);
      return 0;
    }
    if (command == "keygen" && (args.size() == 2 || (args.size() == 4 && args[2] == "--host"))) {
      const chat4all::Topology topology = chat4all::load_topology(args[1]);
      const auto pairs =
          chat4all::curve::ensure_local_key_pairs(topology, args.size() == 4 ? args[3] : "");
      // The lines a topology spread over hosts lists under each node.
      for (const auto& [name, public_key] : pairs)
        std::printf("%s:\n    curve_public_key: \"%s\"\n", name.c_str(), public_key.c_str());
      if (pairs.empty()) std::fprintf(stderr, "keygen: the topology has no node on this host\n");
      return 0;
    }
    if (command == "hash-password" && args.size() == 1) {
      std::string password;
      std::getline(std::cin, password);
      if (password.empty()) {
        std::fprintf(stderr, "hash-password: read an empty password\n");
        return 2;
      }
      std::printf("%s\n", chat4all::auth::hash_password(password).c_str());
      return 0;
    }
  } catch (const chat4all::TopologyError& error) {
    std::fprintf(stderr, "chat4all: invalid topology: %s\n", error.what());
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "chat4all: %s\n", error.what());
    return 1;
  }
  return usage();
}
