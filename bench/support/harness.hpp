// Benchmark harness: every transport is measured the same way, across two
// pinned processes.
//   RunRoundTrips  ping-pong; each round trip timed with the TSC into a
//                  histogram; reported as one-way = round trip / 2
//   RunThroughput  the sender flat out for a fixed time; reported as messages
//                  and bytes per second delivered to the receiver, and loss
// A transport is two Endpoint factories, called in the two processes after
// fork. Stop protocol: a 1-byte message (payloads are >= 8 bytes).
#pragma once

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "support/syscall_audit.hpp"

namespace circbuf::bench {

// ---- CPUs ---------------------------------------------------------------------

struct Cpus {
  int main = 0;  // the measuring process (ping sender, or the writer)
  int echo = 1;  // the other process (echo, or the reader)
};
inline Cpus g_cpus;

// Removes every argument that starts with `prefix` from argv and calls
// take(value) with the text after it (so Google Benchmark never sees it).
// `take` is a small lambda, taken by value.
template <class Take>
void TakeFlag(int& argc, char** argv, std::string_view prefix, Take take) {
  int out = 0;
  for (int i = 0; i < argc; ++i) {
    std::string_view const a = argv[i];
    if (a.starts_with(prefix)) {
      take(argv[i] + prefix.size());
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
}

// Removes --cpus=A,B from argv (before benchmark::Initialize sees it).
inline void ParseCpus(int& argc, char** argv) {
  TakeFlag(argc, argv, "--cpus=", [](char const* v) { std::sscanf(v, "%d,%d", &g_cpus.main, &g_cpus.echo); });
}

// CPUs online. Not this process's affinity mask: after Pin, a forked child
// inherits a one-CPU mask, which must not shrink the choice for the next Pin.
inline int CpuCount() { return static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)); }

inline void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % CpuCount(), &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) std::perror("sched_setaffinity");
}

// ---- Time ---------------------------------------------------------------------

inline std::uint64_t Ticks() {
  unsigned aux = 0;
  return __rdtscp(&aux);
}

// Nanoseconds per TSC tick, calibrated once against steady_clock.
inline double NsPerTick() {
  static double const ns_per_tick = [] {
    auto const t0 = std::chrono::steady_clock::now();
    std::uint64_t const c0 = Ticks();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::uint64_t const c1 = Ticks();
    auto const t1 = std::chrono::steady_clock::now();
    return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()) /
           static_cast<double>(c1 - c0);
  }();
  return ns_per_tick;
}

// ---- Histogram ----------------------------------------------------------------

// Log-linear histogram of nanoseconds: exact below 1024 ns, then 64 buckets per
// power of two (error < 1.6 %), up to about 1100 s.
class Histogram {
 public:
  void Add(std::uint64_t ns) {
    ++counts_[Bucket(ns)];
    ++count_;
    max_ = std::max(max_, ns);
  }
  [[nodiscard]] std::uint64_t Count() const { return count_; }
  [[nodiscard]] std::uint64_t Max() const { return max_; }
  // Smallest value v such that at least p (0..1) of the samples are <= v.
  [[nodiscard]] std::uint64_t Percentile(double p) const {
    auto const want = static_cast<std::uint64_t>(std::ceil(p * static_cast<double>(count_)));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= want && seen > 0) return std::min(Upper(b), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSub = 6;  // 64 sub-buckets per octave
  static std::size_t Bucket(std::uint64_t v) {
    if (v < 1024) return static_cast<std::size_t>(v);
    int const octave = 63 - __builtin_clzll(v);  // >= 10
    auto const sub = static_cast<std::size_t>((v >> (octave - kSub)) & ((1U << kSub) - 1));
    return 1024 + static_cast<std::size_t>(octave - 10) * (1U << kSub) + sub;
  }
  static std::uint64_t Upper(std::size_t b) {
    if (b < 1024) return b;
    std::size_t const octave = 10 + (b - 1024) / (1U << kSub);
    std::size_t const sub = (b - 1024) % (1U << kSub);
    return ((std::uint64_t{1} << kSub) + sub + 1) << (octave - kSub);
  }
  std::vector<std::uint64_t> counts_ = std::vector<std::uint64_t>(1024 + 31 * 64, 0);
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

// One-way percentiles (round trip / 2) as benchmark counters.
inline void ReportOneWay(benchmark::State& state, Histogram const& rtt) {
  auto half = [&](double p) { return static_cast<double>(rtt.Percentile(p)) / 2.0; };
  state.counters["p50_ns"] = half(0.50);
  state.counters["p90_ns"] = half(0.90);
  state.counters["p99_ns"] = half(0.99);
  state.counters["p999_ns"] = half(0.999);
  state.counters["max_ns"] = static_cast<double>(rtt.Max()) / 2.0;
  state.counters["round_trips"] = static_cast<double>(rtt.Count());
}

// ---- Processes and shared results -----------------------------------------------

template <class T>
T* MapShared() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  return new (p) T{};
}
template <class T>
void Unmap(T* p) {
  ::munmap(p, sizeof(T));
}

// A forked child pinned to `cpu`; SIGKILLed if still running when destroyed.
class Process {
 public:
  Process(int cpu, std::function<int()> const& body) : parent_(::getpid()), pid_(FlushAndFork()) {
    if (pid_ == 0) RunChild(cpu, body);
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Process(Process const&) = delete;
  Process& operator=(Process const&) = delete;
  int Wait() {
    if (pid_ < 0) return status_;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return status_;
  }
  // True once the child has ended (reaped here; Wait then returns its code).
  bool Exited() {
    if (pid_ < 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return true;
  }

 private:
  // Buffered output is flushed first, so that the child does not print it again.
  static pid_t FlushAndFork() {
    std::fflush(nullptr);
    return ::fork();
  }
  [[noreturn]] void RunChild(int cpu, std::function<int()> const& body) const {
    // A benchmark killed mid-run must not leave a child spinning forever.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent_) ::_exit(91);
    Pin(cpu);
    int code = 90;
    try {
      code = body();
    } catch (std::exception const& e) {
      std::fprintf(stderr, "bench child: %s\n", e.what());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }

  pid_t parent_;  // the process that made this one (before pid_: initialised first)
  pid_t pid_;
  int status_ = 0;  // the exit code, once reaped
};

// Waits until `count` reaches `want` while every process of `procs` runs;
// false if one of them ended first (a reader that could not attach: its
// error is on stderr) or nothing happened for `limit`.
template <class Count>
bool WaitUntilAttached(Count const& count, int want, std::vector<std::unique_ptr<Process>>& procs,
                       std::chrono::seconds limit = std::chrono::seconds(120)) {
  auto const deadline = std::chrono::steady_clock::now() + limit;
  while (count.load() < want) {
    for (auto& p : procs) {
      if (p->Exited()) return false;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// ---- Hot-path audit (target: no system call, no page fault) -------------------------
// Shared with the tests: tests/support/syscall_audit.hpp.
using circbuf::audit::Audit;
using circbuf::audit::BeginAudit;
using circbuf::audit::EndAudit;

// ---- Endpoints -------------------------------------------------------------------

// One process's side of a transport.
class Endpoint {
 public:
  virtual ~Endpoint() = default;
  virtual void Send(std::span<std::byte const> message) = 0;
  // The next message into `out`; returns its size, or 0 if none arrived yet
  // (non-blocking transports). Blocking transports wait inside.
  virtual std::size_t Receive(std::span<std::byte> out) = 0;
  // Messages lost by this receiver so far (lossy transports only).
  [[nodiscard]] virtual std::uint64_t Lost() const { return 0; }
};
using Factory = std::function<std::unique_ptr<Endpoint>()>;

struct Transport {
  std::string name;
  Factory make_main;  // called in the measuring process
  Factory make_echo;  // called in the other process, after fork
  std::function<void()> cleanup = [] {};
};

inline std::size_t ReceiveSpin(Endpoint& e, std::span<std::byte> out) {
  for (;;) {
    if (std::size_t const n = e.Receive(out); n != 0) return n;
  }
}

// Ping-pong: `state`'s iterations are round trips. If `audit` is given, the
// echo process runs its loop under the hot-path audit.
inline void RunRoundTrips(benchmark::State& state, Transport const& t, std::size_t payload, Audit* audit = nullptr) {
  auto* ready = MapShared<std::atomic<int>>();
  Process echo(g_cpus.echo, [&] {
    auto ep = t.make_echo();
    std::vector<std::byte> buf(65536);
    ready->store(1);
    if (audit != nullptr) BeginAudit(*audit);
    std::uint64_t ops = 0;
    for (;;) {
      std::size_t const n = ReceiveSpin(*ep, buf);
      if (n == 1) break;
      ep->Send(std::span(buf.data(), n));
      ops += 2;
    }
    if (audit != nullptr) {
      EndAudit(*audit, ops);
      ::_exit(0);  // nothing after the audited loop may make a system call
    }
    return 0;
  });
  Pin(g_cpus.main);
  auto ep = t.make_main();
  while (ready->load() == 0) std::this_thread::yield();
  std::vector<std::byte> out(payload, std::byte{0x5a});
  std::vector<std::byte> in(65536);
  for (int i = 0; i < 1000; ++i) {  // warm up both directions
    ep->Send(out);
    ReceiveSpin(*ep, in);
  }
  Histogram rtt;
  double const ns_per_tick = NsPerTick();
  for (auto _ : state) {
    std::uint64_t const t0 = Ticks();
    ep->Send(out);
    ReceiveSpin(*ep, in);
    rtt.Add(static_cast<std::uint64_t>(static_cast<double>(Ticks() - t0) * ns_per_tick));
  }
  std::byte const stop{0};
  ep->Send(std::span(&stop, 1));
  echo.Wait();
  ep.reset();
  t.cleanup();
  Unmap(ready);
  ReportOneWay(state, rtt);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * payload * 2));
}

// Flat-out: the main process sends `payload`-byte messages for `duration`;
// the other receives. One iteration = one run. Reports delivered rate, bytes
// per second, the sender's own rate and the fraction lost.
struct ThroughputResult {
  std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> lost{0};
  std::atomic<std::uint64_t> bad{0};
  std::atomic<int> ready{0};
  std::atomic<int> stop{0};
};

inline void RunThroughput(benchmark::State& state, Transport const& t, std::size_t payload,
                          std::chrono::milliseconds duration) {
  std::uint64_t sent_total = 0;
  std::uint64_t received_total = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t lost_total = 0;
  double seconds_total = 0;
  for (auto _ : state) {
    auto* r = MapShared<ThroughputResult>();
    Process receiver(g_cpus.echo, [&] {
      auto ep = t.make_echo();
      std::vector<std::byte> buf(65536);
      r->ready.store(1);
      std::uint64_t n_msgs = 0;
      std::uint64_t n_bytes = 0;
      for (;;) {
        std::size_t const n = ep->Receive(buf);
        if (n == 1) break;
        if (n == 0) {
          if (r->stop.load(std::memory_order_relaxed) == 2) break;  // a lossy transport may lose the stop
          continue;
        }
        if (n != payload) r->bad.fetch_add(1);
        ++n_msgs;
        n_bytes += n;
      }
      r->received = n_msgs;
      r->bytes = n_bytes;
      r->lost = ep->Lost();
      return 0;
    });
    Pin(g_cpus.main);
    auto ep = t.make_main();
    while (r->ready.load() == 0) std::this_thread::yield();
    std::vector<std::byte> out(payload, std::byte{0x5a});
    std::uint64_t sent = 0;
    auto const start = std::chrono::steady_clock::now();
    auto const end = start + duration;
    while (true) {
      for (int i = 0; i < 64; ++i) ep->Send(out);
      sent += 64;
      if (std::chrono::steady_clock::now() >= end) break;
    }
    auto const elapsed = std::chrono::steady_clock::now() - start;
    std::byte const stop{0};
    ep->Send(std::span(&stop, 1));
    r->stop.store(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    r->stop.store(2);
    receiver.Wait();
    ep.reset();
    t.cleanup();
    sent_total += sent;
    received_total += r->received;
    bytes_total += r->bytes;
    lost_total += r->lost;
    seconds_total += std::chrono::duration<double>(elapsed).count();
    if (r->bad.load() != 0) state.SkipWithError("receiver got messages of the wrong size");
    Unmap(r);
  }
  state.counters["delivered_msgs_per_s"] = static_cast<double>(received_total) / seconds_total;
  state.counters["delivered_GB_per_s"] = static_cast<double>(bytes_total) / seconds_total / 1e9;
  state.counters["sent_msgs_per_s"] = static_cast<double>(sent_total) / seconds_total;
  state.counters["loss_fraction"] =
      sent_total == 0
          ? 0.0
          : static_cast<double>(sent_total - std::min(sent_total, received_total)) / static_cast<double>(sent_total);
  state.counters["lost_reported"] = static_cast<double>(lost_total);
}

}  // namespace circbuf::bench
