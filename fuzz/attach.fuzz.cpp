// Fuzz target: attaching to a segment whose bytes are arbitrary.
//
// The input becomes the two files of a ring in /dev/shm, NAME (header page +
// State) and NAME.data (header page + records), then SharedMemory attaches
// to NAME and a Reader attaches to the ring and reads a few messages. Each
// must succeed or throw std::invalid_argument / std::length_error /
// std::system_error; no crash, no sanitizer report, no leak, nothing left
// in /dev/shm. With bit 2 of the start byte a Writer then attaches
// (capacity from the data file's size) and writes a message: the same
// rules, plus no hang in its recovery of the stream.
//
// Input (little-endian; missing bytes read as 0; files are zero beyond their contents):
//   u32 state file bytes   (mod 4096 + 640 + 129)
//   u32 state content bytes
//   u32 data file bytes    (mod 4096 + 16384 + 8 + 1: up to a 16 KiB ring with its end mark)
//   u8  bits 0-1: where the reader starts (mod 3); bit 2: then a Writer
//       attaches too (a take-over of whatever it finds) and writes once
//   state content, then data content (the rest)
//
// CIRCBUF_FUZZ_WRITE_SEEDS=DIR: write the seed corpus into DIR (real rings
// made by a Writer, a plain segment, garbage) and exit.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "segment.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using namespace circbuf::fuzz;

namespace {

constexpr std::size_t kStateFileMax = circbuf::kMinPageSize + sizeof(cb::State) + 128;
constexpr std::size_t kDataFileMax = circbuf::kMinPageSize + cb::DataBytes(16384, circbuf::kMinPageSize);

struct Input {
  std::size_t state_file = 0;
  std::size_t data_file = 0;
  cb::StartAt start = cb::StartAt::kLatest;
  bool writer = false;
  std::span<std::uint8_t const> state;
  std::span<std::uint8_t const> data;
};

Input Parse(std::uint8_t const* bytes, std::size_t size) {
  auto u32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4 && at + i < size; ++i) v |= static_cast<std::uint32_t>(bytes[at + i]) << (8 * i);
    return v;
  };
  Input in;
  in.state_file = u32(0) % (kStateFileMax + 1);
  std::size_t state_content = u32(4);
  in.data_file = u32(8) % (kDataFileMax + 1);
  in.start = static_cast<cb::StartAt>((size > 12 ? bytes[12] : 0) % 3);
  in.writer = (size > 12 ? bytes[12] : 0) & 4;
  std::size_t const header = 13;
  std::size_t const rest = size > header ? size - header : 0;
  state_content = std::min(state_content, rest);
  in.state = {bytes + header, state_content};
  in.data = {bytes + header + state_content, rest - state_content};
  return in;
}

// The header_bytes field of segment `segment`'s file (0 if unreadable).
std::uint32_t HeaderBytesInFile(std::string const& segment) {
  std::uint32_t value = 0;
  int const fd = ::open(("/dev/shm/" + segment.substr(1)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  if (::pread(fd, &value, sizeof value, offsetof(circbuf::SegmentHeader, header_bytes)) != sizeof value) value = 0;
  ::close(fd);
  return value;
}

// Only the documented exceptions may come out of an attach.
template <class Action>
void Refusable(Action&& action) {
  // The three documented refusals need no handling: the input was refused.
  // NOLINTBEGIN(bugprone-empty-catch)
  try {
    std::forward<Action>(action)();
  } catch (std::invalid_argument const&) {
  } catch (std::length_error const&) {
  } catch (std::system_error const&) {
  } catch (std::exception const& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    Fail("attach threw something else than invalid_argument, length_error or system_error");
  }
  // NOLINTEND(bugprone-empty-catch)
}

void CheckRead(cb::Reader& reader, std::vector<std::byte>& buffer) {
  for (int i = 0; i < 8; ++i) {
    int const n = reader.Read(buffer);
    if (n > static_cast<int>(cb::kMaxMessageSize) || n > static_cast<int>(reader.MaxMessageSize())) {
      Fail("Read returned more than the largest message");
    }
    if (n < cb::kCorrupt) Fail("Read returned an unknown outcome");
    if (n == cb::kEmpty || n == cb::kCorrupt) break;
  }
}

void WriteSeeds(std::string const& dir) {
  ::mkdir(dir.c_str(), 0755);  // may exist already
  std::string const name = NameFor("seed");
  auto encode = [&](std::vector<std::uint8_t> const& state, std::vector<std::uint8_t> const& data, int start) {
    std::vector<std::uint8_t> const s = Trimmed(state);
    std::vector<std::uint8_t> const d = Trimmed(data);
    std::vector<std::uint8_t> out;
    PutU32(out, static_cast<std::uint32_t>(state.size()));
    PutU32(out, static_cast<std::uint32_t>(s.size()));
    PutU32(out, static_cast<std::uint32_t>(data.size()));
    out.push_back(static_cast<std::uint8_t>(start));
    out.insert(out.end(), s.begin(), s.end());
    out.insert(out.end(), d.begin(), d.end());
    return out;
  };
  struct Case {
    char const* file;
    std::uint64_t capacity;
    int messages;
    std::size_t size;
    int start;
  };
  for (Case const c : {Case{"ring-empty", 4096, 0, 0, 0}, Case{"ring-three", 4096, 3, 100, 1},
                       Case{"ring-wrapped", 4096, 40, 300, 1}, Case{"ring-8k-latest", 8192, 12, 700, 0},
                       Case{"ring-next", 4096, 5, 9, 2}, Case{"ring-writer", 4096, 40, 300, 5}}) {
    RemoveAll(name);
    RemoveAll(circbuf::CircularBuffer::DataSegmentName(name));
    {
      cb::Writer w(cb::Spec::Make(name, c.capacity));
      std::vector<std::byte> m(c.size);
      for (int i = 0; i < c.messages; ++i) {
        for (std::size_t k = 0; k < m.size(); ++k) m[k] = std::byte(static_cast<std::uint8_t>(i + k));
        w.Write(m);
      }
      // Copy while the writer still holds the ring (it unlinks both when it goes).
      WriteSeed(dir, c.file,
                encode(ReadSegment(name), ReadSegment(circbuf::CircularBuffer::DataSegmentName(name)), c.start));
    }
  }
  {
    circbuf::SharedMemory plain(name, 640);  // a circbuf segment, not a ring
    WriteSeed(dir, "plain-segment", encode(ReadSegment(name), {}, 0));
  }
  WriteSeed(dir, "garbage", {0x10, 0x12, 0, 0, 0x10, 0x10, 0, 0, 0, 0x20, 0, 0, 1, 'C', 'C', 'B', 'S', 'H', 'M'});
  RemoveAll(name);
  RemoveAll(circbuf::CircularBuffer::DataSegmentName(name));
}

}  // namespace

// libFuzzer calls this once, before any other thread exists: setenv and
// exit cannot race with anything here.
// NOLINTBEGIN(concurrency-mt-unsafe)
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  ::setenv("CIRCBUF_LOG", "off", 0);  // refusals are expected; logging them only slows fuzzing
  if (char const* dir = std::getenv("CIRCBUF_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}
// NOLINTEND(concurrency-mt-unsafe)

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* bytes, std::size_t size) {
  static std::string const name = NameFor("attach");
  static std::string const data_name = circbuf::CircularBuffer::DataSegmentName(name);
  static std::vector<std::byte> buffer(cb::kMaxMessageSize);
  Input const in = Parse(bytes, size);
  auto write_both = [&] {
    return WriteSegment(name, in.state_file, in.state) && WriteSegment(data_name, in.data_file, in.data);
  };

  if (write_both()) {
    Refusable([&] {
      circbuf::SharedMemory shm(name, 0,
                                {.open = circbuf::OpenMode::kAttach,
                                 .access = circbuf::Access::kReadOnly,
                                 .lock_timeout = std::chrono::milliseconds(1000)});
      if (shm.Size() + shm.HeaderBytes() != in.state_file) Fail("attached to a segment whose size disagrees");
      std::byte const* p = std::as_const(shm).Data();
      unsigned sum = 0;
      for (std::size_t i = 0; i < shm.Size(); i += 64) sum += static_cast<unsigned>(p[i]);
      (void)sum;
    });
  }
  if (write_both()) {
    Refusable([&] {
      cb::Reader reader(cb::Spec::Make(name, 0), {.start = in.start});
      // Laid out in the pages its header names (any valid header_bytes, not only 4096).
      std::uint64_t const page = HeaderBytesInFile(data_name);
      if (page == 0 || page + cb::DataBytes(reader.Capacity(), page) != in.data_file) {
        Fail("attached to a ring whose data size disagrees");
      }
      CheckRead(reader, buffer);
    });
  }
  if (in.writer && write_both()) {
    // A writer attaching to what it finds is a take-over: it recovers the
    // stream from the index and the records (Writer::Recover), then writes.
    Refusable([&] {
      // The capacity whose data segment (records, end mark) the file would be.
      std::uint64_t const capacity = in.data_file >= circbuf::kMinPageSize + cb::kMinCapacity + 8
                                         ? in.data_file - circbuf::kMinPageSize - 8
                                         : cb::kMinCapacity;
      cb::Writer writer(cb::Spec::Make(name, capacity));
      std::byte const message[24] = {};
      writer.Write(message);
    });
  }
  RemoveAll(name);
  RemoveAll(data_name);
  ExpectNothingLeft(name);
  ExpectNothingLeft(data_name);
  return 0;
}
