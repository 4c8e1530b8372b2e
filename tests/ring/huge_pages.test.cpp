// Huge pages for the record space (WriterOptions::huge_pages). Whether the
// tmpfs behind /dev/shm gives them is its mount option huge=, so every test
// runs in a forked child with its own mount namespace and its own tmpfs on
// /dev/shm, mounted with the option under test (needs root or CAP_SYS_ADMIN;
// skipped otherwise). Readers are further processes forked in that namespace.
#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"

import circbuf;

using circbuf::HugePages;
using circbuf::CircularBuffer::Reader;
using circbuf::CircularBuffer::Spec;
using circbuf::CircularBuffer::Writer;
using circbuf::CircularBuffer::WriterOptions;
using circbuf::test::Child;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::UniqueName;

namespace {

constexpr int kNoNamespace = 77;
constexpr int kNoThp = 78;
constexpr std::uint64_t kMiB = std::uint64_t{1024} * 1024;

bool KernelHasThp() {
  struct stat st{};
  return ::stat("/sys/kernel/mm/transparent_hugepage", &st) == 0;
}

// Runs `body` in a child with a private /dev/shm: a tmpfs mounted with
// `options` (for example "size=64m,huge=advise"). The child's exit code.
int WithDevShm(char const* options, std::function<int()> const& body) {
  Child child([&]() -> int {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("cbtest", "/dev/shm", "tmpfs", 0, options) != 0) {
      return kNoNamespace;
    }
    return body();
  });
  return child.Wait();
}

// Files in the (private) /dev/shm.
int DevShmEntries() {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) return -1;
  int entries = 0;
  while (dirent const* e = ::readdir(dir)) entries += std::string(e->d_name) != "." && std::string(e->d_name) != "..";
  ::closedir(dir);
  return entries;
}

// Why a test cannot run here, from its child's exit code; nullopt if it ran.
std::optional<std::string> SkipReason(int code) {
  if (code == kNoNamespace) return "no private /dev/shm here (needs CAP_SYS_ADMIN)";
  if (code == kNoThp) return "kernel without transparent huge pages";
  return std::nullopt;
}

// 100 messages of 60,000 bytes (6 MB: they cross every 2 MiB boundary of an
// 8 MiB ring), written after a reader in another process has attached, and
// checked byte for byte by that reader. Returns 0 or the step that failed.
int WriteAndCheckAcrossProcesses(Writer& writer, std::size_t want_reader_huge) {
  Spec const spec = writer.GetSpec();
  Pipe attached;
  Pipe written;
  Child reader([&]() -> int {
    Reader r(spec);
    std::size_t const huge = r.HugePageBytes();
    attached.Send();
    if (huge < want_reader_huge) {
      std::fprintf(stderr, "reader maps %zu bytes with huge pages, want >= %zu\n", huge, want_reader_huge);
      return 40;
    }
    if (written.Receive() < 0) return 41;
    std::vector<std::byte> buffer(65535);
    for (std::uint64_t seq = 0; seq < 100; ++seq) {
      int const n = r.Read(buffer);
      if (n != 60'000 || !Matches(seq, std::span(buffer).first(60'000))) return 42;
    }
    return r.Read(buffer) == circbuf::CircularBuffer::kEmpty && r.Lost() == 0 ? 0 : 43;
  });
  if (attached.Receive() < 0) return 30;
  for (std::uint64_t seq = 0; seq < 100; ++seq) writer.Write(Message(seq, 60'000));
  written.Send();
  return reader.Wait();
}

}  // namespace

// The point of the option: on a mount with huge=advise (the setting that
// leaves every other tmpfs user alone), kRequire gets the record space on
// 2 MiB pages, a reader in another process maps the same huge pages without
// asking, and the stream is intact across the page boundaries.
TEST(HugePages, RequireOnAnAdviseMountMapsTheRecordsWithHugePagesInEveryProcess) {
  int const code = WithDevShm("size=64m,huge=advise", [] {
    if (!KernelHasThp()) return kNoThp;
    Writer w(Spec::Make(UniqueName("huge"), 8 * kMiB), WriterOptions{.huge_pages = HugePages::kRequire});
    std::size_t const huge = w.HugePageBytes();
    std::fprintf(stderr, "8 MiB ring: writer maps %zu bytes with huge pages\n", huge);
    // At most 3 of 2 MiB fit (the record space starts 4 KiB into the file).
    if (huge == 0 || huge > 6 * kMiB) return 20;
    return WriteAndCheckAcrossProcesses(w, 1);
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}

// Without the request, huge=advise gives nothing: the option is what asks.
TEST(HugePages, AdviseMountGivesNoneUnlessAsked) {
  int const code = WithDevShm("size=64m,huge=advise", [] {
    if (!KernelHasThp()) return kNoThp;
    Writer w(Spec::Make(UniqueName("huge"), 8 * kMiB));
    return w.HugePageBytes() == 0 ? 0 : 20;
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}

// huge=never (the default mount of most systems): kPrefer falls back to
// 4 KiB pages, and the ring works as ever.
TEST(HugePages, PreferFallsBackToSmallPagesOnANeverMount) {
  int const code = WithDevShm("size=64m,huge=never", [] {
    Writer w(Spec::Make(UniqueName("huge"), 8 * kMiB), WriterOptions{.huge_pages = HugePages::kPrefer});
    if (w.HugePageBytes() != 0) return 20;
    return WriteAndCheckAcrossProcesses(w, 0);
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}

// kRequire where none can come fails at creation with EOPNOTSUPP, says why
// and names the ring's data segment, and leaves nothing in /dev/shm.
TEST(HugePages, RequireOnANeverMountFailsNamingTheMountOptionAndLeavesNothing) {
  int const code = WithDevShm("size=64m,huge=never", [] {
    std::string const name = UniqueName("huge");
    try {
      Writer w(Spec::Make(name, 8 * kMiB), WriterOptions{.huge_pages = HugePages::kRequire});
      return 20;
    } catch (std::system_error const& e) {
      std::fprintf(stderr, "refused as expected: %s\n", e.what());
      std::string const what = e.what();
      if (e.code().value() != EOPNOTSUPP) return 21;
      if (what.find(circbuf::CircularBuffer::DataSegmentName(name)) == std::string::npos ||
          what.find("huge=never") == std::string::npos)
        return 22;
    }
    return DevShmEntries() == 0 ? 0 : 23;
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}

// A ring too small to hold one aligned 2 MiB page: kRequire says so.
TEST(HugePages, RequireOnARingTooSmallForOnePageSaysSo) {
  int const code = WithDevShm("size=64m,huge=advise", [] {
    if (!KernelHasThp()) return kNoThp;
    try {
      Writer w(Spec::Make(UniqueName("huge"), 2 * kMiB), WriterOptions{.huge_pages = HugePages::kRequire});
      return 20;
    } catch (std::system_error const& e) {
      std::fprintf(stderr, "refused as expected: %s\n", e.what());
      if (e.code().value() != EOPNOTSUPP || std::string(e.what()).find("too small") == std::string::npos) return 21;
    }
    // 4 MiB: one page fits.
    Writer w(Spec::Make(UniqueName("huge"), 4 * kMiB), WriterOptions{.huge_pages = HugePages::kRequire});
    return w.HugePageBytes() == 2 * kMiB ? 0 : 22;
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}

// Asking for huge pages must not turn a full /dev/shm into a SIGBUS: the
// allocation through the huge-page mapping fails quietly (EFAULT from
// MADV_POPULATE_WRITE), and posix_fallocate then reports ENOSPC as before.
TEST(HugePages, AFullDevShmIsStillEnospcAtCreation) {
  int const code = WithDevShm("size=4m,huge=advise", [] {
    std::string const name = UniqueName("huge");
    try {
      Writer w(Spec::Make(name, 8 * kMiB), WriterOptions{.huge_pages = HugePages::kPrefer});
      return 20;
    } catch (std::system_error const& e) {
      std::fprintf(stderr, "refused as expected: %s\n", e.what());
      if (e.code().value() != ENOSPC || std::string(e.what()).find(name) == std::string::npos) return 21;
    }
    return DevShmEntries() == 0 ? 0 : 22;
  });
  if (auto const why = SkipReason(code)) GTEST_SKIP() << *why;
  EXPECT_EQ(code, 0);
}
