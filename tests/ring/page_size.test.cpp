// Segments laid out in pages other than 4 KiB ("Page size" in circbuf.shm):
// a kernel with 16 or 64 KiB pages (many aarch64 servers) makes every
// segment with a header region of one such page, and every process that
// maps it takes the layout from the segment's header. This machine's
// kernel has 4 KiB pages, so the writer's side runs under
// SimulatePageSizeForTesting, which lays segments out exactly as such a
// kernel would; the readers run in other processes with the kernel's own
// page size, as a process on the real kernel would take the figures from
// the header. (A 4 KiB kernel maps a 16 or 64 KiB-aligned offset as well.)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/expect.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::ErrorOf;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;

namespace {

// Lays out what this process creates in `bytes`-byte pages until it goes.
class SimulatedPages {
 public:
  explicit SimulatedPages(std::size_t bytes) { circbuf::SimulatePageSizeForTesting(bytes); }
  ~SimulatedPages() { circbuf::SimulatePageSizeForTesting(0); }
  SimulatedPages(SimulatedPages const&) = delete;
  SimulatedPages& operator=(SimulatedPages const&) = delete;
};

std::string File(std::string const& name) { return "/dev/shm/" + name.substr(1); }

struct stat Stat(std::string const& name) {
  struct stat st{};
  EXPECT_EQ(::stat(File(name).c_str(), &st), 0) << name;
  return st;
}

template <class T>
T ReadAt(std::string const& name, std::uint64_t offset) {
  T value{};
  int const fd = ::open(File(name).c_str(), O_RDONLY);
  EXPECT_GE(fd, 0) << name;
  EXPECT_EQ(::pread(fd, &value, sizeof value, static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof value));
  ::close(fd);
  return value;
}

template <class T>
void WriteAt(std::string const& name, std::uint64_t offset, T value) {
  int const fd = ::open(File(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << name;
  ASSERT_EQ(::pwrite(fd, &value, sizeof value, static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof value));
  ::close(fd);
}

void Shrink(std::string const& name, off_t bytes) {
  int const fd = ::open(File(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << name;
  ASSERT_EQ(::ftruncate(fd, bytes), 0);
  ::close(fd);
}

}  // namespace

TEST(PageSize, OnlyPageSizesASegmentCanBeMappedWithAreSimulated) {
  EXPECT_EQ(circbuf::PageSize(), circbuf::KernelPageSize());
  for (std::size_t const bad : {std::size_t{2048}, std::size_t{12288}, std::size_t{131072}}) {
    std::string const error = ErrorOf<std::invalid_argument>([&] { circbuf::SimulatePageSizeForTesting(bad); });
    EXPECT_NE(error.find("SimulatePageSizeForTesting(" + std::to_string(bad) + "): header_bytes " +
                         std::to_string(bad) + ": must be a power of two from 4096 to 65536"),
              std::string::npos)
        << error;
    EXPECT_EQ(circbuf::PageSize(), circbuf::KernelPageSize()) << "a refused size changed nothing";
  }
  {
    SimulatedPages const pages(16384);
    EXPECT_EQ(circbuf::PageSize(), 16384U);
  }
  EXPECT_EQ(circbuf::PageSize(), circbuf::KernelPageSize());
}

// The user region starts one page of the creator into the file, the header
// says so, and the rest of a long header region is a hole: no memory spent.
TEST(PageSize, ASegmentLaidOutInLargePagesIsMappedAtItsOwnOffsetByEveryProcess) {
  if (circbuf::KernelPageSize() != 4096) GTEST_SKIP() << "simulates larger pages on a 4 KiB kernel";
  for (std::size_t const page : {std::size_t{16384}, std::size_t{65536}}) {
    std::string const name = circbuf::test::UniqueName("page");
    std::optional<circbuf::SharedMemory> shm;
    {
      SimulatedPages const pages(page);
      shm.emplace(name, 1000);
    }
    EXPECT_EQ(shm->HeaderBytes(), page);
    for (std::size_t i = 0; i < 1000; ++i) shm->Data()[i] = std::byte(static_cast<std::uint8_t>(i * 7));
    struct stat const st = Stat(name);
    EXPECT_EQ(static_cast<std::size_t>(st.st_size), page + 1000);
    EXPECT_LE(static_cast<std::size_t>(st.st_blocks) * 512, std::size_t{2} * 4096) << "the hole was allocated";
    EXPECT_EQ(ReadAt<std::uint32_t>(name, 76), page);                       // header_bytes
    EXPECT_EQ(ReadAt<std::uint8_t>(name, page + 999), (999 * 7) & 0xFF);    // the user region, in the file
    Child other([&] {
      circbuf::SharedMemory mine(name, 0, {.open = circbuf::OpenMode::kAttach, .access = circbuf::Access::kReadOnly});
      if (mine.HeaderBytes() != page || mine.Size() != 1000) return 10;
      for (std::size_t i = 0; i < 1000; ++i) {
        if (mine.Data()[i] != std::byte(static_cast<std::uint8_t>(i * 7))) return 11;
      }
      return 0;
    });
    EXPECT_EQ(other.Wait(), 0) << page << "-byte pages (10: header, 11: contents)";
    shm.reset();
    EXPECT_FALSE(circbuf::test::ShmFileExists(name));
  }
}

// A header region that no kernel could map, or not this one: refused at
// attach with the field named, and reported by Inspect, never mapped.
TEST(PageSize, AHeaderRegionOfAnImpossibleSizeIsRefusedAndNamed) {
  for (std::uint32_t const bad : {2048U, 12288U, 131072U, 0U}) {
    std::string const name = circbuf::test::UniqueName("page");
    circbuf::SharedMemory shm(name, 1000);
    WriteAt(name, 76, bad);
    std::string const error = ErrorOf<std::invalid_argument>(
        [&] { circbuf::SharedMemory const other(name, 0, {.open = circbuf::OpenMode::kAttach}); });
    EXPECT_NE(error.find("corrupt header: header_bytes " + std::to_string(bad) + ": must be a power of two"),
              std::string::npos)
        << error;
    cb::SegmentInfo const info = cb::Inspect(name);
    EXPECT_EQ(info.header_bytes, 0U);
    EXPECT_NE(info.damage.find("header_bytes " + std::to_string(bad)), std::string::npos) << info.damage;
    WriteAt(name, 76, std::uint32_t{4096});  // so that the owner's detach finds its own segment
  }
}

// A ring whose capacity is not a whole number of 64 KiB pages: the end mark
// sits alone at the next 64 KiB boundary, a reader of another process (4 KiB
// pages of its own) finds it there and reads every message byte for byte
// across laps, and Inspect judges the ring healthy.
TEST(PageSize, ARingLaidOutIn64KiBPagesCarriesMessagesToAReaderWithItsOwnPageSize) {
  if (circbuf::KernelPageSize() != 4096) GTEST_SKIP() << "simulates larger pages on a 4 KiB kernel";
  constexpr std::uint64_t kCapacity = 16384;
  constexpr std::size_t kPage = 65536;
  RingName r;
  std::string const data = cb::DataSegmentName(r.name);
  std::optional<cb::Writer> w;
  {
    SimulatedPages const pages(kPage);
    w.emplace(cb::Spec::Make(r.name, kCapacity));
  }
  EXPECT_EQ(static_cast<std::uint64_t>(Stat(data).st_size), kPage + cb::DataBytes(kCapacity, kPage));
  EXPECT_EQ(cb::EndMarkOffset(kCapacity, kPage), kPage);
  EXPECT_EQ(ReadAt<std::uint64_t>(data, kPage + kPage), cb::kEndMark);
  EXPECT_EQ(static_cast<std::uint64_t>(Stat(r.name).st_size), kPage + sizeof(cb::State));

  constexpr int kRounds = 4;
  constexpr int kPerRound = 40;  // 40 x 312 bytes: most of the ring, so the rounds wrap
  Pipe ready;
  Pipe written;
  Child reader([&] {
    if (circbuf::PageSize() != circbuf::KernelPageSize()) return 9;
    cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kNext});
    ready.Send();
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    std::uint64_t seq = 0;
    for (int round = 0; round < kRounds; ++round) {
      if (written.Receive() < 0) return 10;
      for (int i = 0; i < kPerRound; ++i, ++seq) {
        int const n = rd.Read(buf);
        if (n != 300 || !Matches(seq, std::span(buf.data(), 300))) return 11;
      }
      if (rd.Read(buf) != cb::kEmpty) return 12;
      ready.Send();
    }
    return rd.Lost() == 0 && !rd.Truncated() ? 0 : 13;
  });
  ASSERT_EQ(ready.Receive(), '.');
  std::uint64_t seq = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kPerRound; ++i) w->Write(Message(seq++, 300));
    written.Send();
    ASSERT_EQ(ready.Receive(), '.') << "round " << round;
  }
  EXPECT_EQ(reader.Wait(), 0) << "10: no cue, 11: wrong message, 12: more than written, 13: lost or truncated";

  cb::SegmentInfo const info = cb::Inspect(r.name);
  EXPECT_EQ(info.header_bytes, kPage);
  EXPECT_EQ(info.corrupt, "");
  EXPECT_EQ(info.damage, "");
  EXPECT_EQ(info.messages, seq);
}

// A cut of the data segment inside its last 64 KiB page of records (not on
// a page boundary of the layout's) is seen, as on a 4 KiB ring: the end
// mark is gone, so the reader returns kCorrupt and Truncated(), never the
// zeros the cut left, and the writer stops with EIO. What this cannot show
// on a 4 KiB kernel: that the end mark has a 64 KiB page of its own on a
// 64 KiB kernel (here any cut below it removes its 4 KiB page); that is the
// arithmetic the test above checks (EndMarkOffset, the file's size).
TEST(PageSize, ACutInsideALargePageOfARingIsSeenByReaderAndWriter) {
  if (circbuf::KernelPageSize() != 4096) GTEST_SKIP() << "simulates larger pages on a 4 KiB kernel";
  constexpr std::uint64_t kCapacity = 65536;
  constexpr std::size_t kPage = 65536;
  RingName r;
  std::string const data = cb::DataSegmentName(r.name);
  std::optional<cb::Writer> w;
  {
    SimulatedPages const pages(kPage);
    w.emplace(cb::Spec::Make(r.name, kCapacity));
  }
  for (std::uint64_t i = 0; i < 20; ++i) w->Write(Message(i, 100));
  Pipe attached;
  Pipe shrunk;
  Child reader([&] {
    cb::Reader rd(cb::Spec::Make(r.name, 0), {.start = cb::StartAt::kOldest});
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    for (std::uint64_t i = 0; i < 10; ++i) {
      if (rd.Read(buf) != 100 || !Matches(i, std::span(buf.data(), 100))) return 10;
    }
    attached.Send();
    if (shrunk.Receive() < 0) return 11;
    for (int i = 0; i < 3; ++i) {
      int const n = rd.Read(buf);
      if (n > 0) return 12;
      if (n == cb::kEmpty) return 13;
      if (n != cb::kCorrupt) return 14;
    }
    return rd.Truncated() ? 0 : 15;
  });
  ASSERT_EQ(attached.Receive(), '.');
  Shrink(data, static_cast<off_t>(kPage + 1168));  // inside record 11, inside the first page of records
  shrunk.Send();
  EXPECT_EQ(reader.Wait(), 0) << "12: a message delivered (with zeros), 13: kEmpty, 15: not Truncated";
  EXPECT_THROW(
      {
        for (std::uint64_t i = 20; i < 20000; ++i) w->Write(Message(i, 100));
      },
      std::system_error);
}

// A writer attaching to a ring laid out in other pages than its own is
// refused with both sizes named (its data segment would not fit), and the
// ring is unchanged.
TEST(PageSize, AWriterOfOtherPagesIsRefusedAndTheRingStaysAsItWas) {
  if (circbuf::KernelPageSize() != 4096) GTEST_SKIP() << "simulates larger pages on a 4 KiB kernel";
  RingName r;
  std::optional<cb::Writer> first;
  {
    SimulatedPages const pages(16384);
    first.emplace(cb::Spec::Make(r.name, 8192));
  }
  first->Write(Message(0, 100));
  cb::Reader const keeps(cb::Spec::Make(r.name, 0));  // the segments stay when the first writer goes
  first.reset();
  std::string const error = ErrorOf<std::length_error>([&] { cb::Writer const w(cb::Spec::Make(r.name, 8192)); });
  EXPECT_NE(error.find("exists with " + std::to_string(cb::DataBytes(8192, 16384)) + " bytes, asked for " +
                       std::to_string(cb::DataBytes(8192, circbuf::KernelPageSize()))),
            std::string::npos)
      << error;
  cb::SegmentInfo const info = cb::Inspect(r.name);
  EXPECT_EQ(info.damage, "");
  EXPECT_EQ(info.messages, 1U);
}

// A ring whose data segment's header_bytes was changed (to no page size at
// all, or one this kernel cannot map) is still removed whole by Remove
// (`circbuf rm`, circbuf_remove, Python's remove): the damaged data segment
// goes with its ring. It used to divide by the field (SIGFPE).
TEST(PageSize, ARingWhoseDataSegmentHasADamagedHeaderBytesIsRemovedWhole) {
  for (std::uint32_t const bad : {0U, 12288U, 2048U}) {
    RingName r;
    std::string const data = cb::DataSegmentName(r.name);
    {
      cb::Writer w(cb::Spec::Make(r.name, 8192));
      w.Write(Message(0, 100));
      WriteAt(data, 76, bad);
      cb::SegmentInfo const info = cb::Inspect(data);
      EXPECT_EQ(info.header_bytes, 0U);
      cb::RemoveResult const removed = cb::Remove(r.name, /*force=*/true);
      EXPECT_EQ(removed.removed, (std::vector<std::string>{r.name, data})) << "header_bytes " << bad;
      EXPECT_FALSE(circbuf::test::ShmFileExists(r.name));
      EXPECT_FALSE(circbuf::test::ShmFileExists(data));
    }
  }
}
