// circbuf-demo: one writer and three reader processes on a fresh ring.
// Two readers keep up; the third is deliberately slow, so the writer laps it
// and it reports exactly how many messages it lost. Each reader checks every
// message it gets (sequence number and contents) and measures one-way latency
// from the writer's timestamp. The ring is removed at the end, also on Ctrl-C.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000U + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Result {
  char name[16];
  std::uint64_t received, bytes, lost, laps, bad, p50, p99, max;
  int done;
};

struct Shared {
  std::atomic<std::uint64_t> total;  // messages written, +1 once the writer is done
  Result readers[3];
};

// Message layout: sequence (8 bytes), send time (8 bytes), then bytes that
// depend on the sequence number.
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

int RunReader(cb::Spec const& spec, Shared& shared, int index, bool slow) {
  Result& r = shared.readers[index];
  cb::Reader reader(spec, {.start = cb::StartAt::kOldest});
  std::vector<std::byte> buf(65535);
  std::vector<std::uint32_t> latency;
  latency.reserve(1 << 22);
  for (;;) {
    int const n = reader.Read(buf);
    if (n > 0) {
      std::uint64_t sent = 0;
      std::memcpy(&sent, buf.data() + 8, 8);
      latency.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(NowNs() - sent, UINT32_MAX)));
      if (!Check(reader.NextSequence() - 1, std::span(buf.data(), static_cast<std::size_t>(n)))) ++r.bad;
      r.bytes += static_cast<std::uint64_t>(n);
      if (slow) std::this_thread::sleep_for(std::chrono::microseconds(20));
    } else if (n == cb::kLapped) {
      ++r.laps;
    } else if (n == cb::kEmpty) {
      std::uint64_t const total = shared.total.load();
      if ((total != 0 && reader.NextSequence() + 1 >= total) || g_stop != 0) break;
      (void)reader.Wait(std::chrono::milliseconds(1));
    } else {
      ++r.bad;
      break;
    }
  }
  r.received = reader.Delivered();
  r.lost = reader.Lost();
  if (!latency.empty()) {
    std::sort(latency.begin(), latency.end());
    r.p50 = latency[latency.size() / 2];
    r.p99 = latency[latency.size() * 99 / 100];
    r.max = latency.back();
  }
  r.done = 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  double const seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::string const name = "/circbuf-demo-" + std::to_string(::getpid());
  auto const spec = cb::Spec::Make(name, 1 << 20);
  auto* shared = static_cast<Shared*>(
      ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (shared) Shared{};
  char const* names[3] = {"fast-1", "fast-2", "slow"};
  try {
    cb::Writer writer(spec);
    std::printf("circbuf demo: ring %s, %llu bytes, writer pid %d, %.1f s\n", name.c_str(),
                static_cast<unsigned long long>(writer.Capacity()), ::getpid(), seconds);
    std::vector<pid_t> children;
    for (int i = 0; i < 3; ++i) {
      std::snprintf(shared->readers[i].name, sizeof shared->readers[i].name, "%s", names[i]);
      std::fflush(stdout);
      pid_t const pid = ::fork();
      if (pid == 0) {
        int code = 1;
        try {
          code = RunReader(spec, *shared, i, i == 2);
        } catch (std::exception const& e) {
          std::fprintf(stderr, "reader %s: %s\n", names[i], e.what());
        }
        ::_exit(code);
      }
      children.push_back(pid);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the readers attach
    // One message every 2 us (about 500,000 per second), paced by the clock.
    std::vector<std::byte> buf(65535);
    std::uint64_t const start = NowNs();
    std::uint64_t const end = start + static_cast<std::uint64_t>(seconds * 1e9);
    std::uint64_t next_report = start + 500'000'000;
    std::uint64_t seq = 0;
    for (std::uint64_t now = start; now < end && g_stop == 0; now = NowNs()) {
      if (now < start + seq * 2000) continue;
      std::size_t const n = SizeFor(seq);
      Fill(seq, std::span(buf.data(), n));
      writer.Write(std::span(buf.data(), n));
      ++seq;
      if (now >= next_report) {
        std::printf("\r  written %llu messages (%.0f per second)   ", static_cast<unsigned long long>(seq),
                    static_cast<double>(seq) / (static_cast<double>(now - start) / 1e9));
        std::fflush(stdout);
        next_report += 500'000'000;
      }
    }
    shared->total.store(seq + 1);
    std::printf("\r  written %llu messages in %.2f s%30s\n", static_cast<unsigned long long>(seq),
                static_cast<double>(NowNs() - start) / 1e9, "");
    for (pid_t pid : children) ::waitpid(pid, nullptr, 0);
    std::printf("\n  %-8s %10s %12s %10s %6s %6s %9s %9s %9s\n", "reader", "received", "bytes", "lost", "laps",
                "bad", "p50 ns", "p99 ns", "max ns");
    bool ok = true;
    for (auto const& r : shared->readers) {
      std::printf("  %-8s %10llu %12llu %10llu %6llu %6llu %9llu %9llu %9llu\n", r.name,
                  static_cast<unsigned long long>(r.received), static_cast<unsigned long long>(r.bytes),
                  static_cast<unsigned long long>(r.lost), static_cast<unsigned long long>(r.laps),
                  static_cast<unsigned long long>(r.bad), static_cast<unsigned long long>(r.p50),
                  static_cast<unsigned long long>(r.p99), static_cast<unsigned long long>(r.max));
      ok = ok && r.done == 1 && r.bad == 0 && (g_stop != 0 || r.received + r.lost == seq);
    }
    std::printf("\n  received + lost == written for every reader: %s\n", ok ? "yes" : "NO");
    std::printf("  (latency is one-way, writer to reader, on a machine with %u cores shared by 4 processes)\n",
                std::thread::hardware_concurrency());
    if (!ok) return 1;
  } catch (std::exception const& e) {
    std::fprintf(stderr, "circbuf-demo: %s\n", e.what());
    return 1;
  }
  std::printf("  ring %s removed: %s\n", name.c_str(), circbuf::SharedMemory::Exists(name) ? "no" : "yes");
  return 0;
}
