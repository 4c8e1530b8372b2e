// The ring across real processes: stress with byte-for-byte checks and exact
// loss accounting, SIGKILLed readers and writers, take-over, blocking waits.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::Fill;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;
using circbuf::test::SizeOf;
using circbuf::test::WakeWord;
using namespace std::chrono_literals;

namespace {

// Results that children report to the parent through anonymous shared memory.
struct Tally {
  std::atomic<std::uint64_t> delivered;
  std::atomic<std::uint64_t> lost;
  std::atomic<std::uint64_t> laps;
  std::atomic<std::uint64_t> bad;  // wrong size, wrong bytes, out of order, kCorrupt
  std::atomic<std::uint64_t> next;  // reader's NextSequence at the end
};

template <class T>
T* SharedAnonymous(std::size_t count = 1) {
  void* p = ::mmap(nullptr, sizeof(T) * count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  return new (p) T[count]();
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

std::uint64_t EnvOr(char const* name, std::uint64_t fallback) {
  char const* v = std::getenv(name);
  return v != nullptr ? std::strtoull(v, nullptr, 10) : fallback;
}

// Reads until it has accounted for `total` messages (delivered + lost), checking
// every delivered byte. `pause` slows it down so that it gets lapped.
int ReadAll(cb::Spec const& spec, std::uint64_t total, Tally& t, Pipe& ready, std::chrono::microseconds pause,
            int pause_every) {
  cb::Reader reader(spec, {.start = cb::StartAt::kOldest});
  ready.Send();
  std::vector<std::byte> buf(65535);
  auto const deadline = std::chrono::steady_clock::now() + 300s;
  std::uint64_t count = 0;
  while (reader.NextSequence() < total) {
    int const n = reader.Read(buf);
    if (n > 0) {
      std::uint64_t const seq = reader.NextSequence() - 1;
      if (static_cast<std::size_t>(n) != SizeOf(seq, reader.MaxMessageSize()) ||
          !Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n)))) {
        t.bad.fetch_add(1);
      }
      if (pause.count() > 0 && ++count % pause_every == 0) std::this_thread::sleep_for(pause);
    } else if (n == cb::kLapped) {
      t.laps.fetch_add(1);
    } else if (n == cb::kEmpty) {
      (void)reader.Wait(5ms);
    } else {
      t.bad.fetch_add(1);
      return 3;
    }
    if (std::chrono::steady_clock::now() > deadline) return 4;
  }
  t.delivered = reader.Delivered();
  t.lost = reader.Lost();
  t.next = reader.NextSequence();
  return 0;
}

// Writes messages first .. first+count-1, half through Write and half through
// Claim/Commit, with contents that any reader can check.
void WriteRange(cb::Writer& w, std::uint64_t first, std::uint64_t count) {
  std::vector<std::byte> buf(65535);
  for (std::uint64_t seq = first; seq < first + count; ++seq) {
    std::size_t const n = SizeOf(seq, w.MaxMessageSize());
    if (seq % 2 == 0) {
      Fill(seq, std::span(buf.data(), n));
      w.Write(std::span(buf.data(), n));
    } else {
      Fill(seq, w.Claim(n));
      w.Commit(n);
    }
  }
}

}  // namespace

// One writer and four readers in five processes (one reader slow enough to
// be lapped many times), plus a fifth reader SIGKILLed in the middle. Every
// delivered byte is checked; every reader accounts for every message.
TEST(RingProcesses, StressEveryByteCheckedAndLossExact) {
  RingName r;
  // Sanitized builds run 5-10 times slower: fewer messages, same checks.
  std::uint64_t const total = EnvOr("CIRCBUF_STRESS_MESSAGES", kSanitized ? 60'000 : 200'000);
  auto const spec = cb::Spec::Make(r.name, 4 << 20);
  constexpr int kReaders = 4;
  auto* tally = SharedAnonymous<Tally>(kReaders);
  Pipe writer_ready;
  Pipe go;
  Pipe readers_ready;
  Pipe victim_ready;
  Child writer([&] {
    cb::Writer w(spec);
    writer_ready.Send();
    if (go.Receive() != '.') return 1;
    WriteRange(w, 0, total);
    return 0;
  });
  ASSERT_EQ(writer_ready.Receive(), '.');
  std::vector<std::unique_ptr<Child>> readers;
  for (int i = 0; i < kReaders; ++i) {
    bool const slow = i == kReaders - 1;
    readers.push_back(std::make_unique<Child>(
        [&, i, slow] { return ReadAll(spec, total, tally[i], readers_ready, slow ? 200us : 0us, 50); }));
  }
  auto* victim_tally = SharedAnonymous<Tally>();
  Child victim([&] { return ReadAll(spec, total, *victim_tally, victim_ready, 0us, 1); });
  for (int i = 0; i < kReaders; ++i) ASSERT_EQ(readers_ready.Receive(), '.');
  ASSERT_EQ(victim_ready.Receive(), '.');
  go.Send();
  std::this_thread::sleep_for(50ms);
  victim.Kill(SIGKILL);  // mid-read, most likely: changes nothing for the others
  EXPECT_EQ(victim.Wait(), 128 + SIGKILL);
  EXPECT_EQ(writer.Wait(300s), 0);
  for (int i = 0; i < kReaders; ++i) {
    SCOPED_TRACE("reader " + std::to_string(i));
    EXPECT_EQ(readers[i]->Wait(300s), 0);
    EXPECT_EQ(tally[i].bad.load(), 0U);
    EXPECT_EQ(tally[i].next.load(), total);
    EXPECT_EQ(tally[i].delivered.load() + tally[i].lost.load(), total);
    std::printf("reader %d: delivered %llu, lost %llu in %llu laps\n", i,
                static_cast<unsigned long long>(tally[i].delivered.load()),
                static_cast<unsigned long long>(tally[i].lost.load()),
                static_cast<unsigned long long>(tally[i].laps.load()));
  }
  EXPECT_GT(tally[kReaders - 1].laps.load(), 0U) << "the slow reader was never lapped";
  EXPECT_GT(tally[kReaders - 1].lost.load(), 0U);
}

TEST(RingProcesses, WriterKilledMidClaimShowsNothingTornAndANewWriterTakesOver) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 4 << 20);  // the 100 messages fit without a lap
  cb::Reader* reader = nullptr;
  Pipe created;
  Pipe claimed;
  Child writer([&]() -> int {
    cb::Writer w(spec);
    created.Send();
    WriteRange(w, 0, 100);
    auto slot = w.Claim(1000);
    std::memset(slot.data(), 0xEE, 500);  // half-written, never committed
    claimed.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(created.Receive(), '.');
  reader = new cb::Reader(spec, {.start = cb::StartAt::kOldest});
  ASSERT_EQ(claimed.Receive(), '.');
  EXPECT_EQ(reader->GetWriterStatus(), cb::WriterStatus::kAlive);
  writer.Kill(SIGKILL);
  ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  EXPECT_EQ(reader->GetWriterStatus(), cb::WriterStatus::kDead);
  std::vector<std::byte> buf(65535);
  for (std::uint64_t seq = 0; seq < 100; ++seq) {
    int const n = reader->Read(buf);
    ASSERT_EQ(n, static_cast<int>(SizeOf(seq, reader->MaxMessageSize()))) << seq;
    ASSERT_TRUE(Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n))));
  }
  EXPECT_EQ(reader->Read(buf), cb::kEmpty);  // the claimed half-message never appears
  {
    cb::Writer heir(spec);
    EXPECT_TRUE(heir.TookOver());
    EXPECT_EQ(heir.NextSequence(), 100U);
    EXPECT_EQ(reader->GetWriterStatus(), cb::WriterStatus::kAlive);
    WriteRange(heir, 100, 10);
  }
  for (std::uint64_t seq = 100; seq < 110; ++seq) {
    int const n = reader->Read(buf);
    ASSERT_GT(n, 0) << seq;
    ASSERT_TRUE(Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n))));
  }
  EXPECT_EQ(reader->Lost(), 0U);
  EXPECT_EQ(reader->GetWriterStatus(), cb::WriterStatus::kClosed);
  delete reader;
}

// Writers are SIGKILLed at random moments (mostly in the middle of a write)
// and replaced; a reader in its own process checks every message throughout.
TEST(RingProcesses, WritersKilledAtRandomMomentsNeverTearAMessage) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 18);
  auto* tally = SharedAnonymous<Tally>();
  auto* done = SharedAnonymous<std::atomic<std::uint64_t>>();  // total written, +1; 0 while running
  auto first = std::make_unique<cb::Writer>(spec);  // keeps the ring until the reader holds it
  Pipe ready;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kOldest});
    ready.Send();
    std::vector<std::byte> buf(65535);
    auto const deadline = std::chrono::steady_clock::now() + 90s;
    for (;;) {
      if (std::chrono::steady_clock::now() > deadline) return 5;  // stuck: report, never hang
      int const n = rd.Read(buf);
      if (n > 0) {
        std::uint64_t const seq = rd.NextSequence() - 1;
        if (!Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n)))) tally->bad.fetch_add(1);
      } else if (n == cb::kLapped) {
        tally->laps.fetch_add(1);
      } else if (n == cb::kEmpty) {
        std::uint64_t const total = done->load();
        if (total != 0 && rd.NextSequence() == total - 1) break;
        (void)rd.Wait(1ms);
      } else {
        tally->bad.fetch_add(1);
        return 3;
      }
    }
    tally->delivered = rd.Delivered();
    tally->lost = rd.Lost();
    tally->next = rd.NextSequence();
    return 0;
  });
  ASSERT_EQ(ready.Receive(), '.');
  first.reset();
  std::mt19937 rng(12345);
  for (int round = 0; round < 30; ++round) {
    Pipe started;
    Child writer([&]() -> int {
      cb::Writer w(spec);
      started.Send();
      for (std::uint64_t seq = w.NextSequence();; ++seq) WriteRange(w, seq, 1);
    });
    ASSERT_EQ(started.Receive(), '.') << "round " << round << ": writer exited with " << writer.Wait(1s);
    std::this_thread::sleep_for(std::chrono::microseconds(1000 + rng() % 20000));
    writer.Kill(SIGKILL);
    ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  }
  std::uint64_t total = 0;
  {
    cb::Writer last(spec);
    EXPECT_TRUE(last.TookOver());
    total = last.NextSequence();
  }
  done->store(total + 1);
  ASSERT_EQ(reader.Wait(100s), 0) << "reader stopped at sequence " << tally->next.load() << " of " << total;
  EXPECT_EQ(tally->bad.load(), 0U);
  EXPECT_EQ(tally->next.load(), total);
  EXPECT_EQ(tally->delivered.load() + tally->lost.load(), total);
  EXPECT_GT(total, 0U);
}

TEST(RingProcesses, BlockingWaitSleepsUntilAMessageAndTimesOut) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  Pipe timed_out;
  Pipe got;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kNext});
    auto const start = std::chrono::steady_clock::now();
    if (rd.Wait(20ms) != cb::WaitResult::kTimeout) return 1;      // nothing written: times out
    if (std::chrono::steady_clock::now() - start < 20ms) return 2;  // ... after waiting
    timed_out.Send();
    if (rd.Wait(30s) != cb::WaitResult::kReady) return 3;  // asleep in the futex until the writer publishes
    std::vector<std::byte> buf(100);
    if (rd.Read(buf) != 42 || !Matches(7, std::span(buf.data(), 42))) return 4;
    got.Send();
    return 0;
  });
  ASSERT_EQ(timed_out.Receive(), '.');
  std::this_thread::sleep_for(100ms);  // let it fall asleep
  EXPECT_EQ(WakeWord(r.name) & 1, 1U) << "a sleeping reader arms the wake word";
  w.Write(Message(7, 42));
  ASSERT_EQ(got.Receive(5s), '.');
  EXPECT_EQ(reader.Wait(), 0);
  EXPECT_EQ(WakeWord(r.name) & 1, 0U) << "the writer's wake disarms it";
}

TEST(RingProcesses, ReaderMapsTheDataReadOnly) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  w.Write(Message(0, 64));
  Child faulty([&] {
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &dfl, nullptr);  // sanitizers install their own handler
    cb::Reader rd(spec);
    (void)rd.ReadInPlace([](std::span<std::byte const> view) {
      // The point of the test: a write through the read-only view must fault.
      const_cast<std::byte&>(view[0]) = std::byte{0xFF};  // NOLINT(cppcoreguidelines-pro-type-const-cast)
    });
    return 0;
  });
  EXPECT_EQ(faulty.Wait(), 128 + SIGSEGV);
  cb::Reader rd(spec);
  std::vector<std::byte> buf(64);
  ASSERT_EQ(rd.Read(buf), 64);
  EXPECT_TRUE(Matches(0, buf));
}

TEST(RingProcesses, ReaderCanWaitForTheRingToAppear) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  Pipe waiting;
  Child reader([&] {
    waiting.Send();
    cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 10s});
    if (rd.Wait(10s) != cb::WaitResult::kReady) return 1;
    std::vector<std::byte> buf(64);
    return rd.Read(buf) == 10 && Matches(0, std::span(buf.data(), 10)) ? 0 : 2;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  std::this_thread::sleep_for(100ms);
  cb::Writer w(spec);
  w.Write(Message(0, 10));
  EXPECT_EQ(reader.Wait(), 0);
}

TEST(RingProcesses, SecondWriterInAnotherProcessIsRefusedWithItsPid) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  Child second([&] {
    try {
      cb::Writer again(spec);
    } catch (std::system_error const& e) {
      std::string const what = e.what();
      return e.code().value() == EBUSY && what.find("pid " + std::to_string(::getppid())) != std::string::npos ? 0 : 2;
    }
    return 1;
  });
  EXPECT_EQ(second.Wait(), 0);
}

// A refused attach leaves the ring as it found it: a reader that meets a ring
// of another layout version, left by a writer that died, must not unlink it
// (it was the last one out of the segments, but it never accepted them).
TEST(RingProcesses, RefusedAttachNeverUnlinksTheRing) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  Pipe created;
  Child writer([&]() -> int {
    cb::Writer w(spec);
    w.Write(Message(0, 10));
    created.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(created.Receive(), '.');
  writer.Kill(SIGKILL);
  ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  // A "newer" writer's ring: layout version 3, written into the file directly
  // (State::version is at offset 8 of the user region, which starts at 4096).
  int const fd = ::open(("/dev/shm" + r.name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::uint32_t const version = cb::kRingVersion + 1;
  ASSERT_EQ(::pwrite(fd, &version, sizeof version, 4096 + 8), static_cast<ssize_t>(sizeof version));
  ::close(fd);
  EXPECT_THROW(cb::Reader reader(spec), std::invalid_argument);
  EXPECT_THROW(cb::Writer again(spec), std::invalid_argument);
  EXPECT_TRUE(circbuf::test::ShmFileExists(r.name));
  EXPECT_TRUE(circbuf::test::ShmFileExists(circbuf::CircularBuffer::DataSegmentName(r.name)));
}

// A writer SIGKILLed after claiming a record that wraps (padding) and
// reaches past every committed record (found by circbuf-torture): the frontier
// then says that no committed record is intact. A lapped reader has nothing
// to read -- kEmpty, not kCorrupt -- until a new writer takes over and
// writes; then it counts exactly the messages it lost.
TEST(RingProcesses, ClaimPastEveryRecordThenWriterKilledReaderWaitsAndHeirContinues) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 8192);  // chunk 1024, largest message 3568
  Pipe created;
  Pipe go;
  Pipe claimed;
  Child writer([&]() -> int {
    cb::Writer w(spec);
    created.Send();
    if (go.Receive() != '.') return 1;
    w.Write(Message(0, 3000));  // positions 0 .. 3008
    w.Write(Message(1, 2000));  // 3008 .. 5016
    // 3576 more bytes do not fit before 8192: padding, then the record at
    // 8192; the frontier moves to 12288, past both records (+ 8192).
    auto slot = w.Claim(3568);
    std::memset(slot.data(), 0xEE, slot.size());  // overwrites both in place
    claimed.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(created.Receive(), '.');
  cb::Reader reader(spec, {.start = cb::StartAt::kOldest});
  go.Send();
  ASSERT_EQ(claimed.Receive(), '.');
  writer.Kill(SIGKILL);
  ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  std::vector<std::byte> buf(65535);
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);  // nothing intact to read: not corrupt
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
  {
    cb::Writer heir(spec);  // takes over although no committed record is intact
    EXPECT_TRUE(heir.TookOver());
    EXPECT_EQ(heir.NextSequence(), 2U);
    WriteRange(heir, 2, 3);
  }
  EXPECT_EQ(reader.Read(buf), cb::kLapped);
  EXPECT_EQ(reader.LastLoss(), 2U);
  for (std::uint64_t seq = 2; seq < 5; ++seq) {
    int const n = reader.Read(buf);
    ASSERT_EQ(n, static_cast<int>(SizeOf(seq, reader.MaxMessageSize()))) << seq;
    EXPECT_TRUE(Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n))));
  }
  EXPECT_EQ(reader.Read(buf), cb::kEmpty);
  EXPECT_EQ(reader.Delivered() + reader.Lost(), 5U);
}

// The last process out of a ring unlinks NAME.data, then NAME. One SIGKILLed
// in between (found by circbuf-torture) leaves the state without its data; a
// writer that attached the state then created an empty data segment and
// refused the ring: "corrupt state: records from position X end at X + 8192,
// not at tail". It must start the data afresh and continue the sequence.
TEST(RingProcesses, StateWithoutItsDataSegmentIsTakenOverWithFreshData) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 8192);
  Pipe wrote;
  Child writer([&]() -> int {
    cb::Writer w(spec);
    WriteRange(w, 0, 100);  // several laps
    wrote.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(wrote.Receive(), '.');
  writer.Kill(SIGKILL);
  ASSERT_EQ(writer.Wait(), 128 + SIGKILL);
  ASSERT_TRUE(circbuf::SharedMemory::Remove(
      circbuf::CircularBuffer::DataSegmentName(r.name)));  // the last one out, killed before NAME
  cb::Writer heir(spec);
  EXPECT_EQ(heir.NextSequence(), 100U);
  cb::Reader early(spec, {.start = cb::StartAt::kOldest});
  WriteRange(heir, 100, 20);
  cb::Reader late(spec, {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(65535);
  for (cb::Reader* reader : {&early, &late}) {
    std::uint64_t delivered = 0;
    for (int n = reader->Read(buf); n != cb::kEmpty; n = reader->Read(buf)) {
      if (n == cb::kLapped) continue;
      ASSERT_GT(n, 0);
      std::uint64_t const seq = reader->NextSequence() - 1;
      EXPECT_GE(seq, 100U);
      EXPECT_TRUE(Matches(seq, std::span(buf.data(), static_cast<std::size_t>(n)))) << seq;
      ++delivered;
    }
    EXPECT_EQ(reader->NextSequence(), 120U);
    EXPECT_GT(delivered, 0U);
  }
}

// Regression (issue 13): ~Writer had no owner check, so a forked child that
// destroyed its copy of the parent's Writer marked the ring closed and
// dropped the OFD lock it shares with the parent: a second writer could then
// attach while the parent still wrote. Now the child's destructor changes
// nothing shared.
TEST(RingProcesses, AForkedChildDestroyingTheWritersCopyChangesNothing) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  auto w = std::make_unique<cb::Writer>(spec);
  w->Write(Message(0, 32));
  Child child([&] {
    w.reset();  // the child's copy of the parent's Writer
    return 0;
  });
  ASSERT_EQ(child.Wait(), 0);
  cb::Reader rd(spec);
  EXPECT_EQ(rd.GetWriterStatus(), cb::WriterStatus::kAlive) << "the ring must not look closed";
  try {
    cb::Writer second(spec);
    ADD_FAILURE() << "a second writer attached while the first still holds the ring";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code().value(), EBUSY) << e.what();
  }
  w->Write(Message(1, 32));
  std::vector<std::byte> buf(64);
  EXPECT_EQ(rd.Read(buf), 32);
}
