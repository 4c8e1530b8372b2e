// circbuf: see, run and operate circbuf rings on this machine.
//   circbuf demo | ls | stat | tail | pub | rm | gc | bench | record | info | dump | replay | bridge   (circbuf --help)
// Every error is one line on stderr and a distinct exit code (kExitCodeHelp).
#include <signal.h>

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

namespace tool = circbuf::tool;

namespace {

int Run(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a closed pipe is EPIPE on write, handled where we write
  CLI::App app("circbuf: single-writer, multi-reader broadcast rings in shared memory", "circbuf");
  app.require_subcommand(1);
  app.fallthrough();  // `circbuf ls --verbose` as well as `circbuf --verbose ls`
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Library log (spdlog, debug level) on stderr");
  std::vector<tool::Command> const commands = {
      tool::AddDemo(app),   tool::AddLs(app),   tool::AddStat(app), tool::AddTail(app),
      tool::AddPub(app),    tool::AddRm(app),   tool::AddGc(app),   tool::AddBench(app),
      tool::AddRecord(app), tool::AddInfo(app), tool::AddDump(app), tool::AddReplay(app),
#ifdef CIRCBUF_HAVE_BRIDGE
      tool::AddBridge(app),
#endif
  };
  app.footer(tool::kExitCodeHelp);
  app.get_formatter()->column_width(24);
  // CLI11 says only "A subcommand is required" for `circbuf frobnicate`.
  for (int i = 1; i < argc; ++i) {
    std::string const arg = argv[i];
    if (arg.starts_with("-")) continue;
    bool known = false;
    for (auto const& command : commands) known = known || command.app->get_name() == arg;
    if (!known) {
      std::fprintf(stderr, "circbuf: unknown subcommand \"%s\" (see circbuf --help)\n", arg.c_str());
      return tool::kUsage;
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (CLI::CallForHelp const& e) {
    return app.exit(e);
  } catch (CLI::CallForAllHelp const& e) {
    return app.exit(e);
  } catch (CLI::ParseError const& e) {
    std::fprintf(stderr, "circbuf: %s (see circbuf --help)\n", e.what());
    return tool::kUsage;
  }
  if (verbose) circbuf::SetLogLevel(circbuf::LogLevel::kDebug);
  for (auto const& command : commands) {
    if (!command.app->parsed()) continue;
    try {
      try {
        return command.run();
      } catch (...) {
        tool::RethrowAsError();
      }
    } catch (tool::Error const& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "circbuf %s: %s\n", command.app->get_name().c_str(), e.what());
      return e.Code();
    }
  }
  return tool::kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  // What Run lets through (std::bad_alloc while setting up, a CLI11 error
  // outside parse) is still one line on stderr and an exit code, not abort().
  try {
    return Run(argc, argv);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "circbuf: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "circbuf: unknown error\n");
  }
  return tool::kSystem;
}
