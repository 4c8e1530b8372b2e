// circbuf-torture: fault injection at scale (issue 6; docs/torture.md).
//
// One writer, --readers readers and --lockers lockers, each a separate
// process (fork+exec of this binary with --slot). Every round the controller
// SIGKILLs one random participant -- aimed at a random step of its role (it
// spins until the participant's published phase is that step), or after a
// random delay -- restarts it, and checks the invariants of docs/torture.md.
// At the end it stops everyone cleanly and checks that nothing is left in
// /dev/shm. Exit status 0: no violation; 1: violations (listed); 2: usage.
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "torture/board.hpp"

import circbuf;

namespace circbuf::torture {

namespace {

namespace cb = circbuf::CircularBuffer;

struct Options {
  std::uint64_t rounds = 300;
  double seconds = 0;  // > 0: also stop after this long
  std::uint64_t seed = 0;
  bool seed_given = false;
  int readers = 3;
  int lockers = 2;
  std::uint64_t capacity = 8192;
  std::uint64_t max_block_ms = 1000;
  std::uint64_t watchdog_ms = 10'000;
  std::uint64_t reopen_every = 500;
  bool verbose = false;
};

constexpr char const* kUsage =
    "usage: circbuf-torture [--rounds N] [--seconds S] [--seed S] [--readers N] [--lockers N]\n"
    "                       [--capacity BYTES] [--max-block-ms MS] [--watchdog-ms MS]\n"
    "                       [--reopen-every N] [--verbose]\n"
    "  --rounds N        kill + restart cycles (default 300)\n"
    "  --seconds S       also stop after S seconds (whichever comes first; default: no limit)\n"
    "  --seed S          random seed (default: from the clock; always printed)\n"
    "  --max-block-ms MS bound on every create/attach/detach/lock call (default 1000)\n"
    "  --watchdog-ms MS  a participant silent this long is a violation (default 10000)\n"
    "  --reopen-every N  mean operations between a participant's clean detach + reattach (default 500)\n";

std::vector<Phase> AimsFor(std::uint32_t role) {
  switch (role) {
    case kRoleWriter: return {kWriterOpen, kWriterIdle, kWriting, kClaimed, kCommitting, kWriterClose};
    case kRoleReader: return {kReaderOpen, kReading, kChecking, kReaderWait, kReaderClose};
    default: return {kLockOpen, kLockAcquire, kLockHeld, kLockRelease, kShmOpen, kShmInit, kShmHeld, kShmClose};
  }
}

// glibc's sem_open(O_CREAT) creates /dev/shm/sem.XXXXXX (6 random
// characters), fills it, then link()s it to sem.NAME and unlinks it.
bool LooksLikeSemTemporary(std::string const& file) {
  if (file.size() != 10 || !file.starts_with("sem.")) return false;
  return std::all_of(file.begin() + 4, file.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

std::vector<std::string> ShmFiles() {
  std::vector<std::string> files;
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent const* e = ::readdir(dir)) {
      std::string const f = e->d_name;
      if (f != "." && f != "..") files.push_back(f);
    }
    ::closedir(dir);
  }
  return files;
}

double Ms(std::uint64_t ns) { return static_cast<double>(ns) / 1e6; }

class Controller {
 public:
  Controller(Options const& o, Board& board, int board_fd)
      : o_(o), board_(board), board_fd_(board_fd), rng_(o.seed), slots_(1 + o.readers + o.lockers) {
    pids_.assign(static_cast<std::size_t>(slots_), -1);
    incarnations_.assign(static_cast<std::size_t>(slots_), 0);
    char exe[4096];
    ssize_t const n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) std::abort();
    exe_.assign(exe, static_cast<std::size_t>(n));
  }

  int Run() {
    tag_ = "cbtort-" + std::to_string(::getpid());
    Config& c = board_.config;
    std::snprintf(c.ring, sizeof c.ring, "/%s", tag_.c_str());
    std::snprintf(c.lock, sizeof c.lock, "/%s-lk", tag_.c_str());
    std::snprintf(c.segment, sizeof c.segment, "/%s-seg", tag_.c_str());
    c.seed = o_.seed;
    c.capacity = cb::Spec::Make(c.ring, o_.capacity).capacity;
    c.max_message = cb::MaxMessageFor(c.capacity);
    c.max_block_ns = o_.max_block_ms * 1'000'000;
    c.reopen_every = o_.reopen_every;
    for (int i = 0; i < slots_; ++i) {
      board_.slots[i].role = i == 0 ? kRoleWriter : i <= o_.readers ? kRoleReader : kRoleLocker;
    }
    for (auto const& f : ShmFiles()) {
      if (LooksLikeSemTemporary(f)) temporaries_before_.insert(f);
    }
    std::printf("circbuf-torture: seed %llu, %llu rounds%s, 1 writer, %d readers, %d lockers, capacity %llu "
                "(max message %llu), bound %llu ms, watchdog %llu ms, names /%s*\n",
                static_cast<unsigned long long>(o_.seed), static_cast<unsigned long long>(o_.rounds),
                o_.seconds > 0 ? (" or " + std::to_string(static_cast<long long>(o_.seconds)) + " s").c_str() : "",
                o_.readers, o_.lockers, static_cast<unsigned long long>(c.capacity),
                static_cast<unsigned long long>(c.max_message), static_cast<unsigned long long>(o_.max_block_ms),
                static_cast<unsigned long long>(o_.watchdog_ms), tag_.c_str());
    std::fflush(stdout);
    start_ns_ = NowNs();
    // The writer first, so that the ring exists before the readers attach.
    for (int i = 0; i < slots_ && violations_.empty(); ++i) {
      Spawn(i);
      WaitReady(i);
    }
    std::uint64_t round = 0;
    while (violations_.empty() && round < o_.rounds) {
      if (o_.seconds > 0 && static_cast<double>(NowNs() - start_ns_) / 1e9 >= o_.seconds) break;
      ++round;
      Round(round);
      if (o_.verbose || round % 1000 == 0) {
        std::printf("  round %llu: %.1f s\n", static_cast<unsigned long long>(round),
                    static_cast<double>(NowNs() - start_ns_) / 1e9);
        std::fflush(stdout);
      }
    }
    rounds_ = round;
    Stop();
    Leftovers();
    Summary();
    return violations_.empty() ? 0 : 1;
  }

 private:
  void Violation(std::string const& what) {
    if (violations_.size() < 50) std::fprintf(stderr, "circbuf-torture: VIOLATION: %s\n", what.c_str());
    violations_.push_back(what);
  }

  void Spawn(int slot) {
    Slot& s = board_.slots[slot];
    s.ready.store(0);
    s.pid.store(0);
    s.phase.store(kStarting);
    s.heartbeat_ns.store(NowNs());
    std::string const a_slot = std::to_string(slot);
    std::string const a_fd = std::to_string(board_fd_);
    std::string const a_inc = std::to_string(++incarnations_[static_cast<std::size_t>(slot)]);
    pid_t const parent = ::getpid();
    std::fflush(nullptr);
    pid_t const pid = ::fork();
    if (pid < 0) {
      Violation("fork failed");
      return;
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the controller
      if (::getppid() != parent) ::_exit(3);
      ::execl(exe_.c_str(), exe_.c_str(), "--slot", a_slot.c_str(), "--board-fd", a_fd.c_str(), "--incarnation",
              a_inc.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    pids_[static_cast<std::size_t>(slot)] = pid;
  }

  [[nodiscard]] std::string Who(int slot) const {
    Slot const& s = board_.slots[slot];
    char const* role = s.role == kRoleWriter ? "writer" : s.role == kRoleReader ? "reader" : "locker";
    return std::string(role) + " (slot " + std::to_string(slot) + ", pid " +
           std::to_string(pids_[static_cast<std::size_t>(slot)]) + ", phase " + PhaseName(s.phase.load()) + ")";
  }

  // Reaps a participant that exited by itself: always a violation before Stop.
  bool Exited(int slot) {
    pid_t& pid = pids_[static_cast<std::size_t>(slot)];
    if (pid <= 0) return true;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != pid) return false;
    Violation(Who(slot) + " exited by itself with " +
              (WIFEXITED(status) ? "code " + std::to_string(WEXITSTATUS(status))
                                 : "signal " + std::to_string(WTERMSIG(status))) +
              ": " + board_.slots[slot].message);
    pid = -1;
    return true;
  }

  void WaitReady(int slot) {
    Slot const& s = board_.slots[slot];
    auto const deadline = NowNs() + o_.watchdog_ms * 1'000'000;
    while (s.ready.load(std::memory_order_acquire) == 0) {
      if (Exited(slot)) return;
      if (NowNs() > deadline) {
        Violation(Who(slot) + " not ready within the watchdog (" + std::to_string(o_.watchdog_ms) + " ms)");
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  std::uint64_t Random(std::uint64_t below) { return below == 0 ? 0 : rng_() % below; }

  void Round(std::uint64_t round) {
    int const victim = static_cast<int>(Random(static_cast<std::uint64_t>(slots_)));
    Slot& s = board_.slots[victim];
    if (Random(4) != 0) {  // aimed at a step of its role
      auto const aims = AimsFor(s.role);
      Phase const target = aims[Random(aims.size())];
      ++aimed_;
      auto const deadline = NowNs() + 50'000'000;
      while (s.phase.load(std::memory_order_acquire) != target && NowNs() < deadline) ::sched_yield();
      if (s.phase.load(std::memory_order_acquire) == target) ++hits_;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(Random(5000)));
    }
    pid_t const pid = pids_[static_cast<std::size_t>(victim)];
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pids_[static_cast<std::size_t>(victim)] = -1;
    std::uint32_t const phase = s.phase.load(std::memory_order_acquire);
    ++kills_[std::min<std::uint32_t>(phase, kPhaseCount - 1)];
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      Violation("round " + std::to_string(round) + ": " + Who(victim) + " had exited before the kill (status " +
                std::to_string(status) + "): " + s.message);
    }
    if (o_.verbose) {
      std::printf("  round %llu: killed %s\n", static_cast<unsigned long long>(round), Who(victim).c_str());
    }
    if (s.role == kRoleReader) Harvest(victim);
    Spawn(victim);
    WaitReady(victim);
    // Let everyone run a little with the newcomer before checking.
    std::this_thread::sleep_for(std::chrono::microseconds(Random(3000)));
    Check(round);
  }

  // A killed reader's current Reader object: its accounting as last published.
  void Harvest(int slot) {
    Slot& s = board_.slots[slot];
    Counts c = Snapshot(s);
    if (c.incarnation != 0) {
      CheckAccounting(slot, c, "killed");
      killed_delivered_ += c.delivered;
      killed_lost_ += c.lost;
      ++killed_readers_;
    }
    // Nobody owns the slot until the restart: close the record, keep the totals.
    c.incarnation = 0;
    c.delivered = c.lost = c.lib_delivered = c.lib_lost = 0;
    Publish(s, c);
  }

  void CheckAccounting(int slot, Counts const& c, char const* when) {
    std::string const who = Who(slot) + ", " + when + " Reader #" + std::to_string(c.incarnation);
    if (c.next < c.start || c.delivered + c.lost != c.next - c.start) {
      Violation(who + ": delivered " + std::to_string(c.delivered) + " + lost " + std::to_string(c.lost) + " != next " +
                std::to_string(c.next) + " - start " + std::to_string(c.start));
    }
    if (c.delivered != c.lib_delivered || c.lost != c.lib_lost) {
      Violation(who + ": Reader::Delivered/Lost " + std::to_string(c.lib_delivered) + "/" + std::to_string(c.lib_lost) +
                " differ from its own counts " + std::to_string(c.delivered) + "/" + std::to_string(c.lost));
    }
    std::uint64_t const high = board_.slots[0].writer_high.load(std::memory_order_acquire);
    if (c.next > high) {
      Violation(who + ": accounted up to sequence " + std::to_string(c.next) + " but writers reached only " +
                std::to_string(high));
    }
  }

  void Check(std::uint64_t round) {
    std::uint64_t const now = NowNs();
    for (int i = 0; i < slots_; ++i) {
      Slot& s = board_.slots[i];
      if (Exited(i)) continue;
      if (s.failures.load() != seen_failures_[i]) {
        seen_failures_[i] = s.failures.load();
        Violation("round " + std::to_string(round) + ": " + Who(i) + " reported: " + s.message);
      }
      std::uint64_t const beat = s.heartbeat_ns.load(std::memory_order_acquire);
      if (now > beat && now - beat > o_.watchdog_ms * 1'000'000) {
        Violation("round " + std::to_string(round) + ": " + Who(i) + " silent for " +
                  std::to_string((now - beat) / 1'000'000) + " ms");
      }
      for (std::uint32_t op = 0; op < kOpCount; ++op) {
        if (s.max_block_ns[op].load() > o_.max_block_ms * 1'000'000 && !over_bound_[i][op]) {
          over_bound_[i][op] = true;
          Violation(Who(i) + ": " + OpName(op) + " blocked " + std::to_string(Ms(s.max_block_ns[op].load())) +
                    " ms (bound " + std::to_string(o_.max_block_ms) + " ms)");
        }
      }
      if (s.role == kRoleReader) {
        Counts const c = Snapshot(s);
        if (c.incarnation != 0) CheckAccounting(i, c, "live");
      }
    }
  }

  void Stop() {
    board_.stop.store(1, std::memory_order_release);
    auto const deadline = NowNs() + o_.watchdog_ms * 1'000'000;
    for (int i = 0; i < slots_; ++i) {
      pid_t& pid = pids_[static_cast<std::size_t>(i)];
      while (pid > 0) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
          if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            Violation("stop: " + Who(i) + " ended with status " + std::to_string(status) + ": " +
                      board_.slots[i].message);
          }
          pid = -1;
        } else if (NowNs() > deadline) {
          Violation("stop: " + Who(i) + " did not finish within the watchdog; killed");
          ::kill(pid, SIGKILL);
          ::waitpid(pid, &status, 0);
          pid = -1;
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
    }
    end_ns_ = NowNs();
    for (int i = 0; i < slots_; ++i) {
      Slot& s = board_.slots[i];
      if (s.failures.load() != seen_failures_[i]) Violation("stop: " + Who(i) + " reported: " + s.message);
      if (s.role != kRoleReader) continue;
      Counts const c = Snapshot(s);
      if (c.incarnation != 0) Violation("stop: " + Who(i) + " did not close its Reader");
      delivered_ += c.closed_delivered;
      lost_ += c.closed_lost;
      closed_readers_ += c.closed_readers;
    }
  }

  void Leftovers() {
    std::string const lock_file = "sem." + tag_ + "-lk";
    for (auto const& f : ShmFiles()) {
      if (f == lock_file) {
        // The lockers' plain SemaphoreLock: SemaphoreLock never unlinks its
        // own name (that is Unlink/Remove, the application's call), so the
        // application -- this controller -- removes it.
        SemaphoreLock::Remove(board_.config.lock);
        app_lock_removed_ = true;
      } else if (f.find(tag_) != std::string::npos) {
        leftovers_.push_back(f);
        Violation("left in /dev/shm after everyone is gone: " + f);
      } else if (LooksLikeSemTemporary(f) && !temporaries_before_.contains(f)) {
        struct stat st{};
        if (::stat(("/dev/shm/" + f).c_str(), &st) != 0) continue;  // someone else's, in flight
        auto const mtime = static_cast<std::uint64_t>(st.st_mtim.tv_sec);
        if (mtime + 1 < static_cast<std::uint64_t>(start_wall_)) continue;
        temporaries_.push_back(f);
      }
    }
    for (auto const& f : temporaries_) {
      Violation("glibc sem_open temporary left in /dev/shm: " + f);
    }
  }

  void Summary() {
    double const seconds = static_cast<double>(end_ns_ - start_ns_) / 1e9;
    std::uint64_t kills = 0;
    for (auto k : kills_) kills += k;
    Slot const& w = board_.slots[0];
    std::uint64_t const total = board_.final_total.load();
    std::printf("circbuf-torture: %s after %llu rounds in %.1f s (seed %llu)\n",
                violations_.empty() ? "PASSED" : "FAILED", static_cast<unsigned long long>(rounds_), seconds,
                static_cast<unsigned long long>(o_.seed));
    std::printf("  kills: %llu (%llu aimed at a step, %llu of them landed in it), by phase at death:\n",
                static_cast<unsigned long long>(kills), static_cast<unsigned long long>(aimed_),
                static_cast<unsigned long long>(hits_));
    for (std::uint32_t p = 0; p < kPhaseCount; ++p) {
      if (kills_[p] != 0) std::printf("    %-13s %llu\n", PhaseName(p), static_cast<unsigned long long>(kills_[p]));
    }
    std::printf("  writer: %llu opens, %llu take-overs of a dead writer, %llu ring creations; %llu messages "
                "and %llu gap records committed, final sequence %llu\n",
                static_cast<unsigned long long>(w.writer_opens.load()),
                static_cast<unsigned long long>(w.took_over.load()),
                static_cast<unsigned long long>(w.ring_created.load()),
                static_cast<unsigned long long>(w.messages_written.load()),
                static_cast<unsigned long long>(w.gaps_written.load()),
                static_cast<unsigned long long>(total == 0 ? 0 : total - 1));
    std::uint64_t laps = 0;
    std::uint64_t unsynced = 0;
    std::uint64_t recovered = 0;
    for (int i = 0; i < slots_; ++i) {
      laps += board_.slots[i].laps.load();
      unsynced += board_.slots[i].unsynced_starts.load();
      recovered += board_.slots[i].lock_recovered.load();
    }
    std::uint64_t const delivered = delivered_ + killed_delivered_;
    std::uint64_t const lost = lost_ + killed_lost_;
    std::printf("  readers: %llu Reader objects closed cleanly + %llu killed; delivered %llu (all checked), lost "
                "%llu (counted), %llu laps, %llu unsynced starts\n",
                static_cast<unsigned long long>(closed_readers_), static_cast<unsigned long long>(killed_readers_),
                static_cast<unsigned long long>(delivered), static_cast<unsigned long long>(lost),
                static_cast<unsigned long long>(laps), static_cast<unsigned long long>(unsynced));
    std::printf("  lockers: %llu acquisitions took over a lock whose holder died\n",
                static_cast<unsigned long long>(recovered));
    std::printf("  max blocking (bound %llu ms):\n", static_cast<unsigned long long>(o_.max_block_ms));
    for (std::uint32_t op = 0; op < kOpCount; ++op) {
      std::uint64_t worst = 0;
      std::uint64_t count = 0;
      for (int i = 0; i < slots_; ++i) {
        worst = std::max(worst, board_.slots[i].max_block_ns[op].load());
        count += board_.slots[i].ops[op].load();
      }
      std::printf("    %-24s %9.3f ms over %llu calls\n", OpName(op), Ms(worst),
                  static_cast<unsigned long long>(count));
    }
    std::printf("  /dev/shm after the end: %zu circbuf leftovers, %zu glibc sem_open temporaries%s\n",
                leftovers_.size(), temporaries_.size(),
                app_lock_removed_ ? " (the lockers' own SemaphoreLock name removed by the controller)" : "");
    if (!violations_.empty()) {
      std::printf("  %zu violation(s); first: %s\n", violations_.size(), violations_.front().c_str());
    }
    std::printf("  reproduce: circbuf-torture --seed %llu --rounds %llu\n", static_cast<unsigned long long>(o_.seed),
                static_cast<unsigned long long>(rounds_));
  }

 public:
  time_t start_wall_ = ::time(nullptr);

 private:
  Options const& o_;
  Board& board_;
  int board_fd_;
  std::mt19937_64 rng_;
  int slots_;
  std::string exe_;
  std::string tag_;
  std::vector<pid_t> pids_;
  std::vector<std::uint64_t> incarnations_;
  std::uint64_t seen_failures_[kMaxSlots]{};
  bool over_bound_[kMaxSlots][kOpCount]{};
  std::uint64_t kills_[kPhaseCount]{};
  std::uint64_t aimed_ = 0, hits_ = 0, rounds_ = 0;
  std::uint64_t start_ns_ = 0, end_ns_ = 0;
  std::uint64_t delivered_ = 0, lost_ = 0, closed_readers_ = 0;
  std::uint64_t killed_delivered_ = 0, killed_lost_ = 0, killed_readers_ = 0;
  std::set<std::string> temporaries_before_;
  std::vector<std::string> temporaries_;
  std::vector<std::string> leftovers_;
  std::vector<std::string> violations_;
  bool app_lock_removed_ = false;
};

bool ParseNumber(char const* text, std::uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  out = std::strtoull(text, &end, 10);
  return errno == 0 && end != text && *end == '\0';
}

int Main(int argc, char** argv) {
  Options o;
  int slot = -1;
  int board_fd = -1;
  std::uint64_t incarnation = 0;
  bool usage_error = false;
  for (int i = 1; i < argc && !usage_error; ++i) {
    std::string_view const a = argv[i];
    auto number = [&](std::uint64_t& out) {
      if (i + 1 >= argc || !ParseNumber(argv[i + 1], out)) {
        std::fprintf(stderr, "circbuf-torture: %s needs a number\n%s", argv[i], kUsage);
        usage_error = true;  // the loop stops; exit status 2 below
        return;
      }
      ++i;
    };
    std::uint64_t v = 0;
    if (a == "--rounds") {
      number(o.rounds);
    } else if (a == "--seconds") {
      number(v);
      o.seconds = static_cast<double>(v);
    } else if (a == "--seed") {
      number(o.seed);
      o.seed_given = true;
    } else if (a == "--readers") {
      number(v);
      o.readers = static_cast<int>(v);
    } else if (a == "--lockers") {
      number(v);
      o.lockers = static_cast<int>(v);
    } else if (a == "--capacity") {
      number(o.capacity);
    } else if (a == "--max-block-ms") {
      number(o.max_block_ms);
    } else if (a == "--watchdog-ms") {
      number(o.watchdog_ms);
    } else if (a == "--reopen-every") {
      number(o.reopen_every);
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--slot") {  // participant (internal)
      number(v);
      slot = static_cast<int>(v);
    } else if (a == "--board-fd") {
      number(v);
      board_fd = static_cast<int>(v);
    } else if (a == "--incarnation") {
      number(incarnation);
    } else if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else {
      std::fprintf(stderr, "circbuf-torture: unknown argument %s\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (usage_error) return 2;
  if (slot >= 0) {
    void* p = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED, board_fd, 0);
    if (p == MAP_FAILED || slot >= kMaxSlots) return 3;
    ::close(board_fd);
    // Recoveries are expected here (the board counts them); CIRCBUF_TORTURE_LOG=1 shows the library's log.
    if (std::getenv("CIRCBUF_TORTURE_LOG") == nullptr) SetLogLevel(LogLevel::kOff);
    return RunParticipant(*static_cast<Board*>(p), slot, incarnation);
  }
  if (o.readers < 1 || o.lockers < 0 || 1 + o.readers + o.lockers > kMaxSlots || o.reopen_every == 0) {
    std::fprintf(stderr, "circbuf-torture: 1 .. %d readers, lockers >= 0, at most %d participants\n", kMaxSlots - 2,
                 kMaxSlots);
    return 2;
  }
  try {
    (void)cb::Spec::Make("/cbtort-check", o.capacity);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "circbuf-torture: --capacity: %s\n", e.what());
    return 2;
  }
  if (!o.seed_given) o.seed = std::random_device{}() ^ NowNs();
  int const fd = ::memfd_create("circbuf-torture-board", 0);  // inherited across exec: no MFD_CLOEXEC
  if (fd < 0 || ::ftruncate(fd, sizeof(Board)) != 0) return 3;
  void* p = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 3;
  auto* board = new (p) Board{};
  SetLogLevel(LogLevel::kOff);
  Controller controller(o, *board, fd);
  return controller.Run();
}

}  // namespace

}  // namespace circbuf::torture

int main(int argc, char** argv) { return circbuf::torture::Main(argc, argv); }
