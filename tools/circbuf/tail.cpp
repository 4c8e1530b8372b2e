// circbuf tail: read a ring as one more reader and print what arrives.
// Losses (the writer lapped us) go to stderr with their exact count. An empty
// ring is waited on with Reader::Wait (a futex, no time limit), so tail never
// spins a core; what Wait reports about the writer (closed, died, taken over)
// goes to stderr, and SIGINT/SIGTERM stop the Wait through RequestStop.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

enum class Format : std::uint8_t { kText, kHex, kRaw };

struct TailOptions {
  std::string name;
  std::string from_text = "latest";
  std::string format_text = "text";
  cb::StartAt from = cb::StartAt::kLatest;
  Format format = Format::kText;
  std::uint64_t count = 0;
  double wait = 0;
  bool until_closed = false;
} g_tail;

// stdout is gone (e.g. `| head`): a normal way for tail to end.
struct StdoutClosed {};

void Out(void const* data, std::size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, stdout) != n) {
    if (errno == EPIPE) throw StdoutClosed{};
    throw Error(kSystem, std::string("writing stdout: ") + ErrnoText(errno));
  }
}

void Flush() {
  if (std::fflush(stdout) != 0) {
    if (errno == EPIPE) throw StdoutClosed{};
    throw Error(kSystem, std::string("writing stdout: ") + ErrnoText(errno));
  }
}

void PrintHex(std::uint64_t sequence, std::span<std::byte const> m) {
  char line[128];
  int len = std::snprintf(line, sizeof line, "#%llu  %zu bytes\n", static_cast<unsigned long long>(sequence), m.size());
  Out(line, static_cast<std::size_t>(len));
  for (std::size_t at = 0; at < m.size(); at += 16) {
    len = std::snprintf(line, sizeof line, "  %04zx  ", at);
    std::string text(line, static_cast<std::size_t>(len));
    std::string ascii;
    for (std::size_t i = at; i < at + 16; ++i) {
      if (i == at + 8) text += ' ';
      if (i < m.size()) {
        auto const b = static_cast<unsigned char>(m[i]);
        std::snprintf(line, sizeof line, "%02x ", b);
        text += line;
        ascii += b >= 0x20 && b < 0x7f ? static_cast<char>(b) : '.';
      } else {
        text += "   ";
      }
    }
    text += " |" + ascii + "|\n";
    Out(text.data(), text.size());
  }
}

void Print(cb::Reader const& reader, std::span<std::byte const> m) {
  switch (g_tail.format) {
    case Format::kText:
      Out(m.data(), m.size());
      Out("\n", 1);
      break;
    case Format::kRaw: {
      auto const n = static_cast<std::uint32_t>(m.size());
      unsigned char const prefix[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                       static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
      Out(prefix, 4);
      Out(m.data(), m.size());
      break;
    }
    case Format::kHex: PrintHex(reader.NextSequence() - 1, m); break;
  }
}

void Note(std::string const& line) {
  Flush();
  std::fprintf(stderr, "circbuf tail: %s\n", line.c_str());
}

cb::Reader* g_reader = nullptr;  // for the stop hook
void StopReader() noexcept {
  if (g_reader != nullptr) g_reader->RequestStop();
}

int Follow(cb::Reader& reader) {
  std::vector<std::byte> buffer(cb::kMaxMessageSize);
  std::uint64_t printed = 0;
  bool closing = false;  // the writer has gone: one more look, then stop
  while (!StopRequested()) {
    int const n = reader.Read(buffer);
    if (n > 0) {
      Print(reader, std::span<std::byte const>(buffer.data(), static_cast<std::size_t>(n)));
      if (++printed == g_tail.count) break;
      continue;
    }
    if (n == cb::kLapped) {
      if (reader.LastLoss() != 0) {
        Flush();
        std::fprintf(stderr, "circbuf tail: lost %llu messages (overwritten)\n",
                     static_cast<unsigned long long>(reader.LastLoss()));
      }
      continue;
    }
    if (n != cb::kEmpty) {
      throw Error(kNotCircbuf, std::string(reader.GetSpec().Name()) +
                                   (reader.Truncated() ? ": a segment of the ring was truncated (shrunk) by another "
                                                         "process while tail was attached; the ring is unusable"
                                                       : ": corrupt ring (read failed)"));
    }
    Flush();
    if (closing) break;
    switch (reader.Wait()) {
      case cb::WaitResult::kStopped: Note("stopped by a signal"); return kOk;
      case cb::WaitResult::kReady:
      case cb::WaitResult::kTruncated:  // the next Read reports it
      case cb::WaitResult::kTimeout:    // Wait() has no deadline
        break;
      case cb::WaitResult::kTakenOver:
        Note("a new writer (pid " + std::to_string(reader.WriterPid()) + ") took over the ring");
        break;
      case cb::WaitResult::kClosed:
        Note(g_tail.until_closed ? "the writer closed the ring; stopping"
                                 : "the writer closed the ring; waiting for a new one");
        closing = g_tail.until_closed;
        break;
      case cb::WaitResult::kDead:
        Note("the writer (pid " + std::to_string(reader.WriterPid()) + ") died" +
             (g_tail.until_closed ? "; stopping" : "; waiting for a new one"));
        closing = g_tail.until_closed;
        break;
    }
  }
  Flush();
  return kOk;
}

int RunTail() {
  std::string const name = CheckRingName(g_tail.name);
  g_tail.from = g_tail.from_text == "oldest" ? cb::StartAt::kOldest
                : g_tail.from_text == "next" ? cb::StartAt::kNext
                                             : cb::StartAt::kLatest;
  g_tail.format = g_tail.format_text == "hex"   ? Format::kHex
                  : g_tail.format_text == "raw" ? Format::kRaw
                                                : Format::kText;
  // Look before attaching: a reader that attaches to something that is not
  // our ring would, as its last process, unlink it on the way out.
  if (SharedMemory::Exists(name)) (void)InspectRing(name);
  InstallStopHandlers();
  auto const wait = std::chrono::milliseconds(static_cast<std::int64_t>(g_tail.wait * 1000));
  cb::Reader reader(cb::Spec::Make(name, 0), {.start = g_tail.from, .wait_for_buffer = wait});
  g_reader = &reader;
  SetStopHook(StopReader);
  if (StopRequested()) reader.RequestStop();  // a signal before the hook was set
  struct Unhook {
    Unhook() = default;
    Unhook(Unhook const&) = delete;
    Unhook& operator=(Unhook const&) = delete;
    ~Unhook() {
      SetStopHook(nullptr);
      g_reader = nullptr;
    }
  } unhook;
  try {
    return Follow(reader);
  } catch (StdoutClosed const&) {
    return kOk;
  }
}

}  // namespace

Command AddTail(CLI::App& app) {
  auto* sub = app.add_subcommand("tail", "Print the messages of a buffer as they arrive");
  sub->add_option("name", g_tail.name, "Buffer name, e.g. /quotes")->required();
  sub->add_option("--from", g_tail.from_text,
                  "Where to start: oldest (every message still in the buffer), "
                  "latest (the newest one, then what follows), next (only new ones)")
      ->check(CLI::IsMember({"oldest", "latest", "next"}))
      ->capture_default_str();
  sub->add_option("--format", g_tail.format_text,
                  "text: each message, then a newline; hex: a dump per message; "
                  "raw: 4-byte little-endian length, then the bytes (pub --raw "
                  "reads this)")
      ->check(CLI::IsMember({"text", "hex", "raw"}))
      ->capture_default_str();
  sub->add_option("-n,--count", g_tail.count, "Exit after this many messages");
  sub->add_option("--wait", g_tail.wait, "Seconds to wait for the buffer to appear (default: fail at once)")
      ->check(CLI::Range(0.0, 86400.0));
  sub->add_flag("--until-closed", g_tail.until_closed,
                "Exit when the writer has closed (or died) and every message has been read");
  sub->footer("Messages lost to overwrites are reported on stderr: \"lost N messages (overwritten)\".\n"
              "Ctrl-C ends tail with exit code 0.");
  return {sub, RunTail};
}

}  // namespace circbuf::tool
