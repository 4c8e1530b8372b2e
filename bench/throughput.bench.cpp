// Throughput across two pinned processes, every transport in the same run:
//   memcpy         single-thread memcpy of the same messages (the copy floor)
//   circbuf        writer flat out for --seconds; delivered messages and bytes
//                  per second, and the fraction lost to overwrites
//   kernel, peers  the same flat-out run (these block the sender when full:
//                  consume semantics with back-pressure, nothing is lost)
//   writer-rate    the circbuf writer's own rate with 0, 1 .. cores-1 readers
//   lap            a flat-out writer and one reader that falls behind, for
//                  each lap policy (ReaderOptions::on_lap) at 64 B and 1 KiB:
//                  how often Read ends in kLapped, delivered rate and loss
//   paced          delivered rate with nothing lost, circbuf and the copy floor
//                  (support/copy_floor.hpp) back to back at each size, both
//                  paced the same way (support/paced.hpp): the writer stays
//                  within half the capacity of the reader's acknowledgement
// Flags: --cpus=A,B (default 0,1), --seconds=S (default 1), --capacity=BYTES of
// the circbuf rings (default 4 MiB), --huge-pages=no|prefer|require for them
// (bench/hugepages.sh), Google Benchmark's own.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/copy_floor.hpp"
#include "support/harness.hpp"
#include "support/paced.hpp"
#include "support/peers.hpp"
#include "support/transports.hpp"

namespace cbb = circbuf::bench;
namespace cb = circbuf::CircularBuffer;

namespace {

std::chrono::milliseconds g_duration{1000};
std::uint64_t g_capacity = 4 << 20;

// memcpy of `size`-byte messages taken in turn from a 4 MiB source (the
// ring's size: beyond L2, as the ring's data is for a reader on another core).
void Memcpy(benchmark::State& state) {
  auto const size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> src(g_capacity, std::byte{7});
  std::vector<std::byte> dst(65536);
  std::size_t offset = 0;
  for (auto _ : state) {
    if (offset + size > src.size()) offset = 0;
    std::memcpy(dst.data(), src.data() + offset, size);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
    offset += (size + 7) & ~std::size_t{7};
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
  state.counters["GB_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * size) / 1e9, benchmark::Counter::kIsRate);
}

void Register(std::string const& name, std::function<cbb::Transport()> make, std::size_t payload) {
  benchmark::RegisterBenchmark(("throughput/" + name + "/" + std::to_string(payload)).c_str(),
                               [make = std::move(make), payload](benchmark::State& state) {
                                 cbb::Transport const t = make();
                                 if (!t.make_main) {
                                   state.SkipWithError("transport unavailable on this machine");
                                   return;
                                 }
                                 cbb::RunThroughput(state, t, payload, g_duration);
                               })
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// paced/copy-floor/SIZE and paced/circbuf/SIZE, registered back to back:
// rings of the same capacity, the same pacing, the same loops.
void RegisterPaced(std::size_t payload) {
  auto const size = std::to_string(payload);
  benchmark::RegisterBenchmark(("paced/copy-floor/" + size).c_str(),
                               [payload](benchmark::State& state) {
                                 cbb::FloorRing const ring(g_capacity);
                                 cbb::RunPaced(
                                     state, [&] { return std::make_unique<cbb::FloorSender>(ring); },
                                     [&] { return std::make_unique<cbb::FloorReceiver>(ring); }, [] {}, ring.Capacity(),
                                     payload, g_duration);
                               })
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("paced/circbuf/" + size).c_str(),
                               [payload](benchmark::State& state) {
                                 auto const spec = cb::Spec::Make(cbb::UniqueName("p"), g_capacity);
                                 cbb::RunPaced(
                                     state, [&] { return std::make_unique<cbb::RingSender>(spec); },
                                     [&] { return std::make_unique<cbb::RingReceiver>(spec); },
                                     [&] { (void)circbuf::CircularBuffer::Remove(spec.Name(), /*force=*/true); },
                                     spec.capacity, payload, g_duration);
                               })
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// lap/circbuf/SIZE/POLICY: the writer flat out for --seconds, one reader
// (kNext, on_lap = POLICY) looping Read. Counters: reads_per_s (Read
// returns other than kEmpty), lapped_per_s, lapped_fraction (kLapped of
// those returns), delivered_msgs_per_s, lost_fraction (Lost / (Delivered +
// Lost) at the end), writer_msgs_per_s, is_default (1 where POLICY is
// ReaderOptions{}.on_lap). A kCorrupt return fails the run.
struct LapShared {
  std::atomic<std::uint64_t> reads{0};
  std::atomic<std::uint64_t> lapped{0};
  std::atomic<std::uint64_t> corrupt{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> lost{0};
  std::atomic<int> attached{0};
  std::atomic<int> stop{0};
};

void Lap(benchmark::State& state, std::size_t payload, cb::OnLap policy) {
  auto const spec = cb::Spec::Make(cbb::UniqueName("l"), g_capacity);
  std::uint64_t reads = 0;
  std::uint64_t lapped = 0;
  std::uint64_t corrupt = 0;
  std::uint64_t delivered = 0;
  std::uint64_t lost = 0;
  std::uint64_t written = 0;
  double seconds = 0;
  for (auto _ : state) {
    auto* r = cbb::MapShared<LapShared>();
    {
      cb::Writer writer(spec, cbb::g_writer_options);
      cbb::Process reader_process(cbb::g_cpus.echo, [&] {
        cb::Reader reader(cb::Spec::Make(spec.Name(), 0), {.start = cb::StartAt::kNext, .on_lap = policy});
        std::vector<std::byte> buf(65536);
        r->attached.store(1);
        std::uint64_t n_reads = 0;
        std::uint64_t n_lapped = 0;
        std::uint64_t n_corrupt = 0;
        while (r->stop.load(std::memory_order_relaxed) == 0) {
          int const n = reader.Read(buf);
          if (n == cb::kEmpty) continue;
          ++n_reads;
          n_lapped += n == cb::kLapped ? 1 : 0;
          n_corrupt += n < 0 && n != cb::kLapped ? 1 : 0;
        }
        r->reads = n_reads;
        r->lapped = n_lapped;
        r->corrupt = n_corrupt;
        r->delivered = reader.Delivered();
        r->lost = reader.Lost();
        return 0;
      });
      while (r->attached.load() == 0) std::this_thread::yield();
      cbb::Pin(cbb::g_cpus.main);
      std::vector<std::byte> msg(payload, std::byte{1});
      auto const start = std::chrono::steady_clock::now();
      auto const end = start + g_duration;
      std::uint64_t n = 0;
      do {
        for (int i = 0; i < 64; ++i) writer.Write(msg);
        n += 64;
      } while (std::chrono::steady_clock::now() < end);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      written += n;
      r->stop.store(1);
      reader_process.Wait();
    }
    (void)circbuf::CircularBuffer::Remove(spec.Name(), /*force=*/true);
    reads += r->reads;
    lapped += r->lapped;
    corrupt += r->corrupt;
    delivered += r->delivered;
    lost += r->lost;
    cbb::Unmap(r);
  }
  if (corrupt != 0) state.SkipWithError("Read returned kCorrupt (or another error) under a healthy writer");
  auto const per_s = [&](std::uint64_t v) { return static_cast<double>(v) / seconds; };
  state.counters["reads_per_s"] = per_s(reads);
  state.counters["lapped_per_s"] = per_s(lapped);
  state.counters["lapped_fraction"] = reads == 0 ? 0.0 : static_cast<double>(lapped) / static_cast<double>(reads);
  state.counters["delivered_msgs_per_s"] = per_s(delivered);
  state.counters["lost_fraction"] =
      delivered + lost == 0 ? 0.0 : static_cast<double>(lost) / static_cast<double>(delivered + lost);
  state.counters["writer_msgs_per_s"] = per_s(written);
  state.counters["is_default"] = policy == cb::ReaderOptions{}.on_lap ? 1 : 0;
}

// The writer's own rate for 64-byte messages with `readers` reader processes
// attached and reading flat out (reader i pinned to CPU 1 + i).
void WriterRate(benchmark::State& state) {
  auto const readers = static_cast<int>(state.range(0));
  auto const spec = cb::Spec::Make(cbb::UniqueName("w"), g_capacity);
  std::uint64_t written = 0;
  double seconds = 0;
  std::size_t huge_bytes = 0;
  for (auto _ : state) {
    auto* stop = cbb::MapShared<std::atomic<int>>();
    auto* attached = cbb::MapShared<std::atomic<int>>();
    std::vector<std::unique_ptr<cbb::Process>> procs;
    {
      cb::Writer writer(spec, cbb::g_writer_options);
      huge_bytes = writer.HugePageBytes();
      for (int i = 0; i < readers; ++i) {
        procs.push_back(std::make_unique<cbb::Process>(cbb::g_cpus.echo + i, [&] {
          cb::Reader reader(cb::Spec::Make(spec.Name(), 0), {.start = cb::StartAt::kNext});
          attached->fetch_add(1);
          std::vector<std::byte> buf(65536);
          std::uint64_t got = 0;
          while (stop->load(std::memory_order_relaxed) == 0) got += reader.Read(buf) > 0 ? 1 : 0;
          benchmark::DoNotOptimize(got);
          return 0;
        }));
      }
      while (attached->load() < readers) std::this_thread::yield();
      cbb::Pin(cbb::g_cpus.main);
      std::vector<std::byte> msg(64, std::byte{1});
      auto const start = std::chrono::steady_clock::now();
      auto const end = start + g_duration;
      std::uint64_t n = 0;
      do {
        for (int i = 0; i < 256; ++i) writer.Write(msg);
        n += 256;
      } while (std::chrono::steady_clock::now() < end);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      written += n;
      stop->store(1);
      for (auto& p : procs) p->Wait();
    }
    cbb::Unmap(stop);
    cbb::Unmap(attached);
  }
  state.counters["writer_msgs_per_s"] = static_cast<double>(written) / seconds;
  state.counters["readers"] = readers;
  state.counters["cores"] = cbb::CpuCount();
  state.counters["huge_page_MiB"] = static_cast<double>(huge_bytes) / (1024.0 * 1024.0);
}

}  // namespace

int main(int argc, char** argv) {
  cbb::ParseCpus(argc, argv);
  cbb::ParseHugePages(argc, argv);
  cbb::TakeFlag(argc, argv, "--capacity=", [](char const* v) { g_capacity = std::strtoull(v, nullptr, 10); });
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const* v) {
    g_duration = std::chrono::milliseconds(static_cast<long>(std::atof(v) * 1000));
  });
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const*) {});  // the latency binary's
  for (std::size_t payload : {8, 64, 73, 1024, 65535}) {
    benchmark::RegisterBenchmark(("throughput/memcpy/" + std::to_string(payload)).c_str(), Memcpy)
        ->Arg(static_cast<std::int64_t>(payload));
    Register("circbuf", [] { return cbb::RingOneWay(g_capacity); }, payload);
    Register("pipe", [] { return cbb::PipeTransport(false); }, payload);
    Register("unix-socket", [] { return cbb::UnixSocketTransport(false); }, payload);
    Register("posix-mq", [payload] { return cbb::MqTransport(false, payload); }, payload);
    for (auto const& peer : cbb::Peers(payload)) Register(peer.name, peer.make, payload);
  }
  for (std::size_t payload : {8, 64, 73, 1024, 65535}) RegisterPaced(payload);
  for (std::size_t payload : {64, 1024}) {
    for (auto const& [policy, name] :
         {std::pair{cb::OnLap::kOldest, "oldest"}, std::pair{cb::OnLap::kHeadroom, "headroom"},
          std::pair{cb::OnLap::kLatest, "latest"}}) {
      benchmark::RegisterBenchmark(("lap/circbuf/" + std::to_string(payload) + "/" + name).c_str(), Lap, payload,
                                   policy)
          ->Iterations(1)
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  // Reader scaling: 0, 1, and up to cores - 1 readers (one core for the writer).
  int const cores = cbb::CpuCount();
  auto* scaling = benchmark::RegisterBenchmark("writer-rate/circbuf/64", WriterRate);
  for (int r = 0; r <= std::max(1, cores - 1); r = r < 2 ? r + 1 : r * 2) scaling->Arg(r);
  if (cores - 1 > 2) scaling->Arg(cores - 1);
  scaling->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  cbb::StopPeers();
  return 0;
}
