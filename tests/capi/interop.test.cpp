// The C ABI against the C++ API, in real processes: a C writer
// (circbuf-peer-c, over libcircbuf.so.0) with a C++ reader
// (circbuf-peer), and the reverse, byte for byte (tests/capi/pattern.h),
// without loss in a ring that holds everything and with exact loss under
// overwrite (the reader starts after the writer lapped it: delivered + lost
// is every message written, and every delivered message is the one at its
// place in the stream).
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Tool;
using circbuf::test::UniqueName;

namespace {

struct Counts {
  std::uint64_t delivered = ~std::uint64_t{0};
  std::uint64_t lost = ~std::uint64_t{0};
  std::uint64_t bad = ~std::uint64_t{0};
};

Counts Parse(std::string const& out) {
  Counts c;
  std::size_t const at = out.find("delivered ");
  if (at == std::string::npos) return c;
  std::istringstream in(out.substr(at));
  std::string word;
  in >> word >> c.delivered >> word >> c.lost >> word >> c.bad;
  return c;
}

struct Case {
  char const* writer;
  char const* reader;
  std::uint64_t capacity;
  std::uint64_t count;
  std::size_t max;
  bool overwrite;  // the reader reads only after the writer is done (and lapped it)
};

void RunPair(Case const& c) {
  std::string const name = UniqueName("interop");
  std::string const count = std::to_string(c.count);
  std::string const max = std::to_string(c.max);
  Tool writer({"write", name, std::to_string(c.capacity), count, max}, {.binary = c.writer});
  ASSERT_TRUE(writer.WaitForOutput("ready\n")) << writer.Err();
  Tool reader({"read", name, count, "oldest", max}, {.binary = c.reader});
  ASSERT_TRUE(reader.WaitForOutput("ready\n")) << reader.Err();
  if (c.overwrite) {
    // The reader is attached at the oldest message (0) and waits; the writer
    // then laps it many times before it reads a byte. A reader that runs
    // meanwhile only loses less: the totals are exact either way.
    ::kill(reader.Pid(), SIGSTOP);
  }
  writer.Write("go\n");
  ASSERT_TRUE(writer.WaitForOutput("done\n", std::chrono::seconds(60))) << writer.Err();
  if (c.overwrite) ::kill(reader.Pid(), SIGCONT);
  int const read_code = reader.Wait(std::chrono::seconds(60));
  EXPECT_EQ(writer.Wait(), 0) << writer.Err();
  Counts const got = Parse(reader.Out());
  EXPECT_EQ(read_code, 0) << reader.Out() << reader.Err();
  EXPECT_EQ(got.bad, 0U) << reader.Out();
  EXPECT_EQ(got.delivered + got.lost, c.count) << reader.Out();
  if (c.overwrite) {
    EXPECT_GT(got.lost, 0U) << "the writer lapped the stopped reader: " << reader.Out();
  } else {
    EXPECT_EQ(got.lost, 0U) << reader.Out();
  }
  EXPECT_TRUE(cb::List(name + "*").empty()) << "the last one out removes the ring";
}

}  // namespace

TEST(CapiInterop, CWriterCppReaderNoLoss) { RunPair({CIRCBUF_PEER_C, CIRCBUF_PEER, 8 << 20, 20000, 300, false}); }
TEST(CapiInterop, CppWriterCReaderNoLoss) { RunPair({CIRCBUF_PEER, CIRCBUF_PEER_C, 8 << 20, 20000, 300, false}); }
TEST(CapiInterop, CWriterCReaderEverySize) { RunPair({CIRCBUF_PEER_C, CIRCBUF_PEER_C, 50 << 20, 800, 65535, false}); }
TEST(CapiInterop, CWriterCppReaderExactLossUnderOverwrite) {
  RunPair({CIRCBUF_PEER_C, CIRCBUF_PEER, 65536, 200000, 300, true});
}
TEST(CapiInterop, CppWriterCReaderExactLossUnderOverwrite) {
  RunPair({CIRCBUF_PEER, CIRCBUF_PEER_C, 65536, 200000, 300, true});
}
