// Cross-process round trips, one-way latency = round trip / 2.
//   BM_CacheLineRoundTrip  the floor: two processes bounce one cache line
//   BM_RingRoundTrip/N     ping over ring A, pong over ring B, N-byte payload
// Both processes are pinned: --cpus=W,R (default 0,1) picks the CPUs of the
// measuring process and of the echo process.
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace {

int g_cpu_main = 0;
int g_cpu_echo = 1;

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ::sched_setaffinity(0, sizeof set, &set);  // best effort: a missing CPU leaves the process unpinned
}

struct alignas(128) Line {
  std::atomic<std::uint64_t> value;
};

void BM_CacheLineRoundTrip(benchmark::State& state) {
  void* mem = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* ping = new (mem) Line{};
  auto* pong = new (static_cast<char*>(mem) + 128) Line{};
  pid_t const child = ::fork();
  if (child == 0) {
    Pin(g_cpu_echo);
    for (std::uint64_t expect = 1;; ++expect) {
      std::uint64_t v;
      while ((v = ping->value.load(std::memory_order_acquire)) < expect) {
      }
      if (v == ~std::uint64_t{0}) ::_exit(0);
      pong->value.store(v, std::memory_order_release);
    }
  }
  Pin(g_cpu_main);
  std::uint64_t n = 0;
  for (auto _ : state) {
    ping->value.store(++n, std::memory_order_release);
    while (pong->value.load(std::memory_order_acquire) != n) {
    }
  }
  ping->value.store(~std::uint64_t{0}, std::memory_order_release);
  ::waitpid(child, nullptr, 0);
  ::munmap(mem, 4096);
  state.counters["one_way_ns"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2, benchmark::Counter::kIsRate |
                                                                          benchmark::Counter::kInvert);
}

void BM_RingRoundTrip(benchmark::State& state) {
  auto const size = static_cast<std::size_t>(state.range(0));
  std::string const base = "/circbuf-bench-" + std::to_string(::getpid());
  auto const spec_a = cb::Spec::Make(base + "-a", 1 << 20);
  auto const spec_b = cb::Spec::Make(base + "-b", 1 << 20);
  cb::Writer ping(spec_a);
  int ready[2];
  if (::pipe(ready) != 0) std::abort();
  pid_t const child = ::fork();
  if (child == 0) {
    Pin(g_cpu_echo);
    {
      cb::Writer pong(spec_b);
      cb::Reader in(spec_a, {.start = cb::StartAt::kNext});
      char c = '.';
      (void)!::write(ready[1], &c, 1);
      std::vector<std::byte> buf(65535);
      for (;;) {
        int const n = in.Read(buf);
        if (n <= 0) continue;
        if (n == 1) break;  // stop
        pong.Write(std::span(buf.data(), static_cast<std::size_t>(n)));
      }
    }
    ::_exit(0);
  }
  char c = 0;
  (void)!::read(ready[0], &c, 1);
  Pin(g_cpu_main);
  {
    cb::Reader back(spec_b, {.start = cb::StartAt::kNext});
    std::vector<std::byte> out(size, std::byte{1});
    std::vector<std::byte> in(65535);
    for (auto _ : state) {
      ping.Write(out);
      while (back.Read(in) <= 0) {
      }
    }
    ping.Write(std::span(out.data(), 1));
    ::waitpid(child, nullptr, 0);
  }
  ::close(ready[0]);
  ::close(ready[1]);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size * 2));
  state.counters["one_way_ns"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 2, benchmark::Counter::kIsRate |
                                                                          benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK(BM_CacheLineRoundTrip)->UseRealTime();
BENCHMARK(BM_RingRoundTrip)->Arg(8)->Arg(64)->Arg(1024)->UseRealTime();

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    std::string_view const a = argv[i];
    if (a.starts_with("--cpus=")) {
      std::sscanf(argv[i] + 7, "%d,%d", &g_cpu_main, &g_cpu_echo);
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
