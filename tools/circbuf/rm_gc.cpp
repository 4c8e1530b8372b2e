// circbuf rm: remove one buffer (refused while live processes hold it, unless
// --force). circbuf gc: remove every stale buffer and segment, i.e. those
// that no live process holds any more (their processes crashed), and what a
// creator that died before it finished left (leftovers.cpp).
// Both decide under the segment's own lock (see RemoveSegment), so they never
// race with a process that is attaching or detaching at that moment.
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace circbuf::tool {

namespace {

namespace cb = circbuf::CircularBuffer;

struct RmOptions {
  std::string name;
  bool force = false;
} g_rm;

struct GcOptions {
  std::vector<std::string> patterns;
  bool dry_run = false;
} g_gc;

std::string Who(SegmentInfo const& s) {
  std::string text = std::to_string(s.refcount) + " attachment(s) recorded";
  if (s.kind == SegmentKind::kRing && s.writer != cb::WriterStatus::kNone) {
    text += ", writer pid " + std::to_string(s.writer_pid) + " " + WriterName(s);
  }
  return text;
}

int RunRm() {
  std::string const name = CheckRingName(g_rm.name);
  cb::RemoveResult result;
  try {
    result = cb::Remove(name, g_rm.force);
  } catch (...) {
    RethrowAsError();
  }
  for (auto const& removed : result.removed) std::printf("removed %s\n", removed.c_str());
  if (!result.busy.empty()) {
    throw Error(kBusy, result.busy + "; not removed" + (g_rm.force ? "" : " (--force removes it anyway)"));
  }
  if (result.removed.empty()) throw Error(kNoSuchBuffer, name + ": no such buffer");
  return kOk;
}

bool Selected(std::string const& name) {
  if (g_gc.patterns.empty()) return true;
  for (auto const& p : g_gc.patterns) {
    if (cb::NameMatches(p, name)) return true;
  }
  return false;
}

int RunGc() {
  std::vector<SegmentInfo> const all = cb::List();
  std::map<std::string, SegmentInfo const*> rings;
  for (auto const& s : all) {
    if (s.kind == SegmentKind::kRing || s.kind == SegmentKind::kRingOther) rings[s.name] = &s;
  }
  int code = kOk;
  int removed = 0;
  auto const remove = [&](std::string const& target, std::string const& what, bool unfinished = false) {
    if (g_gc.dry_run) {
      std::printf("would remove %s (%s)\n", target.c_str(), what.c_str());
      ++removed;
      return;
    }
    try {
      if (unfinished ? cb::RemoveUnfinished(target) : cb::RemoveSegment(target, false)) {
        std::printf("removed %s (%s)\n", target.c_str(), what.c_str());
        ++removed;
      }
    } catch (std::exception const& e) {
      std::fprintf(stderr, "circbuf gc: %s\n", e.what());
      try {
        RethrowAsError();
      } catch (Error const& error) {
        code = error.Code();
      }
    }
  };
  for (auto const& s : all) {
    if (!Selected(s.name) || s.open_errno != 0 || s.kind == SegmentKind::kForeign) continue;
    if (s.kind == SegmentKind::kUnfinished) {  // decided under its lock (RemoveUnfinished)
      std::string const what = s.lock_only ? "unfinished: only its lock was left"
                                           : "unfinished: " + std::to_string(s.file_bytes) + " bytes, no header";
      if (s.lock_held) {
        std::printf("left %s (unfinished: a live process holds its lock)\n", s.name.c_str());
      } else {
        remove(s.name, what + ", its creator died", true);
      }
      continue;
    }
    bool const is_ring = rings.contains(s.name);
    bool const is_ring_data =
        cb::IsDataSegmentName(s.name) && rings.contains(std::string(cb::RingOfDataSegment(s.name)));
    if (is_ring_data) continue;  // goes with its ring
    if (is_ring) {
      if (!s.stale || (s.has_data && !s.data_stale)) continue;
      remove(s.name, "stale ring, " + Who(s));
      if (s.has_data) remove(cb::DataSegmentName(s.name), "its data");
    } else if (s.stale) {
      remove(s.name, "stale segment, " + std::to_string(s.user_bytes) + " bytes, " + Who(s));
    }
  }
  if (removed == 0 && code == kOk) std::printf("nothing to remove\n");
  return code;
}

}  // namespace

Command AddRm(CLI::App& app) {
  auto* sub = app.add_subcommand("rm", "Remove a buffer (not while processes use it)");
  sub->add_option("name", g_rm.name, "Buffer name, e.g. /quotes")->required();
  sub->add_flag("-f,--force", g_rm.force,
                "Remove it even with live processes attached (they keep their mappings; new ones get a new buffer)");
  return {sub, RunRm};
}

Command AddGc(CLI::App& app) {
  auto* sub = app.add_subcommand("gc", "Remove every buffer whose processes all died");
  sub->add_option("pattern", g_gc.patterns, "Only names that match these globs (e.g. '/test-*')");
  sub->add_flag("-n,--dry-run", g_gc.dry_run, "Only say what would be removed");
  sub->footer("Stale: no live process holds the segment (their shared flocks died with them).\n"
              "Unfinished: a creator died before it finished the segment (its lock is free).\n"
              "Segments that are not circbuf's are never touched.");
  return {sub, RunGc};
}

}  // namespace circbuf::tool
