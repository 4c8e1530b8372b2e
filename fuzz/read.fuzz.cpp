// Fuzz target: reading a ring whose State positions and record bytes are
// arbitrary, and change between reads (a hostile or broken writer).
//
// The ring's two segments are written directly into /dev/shm (offsets from
// the :layout partition), with a valid header so that the Reader attaches,
// and positions and data from the input; then a bounded list of operations
// runs: Read into a buffer of a chosen size, ReadInPlace, Wait(0), and
// rewrites of a position or a data word through a read-write mapping.
// Invariants: Read never returns more than the buffer or 65535 (or the
// ring's largest message), every delivered byte is the byte at the
// record's place inside the data segment, a ReadInPlace view lies inside
// the data segment, every call returns (no hang), and nothing is read
// outside the mappings (ASan, and the view check).
//
// Input (little-endian; missing bytes read as 0):
//   u8  capacity: 4096 + 64 * (byte % 193)
//   u8  flags: bits 0-1 where the reader starts (mod 3); bit 2: make the
//       positions plausible (tail 8-aligned, limit just above it) so that
//       the attach is not refused
//   u64 x 11  tail, latest, limit, index[0..7]
//   u16 bytes of data content, then those bytes (from ring offset 0)
//   operations, at most 256, each an opcode byte (mod 6) and operands:
//     0 Read, u16 buffer size    1 ReadInPlace    2 set position u8 (mod 11) to u64
//     3 set data word u16 (mod capacity / 8) to u64    4 Wait(0)    5 Read, 65535 bytes
//
// CIRCBUF_FUZZ_WRITE_SEEDS=DIR: write the seed corpus (snapshots of real
// rings made by a Writer, with reads and a few rewrites) into DIR and exit.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "segment.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::kMinPageSize;
using namespace circbuf::fuzz;

namespace {

constexpr std::size_t kPositions = 11;
constexpr std::size_t kMaxOps = 256;
constexpr std::size_t kPositionOffset[kPositions] = {
    offsetof(cb::State, tail),       offsetof(cb::State, latest),     offsetof(cb::State, limit),
    offsetof(cb::State, index) + 0,  offsetof(cb::State, index) + 8,  offsetof(cb::State, index) + 16,
    offsetof(cb::State, index) + 24, offsetof(cb::State, index) + 32, offsetof(cb::State, index) + 40,
    offsetof(cb::State, index) + 48, offsetof(cb::State, index) + 56};

struct Bytes {
  std::uint8_t const* p = nullptr;
  std::size_t size = 0;
  std::size_t at = 0;
  std::uint64_t Take(std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i, ++at) {
      if (at < size) v |= static_cast<std::uint64_t>(p[at]) << (8 * i);
    }
    return v;
  }
  [[nodiscard]] bool Done() const { return at >= size; }
};

std::vector<std::uint8_t> SegmentFile(std::size_t user_bytes) {
  std::vector<std::uint8_t> file(kMinPageSize + user_bytes, 0);
  circbuf::SegmentHeader h{};
  h.magic = circbuf::kSegmentMagic;
  h.version = circbuf::kSegmentVersion;
  h.header_bytes = static_cast<std::uint32_t>(kMinPageSize);
  h.user_bytes = user_bytes;
  h.creator_pid = 1;
  std::memcpy(file.data(), &h, sizeof h);
  return file;
}

std::uint64_t Word(std::uint8_t const* p) {
  std::uint64_t v = 0;
  std::memcpy(&v, p, 8);
  return v;
}

void Check(bool ok, char const* what) {
  if (!ok) Fail(what);
}

// Checks one outcome of Read / ReadInPlace against the rules and, for a
// message, its bytes against the data segment as the hostile side sees it.
void CheckOutcome(cb::Reader const& reader, int n, std::size_t buffer_bytes, std::byte const* delivered,
                  std::uint8_t const* data, std::uint64_t capacity) {
  if (n <= 0) {
    Check(n == cb::kEmpty || n == cb::kLapped || n == cb::kBufferTooSmall || n == cb::kCorrupt, "unknown outcome");
    if (n == cb::kBufferTooSmall) {
      Check(reader.PendingSize() > buffer_bytes && reader.PendingSize() <= cb::kMaxMessageSize, "bad PendingSize");
    }
    return;
  }
  auto const length = static_cast<std::size_t>(n);
  Check(length <= buffer_bytes, "Read returned more than the buffer");
  Check(length <= cb::kMaxMessageSize && length <= reader.MaxMessageSize(), "Read returned more than 65535");
  std::uint64_t const record = cb::RecordBytes(length);
  std::uint64_t const offset = (reader.Position() - record) % capacity;
  Check(offset + record <= capacity, "a message that does not lie inside the buffer");
  Check(std::memcmp(delivered, data + offset + cb::kHeaderBytes, length) == 0,
        "delivered bytes are not the record's bytes in the data segment");
}

void Run(Bytes& in) {
  static std::string const name = NameFor("read");
  static std::string const data_name = circbuf::CircularBuffer::DataSegmentName(name);
  std::uint64_t const capacity = cb::kMinCapacity + 64 * (in.Take(1) % 193);
  std::uint64_t const flags = in.Take(1);
  std::uint64_t positions[kPositions];
  for (auto& p : positions) p = in.Take(8);
  std::uint64_t const chunk = capacity / cb::kChunks;
  if ((flags & 4) != 0) {
    positions[0] = (positions[0] & ~std::uint64_t{7}) % (1ULL << 40);
    positions[2] = (positions[0] + 8 + chunk - 1) / chunk * chunk;
  }
  // The State segment: a valid header, positions from the input.
  std::vector<std::uint8_t> state = SegmentFile(sizeof(cb::State));
  cb::State s{};
  s.magic = cb::kRingMagic;
  s.version = cb::kRingVersion;
  s.state_bytes = sizeof(cb::State);
  s.capacity = capacity;
  s.chunk = chunk;
  s.max_message = static_cast<std::uint32_t>(cb::MaxMessageFor(capacity));
  s.writer_state = static_cast<std::uint32_t>(cb::WriterState::kClosed);
  std::memcpy(state.data() + kMinPageSize, &s, sizeof s);
  for (std::size_t i = 0; i < kPositions; ++i) {
    std::memcpy(state.data() + kMinPageSize + kPositionOffset[i], &positions[i], 8);
  }
  // The data segment: content from the input, zeros after it, and the end
  // mark (without it the attach refuses the ring).
  std::vector<std::uint8_t> data = SegmentFile(cb::DataBytes(capacity, circbuf::kMinPageSize));
  std::size_t const content = std::min<std::size_t>(in.Take(2), capacity);
  for (std::size_t i = 0; i < content; ++i) data[kMinPageSize + i] = static_cast<std::uint8_t>(in.Take(1));
  std::memcpy(data.data() + kMinPageSize + cb::EndMarkOffset(capacity, circbuf::kMinPageSize), &cb::kEndMark, 8);
  if (!WriteSegment(name, state.size(), state) || !WriteSegment(data_name, data.size(), data)) {
    Fail("cannot write the segments");
  }
  {
    RawMapping const raw_state(name);
    RawMapping const raw_data(data_name);
    Check(raw_state.Base() != nullptr && raw_data.Base() != nullptr, "cannot map the segments");
    std::uint8_t* const st = raw_state.Base() + kMinPageSize;
    std::uint8_t const* const dt = raw_data.Base() + kMinPageSize;
    try {
      cb::Reader reader(cb::Spec::Make(name, 0), {.start = static_cast<cb::StartAt>(flags % 3)});
      Check(reader.Capacity() == capacity, "capacity");
      std::vector<std::byte> big(cb::kMaxMessageSize);
      for (std::size_t op = 0; op < kMaxOps && !in.Done(); ++op) {
        std::uint64_t const code = in.Take(1) % 6;
        switch (code) {
          case 0:
          case 5: {
            std::size_t const bytes = code == 5 ? cb::kMaxMessageSize : static_cast<std::size_t>(in.Take(2));
            // Exactly `bytes` of heap: ASan sees any write past the buffer.
            std::vector<std::byte> buffer(bytes);
            int const n = reader.Read(std::span<std::byte>(buffer.data(), bytes));
            CheckOutcome(reader, n, bytes, buffer.data(), dt, capacity);
            break;
          }
          case 1: {
            std::byte const* view = nullptr;
            std::size_t view_bytes = 0;
            int const n = reader.ReadInPlace([&](std::span<std::byte const> m) {
              view = m.data();
              view_bytes = m.size();
              Check(m.data() >= reader.RecordSpace().data() &&
                        m.data() + m.size() <= reader.RecordSpace().data() + capacity,
                    "ReadInPlace view outside the data segment");
              std::ranges::copy(m, big.begin());  // touch every byte of it
            });
            if (n > 0) Check(view != nullptr && view_bytes == static_cast<std::size_t>(n), "ReadInPlace length");
            CheckOutcome(reader, n, cb::kMaxMessageSize, big.data(), dt, capacity);
            break;
          }
          case 2: {
            std::size_t const which = in.Take(1) % kPositions;
            std::uint64_t const value = in.Take(8);
            std::memcpy(st + kPositionOffset[which], &value, 8);
            break;
          }
          case 3: {
            std::size_t const word = in.Take(2) % (capacity / 8);
            std::uint64_t const value = in.Take(8);
            std::memcpy(raw_data.Base() + kMinPageSize + word * 8, &value, 8);
            break;
          }
          case 4: (void)reader.Wait(std::chrono::nanoseconds(0)); break;
          default: break;  // code < 6: not reached
        }
      }
      (void)Word(dt);
      // Corrupt positions or sizes: refused at attach, which is all there is to check.
      // NOLINTBEGIN(bugprone-empty-catch)
    } catch (std::invalid_argument const&) {
    } catch (std::length_error const&) {
    }
    // NOLINTEND(bugprone-empty-catch)
  }
  RemoveAll(name);
  RemoveAll(data_name);
  ExpectNothingLeft(name);
  ExpectNothingLeft(data_name);
}

void WriteSeeds(std::string const& dir) {
  ::mkdir(dir.c_str(), 0755);  // may exist already
  std::string const name = NameFor("seed");
  struct Case {
    char const* file;
    std::uint64_t capacity;
    int messages;
    std::size_t size;
    int start;
    int reads;
    bool rewrite;  // then push limit far ahead and rewrite a header
  };
  for (Case const c :
       {Case{"empty", 4096, 0, 0, 0, 2, false}, Case{"few-oldest", 4096, 4, 100, 1, 6, false},
        Case{"wrapped-oldest", 4096, 30, 250, 1, 20, false}, Case{"wrapped-latest", 4160, 25, 333, 0, 4, false},
        Case{"rewrites", 4096, 10, 200, 1, 3, true}}) {
    RemoveAll(name);
    RemoveAll(circbuf::CircularBuffer::DataSegmentName(name));
    std::vector<std::uint8_t> out;
    {
      cb::Writer w(cb::Spec::Make(name, c.capacity));
      std::vector<std::byte> m(c.size);
      for (int i = 0; i < c.messages; ++i) {
        for (std::size_t k = 0; k < m.size(); ++k)
          m[k] = std::byte(static_cast<std::uint8_t>((static_cast<std::size_t>(i) * 7) + k));
        w.Write(m);
      }
      std::vector<std::uint8_t> const state = ReadSegment(name);
      std::vector<std::uint8_t> const data = ReadSegment(circbuf::CircularBuffer::DataSegmentName(name));
      out.push_back(static_cast<std::uint8_t>((c.capacity - cb::kMinCapacity) / 64));
      out.push_back(static_cast<std::uint8_t>(c.start));
      for (std::size_t off : kPositionOffset) PutU64(out, Word(state.data() + kMinPageSize + off));
      std::vector<std::uint8_t> const content =
          Trimmed(std::vector<std::uint8_t>(data.begin() + kMinPageSize, data.begin() + kMinPageSize + c.capacity));
      out.push_back(static_cast<std::uint8_t>(content.size()));
      out.push_back(static_cast<std::uint8_t>(content.size() >> 8));
      out.insert(out.end(), content.begin(), content.end());
    }
    for (int r = 0; r < c.reads; ++r) {
      out.push_back(r % 3 == 2 ? 1 : 5);  // ReadInPlace or Read into 65535 bytes
    }
    out.push_back(0);  // Read into 16 bytes: too small for most
    PutU32(out, 16);
    out.resize(out.size() - 2);
    out.push_back(4);  // Wait(0)
    if (c.rewrite) {
      out.push_back(2);  // limit far ahead
      out.push_back(2);
      PutU64(out, 1ULL << 40);
      out.push_back(5);
      out.push_back(3);  // a data word: a header of length 4000
      PutU32(out, 0);
      out.resize(out.size() - 2);
      PutU64(out, 4000);
      out.push_back(5);
    }
    WriteSeed(dir, c.file, out);
  }
  RemoveAll(name);
  RemoveAll(circbuf::CircularBuffer::DataSegmentName(name));
}

}  // namespace

// libFuzzer calls this once, before any other thread exists: setenv and
// exit cannot race with anything here.
// NOLINTBEGIN(concurrency-mt-unsafe)
extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  ::setenv("CIRCBUF_LOG", "off", 0);
  if (char const* dir = std::getenv("CIRCBUF_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    std::exit(0);
  }
  return 0;
}
// NOLINTEND(concurrency-mt-unsafe)

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* bytes, std::size_t size) {
  Bytes in{bytes, size};
  Run(in);
  return 0;
}
