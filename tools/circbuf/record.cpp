// circbuf record / info / dump: recordings of a ring in a file (circbuf.record,
// format in docs/recording.md).
//   record: one more ordinary Reader of the ring (it never slows the writer);
//     every message goes into the file with its sequence number and receive
//     time (CLOCK_REALTIME), every lap as a gap entry with the exact number of
//     messages lost. An empty ring is waited on with Reader::Wait (never a
//     spin); the file is flushed before each wait, so a recorder killed while
//     the ring is idle has lost nothing. Stops at --duration, --count,
//     SIGINT/SIGTERM (flushes, exit 0) or when the writer closes the ring.
//   info: Recording::RecordingReader::Info as text or JSON (of FILE; the
//     number of parts FILE.1, ... that --rotate made after it is shown).
//   dump: one line per entry (text) or a hex dump per message, from a sequence
//     on, through every part.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;
namespace rec = circbuf::Recording;

namespace circbuf::tool {

namespace {

std::uint64_t RealtimeNs() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

std::string U(std::uint64_t v) { return std::to_string(v); }

// ---- record ------------------------------------------------------------------------------
struct RecordOptions {
  std::string name;
  std::string file;
  std::string from_text = "next";
  double duration = 0;
  std::uint64_t count = 0;
  std::string rotate_text;
} g_record;

cb::Reader* g_reader = nullptr;  // for the stop hook
void StopReader() noexcept {
  if (g_reader != nullptr) g_reader->RequestStop();
}

void Note(std::string const& line) { std::fprintf(stderr, "circbuf record: %s\n", line.c_str()); }

int RunRecord() {
  std::string const name = CheckRingName(g_record.name);
  cb::StartAt const from = g_record.from_text == "oldest"   ? cb::StartAt::kOldest
                           : g_record.from_text == "latest" ? cb::StartAt::kLatest
                                                            : cb::StartAt::kNext;
  std::uint64_t const rotate = g_record.rotate_text.empty() ? 0 : ParseSize(g_record.rotate_text, "--rotate");
  if (SharedMemory::Exists(name)) (void)InspectRing(name);  // look before attaching (see tail.cpp)
  InstallStopHandlers();
  cb::Reader reader(cb::Spec::Make(name, 0), {.start = from});
  g_reader = &reader;
  SetStopHook(StopReader);
  if (StopRequested()) reader.RequestStop();
  struct Unhook {
    Unhook() = default;
    Unhook(Unhook const&) = delete;
    Unhook& operator=(Unhook const&) = delete;
    ~Unhook() {
      SetStopHook(nullptr);
      g_reader = nullptr;
    }
  } unhook;
  rec::RecordingWriter writer(g_record.file,
                              {.ring_name = name, .ring_capacity = reader.Capacity(), .rotate_bytes = rotate});
  if (writer.Opened().torn_bytes != 0) {
    Note(writer.CurrentPath() + ": cut a torn tail of " + U(writer.Opened().torn_bytes) + " bytes; appending");
  } else if (writer.Opened().existed) {
    Note(writer.CurrentPath() + ": appending");
  }
  bool const timed = g_record.duration > 0;
  auto const deadline =
      std::chrono::steady_clock::now() + std::chrono::nanoseconds(static_cast<std::int64_t>(g_record.duration * 1e9));
  std::vector<std::byte> buffer(cb::kMaxMessageSize);
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t gaps = 0;
  std::uint64_t lost = 0;
  std::string why = "stopped by a signal";
  bool closing = false;
  for (;;) {
    if (StopRequested()) break;
    if (timed && std::chrono::steady_clock::now() >= deadline) {
      why = "duration reached";
      break;
    }
    int const n = reader.Read(buffer);
    if (n > 0) {
      writer.Append(reader.NextSequence() - 1, RealtimeNs(),
                    std::span<std::byte const>(buffer.data(), static_cast<std::size_t>(n)));
      ++messages;
      bytes += static_cast<std::uint64_t>(n);
      if (messages == g_record.count) {
        why = "count reached";
        break;
      }
      continue;
    }
    if (n == cb::kLapped) {
      if (reader.LastLoss() != 0) {
        writer.AppendGap(reader.NextSequence() - reader.LastLoss(), reader.LastLoss(), RealtimeNs());
        ++gaps;
        lost += reader.LastLoss();
      }
      continue;
    }
    if (n != cb::kEmpty) {
      writer.Close();
      throw Error(kNotCircbuf, name + (reader.Truncated() ? ": a segment of the ring was truncated while recording"
                                                          : ": corrupt ring (read failed)"));
    }
    writer.Flush();
    if (closing) {
      why = "the writer closed the ring";
      break;
    }
    cb::WaitResult const w = timed ? reader.WaitUntil(deadline) : reader.Wait();
    if (w == cb::WaitResult::kStopped) break;
    if (w == cb::WaitResult::kClosed || w == cb::WaitResult::kDead) closing = true;  // one more look, then stop
  }
  writer.Close();
  Note(U(messages) + " messages (" + U(bytes) + " bytes), " + U(gaps) + " gaps (" + U(lost) + " messages lost) into " +
       writer.CurrentPath() + "; " + why);
  return kOk;
}

// ---- info --------------------------------------------------------------------------------
struct InfoOptions {
  std::string file;
  bool json = false;
} g_info;

std::string IsoTime(std::uint64_t ns) {
  auto const seconds = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned long long>(ns % 1000000000));
  return buf;
}

int RunInfo() {
  rec::RecordingReader reader(g_info.file);
  rec::Summary const s = reader.Info();
  std::size_t const parts = RecordingParts(g_info.file).size();  // this file and the FILE.k after it
  if (g_info.json) {
    std::string out =
        "{\"file\": " + JsonString(g_info.file) + ", \"version\": " + U(s.header.version) +
        ", \"ring\": " + JsonString(s.header.ring_name) + ", \"ring_capacity\": " + U(s.header.ring_capacity) +
        ", \"created_ns\": " + U(s.header.created_ns) + ", \"file_bytes\": " + U(s.file_bytes) +
        ", \"messages\": " + U(s.messages) + ", \"payload_bytes\": " + U(s.payload_bytes) +
        ", \"first_sequence\": " + U(s.first_sequence) + ", \"last_sequence\": " + U(s.last_sequence) +
        ", \"first_ns\": " + U(s.first_ns) + ", \"last_ns\": " + U(s.last_ns) + ", \"gaps\": " + U(s.gaps) +
        ", \"lost\": " + U(s.lost) + ", \"index_blocks\": " + U(s.index_blocks) +
        ", \"corrupt_entries\": " + U(s.corrupt_entries) + ", \"corrupt\": [";
    for (std::size_t i = 0; i < s.corrupt.size(); ++i) {
      out += (i == 0 ? "" : ", ") + std::string("{\"offset\": ") + U(s.corrupt[i].offset) +
             ", \"bytes\": " + U(s.corrupt[i].bytes) + "}";
    }
    out += "], \"torn_bytes\": " + U(s.torn_bytes) + ", \"parts\": " + U(parts) + "}\n";
    std::fputs(out.c_str(), stdout);
    return kOk;
  }
  std::printf("file            %s (%s)\n", g_info.file.c_str(), HumanBytes(static_cast<double>(s.file_bytes)).c_str());
  std::printf("format          circbuf recording, version %u\n", s.header.version);
  std::printf("ring            %s (capacity %s)\n", s.header.ring_name.empty() ? "-" : s.header.ring_name.c_str(),
              HumanBytes(static_cast<double>(s.header.ring_capacity)).c_str());
  std::printf("created         %s\n", IsoTime(s.header.created_ns).c_str());
  std::printf("messages        %llu (%s of payload)\n", static_cast<unsigned long long>(s.messages),
              HumanBytes(static_cast<double>(s.payload_bytes)).c_str());
  if (s.messages + s.gaps != 0) {
    std::printf("sequences       %llu .. %llu\n", static_cast<unsigned long long>(s.first_sequence),
                static_cast<unsigned long long>(s.last_sequence));
    std::printf("time            %s .. %s (%s)\n", IsoTime(s.first_ns).c_str(), IsoTime(s.last_ns).c_str(),
                HumanNs(static_cast<double>(s.last_ns - s.first_ns)).c_str());
  }
  std::printf("gaps            %llu (%llu messages lost)\n", static_cast<unsigned long long>(s.gaps),
              static_cast<unsigned long long>(s.lost));
  std::printf("index blocks    %llu\n", static_cast<unsigned long long>(s.index_blocks));
  std::printf("corrupt         %llu entries\n", static_cast<unsigned long long>(s.corrupt_entries));
  for (auto const& c : s.corrupt) {
    std::printf("                at offset %llu, %llu bytes skipped\n", static_cast<unsigned long long>(c.offset),
                static_cast<unsigned long long>(c.bytes));
  }
  std::printf("torn tail       %llu bytes\n", static_cast<unsigned long long>(s.torn_bytes));
  if (parts > 1) {
    std::printf("parts           %zu (this file, then %s.1 .. .%zu: circbuf info each; dump and replay read all)\n",
                parts, g_info.file.c_str(), parts - 1);
  }
  return kOk;
}

// ---- dump --------------------------------------------------------------------------------
struct DumpOptions {
  std::string file;
  std::string format = "text";
  std::uint64_t from = 0;
  bool has_from = false;
} g_dump;

struct StdoutClosed {};

void Out(std::string const& s) {
  if (!s.empty() && std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
    if (errno == EPIPE) throw StdoutClosed{};
    throw Error(kSystem, std::string("writing stdout: ") + ErrnoText(errno));
  }
}

// The text form of a payload: printable ASCII as is, anything else \xNN.
std::string Escaped(std::span<std::byte const> m) {
  std::string out;
  out.reserve(m.size());
  char buf[8];
  for (std::byte const b : m) {
    auto const c = static_cast<unsigned char>(b);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string HexLines(std::span<std::byte const> m) {
  std::string out;
  char buf[32];
  for (std::size_t at = 0; at < m.size(); at += 16) {
    std::snprintf(buf, sizeof buf, "  %04zx  ", at);
    out += buf;
    std::string ascii;
    for (std::size_t i = at; i < at + 16; ++i) {
      if (i == at + 8) out += ' ';
      if (i < m.size()) {
        auto const c = static_cast<unsigned char>(m[i]);
        std::snprintf(buf, sizeof buf, "%02x ", c);
        out += buf;
        ascii += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '.';
      } else {
        out += "   ";
      }
    }
    out += " |" + ascii + "|\n";
  }
  return out;
}

// Every part of a recording (--rotate: FILE, FILE.1, ...), in order.
int RunDump() {
  bool const hex = g_dump.format == "hex";
  for (std::string const& part : RecordingParts(g_dump.file)) {
    rec::RecordingReader reader(part);
    if (g_dump.has_from) reader.SeekSequence(g_dump.from);
    rec::Entry e;
    try {
      while (reader.Next(e)) {
        std::string line = "#" + U(e.sequence) + "  " + IsoTime(e.timestamp_ns) + "  ";
        if (e.type == rec::EntryType::kGap) {
          line += "gap: " + U(e.lost) + " messages lost\n";
        } else if (hex) {
          line += U(e.payload.size()) + " bytes\n" + HexLines(e.payload);
        } else {
          line += U(e.payload.size()) + " bytes  " + Escaped(e.payload) + "\n";
        }
        Out(line);
      }
      if (std::fflush(stdout) != 0 && errno == EPIPE) return kOk;
    } catch (StdoutClosed const&) {
      return kOk;
    }
    if (reader.CorruptCount() != 0 || reader.TornBytes() != 0) {
      std::fprintf(stderr, "circbuf dump: %s: %llu corrupt entries skipped, torn tail of %llu bytes ignored\n",
                   part.c_str(), static_cast<unsigned long long>(reader.CorruptCount()),
                   static_cast<unsigned long long>(reader.TornBytes()));
    }
  }
  return kOk;
}

}  // namespace

Command AddRecord(CLI::App& app) {
  auto* sub = app.add_subcommand("record", "Record the messages of a buffer into a file");
  sub->add_option("name", g_record.name, "Buffer name, e.g. /quotes")->required();
  sub->add_option("file", g_record.file, "Recording file (appended to if it exists)")->required();
  sub->add_option("--from", g_record.from_text,
                  "Where to start: oldest (every message still in the buffer), latest (the newest one, then what "
                  "follows), next (only new ones)")
      ->check(CLI::IsMember({"oldest", "latest", "next"}))
      ->capture_default_str();
  sub->add_option("--duration", g_record.duration, "Stop after this many seconds")->check(CLI::Range(0.0, 1e9));
  sub->add_option("-n,--count", g_record.count, "Stop after this many messages");
  sub->add_option("--rotate", g_record.rotate_text,
                  "Go on in FILE.1, FILE.2, ... once a file reaches this size (e.g. 1GiB)");
  sub->footer("Losses (the writer lapped the recorder) are recorded as gap entries with the exact count.\n"
              "Ctrl-C flushes the file and exits 0; a summary line goes to stderr.");
  return {sub, RunRecord};
}

Command AddInfo(CLI::App& app) {
  auto* sub = app.add_subcommand("info", "Summarise a recording file");
  sub->add_option("file", g_info.file, "Recording file")->required();
  sub->add_flag("--json", g_info.json, "One JSON object");
  return {sub, RunInfo};
}

Command AddDump(CLI::App& app) {
  auto* sub = app.add_subcommand("dump", "Print the entries of a recording file");
  sub->add_option("file", g_dump.file, "Recording file")->required();
  sub->add_option("--format", g_dump.format,
                  "text: one line per entry (payload with \\xNN escapes); hex: a dump per message")
      ->check(CLI::IsMember({"text", "hex"}))
      ->capture_default_str();
  sub->add_option("--from", g_dump.from, "Start at the first entry with this sequence number or later")
      ->each([](std::string const&) { g_dump.has_from = true; });
  return {sub, RunDump};
}

}  // namespace circbuf::tool
