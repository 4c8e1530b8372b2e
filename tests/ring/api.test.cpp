// The API for new code (issue 15): Receive's result type, Poll, Skip,
// Backlog, the statistics, ScopedClaim. In one process where the state is
// exact, in two where the product is (a writer process flat out, a reader
// process polling).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/expect.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::ErrorOf;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;

namespace {

cb::Spec SpecOf(RingName const& r, std::uint64_t capacity) { return cb::Spec::Make(r.name, capacity); }

TEST(RingApi, ReceiveNamesEveryOutcome) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = cb::OnLap::kOldest});
  std::vector<std::byte> buf(4096);
  cb::ReadResult result = reader.Receive(buf);
  EXPECT_EQ(result.outcome, cb::Outcome::kEmpty);
  w.Write(Message(0, 100));
  result = reader.Receive(std::span(buf).first(10));
  EXPECT_EQ(result.outcome, cb::Outcome::kBufferTooSmall);
  EXPECT_EQ(result.size, 100U);
  result = reader.Receive(buf);
  ASSERT_EQ(result.outcome, cb::Outcome::kMessage);
  EXPECT_EQ(result.size, 100U);
  EXPECT_TRUE(Matches(0, std::span(buf).first(100)));
  for (std::uint64_t s = 1; s < 100; ++s) w.Write(Message(s, 100));  // about 2.7 laps of 112-byte records
  result = reader.Receive(buf);
  ASSERT_EQ(result.outcome, cb::Outcome::kLapped);
  EXPECT_GT(result.lost, 0U);
  EXPECT_EQ(result.lost, reader.LastLoss());
  EXPECT_EQ(reader.Stats().laps, 1U);
}

TEST(RingApi, PollDeliversUpToMaxValidatedAndSaysWhyItStopped) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  for (std::uint64_t s = 0; s < 10; ++s) w.Write(Message(s, 1 + s * 7));
  std::uint64_t next = 0;
  std::uint64_t bad = 0;
  auto check = [&](std::span<std::byte const> m) {
    if (m.size() != 1 + next * 7 || !Matches(next, m)) ++bad;
    ++next;
  };
  cb::PollResult result = reader.Poll(check, 4);
  EXPECT_EQ(result.delivered, 4U);
  EXPECT_EQ(result.stopped, cb::Outcome::kMessage);  // max reached
  result = reader.Poll(check, 100);
  EXPECT_EQ(result.delivered, 6U);
  EXPECT_EQ(result.stopped, cb::Outcome::kEmpty);
  EXPECT_EQ(result.laps, 0U);
  EXPECT_EQ(bad, 0U);
  EXPECT_EQ(reader.Delivered(), 10U);
}

// Across laps: Poll resynchronises and goes on, and what it reports lost is
// exactly what it did not deliver.
TEST(RingApi, PollAcrossALapCountsTheLossExactly) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest, .on_lap = cb::OnLap::kOldest});
  for (std::uint64_t s = 0; s < 100; ++s) w.Write(Message(s, 100));
  std::uint64_t delivered = 0;
  std::uint64_t first = ~std::uint64_t{0};
  cb::PollResult const result = reader.Poll(
      [&](std::span<std::byte const> m) {
        if (first == ~std::uint64_t{0}) first = reader.NextSequence() - 1;
        EXPECT_TRUE(Matches(reader.NextSequence() - 1, m));
        ++delivered;
      },
      1000);
  EXPECT_EQ(result.laps, 1U);
  EXPECT_EQ(result.lost, first);  // messages 0 .. first-1
  EXPECT_EQ(result.delivered, delivered);
  EXPECT_EQ(result.delivered + result.lost, 100U);
  EXPECT_EQ(result.stopped, cb::Outcome::kEmpty);
}

// A writer process flat out into a small ring, a reader process polling:
// every message delivered is intact and in order, and delivered + lost is
// exactly what was written.
TEST(RingApi, PollInAnotherProcessUnderAFlatOutWriterDeliversOnlyIntactMessages) {
  RingName r;
  constexpr std::uint64_t kCount = 300000;
  Pipe ready;
  Pipe go;
  cb::Writer w(SpecOf(r, 16384));
  Child reader_process([&] {
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
    ready.Send();
    std::uint64_t bad = 0;
    std::uint64_t last = 0;
    bool any = false;
    std::uint64_t lost = 0;
    std::uint64_t delivered = 0;
    while (reader.NextSequence() < kCount) {
      cb::PollResult const result = reader.Poll(
          [&](std::span<std::byte const> m) {
            std::uint64_t const seq = reader.NextSequence() - 1;
            if ((any && seq <= last) || m.size() != 1 + seq % 300 || !Matches(seq, m)) ++bad;
            last = seq;
            any = true;
          },
          64);
      if (result.stopped == cb::Outcome::kCorrupt) return 3;
      lost += result.lost;
      delivered += result.delivered;
    }
    if (bad != 0) return 1;
    return delivered + lost == kCount && lost == reader.Lost() && delivered == reader.Delivered() ? 0 : 2;
  });
  ASSERT_EQ(ready.Receive(), '.');
  for (std::uint64_t s = 0; s < kCount; ++s) w.Write(Message(s, 1 + s % 300));
  EXPECT_EQ(reader_process.Wait(), 0);
}

TEST(RingApi, SkipPassesOverAMessageTooLargeForTheBufferAndCountsItApart) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  w.Write(Message(0, 1000));
  w.Write(Message(1, 10));
  std::vector<std::byte> small(64);
  ASSERT_EQ(reader.Read(small), cb::kBufferTooSmall);
  EXPECT_EQ(reader.Skip(), 1000);
  EXPECT_EQ(reader.Stats().skipped, 1U);
  EXPECT_EQ(reader.Read(small), 10);
  EXPECT_TRUE(Matches(1, std::span(small).first(10)));
  EXPECT_EQ(reader.Skip(), cb::kEmpty);
  cb::ReaderStats const stats = reader.Stats();
  EXPECT_EQ(stats.delivered + stats.lost + stats.skipped, 2U);
  EXPECT_EQ(reader.Lost(), 0U);
}

TEST(RingApi, BacklogCountsWhatTheReaderHasNotReadYet) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  EXPECT_EQ(reader.Backlog().messages, 0U);
  EXPECT_EQ(reader.Backlog().bytes, 0U);
  for (std::uint64_t s = 0; s < 5; ++s) w.Write(Message(s, 100));  // 112-byte records
  EXPECT_EQ(reader.Backlog().messages, 5U);
  EXPECT_EQ(reader.Backlog().bytes, 5U * 112U);
  std::vector<std::byte> buf(200);
  ASSERT_EQ(reader.Read(buf), 100);
  EXPECT_EQ(reader.Backlog().messages, 4U);
  EXPECT_EQ(reader.Backlog().bytes, 4U * 112U);
}

TEST(RingApi, WriterStatsCountMessagesBytesAndLaps) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  for (std::uint64_t s = 0; s < 100; ++s) w.Write(Message(s, 100));
  cb::WriterStats const stats = w.Stats();
  EXPECT_EQ(stats.messages, 100U);
  EXPECT_EQ(stats.bytes, 100U * 100U);
  EXPECT_EQ(stats.laps, 2U);  // 100 records of 112 bytes (and padding) in 4096: 2.7 laps
  EXPECT_FALSE(stats.took_over);
}

// An aborted or abandoned claim leaves nothing a reader can see, also a
// reader in another process; a committed one publishes.
TEST(RingApi, ScopedClaimAbortedOrAbandonedPublishesNothing) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  {
    cb::Writer::ScopedClaim claim = w.ClaimScoped(100);
    std::span<std::byte> const bytes = claim.Bytes();
    ASSERT_EQ(bytes.size(), 100U);
    circbuf::test::Fill(7, bytes);
    claim.Abort();
  }
  {
    cb::Writer::ScopedClaim claim = w.ClaimScoped(50);
    circbuf::test::Fill(8, claim.Bytes());
  }  // destroyed without Commit: aborted
  {
    cb::Writer::ScopedClaim claim = w.ClaimScoped(64);
    circbuf::test::Fill(0, claim.Bytes());
    claim.Commit(40);
  }
  Child reader_process([&] {
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
    std::vector<std::byte> buf(200);
    if (reader.Read(buf) != 40 || !Matches(0, std::span(buf).first(40))) return 1;
    return reader.Read(buf) == cb::kEmpty ? 0 : 2;
  });
  EXPECT_EQ(reader_process.Wait(), 0);
  EXPECT_EQ(w.NextSequence(), 1U);
  EXPECT_EQ(w.Stats().messages, 1U);
}

TEST(RingApi, AStaleScopedClaimCannotCommit) {
  RingName r;
  cb::Writer w(SpecOf(r, 65536));
  cb::Writer::ScopedClaim first = w.ClaimScoped(10);
  cb::Writer::ScopedClaim second = w.ClaimScoped(10);  // abandons the first
  std::string const error = ErrorOf<std::logic_error>([&] { first.Commit(); });
  EXPECT_NE(error.find("abandoned"), std::string::npos) << error;
  second.Commit();
  cb::Writer::ScopedClaim moved = w.ClaimScoped(10);
  cb::Writer::ScopedClaim target(std::move(moved));
  target.Commit(5);
  EXPECT_EQ(w.NextSequence(), 2U);
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(64);
  EXPECT_EQ(reader.Read(buf), 10);
  EXPECT_EQ(reader.Read(buf), 5);
}

TEST(RingApi, ReaderStatsCountCorruptOutcomes) {
  RingName r;
  cb::Writer w(SpecOf(r, 4096));
  w.Write(Message(0, 100));
  cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(200);
  ASSERT_EQ(reader.Read(buf), 100);
  w.Write(Message(1, 100));
  // Another process changes the length of the next record to 2 bytes more
  // than the ring allows: corrupt, and counted.
  Child changer([&] {
    int const fd = ::open(("/dev/shm" + cb::DataSegmentName(r.name)).c_str(), O_RDWR | O_CLOEXEC);
    std::uint64_t header = 0;
    auto const at = static_cast<off_t>(circbuf::kMinPageSize + 112);
    if (fd < 0 || ::pread(fd, &header, 8, at) != 8) return 1;
    header = (header & ~std::uint64_t{0xffff}) | (reader.MaxMessageSize() + 2);
    return ::pwrite(fd, &header, 8, at) == 8 ? 0 : 2;
  });
  ASSERT_EQ(changer.Wait(), 0);
  EXPECT_EQ(reader.Read(buf), cb::kCorrupt);
  EXPECT_EQ(reader.Read(buf), cb::kCorrupt);
  EXPECT_EQ(reader.Stats().corrupt, 2U);
}

// Moves of live handles: a reader keeps its cursor and counters, a writer
// keeps the ring and its lock, and a moved-from one leaves both alone when
// it is destroyed. A reader process sees every message, before and after.
TEST(RingApi, MovedReadersAndWritersKeepTheirRingAndState) {
  RingName r;
  Pipe ready;
  Pipe go;
  std::optional<cb::Writer> holder;
  {
    cb::Writer first(SpecOf(r, 65536));
    first.Write(Message(0, 10));
    holder.emplace(std::move(first));
  }  // the moved-from Writer is destroyed here: the ring stays open and locked
  cb::Writer& w = *holder;
  Child reader_process([&] {
    cb::Reader reader(SpecOf(r, 0), {.start = cb::StartAt::kOldest});
    if (reader.GetWriterStatus() != cb::WriterStatus::kAlive) return 1;
    ready.Send();
    std::vector<std::byte> buf(64);
    for (std::uint64_t s = 0; s < 20; ++s) {
      int n = 0;
      while ((n = reader.Read(buf)) == cb::kEmpty) (void)reader.Wait(std::chrono::seconds(10));
      if (n != 10 || !Matches(s, std::span(buf).first(10))) return 2;
    }
    return 0;
  });
  ASSERT_EQ(ready.Receive(), '.');
  EXPECT_EQ(ErrorOf<std::system_error>([&] { cb::Writer second(SpecOf(r, 65536)); }).find("already has a live writer"),
            0U + std::string("ring \"" + r.name + "\" ").size());
  std::vector<cb::Reader> readers;
  readers.reserve(5);
  for (int i = 0; i < 5; ++i) readers.emplace_back(SpecOf(r, 0), cb::ReaderOptions{.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(64);
  ASSERT_EQ(readers[0].Read(buf), 10);  // message 0
  for (std::uint64_t s = 1; s < 20; ++s) w.Write(Message(s, 10));
  cb::Reader moved(std::move(readers[0]));
  readers.erase(readers.begin());  // move-assigns the others down
  EXPECT_EQ(moved.Delivered(), 1U);
  for (std::uint64_t s = 1; s < 20; ++s) {
    ASSERT_EQ(moved.Read(buf), 10);
    EXPECT_TRUE(Matches(s, std::span(buf).first(10)));
  }
  for (cb::Reader& other : readers) {
    for (std::uint64_t s = 0; s < 20; ++s) ASSERT_EQ(other.Read(buf), 10);
    EXPECT_EQ(other.Read(buf), cb::kEmpty);
  }
  EXPECT_EQ(reader_process.Wait(), 0);
  holder.reset();  // now the ring is closed
  EXPECT_EQ(moved.GetWriterStatus(), cb::WriterStatus::kClosed);
}

}  // namespace
