// The tool on a hostile control segment: another process sets one field of a
// ring's State (/dev/shm/NAME, user region at file offset 4096; layout in
// modules/ring/layout.cppm) to an extreme value, and ls, stat, tail, rm and
// gc run on it. None may crash or hang; stat refuses a State that breaks the
// library's rules with exit 5 and one line naming the field. The ring's
// writer is this test process, so rm and gc must leave the ring alone; a
// stale copy of the corrupt ring is removed by rm and gc at the end.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Circbuf;
using circbuf::test::Result;
using circbuf::test::ShmFileExists;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

struct Field {
  char const* name;
  std::size_t offset;  // in State
  std::size_t bytes;
  bool header;  // stat must refuse every value but the right one, naming it
};

// Every field of State, and the padding where `waiters` lives (not displayed).
constexpr Field kFields[] = {
    {"magic", offsetof(cb::State, magic), 8, true},
    {"version", offsetof(cb::State, version), 4, true},
    {"state_bytes", offsetof(cb::State, state_bytes), 4, true},
    {"capacity", offsetof(cb::State, capacity), 8, true},
    {"chunk", offsetof(cb::State, chunk), 8, true},
    {"max_message", offsetof(cb::State, max_message), 4, true},
    {"reserved0", offsetof(cb::State, reserved0), 4, false},
    {"tail", offsetof(cb::State, tail), 8, false},
    {"latest", offsetof(cb::State, latest), 8, false},
    {"sequence", offsetof(cb::State, sequence), 8, false},
    {"limit", offsetof(cb::State, limit), 8, false},
    {"index[0]", offsetof(cb::State, index), 8, false},
    {"index[1]", offsetof(cb::State, index) + 8, 8, false},
    {"index[7]", offsetof(cb::State, index) + 56, 8, false},
    {"writer_pid", offsetof(cb::State, writer_pid), 4, false},
    {"writer_state", offsetof(cb::State, writer_state), 4, false},
    {"writer_epoch", offsetof(cb::State, writer_epoch), 8, false},
    {"reserved1", offsetof(cb::State, reserved1), 4, false},
    {"offset 512", 512, 4, false},
};

std::string StatePath(std::string const& name) { return "/dev/shm/" + name.substr(1); }

void Put(std::string const& name, std::size_t offset, void const* bytes, std::size_t n) {
  int const fd = ::open(StatePath(name).c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(circbuf::kMinPageSize + offset)), static_cast<ssize_t>(n));
  ::close(fd);
}

std::vector<std::byte> Get(std::string const& name, std::size_t offset, std::size_t n) {
  std::vector<std::byte> out(n);
  int const fd = ::open(StatePath(name).c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::pread(fd, out.data(), n, static_cast<off_t>(circbuf::kMinPageSize + offset)), static_cast<ssize_t>(n));
  ::close(fd);
  return out;
}

std::uint64_t GetWord(std::string const& name, std::size_t offset) {
  std::uint64_t v = 0;
  auto const bytes = Get(name, offset, 8);
  std::memcpy(&v, bytes.data(), 8);
  return v;
}

// tail: it may wait for messages that never come (that is its job, not a
// hang); after 2 s it gets SIGINT, which ends it with 0.
Result Tail(std::string const& name) {
  Tool tool({"tail", name, "--from", "oldest", "--count", "1"});
  if (!tool.WaitForOutput("\x01never", 2s) && !tool.OutClosed()) tool.Signal(SIGINT);
  int const code = tool.Wait(10s);
  return {code, tool.Out(), tool.Err()};
}

std::string Describe(Field const& f, std::uint64_t value) {
  return std::string(f.name) + " = " + std::to_string(value);
}

// Runs every subcommand on the ring as it is now.
void RunAll(std::string const& name, Field const& f, std::uint64_t value, bool must_refuse) {
  std::string const what = Describe(f, value);
  std::vector<std::pair<std::string, Result>> runs;
  runs.emplace_back("ls", Circbuf({"ls", name}, {}, 10s));
  runs.emplace_back("ls --json", Circbuf({"ls", "--json", name}, {}, 10s));
  runs.emplace_back("stat", Circbuf({"stat", name, "--interval", "0.05"}, {}, 10s));
  runs.emplace_back("stat --json", Circbuf({"stat", "--json", name, "--interval", "0.05"}, {}, 10s));
  runs.emplace_back("tail", Tail(name));
  runs.emplace_back("rm", Circbuf({"rm", name}, {}, 10s));
  runs.emplace_back("gc", Circbuf({"gc", name}, {}, 10s));
  for (auto const& [command, r] : runs) {
    EXPECT_GE(r.code, 0) << what << ": " << command << " timed out";
    EXPECT_LT(r.code, 128) << what << ": " << command << " crashed\n" << r.err;
  }
  auto const& rm = runs[5].second;
  EXPECT_NE(rm.code, 0) << what << ": rm removed a ring with a live writer\n" << rm.out;
  EXPECT_TRUE(ShmFileExists(name)) << what;
  if (!must_refuse) return;
  for (std::size_t i : {2U, 3U}) {
    auto const& stat = runs[i].second;
    EXPECT_EQ(stat.code, 5) << what << ": " << runs[i].first << "\n" << stat.out << stat.err;
    EXPECT_EQ(circbuf::test::Lines(stat.err).size(), 1U) << what << "\n" << stat.err;
    EXPECT_NE(stat.err.find(f.name), std::string::npos) << what << ": the error names the field\n" << stat.err;
  }
}

// tail, limit and latest values that no writer stores: not a multiple of 8
// (of the chunk, for limit), or far beyond the others (kNoRecord is latest's
// "none").
bool PositionThatBreaksTheRules(Field const& f, std::uint64_t value) {
  std::string const name = f.name;
  if (name != "tail" && name != "limit" && name != "latest") return false;
  return value == 1 || value == 7 || value == std::uint64_t{1} << 63 ||
         (value == ~std::uint64_t{0} && name != "latest");
}

struct HostileRing {
  std::string name = UniqueName("clihs");
  cb::Writer writer{cb::Spec::Make(name, 8192)};
  std::uint64_t capacity = 8192;
  HostileRing() {
    std::vector<std::byte> message(100, std::byte{'x'});
    for (int i = 0; i < 20; ++i) writer.Write(message);
  }

  // The extreme values for field `f`, and values around tail and limit.
  [[nodiscard]] std::set<std::uint64_t> Values(Field const& f) const {
    std::set<std::uint64_t> v = {
        0, 1, 7, capacity - 1, 0xffffffffULL, std::uint64_t{1} << 48, std::uint64_t{1} << 63, ~std::uint64_t{0}};
    if (f.offset >= offsetof(cb::State, tail) && f.offset < offsetof(cb::State, writer_pid)) {
      std::uint64_t const tail = GetWord(name, offsetof(cb::State, tail));
      std::uint64_t const limit = GetWord(name, offsetof(cb::State, limit));
      for (std::uint64_t const x :
           {tail - 8, tail - 1, tail + 8, limit - 8, limit + 8, limit + capacity / 8, limit + 2 * capacity + 1024})
        v.insert(x);
    }
    return v;
  }

  // Sets `f` to each of its values in turn, runs every subcommand, restores it.
  void Try(Field const& f) const {
    auto const original = Get(name, f.offset, f.bytes);
    for (std::uint64_t const value : Values(f)) {
      if (std::memcmp(&value, original.data(), f.bytes) == 0) continue;  // the right value
      Put(name, f.offset, &value, f.bytes);
      RunAll(name, f, value, f.header || PositionThatBreaksTheRules(f, value));
      Put(name, f.offset, original.data(), f.bytes);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
};

void TryFields(std::size_t from, std::size_t to) {
  HostileRing ring;
  for (std::size_t i = from; i < to; ++i) ring.Try(kFields[i]);
  // Sanity: the restored ring is accepted again.
  auto const ok = Circbuf({"stat", ring.name, "--interval", "0.05"});
  EXPECT_EQ(ok.code, 0) << ok.err;
}

}  // namespace

TEST(CliHostileState, HeaderFields) { TryFields(0, 7); }
TEST(CliHostileState, Positions) { TryFields(7, 11); }
TEST(CliHostileState, IndexEntries) { TryFields(11, 14); }
TEST(CliHostileState, OwnershipAndPadding) { TryFields(14, 19); }

// A stale copy of a ring with capacity 0 (no live process holds it), with
// and without its data segment (a state without data is what the last
// process out leaves when it is killed between its two unlinks): stat
// refuses it, rm and gc remove it, and none of them crashes.
TEST(CliHostileState, StaleCorruptRingIsRemoved) {
  for (char const* how : {"rm", "gc"}) {
    for (bool const with_data : {true, false}) {
      std::string copy;
      {
        HostileRing ring;
        copy = ring.name + "-copy";
        std::filesystem::copy_file(StatePath(ring.name), StatePath(copy));
        if (with_data)
          std::filesystem::copy_file(StatePath(circbuf::CircularBuffer::DataSegmentName(ring.name)),
                                     StatePath(circbuf::CircularBuffer::DataSegmentName(copy)));
      }
      std::uint64_t const zero = 0;
      Put(copy, offsetof(cb::State, capacity), &zero, 8);
      std::string const what = std::string(how) + (with_data ? " with data" : " without data");
      for (auto const& args : {std::vector<std::string>{"stat", copy}, {"stat", "--json", copy}}) {
        auto const stat = Circbuf(args);
        EXPECT_EQ(stat.code, 5) << what << "\n" << stat.out << stat.err;
        EXPECT_NE(stat.err.find("capacity"), std::string::npos) << what << "\n" << stat.err;
      }
      for (auto const& args : {std::vector<std::string>{"ls", copy}, {"ls", "--json", copy}, {"tail", copy}}) {
        auto const r = Circbuf(args, {}, 10s);
        EXPECT_TRUE(r.code >= 0 && r.code < 128) << what << ": " << args[0] << " exit " << r.code << "\n" << r.err;
      }
      auto const r = Circbuf({how, copy});
      EXPECT_EQ(r.code, 0) << what << "\n" << r.out << r.err;
      EXPECT_FALSE(ShmFileExists(copy)) << what;
      EXPECT_FALSE(ShmFileExists(circbuf::CircularBuffer::DataSegmentName(copy))) << what;
      (void)circbuf::CircularBuffer::Remove(copy, /*force=*/true);
    }
  }
}
