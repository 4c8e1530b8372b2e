// circbuf bench: a quick cross-process run, two processes pinned to two CPUs.
//   floor       cache-line ping-pong: two atomics in shared memory, the
//               fastest any cross-process hand-off can be on this machine
//   circbuf N B round trips through two rings (ping, pong) of N-byte messages
//   throughput  one writer flat out, one reader as fast as it can; the loss
//               fraction is what the writer overwrote before the reader got it
// Latency is one-way = RTT / 2, from a histogram of --iterations round trips,
// timed with CLOCK_MONOTONIC (its ~20 ns cost is inside every RTT). The full
// suite with peers is bench/ (Google Benchmark, bench presets).
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench.hpp"
#include "cli.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

struct BenchOptions {
  std::uint64_t iterations = 200'000;
  double seconds = 1.0;
  std::vector<int> cpus = {0, 1};
  std::string plot;
} g_bench;

struct alignas(128) Line {
  std::atomic<std::uint64_t> value;
};

struct Shared {  // anonymous shared memory between the two processes
  Line ping, pong;
  std::atomic<int> ready;
  std::atomic<int> abort;
  std::atomic<std::uint64_t> total;  // throughput: messages written + 1 when done
  std::atomic<std::uint64_t> delivered, lost;
};

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() (yielding now and then, so two spinners on one CPU still
// make progress); false if stopped.
template <class Done>
bool SpinUntil(Shared const& shared, Done done) {  // done: a small lambda, by value
  for (std::uint64_t spins = 1; !done(); ++spins) {
    Pause();
    if ((spins & 0xfff) == 0) {
      if (StopRequested() || shared.abort.load(std::memory_order_relaxed) != 0) return false;
      if ((spins & 0xffff) == 0) ::sched_yield();
    }
  }
  return true;
}

bool Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(0, sizeof set, &set) == 0;
}

class ProgressBar {
 public:
  explicit ProgressBar(std::string label) : label_(std::move(label)), tty_(IsTerminal(STDERR_FILENO)) {}
  void Update(double fraction) {
    if (!tty_) return;
    int const filled = static_cast<int>(fraction * 30);
    std::fprintf(stderr, "\r[%-30s] %3d%%  %-38s", std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 static_cast<int>(fraction * 100), label_.c_str());
  }
  ~ProgressBar() {
    if (tty_) std::fprintf(stderr, "\r%79s\r", "");
  }
  ProgressBar(ProgressBar const&) = delete;
  ProgressBar& operator=(ProgressBar const&) = delete;

 private:
  std::string label_;
  bool tty_;
};

// Runs child() in a forked process pinned to the second CPU; parent() here.
// Returns false if interrupted or the child failed.
bool RunPair(Shared& shared, std::function<void()> const& child, std::function<bool()> const& parent) {
  shared.ready.store(0);
  shared.abort.store(0);
  std::fflush(nullptr);
  pid_t const pid = ::fork();
  if (pid < 0) throw Error(kSystem, std::string("fork: ") + ErrnoText(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int code = 0;
    try {
      (void)Pin(g_bench.cpus[1]);
      child();
    } catch (std::exception const& e) {
      std::fprintf(stderr, "circbuf bench: child: %s\n", e.what());
      shared.abort.store(1);
      code = 1;
    }
    ::_exit(code);
  }
  bool ok = false;
  try {
    ok = parent();
  } catch (...) {
    shared.abort.store(1);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw;
  }
  if (!ok) {
    shared.abort.store(1);
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool Floor(Shared& shared, Histogram& histogram) {
  std::uint64_t const n = g_bench.iterations;
  shared.ping.value.store(0);
  shared.pong.value.store(0);
  ProgressBar bar("cache-line ping-pong (floor)");
  return RunPair(
      shared,
      [&] {
        for (std::uint64_t i = 1; i <= n; ++i) {
          if (!SpinUntil(shared, [&] { return shared.ping.value.load(std::memory_order_acquire) == i; })) return;
          shared.pong.value.store(i, std::memory_order_release);
        }
      },
      [&] {
        for (std::uint64_t i = 1; i <= n; ++i) {
          std::uint64_t const t0 = NowNs();
          shared.ping.value.store(i, std::memory_order_release);
          if (!SpinUntil(shared, [&] { return shared.pong.value.load(std::memory_order_acquire) == i; })) return false;
          histogram.Add(NowNs() - t0);
          if (i % 4096 == 0) bar.Update(static_cast<double>(i) / static_cast<double>(n));
        }
        return true;
      });
}

bool RoundTrips(Shared& shared, std::string const& base, std::size_t size, Histogram& histogram) {
  std::uint64_t const n = g_bench.iterations;
  auto const ping = cb::Spec::Make(base + "-ping", 1U << 20);
  auto const pong = cb::Spec::Make(base + "-pong", 1U << 20);
  ProgressBar bar("circbuf round trips, " + std::to_string(size) + " B");
  cb::Writer out(ping);
  return RunPair(
      shared,
      [&] {
        cb::Reader in(ping, {.start = cb::StartAt::kOldest});
        cb::Writer back(pong);
        shared.ready.store(1);
        std::vector<std::byte> buf(size);
        for (std::uint64_t i = 0; i < n; ++i) {
          int got = 0;
          if (!SpinUntil(shared, [&] { return (got = in.Read(buf)) != cb::kEmpty; })) return;
          if (got < 0) throw Error(kCheckFailed, "ping ring: read outcome " + std::to_string(got));
          back.Write(std::span(buf.data(), static_cast<std::size_t>(got)));
        }
      },
      [&] {
        if (!SpinUntil(shared, [&] { return shared.ready.load() != 0; })) return false;
        cb::Reader in(pong, {.start = cb::StartAt::kOldest});
        std::vector<std::byte> msg(size, std::byte{0x5a});
        std::vector<std::byte> buf(size);
        for (std::uint64_t i = 0; i < n; ++i) {
          std::uint64_t const t0 = NowNs();
          out.Write(msg);
          int got = 0;
          if (!SpinUntil(shared, [&] { return (got = in.Read(buf)) != cb::kEmpty; })) return false;
          histogram.Add(NowNs() - t0);
          if (got != static_cast<int>(size))
            throw Error(kCheckFailed, "pong ring: read outcome " + std::to_string(got));
          if (i % 4096 == 0) bar.Update(static_cast<double>(i) / static_cast<double>(n));
        }
        return true;
      });
}

struct Throughput {
  std::size_t size = 0;
  std::uint64_t written = 0, delivered = 0, lost = 0;
  double seconds = 0;
};

bool FlatOut(Shared& shared, std::string const& name, Throughput& t) {
  auto const spec = cb::Spec::Make(name, 8U << 20);
  ProgressBar bar("throughput, " + std::to_string(t.size) + " B messages");
  cb::Writer writer(spec);
  shared.total.store(0);
  return RunPair(
      shared,
      [&] {
        cb::Reader in(spec, {.start = cb::StartAt::kOldest});
        shared.ready.store(1);
        std::vector<std::byte> buf(t.size);
        for (;;) {
          int const got = in.Read(buf);
          if (got == cb::kEmpty) {
            std::uint64_t const total = shared.total.load(std::memory_order_acquire);
            if (total != 0 && in.Delivered() + in.Lost() + 1 >= total) break;
            if (shared.abort.load(std::memory_order_relaxed) != 0 || StopRequested()) break;
            Pause();
          } else if (got < 0 && got != cb::kLapped) {
            throw Error(kCheckFailed, "throughput ring: read outcome " + std::to_string(got));
          }
        }
        shared.delivered.store(in.Delivered());
        shared.lost.store(in.Lost());
      },
      [&] {
        if (!SpinUntil(shared, [&] { return shared.ready.load() != 0; })) return false;
        std::vector<std::byte> msg(t.size, std::byte{0xa5});
        std::uint64_t const start = NowNs();
        std::uint64_t const end = start + static_cast<std::uint64_t>(g_bench.seconds * 1e9);
        std::uint64_t now = start;
        while (now < end && !StopRequested()) {
          for (int k = 0; k < 64; ++k) writer.Write(msg);
          t.written += 64;
          now = NowNs();
          if (t.written % 65536 == 0) bar.Update(static_cast<double>(now - start) / static_cast<double>(end - start));
        }
        t.seconds = static_cast<double>(now - start) / 1e9;
        shared.total.store(t.written + 1, std::memory_order_release);
        return !StopRequested();
      });
}

int RunBench() {
  if (g_bench.cpus.size() != 2) throw Error(kInvalid, "--cpus takes two CPU numbers, e.g. 0,1");
  bool const plot = !g_bench.plot.empty();
  std::string const python = plot ? PlottingPython() : "";
  if (plot && python.empty()) {
    std::fprintf(stderr, "circbuf bench: plotting is unavailable (python3 with matplotlib not found); "
                         "no plot will be written\n");
  }
  InstallStopHandlers();
  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw Error(kSystem, std::string("mmap: ") + ErrnoText(errno));
  auto* shared = new (mem) Shared{};
  bool const pinned = Pin(g_bench.cpus[0]);
  if (!pinned) std::fprintf(stderr, "circbuf bench: cannot pin to CPU %d; running unpinned\n", g_bench.cpus[0]);
  std::string const base = "/circbuf-bench-" + std::to_string(::getpid());
  std::vector<LatencyResult> latency;
  std::vector<Throughput> throughput;
  bool ok = true;
  try {
    latency.push_back({"cache-line floor"});
    ok = Floor(*shared, *latency.back().histogram);
    for (std::size_t const size : {8, 64, 1024}) {
      if (!ok) break;
      latency.push_back({"circbuf " + std::to_string(size) + " B"});
      ok = RoundTrips(*shared, base, size, *latency.back().histogram);
    }
    for (std::size_t const size : {std::size_t{64}, cb::kMaxMessageSize}) {
      if (!ok) break;
      throughput.push_back({.size = size});
      ok = FlatOut(*shared, base + "-tput", throughput.back());
      throughput.back().delivered = shared->delivered.load();
      throughput.back().lost = shared->lost.load();
    }
  } catch (...) {
    for (char const* suffix : {"-ping", "-pong", "-tput"}) {
      SharedMemory::Remove(base + suffix);
      SharedMemory::Remove(base + circbuf::CircularBuffer::DataSegmentName(suffix));
    }
    throw;
  }
  for (char const* suffix : {"-ping", "-pong", "-tput"}) {  // gone already unless a child was killed
    SharedMemory::Remove(base + suffix);
    SharedMemory::Remove(base + circbuf::CircularBuffer::DataSegmentName(suffix));
  }
  if (StopRequested()) {
    std::printf("circbuf bench: interrupted\n");
    return kInterrupted;
  }
  if (!ok) throw Error(kCheckFailed, "a benchmark process failed");
  std::printf("circbuf bench: %llu round trips per test, CPUs %d and %d%s, %u CPUs online\n\n",
              static_cast<unsigned long long>(g_bench.iterations), g_bench.cpus[0], g_bench.cpus[1],
              pinned ? "" : " (unpinned)", std::thread::hardware_concurrency());
  Table lat({{"LATENCY (one-way)"}, {"P50", true}, {"P99", true}, {"MAX", true}, {"P50/FLOOR", true}});
  double const floor = static_cast<double>(latency.front().histogram->Quantile(0.5)) / 2;
  for (auto const& r : latency) {
    double const p50 = static_cast<double>(r.histogram->Quantile(0.5)) / 2;
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2fx", floor > 0 ? p50 / floor : 0.0);
    lat.Add({r.name, HumanNs(p50), HumanNs(static_cast<double>(r.histogram->Quantile(0.99)) / 2),
             HumanNs(static_cast<double>(r.histogram->Max()) / 2), ratio});
  }
  lat.Print(2);
  std::printf("\n");
  Table tput({{"THROUGHPUT"}, {"WRITTEN/S", true}, {"BYTES/S", true}, {"READ/S", true}, {"LOSS", true}});
  for (auto const& t : throughput) {
    double const s = t.seconds > 0 ? t.seconds : 1;
    char loss[32];
    std::snprintf(loss, sizeof loss, "%.2f %%",
                  t.written != 0 ? 100.0 * static_cast<double>(t.lost) / static_cast<double>(t.written) : 0.0);
    tput.Add({std::to_string(t.size) + " B messages", HumanCount(static_cast<double>(t.written) / s),
              HumanBytes(static_cast<double>(t.written * t.size) / s) + "/s",
              HumanCount(static_cast<double>(t.delivered) / s), loss});
  }
  tput.Print(2);
  std::printf("\n  (RTT / 2, clock reads included; the machine's other load shows in P99 and MAX)\n");
  if (!python.empty()) {
    Plot(python, latency, g_bench.plot);
    std::printf("  plot: %s\n", g_bench.plot.c_str());
  }
  ::munmap(mem, sizeof(Shared));
  return kOk;
}

}  // namespace

Command AddBench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "Cross-process latency and throughput");
  sub->add_option("-n,--iterations", g_bench.iterations, "Round trips per latency test")
      ->check(CLI::Range(std::uint64_t{100}, std::uint64_t{100'000'000}));
  sub->add_option("-s,--seconds", g_bench.seconds, "Seconds per throughput run")->check(CLI::Range(0.05, 600.0));
  sub->add_option("--cpus", g_bench.cpus, "The two CPUs to pin the two processes to")->delimiter(',')->expected(2);
  sub->add_option("--plot", g_bench.plot,
                  "Also draw one-way latency by percentile into FILE.png (python3 + "
                  "matplotlib)");
  return {sub, RunBench};
}

}  // namespace circbuf::tool
