#include <sys/mman.h>

#include <sched.h>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include <gtest/gtest.h>

#include "support/process.hpp"

import circbuf.sync;

using circbuf::SemaphoreLock;
using circbuf::test::Child;
using circbuf::test::Pipe;
using circbuf::test::SemFileExists;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

// Removes the semaphore when a test ends, however it ends.
struct Cleanup {
  explicit Cleanup(std::string n) : name(std::move(n)) {}
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
  ~Cleanup() { SemaphoreLock::Remove(name); }
  std::string name;
};

void ExpectInvalidName(std::string const& name, std::string const& needle) {
  try {
    SemaphoreLock lock(name);
    FAIL() << "accepted " << name;
  } catch (std::invalid_argument const& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(SemaphoreLock, CreatesTheNamedSemaphore) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock lock(c.name);
  EXPECT_EQ(lock.Name(), c.name);
  EXPECT_FALSE(lock.Held());
  EXPECT_TRUE(SemFileExists(c.name));
}

TEST(SemaphoreLock, RefusesInvalidNames) {
  ExpectInvalidName("", "empty");
  ExpectInvalidName("noslash", "must start with '/'");
  ExpectInvalidName("/", "too short");
  ExpectInvalidName("/a/b", "'/' at position 2");
  ExpectInvalidName("/" + std::string(252, 'x'), "too long (253 characters)");
  ExpectInvalidName("/has space", "character 32");
  ExpectInvalidName("/..", "'.' and '..'");
  // The longest name allowed works.
  Cleanup c{"/" + std::string(251, 'y')};
  EXPECT_NO_THROW(SemaphoreLock{c.name});
}

TEST(SemaphoreLock, AcquireAndRelease) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock lock(c.name);
  lock.Acquire();
  EXPECT_TRUE(lock.Held());
  EXPECT_FALSE(lock.Recovered());
  EXPECT_THROW(lock.Acquire(), std::logic_error);
  lock.Release();
  EXPECT_FALSE(lock.Held());
  EXPECT_THROW(lock.Release(), std::logic_error);
  EXPECT_TRUE(lock.TryAcquire());
  lock.Release();
}

TEST(SemaphoreLock, TwoObjectsExcludeEachOtherInOneProcess) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock a(c.name);
  SemaphoreLock b(c.name);
  a.Acquire();
  EXPECT_FALSE(b.TryAcquire());
  EXPECT_FALSE(b.TryAcquireFor(50ms));
  a.Release();
  EXPECT_TRUE(b.TryAcquire());
  b.Release();
}

TEST(SemaphoreLock, ScopedGuardAndStdUniqueLock) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock lock(c.name);
  SemaphoreLock other(c.name);
  {
    SemaphoreLock::Guard guard(lock);
    EXPECT_TRUE(lock.Held());
    EXPECT_FALSE(other.TryAcquire());
  }
  EXPECT_FALSE(lock.Held());
  {
    std::unique_lock<SemaphoreLock> held(lock, 1s);
    EXPECT_TRUE(held.owns_lock());
    EXPECT_FALSE(other.TryAcquire());
  }
  EXPECT_TRUE(other.TryAcquire());
  other.Release();
}

TEST(SemaphoreLock, TimedAcquireReportsTimeoutWhileAnotherProcessHolds) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock lock(c.name);
  Pipe held;
  Pipe release;
  Child child([&] {
    SemaphoreLock mine(c.name);
    mine.Acquire();
    held.Send();
    release.Receive();
    mine.Release();
    return 0;
  });
  ASSERT_EQ(held.Receive(), '.');
  auto const start = std::chrono::steady_clock::now();
  EXPECT_FALSE(lock.TryAcquireFor(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);  // it waited, then gave up
  EXPECT_FALSE(lock.Held());
  release.Send();
  EXPECT_TRUE(lock.TryAcquireFor(10s));
  EXPECT_FALSE(lock.Recovered());
  lock.Release();
  EXPECT_EQ(child.Wait(), 0);
}

// Four processes increment a plain (non-atomic) counter in shared memory with
// a deliberate window inside the critical section. Any overlap shows up as an
// "inside" flag already set or as lost increments.
TEST(SemaphoreLock, MutualExclusionAcrossProcesses) {
  Cleanup c{UniqueName("sem")};
  struct Shared {
    volatile int start;
    volatile int inside;
    volatile int overlaps;
    volatile std::int64_t counter;
  };
  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* shared = new (mem) Shared{0, 0, 0, 0};
  constexpr int kProcesses = 4;
  constexpr int kRounds = 300;
  auto const worker = [&] {
    SemaphoreLock lock(c.name);
    while (shared->start == 0) {
    }  // all start together, so that they really contend
    for (int i = 0; i < kRounds; ++i) {
      SemaphoreLock::Guard guard(lock);
      if (shared->inside != 0) shared->overlaps = shared->overlaps + 1;
      shared->inside = 1;
      std::int64_t const v = shared->counter;
      for (int spin = 0; spin < 2000; ++spin) shared->inside = 1;  // widen the window
      sched_yield();
      shared->counter = v + 1;
      shared->inside = 0;
    }
    return 0;
  };
  {
    Child children[kProcesses] = {Child(worker), Child(worker), Child(worker), Child(worker)};
    shared->start = 1;
    for (auto& child : children) EXPECT_EQ(child.Wait(), 0);
  }
  EXPECT_EQ(shared->overlaps, 0);
  EXPECT_EQ(shared->counter, kProcesses * kRounds);
  ::munmap(mem, sizeof(Shared));
}

TEST(SemaphoreLock, HolderKilledWithSigkillDoesNotBlockOthers) {
  Cleanup c{UniqueName("sem")};
  Pipe held;
  Child child([&]() -> int {
    SemaphoreLock mine(c.name);
    mine.Acquire();
    held.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(held.Receive(), '.');
  SemaphoreLock lock(c.name);
  EXPECT_FALSE(lock.TryAcquire());  // alive and holding: excluded
  child.Kill(SIGKILL);
  EXPECT_EQ(child.Wait(), 128 + SIGKILL);
  ASSERT_TRUE(lock.TryAcquireFor(5s));
  EXPECT_TRUE(lock.Recovered());
  lock.Release();
  // The semaphore is consistent again: the next acquisition is a clean one.
  ASSERT_TRUE(lock.TryAcquireFor(5s));
  EXPECT_FALSE(lock.Recovered());
  lock.Release();
}

TEST(SemaphoreLock, WaiterSurvivesTheNameBeingUnlinkedWhileHeld) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock first(c.name);
  first.Acquire();
  Pipe waiting;
  Pipe got;
  Child waiter([&] {
    SemaphoreLock mine(c.name);
    waiting.Send();
    if (!mine.TryAcquireFor(10s)) return 1;
    got.Send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  first.Unlink();
  EXPECT_FALSE(SemFileExists(c.name));
  first.Release();
  ASSERT_EQ(got.Receive(), '.');  // the waiter reopened the name and holds a fresh lock
  EXPECT_TRUE(SemFileExists(c.name));
  SemaphoreLock late(c.name);
  EXPECT_FALSE(late.TryAcquire());  // ... and it still excludes newcomers
  waiter.Kill();
  EXPECT_EQ(waiter.Wait(), 128 + SIGKILL);
  EXPECT_TRUE(late.TryAcquireFor(5s));
  late.Release();
}

TEST(SemaphoreLock, ForkedCopyNeverReleasesTheParentsLock) {
  Cleanup c{UniqueName("sem")};
  SemaphoreLock lock(c.name);
  lock.Acquire();
  Child child([&] {
    // The child's copy of `lock` shares the parent's open file description;
    // dropping it here must not drop the parent's flock.
    try {
      lock.Release();
    } catch (std::logic_error const&) {
      return 0;  // the copy knows that this process does not hold the lock
    }
    return 0;
  });
  EXPECT_EQ(child.Wait(), 0);
  SemaphoreLock other(c.name);
  EXPECT_FALSE(other.TryAcquire());
  lock.Release();
  EXPECT_TRUE(other.TryAcquire());
  other.Release();
}

TEST(SemaphoreLock, SystemErrorCarriesErrnoAndName) {
  // A directory where the semaphore's file should be: sem_open cannot create it.
  std::string const name = UniqueName("semdir");
  std::string const path = "/dev/shm/sem." + name.substr(1);
  ASSERT_EQ(::mkdir(path.c_str(), 0700), 0);
  try {
    SemaphoreLock lock(name);
    ADD_FAILURE() << "opened a directory as a semaphore";
  } catch (std::system_error const& e) {
    EXPECT_NE(e.code().value(), 0);
    EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
  }
  ::rmdir(path.c_str());
}

// Another process keeps creating and unlinking the name (as attaches that find
// no segment do) while this one opens and locks it: opening never fails.
TEST(SemaphoreLock, OpeningRacesWithAnotherProcessUnlinkingTheName) {
  Cleanup c{UniqueName("sem")};
  Pipe started;
  Child churn([&]() -> int {
    started.Send();
    for (;;) {
      SemaphoreLock lock(c.name);
      lock.Acquire();
      lock.Unlink();
      lock.Release();
    }
  });
  ASSERT_EQ(started.Receive(), '.');
  for (int i = 0; i < 3000; ++i) {
    SemaphoreLock lock(c.name);
    ASSERT_TRUE(lock.TryAcquireFor(5s));
    lock.Release();
  }
  churn.Kill();
  EXPECT_EQ(churn.Wait(), 128 + SIGKILL);
}
