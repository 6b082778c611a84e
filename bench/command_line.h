// Command-line parsing shared by the load tools (chat4all-http-load, chat4all-failover-probe)
// and the fault checker (chat4all-check): CLI11 (Debian's libcli11-dev), so that each tool's
// --help is generated from the same definitions that parse its options.
//
// Every tool keeps the same contract: `--name value` or `--name=value`; --help / -h prints the
// usage on stdout and exits 0; a bad option prints the problem and the usage on stderr and
// exits 2.
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <optional>
#include <string>

#include "bench/http_client.h"

namespace chat4all::bench {

// Parses argv into `app`'s options. nullopt: go on; otherwise the exit status to return.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return std::nullopt;
  } catch (const CLI::Success&) {  // --help
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& error) {
    std::cerr << app.get_name() << ": " << error.what() << "\n\n" << app.help();
    return 2;
  }
}

// Where a load tool works and as whom: the frontend, the tenant, its admin client (which creates
// the users), and the two members of every conversation it writes to.
struct SessionOptions {
  std::string url = "http://127.0.0.1:8080";
  std::string tenant = kDevTenant;
  std::string client_id = kDevAdminClient;
  std::string client_secret = kDevSecret;
  std::string user = "alice";
  std::string peer = "bob";
  std::string password = kDevSecret;
};

// --url, --tenant, --client-id, --client-secret, --user, --peer and --password; `url_help` and
// `user_help` say what the tool does with them.
inline void add_session_options(CLI::App& app, SessionOptions& session, const std::string& url_help,
                                const std::string& user_help) {
  app.add_option("--url", session.url, url_help)->capture_default_str();
  app.add_option("--tenant", session.tenant, "tenant to work in")->capture_default_str();
  app.add_option("--client-id", session.client_id,
                 "that tenant's admin client, which creates the users")
      ->capture_default_str();
  app.add_option("--client-secret", session.client_secret, "its secret")->capture_default_str();
  app.add_option("--user", session.user, user_help)->capture_default_str();
  app.add_option("--peer", session.peer,
                 "the other member of every conversation, created if missing")
      ->capture_default_str();
  app.add_option("--password", session.password, "both users' password")->capture_default_str();
}

}  // namespace chat4all::bench
