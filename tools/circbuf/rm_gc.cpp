// circbuf rm: remove one buffer (refused while live processes hold it, unless
// --force). circbuf gc: remove every stale buffer and segment, i.e. those
// that no live process holds any more (their processes crashed), and what a
// creator that died before it finished left (leftovers.cpp).
// Both decide under the segment's own lock (see RemoveSegment), so they never
// race with a process that is attaching or detaching at that moment.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

namespace circbuf::tool {

namespace {

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
  if (s.kind == Kind::kRing && s.writer != "none") {
    text += ", writer pid " + std::to_string(s.writer_pid) + " " + s.writer;
  }
  return text;
}

int RunRm() {
  std::string const name = CheckRingName(g_rm.name);
  std::string const data = circbuf::CircularBuffer::DataSegmentName(name);
  bool const has_state = SharedMemory::Exists(name);
  bool const has_data = SharedMemory::Exists(data);
  if (!has_state && !has_data) {
    // Only locks left (a creator killed before it made a file): removed
    // under the lock if nobody holds it, as gc does (RemoveUnfinished).
    bool found = false;
    for (auto const& lock : {name, data}) {
      if (!LockExists(lock)) continue;
      found = true;
      if (!RemoveUnfinished(lock)) {
        throw Error(kBusy, lock + ": its lock is held by a live process (a creator or attacher); not removed");
      }
      std::printf("removed %s (unfinished: only its lock was left)\n", lock.c_str());
    }
    if (!found) throw Error(kNoSuchBuffer, name + ": no such buffer");
    return kOk;
  }
  std::vector<std::string> targets;
  bool live = false;
  std::string who;
  if (has_state) {
    SegmentInfo const info = Inspect(name);
    if (info.kind == Kind::kForeign) throw Error(kNotCircbuf, name + ": not a circbuf buffer; left alone");
    live = !info.stale || (info.has_data && !info.data_stale);
    who = Who(info);
    targets.push_back(name);
    if (info.kind != Kind::kSegment && info.has_data) targets.push_back(data);
  } else {
    SegmentInfo const info = Inspect(data);
    if (info.kind == Kind::kForeign) throw Error(kNotCircbuf, data + ": not a circbuf segment; left alone");
    live = !info.stale;
    who = Who(info);
    targets.push_back(data);
  }
  if (live && !g_rm.force) {
    throw Error(kBusy, name + ": live processes attached (" + who + "); not removed (--force removes it anyway)");
  }
  for (auto const& target : targets) {
    if (!RemoveSegment(target, g_rm.force)) {
      throw Error(kBusy, target + ": a process attached meanwhile; not removed (--force removes it anyway)");
    }
    std::printf("removed %s\n", target.c_str());
  }
  return kOk;
}

bool Selected(std::string const& name) {
  if (g_gc.patterns.empty()) return true;
  for (auto const& p : g_gc.patterns) {
    if (NameMatches(p, name)) return true;
  }
  return false;
}

int RunGc() {
  std::vector<SegmentInfo> const all = ScanSegments();
  std::map<std::string, SegmentInfo const*> rings;
  for (auto const& s : all) {
    if (s.kind == Kind::kRing || s.kind == Kind::kRingOther) rings[s.name] = &s;
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
      if (unfinished ? RemoveUnfinished(target) : RemoveSegment(target, false)) {
        std::printf("removed %s (%s)\n", target.c_str(), what.c_str());
        ++removed;
      }
    } catch (Error const& e) {
      std::fprintf(stderr, "circbuf gc: %s\n", e.what());
      code = e.Code();
    }
  };
  for (auto const& s : all) {
    if (!Selected(s.name) || s.open_errno != 0 || s.kind == Kind::kForeign) continue;
    if (s.kind == Kind::kUnfinished) {  // decided under its lock (RemoveUnfinished)
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
    bool const is_ring_data = circbuf::CircularBuffer::IsDataSegmentName(s.name) &&
                              rings.contains(std::string(circbuf::CircularBuffer::RingOfDataSegment(s.name)));
    if (is_ring_data) continue;  // goes with its ring
    if (is_ring) {
      if (!s.stale || (s.has_data && !s.data_stale)) continue;
      remove(s.name, "stale ring, " + Who(s));
      if (s.has_data) remove(circbuf::CircularBuffer::DataSegmentName(s.name), "its data");
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
