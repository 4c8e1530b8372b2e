// circbuf stat: one ring in detail, with its message and byte rates; --watch
// adds a line per interval (like vmstat) until Ctrl-C or the ring goes away.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace circbuf::tool {

namespace {

struct StatOptions {
  std::string name;
  bool watch = false;
  bool json = false;
  double interval = 1.0;
  std::uint64_t count = 0;  // --watch: stop after this many samples (0: never)
} g_stat;

struct Rates {
  double messages = 0;  // per second
  double bytes = 0;     // per second, of the stream (headers and padding included)
};

// Samples the ring again after `seconds`; false if it has gone.
bool Measure(SegmentInfo& info, double seconds, Rates& rates) {
  std::uint64_t const t0 = NowNs();
  std::uint64_t const tail0 = info.tail;
  std::uint64_t const messages0 = info.messages;
  auto const deadline = t0 + static_cast<std::uint64_t>(seconds * 1e9);
  while (NowNs() < deadline && !StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  try {  // sampled again: the look of the library (circbuf.ring:inspect)
    SegmentInfo const fresh = CircularBuffer::Inspect(info.name);
    if (fresh.kind != SegmentKind::kRing) return false;
    if (!fresh.corrupt.empty() || !fresh.damage.empty()) {  // no rate from it; the caller's next look refuses it
      rates = {};
      return true;
    }
    info.tail = fresh.tail;
    info.messages = fresh.messages;
  } catch (std::system_error const&) {
    return false;  // removed
  }
  double const dt = static_cast<double>(NowNs() - t0) / 1e9;
  // Positions never go backwards; a ring removed and created anew under
  // the same name meanwhile starts again from 0: no rate for this interval.
  bool const restarted = info.messages < messages0 || info.tail < tail0;
  rates.messages = restarted ? 0 : static_cast<double>(info.messages - messages0) / dt;
  rates.bytes = restarted ? 0 : static_cast<double>(info.tail - tail0) / dt;
  return true;
}

std::string WriterText(SegmentInfo const& s) {
  if (s.writer == CircularBuffer::WriterStatus::kNone) return "none has attached yet";
  return "pid " + std::to_string(s.writer_pid) + ", " + WriterName(s) +
         (s.writer == CircularBuffer::WriterStatus::kDead ? " (a new writer may take over)" : "") + ", epoch " +
         std::to_string(s.writer_epoch);
}

void PrintJson(SegmentInfo const& s, Rates const& r) {
  std::printf("{\"name\": %s, \"layout_version\": %u, \"capacity\": %llu, \"chunk\": %llu, \"max_message\": %u, "
              "\"write_position\": %llu, \"messages\": %llu, \"skipped\": %llu, \"message_rate\": %.1f, "
              "\"byte_rate\": %.1f, "
              "\"writer_pid\": %d, \"writer\": %s, \"writer_epoch\": %llu, \"attached\": %u, "
              "\"data_attached\": %u, \"readers_asleep\": %s, \"stale\": %s}\n",
              JsonString(s.name).c_str(), s.ring_version, static_cast<unsigned long long>(s.capacity),
              static_cast<unsigned long long>(s.chunk), s.max_message, static_cast<unsigned long long>(s.tail),
              static_cast<unsigned long long>(s.messages), static_cast<unsigned long long>(s.skipped), r.messages,
              r.bytes, s.writer_pid, JsonString(WriterName(s)).c_str(), static_cast<unsigned long long>(s.writer_epoch),
              s.refcount, s.data_refcount, s.sleeping ? "true" : "false", s.stale && s.data_stale ? "true" : "false");
  std::fflush(stdout);
}

// A segment file that is not as long as its header says (SegmentInfo::damage)
// or a State that breaks the library's rules (SegmentInfo::corrupt): stat
// refuses the ring (kNotCircbuf, like the library), and with --json says so
// on stdout as well, for scripts.
[[noreturn]] void RefuseDamaged(SegmentInfo const& s) {
  if (!s.corrupt.empty()) {
    if (g_stat.json) {
      std::printf("{\"name\": %s, \"corrupt\": %s}\n", JsonString(s.name).c_str(), JsonString(s.corrupt).c_str());
      std::fflush(stdout);
    }
    throw Error(kNotCircbuf, s.name + ": " + s.corrupt);
  }
  if (g_stat.json) {
    std::printf("{\"name\": %s, \"truncated\": true, \"damage\": %s}\n", JsonString(s.name).c_str(),
                JsonString(s.damage).c_str());
    std::fflush(stdout);
  }
  throw Error(kNotCircbuf, s.name + ": " + s.damage);
}

bool Refused(SegmentInfo const& s) { return !s.damage.empty() || !s.corrupt.empty(); }

void PrintText(SegmentInfo const& s, Rates const& r) {
  auto const row = [](char const* key, std::string const& value) { std::printf("%-15s %s\n", key, value.c_str()); };
  row("ring", s.name);
  row("layout", "version " + std::to_string(s.ring_version) + " (segment header version " +
                    std::to_string(s.segment_version) + ")");
  row("capacity", std::to_string(s.capacity) + " bytes (" + HumanBytes(static_cast<double>(s.capacity)) + "), chunk " +
                      std::to_string(s.chunk) + ", max message " + std::to_string(s.max_message));
  std::uint64_t const capacity = s.capacity != 0 ? s.capacity : 1;  // checked by Inspect (SegmentInfo::corrupt)
  row("write position", std::to_string(s.tail) + " (lap " + std::to_string(s.tail / capacity) + ", offset " +
                            std::to_string(s.tail % capacity) + ")");
  row("sequence", s.skipped == 0
                      ? std::to_string(s.messages) + " messages written"
                      : std::to_string(s.messages - s.skipped) + " messages written, " + std::to_string(s.skipped) +
                            " numbers skipped by gap records (next " + std::to_string(s.messages) + ")");
  row("rate", HumanCount(r.messages) + " msg/s, " + HumanBytes(r.bytes) + "/s");
  row("writer", WriterText(s));
  row("attached", std::to_string(s.refcount) + " (data segment: " + std::to_string(s.data_refcount) + "), " +
                      (s.sleeping ? "a reader is asleep in Wait" : "no reader asleep in Wait"));
  row("stale", s.stale && s.data_stale ? "yes: no live process attached (circbuf gc removes it)" : "no");
  std::fflush(stdout);
}

int RunStat() {
  std::string const name = CheckRingName(g_stat.name);
  InstallStopHandlers();
  SegmentInfo info = InspectRing(name, /*allow_damaged=*/true);
  if (Refused(info)) RefuseDamaged(info);
  Rates rates;
  double const first = g_stat.watch ? g_stat.interval : std::min(g_stat.interval, 0.5);
  if (!Measure(info, first, rates)) throw Error(kNoSuchBuffer, name + ": removed while measuring");
  info = [&] {
    SegmentInfo fresh = InspectRing(name, /*allow_damaged=*/true);
    if (Refused(fresh)) RefuseDamaged(fresh);
    fresh.tail = info.tail;
    fresh.messages = info.messages;
    return fresh;
  }();
  if (g_stat.json) {
    PrintJson(info, rates);
  } else {
    PrintText(info, rates);
  }
  if (!g_stat.watch) return kOk;
  if (!g_stat.json)
    std::printf("\n%8s  %14s  %12s  %8s  %11s  %-6s  %5s\n", "time", "position", "messages", "msg/s", "bytes/s",
                "writer", "procs");
  std::uint64_t const start = NowNs();
  for (std::uint64_t n = 0; (g_stat.count == 0 || n < g_stat.count) && !StopRequested(); ++n) {
    if (!Measure(info, g_stat.interval, rates)) {
      if (StopRequested()) break;
      std::printf("%s: removed\n", name.c_str());
      return kOk;
    }
    if (StopRequested()) break;
    SegmentInfo fresh = InspectSegment(name);
    if (Refused(fresh)) RefuseDamaged(fresh);
    info.writer = fresh.writer;
    info.writer_pid = fresh.writer_pid;
    info.refcount = fresh.refcount;
    if (g_stat.json) {
      PrintJson(info, rates);
      continue;
    }
    std::printf("%7.1fs  %14llu  %12llu  %8s  %11s  %-6s  %5u\n", static_cast<double>(NowNs() - start) / 1e9,
                static_cast<unsigned long long>(info.tail), static_cast<unsigned long long>(info.messages),
                HumanCount(rates.messages).c_str(), (HumanBytes(rates.bytes) + "/s").c_str(), WriterName(info).c_str(),
                info.refcount);
    std::fflush(stdout);
  }
  return kOk;
}

}  // namespace

Command AddStat(CLI::App& app) {
  auto* sub = app.add_subcommand("stat", "One buffer in detail: positions, rates, writer");
  sub->add_option("name", g_stat.name, "Buffer name, e.g. /quotes")->required();
  sub->add_flag("-w,--watch", g_stat.watch, "Keep going: one line per interval until Ctrl-C");
  sub->add_flag("--json", g_stat.json, "JSON (with --watch: one object per line)");
  sub->add_option("-i,--interval", g_stat.interval, "Seconds between samples (rates are measured over it)")
      ->check(CLI::Range(0.05, 3600.0));
  sub->add_option("-n,--count", g_stat.count, "With --watch: stop after this many lines");
  sub->footer("Nothing attaches: the buffer's reference counts are left as they are.");
  return {sub, RunStat};
}

}  // namespace circbuf::tool
