// The truncation guard and an application's own SIGBUS handler installed
// after it, which chains to the handler it replaced (the guard), followed by
// the documented remedy, InstallTruncationGuard() again (shm.cppm). circbuf's
// faults must still be caught; any other SIGBUS must reach the application's
// handler exactly once and then take its default course, never loop
// guard -> handler -> guard (a stack overflow would end in SIGSEGV).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <exception>
#include <string>

#include <gtest/gtest.h>

#include "support/process.hpp"

import circbuf.shm;

using circbuf::Access;
using circbuf::kMinPageSize;
using circbuf::OpenMode;
using circbuf::SharedMemory;
using circbuf::test::Child;
using circbuf::test::Pipe;
using circbuf::test::UniqueName;

namespace {

// The application's handler: one byte per call on a pipe, then the handler
// it replaced, as a well-behaved chaining handler does.
int g_calls_fd = -1;
struct sigaction g_replaced{};

void Chaining(int signal, siginfo_t* info, void* context) {
  char const c = 'h';
  (void)!::write(g_calls_fd, &c, 1);
  if ((g_replaced.sa_flags & SA_SIGINFO) != 0 && g_replaced.sa_sigaction != nullptr) {
    g_replaced.sa_sigaction(signal, info, context);
  } else if (g_replaced.sa_handler != SIG_DFL && g_replaced.sa_handler != SIG_IGN) {
    g_replaced.sa_handler(signal);
  } else {
    ::signal(signal, SIG_DFL);  // returning repeats the access, which now kills
  }
}

// The guard, then the chaining handler, then the guard again. The guard is
// installed explicitly: the child was forked from a process in which an
// attachment may have installed it already, and SIG_DFL replaced it since.
void InstallAllThree(int calls_fd) {
  g_calls_fd = calls_fd;
  circbuf::InstallTruncationGuard();
  struct sigaction mine{};
  mine.sa_sigaction = &Chaining;
  mine.sa_flags = SA_SIGINFO;
  ::sigemptyset(&mine.sa_mask);
  ::sigaction(SIGBUS, &mine, &g_replaced);
  circbuf::InstallTruncationGuard();
  circbuf::InstallTruncationGuard();  // idempotent
}

// Calls of the handler so far (the write end is non-blocking, so a runaway
// recursion cannot block on a full pipe).
struct Calls {
  int fds[2]{-1, -1};
  Calls() {
    if (::pipe(fds) != 0) std::terminate();
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
  }
  ~Calls() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  Calls(Calls const&) = delete;
  Calls& operator=(Calls const&) = delete;
  [[nodiscard]] int Count() const {
    char buf[4096];
    int n = 0;
    for (ssize_t got = 0; (got = ::read(fds[0], buf, sizeof buf)) > 0;) n += static_cast<int>(got);
    return n;
  }
};

struct Names {
  std::string name = UniqueName("guardchain");
  Names() = default;
  ~Names() {
    SharedMemory::Remove(name);
    SharedMemory::Remove(name + "-other");
  }
  Names(Names const&) = delete;
  Names& operator=(Names const&) = delete;
};

}  // namespace

// (a) A circbuf segment shrunk by another process: the guard still catches
// the fault (zeros, Truncated()); the application's handler is not called.
TEST(TruncationGuardChain, CircbufFaultIsStillTheGuards) {
  Names n;
  SharedMemory owner(n.name, std::size_t{16} * 1024);
  Calls calls;
  Pipe ready;
  Pipe shrunk;
  Child child([&] {
    ::signal(SIGBUS, SIG_DFL);  // not a sanitizer's handler as the first previous one
    SharedMemory shm(n.name, 0, {.open = OpenMode::kAttach, .access = Access::kReadOnly});
    InstallAllThree(calls.fds[1]);
    ready.Send();
    if (shrunk.Receive() < 0) return 10;
    auto const* last = static_cast<std::byte const volatile*>(shm.Data() + shm.Size() - 1);
    if (*last != std::byte{0}) return 11;
    return shm.Truncated() ? 0 : 12;
  });
  ASSERT_EQ(ready.Receive(), '.');
  int const fd = ::shm_open(n.name.c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, off_t{kMinPageSize}), 0);
  ::close(fd);
  shrunk.Send();
  EXPECT_EQ(child.Wait(std::chrono::seconds(20)), 0) << "135 SIGBUS, 139 SIGSEGV (recursion), -1 hang";
  EXPECT_EQ(calls.Count(), 0);
}

// (b) A SIGBUS that is not circbuf's, from a real fault (a mapping of a file
// that was cut short) and from raise(): the handler runs once, then the
// process dies of SIGBUS.
TEST(TruncationGuardChain, OtherSigbusReachesTheHandlerOnceThenKills) {
  for (bool const real_fault : {true, false}) {
    Names n;
    Calls calls;
    Child child([&] {
      ::signal(SIGBUS, SIG_DFL);
      SharedMemory shm(n.name, 4096);  // a circbuf attachment in the process
      InstallAllThree(calls.fds[1]);
      if (!real_fault) {
        ::raise(SIGBUS);
        return 12;
      }
      std::string const other = n.name + "-other";
      int const fd = ::shm_open(other.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
      if (fd < 0 || ::ftruncate(fd, 4096) != 0) return 10;
      void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
      ::shm_unlink(other.c_str());
      if (p == MAP_FAILED || ::ftruncate(fd, 0) != 0) return 11;
      (void)*static_cast<char const volatile*>(p);
      return 12;  // not reached
    });
    EXPECT_EQ(child.Wait(std::chrono::seconds(20)), 128 + SIGBUS)
        << (real_fault ? "real fault" : "raise") << ": 139 SIGSEGV (recursion), -1 hang";
    EXPECT_EQ(calls.Count(), 1) << (real_fault ? "real fault" : "raise");
  }
}
