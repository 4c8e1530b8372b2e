// circbuf pub and circbuf tail, as real processes: byte-for-byte round trips
// (lines and length-prefixed binary), exact loss reports, blocking waits.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

using circbuf::test::Circbuf;
using circbuf::test::JsonField;
using circbuf::test::Lines;
using circbuf::test::ShmFileExists;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

// Removes the ring's files whatever happens in the test.
struct Cleanup {
  explicit Cleanup(std::string n) : name(std::move(n)) {}
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
  std::string name;
  ~Cleanup() {
    for (std::string const& suffix : {std::string(), std::string(circbuf::CircularBuffer::kDataSegmentSuffix)}) {
      ::unlink(("/dev/shm" + name + suffix).c_str());
      ::unlink(("/dev/shm/sem." + name.substr(1) + suffix).c_str());
    }
  }
};

bool WaitUntil(auto&& done, std::chrono::milliseconds timeout = 10s) {
  auto const deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Attachments recorded in the ring, as `circbuf stat --json` reports them.
int Attached(std::string const& name) {
  auto const r = Circbuf({"stat", name, "--json", "--interval", "0.05"});
  return r.code == 0 ? std::stoi(JsonField(r.out, "attached")) : -1;
}

std::string Frame(std::string const& message) {
  auto const n = static_cast<std::uint32_t>(message.size());
  std::string out{static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff), static_cast<char>((n >> 16) & 0xff),
                  static_cast<char>(n >> 24)};
  return out + message;
}

// CPU time (user + system) of a process so far, from /proc.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  std::uint64_t utime = 0;
  std::uint64_t stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

TEST(CliPubTail, LinesRoundTripByteForByte) {
  Cleanup const ring{UniqueName("clip")};
  std::string input;
  std::mt19937 rng(7);
  for (int i = 0; i < 500; ++i) {
    std::string line = "line " + std::to_string(i) + " \t";
    for (std::uint32_t k = rng() % 200; k != 0; --k) {
      char c = static_cast<char>(rng() % 255 + 1);  // any byte but NUL ... and newline, below
      line += c == '\n' ? ' ' : c;
    }
    input += line + "\n";
  }
  Tool pub({"pub", ring.name, "--capacity", "1MiB", "--lines"});
  ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
  pub.Write(input);
  ASSERT_TRUE(pub.Flush());
  auto const tail = Circbuf({"tail", ring.name, "--from", "oldest", "--count", "500"});
  EXPECT_EQ(tail.code, 0) << tail.err;
  EXPECT_EQ(tail.out, input);  // byte for byte
  EXPECT_EQ(tail.err, "");
  EXPECT_EQ(pub.Wait(), 0) << pub.Err();
  EXPECT_EQ(pub.Err(), "");
  EXPECT_FALSE(ShmFileExists(ring.name)) << "the last process out removes the ring";
}

TEST(CliPubTail, RawRoundTripByteForByte) {
  Cleanup const ring{UniqueName("clir")};
  std::string input;
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    std::string message(1 + rng() % 5000, '\0');
    for (char& c : message) c = static_cast<char>(rng());  // NULs and newlines too
    input += Frame(message);
  }
  input += Frame(std::string(65535, '\n'));  // the largest message
  Tool pub({"pub", ring.name, "--capacity", "4MiB", "--raw"});
  ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
  pub.Write(input);
  ASSERT_TRUE(pub.Flush());
  auto const tail = Circbuf({"tail", ring.name, "--from", "oldest", "--count", "301", "--format", "raw"});
  EXPECT_EQ(tail.code, 0) << tail.err;
  EXPECT_EQ(tail.out.size(), input.size());
  EXPECT_TRUE(tail.out == input) << "raw output differs from the input";
  EXPECT_EQ(pub.Wait(), 0) << pub.Err();
}

TEST(CliPubTail, RawInputErrorsAreReported) {
  Cleanup const ring{UniqueName("clie")};
  auto const zero = Circbuf({"pub", ring.name, "--raw"}, std::string(4, '\0'));
  EXPECT_EQ(zero.code, 3);
  EXPECT_NE(zero.err.find("length 0"), std::string::npos) << zero.err;
  auto const cut = Circbuf({"pub", ring.name, "--raw"}, Frame("hello").substr(0, 7));
  EXPECT_EQ(cut.code, 3);
  EXPECT_NE(cut.err.find("input ends inside it"), std::string::npos) << cut.err;
  EXPECT_EQ(Lines(cut.err).size(), 1U);
  auto const both = Circbuf({"pub", ring.name, "--raw", "--lines"});
  EXPECT_EQ(both.code, 1) << both.err;
}

TEST(CliPubTail, HexFormatShowsSequenceAndBytes) {
  Cleanup const ring{UniqueName("clih")};
  Tool pub({"pub", ring.name});
  ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
  pub.Write("hello world\nAB\n");
  ASSERT_TRUE(pub.Flush());
  auto const tail = Circbuf({"tail", ring.name, "--from", "oldest", "--count", "2", "--format", "hex"});
  EXPECT_EQ(tail.code, 0) << tail.err;
  EXPECT_EQ(tail.out, "#0  11 bytes\n"
                      "  0000  68 65 6c 6c 6f 20 77 6f  72 6c 64                 |hello world|\n"
                      "#1  2 bytes\n"
                      "  0000  41 42                                             |AB|\n");
}

TEST(CliPubTail, TailReportsExactLoss) {
  Cleanup const ring{UniqueName("clil")};
  Tool pub({"pub", ring.name, "--capacity", "4KiB"});
  ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
  Tool tail({"tail", ring.name, "--from", "oldest", "--until-closed"});
  ASSERT_TRUE(WaitUntil([&] { return Attached(ring.name) == 2; })) << "tail did not attach";
  tail.Signal(SIGSTOP);  // it cannot read now: the writer laps it
  constexpr int kTotal = 2000;
  for (int i = 0; i < kTotal; ++i) {
    char line[32];
    std::snprintf(line, sizeof line, "message %05d\n", i);
    pub.Write(line);
  }
  ASSERT_TRUE(pub.Flush());
  ASSERT_TRUE(WaitUntil([&] {
    auto const r = Circbuf({"stat", ring.name, "--json", "--interval", "0.05"});
    return JsonField(r.out, "messages") == std::to_string(kTotal);
  }));
  tail.Signal(SIGCONT);
  EXPECT_EQ(pub.Wait(), 0) << pub.Err();  // the writer closes: tail drains and exits
  EXPECT_EQ(tail.Wait(), 0) << tail.Err();

  // Every loss report names the exact gap in the numbers that tail printed.
  std::vector<int> received;
  for (auto const& line : Lines(tail.Out())) received.push_back(std::stoi(line.substr(8)));
  std::uint64_t reported = 0;
  std::vector<std::uint64_t> losses;
  for (auto const& line : Lines(tail.Err())) {
    if (line == "circbuf tail: the writer closed the ring; stopping") continue;  // why it stopped
    unsigned long long n = 0;
    ASSERT_EQ(std::sscanf(line.c_str(), "circbuf tail: lost %llu messages (overwritten)", &n), 1) << line;
    losses.push_back(n);
    reported += n;
  }
  ASSERT_FALSE(received.empty());
  EXPECT_GT(reported, 0U);
  EXPECT_EQ(received.size() + reported, static_cast<std::size_t>(kTotal));
  EXPECT_EQ(received.back(), kTotal - 1);
  std::vector<std::uint64_t> gaps;
  if (received.front() != 0) gaps.push_back(static_cast<std::uint64_t>(received.front()));
  for (std::size_t i = 1; i < received.size(); ++i) {
    ASSERT_GT(received[i], received[i - 1]);
    if (received[i] != received[i - 1] + 1)
      gaps.push_back(static_cast<std::uint64_t>(received[i] - received[i - 1] - 1));
  }
  EXPECT_EQ(gaps, losses);
}

TEST(CliPubTail, TailWaitsWithoutSpinningAndStopsOnSigint) {
  Cleanup const ring{UniqueName("clis")};
  Tool pub({"pub", ring.name});
  ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
  Tool tail({"tail", ring.name});
  ASSERT_TRUE(WaitUntil([&] { return Attached(ring.name) == 2; }));
  double const before = CpuSeconds(tail.Pid());
  std::this_thread::sleep_for(1500ms);  // nothing to read
  double const used = CpuSeconds(tail.Pid()) - before;
  EXPECT_LT(used, 0.3) << "tail used " << used << " s of CPU in 1.5 s of waiting";
  pub.Write("wake up\n");
  ASSERT_TRUE(pub.Flush());
  EXPECT_TRUE(tail.WaitForOutput("wake up\n", 5s)) << tail.Out();
  tail.Signal(SIGINT);
  EXPECT_EQ(tail.Wait(5s), 0) << tail.Err();
  EXPECT_EQ(tail.Out(), "wake up\n");
  EXPECT_EQ(pub.Wait(), 0);
}

TEST(CliPubTail, TailWaitsForABufferThatAppearsLater) {
  Cleanup const ring{UniqueName("cliw")};
  Tool tail({"tail", ring.name, "--wait", "10", "--from", "oldest", "--count", "1"});
  std::this_thread::sleep_for(200ms);
  Tool pub({"pub", ring.name});
  pub.Write("first\n");
  ASSERT_TRUE(pub.Flush());
  EXPECT_EQ(tail.Wait(10s), 0) << tail.Err();
  EXPECT_EQ(tail.Out(), "first\n");
  EXPECT_EQ(pub.Wait(), 0);
}

// tail waits without a limit and says why it stopped: the writer closing,
// the writer dying (found by Wait's liveness probe), or a signal.
TEST(CliPubTail, TailSaysWhyItStopped) {
  {
    Cleanup const ring{UniqueName("clic")};
    Tool pub({"pub", ring.name});
    ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
    Tool tail({"tail", ring.name, "--until-closed"});
    ASSERT_TRUE(WaitUntil([&] { return Attached(ring.name) == 2; }));
    pub.Write("last\n");
    pub.CloseStdin();
    ASSERT_TRUE(pub.Flush());
    EXPECT_EQ(pub.Wait(), 0);
    EXPECT_EQ(tail.Wait(5s), 0) << tail.Err();
    EXPECT_EQ(tail.Out(), "last\n");
    EXPECT_EQ(tail.Err(), "circbuf tail: the writer closed the ring; stopping\n");
  }
  {
    Cleanup const ring{UniqueName("clid")};
    Tool pub({"pub", ring.name});
    ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
    Tool tail({"tail", ring.name, "--until-closed"});
    ASSERT_TRUE(WaitUntil([&] { return Attached(ring.name) == 2; }));
    std::this_thread::sleep_for(200ms);  // asleep in Wait
    pub.Signal(SIGKILL);
    EXPECT_EQ(pub.Wait(), 128 + SIGKILL);
    EXPECT_EQ(tail.Wait(5s), 0) << tail.Err();
    EXPECT_EQ(Lines(tail.Err()).at(0),
              "circbuf tail: the writer (pid " + std::to_string(pub.Pid()) + ") died; stopping")
        << tail.Err();  // then the library's warnings as the last process out frees the ring
  }
  {
    Cleanup const ring{UniqueName("clig")};
    Tool pub({"pub", ring.name});
    ASSERT_TRUE(WaitUntil([&] { return ShmFileExists(ring.name); }));
    Tool tail({"tail", ring.name});
    ASSERT_TRUE(WaitUntil([&] { return Attached(ring.name) == 2; }));
    std::this_thread::sleep_for(200ms);
    tail.Signal(SIGTERM);
    EXPECT_EQ(tail.Wait(5s), 0) << tail.Err();
    EXPECT_EQ(tail.Err(), "circbuf tail: stopped by a signal\n");
  }
}
