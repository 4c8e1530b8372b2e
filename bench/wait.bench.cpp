// Blocking readers (Reader::Wait; docs/design.md, "Blocking readers"), each
// against its floor in the same run:
//   wake/...          one 64-byte message to a process asleep in its blocking
//                     call: circbuf (Wait), the floor (FUTEX_WAIT / FUTEX_WAKE
//                     on a shared word) and a blocking pipe (read(2) / write(2)).
//                     One-way = the sleeper's TSC at its return minus the
//                     waker's TSC just before the send: the TSC is synchronised
//                     across CPUs here (constant_tsc, nonstop_tsc; the kernel's
//                     clocksource is tsc). The round trip to the waker (it
//                     spins on an acknowledgement word) is shown beside it.
//                     The waker sends 200 us after the sleeper said it is
//                     about to block and, for circbuf, once the wake word is
//                     armed: past the reader's first (settle) slice, so every
//                     sample is a wake-up from a real sleep.
//   writer-rate/...   the writer's rate, 64 B flat out: alone; after 32 readers
//                     were SIGKILLed inside Wait; with a busy-polling reader;
//                     with one and two readers that read until empty and then
//                     Wait; alone with a seq_cst fence after every Write (the
//                     writer-side alternative to the reader's settle slice);
//                     in bursts of 1024 messages 2 ms apart, alone and with
//                     256 reader processes that sleep in Wait between bursts
//                     (the rate counts the time inside bursts only).
//                     Futex wakes per second from the wake word's count.
//   audit/...         after 32 sleepers were killed, the writer's Write loop
//                     under the system-call trap (the suite's seccomp audit)
//   bystander/...     interrupts on the CPU of ring B's writer (flat out) while
//                     64 readers of ring A sleep and wake (ring A's writer
//                     publishes every 100 us), with ring A idle, and with the
//                     old protocol (a membarrier per Wait, ring B's writer
//                     registered for it)
// Kernel wake-ups on these small VMs cost more and vary more than on a
// dedicated server: read the ratios, not the absolute figures.
// Flags: --cpus=A,B (default 0,1), --round_trips=N wake samples per transport
// (default 10000; the audit writes 10 N messages), --seconds=S of each flat-out
// run (default 1), --capacity=BYTES of the rings (default 4 MiB),
// --huge-pages=no|prefer|require, and Google Benchmark's own.
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/harness.hpp"
#include "support/sleepers.hpp"
#include "support/transports.hpp"

namespace cbb = circbuf::bench;
namespace cb = circbuf::CircularBuffer;

namespace {

std::int64_t g_round_trips = 10'000;
std::chrono::milliseconds g_duration{1000};
std::uint64_t g_capacity = 4 << 20;

using Clock = std::chrono::steady_clock;

void RemoveRing(std::string const& name) { (void)circbuf::CircularBuffer::Remove(name, /*force=*/true); }

void SpinFor(std::chrono::nanoseconds d) {
  auto const end = Clock::now() + d;
  while (Clock::now() < end) {
  }
}

// ---- Wake latency -----------------------------------------------------------------

struct alignas(128) Slot {
  std::atomic<std::uint64_t> value{0};
};
struct WakeShared {
  Slot about;     // i: the sleeper is about to block for sample i
  Slot returned;  // TSC at the sleeper's return for the latest sample
  Slot ack;       // i: `returned` holds sample i's
  Slot futex;     // the floor's futex word
  std::atomic<int> stop{0};
};

class Sleeper {
 public:
  virtual ~Sleeper() = default;
  // Blocks until woken by the event; false if the other side went away.
  virtual bool Block() = 0;
  virtual void Consume() {}
};
class Waker {
 public:
  virtual ~Waker() = default;
  virtual void Wake() = 0;
  // False while the sleeper has visibly not gone to sleep yet (circbuf: the
  // wake word is not armed).
  [[nodiscard]] virtual bool Asleep() const { return true; }
  [[nodiscard]] virtual std::uint32_t WakeCount() const { return 0; }
};
struct WakeTransport {
  std::function<std::unique_ptr<Waker>()> make_waker;      // in the measuring process
  std::function<std::unique_ptr<Sleeper>()> make_sleeper;  // in the other one, after fork
  std::function<void()> cleanup = [] {};
};

long Futex(std::atomic<std::uint64_t>& word, int op, std::uint32_t value) {
  // The low 32 bits of the word (x86-64 is little-endian).
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, value, nullptr, nullptr, 0);
}

WakeTransport FutexFloor(WakeShared* shared) {
  struct W final : Waker {
    explicit W(WakeShared* shared_in) : s(shared_in) {}
    void Wake() override {
      s->futex.value.store(++n, std::memory_order_release);
      Futex(s->futex.value, FUTEX_WAKE, 1);
    }
    WakeShared* s;
    std::uint32_t n = 0;
  };
  struct S final : Sleeper {
    explicit S(WakeShared* shared_in) : s(shared_in) {}
    bool Block() override {
      std::uint64_t v = 0;
      while ((v = s->futex.value.load(std::memory_order_acquire)) == seen) {
        Futex(s->futex.value, FUTEX_WAIT, static_cast<std::uint32_t>(seen));
      }
      seen = v;
      return true;
    }
    WakeShared* s;
    std::uint64_t seen = 0;
  };
  return {[shared] { return std::make_unique<W>(shared); }, [shared] { return std::make_unique<S>(shared); }};
}

WakeTransport BlockingPipe() {
  auto fds = std::make_shared<std::array<int, 2>>();
  if (::pipe(fds->data()) != 0) return {};
  struct W final : Waker {
    explicit W(int fd_in) : fd(fd_in) {}
    void Wake() override {
      std::array<std::byte, 64> msg{};
      if (::write(fd, msg.data(), msg.size()) != 64) std::abort();
    }
    int fd;
  };
  struct S final : Sleeper {
    explicit S(int fd_in) : fd(fd_in) {}
    bool Block() override {
      std::array<std::byte, 64> buf{};
      for (std::size_t got = 0; got < buf.size();) {
        ssize_t const n = ::read(fd, buf.data() + got, buf.size() - got);
        if (n <= 0) return false;
        got += static_cast<std::size_t>(n);
      }
      return true;
    }
    int fd;
  };
  return {[fds] { return std::make_unique<W>((*fds)[1]); }, [fds] { return std::make_unique<S>((*fds)[0]); },
          [fds] {
            ::close((*fds)[0]);
            ::close((*fds)[1]);
          }};
}

WakeTransport CircbufWait() {
  auto const name = std::make_shared<std::string>(cbb::UniqueName("wake"));
  struct W final : Waker {
    explicit W(std::string const& name) : writer(cb::Spec::Make(name, g_capacity), cbb::g_writer_options), word(name) {}
    void Wake() override { writer.Write(msg); }
    [[nodiscard]] bool Asleep() const override { return word.Armed(); }
    [[nodiscard]] std::uint32_t WakeCount() const override { return word.Count(); }
    cb::Writer writer;
    cbb::WakeWordView word;
    std::vector<std::byte> msg = std::vector<std::byte>(64, std::byte{0x5a});
  };
  struct S final : Sleeper {
    explicit S(std::string const& name)
        : reader(cb::Spec::Make(name, 0), {.start = cb::StartAt::kNext, .wait_for_buffer = std::chrono::seconds(10)}) {}
    bool Block() override { return reader.Wait() == cb::WaitResult::kReady; }
    void Consume() override {
      while (reader.Read(buf) != cb::kEmpty) {
      }
    }
    cb::Reader reader;
    std::vector<std::byte> buf = std::vector<std::byte>(65536);
  };
  return {[name] { return std::make_unique<W>(*name); }, [name] { return std::make_unique<S>(*name); },
          [name] { RemoveRing(*name); }};
}

void ReportPercentiles(benchmark::State& state, cbb::Histogram const& h, std::string const& prefix) {
  state.counters[prefix + "p50_ns"] = static_cast<double>(h.Percentile(0.50));
  state.counters[prefix + "p90_ns"] = static_cast<double>(h.Percentile(0.90));
  state.counters[prefix + "p99_ns"] = static_cast<double>(h.Percentile(0.99));
  state.counters[prefix + "p999_ns"] = static_cast<double>(h.Percentile(0.999));
  state.counters[prefix + "max_ns"] = static_cast<double>(h.Max());
}

// `state`'s iterations are wake-ups (after 50 unmeasured ones).
void RunWakes(benchmark::State& state, std::function<WakeTransport(WakeShared*)> const& make) {
  auto* shared = cbb::MapShared<WakeShared>();
  WakeTransport const t = make(shared);
  if (!t.make_waker) {
    state.SkipWithError("transport unavailable on this machine");
    cbb::Unmap(shared);
    return;
  }
  cbb::Process sleeper(cbb::g_cpus.echo, [&] {
    auto s = t.make_sleeper();
    for (std::uint64_t i = 1;; ++i) {
      shared->about.value.store(i, std::memory_order_release);
      bool const woken = s->Block();
      std::uint64_t const at = cbb::Ticks();
      if (!woken || shared->stop.load(std::memory_order_acquire) != 0) return woken ? 0 : 1;
      shared->returned.value.store(at, std::memory_order_relaxed);
      shared->ack.value.store(i, std::memory_order_release);
      s->Consume();
    }
  });
  cbb::Pin(cbb::g_cpus.main);
  auto w = t.make_waker();
  double const ns_per_tick = cbb::NsPerTick();
  auto ticks = [&](double ns) { return static_cast<std::uint64_t>(ns / ns_per_tick); };
  std::uint64_t const asleep_after = ticks(200e3);  // past the reader's 50 us settle slice and its timer slack
  // A sample that takes this long is a stalled machine (a lost circbuf wake
  // would cost at most the reader's liveness interval, 100 ms): the row fails.
  std::uint64_t const give_up = ticks(20e9);
  cbb::Histogram one_way;
  cbb::Histogram rtt;
  std::uint64_t i = 0;
  std::uint64_t not_armed = 0;   // samples sent without the armed bit seen (circbuf), after 10 ms
  std::uint64_t backwards = 0;   // one-way < 0: the TSCs disagree
  std::uint64_t slow = 0;        // one-way > 1 ms
  std::string error;
  auto Fail = [&](char const* what) {
    error = what;
    return false;
  };
  auto sample = [&](bool record) {
    ++i;
    std::uint64_t const t_start = cbb::Ticks();
    while (shared->about.value.load(std::memory_order_acquire) != i) {
      if (cbb::Ticks() - t_start > give_up) return Fail("the sleeper did not come back to block");
    }
    std::uint64_t const seen = cbb::Ticks();
    while (cbb::Ticks() - seen < asleep_after || !w->Asleep()) {
      if (cbb::Ticks() - seen > ticks(10e6)) {
        if (!w->Asleep()) ++not_armed;  // else this process was descheduled for 10 ms
        break;
      }
    }
    std::uint64_t const t0 = cbb::Ticks();
    w->Wake();
    while (shared->ack.value.load(std::memory_order_acquire) != i) {
      if (cbb::Ticks() - t0 > give_up) return Fail("no return from the blocking call within 20 s of the send");
    }
    std::uint64_t const t1 = cbb::Ticks();
    std::uint64_t const at = shared->returned.value.load(std::memory_order_relaxed);
    if (!record) return true;
    if (at < t0) ++backwards;
    auto const ns = static_cast<std::uint64_t>(static_cast<double>(at > t0 ? at - t0 : 0) * ns_per_tick);
    if (ns > 1'000'000) ++slow;
    one_way.Add(ns);
    rtt.Add(static_cast<std::uint64_t>(static_cast<double>(t1 - t0) * ns_per_tick));
    return true;
  };
  bool ok = true;
  for (int k = 0; k < 50 && ok; ++k) ok = sample(false);
  std::uint32_t const wakes_before = w->WakeCount();
  for (auto _ : state) {
    if (ok) ok = sample(true);
    if (!ok) {
      state.SkipWithError(error.c_str());
      break;
    }
  }
  std::uint32_t const wakes = cbb::WakeWordView::Wakes(wakes_before, w->WakeCount());
  shared->stop.store(1, std::memory_order_release);
  w->Wake();
  w.reset();  // circbuf: the close wakes the reader too; the pipe: EOF
  sleeper.Wait();
  t.cleanup();
  cbb::Unmap(shared);
  ReportPercentiles(state, one_way, "");
  ReportPercentiles(state, rtt, "rtt_");
  state.counters["samples"] = static_cast<double>(one_way.Count());
  state.counters["not_armed"] = static_cast<double>(not_armed);
  state.counters["tsc_backwards"] = static_cast<double>(backwards);
  state.counters["over_1ms"] = static_cast<double>(slow);
  state.counters["wake_word_wakes"] = static_cast<double>(wakes);
}

void RegisterWake(std::string const& name, std::function<WakeTransport(WakeShared*)> make) {
  benchmark::RegisterBenchmark(("wake/" + name + "/64").c_str(),
                               [make = std::move(make)](benchmark::State& state) { RunWakes(state, make); })
      ->Iterations(g_round_trips)
      ->UseRealTime()
      ->Unit(benchmark::kNanosecond);
}

// ---- Readers that die asleep ----------------------------------------------------------

// Forks `count` readers of `ring` (on the reader CPU) that read until empty
// and Wait, then SIGKILLs them one by one at random moments: before each kill
// `publish` runs (it should commit a message, so that every sleeper wakes,
// reads and arms again) and a random 0 .. 400 us passes.
void KillSleepers(std::string const& ring, std::function<void()> const& publish, int count) {
  auto* attached = cbb::MapShared<std::atomic<int>>();
  std::vector<std::unique_ptr<cbb::Process>> readers;
  readers.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    readers.push_back(std::make_unique<cbb::Process>(cbb::g_cpus.echo, [&]() -> int {
      cb::Reader reader(cb::Spec::Make(ring, 0), {.start = cb::StartAt::kNext});
      attached->fetch_add(1);
      std::vector<std::byte> buf(65536);
      for (;;) {
        while (reader.Read(buf) != cb::kEmpty) {
        }
        (void)reader.Wait();
      }
    }));
  }
  while (attached->load() < count) std::this_thread::yield();
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> us(0, 400);
  for (auto& r : readers) {
    publish();
    SpinFor(std::chrono::microseconds(us(random)));
    r.reset();  // SIGKILL, then reaped
  }
  cbb::Unmap(attached);
}

// ---- Writer rate ----------------------------------------------------------------------

enum class Load : std::uint8_t { kSolo, kAfterKills, kPolling, kWaiting, kTwoWaiting, kFence, kBursts, kBursts256 };
constexpr int kBurstReaders = 256;

struct RateShared {
  std::atomic<int> attached{0};
  std::atomic<int> stop{0};
  std::atomic<std::uint64_t> waits{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> missed_close{0};
};

// A reader that reads until empty, then (if `waits`) Waits; until the
// writer closes (or, polling, until stop).
int RateReader(std::string const& ring, bool waits, RateShared& shared) {
  cb::Reader reader(cb::Spec::Make(ring, 0),
                    {.start = cb::StartAt::kNext, .wait_for_buffer = std::chrono::seconds(10)});
  shared.attached.fetch_add(1);
  std::vector<std::byte> buf(65536);
  std::uint64_t got = 0;
  std::uint64_t n_waits = 0;
  for (;;) {
    for (int n = 0; (n = reader.Read(buf)) != cb::kEmpty;) {
      if (n == cb::kCorrupt) return 3;
      got += n > 0 ? 1 : 0;
    }
    if (!waits) {
      if (shared.stop.load(std::memory_order_relaxed) != 0) break;
      continue;
    }
    ++n_waits;
    cb::WaitResult const w = reader.Wait(std::chrono::seconds(2));
    if (w == cb::WaitResult::kClosed || w == cb::WaitResult::kDead || w == cb::WaitResult::kStopped) break;
    if (w == cb::WaitResult::kTimeout && shared.stop.load(std::memory_order_relaxed) != 0) {
      shared.missed_close.fetch_add(1);  // the close did not wake this reader within 2 s
      break;
    }
  }
  shared.delivered.fetch_add(got);
  shared.waits.fetch_add(n_waits);
  return 0;
}

// Bursts of 1024 messages flat out, 2 ms apart (every reader catches up and
// goes back to sleep in between); returns the messages written and adds the
// time spent inside bursts to `busy`: the writer's rate while it publishes.
std::uint64_t WriteBursts(cb::Writer& writer, Clock::time_point end, double& busy) {
  std::vector<std::byte> const msg(64, std::byte{1});
  std::uint64_t n = 0;
  do {
    auto const start = Clock::now();
    for (int i = 0; i < 1024; ++i) writer.Write(msg);
    busy += std::chrono::duration<double>(Clock::now() - start).count();
    n += 1024;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  } while (Clock::now() < end);
  return n;
}

template <bool kFence>
std::uint64_t WriteFlatOut(cb::Writer& writer, Clock::time_point end) {
  std::vector<std::byte> const msg(64, std::byte{1});
  std::uint64_t n = 0;
  do {
    for (int i = 0; i < 256; ++i) {
      writer.Write(msg);
      if constexpr (kFence) std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    n += 256;
  } while (Clock::now() < end);
  return n;
}

void WriterRate(benchmark::State& state, Load load) {
  std::string const name = cbb::UniqueName("rate");
  auto const spec = cb::Spec::Make(name, g_capacity);
  int const readers = load == Load::kPolling || load == Load::kWaiting ? 1
                      : load == Load::kTwoWaiting                      ? 2
                      : load == Load::kBursts256                       ? kBurstReaders
                                                                       : 0;
  double written = 0;
  double seconds = 0;
  double wakes = 0;
  double armed_after_kills = 0;
  auto* shared = cbb::MapShared<RateShared>();
  for (auto _ : state) {
    cbb::Pin(cbb::g_cpus.main);
    std::vector<std::unique_ptr<cbb::Process>> procs;
    {
      cb::Writer writer(spec, cbb::g_writer_options);
      cbb::WakeWordView const word(name);
      for (int i = 0; i < readers; ++i) {
        procs.push_back(std::make_unique<cbb::Process>(
            cbb::g_cpus.echo, [&] { return RateReader(name, load != Load::kPolling, *shared); }));
      }
      if (!cbb::WaitUntilAttached(shared->attached, readers, procs)) {
        shared->stop.store(1);
        state.SkipWithError("a reader ended before it attached (its error is above), or attaching took over 120 s");
        break;
      }
      if (load == Load::kAfterKills) {
        std::vector<std::byte> const msg(64, std::byte{2});
        KillSleepers(name, [&] { writer.Write(msg); }, 32);
        armed_after_kills += word.Armed() ? 1 : 0;
      }
      std::uint32_t const before = word.Count();
      auto const start = Clock::now();
      auto const end = start + g_duration;
      if (load == Load::kBursts || load == Load::kBursts256) {
        double busy = 0;
        written += static_cast<double>(WriteBursts(writer, end, busy));
        seconds += busy;
      } else {
        written += static_cast<double>(load == Load::kFence ? WriteFlatOut<true>(writer, end)
                                                            : WriteFlatOut<false>(writer, end));
        seconds += std::chrono::duration<double>(Clock::now() - start).count();
      }
      wakes += cbb::WakeWordView::Wakes(before, word.Count());
      shared->stop.store(1);
    }  // the writer closes: waiting readers return kClosed
    for (auto& p : procs) {
      if (p->Wait() != 0) state.SkipWithError("a reader failed (corrupt ring?)");
    }
  }
  RemoveRing(name);
  state.counters["writer_msgs_per_s"] = written / seconds;
  state.counters["futex_wakes_per_s"] = wakes / seconds;
  state.counters["reader_waits_per_s"] = static_cast<double>(shared->waits.load()) / seconds;
  state.counters["delivered_msgs_per_s"] = static_cast<double>(shared->delivered.load()) / seconds;
  state.counters["readers"] = readers;
  state.counters["killed_sleepers"] = load == Load::kAfterKills ? 32 : 0;
  state.counters["armed_after_kills"] = armed_after_kills;
  state.counters["missed_close"] = static_cast<double>(shared->missed_close.load());
  cbb::Unmap(shared);
}

// ---- Audit after killed sleepers -----------------------------------------------------

struct KillAuditShared {
  std::atomic<int> phase{0};  // 1: the writer is up; 2: the sleepers are dead
  std::atomic<std::uint32_t> wakes{0};
  std::atomic<int> armed_before{0};
  cbb::Audit audit;
};

// The writer runs in a child (the trap cannot be removed again): it publishes
// every 20 us while 32 sleepers are killed, commits once more (which clears an
// armed bit left behind, with one wake), then writes 10 N messages under the trap.
void AuditAfterKills(benchmark::State& state) {
  std::string const name = cbb::UniqueName("audit");
  auto* shared = cbb::MapShared<KillAuditShared>();
  auto const messages = static_cast<std::uint64_t>(g_round_trips) * 10;
  for (auto _ : state) {
    cbb::Process writer(cbb::g_cpus.main, [&]() -> int {
      cb::Writer w(cb::Spec::Make(name, g_capacity), cbb::g_writer_options);
      cbb::WakeWordView const word(name);
      std::vector<std::byte> const msg(64, std::byte{3});
      shared->phase.store(1);
      while (shared->phase.load() == 1) {
        w.Write(msg);
        std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      shared->armed_before.store(word.Armed() ? 1 : 0);
      w.Write(msg);
      std::uint32_t const before = word.Count();
      cbb::BeginAudit(shared->audit);
      for (std::uint64_t i = 0; i < messages; ++i) w.Write(msg);
      cbb::EndAudit(shared->audit, messages);
      shared->wakes.store(cbb::WakeWordView::Wakes(before, word.Count()));
      ::_exit(0);  // nothing after the audited loop may make a system call
    });
    while (shared->phase.load() == 0) std::this_thread::yield();
    KillSleepers(name, [] {}, 32);
    shared->phase.store(2);
    writer.Wait();
  }
  RemoveRing(name);
  state.counters["audited_operations"] = static_cast<double>(shared->audit.operations.load());
  state.counters["syscalls"] = static_cast<double>(shared->audit.syscalls.load());
  state.counters["minor_faults"] = static_cast<double>(shared->audit.minor_faults.load());
  state.counters["major_faults"] = static_cast<double>(shared->audit.major_faults.load());
  state.counters["seccomp"] = shared->audit.installed.load();
  state.counters["killed_sleepers"] = 32;
  state.counters["armed_after_kills"] = shared->armed_before.load();
  state.counters["wake_word_wakes"] = shared->wakes.load();
  cbb::Unmap(shared);
}

// ---- Bystander interrupts ---------------------------------------------------------------

enum class RingA : std::uint8_t { kIdle, kActive, kMembarrier };

// Ring B's writer polls only its own line (stop_b): the readers' traffic on
// the other lines must not reach its CPU through this struct.
struct BystanderShared {
  alignas(128) std::atomic<int> stop_b{0};
  alignas(128) std::atomic<int> go{0};
  std::atomic<int> stop_a{0};
  std::atomic<int> a_up{0};
  std::atomic<int> b_up{0};
  std::atomic<int> register_failed{0};
  std::atomic<std::uint64_t> b_messages{0};
  std::atomic<std::uint64_t> b_ns{0};
  alignas(128) std::atomic<int> attached{0};
  std::atomic<std::uint64_t> waits{0};
  std::atomic<std::uint64_t> a_messages{0};
};

constexpr int kBystanderReaders = 64;
constexpr auto kRingAPeriod = std::chrono::microseconds(100);

void Bystander(benchmark::State& state, RingA mode) {
  int const cpu_a = cbb::g_cpus.main % cbb::CpuCount();
  int const cpu_b = cbb::g_cpus.echo % cbb::CpuCount();
  if (!cbb::InterruptCount("CAL", cpu_a)) {
    state.SkipWithError("/proc/interrupts has no CAL line for the writer's CPU: function-call interrupts not counted");
    return;
  }
  if (mode == RingA::kMembarrier && !cbb::HaveGlobalExpedited()) {
    state.SkipWithError("membarrier: no MEMBARRIER_CMD_GLOBAL_EXPEDITED on this kernel");
    return;
  }
  std::string const ring_a = cbb::UniqueName("bya");
  std::string const ring_b = cbb::UniqueName("byb");
  auto* shared = cbb::MapShared<BystanderShared>();
  double seconds = 0;
  double cal = 0;
  double tlb = 0;
  double cal_b = 0;
  for (auto _ : state) {
    cbb::Pin(cpu_b);  // this process only watches, off the writer's CPU
    cbb::Process writer_a(cpu_b, [&]() -> int {
      cb::Writer w(cb::Spec::Make(ring_a, 256 << 10), cbb::g_writer_options);
      std::vector<std::byte> const msg(64, std::byte{4});
      shared->a_up.store(1);
      auto next = Clock::now();
      while (shared->stop_a.load() == 0) {
        if (mode != RingA::kIdle && shared->go.load() != 0) {
          w.Write(msg);
          shared->a_messages.fetch_add(1, std::memory_order_relaxed);
        }
        std::this_thread::sleep_until(next += kRingAPeriod);
      }
      return 0;
    });
    while (shared->a_up.load() == 0) std::this_thread::yield();
    std::vector<std::unique_ptr<cbb::Process>> readers;
    readers.reserve(kBystanderReaders);
    for (int i = 0; i < kBystanderReaders; ++i) {
      readers.push_back(std::make_unique<cbb::Process>(cpu_b, [&]() -> int {
        cb::Reader reader(cb::Spec::Make(ring_a, 0), {.start = cb::StartAt::kNext});
        shared->attached.fetch_add(1);
        std::vector<std::byte> buf(65536);
        for (;;) {
          while (reader.Read(buf) != cb::kEmpty) {
          }
          if (mode == RingA::kMembarrier) cbb::Membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);  // the old Wait
          if (shared->go.load(std::memory_order_relaxed) != 0) shared->waits.fetch_add(1, std::memory_order_relaxed);
          cb::WaitResult const w = reader.Wait(std::chrono::milliseconds(500));
          if (w == cb::WaitResult::kClosed || shared->stop_a.load() != 0) return 0;
        }
      }));
    }
    cbb::Process writer_b(cpu_a, [&]() -> int {
      if (mode == RingA::kMembarrier && cbb::Membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0) {
        shared->register_failed.store(1);
      }
      cb::Writer w(cb::Spec::Make(ring_b, g_capacity), cbb::g_writer_options);
      shared->b_up.store(1);
      while (shared->go.load() == 0) {
      }
      std::vector<std::byte> const msg(64, std::byte{5});
      std::uint64_t n = 0;
      auto const start = Clock::now();
      while (shared->stop_b.load(std::memory_order_relaxed) == 0) {
        for (int i = 0; i < 256; ++i) w.Write(msg);
        n += 256;
      }
      shared->b_ns.store(static_cast<std::uint64_t>((Clock::now() - start).count()));
      shared->b_messages.store(n);
      return 0;
    });
    while (shared->attached.load() < kBystanderReaders || shared->b_up.load() == 0) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // every reader asleep
    auto const cal0 = cbb::InterruptCount("CAL", cpu_a);
    auto const tlb0 = cbb::InterruptCount("TLB", cpu_a);
    auto const cal_b0 = cbb::InterruptCount("CAL", cpu_b);
    auto const start = Clock::now();
    shared->go.store(1);
    std::this_thread::sleep_for(g_duration);
    auto const cal1 = cbb::InterruptCount("CAL", cpu_a);
    auto const tlb1 = cbb::InterruptCount("TLB", cpu_a);
    auto const cal_b1 = cbb::InterruptCount("CAL", cpu_b);
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    shared->stop_b.store(1);
    shared->stop_a.store(1);
    cal += static_cast<double>(cal1.value_or(0) - cal0.value_or(0));
    tlb += static_cast<double>(tlb1.value_or(0) - tlb0.value_or(0));
    cal_b += static_cast<double>(cal_b1.value_or(0) - cal_b0.value_or(0));
    writer_b.Wait();
    writer_a.Wait();  // the close wakes every reader
    for (auto& r : readers) r->Wait();
  }
  if (shared->register_failed.load() != 0) state.SkipWithError("MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED failed");
  RemoveRing(ring_a);
  RemoveRing(ring_b);
  state.counters["cal_per_s"] = cal / seconds;  // on the CPU of ring B's writer
  state.counters["tlb_per_s"] = tlb / seconds;
  state.counters["reader_cpu_cal_per_s"] = cal_b / seconds;
  state.counters["reader_waits_per_s"] = static_cast<double>(shared->waits.load()) / seconds;
  state.counters["ring_a_msgs_per_s"] = static_cast<double>(shared->a_messages.load()) / seconds;
  state.counters["ring_b_writer_msgs_per_s"] =
      static_cast<double>(shared->b_messages.load()) / (static_cast<double>(shared->b_ns.load()) * 1e-9);
  state.counters["readers"] = kBystanderReaders;
  cbb::Unmap(shared);
}

}  // namespace

int main(int argc, char** argv) {
  cbb::ParseCpus(argc, argv);
  cbb::ParseHugePages(argc, argv);
  cbb::TakeFlag(argc, argv, "--round_trips=", [](char const* v) { g_round_trips = std::max(1LL, std::atoll(v)); });
  cbb::TakeFlag(argc, argv, "--seconds=", [](char const* v) {
    g_duration = std::chrono::milliseconds(static_cast<long>(std::atof(v) * 1000));
  });
  cbb::TakeFlag(argc, argv, "--capacity=", [](char const* v) { g_capacity = std::strtoull(v, nullptr, 10); });
  RegisterWake("floor", FutexFloor);
  RegisterWake("circbuf", [](WakeShared*) { return CircbufWait(); });
  RegisterWake("pipe", [](WakeShared*) { return BlockingPipe(); });
  // Pairs that are compared run back to back: solo / after kills, polling / waiting.
  for (auto [name, load] : {std::pair{"solo", Load::kSolo}, std::pair{"after-killed-sleepers", Load::kAfterKills},
                            std::pair{"polling-reader", Load::kPolling}, std::pair{"waiting-reader", Load::kWaiting},
                            std::pair{"2-waiting-readers", Load::kTwoWaiting}, std::pair{"seq-cst-fence", Load::kFence},
                            std::pair{"bursts", Load::kBursts}, std::pair{"bursts-256-sleepers", Load::kBursts256}}) {
    benchmark::RegisterBenchmark((std::string("writer-rate/") + name + "/64").c_str(),
                                 [load](benchmark::State& state) { WriterRate(state, load); })
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("audit/after-killed-sleepers/64", AuditAfterKills)->Iterations(1)->UseRealTime();
  for (auto [name, mode] : {std::pair{"idle", RingA::kIdle}, std::pair{"circbuf", RingA::kActive},
                            std::pair{"membarrier", RingA::kMembarrier}}) {
    benchmark::RegisterBenchmark((std::string("bystander/") + name + "/64").c_str(),
                                 [mode](benchmark::State& state) { Bystander(state, mode); })
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
