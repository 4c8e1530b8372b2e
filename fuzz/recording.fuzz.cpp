// Fuzz target: arbitrary bytes as a recording file (circbuf.record,
// docs/recording.md), read by RecordingReader and appended to by
// RecordingWriter.
//
// The input is the whole file, put in a memfd (/proc/self/fd/N). The reader
// iterates it, sums it up (Info), seeks by a sequence and a time taken from
// the input's last 16 bytes and iterates again; then a RecordingWriter opens
// it for appending (repairing a torn tail) and appends one message, and a
// new reader must find that message last.
// Invariants: no crash, no hang, nothing read outside the input (ASan);
// every message delivered lies inside the file at an 8-aligned offset, is at
// most 65535 bytes, and its stored CRC32C is the CRC of its bytes (checked
// here independently with the table-driven CRC); a gap delivered has a
// non-zero count; a foreign file or another version is refused with
// std::invalid_argument, never anything else.
//
// CIRCBUF_FUZZ_WRITE_SEEDS=DIR: write the seed corpus (small recordings made
// by RecordingWriter: messages, a gap, an index block, a torn tail) into DIR
// and exit.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "segment.hpp"

import circbuf;

namespace rec = circbuf::Recording;
using circbuf::fuzz::Fail;

namespace {

std::string MemfdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::uint64_t Tail64(std::uint8_t const* bytes, std::size_t size, std::size_t back) {
  std::uint64_t v = 0;
  if (size >= back) std::memcpy(&v, bytes + size - back, 8);
  return v;
}

void CheckEntry(rec::Entry const& e, std::vector<std::uint8_t> const& file) {
  if (e.type == rec::EntryType::kGap) {
    if (e.lost == 0) Fail("a gap of 0 messages");
    return;
  }
  if (e.type != rec::EntryType::kMessage) Fail("Next delivered an index block");
  std::size_t const n = e.payload.size();
  if (n > rec::kMaxMessageBytes) Fail("a message longer than 65535 bytes");
  if (e.offset % 8 != 0 || e.offset < 48 || e.offset > file.size() || file.size() - e.offset < 32 + n) {
    Fail("a message outside the file");
  }
  auto const* at = reinterpret_cast<std::byte const*>(file.data() + e.offset);
  if (e.payload.data() == nullptr && n != 0) Fail("a null payload");
  if (n != 0 && std::memcmp(e.payload.data(), at + 32, n) != 0) Fail("payload bytes differ from the file's");
  std::uint32_t stored = 0;
  std::memcpy(&stored, at, 4);
  if (rec::Crc32cSoftware(std::span<std::byte const>(at + 4, 28 + n)) != stored) Fail("a message with a bad CRC");
}

void ReadAll(std::string const& path, std::vector<std::uint8_t> const& file, std::uint64_t seq, std::uint64_t ns) {
  rec::RecordingReader reader(path);
  rec::Entry e;
  std::size_t count = 0;
  while (reader.Next(e)) {
    CheckEntry(e, file);
    if (++count > file.size() / 32 + 1) Fail("more entries than fit in the file");
  }
  rec::Summary const s = reader.Info();
  if (s.messages + s.gaps != count) Fail("Info disagrees with Next");
  if (s.corrupt.size() > rec::kMaxCorruptListed) Fail("too many corrupt entries listed");
  if (s.torn_bytes > file.size()) Fail("a torn tail longer than the file");
  reader.SeekSequence(seq);
  while (reader.Next(e)) CheckEntry(e, file);
  reader.SeekTime(ns);
  while (reader.Next(e)) CheckEntry(e, file);
}

void WriteSeeds(std::string const& dir) {
  std::filesystem::create_directories(dir);
  std::string const a = dir + "/three-messages";
  std::string const b = dir + "/gap-and-index";
  std::string const c = dir + "/torn-tail";
  for (auto const& f : {a, b, c}) std::filesystem::remove(f);
  {
    rec::RecordingWriter w(a, {.ring_name = "/quotes", .ring_capacity = 65536});
    std::string const m = "hello, recording";
    w.Append(1, 1000, std::as_bytes(std::span(m.data(), m.size())));
    w.Append(2, 2000, std::as_bytes(std::span(m.data(), 1)));
    w.Append(3, 3000, std::as_bytes(std::span(m.data(), 8)));
  }
  {
    rec::RecordingWriter w(b, {.ring_name = "/g", .ring_capacity = 4096});
    std::vector<std::byte> m(9, std::byte{0x5a});
    w.Append(10, 100, m);
    w.AppendGap(11, 5, 200);
    w.Append(16, 300, m);
  }
  {
    rec::RecordingWriter w(c);
    std::vector<std::byte> m(40, std::byte{0x33});
    w.Append(0, 1, m);
    w.Append(1, 2, m);
  }
  std::filesystem::resize_file(c, std::filesystem::file_size(c) - 100);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (char const* dir = std::getenv("CIRCBUF_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* bytes, std::size_t size) {
  int const fd = ::memfd_create("cbfuzz-recording", MFD_CLOEXEC);
  if (fd < 0) Fail("memfd_create");
  std::vector<std::uint8_t> const file(bytes, bytes + size);
  for (std::size_t done = 0; done < size;) {
    ssize_t const r = ::write(fd, bytes + done, size - done);
    if (r <= 0) Fail("writing the memfd");
    done += static_cast<std::size_t>(r);
  }
  std::string const path = MemfdPath(fd);
  std::uint64_t const seq = Tail64(bytes, size, 16);
  std::uint64_t const ns = Tail64(bytes, size, 8);
  try {
    ReadAll(path, file, seq, ns);
  } catch (std::invalid_argument const&) {  // not a recording, another version: refused
    ::close(fd);
    return 0;
  }
  // Append: the writer repairs a torn tail and goes on.
  std::string const m = "appended by the fuzzer";
  {
    rec::RecordingWriter w(path);
    w.Append(~std::uint64_t{0}, 42, std::as_bytes(std::span(m.data(), m.size())));
    w.Close();
  }
  rec::RecordingReader reader(path);
  rec::Entry e;
  rec::Entry last;
  std::string last_payload;  // a payload is valid until the next call only
  bool any = false;
  while (reader.Next(e)) {
    last = e;
    last_payload.assign(reinterpret_cast<char const*>(e.payload.data()), e.payload.size());
    any = true;
  }
  if (!any || last.type != rec::EntryType::kMessage || last.sequence != ~std::uint64_t{0} || last_payload != m) {
    Fail("the appended message is not the last one read back");
  }
  if (reader.TornBytes() != 0) Fail("a torn tail after the writer's repair");
  ::close(fd);
  return 0;
}
