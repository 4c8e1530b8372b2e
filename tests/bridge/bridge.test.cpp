// circbuf bridge out / in against real nats-server processes (each test
// starts its own on free loopback ports, with its own store directory):
// byte-for-byte carriage, the exact loss of a lapped bridge, a SIGKILLed and
// restarted bridge, a late `bridge in --from oldest`, bad input. The fault
// cases on a three-node cluster are in cluster.test.cpp.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "bridge/nats_proxy.hpp"
#include "bridge/nats_server.hpp"
#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Circbuf;
using circbuf::test::FreePort;
using circbuf::test::Lines;
using circbuf::test::LossyNatsProxy;
using circbuf::test::NatsClient;
using circbuf::test::NatsServer;
using circbuf::test::TempDir;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace bridge_test {

struct Rings {
  std::vector<std::string> names;
  Rings() = default;
  Rings(Rings const&) = delete;
  Rings& operator=(Rings const&) = delete;
  std::string Add(std::string const& tag) {
    names.push_back(UniqueName(tag));
    return names.back();
  }
  ~Rings() {
    for (auto const& name : names) {
      for (std::string const& suffix : {std::string(), std::string(cb::kDataSegmentSuffix)}) {
        ::unlink(("/dev/shm" + name).append(suffix).c_str());
        ::unlink(("/dev/shm/sem." + name.substr(1) + suffix).c_str());
      }
    }
  }
};

// Message `seq`: its size and bytes follow from the sequence number, so a
// reader can check both (and the sequence it arrived with).
std::size_t SizeOf(std::uint64_t seq, std::size_t max) {
  if (seq == 0) return 1;
  if (seq == 1) return max;
  return 1 + static_cast<std::size_t>((seq * 7919) % max);
}
std::vector<std::byte> Payload(std::uint64_t seq, std::size_t size) {
  std::vector<std::byte> out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((seq * 131 + i * 7) & 0xff);
  return out;
}

void Put(cb::Writer& writer, std::uint64_t seq, std::size_t max) {
  auto const bytes = Payload(seq, SizeOf(seq, max));
  writer.Write(bytes);
}

// Reads `reader` until delivered + lost reaches `total` or the timeout;
// every delivered message must be exactly the one its sequence names.
struct Seen {
  std::uint64_t delivered = 0;
  std::uint64_t lost = 0;
  std::uint64_t wrong = 0;  // messages whose bytes are not their sequence's
  std::uint64_t first = ~std::uint64_t{0};
};
Seen ReadUntil(cb::Reader& reader, std::uint64_t total, std::size_t max, std::chrono::seconds timeout) {
  Seen seen;
  std::vector<std::byte> buffer(reader.MaxMessageSize());
  auto const deadline = std::chrono::steady_clock::now() + timeout;
  while (seen.delivered + seen.lost < total && std::chrono::steady_clock::now() < deadline) {
    int const n = reader.Read(buffer);
    if (n > 0) {
      std::uint64_t const seq = reader.NextSequence() - 1;
      if (seen.first == ~std::uint64_t{0}) seen.first = seq;
      auto const want = Payload(seq, SizeOf(seq, max));
      if (static_cast<std::size_t>(n) != want.size() || !std::equal(want.begin(), want.end(), buffer.begin())) {
        ++seen.wrong;
      }
      ++seen.delivered;
    } else if (n == cb::kLapped) {
      seen.lost += reader.LastLoss();
    } else if (n == cb::kEmpty) {
      (void)reader.Wait(50ms);
    } else {
      ADD_FAILURE() << "downstream Read returned " << n;
      break;
    }
  }
  return seen;
}

// The number in "(N messages lost on the source ring)" of bridge out's summary line.
std::optional<std::uint64_t> SummaryNumber(std::string const& text, std::string const& pattern) {
  std::smatch m;
  std::regex const re(pattern);
  if (!std::regex_search(text, m, re)) return std::nullopt;
  return std::stoull(m[1].str());
}

std::vector<std::string> NatsArgs(std::string const& server, std::string const& stream, std::string const& subject) {
  return {"--server", server, "--stream", stream, "--subject", subject};
}
std::vector<std::string> Cat(std::vector<std::string> a, std::vector<std::string> const& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Stops a bridge with SIGTERM and returns its exit code (its summary is then in Err()).
int Stop(Tool& bridge) {
  bridge.Signal(SIGTERM);
  return bridge.Wait(30s);
}

TEST(Bridge, OutThenInCarriesEveryMessageByteForByte) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-up");
  std::string const down = rings.Add("br-down");
  constexpr std::uint64_t kHistory = 150;
  constexpr std::uint64_t kLive = 250;
  cb::Writer writer(cb::Spec::Make(up, 50 << 20));
  std::size_t const max = writer.MaxMessageSize();
  ASSERT_EQ(max, 65535u);
  std::uint64_t written = 0;
  for (; written < kHistory; ++written) Put(writer, written, max);  // before the bridge: --from oldest
  auto const nats = NatsArgs(server.Url(), "BYTES", "bytes.one");
  Tool out(Cat({"bridge", "out", up, "--from", "oldest", "--storage", "memory"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest", "--capacity", "50MiB", "--storage", "memory"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  for (; written < kHistory + kLive; ++written) Put(writer, written, max);
  Seen const seen = ReadUntil(reader, kHistory + kLive, max, 40s);
  EXPECT_EQ(seen.delivered, kHistory + kLive) << out.Err() << in.Err();
  EXPECT_EQ(seen.lost, 0u);
  EXPECT_EQ(seen.wrong, 0u);
  EXPECT_EQ(seen.first, 0u);
  EXPECT_EQ(reader.Lost(), 0u);
  EXPECT_EQ(Stop(out), 0) << out.Err();
  EXPECT_EQ(Stop(in), 0) << in.Err();
  EXPECT_EQ(SummaryNumber(out.Err(), "published (\\d+) messages"), kHistory + kLive) << out.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), "wrote (\\d+) messages"), kHistory + kLive) << in.Err();
}

TEST(Bridge, LapOnTheSourceRingArrivesAsTheExactLoss) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-lapup");
  std::string const down = rings.Add("br-lapdown");
  constexpr std::size_t kMax = 100;  // messages of 1 .. 100 bytes
  cb::Writer writer(cb::Spec::Make(up, 64 << 10));
  auto const nats = NatsArgs(server.Url(), "LAP", "lap.one");
  std::uint64_t written = 0;
  Put(writer, written++, kMax);
  Tool out(Cat({"bridge", "out", up, "--from", "oldest"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  Seen first = ReadUntil(reader, 1, kMax, 20s);
  ASSERT_EQ(first.delivered, 1u) << out.Err() << in.Err();
  out.Signal(SIGSTOP);  // the bridge stops reading: the writer laps it
  for (int i = 0; i < 5000; ++i) Put(writer, written++, kMax);
  out.Signal(SIGCONT);
  for (int i = 0; i < 20; ++i) Put(writer, written++, kMax);
  Seen const rest = ReadUntil(reader, written - 1, kMax, 30s);
  EXPECT_EQ(rest.wrong, 0u) << "a message arrived under another sequence number";
  EXPECT_EQ(1 + rest.delivered + rest.lost, written);
  EXPECT_GT(rest.lost, 0u) << "the source ring did not lap the bridge";
  EXPECT_EQ(reader.Lost(), rest.lost);
  EXPECT_EQ(reader.NextSequence(), written);
  ASSERT_EQ(Stop(out), 0) << out.Err();
  ASSERT_EQ(Stop(in), 0) << in.Err();
  // Exactly what the source ring lost (bridge out's count) is what the downstream reader lost.
  EXPECT_EQ(SummaryNumber(out.Err(), "\\((\\d+) messages lost on the source ring\\)"), rest.lost) << out.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), "\\((\\d+) messages lost: "), rest.lost) << in.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), ", (\\d+) on the way\\)"), 0u) << in.Err();
}

TEST(Bridge, SigkilledBridgeOutRestartsWithoutDuplicatesOrUnreportedLoss) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-killup");
  constexpr std::size_t kMax = 200;
  cb::Writer writer(cb::Spec::Make(up, 1 << 20));
  auto const nats = NatsArgs(server.Url(), "KILL", "kill.one");
  std::uint64_t written = 0;
  {
    Tool out(Cat({"bridge", "out", up}, nats));
    for (; written < 500; ++written) Put(writer, written, kMax);
    ASSERT_TRUE(client.WaitCovered("KILL", "kill.one", 100)) << out.Err();
    for (int round = 0; round < 50; ++round) {  // keep it busy while it dies
      for (int k = 0; k < 40; ++k, ++written) Put(writer, written, kMax);
      if (round == 10) out.Signal(SIGKILL);
    }
    EXPECT_EQ(out.Wait(), 128 + SIGKILL);
  }
  for (int k = 0; k < 300; ++k, ++written) Put(writer, written, kMax);
  Tool again(Cat({"bridge", "out", up}, nats));
  for (int k = 0; k < 300; ++k, ++written) Put(writer, written, kMax);
  ASSERT_TRUE(client.WaitCovered("KILL", "kill.one", written)) << again.Err();
  ASSERT_EQ(Stop(again), 0) << again.Err();
  EXPECT_NE(again.Err().find("resuming"), std::string::npos) << again.Err();
  // It resumed after the stream's last message instead of leaning on the
  // duplicate window: nothing it sent was a second copy.
  EXPECT_EQ(SummaryNumber(again.Err(), "\\((\\d+) duplicates\\)"), 0u) << again.Err();
  EXPECT_GT(SummaryNumber(again.Err(), "(\\d+) already in the stream").value_or(0), 0u) << again.Err();
  // The stream: every ring sequence exactly once (a message or within a
  // gap), in order, each message's bytes its sequence's.
  std::uint64_t next = 0;
  std::uint64_t gaps = 0;
  for (auto const& m : client.Messages("KILL")) {
    ASSERT_TRUE(m.seq.has_value()) << "stream sequence " << m.stream_seq;
    ASSERT_EQ(m.seq.value_or(~next), next) << "stream sequence " << m.stream_seq << ": a duplicate or a hole";
    if (m.gap) {
      gaps += *m.gap;
      next += *m.gap;
      continue;
    }
    auto const want = Payload(next, SizeOf(next, kMax));
    ASSERT_EQ(m.payload, std::string(reinterpret_cast<char const*>(want.data()), want.size())) << next;
    ++next;
  }
  EXPECT_EQ(next, written);
  EXPECT_EQ(gaps, 0u) << "the 1 MiB ring held everything: nothing to lose";
  EXPECT_EQ(SummaryNumber(again.Err(), "\\((\\d+) messages lost on the source ring\\)"), gaps) << again.Err();
}

TEST(Bridge, LateBridgeInFromOldestReadsTheHistory) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-histup");
  std::string const down = rings.Add("br-histdown");
  constexpr std::size_t kMax = 1000;
  constexpr std::uint64_t kN = 1000;
  auto const nats = NatsArgs(server.Url(), "HIST", "hist.one");
  {
    cb::Writer writer(cb::Spec::Make(up, 4 << 20));
    Tool out(Cat({"bridge", "out", up, "--until-closed"}, nats));
    for (std::uint64_t i = 0; i < kN; ++i) Put(writer, i, kMax);
    bool const covered = client.WaitCovered("HIST", "hist.one", kN);
    ASSERT_EQ(Stop(out), 0) << out.Err();
    ASSERT_TRUE(covered) << out.Err();
  }
  // Nothing of the source is left running; the history is in the stream only.
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  Seen const seen = ReadUntil(reader, kN, kMax, 30s);
  EXPECT_EQ(seen.delivered, kN) << in.Err();
  EXPECT_EQ(seen.first, 0u);
  EXPECT_EQ(seen.lost, 0u);
  EXPECT_EQ(seen.wrong, 0u);
  EXPECT_EQ(Stop(in), 0) << in.Err();
}

TEST(Bridge, WriterTakeOverOnTheSourceRingContinuesTheSequenceAcrossTheBridge) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-takeup");
  std::string const down = rings.Add("br-takedown");
  constexpr std::size_t kMax = 300;
  constexpr std::uint64_t kFirst = 400;
  auto const nats = NatsArgs(server.Url(), "TAKE", "take.one");
  circbuf::test::Pipe written;
  // The first writer, in a child that dies (SIGKILL) after kFirst messages.
  circbuf::test::Child first([&] {
    cb::Writer writer(cb::Spec::Make(up, 1 << 20));
    for (std::uint64_t i = 0; i < kFirst; ++i) Put(writer, i, kMax);
    written.Send();
    ::pause();
    return 0;
  });
  ASSERT_EQ(written.Receive(), '.');
  Tool out(Cat({"bridge", "out", up, "--from", "oldest"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  Seen const before = ReadUntil(reader, kFirst, kMax, 20s);
  ASSERT_EQ(before.delivered, kFirst) << out.Err() << in.Err();
  first.Kill();
  ASSERT_EQ(first.Wait(), 128 + SIGKILL);
  cb::Writer second(cb::Spec::Make(up, 1 << 20));  // takes the ring over: the sequence goes on
  ASSERT_TRUE(second.TookOver());
  ASSERT_EQ(second.NextSequence(), kFirst);
  for (std::uint64_t i = kFirst; i < 2 * kFirst; ++i) Put(second, i, kMax);
  Seen const after = ReadUntil(reader, kFirst, kMax, 20s);
  EXPECT_EQ(after.delivered, kFirst) << out.Err() << in.Err();
  EXPECT_EQ(after.first, kFirst);
  EXPECT_EQ(after.lost, 0u);
  EXPECT_EQ(after.wrong, 0u);
  EXPECT_EQ(reader.NextSequence(), 2 * kFirst);
  EXPECT_EQ(Stop(out), 0) << out.Err();
  EXPECT_EQ(Stop(in), 0) << in.Err();
}

TEST(Bridge, MessagesGoneFromTheStreamAreCountedAsLostOnTheWay) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-goneup");
  std::string const down = rings.Add("br-gonedown");
  constexpr std::size_t kMax = 100;
  constexpr std::uint64_t kN = 100;
  auto const nats = NatsArgs(server.Url(), "GONE", "gone.one");
  {
    cb::Writer writer(cb::Spec::Make(up, 1 << 20));
    Tool out(Cat({"bridge", "out", up}, nats));
    for (std::uint64_t i = 0; i < kN; ++i) Put(writer, i, kMax);
    ASSERT_TRUE(client.WaitCovered("GONE", "gone.one", kN)) << out.Err();
    ASSERT_EQ(Stop(out), 0) << out.Err();
  }
  // Stream sequences 41 .. 50 (ring sequences 40 .. 49) expire before bridge in reads them.
  for (std::uint64_t s = 41; s <= 50; ++s) ASSERT_TRUE(client.Delete("GONE", s));
  // --reorder-wait 600: the hole must be counted at once (the stream jumped
  // and the gap fill found nothing), not after waiting for late messages.
  Tool in(Cat({"bridge", "in", down, "--from", "oldest", "--reorder-wait", "600"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  Seen const seen = ReadUntil(reader, kN, kMax, 20s);
  EXPECT_EQ(seen.delivered, kN - 10) << in.Err();
  EXPECT_EQ(seen.lost, 10u);
  EXPECT_EQ(seen.wrong, 0u);
  EXPECT_EQ(reader.Lost(), 10u);
  ASSERT_EQ(Stop(in), 0) << in.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), ", (\\d+) on the way\\)"), 10u) << in.Err();
}

// The gap fill's recovery: deliveries of stream sequences 41 .. 50 to bridge
// in's consumer are lost on the way (a proxy between bridge in and the
// server drops those frames whole; the consumer, with no acknowledgements,
// has moved past them), while the stream still holds them. bridge in sees
// the stream and the ring sequence jump, fetches the ten by sequence, and
// the downstream reader gets all 100 messages, nothing lost. Without the
// gap fill the ten are counted as lost on the way (checked by commenting
// out the Fill call: delivered 90, lost 10). Twice: on a stream that allows
// direct get (bridge out creates it so; one request per subject's next
// message) and on one that does not (a user's stream; fetched one stream
// sequence at a time).
void RecoveredByTheGapFill(bool allow_direct) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  std::string const stream = allow_direct ? "FILL" : "FILLNODIRECT";
  if (!allow_direct) {
    ASSERT_TRUE(client.AddStream(stream, "fill.one", false));
  }
  Rings rings;
  std::string const up = rings.Add("br-fillup");
  std::string const down = rings.Add("br-filldown");
  constexpr std::size_t kMax = 100;
  constexpr std::uint64_t kN = 100;
  {
    cb::Writer writer(cb::Spec::Make(up, 1 << 20));
    Tool out(Cat({"bridge", "out", up}, NatsArgs(server.Url(), stream, "fill.one")));
    for (std::uint64_t i = 0; i < kN; ++i) Put(writer, i, kMax);
    ASSERT_TRUE(client.WaitCovered(stream, "fill.one", kN)) << out.Err();
    ASSERT_EQ(Stop(out), 0) << out.Err();
  }
  LossyNatsProxy const proxy(server.Port(), 41, 50);
  // --reorder-wait 600: were the ten not recovered, the hole would be
  // counted at once (the stream jumped), not after waiting for them.
  Tool in(Cat({"bridge", "in", down, "--from", "oldest", "--reorder-wait", "600", "--batch", "8"},
              NatsArgs(proxy.Url(), stream, "fill.one")));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  Seen const seen = ReadUntil(reader, kN, kMax, 20s);
  EXPECT_EQ(proxy.Dropped(), 10u) << "the proxy did not drop the deliveries it should have";
  EXPECT_EQ(seen.delivered, kN) << in.Err();
  EXPECT_EQ(seen.lost, 0u);
  EXPECT_EQ(seen.wrong, 0u);
  EXPECT_EQ(reader.Lost(), 0u);
  ASSERT_EQ(Stop(in), 0) << in.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), ", (\\d+) recovered by gap fill"), 10u) << in.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), ", (\\d+) on the way\\)"), 0u) << in.Err();
}

TEST(Bridge, DeliveriesLostOnTheWayAreRecoveredFromTheStreamByTheGapFill) { RecoveredByTheGapFill(true); }
TEST(Bridge, DeliveriesLostOnTheWayAreRecoveredFromAStreamWithoutDirectGet) { RecoveredByTheGapFill(false); }

// A message larger than the server's max_payload (4096 bytes here) cannot
// be published: bridge out sends a gap for it instead, counts it in its
// summary, and the downstream reader loses exactly those, in place, and
// gets every other message byte for byte.
TEST(Bridge, MessagesAboveTheServersMaxPayloadArriveAsExactLosses) {
  TempDir dir;
  std::string const config = dir.path + "/max_payload.conf";
  std::ofstream(config) << "max_payload: 4096\n";
  NatsServer server("single", dir.path, std::nullopt, {"-c", config});
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-bigup");
  std::string const down = rings.Add("br-bigdown");
  constexpr std::uint64_t kN = 50;
  auto const size = [](std::uint64_t seq) { return seq % 10 == 5 ? std::size_t{5000} : std::size_t{100}; };
  auto const nats = NatsArgs(server.Url(), "BIG", "big.one");
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  cb::Writer writer(cb::Spec::Make(up, 1 << 20));
  Tool out(Cat({"bridge", "out", up, "--from", "oldest"}, nats));
  for (std::uint64_t i = 0; i < kN; ++i) writer.Write(Payload(i, size(i)));
  std::vector<std::byte> buffer(reader.MaxMessageSize());
  std::uint64_t delivered = 0;
  std::uint64_t wrong = 0;
  std::vector<std::uint64_t> lost_at;
  auto const deadline = std::chrono::steady_clock::now() + 20s;
  while (delivered + lost_at.size() < kN && std::chrono::steady_clock::now() < deadline) {
    int const n = reader.Read(buffer);
    if (n > 0) {
      std::uint64_t const seq = reader.NextSequence() - 1;
      auto const want = Payload(seq, size(seq));
      if (static_cast<std::size_t>(n) != want.size() || !std::equal(want.begin(), want.end(), buffer.begin())) ++wrong;
      ++delivered;
    } else if (n == cb::kLapped) {
      for (std::uint64_t k = reader.LastLoss(); k > 0; --k) lost_at.push_back(reader.NextSequence() - k);
    } else if (n == cb::kEmpty) {
      (void)reader.Wait(50ms);
    } else {
      FAIL() << "downstream Read returned " << n;
    }
  }
  EXPECT_EQ(delivered, kN - 5) << out.Err() << in.Err();
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(lost_at, (std::vector<std::uint64_t>{5, 15, 25, 35, 45}));
  ASSERT_EQ(Stop(out), 0) << out.Err();
  ASSERT_EQ(Stop(in), 0) << in.Err();
  EXPECT_EQ(SummaryNumber(out.Err(), ", (\\d+) too large for the server's max_payload"), 5u) << out.Err();
}

TEST(Bridge, ServerKilledAndRestartedBothBridgesReconnectAndCountExactly) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-restup");
  std::string const down = rings.Add("br-restdown");
  constexpr std::size_t kMax = 200;
  cb::Writer writer(cb::Spec::Make(up, 4 << 20));
  auto const nats = NatsArgs(server.Url(), "REST", "rest.one");
  Tool out(Cat({"bridge", "out", up, "--ack-wait", "1", "--storage", "file"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  std::uint64_t written = 0;
  for (; written < 300; ++written) Put(writer, written, kMax);
  Seen const before = ReadUntil(reader, 300, kMax, 20s);
  ASSERT_EQ(before.delivered, 300u);
  server.Kill();  // the stream is on file: it comes back with the server
  for (int k = 0; k < 500; ++k, ++written) Put(writer, written, kMax);
  std::this_thread::sleep_for(500ms);  // both bridges find the server gone
  server.Start();
  for (int k = 0; k < 200; ++k, ++written) Put(writer, written, kMax);
  Seen const after = ReadUntil(reader, written - 300, kMax, 40s);
  EXPECT_EQ(300 + after.delivered + after.lost, written) << "delivered " << after.delivered << ", lost " << after.lost;
  EXPECT_EQ(after.wrong, 0u);
  ASSERT_EQ(Stop(out), 0) << out.Err();
  ASSERT_EQ(Stop(in), 0) << in.Err();
  EXPECT_NE(out.Err().find("reconnected to"), std::string::npos) << out.Err();
  EXPECT_NE(in.Err().find("reconnected to"), std::string::npos) << in.Err();
  EXPECT_EQ(SummaryNumber(in.Err(), "\\((\\d+) messages lost: "), after.lost) << in.Err();
  EXPECT_EQ(after.lost, SummaryNumber(out.Err(), "(\\d+) refused").value_or(~0ULL) +
                            SummaryNumber(out.Err(), "(\\d+) unacknowledged").value_or(~0ULL))
      << out.Err();
  std::printf("server restarted: %llu delivered after the kill, %llu lost (counted)\n",
              static_cast<unsigned long long>(after.delivered), static_cast<unsigned long long>(after.lost));
}

TEST(Bridge, ProgressPrintsRateLagGapsAndLost) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-progup");
  std::string const down = rings.Add("br-progdown");
  cb::Writer writer(cb::Spec::Make(up, 1 << 20));
  auto const nats = NatsArgs(server.Url(), "PROG", "prog.one");
  Tool out(Cat({"bridge", "out", up, "--progress"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest", "--progress"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  for (std::uint64_t i = 0; i < 50; ++i) Put(writer, i, 100);
  Seen const seen = ReadUntil(reader, 50, 100, 20s);
  EXPECT_EQ(seen.delivered, 50u);
  std::this_thread::sleep_for(2500ms);  // a progress line is due every second
  ASSERT_EQ(Stop(out), 0) << out.Err();
  ASSERT_EQ(Stop(in), 0) << in.Err();
  EXPECT_NE(out.Err().find("circbuf bridge out: "), std::string::npos) << out.Err();
  EXPECT_TRUE(std::regex_search(out.Err(), std::regex("msg/s, acked .* msg/s, published \\d+, in flight \\d+, ring lag "
                                                      "\\d+, gaps \\d+ \\(lost \\d+\\)")))
      << out.Err();
  EXPECT_TRUE(std::regex_search(in.Err(), std::regex("msg/s, written \\d+, lag \\d+, gaps filled \\d+, lost \\d+")))
      << in.Err();
}

// --creds against a server in operator (JWT) mode: tests/bridge/make_creds.py
// makes an operator, an account with JetStream and a user of it (nkeys and
// JWTs signed with Ed25519), and a user whose account the operator never
// issued. With the user's creds both bridges carry every message; without
// creds, or with the stranger's, the server refuses the connection (exit 4,
// permission denied); a creds file that cannot be read is exit 3.
TEST(Bridge, CredsFileAuthenticatesAgainstAServerInOperatorMode) {
  TempDir dir;
  std::string const keys = dir.path + "/keys";
  std::string const make = std::string("/usr/bin/python3 ") + CIRCBUF_MAKE_CREDS + " " + keys;
  ASSERT_EQ(std::system(make.c_str()), 0)
      << make << " failed (it needs python3-cryptography: toolchains/setup-debian12.sh installs it)";
  NatsServer server("creds", dir.path, std::nullopt, {"-c", keys + "/server.conf"});
  std::string const creds = keys + "/user.creds";
  NatsClient client(server.Url(), creds);
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-credsup");
  std::string const down = rings.Add("br-credsdown");
  constexpr std::uint64_t kN = 200;
  constexpr std::size_t kMax = 1000;
  cb::Writer writer(cb::Spec::Make(up, 1 << 20));
  std::uint64_t written = 0;
  for (; written < kN / 2; ++written) Put(writer, written, kMax);
  auto const nats = Cat(NatsArgs(server.Url(), "CREDS", "creds.one"), {"--creds", creds});
  Tool out(Cat({"bridge", "out", up, "--from", "oldest"}, nats));
  Tool in(Cat({"bridge", "in", down, "--from", "oldest"}, nats));
  cb::Reader reader(cb::Spec::Make(down, 0), {.start = cb::StartAt::kOldest, .wait_for_buffer = 15s});
  for (; written < kN; ++written) Put(writer, written, kMax);
  Seen const seen = ReadUntil(reader, kN, kMax, 30s);
  EXPECT_EQ(seen.delivered, kN) << out.Err() << in.Err() << server.Log();
  EXPECT_EQ(seen.lost, 0u);
  EXPECT_EQ(seen.wrong, 0u);
  EXPECT_EQ(Stop(out), 0) << out.Err();
  EXPECT_EQ(Stop(in), 0) << in.Err();
  for (std::string const& who : {std::string(), keys + "/other.creds"}) {
    std::vector<std::string> args =
        Cat({"bridge", "out", up, "--connect-timeout", "2"}, NatsArgs(server.Url(), "CREDS", "creds.one"));
    if (!who.empty()) args.insert(args.end(), {"--creds", who});
    auto const r = Circbuf(args);
    EXPECT_EQ(r.code, 4) << (who.empty() ? "no creds" : who) << ": " << r.err;
    EXPECT_NE(r.err.find("refused the connection: Authentication Violation"), std::string::npos) << r.err;
  }
  auto const missing = Circbuf(
      Cat({"bridge", "out", up, "--creds", dir.path + "/none.creds"}, NatsArgs(server.Url(), "CREDS", "creds.one")));
  EXPECT_EQ(missing.code, 3) << missing.err;
  EXPECT_NE(missing.err.find("--creds \"" + dir.path + "/none.creds\": cannot read it: No such file"),
            std::string::npos)
      << missing.err;
}

TEST(Bridge, BadInputGetsOneClearLineAndItsExitCode) {
  TempDir dir;
  NatsServer server("single", dir.path);
  NatsClient client(server.Url());
  ASSERT_TRUE(client.WaitForJetStream()) << server.Log();
  Rings rings;
  std::string const up = rings.Add("br-badup");
  cb::Writer writer(cb::Spec::Make(up, 1 << 16));
  auto const expect_error = [](circbuf::test::Result const& r, int code, std::string const& text) {
    EXPECT_EQ(r.code, code) << r.err;
    std::vector<std::string> errors;
    for (auto const& line : Lines(r.err)) {
      if (line.starts_with("circbuf")) errors.push_back(line);
    }
    ASSERT_EQ(errors.size(), 1u) << r.err;
    EXPECT_NE(errors[0].find(text), std::string::npos) << r.err;
  };
  std::string const nowhere = "nats://127.0.0.1:" + std::to_string(FreePort());
  expect_error(Circbuf(Cat({"bridge", "out", up, "--connect-timeout", "1"}, NatsArgs(nowhere, "S", "a.b"))), 9,
               "cannot connect to the NATS server at " + nowhere);
  expect_error(Circbuf(Cat({"bridge", "in", "/br-nowhere", "--connect-timeout", "1"}, NatsArgs(nowhere, "S", "a.b"))),
               9, "cannot connect");
  expect_error(Circbuf(Cat({"bridge", "out", up}, NatsArgs(server.Url(), "S", "a..b"))), 3, "subject \"a..b\"");
  expect_error(Circbuf(Cat({"bridge", "in", "/br-x"}, NatsArgs(server.Url(), "S", "a.*"))), 3, "wildcards");
  expect_error(Circbuf(Cat({"bridge", "out", "/bad name"}, NatsArgs(server.Url(), "S", "a.b"))), 3,
               "ring name \"/bad name\"");
  expect_error(Circbuf(Cat({"bridge", "in", "/a/b"}, NatsArgs(server.Url(), "S", "a.b"))), 3, "ring name \"/a/b\"");
  expect_error(Circbuf(Cat({"bridge", "out", up}, NatsArgs(server.Url(), "bad.stream", "a.b"))), 3, "stream name");
  expect_error(Circbuf(Cat({"bridge", "out", "/br-missing-ring"}, NatsArgs(server.Url(), "S", "a.b"))), 2,
               "no such ring");
  // The stream exists with memory storage: a bridge that asks for file storage is refused.
  Tool first(Cat({"bridge", "out", up, "--storage", "memory"}, NatsArgs(server.Url(), "CONF", "conf.one")));
  auto const deadline = std::chrono::steady_clock::now() + 15s;
  while (client.LastSequence("CONF") == 0 && std::chrono::steady_clock::now() < deadline) {
    writer.Write(std::as_bytes(std::span("x", 1)));
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(Stop(first), 0) << first.Err();
  expect_error(
      Circbuf(Cat({"bridge", "in", "/br-conf", "--storage", "file"}, NatsArgs(server.Url(), "CONF", "conf.one"))), 10,
      "stream CONF exists but has storage memory, not file");
  expect_error(Circbuf(Cat({"bridge", "out", up}, NatsArgs(server.Url(), "CONF", "other.subject"))), 10,
               "does not take subject other.subject");
  expect_error(Circbuf({"bridge", "in", "/br-y", "--stream", "S", "--subject", "a.b", "--from", "soon"}), 3,
               "--from \"soon\"");
  expect_error(Circbuf({"bridge", "out", up, "--subject", "a.b"}), 1, "--stream is required");
  for (std::string const sub : {"out", "in"}) {
    auto const help = Circbuf({"bridge", sub, "--help"});
    EXPECT_EQ(help.code, 0) << help.err;
    EXPECT_NE(help.out.find("Usage: circbuf bridge " + sub), std::string::npos) << help.out;
  }
  auto const top = Circbuf({"--help"});
  EXPECT_NE(top.out.find("  10   bridge: the stream's configuration conflicts"), std::string::npos) << top.out;
  EXPECT_LE(circbuf::test::Widest(top.out), 80U) << top.out;
}

}  // namespace bridge_test
