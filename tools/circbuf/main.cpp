// circbuf: see, run and operate circbuf rings on this machine.
//   circbuf demo | ls | stat | tail | pub | rm | gc | bench | record | info | dump | replay | bridge   (circbuf --help)
// Every error is one line on stderr and a distinct exit code (kExitCodeHelp).
#include <signal.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

namespace tool = circbuf::tool;

namespace {

constexpr std::size_t kHelpWidth = 80;  // what `circbuf X --help` fits in
constexpr std::size_t kNameColumn = 24;  // where option descriptions start

// Breaks each line of text longer than `width` at spaces (a word longer than
// that stays whole); continuation lines keep the line's own indentation, and
// lines that fit are left as they are.
std::string Wrap(std::string_view text, std::size_t width) {
  std::string out;
  while (!text.empty()) {
    std::size_t const eol = text.find('\n');
    std::string_view rest = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    std::size_t const indent = std::min(rest.find_first_not_of(' '), rest.size());
    std::string_view const margin = rest.substr(0, indent);
    rest.remove_prefix(indent);
    std::size_t room = width > indent ? width - indent : 1;
    out.append(margin);
    while (rest.size() > room) {
      std::size_t cut = rest.rfind(' ', room);
      if (cut == std::string_view::npos || cut == 0) cut = rest.find(' ');  // one long word
      if (cut == std::string_view::npos) break;
      out.append(rest.substr(0, cut)) += '\n';
      rest.remove_prefix(cut);
      rest.remove_prefix(std::min(rest.find_first_not_of(' '), rest.size()));
      out.append(margin);
    }
    out.append(rest);
    if (eol != std::string_view::npos) out += '\n';
  }
  return out;
}

// CLI11 (2.1) prints each description on one line however long it is; this
// wraps them to kHelpWidth columns (CLI11 indents the continuation lines).
class WrappingFormatter : public CLI::Formatter {
 public:
  WrappingFormatter() { column_width(kNameColumn); }
  std::string make_option_desc(CLI::Option const* opt) const override {
    return Wrap(CLI::Formatter::make_option_desc(opt), kHelpWidth - kNameColumn);
  }
  std::string make_subcommand(CLI::App const* sub) const override {
    std::stringstream out;
    CLI::detail::format_help(out, sub->get_display_name(true), Wrap(sub->get_description(), kHelpWidth - kNameColumn),
                             kNameColumn);
    return out.str();
  }
  std::string make_description(CLI::App const* app) const override {
    return Wrap(CLI::Formatter::make_description(app), kHelpWidth);
  }
  std::string make_footer(CLI::App const* app) const override {
    return Wrap(CLI::Formatter::make_footer(app), kHelpWidth);
  }
};

int Run(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);  // a closed pipe is EPIPE on write, handled where we write
  CLI::App app("circbuf: single-writer, multi-reader broadcast rings in shared memory", "circbuf");
  app.formatter(std::make_shared<WrappingFormatter>());  // before the subcommands: they share it
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
