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

}  // namespace chat4all::bench
