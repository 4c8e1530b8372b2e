// circbuf demo: one writer and three reader processes on a fresh ring. Two
// readers keep up; the third is deliberately slow, so the writer laps it and
// it reports exactly how many messages it lost. Each reader checks every
// message (sequence number and contents) and measures one-way latency from
// the writer's timestamp. The ring is removed at the end, also on Ctrl-C.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

struct DemoOptions {
  double seconds = 3;
  double rate = 500'000;
  std::string capacity = "8MiB";
  std::string name;
} g_demo;

constexpr int kReaders = 3;
constexpr char const* kReaderNames[kReaders] = {"fast-1", "fast-2", "slow"};

struct Result {
  std::atomic<std::uint64_t> received, bytes, lost, bad;
  std::uint64_t p50, p99, max;
  std::atomic<int> done;
};

struct Shared {  // anonymous shared memory: children report here
  std::atomic<std::uint64_t> total;  // messages written + 1, once the writer is done
  std::atomic<int> stop;
  std::atomic<int> attached;
  Result readers[kReaders];
};

// Message: sequence (8 bytes), send time (8 bytes), then bytes that depend on
// the sequence number; 16 .. 1015 bytes.
std::size_t SizeFor(std::uint64_t seq) { return 16 + (seq * 2654435761U) % 1000; }

void Fill(std::uint64_t seq, std::span<std::byte> m) {
  for (std::size_t i = 16; i < m.size(); ++i) m[i] = std::byte(static_cast<std::uint8_t>(seq + i));
  std::uint64_t const now = NowNs();
  std::memcpy(m.data(), &seq, 8);
  std::memcpy(m.data() + 8, &now, 8);
}

bool Check(std::uint64_t seq, std::span<std::byte const> m) {
  std::uint64_t got = 0;
  std::memcpy(&got, m.data(), 8);
  if (got != seq || m.size() != SizeFor(seq)) return false;
  for (std::size_t i = 16; i < m.size(); ++i) {
    if (m[i] != std::byte(static_cast<std::uint8_t>(seq + i))) return false;
  }
  return true;
}

void RunReader(cb::Spec const& spec, Shared& shared, int index) {
  bool const slow = index == 2;
  Result& r = shared.readers[index];
  cb::Reader reader(spec, {.start = cb::StartAt::kOldest});
  shared.attached.fetch_add(1);
  std::vector<std::byte> buf(cb::kMaxMessageSize);
  auto histogram = std::make_unique<Histogram>();
  for (;;) {
    int const n = reader.Read(buf);
    if (n > 0) {
      std::uint64_t sent = 0;
      std::memcpy(&sent, buf.data() + 8, 8);
      histogram->Add(NowNs() - sent);
      if (!Check(reader.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n)))) r.bad.fetch_add(1);
      r.bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      r.received.store(reader.Delivered(), std::memory_order_relaxed);
      if (slow) std::this_thread::sleep_for(std::chrono::microseconds(20));
    } else if (n == cb::kLapped) {
      r.lost.store(reader.Lost(), std::memory_order_relaxed);
    } else if (n == cb::kEmpty) {
      std::uint64_t const total = shared.total.load();
      if ((total != 0 && reader.NextSequence() + 1 >= total) || shared.stop.load() != 0 || StopRequested()) break;
      (void)reader.Wait(std::chrono::milliseconds(1));
    } else {
      r.bad.fetch_add(1);
      break;
    }
    if (shared.stop.load(std::memory_order_relaxed) != 0 || StopRequested()) break;
  }
  r.received.store(reader.Delivered());
  r.lost.store(reader.Lost());
  r.p50 = histogram->Quantile(0.50);
  r.p99 = histogram->Quantile(0.99);
  r.max = histogram->Max();
  r.done.store(1);
}

void Progress(Shared const& shared, std::uint64_t seq, double elapsed, bool tty) {
  char head[32];
  std::snprintf(head, sizeof head, "%5.1f s", elapsed);
  std::string line = std::string("  ") + head + "  written " + HumanCount(static_cast<double>(seq)) + "  read";
  std::string lost = "  lost";
  for (auto const& r : shared.readers) {
    line += " " + HumanCount(static_cast<double>(r.received.load(std::memory_order_relaxed)));
    lost += " " + HumanCount(static_cast<double>(r.lost.load(std::memory_order_relaxed)));
  }
  line += lost;
  std::printf(tty ? "\r%-78s" : "%s\n", line.c_str());
  std::fflush(stdout);
}

void WaitChildren(std::vector<pid_t> const& children) {
  auto const deadline = NowNs() + 5'000'000'000ULL;
  for (pid_t const pid : children) {
    for (;;) {
      pid_t const r = ::waitpid(pid, nullptr, WNOHANG);
      if (r == pid || (r < 0 && errno != EINTR)) break;
      if (NowNs() > deadline) ::kill(pid, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

int RunDemo() {
  std::string const name =
      g_demo.name.empty() ? "/circbuf-demo-" + std::to_string(::getpid()) : CheckRingName(g_demo.name);
  auto const spec = cb::Spec::Make(name, ParseCapacity(g_demo.capacity));
  InstallStopHandlers();
  void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw Error(kSystem, std::string("mmap: ") + ErrnoText(errno));
  auto* shared = new (mem) Shared{};
  bool const tty = IsTerminal(STDOUT_FILENO);
  std::uint64_t seq = 0;
  double elapsed = 0;
  {
    cb::Writer writer(spec);
    std::printf("circbuf demo: ring %s (%s), writer pid %d\n", name.c_str(),
                HumanBytes(static_cast<double>(writer.Capacity())).c_str(), ::getpid());
    std::printf("  %d readers (%s, %s, %s), %.1f s at %s messages/s\n", kReaders, kReaderNames[0], kReaderNames[1],
                kReaderNames[2], g_demo.seconds, HumanCount(g_demo.rate).c_str());
    std::fflush(stdout);
    std::vector<pid_t> children;
    for (int i = 0; i < kReaders; ++i) {
      pid_t const pid = ::fork();
      if (pid < 0) throw Error(kSystem, std::string("fork: ") + ErrnoText(errno));
      if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // the writer died: stop and detach
        int code = 0;
        try {
          RunReader(spec, *shared, i);
        } catch (std::exception const& e) {
          std::fprintf(stderr, "circbuf demo: reader %s: %s\n", kReaderNames[i], e.what());
          code = 1;
        }
        std::fflush(nullptr);
        ::_exit(code);
      }
      children.push_back(pid);
    }
    for (auto const until = NowNs() + 5'000'000'000ULL; shared->attached.load() < kReaders && NowNs() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // Paced by the clock: message k is due at start + k / rate. The writer
    // sends what is due, then sleeps until the next millisecond.
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    auto const burst = static_cast<std::uint64_t>(std::max(1.0, g_demo.rate / 500));  // 2 ms worth
    std::uint64_t const start = NowNs();
    std::uint64_t const end = start + static_cast<std::uint64_t>(g_demo.seconds * 1e9);
    std::uint64_t next_report = start + (tty ? 200'000'000 : 1'000'000'000);
    for (std::uint64_t now = start; now < end && !StopRequested(); now = NowNs()) {
      if (now >= next_report) {
        Progress(*shared, seq, static_cast<double>(now - start) / 1e9, tty);
        next_report += tty ? 200'000'000 : 1'000'000'000;
      }
      auto const due = static_cast<std::uint64_t>(static_cast<double>(now - start) * g_demo.rate / 1e9);
      std::uint64_t const batch = std::min(due, seq + burst);  // a writer that falls behind still looks at the clock
      for (; seq < batch; ++seq) {
        std::size_t const n = SizeFor(seq);
        Fill(seq, std::span(buf.data(), n));
        writer.Write(std::span(buf.data(), n));
      }
      if (seq >= due) std::this_thread::sleep_for(std::chrono::microseconds(1000 - (NowNs() - start) / 1000 % 1000));
    }
    elapsed = static_cast<double>(NowNs() - start) / 1e9;
    shared->total.store(seq + 1);
    if (StopRequested()) shared->stop.store(1);
    WaitChildren(children);
    Progress(*shared, seq, elapsed, tty);
    if (tty) std::printf("\n");
  }
  // The readers detached and the writer closed: the last one out unlinked
  // the ring. Remove it by name as well, in case a reader died attached.
  SharedMemory::Remove(name);
  SharedMemory::Remove(circbuf::CircularBuffer::DataSegmentName(name));
  bool const interrupted = StopRequested();
  std::printf("\n%swritten %llu messages in %.2f s\n\n", interrupted ? "interrupted: " : "",
              static_cast<unsigned long long>(seq), elapsed);
  Table table({{"READER"},
               {"RECEIVED", true},
               {"BYTES", true},
               {"LOST", true},
               {"P50", true},
               {"P99", true},
               {"MAX", true},
               {"CHECK"}});
  bool ok = true;
  for (int i = 0; i < kReaders; ++i) {
    auto const& r = shared->readers[i];
    bool const complete = interrupted || r.received.load() + r.lost.load() == seq;
    ok = ok && r.done.load() == 1 && r.bad.load() == 0 && complete;
    table.Add({kReaderNames[i], std::to_string(r.received.load()), HumanBytes(static_cast<double>(r.bytes.load())),
               std::to_string(r.lost.load()), HumanNs(static_cast<double>(r.p50)), HumanNs(static_cast<double>(r.p99)),
               HumanNs(static_cast<double>(r.max)),
               r.done.load() != 1  ? "no result"
               : r.bad.load() != 0 ? std::to_string(r.bad.load()) + " bad"
                                   : "ok"});
  }
  table.Print(2);
  std::printf("\n  received + lost == written for every reader: %s\n", interrupted ? "(interrupted)"
                                                                       : ok        ? "yes"
                                                                                   : "NO");
  std::printf("  latency: one-way, writer to reader; %u CPUs shared by 4 processes\n",
              std::thread::hardware_concurrency());
  bool const gone =
      !SharedMemory::Exists(name) && !SharedMemory::Exists(circbuf::CircularBuffer::DataSegmentName(name));
  std::printf("  ring %s removed: %s\n", name.c_str(), gone ? "yes" : "NO");
  ::munmap(mem, sizeof(Shared));
  if (interrupted) return kInterrupted;
  return ok && gone ? kOk : kCheckFailed;
}

}  // namespace

Command AddDemo(CLI::App& app) {
  auto* sub = app.add_subcommand("demo", "A writer, three readers (one slow), a report");
  sub->add_option("-s,--seconds", g_demo.seconds, "How long the writer writes")->check(CLI::Range(0.1, 3600.0));
  sub->add_option("-r,--rate", g_demo.rate, "Messages per second")->check(CLI::Range(1.0, 1e8));
  sub->add_option("-c,--capacity", g_demo.capacity, "Buffer size (4KiB .. 50MiB)");
  sub->add_option("--name", g_demo.name, "Buffer name (default /circbuf-demo-PID)");
  sub->footer("The slow reader sleeps 20 us per message, so it is lapped and reports exactly what it\n"
              "lost. Ctrl-C stops early; the buffer is removed either way (exit code 130).");
  return {sub, RunDemo};
}

}  // namespace circbuf::tool
