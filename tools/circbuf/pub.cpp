// circbuf pub: publish stdin into a ring as its writer, creating the ring if
// needed. --lines: one message per line (without its newline); --raw: records
// of a 4-byte little-endian length followed by that many bytes.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

constexpr std::uint64_t kDefaultCapacity = 1U << 20;

struct PubOptions {
  std::string name;
  std::string capacity;
  bool lines = false;
  bool raw = false;
  bool hold = false;
  std::string huge_pages = "no";
} g_pub;

struct Counts {
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::uint64_t empty_lines = 0;
};

// Reads stdin in blocks; false at end of input or when interrupted.
bool ReadBlock(std::vector<char>& block, std::size_t& n) {
  for (;;) {
    ssize_t const r = ::read(STDIN_FILENO, block.data(), block.size());
    if (r > 0) {
      n = static_cast<std::size_t>(r);
      return true;
    }
    if (r == 0) return false;
    if (errno == EINTR) {
      if (StopRequested()) return false;
      continue;
    }
    throw Error(kSystem, std::string("reading stdin: ") + ErrnoText(errno));
  }
}

void Publish(cb::Writer& writer, std::span<char const> message, Counts& counts) {
  writer.Write(std::as_bytes(message));
  ++counts.messages;
  counts.bytes += message.size();
}

void PublishLines(cb::Writer& writer, Counts& counts) {
  std::vector<char> block(1 << 16);
  std::string line;
  std::uint64_t number = 0;
  auto const flush_line = [&] {
    ++number;
    if (line.empty()) {
      ++counts.empty_lines;
      return;
    }
    if (line.size() > writer.MaxMessageSize()) {
      throw Error(kInvalid, "line " + std::to_string(number) + ": " + std::to_string(line.size()) +
                                " bytes; the largest message in this buffer is " +
                                std::to_string(writer.MaxMessageSize()) + " bytes");
    }
    Publish(writer, line, counts);
    line.clear();
  };
  std::size_t n = 0;
  while (ReadBlock(block, n)) {
    for (std::size_t i = 0; i < n; ++i) {
      if (block[i] == '\n') {
        flush_line();
      } else {
        line += block[i];
      }
    }
  }
  if (!line.empty() && !StopRequested()) flush_line();
}

void PublishRaw(cb::Writer& writer, Counts& counts) {
  std::vector<char> block(1 << 16);
  std::vector<char> pending;  // bytes read but not yet published
  std::size_t n = 0;
  auto const length_at = [&](std::size_t at) {
    auto const* p = reinterpret_cast<unsigned char const*>(pending.data() + at);
    return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
  };
  while (ReadBlock(block, n)) {
    pending.insert(pending.end(), block.begin(), block.begin() + static_cast<std::ptrdiff_t>(n));
    std::size_t at = 0;
    while (pending.size() - at >= 4) {
      std::uint32_t const length = length_at(at);
      if (length == 0 || length > writer.MaxMessageSize()) {
        throw Error(kInvalid, "record " + std::to_string(counts.messages + 1) + ": length " + std::to_string(length) +
                                  "; must be 1 .. " + std::to_string(writer.MaxMessageSize()) +
                                  " (records are a 4-byte little-endian length, then the bytes)");
      }
      if (pending.size() - at - 4 < length) break;
      Publish(writer, std::span<char const>(pending.data() + at + 4, length), counts);
      at += 4 + length;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(at));
  }
  if (!pending.empty() && !StopRequested()) {
    throw Error(kInvalid, "record " + std::to_string(counts.messages + 1) + ": input ends inside it (" +
                              std::to_string(pending.size()) + " bytes left over)");
  }
}

int RunPub() {
  std::string const name = CheckRingName(g_pub.name);
  std::uint64_t capacity = kDefaultCapacity;
  if (!g_pub.capacity.empty()) {
    capacity = ParseCapacity(g_pub.capacity);
  }
  if (SharedMemory::Exists(name)) {  // look before attaching (see tail.cpp)
    SegmentInfo const info = InspectRing(name);
    if (g_pub.capacity.empty()) capacity = info.capacity;  // keep the capacity it has
  }
  InstallStopHandlers();
  cb::WriterOptions options;
  if (g_pub.huge_pages == "prefer") options.huge_pages = circbuf::HugePages::kPrefer;
  if (g_pub.huge_pages == "require") options.huge_pages = circbuf::HugePages::kRequire;
  cb::Writer writer(cb::Spec::Make(name, capacity), options);
  if (options.huge_pages != circbuf::HugePages::kAsMounted) {
    std::fprintf(stderr, "circbuf pub: %s: %zu of %llu bytes of record space on huge pages\n", name.c_str(),
                 writer.HugePageBytes(), static_cast<unsigned long long>(writer.Capacity()));
  }
  Counts counts;
  if (g_pub.raw) {
    PublishRaw(writer, counts);
  } else {
    PublishLines(writer, counts);
  }
  if (counts.empty_lines != 0) {
    std::fprintf(stderr, "circbuf pub: skipped %llu empty line(s) (a message has at least 1 byte)\n",
                 static_cast<unsigned long long>(counts.empty_lines));
  }
  if (g_pub.hold && !StopRequested()) {
    std::fprintf(stderr, "circbuf pub: %s: %llu messages published; holding the buffer open (Ctrl-C to release)\n",
                 name.c_str(), static_cast<unsigned long long>(counts.messages));
    while (!StopRequested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return kOk;
}

}  // namespace

Command AddPub(CLI::App& app) {
  auto* sub = app.add_subcommand("pub", "Publish stdin as messages (creates the buffer)");
  sub->add_option("name", g_pub.name, "Buffer name, e.g. /quotes")->required();
  sub->add_option("-c,--capacity", g_pub.capacity,
                  "Size of a new buffer: 4KiB .. 50MiB (K/KiB/M/MiB = 1024s, KB/MB = 1000s); "
                  "default: the existing buffer's, or 1MiB");
  auto* lines = sub->add_flag("--lines", g_pub.lines, "One message per line, newline removed (the default)");
  auto* raw = sub->add_flag("--raw", g_pub.raw,
                            "Binary records: a 4-byte little-endian length (1 .. max message), then the bytes");
  lines->excludes(raw);
  sub->add_option("--huge-pages", g_pub.huge_pages,
                  "Record space of a new buffer on 2 MiB pages: no (default), prefer (4 KiB pages if none), "
                  "require (fail if none); needs /dev/shm mounted huge=advise (docs/huge-pages.md)")
      ->check(CLI::IsMember({"no", "prefer", "require"}));
  sub->add_flag("--hold", g_pub.hold, "At end of input keep the buffer (and this writer) until Ctrl-C");
  sub->footer("The buffer exists while some process is attached: when the last one leaves (pub\n"
              "without --hold, at end of input, if nobody else reads) it is removed. Start readers\n"
              "first, or use --hold.");
  return {sub, RunPub};
}

}  // namespace circbuf::tool
