// Hostile and broken segments at the SharedMemory level: a file whose size
// disagrees with its header, a segment shrunk by another process while it is
// mapped (the truncation guard), SIGBUS that is not circbuf's, and a
// /dev/shm too small for the segment (in a private mount namespace).
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <system_error>

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

namespace {

struct Cleanup {
  std::string name = UniqueName("hostile");
  Cleanup() = default;
  ~Cleanup() { SharedMemory::Remove(name); }
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
};

// Shrinks the segment file `name` to `bytes`, as a hostile or buggy process would.
void Shrink(std::string const& name, off_t bytes) {
  int const fd = ::shm_open(name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0) << std::generic_category().message(errno);
  ASSERT_EQ(::ftruncate(fd, bytes), 0) << std::generic_category().message(errno);
  ::close(fd);
}

// Reads every byte of the region; returns their sum (so nothing is optimised away).
unsigned Touch(std::byte const* p, std::size_t n) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < n; i += 64) sum += static_cast<unsigned>(*static_cast<std::byte const volatile*>(p + i));
  return sum;
}

int SigbusExit() { return 128 + SIGBUS; }

}  // namespace

TEST(HostileSegment, FileSizeThatDisagreesWithTheHeaderIsRefused) {
  Cleanup c;
  {
    SharedMemory keep(c.name, 8192, {.open = OpenMode::kCreate});
    keep.KeepOnDetach();
    ASSERT_EQ(keep.RefCount(), 1U);
  }
  for (off_t const bytes : {off_t{kMinPageSize + 4096}, off_t{kMinPageSize + (std::size_t{3} * 8192)}}) {
    Shrink(c.name, bytes);
    std::string const error =
        ErrorOf<std::invalid_argument>([&] { SharedMemory s(c.name, 0, {.open = OpenMode::kAttach}); });
    EXPECT_NE(error.find("corrupt header"), std::string::npos) << error;
    EXPECT_NE(error.find("user region 8192 bytes, file " + std::to_string(bytes)), std::string::npos) << error;
    EXPECT_TRUE(ShmFileExists(c.name)) << "a refused attach must leave the segment alone";
  }
  // Shorter than the header page: not even a header to read.
  Shrink(c.name, 100);
  EXPECT_NE(ErrorOf<std::invalid_argument>([&] {
              SharedMemory s(c.name, 0, {.open = OpenMode::kAttach});
            }).find("not a circbuf segment (100 bytes"),
            std::string::npos);
}

// The child maps a segment, another process shrinks it, the child reads on.
// Without the guard the child dies of SIGBUS (checked by hand: with the
// registration in SharedMemory removed, the child exits 135).
TEST(HostileSegment, SegmentShrunkAfterMappingReadsZerosInsteadOfSigbus) {
  for (off_t const keep_bytes : {off_t{kMinPageSize + 4096}, off_t{0}}) {
    Cleanup c;
    SharedMemory owner(c.name, std::size_t{64} * 1024);
    std::fill_n(owner.Data(), owner.Size(), std::byte{0x5a});
    Pipe attached;
    Pipe shrunk;
    Child reader([&] {
      SharedMemory shm(c.name, 0, {.open = OpenMode::kAttach, .access = Access::kReadOnly});
      if (shm.Truncated()) return 10;
      (void)Touch(shm.Data(), shm.Size());
      attached.Send();
      if (shrunk.Receive() < 0) return 11;
      // Pages that are still in the file keep their bytes, the rest read 0.
      std::byte const* d = shm.Data();
      if (keep_bytes > 0 && d[0] != std::byte{0x5a}) return 12;
      if (d[shm.Size() - 1] != std::byte{0}) return 13;
      (void)Touch(d, shm.Size());
      if (!shm.Truncated()) return 14;
      (void)shm.RefCount();  // the header page (also gone when shrunk to 0)
      return 0;
    });
    ASSERT_EQ(attached.Receive(), '.');
    Shrink(c.name, keep_bytes);
    shrunk.Send();
    EXPECT_EQ(reader.Wait(), 0) << "shrunk to " << keep_bytes << " bytes (135 = SIGBUS)";
    EXPECT_FALSE(owner.Truncated()) << "only the process that faulted notices";
  }
}

// A writable attachment gets writable zero pages: a writer that writes into
// a shrunk segment does not die either (its writes no longer reach anyone).
TEST(HostileSegment, WritableAttachmentKeepsWorkingAfterTheShrink) {
  Cleanup c;
  SharedMemory owner(c.name, std::size_t{16} * 1024);
  Pipe attached;
  Pipe shrunk;
  Child writer([&] {
    SharedMemory shm(c.name, 0, {.open = OpenMode::kAttach});
    attached.Send();
    if (shrunk.Receive() < 0) return 11;
    std::fill_n(shm.Data(), shm.Size(), std::byte{1});
    return shm.Truncated() && shm.Data()[shm.Size() - 1] == std::byte{1} ? 0 : 12;
  });
  ASSERT_EQ(attached.Receive(), '.');
  Shrink(c.name, kMinPageSize);
  shrunk.Send();
  EXPECT_EQ(writer.Wait(), 0);
}

// The guard only claims faults in circbuf's mappings: any other SIGBUS gets
// the default action, as it would without circbuf.
TEST(HostileSegment, OtherSigbusStillKillsTheProcess) {
  Cleanup c;
  Child child([&] {
    // The default action before circbuf (a sanitizer's own handler would
    // otherwise be "the previous handler" and report instead).
    ::signal(SIGBUS, SIG_DFL);
    SharedMemory shm(c.name, 4096);  // installs the guard
    std::string const other = c.name + "-other";
    int const fd = ::shm_open(other.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::ftruncate(fd, off_t{2} * 4096) != 0) return 10;
    void* p = ::mmap(nullptr, std::size_t{2} * 4096, PROT_READ, MAP_SHARED, fd, 0);
    ::shm_unlink(other.c_str());
    if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) return 11;
    (void)Touch(static_cast<std::byte const*>(p), std::size_t{2} * 4096);
    return 12;  // not reached
  });
  EXPECT_EQ(child.Wait(), SigbusExit());
}

// A handler the application installed first receives the faults that are not circbuf's.
TEST(HostileSegment, PreviousSigbusHandlerIsChained) {
  Cleanup c;
  Child child([&] {
    struct sigaction mine{};
    mine.sa_handler = [](int) { ::_exit(42); };
    ::sigemptyset(&mine.sa_mask);
    ::sigaction(SIGBUS, &mine, nullptr);
    SharedMemory shm(c.name, 4096);
    std::string const other = c.name + "-other";
    int const fd = ::shm_open(other.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::ftruncate(fd, 4096) != 0) return 10;
    void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    ::shm_unlink(other.c_str());
    if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) return 11;
    (void)Touch(static_cast<std::byte const*>(p), 4096);
    return 12;
  });
  EXPECT_EQ(child.Wait(), 42);
}

// /dev/shm too small: creation fails with ENOSPC naming the segment, and
// leaves nothing behind; never a SIGBUS later. Runs in a forked child with
// its own mount namespace and a 1 MiB tmpfs over /dev/shm (needs root or
// CAP_SYS_ADMIN; skipped otherwise).
TEST(HostileSegment, DevShmTooSmallFailsAtCreationWithEnospc) {
  Pipe result;
  Child child([&] {
    if (::unshare(CLONE_NEWNS) != 0) return 77;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 77;
    if (::mount("cbtest", "/dev/shm", "tmpfs", 0, "size=1m") != 0) return 77;
    std::string const name = UniqueName("nospace");
    std::string error;
    try {
      SharedMemory shm(name, std::size_t{4} * 1024 * 1024);
      return 10;  // created: the test fails
    } catch (std::system_error const& e) {
      if (e.code().value() != ENOSPC) return 11;
      error = e.what();
    }
    if (error.find(name) == std::string::npos) return 12;
    if (ShmFileExists(name) || SemFileExists(name)) return 13;
    // Nothing at all is left in the (private) /dev/shm.
    DIR* dir = ::opendir("/dev/shm");
    if (dir == nullptr) return 14;
    int entries = 0;
    while (dirent const* e = ::readdir(dir)) entries += std::string(e->d_name) != "." && std::string(e->d_name) != "..";
    ::closedir(dir);
    if (entries != 0) return 15;
    std::fprintf(stderr, "refused as expected: %s\n", error.c_str());
    // Something that fits still works.
    SharedMemory small(name, std::size_t{64} * 1024);
    return small.Created() ? 0 : 16;
  });
  int const code = child.Wait();
  if (code == 77) GTEST_SKIP() << "no private mount namespace here (needs CAP_SYS_ADMIN)";
  EXPECT_EQ(code, 0) << "10 created, 11 other errno, 12 name missing, 13/15 left files behind";
}
