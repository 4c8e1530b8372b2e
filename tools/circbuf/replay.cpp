// circbuf replay: a recording (circbuf.record, format in docs/recording.md)
// played back into a ring, of which replay becomes the writer.
//   Sequence numbers: by default the recorded ones (--sequence keep): each
//   message goes out with the number it was recorded with, and what the
//   recording lacks in between (its gap entries, entries lost to damage)
//   becomes a gap record (Writer::Skip), so readers of RING count exactly
//   the recorded losses in Lost(). If the ring is already past the first
//   recorded number (it was written before), or with --sequence continue,
//   the numbers are shifted so that the first replayed message gets the
//   ring's next number; the spacing, and so every gap, stays the same.
//   --loop plays the file again and again, each pass continuing the numbers.
//   A recording of several parts (record --rotate: FILE, FILE.1, ...) is
//   played part after part.
//   Timing: the recorded receive times, scaled by --speed (max: no waits).
//   A message too large for RING is refused before anything is written.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;
namespace rec = circbuf::Recording;

namespace circbuf::tool {

namespace {

struct ReplayOptions {
  std::string file;
  std::string name;
  std::string speed_text = "1";
  std::string from_text;
  std::string sequence = "keep";
  std::string capacity;
  bool loop = false;
  bool hold = false;
} g_replay;

std::string U(std::uint64_t v) { return std::to_string(v); }
void Note(std::string const& line) { std::fprintf(stderr, "circbuf replay: %s\n", line.c_str()); }

// --speed: "max" (0: no waits) or a factor > 0 ("1", "2", "0.5").
double ParseSpeed(std::string const& text) {
  if (text == "max") return 0;
  std::size_t used = 0;
  double speed = 0;
  try {
    speed = std::stod(text, &used);
  } catch (std::exception const&) {
    used = 0;
  }
  if (used != text.size() || !(speed > 0) || speed > 1e9) {
    throw Error(kInvalid, "--speed " + text + ": must be max or a factor > 0 (1: as recorded, 2: twice as fast)");
  }
  return speed;
}

// "2026-12-03T07:41:00Z", "2026-12-03T07:41:00.123456789Z": ns since the epoch (UTC).
std::optional<std::uint64_t> ParseIsoTime(std::string const& text) {
  int year = 0;
  int month = 0;
  int day = 0;
  int hour = 0;
  int minute = 0;
  int second = 0;
  int used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour, &minute, &second, &used) !=
      6) {
    return std::nullopt;
  }
  std::uint64_t fraction = 0;
  auto at = static_cast<std::size_t>(used);
  if (at < text.size() && text[at] == '.') {
    std::uint64_t scale = 100'000'000;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at) {
      fraction += static_cast<std::uint64_t>(text[at] - '0') * scale;
      scale /= 10;
    }
  }
  if (at + 1 != text.size() || text[at] != 'Z' || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 60 || year < 1970) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t const seconds = ::timegm(&tm);
  if (seconds < 0) return std::nullopt;
  return static_cast<std::uint64_t>(seconds) * 1'000'000'000 + fraction;
}

// Where --from says to start: a sequence number, an ISO 8601 UTC time, or
// +SECONDS after the recording's first entry (resolved against the first part).
struct From {
  enum Kind : std::uint8_t { kStart, kSequence, kTime } kind = kStart;
  std::uint64_t value = 0;
};

From ParseFrom(std::string const& from, std::string const& first_part) {
  if (from.empty()) return {};
  if (from.find_first_not_of("0123456789") == std::string::npos) {
    try {
      return {From::kSequence, std::stoull(from)};
    } catch (std::exception const&) {
      throw Error(kInvalid, "--from " + from + ": a sequence number must be below 2^64");
    }
  }
  if (from.starts_with("+")) {
    std::size_t used = 0;
    double seconds = -1;
    try {
      seconds = std::stod(from.substr(1), &used);
    } catch (std::exception const&) {
      used = 0;
    }
    if (used + 1 != from.size() || !(seconds >= 0)) {
      throw Error(kInvalid, "--from " + from + ": +SECONDS must be a number of seconds >= 0");
    }
    rec::RecordingReader reader(first_part);
    rec::Entry first;
    if (!reader.Next(first)) return {};  // empty: nothing to play anyway
    return {From::kTime, first.timestamp_ns + static_cast<std::uint64_t>(seconds * 1e9)};
  }
  if (std::optional<std::uint64_t> const ns = ParseIsoTime(from)) return {From::kTime, *ns};
  throw Error(kInvalid, "--from " + from +
                            ": must be a sequence number, a UTC time (2026-12-03T07:41:00.5Z) or +SECONDS "
                            "after the first entry");
}

void Seek(rec::RecordingReader& reader, From from) {
  switch (from.kind) {
    case From::kStart: reader.Rewind(); break;
    case From::kSequence: reader.SeekSequence(from.value); break;
    case From::kTime: reader.SeekTime(from.value); break;
  }
}

// The largest message from `from` on, in every part.
std::size_t LargestMessage(std::vector<std::string> const& parts, From from) {
  std::size_t largest = 0;
  for (std::string const& part : parts) {
    rec::RecordingReader reader(part);
    Seek(reader, from);
    rec::Entry e;
    while (reader.Next(e)) {
      if (e.type == rec::EntryType::kMessage && e.payload.size() > largest) largest = e.payload.size();
    }
  }
  return largest;
}

// Waits until `due` (steady clock): sleeps, then spins the last 100 us
// (a sleep overshoots by tens of microseconds). Returns false if stopped.
bool WaitUntil(std::chrono::steady_clock::time_point due) {
  using namespace std::chrono_literals;
  for (;;) {
    if (StopRequested()) return false;
    auto const now = std::chrono::steady_clock::now();
    if (now >= due) return true;
    auto const left = due - now;
    if (left > 200us) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left - 100us, 50ms));
    }
  }
}

int RunReplay() {
  std::string const name = CheckRingName(g_replay.name);
  double const speed = ParseSpeed(g_replay.speed_text);
  bool const keep = g_replay.sequence == "keep";
  std::vector<std::string> const parts = RecordingParts(g_replay.file);
  rec::FileHeader header;
  {
    rec::RecordingReader first(g_replay.file);  // refuses a missing or foreign file before anything else
    header = first.Header();
  }
  From const from = ParseFrom(g_replay.from_text, g_replay.file);
  std::uint64_t capacity = 0;
  if (!g_replay.capacity.empty()) capacity = ParseCapacity(g_replay.capacity);
  if (SharedMemory::Exists(name)) {  // look before attaching (see tail.cpp)
    SegmentInfo const info = InspectRing(name);
    if (capacity == 0) capacity = info.capacity;  // keep the capacity it has
  }
  std::uint64_t const source = header.ring_capacity;
  bool const source_ok = source >= cb::kMinCapacity && source <= cb::kMaxCapacity;
  if (capacity == 0) capacity = source_ok ? source : std::uint64_t{1} << 20;  // a new ring: the source's capacity
  // Refuse a message the ring cannot take before writing anything: a scan of
  // the recording unless the source ring's largest message fits anyway.
  std::size_t const max = cb::MaxMessageFor(cb::Spec::Make(name, capacity).capacity);
  if (!source_ok || cb::MaxMessageFor(source) > max) {
    if (std::size_t const largest = LargestMessage(parts, from); largest > max) {
      throw Error(kInvalid, g_replay.file + " holds a message of " + U(largest) + " bytes; a ring of " + U(capacity) +
                                " bytes takes at most " + U(max) + " (--capacity)");
    }
  }
  InstallStopHandlers();
  cb::Writer writer(cb::Spec::Make(name, capacity));
  if (parts.size() > 1) Note(g_replay.file + ": " + U(parts.size()) + " parts (--rotate), played in order");

  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t gaps = 0;
  std::uint64_t lost = 0;
  std::uint64_t dropped = 0;  // entries out of order (a number at or below one already written)
  std::uint64_t corrupt = 0;
  std::uint64_t passes = 0;
  std::optional<std::uint64_t> delta;  // ring number = recorded number + delta (mod 2^64)
  auto const started = std::chrono::steady_clock::now();
  std::string why = "end of the recording";
  // Makes the ring's next number `target` (a gap record for what lies between).
  auto skip_to = [&](std::uint64_t target) {
    std::uint64_t const next = writer.NextSequence();
    if (target <= next) return;
    writer.Skip(target - next);
    ++gaps;
    lost += target - next;
  };
  bool stopped = false;
  for (bool more = true; more && !stopped;) {
    ++passes;
    std::optional<std::uint64_t> first_ns;  // the pass's first recorded time
    auto pass_start = std::chrono::steady_clock::now();
    std::uint64_t entries = 0;
    for (std::string const& part : parts) {
      rec::RecordingReader reader(part);
      Seek(reader, from);
      rec::Entry e;
      while (reader.Next(e)) {
        ++entries;
        if (!delta) {
          std::uint64_t const next = writer.NextSequence();
          if (keep && passes == 1 && e.sequence >= next) {
            delta = 0;
          } else {
            delta = next - e.sequence;
            if (keep && passes == 1) {
              Note(name + " is at sequence " + U(next) + ", past the recording's first (" + U(e.sequence) +
                   "): numbers shifted by " + U(next - e.sequence) + ", gaps kept");
            }
          }
        }
        if (!first_ns) {
          first_ns = e.timestamp_ns;
          pass_start = std::chrono::steady_clock::now();
        }
        if (speed > 0 && e.timestamp_ns > *first_ns) {
          auto const offset = std::chrono::nanoseconds(
              static_cast<std::int64_t>(static_cast<double>(e.timestamp_ns - *first_ns) / speed));
          if (!WaitUntil(pass_start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(offset))) {
            break;
          }
        } else if (StopRequested()) {
          break;
        }
        std::uint64_t const number = e.sequence + *delta;
        if (e.type == rec::EntryType::kGap) {
          skip_to(number + e.lost);
          continue;
        }
        if (number < writer.NextSequence()) {
          ++dropped;
          continue;
        }
        skip_to(number);
        writer.Write(e.payload);
        ++messages;
        bytes += e.payload.size();
      }
      if (passes == 1) corrupt += reader.CorruptCount();
      if (StopRequested()) {
        why = "stopped by a signal";
        stopped = true;
        break;
      }
    }
    more = g_replay.loop && entries != 0;
    delta.reset();  // the next pass continues the numbers
  }
  double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  char took[32];
  std::snprintf(took, sizeof took, "%.3f s", seconds);
  std::string line = U(messages) + " messages (" + U(bytes) + " bytes), " + U(gaps) + " gaps (" + U(lost) +
                     " messages lost) into " + name + " in " + took;
  if (g_replay.loop) line += ", " + U(passes) + " passes";
  if (dropped != 0) line += "; " + U(dropped) + " entries out of order dropped";
  if (corrupt != 0) line += "; " + U(corrupt) + " corrupt entries skipped (counted lost)";
  Note(line + "; " + why);
  if (g_replay.hold && !StopRequested()) {
    Note(name + ": holding the buffer open (Ctrl-C to release)");
    while (!StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return kOk;
}

}  // namespace

Command AddReplay(CLI::App& app) {
  auto* sub = app.add_subcommand("replay", "Play a recording file into a buffer (becomes its writer)");
  sub->add_option("file", g_replay.file, "Recording file (circbuf record)")->required();
  sub->add_option("name", g_replay.name, "Buffer name, e.g. /quotes (created if missing)")->required();
  sub->add_option("--speed", g_replay.speed_text, "max, or x the recorded pace (2: twice as fast)")
      ->capture_default_str();
  sub->add_option("--from", g_replay.from_text, "SEQ, UTC time (2026-12-03T07:41:00Z) or +SECONDS");
  sub->add_option("--sequence", g_replay.sequence, "keep: recorded numbers; continue: the buffer's next")
      ->check(CLI::IsMember({"keep", "continue"}))
      ->capture_default_str();
  sub->add_option("-c,--capacity", g_replay.capacity, "A new buffer's capacity (default: the recorded one's)");
  sub->add_flag("--loop", g_replay.loop, "Play it again and again (numbers continue)");
  sub->add_flag("--hold", g_replay.hold, "Keep the buffer open at the end until Ctrl-C");
  sub->footer("Recorded losses become gaps that the buffer's readers count in Lost().\n"
              "Numbers are shifted, gaps kept, if the buffer is past the recorded ones.\n"
              "Ctrl-C stops and exits 0; a summary line goes to stderr.");
  return {sub, RunReplay};
}

}  // namespace circbuf::tool
