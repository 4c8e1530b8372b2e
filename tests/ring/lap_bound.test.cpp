// How far behind a reader may fall without loss (docs/sizing.md, "How far
// behind a reader may fall"): in one process, a writer and a reader kept at
// the documented bound, across several laps and their padding, must see every
// message; a reader in stream positions 8 bytes beyond the exact bound, and
// one kept at the old "7/8 of the capacity" rule, must be lapped.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::RingName;
using circbuf::test::SizeOf;

namespace {

constexpr std::uint64_t kCapacities[] = {4096, 65536, 149888, 1 << 20};

constexpr std::uint64_t Align8(std::uint64_t n) { return (n + 7) & ~std::uint64_t{7}; }
constexpr std::uint64_t Chunk(std::uint64_t capacity) { return capacity / cb::kChunks; }

// The rule of docs/sizing.md: the records a reader has not read, the one
// being written included, may take this many bytes without loss, where
// `largest` is the largest message the writer writes.
constexpr std::uint64_t LosslessBacklog(std::uint64_t capacity, std::uint64_t largest) {
  return capacity - Chunk(capacity) - Align8(largest);
}

// The worked figure of docs/sizing.md: one 65535-byte message of slack in the
// smallest ring that takes them, though two fit in 7/8 of it (the old rule).
static_assert(LosslessBacklog(149888, 65535) == 65616);
static_assert(cb::RecordBytes(65535) == 65544);
static_assert(2 * cb::RecordBytes(65535) <= std::uint64_t{149888} / 8 * 7);

struct Outcome {
  bool lapped = false;          // a Read returned kLapped
  bool wrong = false;           // a Read returned something else unexpected
  std::uint64_t written = 0;
  std::uint64_t delivered = 0;  // checked byte for byte
  std::uint64_t most_unread = 0;     // most record bytes unread after a Write
  std::uint64_t most_distance = 0;   // most PublishedTail() - Position() after a Write
};

// Writes messages of size(seq) bytes for four laps of the ring. Before each
// Write the reader reads (and checks) just as many messages as it must so
// that, after the Write, its unread records take at most `backlog` bytes: it
// stays as far behind as `backlog` allows. Stops at the first kLapped.
template <class Size>
Outcome RunAtBacklog(std::uint64_t capacity, std::uint64_t backlog, Size size) {
  RingName ring;
  cb::Writer writer(cb::Spec::Make(ring.name, capacity));
  cb::Reader reader(cb::Spec::Make(ring.name, 0));
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  std::deque<std::uint64_t> unread;  // sequence numbers written, not read yet
  std::uint64_t unread_bytes = 0;
  Outcome out;
  auto read_one = [&] {
    std::uint64_t const seq = unread.front();
    std::size_t const n = size(seq);
    int const got = reader.Read(buf);
    if (got == cb::kLapped) {
      out.lapped = true;
      return false;
    }
    if (got != static_cast<int>(n) || !Matches(seq, std::span(buf.data(), n))) {
      out.wrong = true;
      return false;
    }
    ++out.delivered;
    unread.pop_front();
    unread_bytes -= cb::RecordBytes(n);
    return true;
  };
  for (std::uint64_t seq = 0; writer.PublishedTail() < 4 * capacity; ++seq) {
    std::size_t const n = size(seq);
    while (!unread.empty() && unread_bytes + cb::RecordBytes(n) > backlog) {
      if (!read_one()) return out;
    }
    writer.Write(Message(seq, n));
    ++out.written;
    unread.push_back(seq);
    unread_bytes += cb::RecordBytes(n);
    out.most_unread = std::max(out.most_unread, unread_bytes);
    out.most_distance = std::max(out.most_distance, reader.PublishedTail() - reader.Position());
  }
  while (!unread.empty()) {
    if (!read_one()) return out;
  }
  if (reader.Read(buf) != cb::kEmpty || reader.Lost() != 0) out.wrong = true;
  return out;
}

// Writes messages whose records take exactly `bytes` (a multiple of 8, at
// least 16) bytes in all, none larger than the ring allows; returns the next
// sequence number.
std::uint64_t WriteSpan(cb::Writer& writer, std::uint64_t seq, std::uint64_t bytes) {
  std::uint64_t const largest = cb::kHeaderBytes + (writer.MaxMessageSize() & ~std::size_t{7});
  while (bytes != 0) {
    std::uint64_t record = std::min(bytes, largest);
    if (bytes - record != 0 && bytes - record < 16) record -= 16;  // leave room for one more record
    writer.Write(Message(seq++, record - cb::kHeaderBytes));
    bytes -= record;
  }
  return seq;
}

}  // namespace

// The rule as documented, for one message size at a time and for mixed sizes:
// a reader whose unread records never take more than the bound gets every
// message, through laps that end in padding; and its distance in stream
// positions never exceeds capacity - chunk (what the rule is derived from).
TEST(RingLapBound, ReaderWithinTheDocumentedBoundLosesNothing) {
  for (std::uint64_t const capacity : kCapacities) {
    std::size_t const max = cb::MaxMessageFor(capacity);
    for (std::size_t const m : {std::size_t{1}, std::size_t{64}, std::size_t{1000}, max}) {
      SCOPED_TRACE("capacity " + std::to_string(capacity) + ", messages of " + std::to_string(m) + " bytes");
      std::uint64_t const bound = LosslessBacklog(capacity, m);
      std::uint64_t const record = cb::RecordBytes(m);
      Outcome const out = RunAtBacklog(capacity, bound, [m](std::uint64_t) { return m; });
      EXPECT_FALSE(out.lapped);
      EXPECT_FALSE(out.wrong);
      EXPECT_EQ(out.delivered, out.written);
      // The reader really was at the bound, not comfortably inside it.
      EXPECT_GT(out.most_unread + record, bound);
      EXPECT_LE(out.most_distance, capacity - Chunk(capacity));
    }
    SCOPED_TRACE("capacity " + std::to_string(capacity) + ", mixed sizes up to " + std::to_string(max));
    std::uint64_t const bound = LosslessBacklog(capacity, max);
    Outcome const out = RunAtBacklog(capacity, bound, [max](std::uint64_t seq) { return SizeOf(seq, max); });
    EXPECT_FALSE(out.lapped);
    EXPECT_FALSE(out.wrong);
    EXPECT_EQ(out.delivered, out.written);
    EXPECT_LE(out.most_distance, capacity - Chunk(capacity));
  }
}

// The exact rule in stream positions: a reader whose Position() is 8 bytes
// short of a chunk boundary survives records that end capacity - chunk past
// it and is lapped by one that ends 8 bytes further.
TEST(RingLapBound, PositionBoundIsExact) {
  for (std::uint64_t const capacity : kCapacities) {
    std::uint64_t const chunk = Chunk(capacity);
    for (std::uint64_t const beyond : {std::uint64_t{0}, std::uint64_t{8}}) {
      SCOPED_TRACE("capacity " + std::to_string(capacity) + ", distance capacity - chunk + " + std::to_string(beyond));
      RingName ring;
      cb::Writer writer(cb::Spec::Make(ring.name, capacity));
      cb::Reader reader(cb::Spec::Make(ring.name, 0));
      std::vector<std::byte> buf(cb::kMaxMessageSize);
      std::uint64_t const first = WriteSpan(writer, 0, chunk - 8);
      for (std::uint64_t seq = 0; seq < first; ++seq) ASSERT_GT(reader.Read(buf), 0);
      ASSERT_EQ(reader.Position(), chunk - 8);
      WriteSpan(writer, first, capacity - chunk + beyond);
      EXPECT_EQ(reader.PublishedTail() - reader.Position(), capacity - chunk + beyond);
      int const got = reader.Read(buf);
      if (beyond == 0) {
        EXPECT_GT(got, 0);
        EXPECT_EQ(reader.Lost(), 0U);
      } else {
        EXPECT_EQ(got, cb::kLapped);
        EXPECT_GE(reader.LastLoss(), 1U);
      }
    }
  }
}

// The old promise, "a reader may fall 7/8 of the capacity behind without
// loss", counted in the messages a reader has not read: false once padding is
// involved. 149888 bytes, 65535-byte messages: the reader has read message 0
// of 0, 1; message 2 does not fit before the end of the lap, so the writer
// pads 18800 bytes and writes it at the next lap start. Two unread messages,
// 131088 bytes, less than 7/8 of the ring, and the reader is lapped.
TEST(RingLapBound, SevenEighthsIsNotEnoughWithPadding) {
  RingName ring;
  cb::Writer writer(cb::Spec::Make(ring.name, 149888));
  cb::Reader reader(cb::Spec::Make(ring.name, 0));
  ASSERT_EQ(writer.MaxMessageSize(), 65535U);
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  writer.Write(Message(0, 65535));
  writer.Write(Message(1, 65535));
  ASSERT_EQ(reader.Read(buf), 65535);
  writer.Write(Message(2, 65535));
  EXPECT_EQ(reader.PublishedTail(), 149888U + 65544U) << "message 2 follows 18800 bytes of padding";
  EXPECT_EQ(reader.Read(buf), cb::kLapped);
  EXPECT_EQ(reader.LastLoss(), 1U) << "message 1 lost";
  EXPECT_EQ(reader.Read(buf), 65535);
  EXPECT_TRUE(Matches(2, std::span(buf.data(), 65535)));
}

// The same in general: a reader kept at 7/8 of the capacity of unread
// records is lapped at a wrap, for the largest messages and for small ones
// (the padding is at most one message, but a reader 7/8 behind has no slack
// for it); kept at the documented bound (the first test) it is not.
TEST(RingLapBound, ReaderAtSevenEighthsIsLapped) {
  struct Case {
    std::uint64_t capacity;
    std::size_t size;
  };
  for (Case const c : {Case{4096, cb::MaxMessageFor(4096)}, Case{65536, cb::MaxMessageFor(65536)}, Case{149888, 64},
                       Case{149888, 1000}, Case{149888, 65535}, Case{1 << 20, 64}}) {
    SCOPED_TRACE("capacity " + std::to_string(c.capacity) + ", messages of " + std::to_string(c.size) + " bytes");
    std::size_t const m = c.size;
    Outcome const out = RunAtBacklog(c.capacity, c.capacity / 8 * 7, [m](std::uint64_t) { return m; });
    EXPECT_TRUE(out.lapped);
    EXPECT_FALSE(out.wrong);
  }
}
