// Blocking readers (Reader::Wait), in real processes: what a sleeping or dead
// reader costs the writer (system calls counted by a seccomp audit in the
// writer's process), what Wait reports about the writer, and hundreds of
// sleeping readers woken for every burst. The same protocol as threads of one
// process, for ThreadSanitizer, is at the end.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/syscall_audit.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::Matches;
using circbuf::test::Message;
using circbuf::test::Pipe;
using circbuf::test::RingName;
using circbuf::test::WakeWord;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__) || \
    (defined(__has_feature) && (__has_feature(thread_sanitizer) || __has_feature(address_sanitizer)))
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// Memory shared with forked children (anonymous, MAP_SHARED).
template <class T>
T* MapShared() {
  void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  return new (p) T{};
}
template <class T>
void Unmap(T* p) {
  p->~T();
  ::munmap(p, sizeof(T));
}

// Writes one message and returns; the reader side checks it with Matches.
void WriteSeq(cb::Writer& w, std::uint64_t seq, std::size_t size = 64) { w.Write(Message(seq, size)); }

// A writer process whose Write loop is audited for system calls: it creates
// (or takes over) the ring, reports '.', and on 'g' writes one message
// outside the audit, then `messages` inside it, paced by `gap` if non-zero.
struct AuditResult {
  std::atomic<std::uint64_t> syscalls{0};
  std::atomic<int> seccomp{0};
  std::atomic<std::uint32_t> wake_after_first{0};
};
int AuditedWriter(cb::Spec const& spec, Pipe const& ready, Pipe const& go, AuditResult* out, int messages,
                  std::chrono::microseconds gap) {
  cb::Writer w(spec);
  ready.Send();
  if (go.Receive() < 0) return 20;
  WriteSeq(w, w.NextSequence());  // clears whatever a dead sleeper left armed: at most one wake
  out->wake_after_first = WakeWord(std::string(spec.Name()));
  std::vector<std::byte> message(64);  // no allocation inside the audit (ASan's allocator makes system calls)
  circbuf::audit::Audit audit;
  // Not under sanitizers: ThreadSanitizer defers signals, the seccomp trap's
  // SIGSYS included, so the process dies of the first trapped call, and
  // AddressSanitizer's runtime makes system calls of its own in there (the
  // writer exits 1 with its report unwritable). The test then skips; the
  // debug, release and gcc presets count.
  bool const on = !kSanitized && circbuf::audit::BeginAudit(audit);
  for (int i = 0; i < messages; ++i) {
    if (gap.count() != 0) {
      auto const until = std::chrono::steady_clock::now() + gap;  // clock_gettime is a vDSO call, no system call
      while (std::chrono::steady_clock::now() < until) {
      }
    }
    circbuf::test::Fill(w.NextSequence(), message);
    w.Write(message);
  }
  out->syscalls = audit.syscalls.load();
  out->seccomp = on ? 1 : 0;
  std::fflush(nullptr);
  ::_exit(0);  // the seccomp filter stays: leave at once (exit_group is allowed)
}

}  // namespace

// Regression (issue 12): a reader SIGKILLed inside Wait left `waiters`
// raised for good, and the writer made a FUTEX_WAKE on every message from
// then on. Now a dead sleeper leaves at most the armed bit, which the
// writer's first commit clears; after that its Write makes no system call.
TEST(RingWait, ReadersKilledAsleepCostTheWriterNoSystemCall) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  auto* result = MapShared<AuditResult>();
  Pipe ready;
  Pipe go;
  Child writer([&] { return AuditedWriter(spec, ready, go, result, 100'000, 0us); });
  ASSERT_EQ(ready.Receive(), '.');
  std::mt19937 rng(12);
  for (int round = 0; round < 40; ++round) {
    Pipe waiting;
    Child reader([&] {
      cb::Reader rd(spec, {.start = cb::StartAt::kNext});
      waiting.Send();
      (void)rd.Wait(30s);
      return 0;
    });
    ASSERT_EQ(waiting.Receive(), '.');
    // Anywhere in the sleep path: before it arms, while it settles, asleep.
    std::this_thread::sleep_for(std::chrono::microseconds(round % 4 == 0 ? 5000 : rng() % 400));
    reader.Kill(SIGKILL);
    ASSERT_EQ(reader.Wait(), 128 + SIGKILL);
  }
  go.Send();
  ASSERT_EQ(writer.Wait(), 0);
  if (result->seccomp.load() == 0)
    GTEST_SKIP() << "seccomp unavailable (or a sanitizer build): system calls cannot be counted";
  EXPECT_EQ(result->syscalls.load(), 0U) << "system calls in 100,000 Writes after 40 readers died inside Wait";
  EXPECT_EQ(result->wake_after_first.load() & cb::kWakeArmed, 0U) << "the first commit disarms the wake word";
  Unmap(result);
}

// A reader that sleeps whenever it has caught up costs the writer at most
// one system call per sleep, never one per message.
TEST(RingWait, ASleepingReaderCostsAtMostOneSystemCallPerSleep) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 20);
  auto* result = MapShared<AuditResult>();
  struct Count {
    std::atomic<std::uint64_t> sleeps{0};
    std::atomic<std::uint64_t> delivered{0};
  };
  auto* count = MapShared<Count>();
  constexpr int kMessages = 20'000;
  Pipe ready;
  Pipe go;
  Child writer([&] { return AuditedWriter(spec, ready, go, result, kMessages, 20us); });
  ASSERT_EQ(ready.Receive(), '.');
  Pipe attached;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kNext, .liveness_interval = 1ms});
    attached.Send();
    std::vector<std::byte> buf(64);
    for (;;) {
      int const n = rd.Read(buf);
      if (n > 0) {
        if (!Matches(rd.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n)))) return 1;
        count->delivered.fetch_add(1);
        continue;
      }
      if (n != cb::kEmpty) return 2;
      count->sleeps.fetch_add(1);
      cb::WaitResult const why = rd.Wait(10s);
      // The audited writer's wakes fail (seccomp), so the reader also wakes at
      // its settle and liveness slices; it ends when the writer is gone.
      if (why == cb::WaitResult::kDead || why == cb::WaitResult::kClosed) return 0;
    }
  });
  ASSERT_EQ(attached.Receive(), '.');
  go.Send();
  ASSERT_EQ(writer.Wait(), 0);
  EXPECT_EQ(reader.Wait(30s), 0);
  if (result->seccomp.load() == 0)
    GTEST_SKIP() << "seccomp unavailable (or a sanitizer build): system calls cannot be counted";
  std::uint64_t const calls = result->syscalls.load();
  std::uint64_t const sleeps = count->sleeps.load();
  std::printf("writer: %llu system calls in %d Writes; the reader went to sleep %llu times\n",
              static_cast<unsigned long long>(calls), kMessages, static_cast<unsigned long long>(sleeps));
  EXPECT_LE(calls, sleeps) << "at most one wake per sleep";
  // How often the reader sleeps depends on the machine's load (each
  // sleep may cost one wake); one system call per message is what the old
  // protocol paid whenever a reader slept.
  EXPECT_LT(calls, static_cast<std::uint64_t>(kMessages)) << "not one per message";
  EXPECT_GT(count->delivered.load(), 0U);
  Unmap(result);
  Unmap(count);
}

TEST(RingWait, ReturnsReadyAtOnceWithoutArming) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  cb::Reader rd(spec, {.start = cb::StartAt::kNext});
  WriteSeq(w, 0);
  EXPECT_EQ(rd.Wait(0ns), cb::WaitResult::kReady);
  EXPECT_EQ(WakeWord(r.name) & cb::kWakeArmed, 0U) << "a Wait that does not sleep costs the writer nothing";
  std::vector<std::byte> buf(64);
  EXPECT_EQ(rd.Read(buf), 64);
  EXPECT_EQ(rd.Wait(0ns), cb::WaitResult::kTimeout);
}

// Regression: Wait(timeout) computed now() + timeout, which overflowed for
// nanoseconds::max() and returned at once; there was no unbounded form.
TEST(RingWait, WaitsWithoutEndAndWithoutOverflow) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  for (int form = 0; form < 2; ++form) {
    Pipe waiting;
    Child reader([&] {
      cb::Reader rd(spec, {.start = cb::StartAt::kNext});
      waiting.Send();
      auto const start = std::chrono::steady_clock::now();
      cb::WaitResult const why = form == 0 ? rd.Wait(std::chrono::nanoseconds::max()) : rd.Wait();
      if (why != cb::WaitResult::kReady) return 1;
      return std::chrono::steady_clock::now() - start >= 100ms ? 0 : 2;  // it slept until the message
    });
    ASSERT_EQ(waiting.Receive(), '.');
    std::this_thread::sleep_for(200ms);
    WriteSeq(w, w.NextSequence());
    EXPECT_EQ(reader.Wait(10s), 0) << (form == 0 ? "Wait(nanoseconds::max())" : "Wait()");
  }
}

TEST(RingWait, ReportsTheWriterClosingOnce) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  auto w = std::make_unique<cb::Writer>(spec);
  WriteSeq(*w, 0);
  Pipe waiting;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kLatest});
    std::vector<std::byte> buf(64);
    if (rd.Read(buf) != 64) return 1;
    waiting.Send();
    if (rd.Wait() != cb::WaitResult::kClosed) return 2;         // woken by the close, not by a timer
    if (rd.Wait(50ms) != cb::WaitResult::kTimeout) return 3;    // reported once
    return 0;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  std::this_thread::sleep_for(100ms);  // asleep
  w.reset();
  EXPECT_EQ(reader.Wait(5s), 0) << "-1: Wait() did not return after the close";
}

// The writer dies with nobody left to wake the reader: Wait finds it within
// the liveness interval, reports it once, and then reports the writer that
// takes over, once, and its messages.
TEST(RingWait, ReportsDeathWithinTheLivenessIntervalThenTheTakeOver) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  Pipe created;
  Child first([&]() -> int {
    cb::Writer w(spec);
    WriteSeq(w, 0);
    created.Send();
    for (;;) ::pause();
  });
  ASSERT_EQ(created.Receive(), '.');
  Pipe waiting;
  Pipe dead;
  Pipe took_over;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kLatest, .liveness_interval = 50ms});
    std::vector<std::byte> buf(64);
    if (rd.Read(buf) != 64) return 1;
    waiting.Send();
    if (rd.Wait() != cb::WaitResult::kDead) return 2;
    dead.Send();
    if (rd.Wait() != cb::WaitResult::kTakenOver) return 3;  // woken by the new writer's attach
    took_over.Send();
    if (rd.Wait() != cb::WaitResult::kReady) return 4;
    if (rd.Read(buf) != 64 || !Matches(1, std::span<std::byte const>(buf))) return 5;
    return rd.Lost() == 0 ? 0 : 6;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  std::this_thread::sleep_for(200ms);  // asleep, with probes every 50 ms
  auto const killed = std::chrono::steady_clock::now();
  first.Kill(SIGKILL);
  ASSERT_EQ(first.Wait(), 128 + SIGKILL);
  ASSERT_EQ(dead.Receive(5s), '.');
  auto const noticed = std::chrono::steady_clock::now() - killed;
  std::printf("death reported after %.1f ms (liveness interval 50 ms)\n",
              std::chrono::duration<double, std::milli>(noticed).count());
  EXPECT_LT(noticed, 2s) << "bound: the liveness interval plus scheduling";
  std::this_thread::sleep_for(100ms);  // asleep again, and not reporting the death a second time
  cb::Writer heir(spec);
  ASSERT_TRUE(heir.TookOver());
  ASSERT_EQ(took_over.Receive(5s), '.');
  std::this_thread::sleep_for(50ms);
  WriteSeq(heir, heir.NextSequence());
  EXPECT_EQ(reader.Wait(5s), 0);
}

// A cut that no access faults on (the reader sleeps): the liveness probe
// compares the files' sizes with the mappings.
TEST(RingWait, ReportsATruncatedRing) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  WriteSeq(w, 0);
  Pipe waiting;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kLatest, .liveness_interval = 20ms});
    std::vector<std::byte> buf(64);
    if (rd.Read(buf) != 64) return 1;
    waiting.Send();
    if (rd.Wait(10s) != cb::WaitResult::kTruncated) return 2;
    if (!rd.Truncated()) return 3;
    return rd.Read(buf) == cb::kCorrupt ? 0 : 4;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  std::this_thread::sleep_for(50ms);
  ASSERT_EQ(::truncate(("/dev/shm" + circbuf::CircularBuffer::DataSegmentName(r.name)).c_str(), 4096 + 1000),
            0);  // inside the first page
  EXPECT_EQ(reader.Wait(15s), 0);
}

namespace {
cb::Reader* g_stop_target = nullptr;
void StopOnSignal(int /*signal*/) {
  if (g_stop_target != nullptr) g_stop_target->RequestStop();
}
}  // namespace

TEST(RingWait, StopsFromAnotherThreadAndFromASignalHandler) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  Pipe waiting;
  Child reader([&] {
    cb::Reader rd(spec, {.start = cb::StartAt::kNext});
    std::thread stopper([&] {
      std::this_thread::sleep_for(100ms);
      rd.RequestStop();
    });
    cb::WaitResult const by_thread = rd.Wait();
    stopper.join();
    if (by_thread != cb::WaitResult::kStopped) return 1;
    if (rd.Wait(0ns) != cb::WaitResult::kStopped) return 2;  // sticky
    rd.ClearStop();
    g_stop_target = &rd;
    struct sigaction sa{};
    sa.sa_handler = StopOnSignal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, nullptr);
    waiting.Send();
    return rd.Wait() == cb::WaitResult::kStopped ? 0 : 3;
  });
  ASSERT_EQ(waiting.Receive(), '.');
  std::this_thread::sleep_for(100ms);
  reader.Kill(SIGUSR1);
  EXPECT_EQ(reader.Wait(5s), 0);
  EXPECT_EQ(WakeWord(r.name) & cb::kWakeArmed, 0U) << "the stop's wake disarms";
}

// The market-data fan-out case: hundreds of reader processes asleep in
// Wait, a writer publishing bursts. Every reader must wake for every burst
// by itself (the liveness interval is a minute, so only a wake can wake it),
// and deliver every message of it.
TEST(RingWait, HundredsOfSleepingReadersWakeForEveryBurst) {
  int const readers = kSanitized ? 64 : 256;
  constexpr int kBursts = 20;
  constexpr int kPerBurst = 50;
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 20);
  struct Board {
    std::atomic<int> attached{0};
    std::atomic<std::uint64_t> progress[256]{};  // messages delivered, per reader
    std::atomic<std::uint64_t> sleeps{0};
  };
  auto* board = MapShared<Board>();
  auto w = std::make_unique<cb::Writer>(spec);
  std::vector<std::unique_ptr<Child>> children;
  children.reserve(static_cast<std::size_t>(readers));
  for (int i = 0; i < readers; ++i) {  // NOLINT(modernize-loop-convert): i names the reader's progress slot
    children.push_back(std::make_unique<Child>([&, i] {
      cb::Reader rd(spec, {.start = cb::StartAt::kNext, .liveness_interval = 60s});
      board->attached.fetch_add(1);
      std::vector<std::byte> buf(256);
      for (;;) {
        int const n = rd.Read(buf);
        if (n > 0) {
          if (!Matches(rd.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n)))) return 1;
          board->progress[i].store(rd.Delivered());
          continue;
        }
        if (n != cb::kEmpty) return 2;
        board->sleeps.fetch_add(1);
        cb::WaitResult const why = rd.Wait();
        if (why == cb::WaitResult::kClosed) break;
        if (why != cb::WaitResult::kReady) return 3;
      }
      if (rd.Read(buf) != cb::kEmpty) return 4;
      return rd.Delivered() == static_cast<std::uint64_t>(kBursts) * kPerBurst && rd.Lost() == 0 ? 0 : 5;
    }));
  }
  auto const deadline = std::chrono::steady_clock::now() + 60s;
  while (board->attached.load() < readers && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(board->attached.load(), readers);
  std::uint32_t const wake_before = WakeWord(r.name);
  for (int burst = 0; burst < kBursts; ++burst) {
    std::this_thread::sleep_for(20ms);  // everybody asleep (or about to be)
    for (int m = 0; m < kPerBurst; ++m) WriteSeq(*w, w->NextSequence());
    auto const want = static_cast<std::uint64_t>(burst + 1) * kPerBurst;
    auto const until = std::chrono::steady_clock::now() + 30s;
    int behind = readers;
    while (std::chrono::steady_clock::now() < until) {
      behind = 0;
      // NOLINTNEXTLINE(modernize-loop-convert): only the first `readers` slots are in use
      for (int i = 0; i < readers; ++i) behind += board->progress[i].load() < want ? 1 : 0;
      if (behind == 0) break;
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(behind, 0) << "burst " << burst << ": readers that never woke for it (a lost wake-up)";
  }
  std::uint32_t const wakes = (WakeWord(r.name) - wake_before) / 2;  // the count moves by 2 per wake
  // Memory a reader costs: its private resident memory and page tables.
  std::uint64_t private_kb = 0;
  std::uint64_t pte_kb = 0;
  {
    std::ifstream rollup("/proc/" + std::to_string(children[0]->Pid()) + "/smaps_rollup");
    std::string line;
    while (std::getline(rollup, line)) {
      if (line.starts_with("Private_Clean:") || line.starts_with("Private_Dirty:")) {
        private_kb += std::stoull(line.substr(14));
      }
    }
    std::ifstream status("/proc/" + std::to_string(children[0]->Pid()) + "/status");
    while (std::getline(status, line)) {
      if (line.starts_with("VmPTE:")) pte_kb = std::stoull(line.substr(6));
    }
  }
  w.reset();  // closed: every reader drains and leaves
  for (int i = 0; i < readers; ++i) EXPECT_EQ(children[static_cast<std::size_t>(i)]->Wait(60s), 0) << "reader " << i;
  std::printf("%d readers, %d bursts: the writer woke sleepers %u times (readers went to sleep %llu times); "
              "one reader process: %llu KiB private resident memory, %llu KiB page tables%s\n",
              readers, kBursts, wakes, static_cast<unsigned long long>(board->sleeps.load()),
              static_cast<unsigned long long>(private_kb), static_cast<unsigned long long>(pte_kb),
              kSanitized ? " (sanitizer build: inflated)" : "");
  EXPECT_LE(wakes, board->sleeps.load()) << "at most one writer wake per sleep";
  Unmap(board);
}

// The same protocol as threads of one process, so that ThreadSanitizer sees
// the wake word, the tail and the records (it cannot see across processes):
// readers that sleep whenever they catch up, bursts of messages of many
// sizes, then the close, which every reader must see after the last message.
TEST(RingWaitThreads, ReadersBlockedInWaitSeeEveryMessageThenTheClose) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 4 << 20);  // holds every burst: nothing may be lost
  constexpr int kReaders = 3;
  constexpr int kBursts = 50;
  constexpr int kPerBurst = 40;
  std::atomic<int> attached{0};
  std::atomic<int> failures{0};
  auto w = std::make_unique<cb::Writer>(spec);
  std::vector<std::thread> threads;
  threads.reserve(kReaders);
  for (int i = 0; i < kReaders; ++i) {
    threads.emplace_back([&] {
      cb::Reader rd(spec, {.start = cb::StartAt::kNext});
      attached.fetch_add(1);
      std::vector<std::byte> buf(2048);
      for (;;) {
        int const n = rd.Read(buf);
        if (n > 0) {
          if (!Matches(rd.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n)))) failures++;
          continue;
        }
        if (n != cb::kEmpty) break;
        cb::WaitResult const why = rd.Wait(20s);
        if (why == cb::WaitResult::kClosed) break;
        if (why != cb::WaitResult::kReady) {
          failures++;
          return;
        }
      }
      int const last = rd.Read(buf);
      if (last != cb::kEmpty || rd.Delivered() != static_cast<std::uint64_t>(kBursts) * kPerBurst || rd.Lost() != 0) {
        std::printf("reader: last Read %d, delivered %llu, lost %llu\n", last,
                    static_cast<unsigned long long>(rd.Delivered()), static_cast<unsigned long long>(rd.Lost()));
        failures++;  // the close comes after the last message, and nothing is lost
      }
    });
  }
  while (attached.load() < kReaders) std::this_thread::sleep_for(1ms);
  for (int burst = 0; burst < kBursts; ++burst) {
    std::this_thread::sleep_for(std::chrono::microseconds(burst % 5 == 0 ? 2000 : 100));
    for (int m = 0; m < kPerBurst; ++m) {
      WriteSeq(*w, w->NextSequence(), 1 + static_cast<std::size_t>(burst * 37 + m * 11) % 2000);
    }
  }
  w.reset();
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(RingWaitThreads, RequestStopFromAnotherThreadEndsAnUnboundedWait) {
  RingName r;
  auto const spec = cb::Spec::Make(r.name, 1 << 16);
  cb::Writer w(spec);
  cb::Reader rd(spec, {.start = cb::StartAt::kNext});
  std::atomic<bool> returned{false};
  cb::WaitResult why = cb::WaitResult::kReady;
  std::thread waiter([&] {
    why = rd.Wait();
    returned.store(true);
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(returned.load());
  rd.RequestStop();
  waiter.join();
  EXPECT_EQ(why, cb::WaitResult::kStopped);
}
