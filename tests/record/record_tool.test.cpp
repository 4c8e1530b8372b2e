// circbuf record / info / dump as real processes, fed by a Writer in this
// process: exactly what was written, a SIGKILLed recorder, exact loss of a
// stopped recorder as gap entries.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
namespace rec = circbuf::Recording;
using circbuf::test::Circbuf;
using circbuf::test::JsonField;
using circbuf::test::Lines;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

struct Cleanup {
  explicit Cleanup(std::string n) : name(std::move(n)) {
    char pattern[] = "/tmp/circbuf-rectool-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
  }
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
  std::string name;
  std::string dir;
  ~Cleanup() {
    for (std::string const& suffix : {std::string(), std::string(cb::kDataSegmentSuffix)}) {
      ::unlink(("/dev/shm" + name + suffix).c_str());
      ::unlink(("/dev/shm/sem." + name.substr(1) + suffix).c_str());
    }
    std::filesystem::remove_all(dir);
  }
};

std::string Message(std::uint64_t i) { return "m" + std::to_string(i) + std::string(i % 50, 'x'); }

void Put(cb::Writer& writer, std::string const& m) { writer.Write(std::as_bytes(std::span(m.data(), m.size()))); }

// Messages in FILE so far (0 while it does not exist or has no header yet).
std::uint64_t Recorded(std::string const& file) {
  try {
    rec::RecordingReader reader(file);
    return reader.Info().messages;
  } catch (std::exception const&) {
    return 0;
  }
}

bool WaitFor(std::string const& file, std::uint64_t messages, std::chrono::milliseconds timeout = 10s) {
  auto const deadline = std::chrono::steady_clock::now() + timeout;
  while (Recorded(file) < messages) {
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

TEST(RecordTool, NextSequenceBeforeAReadIsTheSequenceOfTheMessageRead) {
  std::string const name = UniqueName("rec-seq");
  Cleanup cleanup(name);
  cb::Writer writer(cb::Spec::Make(name, 1 << 16));
  for (int i = 0; i < 10; ++i) Put(writer, Message(static_cast<std::uint64_t>(i)));
  cb::Reader reader(cb::Spec::Make(name, 0), {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buffer(cb::kMaxMessageSize);
  for (std::uint64_t i = 0; i < 10; ++i) {
    std::uint64_t const before = reader.NextSequence();
    ASSERT_GT(reader.Read(buffer), 0);
    EXPECT_EQ(reader.NextSequence() - 1, i);
    EXPECT_EQ(before, i) << "before the read";
  }
}

TEST(RecordTool, InfoAndDumpShowExactlyWhatWasWritten) {
  std::string const name = UniqueName("rec-exact");
  Cleanup cleanup(name);
  std::string const file = cleanup.dir + "/exact.cbrec";
  constexpr std::uint64_t kN = 2000;
  {
    std::optional<cb::Writer> writer(std::in_place, cb::Spec::Make(name, 1 << 20));
    for (std::uint64_t i = 0; i < kN / 2; ++i) Put(*writer, Message(i));
    Tool recorder({"record", name, file, "--from", "oldest"});
    ASSERT_TRUE(WaitFor(file, kN / 2)) << recorder.Err();
    for (std::uint64_t i = kN / 2; i < kN; ++i) Put(*writer, Message(i));
    ASSERT_TRUE(WaitFor(file, kN));
    writer.reset();  // the writer closes the ring; the recorder stops on its own
    ASSERT_EQ(recorder.Wait(), 0) << recorder.Err();
    EXPECT_NE(recorder.Err().find(std::to_string(kN) + " messages"), std::string::npos) << recorder.Err();
    EXPECT_NE(recorder.Err().find("the writer closed the ring"), std::string::npos) << recorder.Err();
  }
  auto const info = Circbuf({"info", file, "--json"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_EQ(JsonField(info.out, "messages"), std::to_string(kN));
  EXPECT_EQ(JsonField(info.out, "first_sequence"), "0");
  EXPECT_EQ(JsonField(info.out, "last_sequence"), std::to_string(kN - 1));
  EXPECT_EQ(JsonField(info.out, "gaps"), "0");
  EXPECT_EQ(JsonField(info.out, "corrupt_entries"), "0");
  EXPECT_EQ(JsonField(info.out, "torn_bytes"), "0");
  EXPECT_EQ(JsonField(info.out, "ring"), name);
  auto const dump = Circbuf({"dump", file});
  ASSERT_EQ(dump.code, 0) << dump.err;
  auto const lines = Lines(dump.out);
  ASSERT_EQ(lines.size(), kN);
  for (std::uint64_t i = 0; i < kN; ++i) {
    std::string const m = Message(i);
    std::string const& line = lines[i];
    ASSERT_TRUE(line.starts_with("#" + std::to_string(i) + "  ")) << line;
    ASSERT_TRUE(line.ends_with("  " + std::to_string(m.size()) + " bytes  " + m)) << line;
  }
  auto const from = Circbuf({"dump", file, "--from", "1500"});
  ASSERT_EQ(from.code, 0);
  EXPECT_EQ(Lines(from.out).size(), 500u);
  EXPECT_TRUE(from.out.starts_with("#1500 "));
  auto const text = Circbuf({"info", file});
  EXPECT_EQ(text.code, 0);
  EXPECT_NE(text.out.find("messages        2000"), std::string::npos) << text.out;
}

TEST(RecordTool, SigkilledRecorderLeavesAFileReadableUpToItsLastCompleteEntry) {
  std::string const name = UniqueName("rec-kill");
  Cleanup cleanup(name);
  std::string const file = cleanup.dir + "/kill.cbrec";
  cb::Writer writer(cb::Spec::Make(name, 1 << 20));
  Tool recorder({"record", name, file, "--from", "oldest"});
  std::uint64_t written = 0;
  for (; written < 500; ++written) Put(writer, Message(written));
  ASSERT_TRUE(WaitFor(file, 1)) << recorder.Err();
  for (int round = 0; round < 200; ++round) {  // keep it busy while it dies
    for (int k = 0; k < 50; ++k, ++written) Put(writer, Message(written));
    if (round == 100) recorder.Signal(SIGKILL);
  }
  EXPECT_EQ(recorder.Wait(), 128 + SIGKILL);
  rec::RecordingReader reader(file);
  rec::Entry e;
  std::uint64_t next = 0;
  while (reader.Next(e)) {
    ASSERT_EQ(e.type, rec::EntryType::kMessage);
    ASSERT_EQ(e.sequence, next);
    std::string const m = Message(next);
    ASSERT_EQ(std::string(reinterpret_cast<char const*>(e.payload.data()), e.payload.size()), m);
    ++next;
  }
  EXPECT_GE(next, 1u);
  EXPECT_EQ(reader.CorruptCount(), 0u);
  // Recording again appends after the last complete entry.
  int const attached = Attached(name);
  Tool again({"record", name, file, "--from", "next", "--count", "1"});
  auto const deadline = std::chrono::steady_clock::now() + 10s;
  while (Attached(name) <= attached && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  Put(writer, "after");
  ASSERT_EQ(again.Wait(), 0) << again.Err();
  rec::RecordingReader after(file);
  auto const s = after.Info();
  EXPECT_EQ(s.messages, next + 1);
  EXPECT_EQ(s.corrupt_entries, 0u);
  EXPECT_EQ(s.torn_bytes, 0u);
}

TEST(RecordTool, StoppedRecorderRecordsTheExactLossAsAGap) {
  std::string const name = UniqueName("rec-gap");
  Cleanup cleanup(name);
  std::string const file = cleanup.dir + "/gap.cbrec";
  std::uint64_t written = 0;
  {
    std::optional<cb::Writer> writer(std::in_place, cb::Spec::Make(name, 4096));
    Put(*writer, Message(written++));
    Tool recorder({"record", name, file, "--from", "oldest"});
    ASSERT_TRUE(WaitFor(file, 1)) << recorder.Err();
    recorder.Signal(SIGSTOP);
    for (int i = 0; i < 20000; ++i) Put(*writer, Message(written++));
    recorder.Signal(SIGCONT);
    for (int i = 0; i < 10; ++i) Put(*writer, Message(written++));
    ASSERT_TRUE(WaitFor(file, 11));
    writer.reset();
    ASSERT_EQ(recorder.Wait(), 0) << recorder.Err();
  }
  rec::RecordingReader reader(file);
  auto const s = reader.Info();
  EXPECT_GE(s.gaps, 1u);
  EXPECT_EQ(s.messages + s.lost, written);
  EXPECT_EQ(s.first_sequence, 0u);
  EXPECT_EQ(s.last_sequence, written - 1);
  rec::Entry e;
  std::uint64_t next = 0;
  while (reader.Next(e)) {  // every sequence accounted for, in order
    ASSERT_EQ(e.sequence, next);
    next += e.type == rec::EntryType::kGap ? e.lost : 1;
  }
  EXPECT_EQ(next, written);
  auto const dump = Circbuf({"dump", file});
  EXPECT_NE(dump.out.find("gap: "), std::string::npos);
  EXPECT_NE(dump.out.find(" messages lost"), std::string::npos);
}

TEST(RecordTool, SigintFlushesAndExitsZeroDurationAndCountStop) {
  std::string const name = UniqueName("rec-int");
  Cleanup cleanup(name);
  std::string const file = cleanup.dir + "/int.cbrec";
  cb::Writer writer(cb::Spec::Make(name, 1 << 16));
  for (std::uint64_t i = 0; i < 10; ++i) Put(writer, Message(i));
  {
    Tool recorder({"record", name, file, "--from", "oldest"});
    ASSERT_TRUE(WaitFor(file, 10)) << recorder.Err();
    recorder.Signal(SIGINT);
    ASSERT_EQ(recorder.Wait(), 0) << recorder.Err();
    EXPECT_NE(recorder.Err().find("10 messages"), std::string::npos) << recorder.Err();
    EXPECT_NE(recorder.Err().find("stopped by a signal"), std::string::npos) << recorder.Err();
  }
  {
    auto const start = std::chrono::steady_clock::now();
    auto const r = Circbuf({"record", name, file, "--from", "next", "--duration", "0.3"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
    EXPECT_NE(r.err.find("duration reached"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(": appending"), std::string::npos) << r.err;
  }
  auto const count = Circbuf({"record", name, file, "--from", "oldest", "--count", "4"});
  EXPECT_EQ(count.code, 0) << count.err;
  EXPECT_NE(count.err.find("4 messages"), std::string::npos) << count.err;
  EXPECT_EQ(Recorded(file), 14u);
  // Not a recording: refused, the file left alone.
  std::string const foreign = cleanup.dir + "/foreign";
  {
    std::FILE* f = std::fopen(foreign.c_str(), "w");
    std::fputs("not a recording\n", f);
    std::fclose(f);
  }
  auto const refused = Circbuf({"record", name, foreign, "--count", "1"});
  EXPECT_EQ(refused.code, 5) << refused.err;
  EXPECT_NE(refused.err.find("not a circbuf recording"), std::string::npos) << refused.err;
  EXPECT_EQ(std::filesystem::file_size(foreign), 16u);
  EXPECT_EQ(Circbuf({"info", foreign}).code, 5);
  EXPECT_EQ(Circbuf({"dump", cleanup.dir + "/missing"}).code, 2);
}

}  // namespace
