// circbuf replay as a real process: a recording played into a ring that a
// Reader of this process reads. Byte-exact for 1 .. 65535 bytes, the
// recorded numbers kept, every recorded gap counted in Lost() exactly (also
// through record -> replay of a stream with gap records), --from, --loop,
// --sequence, the recorded spacing, bad input.
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
#include "ring/support.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
namespace rec = circbuf::Recording;
using circbuf::test::Circbuf;
using circbuf::test::JsonField;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace {

struct Cleanup {
  explicit Cleanup(std::string const& prefix) {
    char pattern[] = "/tmp/circbuf-replay-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    for (int i = 0; i < 2; ++i) names.push_back(UniqueName(prefix));
  }
  Cleanup(Cleanup const&) = delete;
  Cleanup& operator=(Cleanup const&) = delete;
  std::vector<std::string> names;
  std::string dir;
  ~Cleanup() {
    for (std::string const& name : names) {
      for (std::string const& suffix : {std::string(), std::string(cb::kDataSegmentSuffix)}) {
        std::string shm = "/dev/shm";
        shm += name;
        shm += suffix;
        std::string sem = "/dev/shm/sem.";
        sem += name.substr(1);
        sem += suffix;
        ::unlink(shm.c_str());
        ::unlink(sem.c_str());
      }
    }
    std::filesystem::remove_all(dir);
  }
};

// What a recording holds, to compare a replay with: messages and gaps in order.
struct Item {
  bool gap;
  std::uint64_t sequence;
  std::uint64_t count;  // gap: numbers lost; message: its size
};

// Writes a recording of `items` (timestamps 1 ms apart from `t0`); message
// contents are test::Message(sequence, size).
void MakeRecording(std::string const& path, std::vector<Item> const& items, std::uint64_t t0 = 1'000'000'000,
                   std::uint64_t step_ns = 1'000'000) {
  rec::RecordingWriter w(path, {.ring_name = "/source", .ring_capacity = 1 << 20});
  std::uint64_t t = t0;
  for (Item const& i : items) {
    if (i.gap) {
      w.AppendGap(i.sequence, i.count, t);
    } else {
      w.Append(i.sequence, t, Message(i.sequence, i.count));
    }
    t += step_ns;
  }
  w.Close();
}

// A reader of ring `name`, attached before the replay starts: the ring is
// made (and closed again) by a Writer of this process, so that replay
// finds it and becomes its next writer.
cb::Reader AttachFirst(std::string const& name, std::uint64_t capacity = 1 << 20, int written = 0) {
  cb::Writer w(cb::Spec::Make(name, capacity));
  for (int i = 0; i < written; ++i) w.Write(Message(w.NextSequence(), 10));
  return cb::Reader(cb::Spec::Make(name, 0), {.start = cb::StartAt::kNext});
}

struct Seen {
  std::vector<std::uint64_t> sequences;  // of the messages delivered
  std::uint64_t bad = 0;                 // delivered with other bytes than recorded
  std::uint64_t laps = 0;
};

// Reads until `messages` were delivered or nothing came for two seconds.
Seen ReadAll(cb::Reader& r, std::size_t messages, std::uint64_t sequence_offset = 0) {
  Seen seen;
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  auto quiet_since = std::chrono::steady_clock::now();
  while (seen.sequences.size() < messages && std::chrono::steady_clock::now() - quiet_since < 2s) {
    int const n = r.Read(buf);
    if (n > 0) {
      std::uint64_t const seq = r.NextSequence() - 1;
      seen.sequences.push_back(seq);
      if (!Matches(seq - sequence_offset, std::span(buf.data(), static_cast<std::size_t>(n)))) ++seen.bad;
      quiet_since = std::chrono::steady_clock::now();
    } else if (n == cb::kLapped) {
      ++seen.laps;
    } else if (n == cb::kEmpty) {
      (void)r.Wait(10ms);
    } else {
      ADD_FAILURE() << "Read returned " << n;
      break;
    }
  }
  return seen;
}

constexpr std::uint64_t kWholeSample = std::uint64_t{16} << 20;  // a ring that holds all of Sample()

std::vector<Item> Sample() {
  // Sizes 1 .. 65535, two gaps inside and one at the end.
  std::vector<Item> items;
  std::uint64_t seq = 0;
  for (std::size_t size : {std::size_t{1}, std::size_t{2}, std::size_t{7}, std::size_t{8}, std::size_t{9},
                           std::size_t{1000}, std::size_t{65534}, std::size_t{65535}}) {
    items.push_back({false, seq++, size});
  }
  items.push_back({true, seq, 7});
  seq += 7;
  for (int i = 0; i < 200; ++i, ++seq) items.push_back({false, seq, 1 + (seq * 977) % 65535});
  items.push_back({true, seq, 1000});
  seq += 1000;
  items.push_back({false, seq++, 5});
  items.push_back({true, seq, 3});  // a trailing gap: readers must still count it
  return items;
}

std::vector<std::uint64_t> MessageSequences(std::vector<Item> const& items) {
  std::vector<std::uint64_t> out;
  for (Item const& i : items) {
    if (!i.gap) out.push_back(i.sequence);
  }
  return out;
}

}  // namespace

TEST(ReplayTool, ByteExactWithTheRecordedNumbersAndEveryGapCounted) {
  Cleanup c("replay-exact");
  std::string const file = c.dir + "/sample.cbrec";
  std::vector<Item> const items = Sample();
  MakeRecording(file, items);
  // Read after the replay: the ring holds all of it (6.6 MB), so nothing is overwritten.
  cb::Reader reader = AttachFirst(c.names[0], kWholeSample);
  auto const r = Circbuf({"replay", file, c.names[0], "--speed", "max"}, {}, 60s);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("209 messages"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 gaps (1010 messages lost)"), std::string::npos) << r.err;
  Seen const seen = ReadAll(reader, 209);
  EXPECT_EQ(seen.sequences, MessageSequences(items));
  EXPECT_EQ(seen.bad, 0U);
  std::vector<std::byte> buf(16);
  EXPECT_EQ(reader.Read(buf), cb::kLapped) << "the trailing gap";
  EXPECT_EQ(reader.LastLoss(), 3U);
  EXPECT_EQ(reader.Lost(), 1010U);
  EXPECT_EQ(reader.Delivered(), 209U);
  EXPECT_EQ(reader.NextSequence(), items.back().sequence + items.back().count);
}

// Gaps survive the whole chain: a writer that skips (a stream with upstream
// losses), `circbuf record`, `circbuf replay`, a reader of the replayed ring.
TEST(ReplayTool, RecordThenReplayKeepsTheGapsOfTheSourceRing) {
  Cleanup c("replay-chain");
  std::string const file = c.dir + "/chain.cbrec";
  std::uint64_t skipped = 0;
  {
    std::optional<cb::Writer> source(std::in_place, cb::Spec::Make(c.names[0], 1 << 20));
    Tool recorder({"record", c.names[0], file, "--from", "oldest"});
    for (int i = 0; i < 1000; ++i) {
      source->Write(Message(source->NextSequence(), 1 + static_cast<std::size_t>(i) % 300));
      if (i % 100 == 99) {
        source->Skip(3 + static_cast<std::uint64_t>(i) / 100);
        skipped += 3 + static_cast<std::uint64_t>(i) / 100;
      }
    }
    auto const deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {  // until the recorder has everything
      std::optional<std::uint64_t> have;
      try {
        have = rec::RecordingReader(file).Info().messages;
      } catch (std::exception const&) {
        have.reset();
      }
      if (have == 1000U || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(10ms);
    }
    source.reset();
    ASSERT_EQ(recorder.Wait(), 0) << recorder.Err();
  }
  auto const info = Circbuf({"info", file, "--json"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_EQ(JsonField(info.out, "messages"), "1000");
  EXPECT_EQ(JsonField(info.out, "gaps"), "10");
  EXPECT_EQ(JsonField(info.out, "lost"), std::to_string(skipped));
  cb::Reader reader = AttachFirst(c.names[1]);
  auto const r = Circbuf({"replay", file, c.names[1], "--speed", "max"}, {}, 60s);
  ASSERT_EQ(r.code, 0) << r.err;
  Seen const seen = ReadAll(reader, 1000);
  EXPECT_EQ(seen.sequences.size(), 1000U);
  EXPECT_EQ(seen.bad, 0U);
  std::vector<std::byte> buf(16);
  while (reader.Read(buf) == cb::kLapped) {  // the last gap follows the last message
  }
  EXPECT_EQ(reader.Lost(), skipped);
  EXPECT_EQ(reader.Stats().laps, 10U);
  EXPECT_EQ(reader.NextSequence(), 1000 + skipped);
}

// A ring already past the recorded numbers: shifted, gaps kept. --sequence
// continue shifts always; --from starts at a sequence number.
TEST(ReplayTool, ShiftedNumbersKeepTheGapsAndFromStartsLater) {
  Cleanup c("replay-shift");
  std::string const file = c.dir + "/shift.cbrec";
  std::vector<Item> const items = Sample();
  MakeRecording(file, items);
  {
    cb::Reader reader = AttachFirst(c.names[0], kWholeSample, 50);
    auto const r = Circbuf({"replay", file, c.names[0], "--speed", "max"}, {}, 60s);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("numbers shifted by 50"), std::string::npos) << r.err;
    Seen const seen = ReadAll(reader, 209, 50);
    std::vector<std::uint64_t> want = MessageSequences(items);
    for (std::uint64_t& s : want) s += 50;
    EXPECT_EQ(seen.sequences, want);
    EXPECT_EQ(seen.bad, 0U);
    std::vector<std::byte> buf(16);
    EXPECT_EQ(reader.Read(buf), cb::kLapped);
    EXPECT_EQ(reader.Lost(), 1010U);
  }
  {
    cb::Reader reader = AttachFirst(c.names[1]);
    auto const r =
        Circbuf({"replay", file, c.names[1], "--speed", "max", "--from", "200", "--sequence", "continue"}, {}, 60s);
    ASSERT_EQ(r.code, 0) << r.err;
    // continue: the first message (recorded 200) gets the ring's next number, 0; so contents are of number + 200.
    Seen const seen = ReadAll(reader, 16, std::uint64_t{0} - 200);
    std::vector<std::uint64_t> const want{0,   1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,  // recorded 200 .. 214
                                          1015};  // recorded 1215, after the gap of 1000
    EXPECT_EQ(seen.sequences, want);
    EXPECT_EQ(seen.bad, 0U);
    EXPECT_EQ(reader.Lost(), 1000U);
  }
}

// --loop: every pass continues the numbers; each pass's gaps are counted.
// Stopped by SIGINT: exit 0, summary on stderr.
TEST(ReplayTool, LoopContinuesTheNumbersUntilStopped) {
  Cleanup c("replay-loop");
  std::string const file = c.dir + "/loop.cbrec";
  MakeRecording(file, {{false, 0, 10}, {false, 1, 20}, {true, 2, 4}, {false, 6, 30}});
  cb::Reader reader = AttachFirst(c.names[0]);
  // At the recorded pace (1 ms apart): the reader keeps up, so nothing is lapped.
  Tool replay({"replay", file, c.names[0], "--loop"});
  Seen const seen = ReadAll(reader, 300);
  replay.Signal(SIGINT);
  EXPECT_EQ(replay.Wait(), 0) << replay.Err();
  EXPECT_NE(replay.Err().find("stopped by a signal"), std::string::npos) << replay.Err();
  ASSERT_EQ(seen.sequences.size(), 300U);
  // Pass k: messages 7k, 7k+1, 7k+6 (a gap of 4 inside each pass).
  for (std::size_t i = 0; i < seen.sequences.size(); ++i) {
    std::uint64_t const pass = i / 3;
    std::uint64_t const want = 7 * pass + (i % 3 == 0 ? 0 : i % 3 == 1 ? 1 : 6);
    ASSERT_EQ(seen.sequences[i], want) << "message " << i;
  }
  EXPECT_EQ(reader.Lost(), 4U * 100) << "a gap of 4 in every pass";
}

// The recorded spacing: at --speed 1, 300 ms of recording take at least
// 300 ms (a lower bound: how much longer is the machine's business); at
// --speed 3 at least 100 ms. No upper bound is asserted.
TEST(ReplayTool, SpeedKeepsTheRecordedSpacingAsALowerBound) {
  Cleanup c("replay-speed");
  std::string const file = c.dir + "/speed.cbrec";
  std::vector<Item> items(31);
  for (std::uint64_t i = 0; i < items.size(); ++i) items[i] = {false, i, 16};
  MakeRecording(file, items, 5'000'000'000, 10'000'000);  // 10 ms apart: 300 ms
  for (auto const& [speed, floor] : {std::pair{"1", 300ms}, std::pair{"3", 100ms}}) {
    auto const start = std::chrono::steady_clock::now();
    auto const r = Circbuf({"replay", file, c.names[0], "--speed", speed}, {}, 60s);
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_GE(std::chrono::steady_clock::now() - start, floor) << "speed " << speed;
  }
}

// A recording in parts (record --rotate: FILE, FILE.1, ...): played part
// after part, --from seeking in each; a gap across the seam is kept.
TEST(ReplayTool, APartedRecordingIsPlayedPartAfterPart) {
  Cleanup c("replay-parts");
  std::string const file = c.dir + "/parts.cbrec";
  {
    rec::RecordingWriter w(file,
                           {.ring_name = "/source", .ring_capacity = 1 << 20, .rotate_bytes = std::uint64_t{16} << 10});
    for (std::uint64_t seq = 0; seq < 300; ++seq) {
      if (seq == 150) {
        w.AppendGap(150, 9, seq);
        continue;
      }
      w.Append(seq + (seq > 150 ? 8 : 0), seq, Message(seq + (seq > 150 ? 8 : 0), 200));
    }
    w.Close();
  }
  ASSERT_TRUE(std::filesystem::exists(file + ".2")) << "the test needs at least three parts";
  std::size_t parts = 1;
  while (std::filesystem::exists(file + "." + std::to_string(parts))) ++parts;
  auto const info = Circbuf({"info", file, "--json"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_EQ(JsonField(info.out, "parts"), std::to_string(parts));
  auto const dump = Circbuf({"dump", file});
  ASSERT_EQ(dump.code, 0) << dump.err;
  EXPECT_EQ(circbuf::test::Lines(dump.out).size(), 300U) << "299 messages and a gap, through every part";
  EXPECT_NE(dump.out.find("#150  "), std::string::npos);
  EXPECT_NE(dump.out.find("gap: 9 messages lost"), std::string::npos);
  {
    cb::Reader reader = AttachFirst(c.names[0]);
    auto const r = Circbuf({"replay", file, c.names[0], "--speed", "max"}, {}, 60s);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("parts (--rotate), played in order"), std::string::npos) << r.err;
    Seen const seen = ReadAll(reader, 299);
    ASSERT_EQ(seen.sequences.size(), 299U);
    EXPECT_EQ(seen.bad, 0U);
    EXPECT_EQ(seen.sequences.front(), 0U);
    EXPECT_EQ(seen.sequences.back(), 307U);
    EXPECT_EQ(reader.Lost(), 9U);
  }
  {
    cb::Reader reader = AttachFirst(c.names[1]);
    auto const r = Circbuf({"replay", file, c.names[1], "--speed", "max", "--from", "250"}, {}, 60s);
    ASSERT_EQ(r.code, 0) << r.err;
    Seen const seen = ReadAll(reader, 58);
    ASSERT_EQ(seen.sequences.size(), 58U);
    EXPECT_EQ(seen.sequences.front(), 250U);
    EXPECT_EQ(seen.bad, 0U);
  }
}

TEST(ReplayTool, BadInputGetsOneClearLineAndItsExitCode) {
  Cleanup c("replay-bad");
  std::string const file = c.dir + "/ok.cbrec";
  MakeRecording(file, {{false, 0, 60000}});
  auto expect = [](circbuf::test::Result const& r, int code, std::string const& text) {
    EXPECT_EQ(r.code, code) << r.err;
    EXPECT_NE(r.err.find(text), std::string::npos) << r.err;
  };
  expect(Circbuf({"replay", c.dir + "/missing", c.names[0]}), 2, "missing");
  std::string const foreign = c.dir + "/foreign";
  {
    std::FILE* f = std::fopen(foreign.c_str(), "w");
    std::fputs("not a recording\n", f);
    std::fclose(f);
  }
  expect(Circbuf({"replay", foreign, c.names[0]}), 5, "not a circbuf recording");
  expect(Circbuf({"replay", file, c.names[0], "--speed", "0"}), 3, "--speed 0: must be max or a factor > 0");
  expect(Circbuf({"replay", file, c.names[0], "--speed", "fast"}), 3, "--speed fast");
  expect(Circbuf({"replay", file, c.names[0], "--from", "yesterday"}), 3, "--from yesterday: must be");
  expect(Circbuf({"replay", file, c.names[0], "--from", "99999999999999999999999"}), 3, "below 2^64");
  expect(Circbuf({"replay", file, "bad/name"}), 3, "");
  // A message the ring cannot take: refused before the ring is even made.
  expect(Circbuf({"replay", file, c.names[0], "--capacity", "4096"}), 3, "holds a message of 60000 bytes");
  EXPECT_FALSE(circbuf::test::ShmFileExists(c.names[0]));
  // A ring with a live writer.
  cb::Writer busy(cb::Spec::Make(c.names[1], 1 << 20));
  expect(Circbuf({"replay", file, c.names[1]}), 6, "already has a live writer");
}
