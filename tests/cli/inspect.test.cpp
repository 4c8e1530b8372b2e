// circbuf ls and circbuf stat on a live ring whose writer is this test
// process: the values they print are the ones the test knows.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Circbuf;
using circbuf::test::JsonField;
using circbuf::test::Lines;
using circbuf::test::UniqueName;
using circbuf::test::Widest;
using namespace std::chrono_literals;

namespace {

void WriteMessages(cb::Writer& writer, int count) {
  std::vector<std::byte> message(100, std::byte{'x'});
  for (int i = 0; i < count; ++i) writer.Write(message);
}

}  // namespace

TEST(CliInspect, LsShowsALiveRing) {
  std::string const name = UniqueName("clils");
  cb::Writer writer(cb::Spec::Make(name, std::uint64_t{64} * 1024));
  WriteMessages(writer, 42);
  auto const r = Circbuf({"ls", name});
  ASSERT_EQ(r.code, 0) << r.err;
  auto const lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2U) << r.out;
  EXPECT_EQ(lines[0].rfind("NAME", 0), 0U) << lines[0];
  std::string const& row = lines[1];
  EXPECT_EQ(row.rfind(name, 0), 0U) << row;
  EXPECT_NE(row.find("64.0 KiB"), std::string::npos) << row;
  EXPECT_NE(row.find(std::to_string(::getpid()) + " alive"), std::string::npos) << row;
  EXPECT_NE(row.find(" 42 "), std::string::npos) << row;
  EXPECT_EQ(row.substr(row.size() - 2), "no") << "not stale: " << row;
  EXPECT_LE(Widest(r.out), 80U);
}

TEST(CliInspect, LsJsonAndItLeavesRefcountsAlone) {
  std::string const name = UniqueName("clilj");
  cb::Writer writer(cb::Spec::Make(name, 8192));
  cb::Reader reader(cb::Spec::Make(name, 0));
  WriteMessages(writer, 7);
  for (int i = 0; i < 3; ++i) {
    auto const r = Circbuf({"ls", "--json", name});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(JsonField(r.out, "name"), name);
    EXPECT_EQ(JsonField(r.out, "kind"), "ring");
    EXPECT_EQ(JsonField(r.out, "capacity"), "8192");
    EXPECT_EQ(JsonField(r.out, "writer_pid"), std::to_string(::getpid()));
    EXPECT_EQ(JsonField(r.out, "writer"), "alive");
    EXPECT_EQ(JsonField(r.out, "attached"), "2") << "writer and reader, never the tool itself";
    EXPECT_EQ(JsonField(r.out, "messages"), "7");
    EXPECT_EQ(JsonField(r.out, "stale"), "false");
  }
}

TEST(CliInspect, LsFitsEightyColumnsWithLongNames) {
  std::string const name = UniqueName("clilong-a-rather-long-buffer-name-that-does-not-fit");
  cb::Writer writer(cb::Spec::Make(name, 4096));
  auto const r = Circbuf({"ls", name});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(Widest(r.out), 80U) << r.out;
  EXPECT_NE(r.out.find("(1) " + name + "\n"), std::string::npos) << "the full name is printed below: " << r.out;
}

TEST(CliInspect, StatShowsPositionsRatesAndWriter) {
  std::string const name = UniqueName("clist");
  cb::Writer writer(cb::Spec::Make(name, 1 << 20));
  WriteMessages(writer, 10);
  std::atomic<bool> stop{false};
  std::thread pacer([&] {  // about 1000 messages per second while stat measures
    while (!stop.load()) {
      WriteMessages(writer, 1);
      std::this_thread::sleep_for(1ms);
    }
  });
  auto const text = Circbuf({"stat", name});
  auto const json = Circbuf({"stat", name, "--json", "--interval", "0.5"});
  stop.store(true);
  pacer.join();
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("ring            " + name + "\n"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("layout          version " + std::to_string(cb::kRingVersion)), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("capacity        1048576 bytes (1.00 MiB)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("messages written"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("writer          pid " + std::to_string(::getpid()) + ", alive"), std::string::npos)
      << text.out;
  EXPECT_LE(circbuf::test::Widest(text.out), 80U) << text.out;
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(JsonField(json.out, "layout_version"), std::to_string(cb::kRingVersion));
  EXPECT_EQ(JsonField(json.out, "capacity"), "1048576");
  EXPECT_EQ(JsonField(json.out, "writer"), "alive");
  EXPECT_EQ(JsonField(json.out, "attached"), "1");
  double const rate = std::stod(JsonField(json.out, "message_rate"));
  EXPECT_GT(rate, 50.0) << json.out;
  EXPECT_LT(rate, 5000.0) << json.out;
  EXPECT_GT(std::stoull(JsonField(json.out, "messages")), 10U);
  auto const still = Circbuf({"stat", name, "--json", "--interval", "0.05"});  // the writer is quiet now
  std::uint64_t const messages = std::stoull(JsonField(still.out, "messages"));
  EXPECT_EQ(messages, writer.NextSequence());
  EXPECT_EQ(std::stoull(JsonField(still.out, "write_position")), messages * 112)
      << "100-byte messages take 112 bytes each";
  EXPECT_EQ(JsonField(still.out, "message_rate"), "0.0");
}

TEST(CliInspect, StatWatchPrintsALinePerInterval) {
  std::string const name = UniqueName("clisw");
  cb::Writer writer(cb::Spec::Make(name, 4096));
  auto const r = Circbuf({"stat", name, "--watch", "--interval", "0.1", "--count", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto const lines = Lines(r.out);
  ASSERT_GE(lines.size(), 4U);
  EXPECT_NE(lines[lines.size() - 4].find("position"), std::string::npos) << r.out;
  for (std::size_t i = lines.size() - 3; i < lines.size(); ++i) {
    EXPECT_NE(lines[i].find("alive"), std::string::npos) << lines[i];
  }
  EXPECT_LE(Widest(r.out), 80U) << r.out;
}

TEST(CliInspect, StatReportsADeadWriter) {
  std::string const name = UniqueName("clisd");
  circbuf::test::Pipe ready;
  circbuf::test::Child writer([&] {
    cb::Writer w(cb::Spec::Make(name, 4096));
    ready.Send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(ready.Receive(), '.');
  writer.Kill();
  writer.Wait();
  auto const r = Circbuf({"stat", name, "--json", "--interval", "0.05"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(JsonField(r.out, "writer"), "dead");
  EXPECT_EQ(JsonField(r.out, "writer_pid"), std::to_string(writer.Pid()));
  EXPECT_EQ(JsonField(r.out, "stale"), "true");
  (void)circbuf::CircularBuffer::Remove(name, /*force=*/true);
}

TEST(CliInspect, LsAndStatReportATruncatedDataSegment) {
  std::string const name = UniqueName("clitr");
  cb::Writer writer(cb::Spec::Make(name, std::uint64_t{64} * 1024));
  WriteMessages(writer, 5);
  // Another process shrinks the data segment while the writer holds it. The
  // tool reads the files instead of mapping them, so it cannot die of SIGBUS,
  // and it reports the damage instead of a message count.
  int const fd = ::shm_open((circbuf::CircularBuffer::DataSegmentName(name)).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, off_t{8192}), 0);
  ::close(fd);
  std::string const damage = "truncated or damaged: data segment " + name + ".data is 8192 bytes, its header says " +
                             std::to_string(4096 + cb::DataBytes(std::uint64_t{64} * 1024, circbuf::kMinPageSize));

  auto const ls = Circbuf({"ls", name});
  ASSERT_EQ(ls.code, 0) << ls.err;
  auto const lines = Lines(ls.out);
  ASSERT_EQ(lines.size(), 3U) << ls.out;
  EXPECT_EQ(lines[1].rfind(name, 0), 0U) << lines[1];
  EXPECT_NE(lines[1].find(" truncated "), std::string::npos) << "in the MESSAGES column: " << lines[1];
  EXPECT_EQ(lines[2].rfind(name + ": " + damage, 0), 0U) << lines[2];

  auto const ls_json = Circbuf({"ls", "--json", name});
  ASSERT_EQ(ls_json.code, 0) << ls_json.err;
  EXPECT_EQ(JsonField(ls_json.out, "kind"), "ring");
  EXPECT_EQ(JsonField(ls_json.out, "truncated"), "true");
  EXPECT_EQ(JsonField(ls_json.out, "damage").rfind(damage, 0), 0U) << ls_json.out;

  // stat refuses it with the exit code for "not circbuf, or corrupt" (5).
  auto const stat = Circbuf({"stat", name});
  EXPECT_EQ(stat.code, 5) << stat.out;
  EXPECT_NE(stat.err.find("circbuf stat: " + name + ": " + damage), std::string::npos) << stat.err;
  auto const stat_json = Circbuf({"stat", name, "--json"});
  EXPECT_EQ(stat_json.code, 5) << stat_json.out;
  EXPECT_EQ(JsonField(stat_json.out, "name"), name);
  EXPECT_EQ(JsonField(stat_json.out, "truncated"), "true");
  EXPECT_EQ(JsonField(stat_json.out, "damage").rfind(damage, 0), 0U) << stat_json.out;
  EXPECT_NE(stat_json.err.find("truncated"), std::string::npos) << stat_json.err;
}
