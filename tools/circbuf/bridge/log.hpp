// circbuf bridge: its spdlog logger, "circbuf.bridge", on stderr. Plain C++
// (no module types): included before `import circbuf;` (docs/toolchain-notes.md,
// "Includes, imports and where spdlog may go", rule 1). The tool's units are
// not module units, so spdlog may be used here (rule 2 is about module units).
#pragma once

#include <cstdlib>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace circbuf::tool::bridge {

// Level info (connects, reconnects, resumes, gaps, gap fills); --verbose:
// debug; CIRCBUF_LOG=trace|debug|info|warn|error|off overrides both.
inline spdlog::logger& Log() {
  static std::shared_ptr<spdlog::logger> const logger = [] {
    std::shared_ptr<spdlog::logger> created = spdlog::get("circbuf.bridge");
    if (!created) created = spdlog::stderr_color_mt("circbuf.bridge");
    created->set_level(spdlog::level::info);
    created->set_pattern("[%H:%M:%S.%e] [%n] [%l] %v");
    if (char const* env = std::getenv("CIRCBUF_LOG")) created->set_level(spdlog::level::from_str(env));
    return created;
  }();
  return *logger;
}

}  // namespace circbuf::tool::bridge
