// Fuzz target: a real writer and reader, and a State (the control segment)
// that the input rewrites between their steps (issue 13; docs/threat-model.md,
// "The control segment").
//
// A Writer writes the suite's deterministic messages (tests/ring/support.hpp:
// message `seq` has a size chosen by the input and contents derived from
// seq), so every delivered message can be checked against what the writer
// wrote as the sequence number the reader reports. The input rewrites State
// words (positions, sequence numbers, the index) with absolute values or
// small moves, and re-attaches readers at any start.
// Invariants: every message a reader delivers is byte for byte what the
// writer wrote as NextSequence() - 1, with that length; a reader's sequence
// numbers only go up; Lost() never runs backwards; every call returns; no
// sanitizer report; nothing is left in /dev/shm.
//
// Input (little-endian; missing bytes read as 0):
//   u8  capacity: 4096 + 64 * (byte % 193)
//   u8  start of the first reader (mod 3)
//   operations, at most 256, each an opcode byte (mod 8) and operands:
//     0 write u8 (1 + mod 16) messages of u16 (1 + mod max) bytes
//     1 Read into 65535 bytes              2 ReadInPlace
//     3 set State word u8 (mod 37) to u64  4 move State word u8 (mod 37) by i8 * 8
//     5 attach a new reader, start u8 (mod 3)   6 Wait(0)
//     7 Skip(1 + u8) sequence numbers (a gap record)
//   State words: tail, latest, sequence, limit, index[0..7], index_sequence[0..7], index_check[0..7],
//   skipped, index_skipped[0..7].
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "ring/support.hpp"
#include "segment.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::kMinPageSize;
using namespace circbuf::fuzz;

namespace {

constexpr std::size_t kWords = 37;
constexpr std::size_t kMaxOps = 256;
constexpr std::size_t WordOffset(std::size_t i) {
  if (i == 0) return offsetof(cb::State, tail);
  if (i == 1) return offsetof(cb::State, latest);
  if (i == 2) return offsetof(cb::State, sequence);
  if (i == 3) return offsetof(cb::State, limit);
  if (i < 12) return offsetof(cb::State, index) + 8 * (i - 4);
  if (i < 20) return offsetof(cb::State, index_sequence) + 8 * (i - 12);
  if (i < 28) return offsetof(cb::State, index_check) + 8 * (i - 20);
  if (i == 28) return offsetof(cb::State, skipped);
  return offsetof(cb::State, index_skipped) + 8 * (i - 29);
}

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

void Check(bool ok, char const* what) {
  if (!ok) Fail(what);
}

// The State as another process sees it: mapped read-write on its own.
class RawState {
 public:
  explicit RawState(std::string const& name) {
    int const fd = ::shm_open(name.c_str(), O_RDWR, 0);
    Check(fd >= 0, "cannot open the State");
    base_ = ::mmap(nullptr, kMinPageSize + sizeof(cb::State), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    Check(base_ != MAP_FAILED, "cannot map the State");
  }
  ~RawState() { ::munmap(base_, kMinPageSize + sizeof(cb::State)); }
  RawState(RawState const&) = delete;
  RawState& operator=(RawState const&) = delete;
  std::uint64_t* Word(std::size_t i) {
    return reinterpret_cast<std::uint64_t*>(static_cast<std::byte*>(base_) + kMinPageSize + WordOffset(i % kWords));
  }

 private:
  void* base_ = nullptr;
};

// One reader and what it has delivered so far.
struct Watched {
  Watched(std::string const& name, cb::StartAt start) : reader(cb::Spec::Make(name, 0), {.start = start}) {}
  cb::Reader reader;
  bool delivered = false;
  std::uint64_t last = 0;  // sequence number of the last message delivered
  std::uint64_t lost = 0;
};

void CheckDelivery(Watched& w, int n, std::span<std::byte const> got, std::vector<std::size_t> const& sizes) {
  Check(w.reader.Lost() >= w.lost, "Lost() ran backwards");
  w.lost = w.reader.Lost();
  if (n <= 0) {
    Check(n == cb::kEmpty || n == cb::kLapped || n == cb::kBufferTooSmall || n == cb::kCorrupt, "unknown outcome");
    return;
  }
  std::uint64_t const seq = w.reader.NextSequence() - 1;
  Check(seq < sizes.size(), "a message delivered with a sequence number never written");
  Check(static_cast<std::size_t>(n) == sizes[seq], "a message delivered with a length the writer did not write");
  Check(circbuf::test::Matches(seq, got.first(static_cast<std::size_t>(n))),
        "a message delivered that the writer did not write as that sequence number");
  Check(!w.delivered || seq > w.last, "a sequence number delivered twice or out of order");
  w.delivered = true;
  w.last = seq;
}

void Run(Bytes& in) {
  static std::string const name = NameFor("forged");
  RemoveAll(name);
  RemoveAll(circbuf::CircularBuffer::DataSegmentName(name));
  std::uint64_t const capacity = cb::kMinCapacity + 64 * (in.Take(1) % 193);
  auto const first_start = static_cast<cb::StartAt>(in.Take(1) % 3);
  {
    cb::Writer writer(cb::Spec::Make(name, capacity));
    std::size_t const max = writer.MaxMessageSize();
    RawState raw(name);
    std::vector<std::size_t> sizes;  // sizes[seq]: what the writer wrote as seq (0: skipped, no message)
    std::optional<Watched> watched;
    auto attach = [&](cb::StartAt start) {
      watched.reset();
      try {
        watched.emplace(name, start);
        // NOLINTNEXTLINE(bugprone-empty-catch): corrupt positions refused at attach: all there is to check
      } catch (std::invalid_argument const&) {
      }
    };
    attach(first_start);
    std::vector<std::byte> buffer(cb::kMaxMessageSize);
    for (std::size_t op = 0; op < kMaxOps && !in.Done(); ++op) {
      switch (in.Take(1) % 8) {
        case 0: {
          std::uint64_t const count = 1 + in.Take(1) % 16;
          std::size_t const size = 1 + static_cast<std::size_t>(in.Take(2)) % max;
          for (std::uint64_t i = 0; i < count; ++i) {
            sizes.push_back(size);
            writer.Write(circbuf::test::Message(sizes.size() - 1, size));
          }
          break;
        }
        case 1:
          if (watched) {
            int const n = watched->reader.Read(buffer);
            CheckDelivery(*watched, n, buffer, sizes);
          }
          break;
        case 2:
          if (watched) {
            int const n = watched->reader.ReadInPlace([&](std::span<std::byte const> m) {
              Check(m.size() <= buffer.size(), "ReadInPlace view longer than 65535");
              std::memcpy(buffer.data(), m.data(), m.size());
            });
            CheckDelivery(*watched, n, buffer, sizes);
          }
          break;
        case 3: {
          std::uint64_t* const word = raw.Word(in.Take(1));
          *word = in.Take(8);
          break;
        }
        case 4: {
          std::uint64_t* const word = raw.Word(in.Take(1));
          auto const delta = static_cast<std::int8_t>(in.Take(1));
          *word += static_cast<std::uint64_t>(static_cast<std::int64_t>(delta) * 8);
          break;
        }
        case 5: attach(static_cast<cb::StartAt>(in.Take(1) % 3)); break;
        case 6:
          if (watched) (void)watched->reader.Wait(std::chrono::nanoseconds(0));
          break;
        case 7: {
          std::uint64_t const count = 1 + in.Take(1);
          writer.Skip(count);
          sizes.resize(sizes.size() + count, 0);
          break;
        }
        default: break;  // not reached
      }
    }
  }
  ExpectNothingLeft(name);
  ExpectNothingLeft(circbuf::CircularBuffer::DataSegmentName(name));
}

void WriteSeeds(std::string const& dir) {
  ::mkdir(dir.c_str(), 0755);  // may exist already
  auto write = [&](char const* file, std::vector<std::uint8_t> const& bytes) { WriteSeed(dir, file, bytes); };
  // Fill a 4 KiB ring past a lap, then read; then recipe 1 (latest + 8, attach at kLatest); then recipe 2
  // (limit + one chunk, index entry + 8, read on); then random-looking words.
  std::vector<std::uint8_t> laps{0, 1};
  for (int i = 0; i < 6; ++i) laps.insert(laps.end(), {0, 15, 100, 0});
  for (int i = 0; i < 8; ++i) laps.push_back(1);
  write("laps", laps);
  std::vector<std::uint8_t> latest = laps;
  latest.insert(latest.end(), {4, 1, 1, 5, 0, 1, 1, 0, 3, 50, 0, 1, 1});
  write("latest-plus-8", latest);
  std::vector<std::uint8_t> index = laps;
  index.insert(index.end(), {0, 15, 100, 0, 4, 3, 64, 4, 4, 1, 4, 5, 1, 4, 6, 1, 1, 1, 1, 2, 2});
  write("index-plus-8", index);
  std::vector<std::uint8_t> words = laps;
  for (int i = 0; i < 20; ++i) {
    words.push_back(3);
    words.push_back(static_cast<std::uint8_t>(i));
    for (int k = 0; k < 8; ++k) words.push_back(static_cast<std::uint8_t>(i * 37 + k * 11));
    words.push_back(1);
    words.push_back(2);
  }
  write("words", words);
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
