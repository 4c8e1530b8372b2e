// Hostile and corrupted rings: the test plays a hostile (or buggy) writer
// that maps the ring's segments read-write and scribbles on them, or
// shrinks them under a reader in another process. Each case must be
// reported (kCorrupt, or an exception at attach) and nothing may be read
// outside the mapping or delivered from a broken record.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/expect.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::kMinPageSize;
using circbuf::test::Child;
using circbuf::test::ErrorOf;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t kCapacity = 4096;

// The hostile side: both segment files mapped read-write, past their
// circbuf.shm header page.
class Raw {
 public:
  // The bases are declared (and zeroed) before the pointers that Map sets them with.
  explicit Raw(std::string const& name)
      : state_(static_cast<cb::State*>(Map(name, sizeof(cb::State), state_base_))),
        data_(static_cast<std::byte*>(Map(circbuf::CircularBuffer::DataSegmentName(name), kCapacity, data_base_))) {}
  ~Raw() {
    ::munmap(state_base_, kMinPageSize + sizeof(cb::State));
    ::munmap(data_base_, kMinPageSize + kCapacity);
  }
  Raw(Raw const&) = delete;
  Raw& operator=(Raw const&) = delete;

  std::uint64_t& Word(std::uint64_t offset) { return *reinterpret_cast<std::uint64_t*>(data_ + offset); }
  cb::State& State() { return *state_; }

 private:
  static void* Map(std::string const& name, std::size_t bytes, void*& base) {
    int const fd = ::shm_open(name.c_str(), O_RDWR, 0);
    if (fd < 0) throw std::runtime_error("shm_open " + name);
    base = ::mmap(nullptr, kMinPageSize + bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) throw std::runtime_error("mmap " + name);
    return static_cast<std::byte*>(base) + kMinPageSize;
  }
  void* state_base_ = nullptr;
  void* data_base_ = nullptr;
  cb::State* state_ = nullptr;
  std::byte* data_ = nullptr;
};

void Shrink(std::string const& name, off_t bytes) {
  int const fd = ::shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, bytes), 0);
  ::close(fd);
}

int ReadOne(cb::Reader& r) {
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  return r.Read(buf);
}

// Writes messages 0..count-1 of `size` bytes.
void Fill(cb::Writer& w, int count, std::size_t size) {
  for (int i = 0; i < count; ++i) w.Write(Message(static_cast<std::uint64_t>(i), size));
}

}  // namespace

// A record header whose length points past the end of the buffer, or past
// the largest message: kCorrupt, and the reader stays put (every Read says
// kCorrupt again, nothing is delivered) until the record is repaired.
TEST(HostileRing, RecordLengthOutsideTheBufferIsCorruptAndTheReaderStaysPut) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Fill(w, 4, 1000);  // records of 1008 bytes at 0, 1008, 2016, 3024
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  Raw raw(r.name);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ReadOne(reader), 1000);
  std::uint64_t const good = raw.Word(3024);
  std::uint64_t const position = reader.Position();
  for (std::uint64_t const bad : {cb::MakeHeader(3, 1500),    // 3024 + 1512 > 4096
                                  cb::MakeHeader(3, 65535),   // above MaxMessageSize (1776 here)
                                  cb::MakeHeader(7, 1000)}) {  // not the next sequence number
    raw.Word(3024) = bad;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(ReadOne(reader), cb::kCorrupt) << std::hex << bad;
    int const n =
        reader.ReadInPlace([&](std::span<std::byte const>) { ADD_FAILURE() << "a corrupt record was shown"; });
    EXPECT_EQ(n, cb::kCorrupt);
    EXPECT_EQ(reader.Position(), position);
    EXPECT_EQ(reader.Delivered(), 3U);
  }
  raw.Word(3024) = good;
  std::vector<std::byte> buf(1000);
  ASSERT_EQ(reader.Read(buf), 1000);
  EXPECT_TRUE(Matches(3, buf));
}

// A gap record (Writer::Skip) whose count or sequence bits were changed, or
// with a length: kCorrupt, the reader stays put
// and counts nothing as lost; repaired, the gap is counted once.
TEST(HostileRing, ABrokenGapRecordIsCorruptAndCountsNothing) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Fill(w, 2, 100);  // records of 8 + 104 bytes at 0 and 112
  w.Skip(5);        // the gap record at 224: header, count
  w.Write(Message(7, 100));
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  ASSERT_EQ(ReadOne(reader), 100);
  ASSERT_EQ(ReadOne(reader), 100);
  Raw raw(r.name);
  std::uint64_t const header = raw.Word(224);
  ASSERT_TRUE(cb::IsGap(header));
  ASSERT_EQ(raw.Word(232), 5U);
  struct Change {
    std::uint64_t offset;
    std::uint64_t value;
  };
  for (Change const c :
       {Change{232, 0}, Change{232, cb::kMaxGap + 1}, Change{224, cb::MakeGap(3)}, Change{224, cb::MakeGap(2) | 1}}) {
    std::uint64_t const good = raw.Word(c.offset);
    raw.Word(c.offset) = c.value;
    for (int i = 0; i < 3; ++i) EXPECT_EQ(ReadOne(reader), cb::kCorrupt) << c.offset << " " << std::hex << c.value;
    EXPECT_EQ(reader.Lost(), 0U);
    EXPECT_EQ(reader.Position(), 224U) << "stays put";
    raw.Word(c.offset) = good;
  }
  EXPECT_EQ(ReadOne(reader), cb::kLapped);
  EXPECT_EQ(reader.LastLoss(), 5U);
  EXPECT_EQ(ReadOne(reader), 100);
  EXPECT_EQ(reader.NextSequence(), 8U);
  EXPECT_EQ(reader.Lost(), 5U);
}

// A padding record where a lap starts would send the reader to the start of
// the same lap forever. Found by review of Begin (it looped); run in a child
// so that a regression is a failure, not a hung suite.
TEST(HostileRing, PaddingAtTheStartOfALapIsCorruptNotALoop) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Fill(w, 1, 100);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  ASSERT_EQ(reader.Position(), 0U);
  Raw raw(r.name);
  raw.Word(0) = cb::MakePadding(0);
  Child child([&] { return ReadOne(reader) == cb::kCorrupt ? 0 : 1; });
  EXPECT_EQ(child.Wait(5s), 0) << "-1: Read did not return";
}

// limit far ahead (a lap that cannot be resolved: no intact record) and
// limit behind the records (the frontier went backwards): kCorrupt, stays put.
TEST(HostileRing, PositionsFarForwardOrBackwardsAreCorrupt) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Fill(w, 3, 200);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  Raw raw(r.name);
  std::atomic_ref<std::uint64_t> limit(raw.State().limit);
  std::uint64_t const good = limit.load();
  ASSERT_EQ(ReadOne(reader), 200);
  for (std::uint64_t const bad : {good + 1000 * kCapacity, std::uint64_t{0}, ~std::uint64_t{0} - 511}) {
    limit.store(bad);
    for (int i = 0; i < 2; ++i) EXPECT_EQ(ReadOne(reader), cb::kCorrupt) << "limit " << bad;
    EXPECT_EQ(reader.Delivered(), 1U);
  }
  limit.store(good);
  EXPECT_EQ(ReadOne(reader), 200);
}

// Positions that are not record boundaries, or a tail beyond the frontier:
// refused at attach, and the ring is left as it was.
TEST(HostileRing, CorruptPositionsAreRefusedAtAttach) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Fill(w, 3, 200);
  Raw raw(r.name);
  std::atomic_ref<std::uint64_t> tail(raw.State().tail);
  std::uint64_t const good = tail.load();
  for (std::uint64_t const bad : {good + 3, good + 100 * kCapacity, ~std::uint64_t{0} - 7}) {
    tail.store(bad);
    std::string const error = ErrorOf<std::invalid_argument>([&] { cb::Reader reader(cb::Spec::Make(r.name, 0)); });
    EXPECT_NE(error.find("corrupt positions"), std::string::npos) << error;
  }
  tail.store(good);
  cb::Reader reader(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
  EXPECT_EQ(ReadOne(reader), 200);
}

// The State says one capacity, the data segment has another size.
TEST(HostileRing, CapacityThatDisagreesWithTheDataSegmentIsRefused) {
  RingName r;
  cb::Writer w(cb::Spec::Make(r.name, kCapacity));
  Raw raw(r.name);
  cb::State& s = raw.State();
  s.capacity = 2 * kCapacity;
  s.chunk = s.capacity / cb::kChunks;
  s.max_message = static_cast<std::uint32_t>(cb::MaxMessageFor(s.capacity));
  std::string const error = ErrorOf<std::length_error>([&] { cb::Reader reader(cb::Spec::Make(r.name, 0)); });
  EXPECT_NE(error.find(circbuf::CircularBuffer::DataSegmentName(r.name)), std::string::npos) << error;
  std::string const sizes = "holds " + std::to_string(cb::DataBytes(kCapacity, circbuf::PageSize())) +
                            " bytes, a ring of capacity " + std::to_string(2 * kCapacity) + " laid out in " +
                            std::to_string(circbuf::PageSize()) + "-byte pages has " +
                            std::to_string(cb::DataBytes(2 * kCapacity, circbuf::PageSize()));
  EXPECT_NE(error.find(sizes), std::string::npos) << error;
}

// Another process shrinks a segment of the ring under a reader (a separate
// process): the reader must not die of SIGBUS, and it reports the ring as
// corrupt from then on (Read: kCorrupt; Wait: not kTimeout; Truncated()).
// Checked that it can fail: without the guard's registration the child dies
// with 135. Under ThreadSanitizer, without Wait's plain look at the wake word
// before arming, the child of the state-segment case hangs (-1 after 60 s;
// docs/toolchain-notes.md, "ThreadSanitizer: SIGBUS inside an atomic").
TEST(HostileRing, SegmentShrunkUnderAReaderIsReportedNotSigbus) {
  for (std::string const& which : {std::string(cb::kDataSegmentSuffix), std::string()}) {
    RingName r;
    cb::Writer w(cb::Spec::Make(r.name, 16 * kCapacity));
    Fill(w, 5, 300);
    Pipe attached;
    Pipe shrunk;
    Child reader([&] {
      cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
      for (int i = 0; i < 5; ++i) {
        if (ReadOne(rd) != 300) return 10;
      }
      if (ReadOne(rd) != cb::kEmpty || rd.Truncated()) return 11;
      attached.Send();
      if (shrunk.Receive() < 0) return 12;
      if (rd.Wait(10s) == cb::WaitResult::kTimeout) return 13;  // Wait wakes up (the ring changed), Read reports it
      for (int i = 0; i < 3; ++i) {
        if (ReadOne(rd) != cb::kCorrupt) return 14;
      }
      return rd.Truncated() ? 0 : 15;
    });
    ASSERT_EQ(attached.Receive(), '.');
    Shrink(r.name + which, which.empty() ? 0 : static_cast<off_t>(kMinPageSize));
    Fill(w, 5, 300);  // the writer, too, lives through the shrink of its own segments
    shrunk.Send();
    EXPECT_EQ(reader.Wait(), 0) << "segment " << r.name + which << " (135 = SIGBUS, -1 = hung)";
  }
}

// NAME.data cut inside a page, by another process: the rest of that page
// reads as zeros and no access faults (the pages after it are gone). A
// reader used to deliver the record that the cut went through with its tail
// zeroed, and a caught-up reader whose next header lay in the zeroed part
// reported kEmpty forever, Truncated() false both times. Now: kCorrupt, and
// Truncated() (the data segment's end mark is gone, see :layout).
TEST(HostileRing, CutInsideAPageIsReportedNotDeliveredAsZeros) {
  struct Case {
    off_t cut;   // bytes of record space left
    int before;  // messages read before the cut
  };
  // Records of 108 bytes: record 10 spans 1080 .. 1188, so a cut at 1168
  // goes through it; at 3000 all 20 lie before the cut, and the reader is
  // caught up at a header slot in the zeroed part.
  for (Case const c : {Case{1168, 10}, Case{3000, 20}}) {
    RingName r;
    cb::Writer w(cb::Spec::Make(r.name, 16 * kCapacity));
    Fill(w, 20, 100);
    Pipe attached;
    Pipe shrunk;
    Child reader([&] {
      cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
      std::vector<std::byte> buf(cb::kMaxMessageSize);
      for (int i = 0; i < c.before; ++i) {
        if (rd.Read(buf) != 100 || !Matches(static_cast<std::uint64_t>(i), std::span(buf.data(), 100))) return 10;
      }
      attached.Send();
      if (shrunk.Receive() < 0) return 11;
      for (int i = 0; i < 3; ++i) {
        int const n = rd.Read(buf);
        if (n > 0) return 12;  // delivered (with zeros)
        if (n == cb::kEmpty) return 13;
        if (n != cb::kCorrupt) return 14;
      }
      return rd.Truncated() ? 0 : 15;
    });
    ASSERT_EQ(attached.Receive(), '.');
    Shrink(circbuf::CircularBuffer::DataSegmentName(r.name), static_cast<off_t>(kMinPageSize) + c.cut);
    shrunk.Send();
    EXPECT_EQ(reader.Wait(), 0) << "cut at " << c.cut << " (12: a message delivered, 13: kEmpty, 15: not Truncated)";
  }
}

// The writer, too, learns that its ring was truncated, within a chunk:
// Write throws std::system_error (EIO) instead of publishing into pages no
// reader can see (it used to go on for ever).
TEST(HostileRing, WriterStopsPublishingIntoATruncatedRing) {
  for (off_t const cut : {off_t{1168}, off_t{8192}}) {  // inside a page, and on a page boundary
    RingName r;
    cb::Writer w(cb::Spec::Make(r.name, 16 * kCapacity));
    Fill(w, 20, 100);
    Shrink(circbuf::CircularBuffer::DataSegmentName(r.name), static_cast<off_t>(kMinPageSize) + cut);
    int written = 0;
    std::error_code error;
    try {
      for (; written < 10000; ++written) w.Write(Message(20 + static_cast<std::uint64_t>(written), 100));
    } catch (std::system_error const& e) {
      error = e.code();
      EXPECT_NE(std::string(e.what()).find("truncated by another process"), std::string::npos) << e.what();
    }
    EXPECT_EQ(error.value(), EIO) << "cut at " << cut << ": " << written << " messages written after it";
    // Within one chunk (capacity / 8) of where the writer stood.
    EXPECT_LE(static_cast<std::uint64_t>(written) * cb::RecordBytes(100), 16 * kCapacity / cb::kChunks + 108);
    EXPECT_TRUE(w.Truncated());
  }
}

// A writer taking over a ring whose State says: no index entry (an
// overrun), latest far below tail, and a record published after tail. Its
// recovery used to walk every chunk boundary from latest to tail (2^41 of
// them here): a hang (found by review while adding the Writer step to
// fuzz_attach). It must refuse or continue, quickly. (Since the attach
// checks latest against tail (PositionProblem), it refuses at once.)
TEST(HostileRing, TakeOverOfFarApartPositionsDoesNotHang) {
  RingName r;
  Pipe created;
  Child first([&] {
    cb::Writer w(cb::Spec::Make(r.name, kCapacity));
    created.Send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(created.Receive(), '.');
  first.Kill();
  ASSERT_EQ(first.Wait(), 128 + SIGKILL);  // dead without closing: the segments stay
  {
    Raw raw(r.name);
    cb::State& s = raw.State();
    std::uint64_t const tail = std::uint64_t{1} << 50;  // a multiple of the capacity: offset 0
    s.tail = tail;
    s.limit = tail + s.chunk;
    s.latest = 0;
    s.sequence = 5;
    for (auto& e : s.index) e = cb::kNoRecord;
    raw.Word(0) = cb::MakeHeader(5, 10);  // "published after tail"
  }
  Child heir([&] {
    try {
      cb::Writer w(cb::Spec::Make(r.name, kCapacity));
      return 0;
    } catch (std::invalid_argument const& e) {
      std::string const what = e.what();
      return what.find("corrupt state") != std::string::npos || what.find("corrupt positions") != std::string::npos ? 0
                                                                                                                    : 3;
    }
  });
  EXPECT_EQ(heir.Wait(10s), 0) << "-1: the take-over did not finish";
}
