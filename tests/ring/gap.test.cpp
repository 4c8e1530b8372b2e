// Gap records (Writer::Skip): a writer that forwards a stream with its own
// sequence numbers (a bridge, a replayed recording) skips the numbers lost
// upstream, and every reader counts them as lost, exactly: caught up, late,
// lapped across gaps (threads, so the TSan preset sees the protocol), and
// after a writer that skipped was SIGKILLed and another took over (processes).
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kCapacity = 4096;

// Writes message `seq` (its contents derive from the number, so a reader
// checks what it got against the number it expected).
void WriteSeq(cb::Writer& w, std::size_t size = 40) { w.Write(Message(w.NextSequence(), size)); }

// Reads the next message and checks it is sequence `seq`.
void ExpectMessage(cb::Reader& r, std::uint64_t seq, std::size_t size = 40) {
  std::vector<std::byte> buf(65535);
  int const n = r.Read(buf);
  ASSERT_EQ(n, static_cast<int>(size)) << "expected message " << seq;
  EXPECT_TRUE(Matches(seq, std::span(buf.data(), size))) << "message " << seq << " differs";
  EXPECT_EQ(r.NextSequence(), seq + 1);
}

void ExpectGap(cb::Reader& r, std::uint64_t count) {
  std::vector<std::byte> buf(65535);
  ASSERT_EQ(r.Read(buf), cb::kLapped);
  EXPECT_EQ(r.LastLoss(), count);
}

}  // namespace

TEST(RingGap, EveryReaderCountsASkipAsLostWhereItHappened) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  cb::Reader caught_up(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  WriteSeq(w);
  WriteSeq(w);
  w.Skip(5);
  EXPECT_EQ(w.NextSequence(), 7U);
  WriteSeq(w);
  w.Skip(0);  // nothing
  w.Skip(1);
  w.Skip(2);  // two gap records in a row
  WriteSeq(w);
  ExpectMessage(caught_up, 0);
  ExpectMessage(caught_up, 1);
  ExpectGap(caught_up, 5);
  ExpectMessage(caught_up, 7);
  ExpectGap(caught_up, 1);
  ExpectGap(caught_up, 2);
  ExpectMessage(caught_up, 11);
  std::vector<std::byte> buf(64);
  EXPECT_EQ(caught_up.Read(buf), cb::kEmpty);
  EXPECT_EQ(caught_up.Lost(), 8U);
  EXPECT_EQ(caught_up.Delivered(), 4U);
  cb::ReaderStats const rs = caught_up.Stats();
  EXPECT_EQ(rs.laps, 3U);
  EXPECT_EQ(rs.corrupt, 0U);
  cb::WriterStats const ws = w.Stats();
  EXPECT_EQ(ws.messages, 4U);
  EXPECT_EQ(ws.skipped, 8U);

  // A reader that comes later from the oldest message sees the same gaps.
  cb::Reader late(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  std::uint64_t delivered = 0;
  std::uint64_t lost = 0;
  for (;;) {
    int const n = late.Read(buf);
    if (n == cb::kEmpty) break;
    ASSERT_TRUE(n > 0 || n == cb::kLapped) << n;
    if (n > 0) ++delivered;
    if (n == cb::kLapped) lost += late.LastLoss();
  }
  EXPECT_EQ(delivered, 4U);
  EXPECT_EQ(lost, 8U);
  EXPECT_EQ(late.Lost(), 8U);
}

TEST(RingGap, PollCountsGapsAsLoss) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  WriteSeq(w);
  w.Skip(3);
  WriteSeq(w);
  w.Skip(4);
  std::vector<std::uint64_t> seen;
  cb::PollResult const p = reader.Poll([&](std::span<std::byte const> m) { seen.push_back(m.size()); }, 10);
  EXPECT_EQ(p.delivered, 2U);
  EXPECT_EQ(p.laps, 2U);
  EXPECT_EQ(p.lost, 7U);
  EXPECT_EQ(p.stopped, cb::Outcome::kEmpty);
  EXPECT_EQ(reader.NextSequence(), 9U);
}

// A gap at the end is the reader's loss only if it happened after the
// reader's position: kNext starts after it, kLatest delivers the newest
// message and then reports the gap that followed it.
TEST(RingGap, LateReadersStartOnTheRightSideOfATrailingGap) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  WriteSeq(w);
  WriteSeq(w);
  w.Skip(6);
  cb::Reader next(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  cb::Reader latest(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kLatest});
  EXPECT_EQ(next.NextSequence(), 8U);
  ExpectMessage(latest, 1);
  ExpectGap(latest, 6);
  WriteSeq(w);
  ExpectMessage(next, 8);
  ExpectMessage(latest, 8);
  EXPECT_EQ(next.Lost(), 0U);
  EXPECT_EQ(latest.Lost(), 6U);
}

// One Skip larger than a gap record holds is split; the count stays exact.
TEST(RingGap, AHugeSkipIsSplitAndCountedExactly) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  WriteSeq(w);
  std::uint64_t const huge = cb::kMaxGap + 12345;
  w.Skip(huge);
  WriteSeq(w);
  ExpectMessage(reader, 0);
  ExpectGap(reader, cb::kMaxGap);
  ExpectGap(reader, 12345);
  ExpectMessage(reader, huge + 1);
  EXPECT_EQ(reader.Lost(), huge);
}

// A lapped reader resynchronises through the index. With gaps between its
// cursor and the entry it resumes at, the sequence moved further than one
// number per 16 bytes: the bound that keeps a lapped reader from taking a
// renumbered entry must allow for what gap records skipped
// (index_skipped[]), or the reader never finds a point to resume at. The
// writer is a thread of this process (the TSan preset sees the protocol);
// every policy; loss must be exact: delivered + lost == sequence numbers
// written after the reader's first.
TEST(RingGap, ALappedReaderResumesAcrossGapsWithExactLoss) {
  for (cb::OnLap const policy : {cb::OnLap::kOldest, cb::OnLap::kHeadroom, cb::OnLap::kLatest}) {
    RingName r;
    cb::Writer w(cb::Spec::Make(r.name, kCapacity));
    cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext, .on_lap = policy});
    constexpr std::uint64_t kMessages = 20000;
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (std::uint64_t i = 0; i < kMessages; ++i) {
        WriteSeq(w, 24 + i % 64);
        if (i % 3 == 0) w.Skip(1000 + i % 7);  // far more numbers than bytes
      }
      done.store(true, std::memory_order_release);
    });
    std::vector<std::byte> buf(65535);
    std::uint64_t delivered = 0;
    std::uint64_t lost = 0;
    std::uint64_t corrupt = 0;
    for (;;) {
      bool const finished = done.load(std::memory_order_acquire);
      int const n = reader.Read(buf);
      if (n > 0) {
        // The number this message has is the one the reader expected.
        EXPECT_TRUE(Matches(reader.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n))));
        ++delivered;
        continue;
      }
      if (n == cb::kLapped) {
        lost += reader.LastLoss();
        continue;
      }
      if (n == cb::kCorrupt) {
        ++corrupt;
        if (corrupt > 1000) break;
        continue;
      }
      if (n == cb::kEmpty && finished) break;
    }
    writer.join();
    EXPECT_EQ(corrupt, 0U) << "policy " << static_cast<int>(policy);
    EXPECT_EQ(reader.NextSequence(), w.NextSequence()) << "policy " << static_cast<int>(policy);
    // The reader attached to an empty ring: everything from sequence 0 on is its to account for.
    EXPECT_EQ(delivered + lost, w.NextSequence()) << "policy " << static_cast<int>(policy);
    EXPECT_EQ(lost, reader.Lost());
    EXPECT_GT(reader.Stats().laps, 0U);
  }
}

// A whole lap and more of nothing but gap records: no index entry names an
// intact message, so a lapped reader has nowhere to resume until the next
// message; then the loss is exact.
TEST(RingGap, ALapOfNothingButGapsThenAMessage) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  WriteSeq(w);
  ExpectMessage(reader, 0);
  for (int i = 0; i < 1000; ++i) w.Skip(2);  // 16 KB of gap records: four laps
  std::vector<std::byte> buf(65535);
  EXPECT_EQ(reader.Read(buf), cb::kEmpty) << "lapped, and no message to resume at yet";
  WriteSeq(w);
  std::uint64_t lost = 0;
  int n = 0;
  while ((n = reader.Read(buf)) == cb::kLapped) lost += reader.LastLoss();
  ASSERT_EQ(n, 40);
  EXPECT_TRUE(Matches(2001, std::span(buf.data(), 40)));
  EXPECT_EQ(lost, 2000U);
  EXPECT_EQ(reader.Lost(), 2000U);
  EXPECT_EQ(reader.Stats().corrupt, 0U);
}

// A writer process that skipped is SIGKILLed; the writer that takes over
// continues the numbers after the gaps (from the records: the walk from the
// index entry crosses gap records), and the gaps it wrote stay counted.
TEST(RingGap, TakeOverAfterGapsContinuesTheNumbers) {
  for (bool const gap_last : {false, true}) {
    RingName r;
    Pipe ready;
    Child writer([&]() -> int {
      cb::Writer w(cb::Spec::Make(r.name, kCapacity));
      for (int i = 0; i < 300; ++i) {  // several laps: the index names records of later chunks
        WriteSeq(w);
        w.Skip(10);
      }
      WriteSeq(w);
      if (gap_last) w.Skip(7);
      ready.Send();
      for (;;) ::pause();
    });
    ASSERT_EQ(ready.Receive(), '.');
    writer.Kill(SIGKILL);
    ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
    cb::Writer next(cb::Spec::Make(r.name, kCapacity));
    EXPECT_TRUE(next.TookOver());
    std::uint64_t const expected = 300 * 11 + 1 + (gap_last ? 7 : 0);
    EXPECT_EQ(next.NextSequence(), expected) << "gap_last " << gap_last;
    WriteSeq(next);
    cb::Reader after(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kLatest});
    ExpectMessage(after, expected);
  }
}
