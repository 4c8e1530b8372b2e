// Internal: the library's named spdlog logger. Included only by module
// *implementation* units (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 2), never by an
// interface unit.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace circbuf::detail {

// The logger is registered in spdlog's registry as "circbuf", so an application
// that uses spdlog can reconfigure it (spdlog::get("circbuf")) or register its
// own "circbuf" logger first. Default level: warn (recoveries and errors only);
// CIRCBUF_LOG=trace|debug|info|warn|error|off overrides it at start-up.
inline spdlog::logger& Log() {
  static std::shared_ptr<spdlog::logger> const logger = [] {
    if (auto existing = spdlog::get("circbuf")) return existing;
    std::shared_ptr<spdlog::logger> created;
    try {
      created = spdlog::stderr_color_mt("circbuf");
    } catch (spdlog::spdlog_ex const&) {  // registered meanwhile by someone else
      created = spdlog::get("circbuf");
    }
    created->set_level(spdlog::level::warn);
    created->set_pattern("[%H:%M:%S.%e] [%n] [%l] [pid %P] %v");
    if (char const* env = std::getenv("CIRCBUF_LOG")) {
      created->set_level(spdlog::level::from_str(env));
    }
    return created;
  }();
  return *logger;
}

}  // namespace circbuf::detail
