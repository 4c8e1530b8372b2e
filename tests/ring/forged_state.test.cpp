// A control segment (the State of segment NAME) changed by another process:
// whatever it says, a reader never delivers a message that the writer did
// not write as that message, never moves backwards, never delivers one twice
// (docs/threat-model.md, "The control segment"). The changes are made by a
// separate process that maps NAME read-write, as a hostile or buggy
// neighbour would; the messages are the suite's deterministic ones
// (ring/support.hpp), so each delivered message is checked byte for byte
// against what the writer wrote as the sequence number the reader reports.
//
// Both recipes below delivered 40 bytes that were never a message before
// resynchronisation points became verifiable (index entries carry the
// sequence number they point at; latest is checked against tail and the
// State's sequence), and the random writes delivered fakes and repeats.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::kMinPageSize;
using circbuf::test::Child;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;
using circbuf::test::SizeOf;
using namespace std::chrono_literals;

namespace {

// The State of ring `name`, mapped read-write by this process.
class RawState {
 public:
  explicit RawState(std::string const& name) {
    int const fd = ::shm_open(name.c_str(), O_RDWR, 0);
    if (fd < 0) throw std::runtime_error("shm_open " + name);
    base_ = ::mmap(nullptr, kMinPageSize + sizeof(cb::State), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap " + name);
  }
  ~RawState() { ::munmap(base_, kMinPageSize + sizeof(cb::State)); }
  RawState(RawState const&) = delete;
  RawState& operator=(RawState const&) = delete;

  cb::State& State() { return *reinterpret_cast<cb::State*>(static_cast<std::byte*>(base_) + kMinPageSize); }
  static std::atomic_ref<std::uint64_t> Word(std::uint64_t& field) { return std::atomic_ref<std::uint64_t>(field); }

 private:
  void* base_ = nullptr;
};

// Runs `edit` on the State of `name` in a separate process.
int EditInAnotherProcess(std::string const& name, std::function<void(RawState&)> const& edit) {
  Child editor([&] {
    RawState raw(name);
    edit(raw);
    return 0;
  });
  return editor.Wait();
}

// What a reader must never do, counted.
struct Verdict {
  std::uint64_t delivered = 0;
  std::uint64_t wrong = 0;     // not what the writer wrote as that sequence number
  std::uint64_t backwards = 0;  // a sequence number not above the previous one
  std::string first;           // the first violation, described
};

// Reads what is there now and checks each message; stops at kEmpty after
// `empties` empty reads in a row.
void Check(cb::Reader& reader, Verdict& v, std::size_t max, int empties = 1) {
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  bool have_previous = v.delivered != 0;
  std::uint64_t previous = reader.NextSequence() - 1;
  for (int empty = 0; empty < empties;) {
    int const n = reader.Read(buf);
    if (n <= 0) {
      if (n == cb::kEmpty || n == cb::kCorrupt) ++empty;
      continue;
    }
    empty = 0;
    std::uint64_t const seq = reader.NextSequence() - 1;
    ++v.delivered;
    std::span<std::byte const> const got(buf.data(), static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) != SizeOf(seq, max) || !Matches(seq, got)) {
      if (v.wrong++ == 0 && v.first.empty()) {
        v.first = std::to_string(n) + " bytes delivered as sequence " + std::to_string(seq) +
                  " are not what the writer wrote as it";
      }
    }
    if (have_previous && seq <= previous) {
      if (v.backwards++ == 0 && v.first.empty()) {
        v.first = "sequence " + std::to_string(seq) + " delivered after " + std::to_string(previous);
      }
    }
    have_previous = true;
    previous = seq;
  }
}

void Write(cb::Writer& w, std::uint64_t count, std::size_t max) {
  for (std::uint64_t i = 0; i < count; ++i) {
    std::uint64_t const seq = w.NextSequence();
    w.Write(Message(seq, SizeOf(seq, max)));
  }
}

constexpr std::uint64_t kCapacity = 65536;

}  // namespace

// Recipe 1 of the issue: latest moved forward by 8 bytes (into the payload
// of the newest record), then a reader attaches at kLatest. The word it then
// found at latest was the payload's first word (the sequence number: a
// plausible header of a short message), and it delivered it.
TEST(ForgedState, LatestMovedIntoAPayloadDeliversNothingFake) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Write(w, 1000, 200);
  ASSERT_EQ(EditInAnotherProcess(r.name, [](RawState& raw) { raw.Word(raw.State().latest).fetch_add(8); }), 0);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kLatest});
  Verdict v;
  Check(reader, v, 200);
  Write(w, 100, 200);
  Check(reader, v, 200);
  EXPECT_EQ(v.wrong, 0U) << v.first;
  EXPECT_EQ(v.backwards, 0U) << v.first;
  EXPECT_GE(v.delivered, 100U) << "the messages written after the change were not all delivered";
}

// Recipe 2: limit moved forward one chunk and the oldest index entry moved
// forward by 8 bytes. A reader that is behind is lapped (a spurious loss: the
// threat model allows that) and resynchronised through the index; it took
// the entry's word as a header and delivered it.
TEST(ForgedState, IndexEntryMovedIntoAPayloadDeliversNothingFake) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Write(w, 1000, 200);  // about 2.5 laps of 64 KiB
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  std::uint64_t const chunk = kCapacity / cb::kChunks;
  ASSERT_EQ(EditInAnotherProcess(r.name,
                                 [&](RawState& raw) {
                                   cb::State& s = raw.State();
                                   std::uint64_t const limit = raw.Word(s.limit).load() + chunk;
                                   raw.Word(s.limit).store(limit);
                                   // The entry a lapped reader looks at first: the boundary at limit - capacity.
                                   std::uint64_t const b = limit - kCapacity;
                                   raw.Word(s.index[(b / chunk) % cb::kChunks]).fetch_add(8);
                                 }),
            0);
  Verdict v;
  Check(reader, v, 200);
  Write(w, 100, 200);
  Check(reader, v, 200);
  EXPECT_EQ(v.wrong, 0U) << v.first;
  EXPECT_EQ(v.backwards, 0U) << v.first;
  EXPECT_GE(v.delivered, 100U);
}

// An index entry moved (one field) onto the first payload word of a
// message, which the suite's messages fill with their sequence number: a
// small integer, so a plausible header of sequence 0, which is what the
// entry's untouched sequence number says. Found by fuzz_forged; the reader
// delivered 5 bytes of message 5 as message 0 until index entries got a
// check word.
TEST(ForgedState, IndexEntryMovedOntoASmallIntegerPayloadWordDeliversNothingFake) {
  for (cb::StartAt const start : {cb::StartAt::kOldest, cb::StartAt::kLatest, cb::StartAt::kNext}) {
    RingName r;
    cb::Writer w(cb::Spec::Make(r.name, 4096));
    Write(w, 18, 120);
    cb::Reader scout(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    std::uint64_t at = 0;
    for (;;) {
      int const n = scout.Read(buf);
      ASSERT_GT(n, 0);
      at = scout.Position() - cb::RecordBytes(static_cast<std::size_t>(n));
      if (scout.NextSequence() - 1 == 5) break;
    }
    ASSERT_GT(SizeOf(5, 120), 8U);
    ASSERT_EQ(EditInAnotherProcess(r.name, [&](RawState& raw) { raw.Word(raw.State().index[0]).store(at + 8); }), 0);
    cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = start});
    Verdict v;
    Check(reader, v, 120);
    Write(w, 20, 120);
    Check(reader, v, 120);
    EXPECT_EQ(v.wrong, 0U) << "start " << static_cast<int>(start) << ": " << v.first;
    EXPECT_EQ(v.backwards, 0U) << v.first;
    EXPECT_GE(v.delivered, 20U);
  }
}

// An index entry that names an older record still in the ring (one lap
// later, where the reader would find it at the same offset), with its
// sequence number, and limit and tail moved forward so that the reader is
// lapped and the entry looks current: the reader must not move backwards
// (it used to deliver that record again, with a LastLoss() near 2^48).
TEST(ForgedState, IndexEntryNamingAnOlderRecordDeliversNothingTwice) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Write(w, 1000, 200);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  Verdict v;
  Check(reader, v, 200);  // caught up
  std::uint64_t const c = reader.Position();
  // An older record R, about half a ring behind the reader, found by a
  // second reader: its position and sequence number.
  cb::Reader scout(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  std::uint64_t at = 0;
  std::uint64_t seq = 0;
  for (;;) {
    int const n = scout.Read(buf);
    ASSERT_GT(n, 0);
    at = scout.Position() - cb::RecordBytes(static_cast<std::size_t>(n));
    seq = scout.NextSequence() - 1;
    if (at >= c - kCapacity / 2) break;
  }
  ASSERT_LT(seq + 1, reader.NextSequence());
  std::uint64_t const chunk = kCapacity / cb::kChunks;
  std::uint64_t const limit = (c + kCapacity) / chunk * chunk + chunk;  // laps the reader by one chunk or less
  std::uint64_t const low = limit - kCapacity;  // where a lapped reader looks first
  ASSERT_GE(at + kCapacity, low);
  ASSERT_EQ(EditInAnotherProcess(r.name,
                                 [&](RawState& raw) {
                                   cb::State& s = raw.State();
                                   std::size_t const k = (low / chunk) % cb::kChunks;
                                   // A forger who also writes the check word: the rules below it hold.
                                   raw.Word(s.index_sequence[k]).store(seq);
                                   raw.Word(s.index_check[k]).store(cb::IndexCheck(at + kCapacity, seq));
                                   raw.Word(s.index[k]).store(at + kCapacity);
                                   raw.Word(s.tail).store(c + kCapacity);
                                   raw.Word(s.limit).store(limit);
                                 }),
            0);
  Check(reader, v, 200);
  Write(w, 200, 200);  // puts limit (the writer moves it a chunk or more) and tail right again
  Check(reader, v, 200);
  EXPECT_EQ(v.wrong, 0U) << v.first;
  EXPECT_EQ(v.backwards, 0U) << v.first;
  EXPECT_LT(reader.Lost(), std::uint64_t{1} << 32) << "a loss counted backwards";
  EXPECT_GE(v.delivered, 100U);
}

// The same older record, claimed 2^48 messages later and 2^52 bytes ahead
// (so that the gap fits the distance, and the headers' 48 bits match): a
// delivered message renumbered, not a new one. Found by review of the
// distance bound; a gap of 2^47 or more is refused.
TEST(ForgedState, OlderRecordRenumberedByTwoToTheFortyEightIsNotDeliveredAgain) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Write(w, 1000, 200);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  Verdict v;
  Check(reader, v, 200);  // caught up
  cb::Reader scout(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  ASSERT_GT(scout.Read(buf), 0);
  std::uint64_t const at = scout.Position() - cb::RecordBytes(SizeOf(scout.NextSequence() - 1, 200));
  std::uint64_t const seq = scout.NextSequence() - 1;
  std::uint64_t const chunk = kCapacity / cb::kChunks;
  std::uint64_t const far = (std::uint64_t{1} << 52) + 32 * kCapacity;  // so that 2^48 messages fit the distance
  std::uint64_t const limit = (reader.Position() + far) / chunk * chunk;
  std::uint64_t const low = limit - kCapacity;
  std::uint64_t const claimed =
      low + (at - low % kCapacity + kCapacity) % kCapacity;  // at's offset, in [low, low + capacity)
  ASSERT_EQ(claimed % kCapacity, at % kCapacity);
  ASSERT_EQ(
      EditInAnotherProcess(r.name,
                           [&](RawState& raw) {
                             cb::State& s = raw.State();
                             std::size_t const k = (low / chunk) % cb::kChunks;
                             raw.Word(s.index_sequence[k]).store(seq + (std::uint64_t{1} << 48));
                             raw.Word(s.index_check[k]).store(cb::IndexCheck(claimed, seq + (std::uint64_t{1} << 48)));
                             raw.Word(s.index[k]).store(claimed);
                             raw.Word(s.tail).store(limit);
                             raw.Word(s.limit).store(limit);
                           }),
      0);
  Check(reader, v, 200);
  EXPECT_EQ(v.wrong, 0U) << v.first;
  EXPECT_EQ(v.backwards, 0U) << v.first;
  EXPECT_LT(reader.Lost(), std::uint64_t{1} << 32) << "a gap of about 2^48 was counted";
}

// Random bytes written into the State at random places while a writer
// writes flat out and four readers (each its own process) read: not one
// delivered message may differ from what the writer wrote as it, and no
// reader may deliver a sequence number twice or out of order. Readers may
// report kCorrupt and spurious losses meanwhile (docs/threat-model.md).
TEST(ForgedState, RandomWritesIntoTheStateNeverDeliverAFakeOrRepeatedMessage) {
  for (std::uint64_t const capacity : {std::uint64_t{4160}, std::uint64_t{1} << 20}) {
    RingName r;
    // The ring lives while an attachment does: this process keeps one.
    std::optional<cb::Writer> creator(std::in_place, cb::Spec::Make(r.name, capacity));
    std::size_t const max = creator->MaxMessageSize();
    cb::Reader keep(cb::Spec::Make(r.name, 0));
    creator.reset();
    auto const run_for = 1500ms;
    // Everyone attaches before the scribbling starts (an attach may refuse
    // a State that is corrupt at that moment: that is not what is tested).
    Pipe attached;
    std::vector<std::unique_ptr<Child>> readers;
    readers.reserve(4);
    for (int i = 0; i < 4; ++i) {
      readers.push_back(std::make_unique<Child>([&, i] {
        cb::Reader reader(cb::Spec::Make(r.name, 0),
                          {.start = i % 2 == 0 ? cb::StartAt::kOldest : cb::StartAt::kLatest});
        attached.Send();
        Verdict v;
        auto const end = std::chrono::steady_clock::now() + run_for + 200ms;
        while (std::chrono::steady_clock::now() < end) Check(reader, v, max, 64);
        std::fprintf(stderr, "reader %d: %llu delivered, %llu lost, %llu wrong, %llu backwards%s%s\n", i,
                     static_cast<unsigned long long>(v.delivered), static_cast<unsigned long long>(reader.Lost()),
                     static_cast<unsigned long long>(v.wrong), static_cast<unsigned long long>(v.backwards),
                     v.first.empty() ? "" : ": first: ", v.first.c_str());
        return v.wrong == 0 && v.backwards == 0 && v.delivered > 0 ? 0 : 1;
      }));
    }
    for (int i = 0; i < 4; ++i) ASSERT_EQ(attached.Receive(), '.');
    Child writer([&] {
      cb::Writer w(cb::Spec::Make(r.name, capacity));
      attached.Send();
      auto const end = std::chrono::steady_clock::now() + run_for;
      while (std::chrono::steady_clock::now() < end) Write(w, 256, max);
      return 0;
    });
    ASSERT_EQ(attached.Receive(), '.');
    Child scribbler([&] {
      RawState raw(r.name);
      auto* bytes = reinterpret_cast<unsigned char*>(&raw.State());
      std::mt19937_64 random(capacity);
      auto const end = std::chrono::steady_clock::now() + run_for;
      std::uint64_t writes = 0;
      while (std::chrono::steady_clock::now() < end) {
        // 1 to 8 random bytes at a random place of the State past its header
        // line (the header is checked once, at attach; the rest is what
        // readers trust while they read).
        std::size_t const at = 128 + random() % (sizeof(cb::State) - 128 - 8);
        std::size_t const n = 1 + random() % 8;
        std::uint64_t const value = random();
        for (std::size_t k = 0; k < n; ++k) {
          std::atomic_ref<unsigned char>(bytes[at + k])
              .store(static_cast<unsigned char>(value >> (8 * k)), std::memory_order_relaxed);
        }
        ++writes;
        std::this_thread::sleep_for(20us);
      }
      std::fprintf(stderr, "scribbler: %llu writes\n", static_cast<unsigned long long>(writes));
      return 0;
    });
    EXPECT_EQ(writer.Wait(), 0);
    EXPECT_EQ(scribbler.Wait(), 0);
    for (auto& reader : readers) EXPECT_EQ(reader->Wait(), 0) << "capacity " << capacity;
  }
}

// Sequence numbers are 64-bit, and a record header holds only their low 48
// bits: a late reader and a writer that takes over must learn the high bits
// from the State (sequence, index_sequence[]). The ring is started just
// below 2^48 by putting its State into the form a ring has after its data
// segment was created anew (positions at a lap start, nothing committed,
// the sequence numbers continuing: IWrapper's reset). Before the State kept
// them, a reader attached at kLatest said NextSequence() 4 instead of
// 2^48 + 4, and a writer that took over continued at 5 instead of 2^48 + 5.
TEST(RingSequence, SixtyFourBitNumbersSurviveTakeOverAndLateJoin) {
  constexpr std::uint64_t kStart = (std::uint64_t{1} << 48) - 5;
  RingName r;
  std::optional<cb::Writer> creator(std::in_place, cb::Spec::Make(r.name, kCapacity));
  cb::Reader keep(cb::Spec::Make(r.name, 0));  // the ring lives while an attachment does
  creator.reset();
  ASSERT_EQ(EditInAnotherProcess(r.name,
                                 [&](RawState& raw) {
                                   cb::State& s = raw.State();
                                   for (std::uint64_t& e : s.index) raw.Word(e).store(cb::kNoRecord);
                                   raw.Word(s.latest).store(cb::kNoRecord);
                                   raw.Word(s.sequence).store(kStart);
                                   raw.Word(s.limit).store(3 * kCapacity);
                                   raw.Word(s.tail).store(3 * kCapacity);
                                 }),
            0);
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  auto read_one = [&](cb::Reader& reader, std::uint64_t want) {
    int const n = reader.Read(buf);
    ASSERT_GT(n, 0) << "expected sequence " << want;
    EXPECT_EQ(reader.NextSequence() - 1, want);
    EXPECT_TRUE(Matches(want, std::span<std::byte const>(buf.data(), static_cast<std::size_t>(n))));
  };
  Pipe wrote;
  Child first([&] {
    cb::Writer w(cb::Spec::Make(r.name, kCapacity));
    if (w.NextSequence() != kStart) return 10;
    for (int i = 0; i < 10; ++i) w.Write(Message(w.NextSequence(), 100));
    wrote.Send();
    for (;;) std::this_thread::sleep_for(1s);  // killed: the next writer takes over
  });
  ASSERT_EQ(wrote.Receive(), '.');
  cb::Reader oldest(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  EXPECT_EQ(oldest.NextSequence(), kStart);
  for (std::uint64_t i = 0; i < 10; ++i) read_one(oldest, kStart + i);
  cb::Reader latest(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kLatest});
  EXPECT_EQ(latest.NextSequence(), kStart + 9);
  read_one(latest, kStart + 9);
  cb::Reader next(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
  EXPECT_EQ(next.NextSequence(), kStart + 10);
  first.Kill();
  EXPECT_EQ(first.Wait(), 128 + SIGKILL);

  cb::Writer heir(cb::Spec::Make(r.name, kCapacity));
  EXPECT_TRUE(heir.TookOver());
  EXPECT_EQ(heir.NextSequence(), kStart + 10);
  heir.Write(Message(heir.NextSequence(), 100));
  read_one(next, kStart + 10);
  // Several laps, so that a late reader starts through the index.
  for (int i = 0; i < 2000; ++i) heir.Write(Message(heir.NextSequence(), 100));
  cb::Reader late(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  std::uint64_t const first_intact = late.NextSequence();
  EXPECT_GT(first_intact, kStart + 10);
  EXPECT_LT(first_intact, kStart + 2011);
  read_one(late, first_intact);
  int const lapped = oldest.Read(buf);
  EXPECT_EQ(lapped, cb::kLapped);
  EXPECT_GT(oldest.NextSequence(), kStart + 10);
  EXPECT_EQ(oldest.Delivered() + oldest.Lost(), oldest.NextSequence() - kStart);
}
