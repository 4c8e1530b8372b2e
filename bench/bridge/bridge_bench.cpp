// bench_bridge: circbuf bridge (ring -> bridge out -> NATS JetStream ->
// bridge in -> ring) against the same payloads through plain NATS core
// publish/subscribe and through raw JetStream, on one host (loopback), with
// a nats-server this program starts (docs/bridge.md, "Speed").
//   latency:    one message in flight at a time, the send time in its first
//               8 bytes (CLOCK_MONOTONIC, one host), p50 and p99 of the
//               one-way time;
//   throughput: N messages as fast as they go, until the stream holds all
//               of them (bridge out) or every asynchronous publish is
//               acknowledged (raw JetStream).
// Not Google Benchmark: each figure is one run of whole processes. A
// 2-vCPU virtual machine shares its cores between nats-server, both bridges
// and this program: say so next to the figures.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <nats/nats.h>

#include "bridge/nats_server.hpp"
#include "cli/run.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::NatsClient;
using circbuf::test::NatsServer;
using circbuf::test::TempDir;
using circbuf::test::Tool;
using circbuf::test::UniqueName;
using namespace std::chrono_literals;

namespace bridge_bench {

std::uint64_t Now() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

struct Quantiles {
  double p50_us = 0;
  double p99_us = 0;
};
Quantiles Of(std::vector<std::uint64_t> ns) {
  if (ns.empty()) return {};
  std::ranges::sort(ns);
  auto const at = [&](double q) {
    return static_cast<double>(ns[static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1))]) / 1e3;
  };
  return {at(0.5), at(0.99)};
}

std::vector<char> Stamped(std::size_t size) {
  std::vector<char> m(std::max<std::size_t>(size, 8), 'x');
  std::uint64_t const t = Now();
  std::memcpy(m.data(), &t, 8);
  return m;
}
std::uint64_t SentAt(void const* data) {
  std::uint64_t t = 0;
  std::memcpy(&t, data, 8);
  return t;
}

struct Ring {
  std::string name;
  explicit Ring(std::string n) : name(std::move(n)) {}
  Ring(Ring const&) = delete;
  Ring& operator=(Ring const&) = delete;
  ~Ring() {
    for (std::string const& suffix : {std::string(), std::string(cb::kDataSegmentSuffix)}) {
      ::unlink(("/dev/shm" + name).append(suffix).c_str());
    }
  }
};

std::vector<std::string> Args(std::vector<std::string> head, std::string const& url, std::string const& stream,
                              std::string const& subject) {
  head.insert(head.end(), {"--server", url, "--stream", stream, "--subject", subject, "--storage", "memory"});
  return head;
}

// ring -> bridge out -> JetStream -> bridge in -> ring, one message at a time.
Quantiles BridgeLatency(NatsServer const& server, std::size_t size, int count) {
  Ring up(UniqueName("bb-up"));
  Ring down(UniqueName("bb-down"));
  std::string const stream = "LAT" + std::to_string(size);
  cb::Writer writer(cb::Spec::Make(up.name, 4 << 20));
  Tool out(Args({"bridge", "out", up.name, "--from", "next"}, server.Url(), stream, "lat.s" + std::to_string(size)));
  Tool in(Args({"bridge", "in", down.name, "--from", "next"}, server.Url(), stream, "lat.s" + std::to_string(size)));
  cb::Reader reader(cb::Spec::Make(down.name, 0), {.start = cb::StartAt::kNext, .wait_for_buffer = 15s});
  std::this_thread::sleep_for(500ms);  // both bridges attached and subscribed
  std::vector<std::byte> buffer(reader.MaxMessageSize());
  std::vector<std::uint64_t> ns;
  for (int i = 0; i < count + 20; ++i) {
    auto const m = Stamped(size);
    writer.Write(std::as_bytes(std::span(m.data(), m.size())));
    auto const deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      int const n = reader.Read(buffer);
      if (n > 0) {
        if (i >= 20) ns.push_back(Now() - SentAt(buffer.data()));  // the first 20 warm up
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) break;
      if (n == cb::kEmpty) (void)reader.Wait(10ms);
    }
  }
  out.Signal(SIGTERM);
  in.Signal(SIGTERM);
  (void)out.Wait(10s);
  (void)in.Wait(10s);
  return Of(ns);
}

struct Nats {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit Nats(std::string const& url, jsOptions* o = nullptr) {
    if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK) std::abort();
    natsConnection_JetStream(&js, nc, o);
  }
  ~Nats() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
  Nats(Nats const&) = delete;
  Nats& operator=(Nats const&) = delete;
};

void AddStream(jsCtx* js, std::string const& name, std::string const& subject) {
  jsStreamConfig c;
  jsStreamConfig_Init(&c);
  char const* subjects[] = {subject.c_str()};
  c.Name = name.c_str();
  c.Subjects = subjects;
  c.SubjectsLen = 1;
  c.Storage = js_MemoryStorage;
  jsStreamInfo* si = nullptr;
  js_AddStream(&si, js, &c, nullptr, nullptr);
  jsStreamInfo_Destroy(si);
}

// Plain NATS core: publish on one connection, a synchronous subscriber on another.
Quantiles CoreLatency(NatsServer const& server, std::size_t size, int count) {
  Nats pub(server.Url());
  Nats sub(server.Url());
  natsSubscription* s = nullptr;
  natsConnection_SubscribeSync(&s, sub.nc, "core.lat");
  natsConnection_Flush(sub.nc);
  std::vector<std::uint64_t> ns;
  for (int i = 0; i < count + 20; ++i) {
    auto const m = Stamped(size);
    natsConnection_Publish(pub.nc, "core.lat", m.data(), static_cast<int>(m.size()));
    natsConnection_Flush(pub.nc);
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, s, 5000) == NATS_OK) {
      if (i >= 20) ns.push_back(Now() - SentAt(natsMsg_GetData(msg)));
      natsMsg_Destroy(msg);
    }
  }
  natsSubscription_Destroy(s);
  return Of(ns);
}

// Raw JetStream: an asynchronous publish, a pull consumer fetching (as bridge in does).
Quantiles JetStreamLatency(NatsServer const& server, std::size_t size, int count) {
  Nats pub(server.Url());
  Nats sub(server.Url());
  std::string const stream = "RAWLAT" + std::to_string(size);
  std::string const subject = "rawlat.s" + std::to_string(size);
  AddStream(pub.js, stream, subject);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.AckPolicy = js_AckNone;
  so.Config.DeliverPolicy = js_DeliverNew;
  natsSubscription* s = nullptr;
  js_PullSubscribe(&s, sub.js, subject.c_str(), nullptr, nullptr, &so, nullptr);
  std::vector<std::uint64_t> ns;
  for (int i = 0; i < count + 20; ++i) {
    auto const m = Stamped(size);
    js_PublishAsync(pub.js, subject.c_str(), m.data(), static_cast<int>(m.size()), nullptr);
    natsMsgList list{nullptr, 0};
    if (natsSubscription_Fetch(&list, s, 256, 5000, nullptr) == NATS_OK && list.Count > 0) {
      if (i >= 20) ns.push_back(Now() - SentAt(natsMsg_GetData(list.Msgs[0])));
    }
    natsMsgList_Destroy(&list);
  }
  js_PublishAsyncComplete(pub.js, nullptr);
  natsSubscription_Destroy(s);
  return Of(ns);
}

// Messages per second: N written into a ring as fast as it goes, until the
// stream holds all of them (bridge out publishes them asynchronously).
double BridgeThroughput(NatsServer const& server, std::size_t size, int count) {
  Ring up(UniqueName("bb-tput"));
  std::string const stream = "TPUT" + std::to_string(size);
  std::string const subject = "tput.s" + std::to_string(size);
  cb::Writer writer(cb::Spec::Make(up.name, 50 << 20));
  Tool out(Args({"bridge", "out", up.name, "--from", "next"}, server.Url(), stream, subject));
  NatsClient client(server.Url());
  auto const ready = std::chrono::steady_clock::now() + 10s;
  while (client.LastSequence(stream) == 0 && std::chrono::steady_clock::now() < ready) {
    std::vector<char> const m(size, 'w');
    writer.Write(std::as_bytes(std::span(m.data(), m.size())));
    std::this_thread::sleep_for(20ms);
  }
  std::uint64_t const base = client.LastSequence(stream);
  std::vector<char> const m(size, 't');
  auto const start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) writer.Write(std::as_bytes(std::span(m.data(), m.size())));
  auto const deadline = start + 60s;
  std::uint64_t last = base;
  while ((last = client.LastSequence(stream)) < base + static_cast<std::uint64_t>(count) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.Signal(SIGTERM);
  (void)out.Wait(10s);
  return static_cast<double>(last - base) / s;
}

// Raw JetStream asynchronous publishing, the same window (4096 in flight);
// `ids`: each with a message id, as the bridge sends them (de-duplication).
double JetStreamThroughput(NatsServer const& server, std::size_t size, int count, bool ids) {
  jsOptions o;
  jsOptions_Init(&o);
  o.PublishAsync.MaxPending = 4096;
  Nats pub(server.Url(), &o);
  std::string const stream = "RAWTPUT" + std::to_string(size) + (ids ? "ID" : "");
  std::string const subject = "rawtput.s" + std::to_string(size) + (ids ? ".id" : "");
  AddStream(pub.js, stream, subject);
  std::vector<char> const m(size, 'r');
  auto const start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) {
    std::string const id = subject + ":" + std::to_string(i);
    jsPubOptions o_id;
    jsPubOptions_Init(&o_id);
    o_id.MsgId = id.c_str();
    while (js_PublishAsync(pub.js, subject.c_str(), m.data(), static_cast<int>(m.size()), ids ? &o_id : nullptr) ==
           NATS_TIMEOUT) {
    }
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  js_PublishAsyncComplete(pub.js, &po);
  double const s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return count / s;
}

}  // namespace bridge_bench

using namespace bridge_bench;

int main(int argc, char** argv) {
  int latency_count = 1000;
  int throughput_count = 50000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string const a = argv[i];
    if (a == "--latency-messages") latency_count = std::atoi(argv[i + 1]);
    if (a == "--throughput-messages") throughput_count = std::atoi(argv[i + 1]);
  }
  TempDir dir;
  NatsServer server("bench", dir.path);
  NatsClient client(server.Url());
  if (!client.WaitForJetStream()) {
    std::fprintf(stderr, "bench_bridge: nats-server did not start\n");
    return 1;
  }
  std::printf("one host, loopback, nats-server -js (memory streams), %u hardware threads\n",
              std::thread::hardware_concurrency());
  std::printf("%-8s %-28s %12s %12s\n", "size", "one-way latency", "p50 us", "p99 us");
  for (std::size_t const size : {std::size_t{64}, std::size_t{1024}}) {
    Quantiles const core = CoreLatency(server, size, latency_count);
    Quantiles const raw = JetStreamLatency(server, size, latency_count);
    Quantiles const bridge = BridgeLatency(server, size, latency_count);
    std::printf("%-8zu %-28s %12.1f %12.1f\n", size, "NATS core pub/sub", core.p50_us, core.p99_us);
    std::printf("%-8zu %-28s %12.1f %12.1f\n", size, "JetStream publish/fetch", raw.p50_us, raw.p99_us);
    std::printf("%-8zu %-28s %12.1f %12.1f   (p50 %.2fx JetStream's)\n", size, "ring->bridge->ring", bridge.p50_us,
                bridge.p99_us, raw.p50_us > 0 ? bridge.p50_us / raw.p50_us : 0.0);
  }
  std::printf("%-8s %-28s %12s\n", "size", "throughput", "msg/s");
  for (std::size_t const size : {std::size_t{64}, std::size_t{1024}}) {
    double const raw = JetStreamThroughput(server, size, throughput_count, false);
    double const raw_ids = JetStreamThroughput(server, size, throughput_count, true);
    double const bridge = BridgeThroughput(server, size, throughput_count);
    std::printf("%-8zu %-28s %12.0f\n", size, "JetStream async publish", raw);
    std::printf("%-8zu %-28s %12.0f\n", size, "  the same, with message ids", raw_ids);
    std::printf("%-8zu %-28s %12.0f   (%.2fx JetStream's, %.2fx with ids)\n", size, "bridge out", bridge,
                raw > 0 ? bridge / raw : 0.0, raw_ids > 0 ? bridge / raw_ids : 0.0);
  }
  return 0;
}
