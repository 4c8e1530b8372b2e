// Every error path of the circbuf tool: one line on stderr, nothing on
// stdout, a distinct exit code, and nothing created or removed by mistake.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Circbuf;
using circbuf::test::Lines;
using circbuf::test::Options;
using circbuf::test::Result;
using circbuf::test::ShmFileExists;
using circbuf::test::ToolCopyForOtherUsers;
using circbuf::test::UniqueName;

namespace {

constexpr uid_t kNobody = 65534;

// Exit code `code` and exactly one line on stderr that contains `text`.
void ExpectError(Result const& r, int code, std::string const& text) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(Lines(r.err).size(), 1U) << r.err;
  EXPECT_NE(r.err.find(text), std::string::npos) << "stderr: " << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// A file in /dev/shm with these bytes, removed (with any lock) at the end.
struct RawSegment {
  RawSegment(std::string n, std::vector<std::byte> const& bytes) : name(std::move(n)) {
    int const fd = ::open(("/dev/shm" + name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  RawSegment(RawSegment const&) = delete;
  RawSegment& operator=(RawSegment const&) = delete;
  ~RawSegment() {
    ::unlink(("/dev/shm" + name).c_str());
    ::unlink(("/dev/shm/sem." + name.substr(1)).c_str());
  }
  std::string name;
};

// A ring's state segment that is circbuf's but of a newer ring layout (version 3).
std::vector<std::byte> OtherVersionRing() {
  std::vector<std::byte> bytes(circbuf::kMinPageSize + sizeof(cb::State));
  circbuf::SegmentHeader header{};
  header.magic = circbuf::kSegmentMagic;
  header.version = circbuf::kSegmentVersion;
  header.header_bytes = circbuf::kMinPageSize;
  header.user_bytes = sizeof(cb::State);
  header.creator_pid = ::getpid();
  cb::State state{};
  state.magic = cb::kRingMagic;
  state.version = cb::kRingVersion + 1;  // a layout this build does not read
  state.state_bytes = sizeof(cb::State);
  state.capacity = 4096;
  std::memcpy(bytes.data(), &header, sizeof header);
  std::memcpy(bytes.data() + circbuf::kMinPageSize, &state, sizeof state);
  return bytes;
}

}  // namespace

TEST(CliErrors, UnknownBuffer) {
  std::string const name = UniqueName("clinx");
  ExpectError(Circbuf({"stat", name}), 2, "circbuf stat: " + name + ": no such buffer");
  ExpectError(Circbuf({"tail", name}), 2, "does not exist");
  ExpectError(Circbuf({"rm", name}), 2, "no such buffer");
  EXPECT_FALSE(ShmFileExists(name));
  EXPECT_FALSE(circbuf::test::SemFileExists(name)) << "a refused call leaves nothing behind";
}

TEST(CliErrors, InvalidName) {
  ExpectError(Circbuf({"stat", "/a/b"}), 3, "only the first character may be '/'");
  ExpectError(Circbuf({"tail", ""}), 3, "ring name");
  ExpectError(Circbuf({"pub", std::string(300, 'n')}), 3, "too long");
  ExpectError(Circbuf({"rm", "/."}), 3, "ring name");
}

TEST(CliErrors, SizeOutOfRange) {
  std::string const name = UniqueName("clisz");
  ExpectError(Circbuf({"pub", name, "--capacity", "1KiB"}), 3, "(1024 bytes): must be 4096 .. 52428800");
  ExpectError(Circbuf({"pub", name, "--capacity", "51MiB"}), 3, "must be 4096 .. 52428800");
  ExpectError(Circbuf({"pub", name, "--capacity", "12XB"}), 3, "unknown unit");
  ExpectError(Circbuf({"pub", name, "--capacity", "99999999999999999999999"}), 3, "too large");
  ExpectError(Circbuf({"pub", name, "--capacity", "KiB"}), 3, "not a size");
  ExpectError(Circbuf({"demo", "--capacity", "0"}), 3, "must be 4096");
  EXPECT_FALSE(ShmFileExists(name));
}

TEST(CliErrors, PermissionDenied) {
  std::string const name = UniqueName("cliperm");
  cb::Writer writer(cb::Spec::Make(name, 4096));  // mode 0600, owned by us
  Options as;
  ToolCopyForOtherUsers const copy;  // `nobody` may not reach the build tree
  if (::geteuid() == 0) {
    as.uid = kNobody;  // root reads anything: ask as somebody else
    as.binary = copy.path;
  } else {
    GTEST_SKIP() << "needs root to run the tool as another user";
  }
  ExpectError(Circbuf({"stat", name}, {}, std::chrono::seconds(20), as), 4, "Permission denied");
  ExpectError(Circbuf({"tail", name}, {}, std::chrono::seconds(20), as), 4, "Permission denied");
  ExpectError(Circbuf({"rm", "--force", name}, {}, std::chrono::seconds(20), as), 4, "Permission denied");
  EXPECT_TRUE(ShmFileExists(name));
}

TEST(CliErrors, NotACircbufBuffer) {
  RawSegment const foreign(UniqueName("clifo"), std::vector<std::byte>(8192, std::byte{'x'}));
  ExpectError(Circbuf({"stat", foreign.name}), 5, "not a circbuf buffer");
  ExpectError(Circbuf({"tail", foreign.name}), 5, "not a circbuf buffer");
  ExpectError(Circbuf({"rm", "--force", foreign.name}), 5, "not a circbuf buffer; left alone");
  ExpectError(Circbuf({"pub", foreign.name}), 5, "not a circbuf buffer");
  EXPECT_TRUE(ShmFileExists(foreign.name)) << "a foreign segment is never removed";
  auto const ls = Circbuf({"ls", foreign.name});
  EXPECT_EQ(ls.code, 0);
  EXPECT_EQ(ls.out, "no circbuf buffers match\n");
}

TEST(CliErrors, OtherLayoutVersion) {
  RawSegment const ring(UniqueName("clive"), OtherVersionRing());
  std::string const refused = "ring layout version " + std::to_string(cb::kRingVersion + 1) +
                              ", this tool reads version " + std::to_string(cb::kRingVersion);
  ExpectError(Circbuf({"stat", ring.name}), 5, refused);
  ExpectError(Circbuf({"tail", ring.name}), 5, refused);
  ExpectError(Circbuf({"pub", ring.name}), 5, refused);
  EXPECT_TRUE(ShmFileExists(ring.name)) << "looked at, never attached to, so never unlinked";
  auto const ls = Circbuf({"ls", ring.name});
  EXPECT_EQ(ls.code, 0);
  EXPECT_NE(ls.out.find("version " + std::to_string(cb::kRingVersion + 1)), std::string::npos) << ls.out;
}

TEST(CliErrors, BusyWriter) {
  std::string const name = UniqueName("clibusy");
  cb::Writer writer(cb::Spec::Make(name, 4096));
  ExpectError(Circbuf({"pub", name}, "hello\n"), 6, "already has a live writer");
}

// The huge= mount option of /dev/shm here ("never" when absent).
std::string DevShmHugeOption() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device;
  std::string point;
  std::string type;
  std::string options;
  std::string rest;
  std::string found = "never";
  while (mounts >> device >> point >> type >> options && std::getline(mounts, rest)) {
    if (point != "/dev/shm") continue;
    found = "never";
    if (auto const at = options.find("huge="); at != std::string::npos) {
      found = options.substr(at + 5, options.find(',', at) - at - 5);
    }
  }
  return found;
}

// pub --huge-pages: require where /dev/shm gives none is an error that says
// why and creates nothing; prefer falls back to 4 KiB pages and says so.
// (tests/ring/huge_pages.test.cpp covers the mounts that do give them.)
TEST(CliErrors, HugePagesRequiredWhereNoneCanCome) {
  if (DevShmHugeOption() != "never") GTEST_SKIP() << "/dev/shm here is mounted huge=" << DevShmHugeOption();
  std::string const name = UniqueName("clihuge");
  ExpectError(Circbuf({"pub", name, "--capacity", "8MiB", "--huge-pages", "require"}, "hello\n"), 7,
              "huge pages required, but none were given: /dev/shm is mounted huge=never");
  EXPECT_FALSE(ShmFileExists(name));
  EXPECT_FALSE(ShmFileExists(circbuf::CircularBuffer::DataSegmentName(name)));
  Result const r = Circbuf({"pub", name, "--capacity", "8MiB", "--huge-pages", "prefer"}, "hello\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("0 of 8388608 bytes of record space on huge pages"), std::string::npos) << r.err;
  ExpectError(Circbuf({"pub", name, "--huge-pages", "maybe"}), 1, "maybe");
}

TEST(CliErrors, UsageErrors) {
  ExpectError(Circbuf({}), 1, "A subcommand is required");
  ExpectError(Circbuf({"frobnicate"}), 1, "unknown subcommand \"frobnicate\"");
  ExpectError(Circbuf({"stat"}), 1, "name is required");
  ExpectError(Circbuf({"tail", "/x", "--from", "middle"}), 1, "middle");
  ExpectError(Circbuf({"stat", "/x", "--interval", "abc"}), 1, "abc");
  ExpectError(Circbuf({"bench", "--cpus", "0"}), 1, "cpus");
}

// Every help text fits in 80 columns (long descriptions are wrapped).
TEST(CliErrors, HelpOnEverySubcommand) {
  auto const top = Circbuf({"--help"});
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("Exit codes:"), std::string::npos) << top.out;
  EXPECT_LE(circbuf::test::Widest(top.out), 80U) << top.out;
  std::vector<std::vector<std::string>> subs = {{"demo"}, {"ls"},    {"stat"},   {"tail"}, {"pub"},  {"rm"},
                                                {"gc"},   {"bench"}, {"record"}, {"info"}, {"dump"}, {"replay"}};
  if (top.out.find("bridge") != std::string::npos) {  // built with the NATS bridge
    subs.insert(subs.end(), {{"bridge"}, {"bridge", "in"}, {"bridge", "out"}});
  }
  for (auto const& sub : subs) {
    std::vector<std::string> args = sub;
    args.emplace_back("--help");
    auto const r = Circbuf(args);
    EXPECT_EQ(r.code, 0) << sub.back();
    EXPECT_NE(r.out.find("Usage: circbuf " + sub.front()), std::string::npos) << r.out;
    EXPECT_LE(circbuf::test::Widest(r.out), 80U) << r.out;
  }
}

TEST(CliErrors, NoCrashOnOddInput) {
  std::vector<std::vector<std::string>> const odd = {
      {"stat", "/"},
      {"stat", "//"},
      {"tail", "/x", "--count", "-1"},
      {"pub", "/x", "-c", ""},
      {"ls", "["},
      {"gc", "--dry-run", "/nothing-here-*"},
      {"stat", "\x01"},
      {"rm", "/x\n"},
      {"tail", "/x", "--wait", "-3"},
      {"bench", "-n", "1"},
      {"demo", "--seconds", "0"},
      {"-v"},
  };
  for (auto const& args : odd) {
    auto const r = Circbuf(args);
    EXPECT_GE(r.code, 0) << args[0];
    EXPECT_LT(r.code, 128) << "crashed: " << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
    EXPECT_LE(Lines(r.err).size(), 1U) << r.err;
  }
}
