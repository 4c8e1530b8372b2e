// circbuf demo and circbuf bench, run to the end (briefly) and interrupted.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

using circbuf::test::Circbuf;
using circbuf::test::Lines;
using circbuf::test::ShmFileExists;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using circbuf::test::Widest;
using namespace std::chrono_literals;

namespace {

// The numbers in the demo table's row for `reader`: received, lost.
bool ReaderRow(std::string const& out, std::string const& reader, unsigned long long& received,
               unsigned long long& lost) {
  for (auto const& line : Lines(out)) {
    std::istringstream in(line);
    std::string name;
    std::string bytes_value;
    std::string bytes_unit;
    if (in >> name && name == reader && in >> received >> bytes_value >> bytes_unit >> lost) return true;
  }
  return false;
}

}  // namespace

TEST(CliDemo, CompletesAndTheSlowReaderLoses) {
  std::string const name = UniqueName("clidemo");
  auto const r = Circbuf({"demo", "--seconds", "1", "--capacity", "256KiB", "--name", name}, {}, 60s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  unsigned long long received = 0;
  unsigned long long lost = 0;
  ASSERT_TRUE(ReaderRow(r.out, "slow", received, lost)) << r.out;
  EXPECT_GT(received, 0U);
  EXPECT_GT(lost, 0U) << "the slow reader must be lapped: " << r.out;
  ASSERT_TRUE(ReaderRow(r.out, "fast-1", received, lost)) << r.out;
  EXPECT_GT(received, 0U);
  EXPECT_NE(r.out.find("received + lost == written for every reader: yes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ring " + name + " removed: yes"), std::string::npos) << r.out;
  EXPECT_FALSE(ShmFileExists(name));
  EXPECT_FALSE(ShmFileExists(circbuf::CircularBuffer::DataSegmentName(name)));
  EXPECT_LE(Widest(r.out), 80U) << r.out;
}

TEST(CliDemo, CtrlCStopsItAndRemovesTheBuffer) {
  std::string const name = UniqueName("clidemoint");
  Tool demo({"demo", "--seconds", "60", "--name", name});
  ASSERT_TRUE(demo.WaitForOutput("circbuf demo: ring " + name)) << demo.Out() << demo.Err();
  ASSERT_TRUE(demo.WaitForOutput("written", 10s)) << demo.Out();  // it is running
  EXPECT_TRUE(ShmFileExists(name));
  demo.Signal(SIGINT);
  EXPECT_EQ(demo.Wait(15s), 130) << demo.Out() << demo.Err();
  EXPECT_TRUE(demo.OutClosed()) << "every reader process has exited (they shared stdout)";
  EXPECT_NE(demo.Out().find("interrupted: written"), std::string::npos) << demo.Out();
  EXPECT_NE(demo.Out().find("removed: yes"), std::string::npos) << demo.Out();
  EXPECT_FALSE(ShmFileExists(name));
  EXPECT_FALSE(ShmFileExists(circbuf::CircularBuffer::DataSegmentName(name)));
  EXPECT_FALSE(circbuf::test::SemFileExists(name));
}

TEST(CliBench, PrintsTheSummaryTable) {
  std::string const png = "/tmp/circbuf-cli-bench-" + std::to_string(::getpid()) + ".png";
  auto const r = Circbuf({"bench", "--iterations", "2000", "--seconds", "0.1", "--plot", png}, {}, 90s);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (char const* row :
       {"cache-line floor", "circbuf 8 B", "circbuf 64 B", "circbuf 1024 B", "64 B messages", "65535 B messages"}) {
    EXPECT_NE(r.out.find(row), std::string::npos) << row << " missing: " << r.out;
  }
  EXPECT_NE(r.out.find("1.00x"), std::string::npos) << "the floor's ratio to itself: " << r.out;
  EXPECT_LE(Widest(r.out), 80U) << r.out;
  bool const plotting = std::system("python3 -c 'import matplotlib' >/dev/null 2>&1 || "
                                    "/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") == 0;
  if (plotting) {
    std::ifstream in(png, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    EXPECT_EQ(std::string(magic + 1, 3), "PNG") << "no PNG written: " << r.out << r.err;
  } else {
    EXPECT_NE(r.err.find("plotting is unavailable"), std::string::npos) << r.err;
  }
  ::unlink(png.c_str());
}
