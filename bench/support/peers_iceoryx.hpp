// Peer: iceoryx 2.0.3 (Debian iceoryx, libiceoryx-posh-dev), untyped API.
// Service "circbuf-bench/<run>/ping" carries main -> echo, ".../pong" echo -> main.
//
// Semantics, unlike circbuf: publish/subscribe through the RouDi daemon. A
// publisher loans a chunk from a mempool in shared memory and publishes it by
// pushing an 8-byte reference into each subscriber's own queue (capacity 256
// here, the maximum); the subscriber takes the reference and releases the
// chunk. Default policy, kept here: a full subscriber queue discards its
// OLDEST entry (lossy, like a lapped circbuf reader; the publisher never
// blocks), and loss is only reported as a flag, so Lost() counts gaps in the
// chunk headers' sequence numbers. A publisher that offers no history delivers
// nothing to a subscriber that connects later, and connecting goes through
// RouDi's discovery loop (100 ms): the main side waits until both directions
// are connected before the harness starts sending.
// iceoryx is zero-copy by design, but the harness's Send/Receive take and fill
// a buffer, so here Send copies into the loaned chunk and Receive copies out of
// the taken one, as circbuf's Write and Read do.
//   iceoryx-spin  take() polled in a loop
//   iceoryx       a WaitSet attached to the subscriber's HAS_DATA state; the
//                 publisher's push signals it (a futex wake)
//
// RouDi: started by the first iceoryx transport a run makes (fork + exec of
// CIRCBUF_IOX_ROUDI, -c a config file written here, under a small keeper
// process), ready when its socket /tmp/roudi appears, stopped by StopIceoryx()
// (SIGTERM; it then removes its shared memory, socket and lock file). If the
// benchmark dies, the keeper stops it too (see RouDiKeeper).
//
// One runtime per process per run: iceoryx allows one PoshRuntime per process,
// created by initRuntime and destroyed only at exit, and a runtime cannot be
// inherited across fork (its keep-alive thread and IPC socket stay with the
// parent). So each endpoint registers its own runtime (IoxRuntime, named
// cbb-iox-<pid>-<n>) when it is made and deregisters it when it is destroyed,
// through the hooks iceoryx's own tests use: PoshRuntimeImpl's protected
// constructor and PoshRuntime::setRuntimeFactory. The harness destroys the
// main endpoint before the next run forks, so no process forks while it holds
// a runtime, and every run of every payload size starts from scratch.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "iceoryx_hoofs/internal/relocatable_pointer/base_relative_pointer.hpp"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/internal/runtime/posh_runtime_impl.hpp"
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"

#include "support/harness.hpp"

namespace circbuf::bench {

// ---- RouDi --------------------------------------------------------------------

// Mempools for every payload the suite sends (8 .. 65535 bytes; a pool's size
// is the largest user payload it takes, the chunk header is added by RouDi).
// Counts: each direction may hold up to 256 chunks in its subscriber's queue,
// plus chunks of the previous run until RouDi has cleaned up its ports.
inline constexpr char kRouDiConfig[] = R"([general]
version = 1

[[segment]]

[[segment.mempool]]
size = 128
count = 2048

[[segment.mempool]]
size = 2048
count = 2048

[[segment.mempool]]
size = 65536
count = 1024
)";

inline constexpr char kRouDiSocket[] = "/tmp/roudi";     // its Unix socket
inline constexpr char kRouDiLock[] = "/tmp/roudi.lock";  // flocked while it runs

// Each runtime has a socket /tmp/cbb-iox-<pid>-<n> and a lock file beside it
// that it flocks; a process that was killed leaves both behind. Removes those
// whose lock nobody holds.
inline void SweepStaleRuntimeFiles() {
  DIR* const dir = ::opendir("/tmp");
  if (dir == nullptr) return;
  while (dirent const* entry = ::readdir(dir)) {
    std::string_view const name = entry->d_name;
    if (!name.starts_with("cbb-iox-") || !name.ends_with(".lock")) continue;
    std::string const lock = "/tmp/" + std::string(name);
    int const fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      ::unlink(lock.substr(0, lock.size() - 5).c_str());
      ::unlink(lock.c_str());
    }
    ::close(fd);
  }
  ::closedir(dir);
}

// The keeper: a child of the benchmark process whose own child is RouDi.
// SIGTERM from StopIceoryx stops RouDi at once. SIGTERM because the benchmark
// died (PR_SET_PDEATHSIG) first waits 3 s, so that RouDi's monitoring (keep-
// alive timeout 1.5 s) drops the dead applications: RouDi 2.0.3 asserts, and
// leaves its shared memory and sockets behind, when it is asked to stop while a
// registered process is already gone. Exits with RouDi's exit status.
[[noreturn]] inline void RouDiKeeper(pid_t benchmark, char const* config, int log) {
  sigset_t signals;
  ::sigemptyset(&signals);
  ::sigaddset(&signals, SIGTERM);
  ::sigaddset(&signals, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != benchmark) ::kill(::getpid(), SIGTERM);  // died before prctl
  pid_t const roudi = ::fork();
  if (roudi == 0) {
    ::pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // should the keeper itself be killed
    cpu_set_t all;                       // not the one CPU the benchmark pinned itself to
    CPU_ZERO(&all);
    for (int c = 0; c < CpuCount(); ++c) CPU_SET(c, &all);
    ::sched_setaffinity(0, sizeof all, &all);
    if (log >= 0) {  // RouDi prints its memory reservations whatever the log level
      ::dup2(log, STDOUT_FILENO);
      ::dup2(log, STDERR_FILENO);
    }
    ::execl(CIRCBUF_IOX_ROUDI, CIRCBUF_IOX_ROUDI, "-l", "warning", "-c", config, static_cast<char*>(nullptr));
    std::perror("iceoryx: exec " CIRCBUF_IOX_ROUDI);
    ::_exit(127);
  }
  if (roudi < 0) ::_exit(126);
  auto exit_code = [](int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); };
  int status = 0;
  for (;;) {
    int const sig = ::sigwaitinfo(&signals, nullptr);
    if (sig == SIGCHLD && ::waitpid(roudi, &status, WNOHANG) == roudi) ::_exit(exit_code(status));
    if (sig == SIGTERM) break;
  }
  bool const orphaned = ::getppid() != benchmark;
  if (orphaned) std::this_thread::sleep_for(std::chrono::seconds(3));
  ::kill(roudi, SIGTERM);
  ::waitpid(roudi, &status, 0);
  if (orphaned) SweepStaleRuntimeFiles();
  ::_exit(exit_code(status));
}

struct RouDi {
  pid_t keeper = -1;
  int log = -1;  // RouDi's stdout and stderr: an unlinked file, shown if it fails
  bool failed = false;
};
inline RouDi g_roudi;

inline void ShowRouDiLog() {
  if (g_roudi.log < 0) return;
  char text[4096];
  ssize_t const n = ::pread(g_roudi.log, text, sizeof text - 1, 0);
  if (n > 0) std::fprintf(stderr, "iox-roudi said:\n%.*s\n", static_cast<int>(n), text);
}

inline void StopIceoryx() {
  if (g_roudi.keeper > 0) {
    ::kill(g_roudi.keeper, SIGTERM);
    int status = 0;
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::waitpid(g_roudi.keeper, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr, "iceoryx: RouDi did not stop within 10 s: killed\n");
        ::kill(g_roudi.keeper, SIGKILL);  // RouDi gets SIGTERM (its PR_SET_PDEATHSIG)
        ::waitpid(g_roudi.keeper, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "iceoryx: RouDi stopped with status %d\n", status);
      ShowRouDiLog();
    }
    g_roudi.keeper = -1;
  }
  if (g_roudi.log >= 0) ::close(g_roudi.log);
  g_roudi.log = -1;
}

// Starts RouDi once per benchmark process; false (and a message) if it fails.
inline bool StartIceoryx() {
  if (g_roudi.keeper > 0) return true;
  if (g_roudi.failed) return false;
  g_roudi.failed = true;  // until proven otherwise
  // A running RouDi holds an flock on its lock file; without one, a socket
  // left by a RouDi that was killed is stale and would look ready.
  if (int const lock = ::open(kRouDiLock, O_RDONLY | O_CLOEXEC); lock >= 0) {
    bool const held = ::flock(lock, LOCK_EX | LOCK_NB) != 0;
    ::close(lock);
    if (held) {
      std::fprintf(stderr, "iceoryx: another RouDi is running (%s is locked); not starting ours\n", kRouDiLock);
      return false;
    }
  }
  ::unlink(kRouDiSocket);
  SweepStaleRuntimeFiles();
  char config[] = "/tmp/cbb-roudi-XXXXXX";
  int const fd = ::mkstemp(config);
  if (fd < 0 || ::write(fd, kRouDiConfig, sizeof kRouDiConfig - 1) != static_cast<ssize_t>(sizeof kRouDiConfig - 1)) {
    std::perror("iceoryx: RouDi config file");
    if (fd >= 0) ::close(fd);
    ::unlink(config);
    return false;
  }
  ::close(fd);
  char log[] = "/tmp/cbb-roudi-log-XXXXXX";
  g_roudi.log = ::mkostemp(log, O_CLOEXEC);
  if (g_roudi.log >= 0) ::unlink(log);
  std::fflush(nullptr);
  pid_t const benchmark = ::getpid();
  pid_t const keeper = ::fork();
  if (keeper == 0) RouDiKeeper(benchmark, config, g_roudi.log);
  if (keeper < 0) {
    std::perror("iceoryx: fork");
    ::unlink(config);
    StopIceoryx();
    return false;
  }
  g_roudi.keeper = keeper;
  // Ready when RouDi has created its shared memory and opened its socket.
  auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool ready = false;
  while (!ready && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(keeper, &status, WNOHANG) == keeper) {
      std::fprintf(stderr, "iceoryx: %s exited at start-up (status %d)\n", CIRCBUF_IOX_ROUDI, status);
      g_roudi.keeper = -1;
      ShowRouDiLog();
      break;
    }
    ready = ::access(kRouDiSocket, F_OK) == 0;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::unlink(config);  // read at start-up
  if (!ready) {
    if (g_roudi.keeper > 0) {
      std::fprintf(stderr, "iceoryx: RouDi not ready within 10 s\n");
      ShowRouDiLog();
    }
    StopIceoryx();
    return false;
  }
  // The applications' own log (default: everything down to debug) to warnings.
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                           iox::log::LogLevelOutput::kHideLogLevel);
  g_roudi.failed = false;
  return true;
}

// ---- Runtime ------------------------------------------------------------------

// This process's registration with RouDi, owned by an endpoint (unlike the
// runtime PoshRuntime::initRuntime makes, which lives until exit). Publishers
// and subscribers find it through PoshRuntime::getInstance(), which calls the
// factory installed here.
class IoxRuntime final : public iox::runtime::PoshRuntimeImpl {
 public:
  static std::unique_ptr<IoxRuntime> Start() {
    static int counter = 0;
    std::string const name = "cbb-iox-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    // Segment ids registered by an earlier runtime of this process (or of the
    // parent before fork) would make this one's registration fail.
    iox::rp::BaseRelativePointer::unregisterAll();
    iox::RuntimeName_t const n(iox::cxx::TruncateToCapacity, name.c_str());
    std::unique_ptr<IoxRuntime> runtime(new IoxRuntime(n));
    Current() = runtime.get();
    setRuntimeFactory(&Factory);
    return runtime;
  }
  ~IoxRuntime() override { Current() = nullptr; }  // then ~PoshRuntimeImpl deregisters from RouDi
  IoxRuntime(IoxRuntime const&) = delete;
  IoxRuntime& operator=(IoxRuntime const&) = delete;

 private:
  explicit IoxRuntime(iox::RuntimeName_t const& name)
      : PoshRuntimeImpl(iox::cxx::make_optional<iox::RuntimeName_t const*>(&name)) {}
  static IoxRuntime*& Current() {
    static IoxRuntime* current = nullptr;
    return current;
  }
  // The signature is iceoryx's factory type (PoshRuntime::factory_t): the optional by value.
  // NOLINTNEXTLINE(performance-unnecessary-value-param)
  static iox::runtime::PoshRuntime& Factory(iox::cxx::optional<iox::RuntimeName_t const*> /*name*/) noexcept {
    if (Current() == nullptr) {
      std::fprintf(stderr, "iceoryx: no runtime in this process\n");
      std::abort();
    }
    return *Current();
  }
};

// ---- Endpoint -----------------------------------------------------------------

class IoxEndpoint final : public Endpoint {
 public:
  IoxEndpoint(std::string const& run, char const* out, char const* in, bool spin, bool wait_for_peer)
      : runtime_(IoxRuntime::Start()), publisher_(Service(run, out)), subscriber_(Service(run, in)) {
    if (!spin) {
      waitset_ = std::make_unique<iox::popo::WaitSet<>>();
      if (waitset_->attachState(subscriber_, iox::popo::SubscriberState::HAS_DATA).has_error()) {
        throw std::runtime_error("iceoryx: cannot attach the subscriber to a WaitSet");
      }
    }
    if (!wait_for_peer) return;
    auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!publisher_.hasSubscribers() || subscriber_.getSubscriptionState() != iox::SubscribeState::SUBSCRIBED) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("iceoryx: peer not connected within 10 s (RouDi discovery)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ~IoxEndpoint() override { waitset_.reset(); }  // before the subscriber it is attached to
  IoxEndpoint(IoxEndpoint const&) = delete;
  IoxEndpoint& operator=(IoxEndpoint const&) = delete;

  void Send(std::span<std::byte const> m) override {
    for (auto start = std::chrono::steady_clock::time_point{};;) {
      auto loan = publisher_.loan(static_cast<std::uint32_t>(m.size()));
      if (!loan.has_error()) {
        std::memcpy(loan.value(), m.data(), m.size());
        publisher_.publish(loan.value());
        return;
      }
      // Out of chunks: a previous run's chunks not yet reclaimed by RouDi. Retry.
      auto const now = std::chrono::steady_clock::now();
      if (start == std::chrono::steady_clock::time_point{}) start = now;
      if (now - start > std::chrono::seconds(10)) {
        std::fprintf(stderr, "iceoryx: cannot loan a %zu-byte chunk for 10 s\n", m.size());
        std::abort();
      }
    }
  }

  std::size_t Receive(std::span<std::byte> out) override {
    for (;;) {
      auto taken = subscriber_.take();
      if (!taken.has_error()) {
        void const* payload = taken.value();
        auto const* header = iox::mepoo::ChunkHeader::fromUserPayload(payload);
        std::size_t const n = header->userPayloadSize();
        std::uint64_t const sequence = header->sequenceNumber();
        if (sequence > next_sequence_) lost_ += sequence - next_sequence_;  // the publisher counts from 0
        next_sequence_ = sequence + 1;
        std::memcpy(out.data(), payload, std::min(n, out.size()));
        subscriber_.release(payload);
        return n;
      }
      if (!waitset_) return 0;  // spin flavour: nothing yet
      waitset_->wait();         // blocking flavour: sleep until the queue has data
    }
  }
  [[nodiscard]] std::uint64_t Lost() const override { return lost_; }

 private:
  static iox::capro::ServiceDescription Service(std::string const& run, char const* event) {
    return {"circbuf-bench", iox::capro::IdString_t(iox::cxx::TruncateToCapacity, run.c_str()),
            iox::capro::IdString_t(iox::cxx::TruncateToCapacity, event)};
  }

  std::unique_ptr<IoxRuntime> runtime_;  // first made, last destroyed
  iox::popo::UntypedPublisher publisher_;
  iox::popo::UntypedSubscriber subscriber_;
  std::unique_ptr<iox::popo::WaitSet<>> waitset_;
  std::uint64_t next_sequence_ = 0;
  std::uint64_t lost_ = 0;
};

// A fresh pair of services per run, so that nothing of an earlier run (a
// port RouDi has not cleaned up yet) can connect to this one.
inline Transport IceoryxTransport(bool spin) {
  if (!StartIceoryx()) return {"", nullptr, nullptr};
  static int counter = 0;
  auto run = std::make_shared<std::string>(std::to_string(::getpid()) + "-" + std::to_string(counter++));
  return {spin ? "iceoryx-spin" : "iceoryx",
          [run, spin] { return std::make_unique<IoxEndpoint>(*run, "ping", "pong", spin, true); },
          [run, spin] { return std::make_unique<IoxEndpoint>(*run, "pong", "ping", spin, false); }};
}

}  // namespace circbuf::bench
