// circbuf gc and circbuf rm: stale rings (every process SIGKILLed) go, live
// ones stay unless forced. gc is restricted to this test's names, so that it
// never touches the rings of tests running beside it.
#include <signal.h>
#include <unistd.h>

#include <optional>
#include <span>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::Circbuf;
using circbuf::test::Pipe;
using circbuf::test::SemFileExists;
using circbuf::test::ShmFileExists;
using circbuf::test::UniqueName;

namespace {

// A writer and a reader of `name` in two child processes, until killed.
struct LiveRing {
  explicit LiveRing(std::string n)
      : name(std::move(n)), writer([this] {
          cb::Writer w(cb::Spec::Make(name, 8192));
          w.Write(std::as_bytes(std::span("x", 1)));
          ready.Send();
          ::pause();
          return 0;
        }) {
    EXPECT_EQ(ready.Receive(), '.');
    reader.emplace([this] {
      cb::Reader r(cb::Spec::Make(name, 0));
      ready.Send();
      ::pause();
      return 0;
    });
    EXPECT_EQ(ready.Receive(), '.');
  }
  LiveRing(LiveRing const&) = delete;
  LiveRing& operator=(LiveRing const&) = delete;
  void KillAll() {
    writer.Kill();
    if (reader) reader->Kill();
    writer.Wait();
    if (reader) reader->Wait();
  }
  ~LiveRing() {
    KillAll();
    (void)circbuf::CircularBuffer::Remove(name, /*force=*/true);
  }
  std::string name;
  Pipe ready;
  Child writer;
  std::optional<Child> reader;  // started once the writer has made the ring
};

bool RingFilesExist(std::string const& name) {
  return ShmFileExists(name) || ShmFileExists(circbuf::CircularBuffer::DataSegmentName(name)) || SemFileExists(name) ||
         SemFileExists(circbuf::CircularBuffer::DataSegmentName(name));
}

}  // namespace

TEST(CliGc, RemovesKilledRingAndLeavesLiveOneAlone) {
  std::string const prefix = UniqueName("cligc");
  LiveRing dead(prefix + "-dead");
  LiveRing live(prefix + "-live");
  dead.KillAll();  // SIGKILL: nobody detached, the refcounts still say 2
  auto const ls = Circbuf({"ls", "--json", dead.name});
  EXPECT_EQ(circbuf::test::JsonField(ls.out, "stale"), "true") << ls.out;
  EXPECT_EQ(circbuf::test::JsonField(ls.out, "attached"), "2") << ls.out;

  auto const r = Circbuf({"gc", prefix + "-*"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("removed " + dead.name + " (stale ring"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("removed " + circbuf::CircularBuffer::DataSegmentName(dead.name)), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(live.name), std::string::npos) << r.out;
  EXPECT_FALSE(RingFilesExist(dead.name));
  EXPECT_TRUE(ShmFileExists(live.name));
  EXPECT_TRUE(ShmFileExists(circbuf::CircularBuffer::DataSegmentName(live.name)));

  auto const again = Circbuf({"gc", prefix + "-*"});
  EXPECT_EQ(again.code, 0);
  EXPECT_EQ(again.out, "nothing to remove\n");
}

TEST(CliGc, DryRunRemovesNothing) {
  std::string const prefix = UniqueName("cligd");
  LiveRing dead(prefix + "-dead");
  dead.KillAll();
  auto const r = Circbuf({"gc", "--dry-run", prefix + "-*"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("would remove " + dead.name), std::string::npos) << r.out;
  EXPECT_TRUE(ShmFileExists(dead.name));
}

TEST(CliRm, RefusesALiveRingUnlessForced) {
  LiveRing live(UniqueName("clirm"));
  auto const refused = Circbuf({"rm", live.name});
  EXPECT_EQ(refused.code, 6);
  EXPECT_NE(refused.err.find("live processes attached"), std::string::npos) << refused.err;
  EXPECT_EQ(circbuf::test::Lines(refused.err).size(), 1U) << refused.err;
  EXPECT_TRUE(ShmFileExists(live.name));

  auto const forced = Circbuf({"rm", "--force", live.name});
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_EQ(forced.out, "removed " + live.name + "\nremoved " + live.name + ".data\n");
  EXPECT_FALSE(RingFilesExist(live.name));
}

TEST(CliRm, RemovesAStaleRing) {
  LiveRing dead(UniqueName("clirs"));
  dead.KillAll();
  auto const r = Circbuf({"rm", dead.name});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(RingFilesExist(dead.name));
  auto const gone = Circbuf({"rm", dead.name});
  EXPECT_EQ(gone.code, 2);
  EXPECT_EQ(gone.err, "circbuf rm: " + dead.name + ": no such buffer\n");
}

TEST(CliGc, RemovesAStalePlainSegment) {
  std::string const name = UniqueName("cligs");
  Pipe ready;
  Child holder([&] {
    circbuf::SharedMemory segment(name, 100);
    ready.Send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(ready.Receive(), '.');
  auto const live = Circbuf({"ls", "--all", name});
  EXPECT_NE(live.out.find("(segment)"), std::string::npos) << live.out;
  EXPECT_EQ(Circbuf({"gc", name}).out, "nothing to remove\n");
  holder.Kill();
  holder.Wait();
  auto const r = Circbuf({"gc", name});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("removed " + name + " (stale segment, 100 bytes"), std::string::npos) << r.out;
  EXPECT_FALSE(ShmFileExists(name));
  EXPECT_FALSE(SemFileExists(name));
}
