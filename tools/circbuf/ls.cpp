// circbuf ls: every circbuf ring on this machine (a read-only look; nothing
// attaches, so listing never changes a reference count).
#include <cerrno>
#include <cstdio>
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

struct LsOptions {
  std::vector<std::string> patterns;
  bool json = false;
  bool all = false;
} g_ls;

constexpr std::size_t kNameWidth = 24;

bool Selected(SegmentInfo const& s) {
  if (g_ls.patterns.empty()) return true;
  for (auto const& p : g_ls.patterns) {
    if (cb::NameMatches(p, s.name)) return true;
  }
  return false;
}

std::string Writer(SegmentInfo const& s) {
  if (s.kind == SegmentKind::kRingOther) return "version " + std::to_string(s.ring_version);
  return (s.writer_pid != 0 ? std::to_string(s.writer_pid) + " " : "") + WriterName(s);
}

// One line on what an unfinished segment is, and whose it is.
std::string UnfinishedText(SegmentInfo const& s) {
  std::string const what = s.lock_only
                               ? "only its lock (/dev/shm/sem." + s.name.substr(1) + ") is there"
                               : "a " + std::to_string(s.file_bytes) + "-byte file without a circbuf header yet";
  return "unfinished: " + what +
         (s.lock_held ? "; a live process holds its lock (creating it)" : "; its creator died (circbuf gc removes it)");
}

std::string Stale(SegmentInfo const& s) {
  if (s.kind == SegmentKind::kRing && !s.has_data) return "no data";
  return s.stale && (!s.has_data || s.data_stale) ? "yes" : "no";
}

std::string KindName(SegmentInfo const& s) {
  switch (s.kind) {
    case SegmentKind::kRing: return "ring";
    case SegmentKind::kRingOther: return "ring (other version)";
    case SegmentKind::kSegment: return "segment";
    case SegmentKind::kUnfinished: return "unfinished";
    default: return "foreign";
  }
}

// `"truncated": BOOL` and, when it is, `"damage": TEXT`; `"corrupt": TEXT`
// when the State breaks the library's rules (no leading comma).
std::string JsonDamage(SegmentInfo const& s) {
  std::string const corrupt = s.corrupt.empty() ? "" : R"(, "corrupt": )" + JsonString(s.corrupt);
  if (s.damage.empty()) return R"("truncated": false)" + corrupt;
  return R"("truncated": true, "damage": )" + JsonString(s.damage) + corrupt;
}

void PrintJson(std::vector<SegmentInfo const*> const& rows) {
  std::printf("[");
  char const* sep = "\n";
  for (auto const* s : rows) {
    std::printf(R"(%s  {"name": %s, "kind": %s)", sep, JsonString(s->name).c_str(), JsonString(KindName(*s)).c_str());
    if (s->open_errno != 0) {
      std::printf(", \"error\": %s}", JsonString(ErrnoText(s->open_errno)).c_str());
    } else if (s->kind == SegmentKind::kUnfinished) {
      std::printf(R"(, "bytes": %llu, "lock_only": %s, "stale": %s, "unfinished": %s})",
                  static_cast<unsigned long long>(s->file_bytes), s->lock_only ? "true" : "false",
                  s->stale ? "true" : "false", JsonString(UnfinishedText(*s)).c_str());
    } else if (s->kind == SegmentKind::kRing) {
      std::printf(", \"layout_version\": %u, \"capacity\": %llu, \"writer_pid\": %d, \"writer\": %s, "
                  "\"attached\": %u, \"messages\": %llu, \"tail\": %llu, \"data_segment\": %s, \"stale\": %s, %s}",
                  s->ring_version, static_cast<unsigned long long>(s->capacity), s->writer_pid,
                  JsonString(WriterName(*s)).c_str(), s->refcount, static_cast<unsigned long long>(s->messages),
                  static_cast<unsigned long long>(s->tail), s->has_data ? "true" : "false",
                  Stale(*s) == "no" ? "false" : "true", JsonDamage(*s).c_str());
    } else {
      std::printf(R"(, "layout_version": %u, "bytes": %llu, "attached": %u, "stale": %s, %s})",
                  s->kind == SegmentKind::kRingOther ? s->ring_version : s->segment_version,
                  static_cast<unsigned long long>(s->user_bytes), s->refcount, s->stale ? "true" : "false",
                  JsonDamage(*s).c_str());
    }
    sep = ",\n";
  }
  std::printf("%s]\n", rows.empty() ? "" : "\n");
}

int RunLs() {
  std::vector<SegmentInfo> const all = cb::List();
  std::map<std::string, SegmentInfo const*> rings;
  for (auto const& s : all) {
    if (s.kind == SegmentKind::kRing || s.kind == SegmentKind::kRingOther) rings[s.name] = &s;
  }
  std::vector<SegmentInfo const*> rows;
  for (auto const& s : all) {
    if (!Selected(s)) continue;
    bool const ring = s.kind == SegmentKind::kRing || s.kind == SegmentKind::kRingOther;
    bool const ring_data = cb::IsDataSegmentName(s.name) && rings.contains(std::string(cb::RingOfDataSegment(s.name)));
    bool const other = (s.kind == SegmentKind::kSegment && !ring_data) || (s.open_errno != 0 && g_ls.all);
    // A damaged segment is listed even without --all (a ring's data segment
    // is reported on its ring's row).
    bool const damaged = s.kind == SegmentKind::kSegment && !ring_data && !s.damage.empty();
    if (ring || damaged || s.kind == SegmentKind::kUnfinished || (g_ls.all && other)) rows.push_back(&s);
  }
  if (g_ls.json) {
    PrintJson(rows);
    return kOk;
  }
  if (rows.empty()) {
    std::printf("no circbuf buffers%s\n", g_ls.patterns.empty() ? "" : " match");
    return kOk;
  }
  Table table({{"NAME"}, {"CAPACITY", true}, {"WRITER"}, {"PROCS", true}, {"MESSAGES", true}, {"STALE"}});
  std::vector<std::string> long_names;
  std::vector<std::string> damaged;
  for (auto const* s : rows) {
    if (s->open_errno == 0 && !s->corrupt.empty()) damaged.push_back(s->name + ": " + s->corrupt);
    if (s->open_errno == 0 && !s->damage.empty()) damaged.push_back(s->name + ": " + s->damage);
    std::string name = s->name;
    if (name.size() > kNameWidth) {  // keep the table in 80 columns: the full name goes below it
      long_names.push_back(name);
      name = name.substr(0, kNameWidth - 4) + "~(" + std::to_string(long_names.size()) + ")";
    }
    if (s->open_errno != 0) {
      table.Add({name, "?", ErrnoText(s->open_errno), "?", "?", "?"});
    } else if (s->kind == SegmentKind::kUnfinished) {
      table.Add({name, "-", "(unfinished)", "-", "-", s->stale ? "yes" : "no"});
      damaged.push_back(s->name + ": " + UnfinishedText(*s));
    } else if (s->kind == SegmentKind::kRing) {
      table.Add({name, HumanBytes(static_cast<double>(s->capacity)), Writer(*s), std::to_string(s->refcount),
                 !s->corrupt.empty() ? "corrupt"
                 : s->damage.empty() ? std::to_string(s->messages)
                                     : "truncated",
                 Stale(*s)});
    } else if (s->kind == SegmentKind::kRingOther) {
      table.Add({name, "?", Writer(*s), std::to_string(s->refcount), s->damage.empty() ? "?" : "truncated",
                 s->stale ? "yes" : "no"});
    } else {
      table.Add({name, HumanBytes(static_cast<double>(s->user_bytes)), "(segment)", std::to_string(s->refcount),
                 s->damage.empty() ? "-" : "truncated", s->stale ? "yes" : "no"});
    }
  }
  table.Print();
  for (std::size_t i = 0; i < long_names.size(); ++i) std::printf("(%zu) %s\n", i + 1, long_names[i].c_str());
  for (auto const& line : damaged) std::printf("%s\n", line.c_str());
  return kOk;
}

}  // namespace

Command AddLs(CLI::App& app) {
  auto* sub = app.add_subcommand("ls", "Every circbuf buffer on this machine");
  sub->add_option("pattern", g_ls.patterns, "Only names that match these globs (e.g. '/quotes*')");
  sub->add_flag("--json", g_ls.json, "One JSON array, for scripts");
  sub->add_flag("-a,--all", g_ls.all, "Also list plain circbuf segments and unreadable files");
  sub->footer("Columns: CAPACITY of the ring; WRITER pid and state (alive, dead, closed, none);\n"
              "PROCS attachments recorded in the ring (dead ones included until noticed);\n"
              "MESSAGES written so far, or \"truncated\" when a segment file is not as long as\n"
              "its header says, or \"corrupt\" when the ring's State breaks the library's\n"
              "rules (details below the table); WRITER (unfinished) for what a creator that\n"
              "has not finished, or died first, leaves: the file without a header, or its lock; STALE yes when no live "
              "process holds\n"
              "the ring (`circbuf gc` removes it). Rings are found in /dev/shm by their\n"
              "headers; nothing is attached or mapped.");
  return {sub, RunLs};
}

}  // namespace circbuf::tool
