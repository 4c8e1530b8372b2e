// What a writer killed while it creates a ring leaves behind, with nobody
// else attached: the data segment NAME.data with magic 0 (0 bytes, or its
// full size with a zero header) and/or its lock, /dev/shm/sem.NAME.data.
// `circbuf ls` shows them as unfinished and `circbuf gc` removes them, but
// never while a live process holds the lock (it is creating the segment).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::Circbuf;
using circbuf::test::JsonField;
using circbuf::test::Pipe;
using circbuf::test::SemFileExists;
using circbuf::test::ShmFileExists;
using circbuf::test::UniqueName;

namespace {

constexpr long kNoFile = -1;

// As a creator leaves them: it takes the segment's lock, creates the file
// (`bytes` long, all zero: no header yet; kNoFile: not yet), and then
// either dies (SIGKILL, holding the lock) or, with `hold`, waits to be killed.
int Creator(std::string const& name, long bytes, Pipe const* hold) {
  circbuf::SemaphoreLock lock(name);
  lock.Acquire();
  if (bytes != kNoFile) {
    int const fd = ::shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ::ftruncate(fd, bytes) != 0) return 10;
  }
  if (hold != nullptr) {
    hold->Send();
    ::pause();
  }
  ::raise(SIGKILL);
  return 11;
}

void Leave(std::string const& name, long bytes) {
  Child creator([&] { return Creator(name, bytes, nullptr); });
  ASSERT_EQ(creator.Wait(), 128 + SIGKILL);
}

bool AnythingLeft(std::string const& name) {
  return ShmFileExists(name) || SemFileExists(name) || ShmFileExists(circbuf::CircularBuffer::DataSegmentName(name)) ||
         SemFileExists(circbuf::CircularBuffer::DataSegmentName(name));
}

}  // namespace

TEST(CliLeftovers, LsShowsAndGcRemovesWhatADeadCreatorLeft) {
  std::string const prefix = UniqueName("clilo");
  struct Case {
    std::string name;
    long bytes;
  };
  Case const cases[] = {{prefix + "-a.data", 0},
                        {prefix + "-b.data", 4096},
                        {prefix + "-c.data", 266240},
                        {prefix + "-d.data", kNoFile},
                        {prefix + "-e", 4096 + 640}};
  for (auto const& c : cases) Leave(c.name, c.bytes);
  for (auto const& c : cases) {
    EXPECT_TRUE(SemFileExists(c.name)) << c.name;
    EXPECT_EQ(ShmFileExists(c.name), c.bytes != kNoFile) << c.name;
  }
  auto const ls = Circbuf({"ls", prefix + "-*"});
  EXPECT_EQ(ls.code, 0) << ls.err;
  for (auto const& c : cases) {
    EXPECT_NE(ls.out.find(c.name + ": unfinished"), std::string::npos) << c.name << "\n" << ls.out;
  }
  EXPECT_NE(ls.out.find("(unfinished)"), std::string::npos) << ls.out;
  auto const json = Circbuf({"ls", "--json", cases[2].name});
  EXPECT_EQ(JsonField(json.out, "kind"), "unfinished") << json.out;
  EXPECT_EQ(JsonField(json.out, "stale"), "true") << json.out;
  EXPECT_EQ(JsonField(json.out, "bytes"), "266240") << json.out;

  auto const dry = Circbuf({"gc", "--dry-run", prefix + "-*"});
  EXPECT_EQ(dry.code, 0) << dry.err;
  for (auto const& c : cases) EXPECT_NE(dry.out.find("would remove " + c.name), std::string::npos) << dry.out;
  EXPECT_TRUE(SemFileExists(cases[0].name));

  // The form: gc NAME NAME.data.
  auto const one = Circbuf({"gc", prefix + "-a", prefix + "-a.data"});
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find("removed " + cases[0].name + " (unfinished"), std::string::npos) << one.out;
  auto const gc = Circbuf({"gc", prefix + "-*"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  for (auto const& c : cases) {
    EXPECT_FALSE(ShmFileExists(c.name)) << c.name << "\n" << gc.out;
    EXPECT_FALSE(SemFileExists(c.name)) << c.name << "\n" << gc.out;
  }
  EXPECT_EQ(Circbuf({"gc", prefix + "-*"}).out, "nothing to remove\n");
}

TEST(CliLeftovers, GcLeavesASegmentWhoseCreatorIsAlive) {
  for (long const bytes : {0L, 4096L, kNoFile}) {
    std::string const name = circbuf::CircularBuffer::DataSegmentName(UniqueName("clilv"));
    Pipe holding;
    Child creator([&] { return Creator(name, bytes, &holding); });
    ASSERT_EQ(holding.Receive(), '.');
    auto const ls = Circbuf({"ls", "--json", name});
    EXPECT_EQ(JsonField(ls.out, "kind"), "unfinished") << ls.out;
    EXPECT_EQ(JsonField(ls.out, "stale"), "false") << ls.out;
    auto const gc = Circbuf({"gc", name});
    EXPECT_EQ(gc.code, 0) << gc.err;
    EXPECT_EQ(gc.out.find("removed"), std::string::npos) << gc.out;
    EXPECT_TRUE(SemFileExists(name));
    EXPECT_EQ(ShmFileExists(name), bytes != kNoFile);
    creator.Kill();
    creator.Wait();
    auto const after = Circbuf({"gc", name});
    EXPECT_EQ(after.code, 0) << after.err;
    EXPECT_NE(after.out.find("removed " + name), std::string::npos) << after.out;
    EXPECT_FALSE(ShmFileExists(name));
    EXPECT_FALSE(SemFileExists(name));
  }
}

// The real thing: a Writer SIGKILLed at a random moment while it creates a
// 256 KiB ring. Whatever it left, gc NAME NAME.data removes all of it.
TEST(CliLeftovers, GcCleansUpAfterWritersKilledDuringCreation) {
  std::mt19937 random(12345);
  for (int round = 0; round < 40; ++round) {
    std::string const name = UniqueName("clilk");
    Child writer([&] {
      cb::Writer w(cb::Spec::Make(name, 262144));
      ::pause();
      return 0;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(random() % 4000));
    writer.Kill();
    writer.Wait();
    auto const gc = Circbuf({"gc", name, circbuf::CircularBuffer::DataSegmentName(name)});
    EXPECT_EQ(gc.code, 0) << gc.out << gc.err;
    EXPECT_FALSE(AnythingLeft(name)) << "round " << round << "\n" << gc.out << gc.err;
    (void)circbuf::CircularBuffer::Remove(name, /*force=*/true);
  }
}

// `circbuf rm NAME` on a ring that a creator SIGKILLed while creating it
// (NAME.data unfinished, NAME never made): removes what is there, the locks
// too, when no live process holds them.
TEST(CliLeftovers, RmRemovesAnUnfinishedRing) {
  for (long const bytes : {0L, 4096L, kNoFile}) {
    std::string const name = UniqueName("clirm");
    Leave(circbuf::CircularBuffer::DataSegmentName(name), bytes);
    ASSERT_TRUE(SemFileExists(circbuf::CircularBuffer::DataSegmentName(name)));
    auto const rm = Circbuf({"rm", name});
    EXPECT_EQ(rm.code, 0) << bytes << " bytes: " << rm.out << rm.err;
    EXPECT_FALSE(AnythingLeft(name)) << bytes << " bytes: " << rm.out << rm.err;
    circbuf::SharedMemory::Remove(circbuf::CircularBuffer::DataSegmentName(name));  // whatever the tool left
    ::sem_unlink((circbuf::CircularBuffer::DataSegmentName(name)).c_str());
  }
}
