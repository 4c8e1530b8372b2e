// One-way latency (round trip / 2) across two pinned processes, from a
// histogram of every round trip, for every transport in the same run:
//   floor      one cache line bounced between the processes (the best one-way
//              latency this machine allows)
//   circbuf    ping over ring A, pong over ring B
//   copy-floor the copy floor (support/copy_floor.hpp): memcpy into a shared
//              ring, a release-stored counter, memcpy out; two rings of the
//              circbuf rings' capacity
//   kernel     pipe, Unix stream socket, POSIX message queue; blocking and busy-polled
//   peers      Boost.Interprocess message_queue, iceoryx (when built with them)
// Plus an audit run: the echo process runs its Read/Write loop under a
// seccomp filter that traps every system call, and counts page faults.
// Flags: --cpus=A,B (default 0,1), --round_trips=N (default 1000000; blocking
// kernel transports use N/10), --capacity=BYTES of each circbuf ring (default
// 1 MiB), --huge-pages=no|prefer|require for them (bench/hugepages.sh), and
// Google Benchmark's own.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/copy_floor.hpp"
#include "support/harness.hpp"
#include "support/peers.hpp"
#include "support/transports.hpp"

namespace cbb = circbuf::bench;

namespace {

std::int64_t g_round_trips = 1'000'000;
std::uint64_t g_capacity = 1 << 20;  // of each circbuf ring

struct alignas(128) Line {
  std::atomic<std::uint64_t> value;
};

// The floor, measured like every transport: per round trip, with the TSC.
void CacheLineRoundTrip(benchmark::State& state) {
  auto* ping = cbb::MapShared<Line>();
  auto* pong = cbb::MapShared<Line>();
  cbb::Process echo(cbb::g_cpus.echo, [&] {
    for (std::uint64_t expect = 1;; ++expect) {
      std::uint64_t v = 0;
      while ((v = ping->value.load(std::memory_order_acquire)) < expect) {
      }
      if (v == ~std::uint64_t{0}) return 0;
      pong->value.store(v, std::memory_order_release);
    }
  });
  cbb::Pin(cbb::g_cpus.main);
  std::uint64_t n = 0;
  for (int i = 0; i < 1000; ++i) {  // warm up
    ping->value.store(++n, std::memory_order_release);
    while (pong->value.load(std::memory_order_acquire) != n) {
    }
  }
  cbb::Histogram rtt;
  double const ns_per_tick = cbb::NsPerTick();
  for (auto _ : state) {
    std::uint64_t const t0 = cbb::Ticks();
    ping->value.store(++n, std::memory_order_release);
    while (pong->value.load(std::memory_order_acquire) != n) {
    }
    rtt.Add(static_cast<std::uint64_t>(static_cast<double>(cbb::Ticks() - t0) * ns_per_tick));
  }
  ping->value.store(~std::uint64_t{0}, std::memory_order_release);
  echo.Wait();
  cbb::Unmap(ping);
  cbb::Unmap(pong);
  cbb::ReportOneWay(state, rtt);
}

void Register(std::string const& name, std::function<cbb::Transport()> make, std::size_t payload,
              std::int64_t round_trips) {
  benchmark::RegisterBenchmark(("latency/" + name + "/" + std::to_string(payload)).c_str(),
                               [make = std::move(make), payload](benchmark::State& state) {
                                 cbb::Transport const t = make();
                                 if (!t.make_main) {
                                   state.SkipWithError("transport unavailable on this machine");
                                   return;
                                 }
                                 cbb::RunRoundTrips(state, t, payload);
                               })
      ->Iterations(round_trips)
      ->UseRealTime()
      ->Unit(benchmark::kNanosecond);
}

// The echo side of a circbuf round trip, under the system-call trap.
void AuditCircbuf(benchmark::State& state) {
  auto* audit = cbb::MapShared<cbb::Audit>();
  cbb::Transport const t = cbb::RingRoundTrip();
  cbb::RunRoundTrips(state, t, 64, audit);
  state.counters["audited_operations"] = static_cast<double>(audit->operations.load());
  state.counters["syscalls"] = static_cast<double>(audit->syscalls.load());
  state.counters["minor_faults"] = static_cast<double>(audit->minor_faults.load());
  state.counters["major_faults"] = static_cast<double>(audit->major_faults.load());
  state.counters["seccomp"] = audit->installed.load();
  cbb::Unmap(audit);
}

}  // namespace

int main(int argc, char** argv) {
  cbb::ParseCpus(argc, argv);
  cbb::ParseHugePages(argc, argv);
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const* v) { g_round_trips = std::atoll(v); });
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const*) {});   // the throughput binary's
  cbb::TakeFlag(argc, argv, "--capacity=", [](char const* v) { g_capacity = std::strtoull(v, nullptr, 10); });
  std::int64_t const n = g_round_trips;
  std::int64_t const blocking = std::max<std::int64_t>(n / 10, 1000);
  benchmark::RegisterBenchmark("latency/floor/64", CacheLineRoundTrip)->Iterations(n)->UseRealTime();
  for (std::size_t payload : {8, 64, 1024, 65535}) {
    Register("circbuf", [] { return cbb::RingRoundTrip(g_capacity); }, payload, n);
    Register("copy-floor", [] { return cbb::FloorRoundTrip(g_capacity); }, payload, n);
    Register("pipe-spin", [] { return cbb::PipeTransport(true); }, payload, n / 4);
    Register("pipe", [] { return cbb::PipeTransport(false); }, payload, blocking);
    Register("unix-socket-spin", [] { return cbb::UnixSocketTransport(true); }, payload, n / 4);
    Register("unix-socket", [] { return cbb::UnixSocketTransport(false); }, payload, blocking);
    Register("posix-mq-spin", [payload] { return cbb::MqTransport(true, payload); }, payload, n / 4);
    Register("posix-mq", [payload] { return cbb::MqTransport(false, payload); }, payload, blocking);
    for (auto const& peer : cbb::Peers(payload)) Register(peer.name, peer.make, payload, peer.spins ? n / 4 : blocking);
  }
  benchmark::RegisterBenchmark("audit/circbuf/64", AuditCircbuf)->Iterations(n / 4)->UseRealTime();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  cbb::StopPeers();
  return 0;
}
