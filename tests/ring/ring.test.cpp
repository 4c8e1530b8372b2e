// White-box tests of the ring in one process: every path of Write and Read,
// forced wraps and laps, and every bad input. Cross-process behaviour is in
// processes.test.cpp.
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/expect.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::ErrorOf;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::RingName;

namespace {

cb::Spec SpecOf(RingName const& r, std::uint64_t capacity) { return cb::Spec::Make(r.name, capacity); }

void WriteSeq(cb::Writer& w, std::uint64_t seq, std::size_t size) { w.Write(Message(seq, size)); }

// Reads one message and checks that it is `seq` with `size` bytes.
void ExpectMessage(cb::Reader& r, std::uint64_t seq, std::size_t size) {
  std::vector<std::byte> buf(65535);
  int const n = r.Read(buf);
  ASSERT_EQ(n, static_cast<int>(size)) << "expected message " << seq;
  EXPECT_TRUE(Matches(seq, std::span(buf.data(), size))) << "message " << seq << " differs";
  EXPECT_EQ(r.NextSequence(), seq + 1);
}

// Where the writer puts records of `record` bytes (header included) in a ring
// of `capacity`: the start position of each, and the end of the last.
struct Model {
  std::vector<std::uint64_t> start;
  std::uint64_t end = 0;
  Model(std::uint64_t capacity, std::uint64_t record, std::size_t count) {
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (offset + record > capacity) {
        end += capacity - offset;
        offset = 0;
      }
      start.push_back(end);
      end += record;
      offset = (offset + record) % capacity;
    }
  }
  // The writer's frontier: the end of the last record and the 8-byte
  // "nothing yet" word after it, rounded up to a chunk.
  [[nodiscard]] std::uint64_t Limit(std::uint64_t capacity) const {
    std::uint64_t const chunk = capacity / cb::kChunks;
    return (end + 8 + chunk - 1) / chunk * chunk;
  }
  // The first record that starts at or after `position`.
  [[nodiscard]] std::uint64_t FirstFrom(std::uint64_t position) const {
    for (std::uint64_t s = 0; s < start.size(); ++s) {
      if (start[s] >= position) return s;
    }
    return start.size();
  }
  // The oldest record the reader can still get: it must start at or after
  // limit - capacity.
  [[nodiscard]] std::uint64_t Oldest(std::uint64_t capacity) const {
    std::uint64_t const limit = Limit(capacity);
    return FirstFrom(limit > capacity ? limit - capacity : 0);
  }
};

}  // namespace

TEST(RingSpec, ValidatesNameAndCapacityAndRoundsUpTo64) {
  EXPECT_EQ(cb::Spec::Make("/a", 4096).capacity, 4096U);
  EXPECT_EQ(cb::Spec::Make("/a", 4097).capacity, 4160U);
  EXPECT_EQ(cb::Spec::Make("/a", 52428800).capacity, 52428800U);
  EXPECT_STREQ(cb::Spec::Make("/quotes", 8192).name, "/quotes");
  EXPECT_NE(
      ErrorOf<std::length_error>([] { cb::Spec::Make("/a", 1); }).find("capacity 1 bytes: must be 4096 .. 52428800"),
      std::string::npos);
  EXPECT_NE(ErrorOf<std::length_error>([] { cb::Spec::Make("/a", 52428801); }).find("capacity 52428801 bytes"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::invalid_argument>([] { cb::Spec::Make("nope", 4096); }).find("must start with '/'"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::invalid_argument>([] {
              cb::Spec::Make("/" + std::string(247, 'n'), 4096);
            }).find("too long (248 characters); at most 247"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::length_error>([] { cb::Writer w(cb::Spec::Make("/cbt-zero", 0)); }).find("needs a capacity"),
            std::string::npos);
}

TEST(RingLayout, MaxMessageFitsHalfOfWhatOneChunkLeaves) {
  EXPECT_EQ(cb::MaxMessageFor(4096), 1776U);  // record (4096 - 512) / 2 - 8 = 1784 bytes
  EXPECT_EQ(cb::RecordBytes(cb::MaxMessageFor(4096)), 1784U);
  EXPECT_EQ(cb::MaxMessageFor(52428800), 65535U);
  EXPECT_EQ(cb::MaxMessageFor(cb::kMinCapacityForMaxMessage), 65535U);
  EXPECT_LT(cb::MaxMessageFor(cb::kMinCapacityForMaxMessage - 64), 65535U);
  EXPECT_EQ(cb::RecordBytes(1), 16U);
  EXPECT_EQ(cb::RecordBytes(8), 16U);
  EXPECT_EQ(cb::RecordBytes(9), 24U);
  EXPECT_EQ(cb::HeaderLength(cb::MakeHeader(77, 65535)), 65535U);
  EXPECT_EQ(cb::HeaderSequence(cb::MakeHeader(77, 65535)), 77U);
}

TEST(RingReader, EmptyRingReadsZero) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0));
  std::byte buf[16];
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
  EXPECT_EQ(reader.Capacity(), 4096U);
}

TEST(RingReader, DeliversEveryMessageInOrderByteForByte) {
  RingName r;
  cb::Writer w(SpecOf(r, 1 << 20));
  cb::Reader reader(SpecOf(r, 1 << 20), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = 0; s < 500; ++s) WriteSeq(w, s, 1 + s * 37 % 2000);
  for (std::uint64_t s = 0; s < 500; ++s) ExpectMessage(reader, s, 1 + s * 37 % 2000);
  std::byte buf[8];
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
  EXPECT_EQ(reader.Delivered(), 500U);
  EXPECT_EQ(reader.Lost(), 0U);
}

TEST(RingReader, SizesOneAnd65535) {
  RingName r;
  cb::Writer w(SpecOf(r, 1 << 18));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kNext});
  WriteSeq(w, 0, 1);
  WriteSeq(w, 1, 65535);
  WriteSeq(w, 2, 1);
  ExpectMessage(reader, 0, 1);
  ExpectMessage(reader, 1, 65535);
  ExpectMessage(reader, 2, 1);
}

// The copy writes exactly n bytes: every size from 1 to 200 (every tail of 1
// to 7 bytes behind 0 to 12 whole 16-byte moves) into a buffer of exactly n
// bytes between two guard areas, which stay as they were.
TEST(RingReader, CopyWritesExactlyTheMessageAndNothingAroundIt) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  constexpr std::size_t kGuard = 64;
  for (std::uint64_t s = 0; s < 200; ++s) {
    std::size_t const n = s + 1;
    WriteSeq(w, s, n);
    std::vector<std::byte> buf(kGuard + n + kGuard, std::byte{0xa5});
    ASSERT_EQ(reader.Read(std::span(buf).subspan(kGuard, n)), static_cast<int>(n));
    EXPECT_TRUE(Matches(s, std::span(buf).subspan(kGuard, n))) << n << " bytes";
    for (std::size_t i = 0; i < kGuard; ++i) {
      ASSERT_EQ(buf[i], std::byte{0xa5}) << n << " bytes: guard before, byte " << i;
      ASSERT_EQ(buf[kGuard + n + i], std::byte{0xa5}) << n << " bytes: guard after, byte " << i;
    }
  }
}

TEST(RingReader, SmallBufferLeavesTheMessageUnreadAndTellsItsSize) {
  RingName r;
  cb::Writer w(SpecOf(r, 8192));
  cb::Reader reader(SpecOf(r, 0));
  WriteSeq(w, 0, 100);
  std::vector<std::byte> small(99);
  EXPECT_EQ(reader.Read(small), cb::kBufferTooSmall);
  EXPECT_EQ(reader.PendingSize(), 100U);
  EXPECT_EQ(reader.Read(small), cb::kBufferTooSmall);  // still there
  ExpectMessage(reader, 0, 100);
}

TEST(RingWriter, RefusesBadSizesAndLeavesTheRingUnchanged) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  WriteSeq(w, 0, 10);
  std::uint64_t const tail = w.PublishedTail();
  std::vector<std::byte> big(65536);
  EXPECT_NE(ErrorOf<std::length_error>([&] { w.Write({}); }).find("message of 0 bytes: must be 1 .. 1776"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::length_error>([&] { w.Write(big); }).find("message of 65536 bytes"), std::string::npos);
  EXPECT_NE(ErrorOf<std::length_error>([&] {
              w.Write(std::span(big.data(), 1777));
            }).find("must be 1 .. 1776 in a ring of this capacity"),
            std::string::npos);
  EXPECT_THROW((void)w.Claim(0), std::length_error);
  EXPECT_THROW(w.Commit(1), std::logic_error);  // nothing claimed
  EXPECT_EQ(w.PublishedTail(), tail);
  EXPECT_EQ(w.NextSequence(), 1U);
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  ExpectMessage(reader, 0, 10);
  std::byte buf[8];
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
}

// capacity 4096: records of 1000 bytes (1008 with the header) end at 1008,
// 2016, 3024 and 4032; the fifth does not fit before 4096 (4032 + 1008 >
// 4096), so a padding record fills 4032..4096 and the fifth starts the next
// lap at offset 0 (position 4096).
TEST(RingWriter, PadsAtTheEndOfTheBufferAndWraps) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = 0; s < 4; ++s) WriteSeq(w, s, 1000);
  for (std::uint64_t s = 0; s < 4; ++s) ExpectMessage(reader, s, 1000);
  EXPECT_EQ(w.PublishedTail(), 4032U);
  WriteSeq(w, 4, 1000);
  EXPECT_EQ(w.PublishedTail(), 4096U + 1008U);  // 64 bytes of padding were skipped
  EXPECT_EQ(w.PublishedPositions().latest, 4096U);
  ExpectMessage(reader, 4, 1000);
  EXPECT_EQ(reader.Position(), 4096U + 1008U);
  // The padding record is in the data segment at offset 4032, carrying the
  // sequence number of the message that did not fit.
  circbuf::SharedMemory data(circbuf::CircularBuffer::DataSegmentName(r.name), 0,
                             {.open = circbuf::OpenMode::kAttach, .access = circbuf::Access::kReadOnly});
  std::uint64_t pad = 0;
  std::memcpy(&pad, data.Data() + 4032, 8);
  EXPECT_EQ(cb::HeaderLength(pad), 0U);
  EXPECT_NE(pad & cb::kPaddingFlag, 0U);
  EXPECT_EQ(cb::HeaderSequence(pad) & ((std::uint64_t{1} << 47) - 1), 4U);
}

TEST(RingWriter, MessageThatExactlyFillsToTheEndNeedsNoPadding) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = 0; s < 3; ++s) WriteSeq(w, s, 1000);  // 3 x 1008 = 3024 bytes
  for (std::uint64_t s = 0; s < 3; ++s) ExpectMessage(reader, s, 1000);
  WriteSeq(w, 3, 1064);  // 1072 bytes: 3024 + 1072 == 4096 exactly
  EXPECT_EQ(w.PublishedTail(), 4096U);
  ExpectMessage(reader, 3, 1064);
  std::byte buf[8];
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);  // the "nothing yet" word went to offset 0
  WriteSeq(w, 4, 8);                        // starts the next lap at offset 0
  EXPECT_EQ(w.PublishedPositions().latest, 4096U);
  ExpectMessage(reader, 4, 8);
}

// The largest record that wraps: the padding stays clear of it.
TEST(RingWriter, LargestMessagesWrapWithoutTouchingTheirPadding) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::size_t> const sizes = {1776, 1776, 1, 1776, 1700, 1776, 8, 1776, 1776, 1776};
  for (std::uint64_t s = 0; s < sizes.size(); ++s) {
    WriteSeq(w, s, sizes[s]);
    ExpectMessage(reader, s, sizes[s]);
  }
  EXPECT_EQ(reader.Lost(), 0U);
}

TEST(RingReader, LappedReaderResynchronisesAndCountsLossExactly) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = cb::OnLap::kOldest});
  constexpr std::size_t kCount = 100;  // 100 records of 112 bytes: about 2.7 laps
  for (std::uint64_t s = 0; s < kCount; ++s) WriteSeq(w, s, 100);
  std::uint64_t const oldest = Model(4096, 112, kCount).Oldest(4096);
  ASSERT_GT(oldest, 0U);
  std::vector<std::byte> buf(4096);
  EXPECT_EQ(reader.Read(buf), cb::kLapped);
  EXPECT_EQ(reader.LastLoss(), oldest);  // exactly the messages 0 .. oldest-1
  EXPECT_EQ(reader.Lost(), oldest);
  for (std::uint64_t s = oldest; s < kCount; ++s) ExpectMessage(reader, s, 100);
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
  EXPECT_EQ(reader.Delivered() + reader.Lost(), kCount);
}

// Where each lap policy resumes, and that loss stays exact in each: 1000
// records of 112 bytes in a 16 KiB ring (about 7 laps).
TEST(RingReader, EachLapPolicyResumesWhereItSaysAndCountsLossExactly) {
  constexpr std::uint64_t kCapacity = 16384;
  constexpr std::size_t kCount = 1000;
  Model const model(kCapacity, 112, kCount);
  std::uint64_t const limit = model.Limit(kCapacity);
  struct Case {
    cb::OnLap policy;
    std::uint64_t resume;  // sequence number of the first message delivered after the lap
  };
  for (Case const c :
       {Case{cb::OnLap::kOldest, model.Oldest(kCapacity)},
        Case{cb::OnLap::kHeadroom, model.FirstFrom(limit - kCapacity / 2)}, Case{cb::OnLap::kLatest, kCount - 1}}) {
    SCOPED_TRACE(static_cast<int>(c.policy));
    RingName r;
    cb::Writer w(SpecOf(r, kCapacity));
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = c.policy});
    for (std::uint64_t s = 0; s < kCount; ++s) WriteSeq(w, s, 100);
    std::vector<std::byte> buf(4096);
    ASSERT_EQ(reader.Read(buf), cb::kLapped);
    EXPECT_EQ(reader.LastLoss(), c.resume);
    EXPECT_EQ(reader.NextSequence(), c.resume);
    for (std::uint64_t s = c.resume; s < kCount; ++s) ExpectMessage(reader, s, 100);
    EXPECT_EQ(reader.Read(buf), cb::kEmpty);
    EXPECT_EQ(reader.Delivered() + reader.Lost(), kCount);
  }
  // The three points differ, so the test tells the policies apart.
  EXPECT_LT(model.Oldest(kCapacity) + 10, model.FirstFrom(limit - kCapacity / 2));
  EXPECT_LT(model.FirstFrom(limit - kCapacity / 2) + 10, kCount - 1);
}

TEST(RingReader, DefaultLapPolicyIsHeadroomAndABadPolicyIsRefused) {
  EXPECT_EQ(cb::ReaderOptions{}.on_lap, cb::OnLap::kHeadroom);
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  std::string const error =
      ErrorOf<std::invalid_argument>([&] { cb::Reader reader(SpecOf(r, 0), {.on_lap = static_cast<cb::OnLap>(7)}); });
  EXPECT_NE(error.find("on_lap 7 is not an OnLap policy"), std::string::npos) << error;
}

TEST(RingReader, RecordOverwrittenWhileBeingReadIsNeverDelivered) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = cb::OnLap::kOldest});
  WriteSeq(w, 0, 100);
  int calls = 0;
  int const outcome = reader.ReadInPlace([&](std::span<std::byte const> view) {
    ++calls;
    EXPECT_EQ(view.size(), 100U);
    // The writer laps the reader while it is looking at message 0.
    for (std::uint64_t s = 1; s < 60; ++s) WriteSeq(w, s, 100);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(outcome, cb::kLapped);
  EXPECT_EQ(reader.Delivered(), 0U);
  std::uint64_t const oldest = Model(4096, 112, 60).Oldest(4096);
  EXPECT_EQ(reader.LastLoss(), oldest);
  for (std::uint64_t s = oldest; s < 60; ++s) ExpectMessage(reader, s, 100);
}

TEST(RingReader, ReadInPlaceShowsTheMessageWhereItLies) {
  RingName r;
  cb::Writer w(SpecOf(r, 8192));
  cb::Reader reader(SpecOf(r, 0));
  auto const message = Message(0, 300);
  auto slot = w.Claim(300);
  std::memcpy(slot.data(), message.data(), 300);
  w.Commit(300);
  std::vector<std::byte> seen;
  EXPECT_EQ(reader.ReadInPlace([&](std::span<std::byte const> v) { seen.assign(v.begin(), v.end()); }), 300);
  EXPECT_TRUE(Matches(0, seen));
  EXPECT_EQ(reader.ReadInPlace([](std::span<std::byte const>) { FAIL() << "called on an empty ring"; }), cb::kEmpty);
}

TEST(RingWriter, ClaimAndCommitFewerBytesThanClaimed) {
  RingName r;
  cb::Writer w(SpecOf(r, 8192));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kNext});
  auto slot = w.Claim(500);
  auto const message = Message(0, 123);
  std::memcpy(slot.data(), message.data(), 123);
  w.Commit(123);
  ExpectMessage(reader, 0, 123);
  (void)w.Claim(50);  // abandoned: a later Write replaces it
  WriteSeq(w, 1, 40);
  ExpectMessage(reader, 1, 40);
  EXPECT_THROW(w.Commit(1), std::logic_error);
}

TEST(RingReader, LateJoinAtLatestOldestOrNext) {
  RingName r;
  cb::Writer w(SpecOf(r, 1 << 20));
  for (std::uint64_t s = 0; s < 10; ++s) WriteSeq(w, s, 64);
  cb::Reader latest(SpecOf(r, 0));
  cb::Reader oldest(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  cb::Reader next(SpecOf(r, 0), {.start = cb::StartAt::kNext});
  ExpectMessage(latest, 9, 64);
  ExpectMessage(oldest, 0, 64);
  std::byte buf[64];
  EXPECT_EQ(next.Read(buf), cb::kEmpty);
  WriteSeq(w, 10, 64);
  ExpectMessage(latest, 10, 64);
  ExpectMessage(next, 10, 64);
  for (std::uint64_t s = 1; s <= 10; ++s) ExpectMessage(oldest, s, 64);
  for (auto* reader : {&latest, &oldest, &next}) EXPECT_EQ(reader->Lost(), 0U);
}

TEST(RingReader, LateJoinAtOldestAfterWrapStartsAtTheOldestIntactMessage) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  for (std::uint64_t s = 0; s < 100; ++s) WriteSeq(w, s, 100);
  std::uint64_t const oldest = Model(4096, 112, 100).Oldest(4096);
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = oldest; s < 100; ++s) ExpectMessage(reader, s, 100);
  EXPECT_EQ(reader.Lost(), 0U);  // joining late is not a loss
}

TEST(RingBuffer, SmallestAndLargestCapacity) {
  {
    RingName r;
    cb::Writer w(SpecOf(r, cb::kMinCapacity));
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kNext});
    EXPECT_EQ(w.MaxMessageSize(), 1776U);
    for (std::uint64_t s = 0; s < 40; ++s) {  // many laps, read as we go
      WriteSeq(w, s, 1776);
      ExpectMessage(reader, s, 1776);
    }
  }
  {
    RingName r;
    cb::Writer w(SpecOf(r, cb::kMaxCapacity));
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kNext});
    EXPECT_EQ(w.MaxMessageSize(), 65535U);
    for (std::uint64_t s = 0; s < 900; ++s) {  // more than one lap of 50 MiB
      WriteSeq(w, s, 65535);
      ExpectMessage(reader, s, 65535);
    }
    EXPECT_GT(w.PublishedTail(), cb::kMaxCapacity);
  }
}

TEST(RingAttach, RefusesCapacityMismatch) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  std::string const what = ErrorOf<std::length_error>([&] { cb::Reader reader(SpecOf(r, 8192)); });
  EXPECT_NE(what.find("exists with capacity 4096, asked for 8192"), std::string::npos) << what;
  EXPECT_THROW(cb::Writer again(SpecOf(r, 8192)), std::length_error);
}

TEST(RingAttach, RefusesMissingRing) {
  RingName r;
  try {
    cb::Reader reader(SpecOf(r, 0));
    FAIL() << "attached to nothing";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(circbuf::SharedMemory::Exists(r.name));
}

TEST(RingAttach, RefusesASegmentThatIsNotARing) {
  RingName r;
  circbuf::SharedMemory impostor(r.name, sizeof(cb::State));
  std::string const what = ErrorOf<std::invalid_argument>([&] { cb::Reader reader(SpecOf(r, 0)); });
  EXPECT_NE(what.find("not a circbuf ring"), std::string::npos) << what;
  EXPECT_THROW(cb::Writer w(SpecOf(r, 4096)), std::invalid_argument);
}

TEST(RingAttach, RefusesAnotherLayoutVersionAndCorruptHeaders) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  circbuf::SharedMemory state(r.name, 0, {.open = circbuf::OpenMode::kAttach});
  auto* s = state.AsStruct<cb::State>();
  s->version = 9;
  EXPECT_NE(ErrorOf<std::invalid_argument>([&] { cb::Reader reader(SpecOf(r, 0)); }).find("layout version 9"),
            std::string::npos);
  s->version = cb::kRingVersion;
  s->chunk = 100;
  EXPECT_NE(ErrorOf<std::invalid_argument>([&] { cb::Reader reader(SpecOf(r, 0)); }).find("corrupt header"),
            std::string::npos);
  s->chunk = 512;
  s->limit = 7;
  EXPECT_NE(ErrorOf<std::invalid_argument>([&] { cb::Reader reader(SpecOf(r, 0)); }).find("corrupt positions"),
            std::string::npos);
  s->limit = 0;
  EXPECT_NO_THROW(cb::Reader reader(SpecOf(r, 0)));
}

TEST(RingWriter, SecondWriterIsRefused) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  try {
    cb::Writer second(SpecOf(r, 4096));
    FAIL() << "two writers";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code().value(), EBUSY);
    EXPECT_NE(std::string(e.what()).find("already has a live writer (pid " + std::to_string(::getpid())),
              std::string::npos)
        << e.what();
  }
}

TEST(RingWriter, ANewWriterContinuesTheSequenceAfterACleanClose) {
  RingName r;
  cb::Reader* keep = nullptr;
  {
    cb::Writer w(SpecOf(r, 4096));
    for (std::uint64_t s = 0; s < 50; ++s) WriteSeq(w, s, 100);
    keep = new cb::Reader(SpecOf(r, 0), {.start = cb::StartAt::kNext});
  }
  EXPECT_EQ(keep->GetWriterStatus(), cb::WriterStatus::kClosed);
  cb::Writer w(SpecOf(r, 4096));
  EXPECT_FALSE(w.TookOver());
  EXPECT_EQ(w.NextSequence(), 50U);
  EXPECT_EQ(keep->GetWriterStatus(), cb::WriterStatus::kAlive);
  WriteSeq(w, 50, 100);
  ExpectMessage(*keep, 50, 100);
  delete keep;
}

// A writer that dies between storing a record's header (the readers' commit)
// and storing tail has shown that record to readers: the next writer must keep
// it, not overwrite it with a different message of the same sequence number.
TEST(RingWriter, TakeOverKeepsRecordsPublishedAfterTheCommittedTail) {
  RingName r;
  std::optional<cb::Writer> first(std::in_place, SpecOf(r, 1 << 16));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = 0; s < 4; ++s) WriteSeq(*first, s, 100 + s);
  std::uint64_t const tail4 = first->PublishedTail();
  std::uint64_t const latest4 = first->PublishedPositions().latest;
  WriteSeq(*first, 4, 104);
  std::uint64_t const tail5 = first->PublishedTail();
  // Roll tail and latest back: message 4's header is out, tail is not.
  circbuf::SharedMemory state(r.name, 0, {.open = circbuf::OpenMode::kAttach});
  state.AsStruct<cb::State>()->tail = tail4;
  state.AsStruct<cb::State>()->latest = latest4;
  for (std::uint64_t s = 0; s < 5; ++s) ExpectMessage(reader, s, 100 + s);  // readers do see message 4
  first.reset();
  cb::Writer heir(SpecOf(r, 1 << 16));
  EXPECT_EQ(heir.NextSequence(), 5U);
  EXPECT_EQ(heir.PublishedTail(), tail5);
  WriteSeq(heir, 5, 105);
  ExpectMessage(reader, 5, 105);
  EXPECT_EQ(reader.Lost(), 0U);
}

// Each lap policy under a writer thread flat out and a reader thread that
// keeps being lapped, as threads of one process so that ThreadSanitizer
// sees the race between the copy and the overwrite: every message delivered
// is intact and in order, and delivered + lost is exactly what was written.
TEST(RingLapThreads, EveryPolicyDeliversOnlyIntactMessagesAndCountsLossExactly) {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kCount = 20000;
#else
  constexpr std::uint64_t kCount = 400000;
#endif
  for (cb::OnLap const policy : {cb::OnLap::kOldest, cb::OnLap::kHeadroom, cb::OnLap::kLatest}) {
    SCOPED_TRACE(static_cast<int>(policy));
    RingName r;
    cb::Writer w(SpecOf(r, 8192));
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = policy});
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (std::uint64_t s = 0; s < kCount; ++s) WriteSeq(w, s, 1 + s % 200);
      done.store(true, std::memory_order_release);
    });
    std::vector<std::byte> buf(4096);
    std::uint64_t laps = 0;
    std::uint64_t bad = 0;
    std::uint64_t next = 0;  // sequence number of the message the reader expects
    for (;;) {
      bool const finished = done.load(std::memory_order_acquire);
      int const n = reader.Read(buf);
      if (n > 0) {
        std::uint64_t const seq = reader.NextSequence() - 1;
        if (seq < next || static_cast<std::size_t>(n) != 1 + seq % 200 ||
            !Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n)))) {
          ++bad;
        }
        next = seq + 1;
      } else if (n == cb::kLapped) {
        ++laps;
      } else if (n == cb::kEmpty && finished) {
        break;
      } else if (n != cb::kEmpty) {
        ADD_FAILURE() << "Read returned " << n;
        break;
      }
    }
    writer.join();
    EXPECT_EQ(bad, 0U);
    EXPECT_EQ(reader.NextSequence(), kCount);
    EXPECT_EQ(reader.Delivered() + reader.Lost(), kCount);
    RecordProperty("laps_" + std::to_string(static_cast<int>(policy)), static_cast<int>(laps));
  }
}
