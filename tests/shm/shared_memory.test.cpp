#include <fcntl.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "support/expect.hpp"
#include "support/process.hpp"

import circbuf.shm;

using circbuf::Access;
using circbuf::kMinPageSize;
using circbuf::OpenMode;
using circbuf::SharedMemory;
using circbuf::test::Child;
using circbuf::test::ErrorOf;
using circbuf::test::Pipe;
using circbuf::test::SemFileExists;
using circbuf::test::ShmFileExists;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

struct Record {
  std::uint64_t sequence;
  char text[56];
};

// Removes the segment and its lock when a test ends, however it ends.
struct Cleanup {
  std::string name = UniqueName("shm");
  Cleanup() = default;
  ~Cleanup() { SharedMemory::Remove(name); }
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
};

bool NothingLeft(std::string const& name) { return !ShmFileExists(name) && !SemFileExists(name); }

}  // namespace

TEST(SharedMemory, CreatesSegmentWithHeaderPageModeAndRefCountOne) {
  Cleanup c;
  SharedMemory shm(c.name, 1000);
  EXPECT_TRUE(shm.Created());
  EXPECT_EQ(shm.Size(), 1000U);
  EXPECT_EQ(shm.RefCount(), 1U);
  struct stat st{};
  ASSERT_EQ(::fstat(shm.NativeHandle(), &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), kMinPageSize + 1000);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(shm.Data()) % kMinPageSize, 0U);
}

TEST(SharedMemory, ModeCanBeChosen) {
  Cleanup c;
  SharedMemory shm(c.name, 64, {.mode = 0640});
  struct stat st{};
  ASSERT_EQ(::fstat(shm.NativeHandle(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640U);
}

TEST(SharedMemory, RefusesBadNamesAndLeavesNothing) {
  EXPECT_NE(ErrorOf<std::invalid_argument>([] { SharedMemory s("", 64); }).find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf<std::invalid_argument>([] { SharedMemory s("x", 64); }).find("must start with '/'"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::invalid_argument>([] { SharedMemory s("/a/../b", 64); }).find("'/' at position 2"),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::invalid_argument>([] { SharedMemory s("/" + std::string(300, 'z'), 64); }).find("too long"),
            std::string::npos);
}

TEST(SharedMemory, RefusesSizeZeroOrAboveTheLimitAndLeavesNothing) {
  Cleanup c;
  EXPECT_NE(ErrorOf<std::length_error>([&] {
              SharedMemory s(c.name, 0);
            }).find("size 0 bytes: must be 1 .. " + std::to_string(circbuf::kMaxSegmentSize)),
            std::string::npos);
  EXPECT_NE(ErrorOf<std::length_error>([&] {
              SharedMemory s(c.name, circbuf::kMaxSegmentSize + 1);
            }).find("size " + std::to_string(circbuf::kMaxSegmentSize + 1) + " bytes"),
            std::string::npos);
  EXPECT_TRUE(NothingLeft(c.name));
  // The limit itself is accepted.
  SharedMemory big(c.name, circbuf::kMaxSegmentSize);
  EXPECT_EQ(big.Size(), circbuf::kMaxSegmentSize);
}

TEST(SharedMemory, RefusesSizeMismatchOnAttachAndChangesNothing) {
  Cleanup c;
  SharedMemory shm(c.name, 4096);
  shm.AsStruct<Record>()->sequence = 7;
  std::string const what = ErrorOf<std::length_error>([&] { SharedMemory other(c.name, 8192); });
  EXPECT_NE(what.find("exists with 4096 bytes, asked for 8192"), std::string::npos) << what;
  EXPECT_EQ(shm.RefCount(), 1U);
  EXPECT_EQ(shm.AsStruct<Record>()->sequence, 7U);
  struct stat st{};
  ASSERT_EQ(::fstat(shm.NativeHandle(), &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), kMinPageSize + 4096);
}

TEST(SharedMemory, AttachToMissingSegmentFailsWithEnoentAndLeavesNothing) {
  Cleanup c;
  try {
    SharedMemory shm(c.name, 0, {.open = OpenMode::kAttach});
    FAIL() << "attached to nothing";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_NE(std::string(e.what()).find(c.name), std::string::npos);
  }
  EXPECT_TRUE(NothingLeft(c.name));
}

TEST(SharedMemory, CreateOnlyFailsWithEexistWhenPresent) {
  Cleanup c;
  SharedMemory shm(c.name, 64);
  try {
    SharedMemory again(c.name, 64, {.open = OpenMode::kCreate});
    FAIL() << "created twice";
  } catch (std::system_error const& e) {
    EXPECT_EQ(e.code().value(), EEXIST);
  }
  EXPECT_EQ(shm.RefCount(), 1U);
}

TEST(SharedMemory, RefCountAndDataAcrossProcessesAndUnlinkAtLastDetach) {
  Cleanup c;
  Pipe attached;
  Pipe detach;
  Pipe detached;
  std::optional<SharedMemory> shm(std::in_place, c.name, sizeof(Record));
  std::strcpy(shm->AsStruct<Record>()->text, "from the creator");
  Child child([&] {
    SharedMemory mine(c.name, sizeof(Record));
    if (mine.Created() || mine.RefCount() != 2) return 1;
    if (std::strcmp(mine.AsStruct<Record>()->text, "from the creator") != 0) return 2;
    mine.AsStruct<Record>()->sequence = 12345;
    attached.Send();
    detach.Receive();
    return 0;
  });
  ASSERT_EQ(attached.Receive(), '.');
  EXPECT_EQ(shm->RefCount(), 2U);
  EXPECT_EQ(shm->AsStruct<Record>()->sequence, 12345U);
  detach.Send();
  ASSERT_EQ(child.Wait(), 0);
  EXPECT_EQ(shm->RefCount(), 1U);
  EXPECT_TRUE(ShmFileExists(c.name));
  shm.reset();
  EXPECT_TRUE(NothingLeft(c.name));
}

TEST(SharedMemory, LastOneOutUnlinksEvenWhenItIsNotTheCreator) {
  Cleanup c;
  Pipe created;
  Pipe go;
  Child creator([&] {
    SharedMemory mine(c.name, 128);
    created.Send();
    go.Receive();
    return 0;
  });
  ASSERT_EQ(created.Receive(), '.');
  {
    SharedMemory shm(c.name, 128);
    EXPECT_FALSE(shm.Created());
    go.Send();
    ASSERT_EQ(creator.Wait(), 0);
    EXPECT_EQ(shm.RefCount(), 1U);
    EXPECT_TRUE(ShmFileExists(c.name));
  }
  EXPECT_TRUE(NothingLeft(c.name));
}

TEST(SharedMemory, SegmentIsFreedAfterAnAttachedProcessIsKilled) {
  Cleanup c;
  Pipe attached;
  std::optional<SharedMemory> shm(std::in_place, c.name, 256);
  Child victim([&]() -> int {
    SharedMemory mine(c.name, 256);
    attached.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(attached.Receive(), '.');
  EXPECT_EQ(shm->RefCount(), 2U);
  victim.Kill(SIGKILL);
  ASSERT_EQ(victim.Wait(), 128 + SIGKILL);
  EXPECT_EQ(shm->RefCount(), 2U);  // the dead attachment never decremented ...
  shm.reset();
  EXPECT_TRUE(NothingLeft(c.name));  // ... and the last live one freed it anyway
}

TEST(SharedMemory, StaleSegmentIsRecoveredOnAttachWithItsData) {
  Cleanup c;
  Pipe written;
  Child victim([&]() -> int {
    SharedMemory mine(c.name, sizeof(Record));
    mine.AsStruct<Record>()->sequence = 99;
    written.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(written.Receive(), '.');
  victim.Kill(SIGKILL);
  ASSERT_EQ(victim.Wait(), 128 + SIGKILL);
  ASSERT_TRUE(ShmFileExists(c.name));  // every attached process is dead: stale
  {
    SharedMemory shm(c.name, sizeof(Record));
    EXPECT_FALSE(shm.Created());
    EXPECT_EQ(shm.RefCount(), 1U);  // reset from the dead one's 1, then counted us
    EXPECT_EQ(shm.AsStruct<Record>()->sequence, 99U);
  }
  EXPECT_TRUE(NothingLeft(c.name));
}

TEST(SharedMemory, UnfinishedSegmentOfADeadCreatorIsReplaced) {
  Cleanup c;
  // What a creator leaves when it dies between shm_open and ftruncate.
  int const fd = ::shm_open(c.name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  SharedMemory shm(c.name, 64);
  EXPECT_TRUE(shm.Created());
  EXPECT_EQ(shm.Size(), 64U);
}

TEST(SharedMemory, ForeignSegmentIsRefusedAndLeftAlone) {
  Cleanup c;
  int const fd = ::shm_open(c.name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 8192), 0);
  char const junk[] = "this is somebody else's segment, not circbuf's";
  ASSERT_EQ(::pwrite(fd, junk, sizeof junk, 64), static_cast<ssize_t>(sizeof junk));
  ::close(fd);
  std::string const what = ErrorOf<std::invalid_argument>([&] { SharedMemory s(c.name, 4096); });
  EXPECT_NE(what.find("not a circbuf segment"), std::string::npos) << what;
  EXPECT_TRUE(ShmFileExists(c.name));  // not ours: never unlinked
}

TEST(SharedMemory, OtherLayoutVersionIsRefused) {
  Cleanup c;
  {
    SharedMemory shm(c.name, 64);
    // Forge the version field of the header page (white-box: offset 72).
    void* header = ::mmap(nullptr, kMinPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, shm.NativeHandle(), 0);
    ASSERT_NE(header, MAP_FAILED);
    std::uint32_t const version = 2;
    std::memcpy(static_cast<char*>(header) + 72, &version, sizeof version);
    std::string const what = ErrorOf<std::invalid_argument>([&] { SharedMemory s(c.name, 64); });
    EXPECT_NE(what.find("layout version 2, this library reads version 1"), std::string::npos) << what;
    ::munmap(header, kMinPageSize);
    EXPECT_EQ(shm.RefCount(), 1U);
  }
}

TEST(SharedMemory, ReadOnlyAttachmentFaultsOnWriteAndRefusesMutableViews) {
  Cleanup c;
  SharedMemory shm(c.name, sizeof(Record));
  shm.AsStruct<Record>()->sequence = 5;
  SharedMemory view(c.name, 0, {.open = OpenMode::kAttach, .access = Access::kReadOnly});
  EXPECT_EQ(view.AsStruct<Record const>()->sequence, 5U);
  EXPECT_THROW((void)view.AsStruct<Record>(), std::logic_error);
  EXPECT_THROW((void)view.AsSpan<std::uint64_t>(), std::logic_error);
  Child writer([&] {
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGSEGV, &dfl, nullptr);  // sanitizers install their own handler
    // The test writes through a read-only view on purpose, to see it fault.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
    auto* bytes = const_cast<std::byte*>(std::as_const(view).Data());
    bytes[0] = std::byte{1};  // must fault: the user region is mapped PROT_READ
    return 0;
  });
  EXPECT_EQ(writer.Wait(), 128 + SIGSEGV);
  EXPECT_EQ(shm.AsStruct<Record>()->sequence, 5U);
}

TEST(SharedMemory, ViewsCheckTheirSizeAgainstTheRegion) {
  Cleanup c;
  SharedMemory shm(c.name, 100);
  struct Big {
    char bytes[101];
  };
  std::string const what = ErrorOf<std::length_error>([&] { (void)shm.AsStruct<Big>(); });
  EXPECT_NE(what.find("AsStruct of 101 bytes does not fit the 100-byte region"), std::string::npos) << what;
  EXPECT_EQ(shm.AsSpan<std::uint32_t>().size(), 25U);
  EXPECT_EQ(shm.AsSpan<Record>().size(), 1U);
  EXPECT_EQ(static_cast<void*>(shm.AsSpan<std::uint32_t>().data()), static_cast<void*>(shm.Data()));
}

TEST(SharedMemory, MoveKeepsOneAttachment) {
  Cleanup c;
  SharedMemory a(c.name, 64);
  SharedMemory b(std::move(a));
  EXPECT_EQ(b.RefCount(), 1U);
  SharedMemory d(UniqueName("other"), 64);
  std::string const other = d.Name();
  d = std::move(b);  // detaches (and unlinks) "other", takes over c.name
  EXPECT_FALSE(ShmFileExists(other));
  EXPECT_EQ(d.Name(), c.name);
  EXPECT_EQ(d.RefCount(), 1U);
}

TEST(SharedMemory, ForkedCopyDoesNotDetachTheParent) {
  Cleanup c;
  SharedMemory shm(c.name, 64);
  Child child([&] {
    SharedMemory taken(std::move(shm));  // destroyed in the child: must only unmap
    return 0;
  });
  ASSERT_EQ(child.Wait(), 0);
  EXPECT_EQ(shm.RefCount(), 1U);
  // A third process attaches and leaves: the parent is still attached, so the
  // segment must survive that.
  Child visitor([&] {
    SharedMemory mine(c.name, 64);
    return mine.RefCount() == 2 ? 0 : 1;
  });
  ASSERT_EQ(visitor.Wait(), 0);
  EXPECT_TRUE(ShmFileExists(c.name));
  EXPECT_EQ(shm.RefCount(), 1U);
}

// Creating a segment (and so its semaphore) puts no file into /dev/shm but
// the segment and sem.NAME. glibc's sem_open(O_CREAT) builds the semaphore in
// a temporary sem.XXXXXX first, which a SIGKILL at that moment leaves behind
// for good (found by circbuf-torture); SemaphoreLock avoids it (O_TMPFILE).
// Watched with inotify in a private /dev/shm (a mount namespace of a child,
// as root), so that nothing else on the machine creates files there.
TEST(SharedMemory, CreatingPutsNoTemporaryFileIntoDevShm) {
  Pipe verdict;
  Child child([&]() -> int {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m") != 0) {
      return 77;  // not root: nothing to check here
    }
    int const watch = ::inotify_init1(IN_NONBLOCK);
    if (watch < 0 || ::inotify_add_watch(watch, "/dev/shm", IN_CREATE) < 0) return 2;
    {
      SharedMemory segment("/tmpcheck", 100);
    }
    alignas(inotify_event) char events[4096];
    ssize_t const got = ::read(watch, events, sizeof events);
    int strays = 0;
    for (ssize_t at = 0; at < got;) {
      auto const* e = reinterpret_cast<inotify_event const*>(events + at);
      std::string const file = e->len > 0 ? e->name : "";
      if (file != "tmpcheck" && file != "sem.tmpcheck") {
        std::fprintf(stderr, "created in /dev/shm: %s\n", file.c_str());
        ++strays;
      }
      at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
    }
    return got > 0 && strays == 0 ? 0 : 1;
  });
  int const code = child.Wait();
  if (code == 77) GTEST_SKIP() << "no private /dev/shm here (needs root and a mount namespace; not in a chroot)";
  EXPECT_EQ(code, 0);
}
