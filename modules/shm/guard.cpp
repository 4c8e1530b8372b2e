// circbuf.shm: the truncation guard (see InstallTruncationGuard in shm.cppm).
//
// Synchronization
//   * The registry is a fixed array of slots in static storage, so the
//     handler never allocates, locks or follows a pointer that could dangle.
//     A slot is taken with a CAS on `used`; its ranges are stored (release)
//     after the mapping exists and cleared before it is unmapped, so the
//     handler (acquire) only ever sees ranges that are mapped or were mapped
//     by an attachment that is being torn down in this very process.
//   * The handler runs on the thread whose access faulted. It sets the
//     slot's flag and bumps TruncationEvents() (seq_cst) *before* it replaces
//     the pages, so a thread that reads the zero pages afterwards finds the
//     flag set (in practice: the mmap's TLB shoot-down is a full barrier;
//     the C++ model has no notion of it).
//   * g_previous[] holds the handlers the guard replaced, oldest first: one
//     per installation that found another handler on top. They are written
//     under g_install_mutex while that other handler is installed, entry
//     first, then g_previous_count (release); the handler reads the count
//     (acquire) and only the entries below it.
//
// Chaining: a fault that is not circbuf's goes to the newest previous
// handler. An application's handler that replaced the guard and chains to
// it brings the same fault back to the guard, deeper on the same thread's
// stack: the guard then passes it to the next older previous handler, and
// past the oldest it takes the default action. So guard -> H -> guard never
// loops, and every handler in the chain sees the fault once (t_passing).
module;

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>

#include "../detail/log.hpp"

module circbuf.shm;

namespace circbuf {

namespace shm_impl {

struct GuardSlot {
  std::atomic<bool> used{false};
  std::atomic<std::uintptr_t> header{0};  // header (sizeof(SegmentHeader) bytes, read-write); 0: none
  std::atomic<std::uintptr_t> begin{0};   // user region [begin, end); 0: none
  std::atomic<std::uintptr_t> end{0};
  std::atomic<int> prot{PROT_READ};
  std::atomic<std::uint32_t> truncated{0};
};

GuardSlot g_slots[kGuardSlots];
std::atomic<std::size_t> g_slots_high{0};  // slots at and above this were never used
std::atomic<std::uint32_t> g_truncations{0};
std::atomic<bool> g_installed{false};
std::mutex g_install_mutex;
constexpr std::size_t kMaxPrevious = 8;
struct sigaction g_previous[kMaxPrevious]{};
std::atomic<std::size_t> g_previous_count{0};

// The fault that this thread is passing down the chain of previous handlers
// now (frame 0: none). Initial-exec TLS: no allocation on first use, which a
// signal handler must not risk.
struct Passing {
  std::uintptr_t frame;  // Chain's frame that passed it on
  int code;              // si_code and si_addr: the same fault when it comes back
  void* addr;
  std::size_t level;  // g_previous[count - 1 - level] has it
};
__attribute__((tls_model("initial-exec"))) thread_local Passing t_passing{};

bool Invocable(struct sigaction const& action) noexcept {
  if ((action.sa_flags & SA_SIGINFO) != 0) return action.sa_sigaction != nullptr;
  return action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN;
}

bool SameHandler(struct sigaction const& a, struct sigaction const& b) noexcept {
  bool const info = (a.sa_flags & SA_SIGINFO) != 0;
  if (info != ((b.sa_flags & SA_SIGINFO) != 0)) return false;
  return info ? a.sa_sigaction == b.sa_sigaction : a.sa_handler == b.sa_handler;
}

// Zero pages over [from, to), with `prot`. Raw system call: async-signal-safe,
// and no sanitizer interceptor runs inside the handler.
bool MapZeros(std::uintptr_t from, std::uintptr_t to, int prot) noexcept {
  long const r = ::syscall(SYS_mmap, from, to - from, prot, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return static_cast<std::uintptr_t>(r) == from;
}

// The fault is not ours: what would have happened without the guard. A
// fault that comes back from a previous handler (same si_code and si_addr,
// deeper on this thread's stack; stacks grow down on every Linux target)
// goes one handler further down the chain (see the top of this file). A
// handler that left with siglongjmp leaves t_passing behind; the next fault
// is then not deeper than it, or not the same, and starts at the newest.
void Chain(int signal, siginfo_t* info, void* context) noexcept {
  auto const frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
  int const code = info != nullptr ? info->si_code : 0;
  void* const addr = info != nullptr ? info->si_addr : nullptr;
  Passing const outer = t_passing;
  bool const again = outer.frame != 0 && frame < outer.frame && outer.code == code && outer.addr == addr;
  std::size_t const level = again ? outer.level + 1 : 0;
  std::size_t const count = g_previous_count.load(std::memory_order_acquire);
  if (level < count) {
    struct sigaction const& previous = g_previous[count - 1 - level];
    if (Invocable(previous)) {
      t_passing = {frame, code, addr, level};
      if ((previous.sa_flags & SA_SIGINFO) != 0) {
        previous.sa_sigaction(signal, info, context);
      } else {
        previous.sa_handler(signal);
      }
      t_passing = outer;
      return;
    }
  }
  // Default action. For a fault, returning repeats the access, which now
  // kills the process with SIGBUS at the right address; a SIGBUS sent with
  // kill() is raised again (it stays blocked until this handler returns).
  struct sigaction fallback{};
  fallback.sa_handler = SIG_DFL;
  ::sigemptyset(&fallback.sa_mask);
  ::sigaction(signal, &fallback, nullptr);
  if (info == nullptr || info->si_code <= 0) ::raise(signal);
}

void OnSigbus(int signal, siginfo_t* info, void* context) {
  int const saved_errno = errno;
  auto const addr = reinterpret_cast<std::uintptr_t>(info != nullptr ? info->si_addr : nullptr);
  std::size_t const high = g_slots_high.load(std::memory_order_acquire);
  for (std::size_t i = 0; addr != 0 && i < high; ++i) {
    GuardSlot& slot = g_slots[i];
    if (!slot.used.load(std::memory_order_acquire)) continue;
    std::uintptr_t const header = slot.header.load(std::memory_order_acquire);
    std::uintptr_t const begin = slot.begin.load(std::memory_order_acquire);
    std::uintptr_t const end = slot.end.load(std::memory_order_acquire);
    std::uintptr_t from = 0;
    std::uintptr_t to = 0;
    int prot = PROT_READ | PROT_WRITE;
    // Kernel pages (KernelPageSize() was read when the guard was installed,
    // so this is one relaxed load).
    std::uintptr_t const page = KernelPageSize();
    if (header != 0 && addr >= header && addr < header + sizeof(SegmentHeader)) {
      from = header;
      to = header + sizeof(SegmentHeader);  // mmap rounds a length up to whole pages
    } else if (begin != 0 && addr >= begin && addr < end) {
      // From the faulting page to the end of the mapping: the file ends
      // before this page. Pages before it that are also gone fault later
      // and come here again.
      from = addr & ~(page - 1);
      to = (end + page - 1) & ~(page - 1);
      prot = slot.prot.load(std::memory_order_relaxed);
    } else {
      continue;
    }
    slot.truncated.store(1, std::memory_order_seq_cst);
    g_truncations.fetch_add(1, std::memory_order_seq_cst);
    if (MapZeros(from, to, prot)) {
      errno = saved_errno;
      return;  // the access repeats and reads zeros
    }
    break;  // could not patch the mapping: let the fault take its course
  }
  errno = saved_errno;
  Chain(signal, info, context);
}

int GuardAcquire() noexcept {
  if (!g_installed.load(std::memory_order_acquire)) {
    try {
      InstallTruncationGuard();
    } catch (std::exception const& e) {
      detail::Log().error("shared memory: truncation guard not installed: {}", e.what());
    }
  }
  for (std::size_t i = 0; i < kGuardSlots; ++i) {
    bool expected = false;
    if (g_slots[i].used.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      g_slots[i].truncated.store(0, std::memory_order_relaxed);
      std::size_t high = g_slots_high.load(std::memory_order_relaxed);
      while (high < i + 1 && !g_slots_high.compare_exchange_weak(high, i + 1, std::memory_order_acq_rel)) {
      }
      return static_cast<int>(i);
    }
  }
  detail::Log().warn("shared memory: {} attachments in this process; the truncation guard covers the first {} only",
                     kGuardSlots + 1, kGuardSlots);
  return -1;
}

void GuardCoverHeader(int slot, void* header) noexcept {
  if (slot < 0) return;
  g_slots[slot].header.store(reinterpret_cast<std::uintptr_t>(header), std::memory_order_release);
}

void GuardCoverUser(int slot, void* user, std::size_t bytes, int prot) noexcept {
  if (slot < 0) return;
  GuardSlot& s = g_slots[slot];
  s.prot.store(prot, std::memory_order_relaxed);
  s.end.store(reinterpret_cast<std::uintptr_t>(user) + bytes, std::memory_order_release);
  s.begin.store(reinterpret_cast<std::uintptr_t>(user), std::memory_order_release);
}

void GuardRelease(int slot) noexcept {
  if (slot < 0) return;
  GuardSlot& s = g_slots[slot];
  s.begin.store(0, std::memory_order_release);
  s.end.store(0, std::memory_order_release);
  s.header.store(0, std::memory_order_release);
  s.used.store(false, std::memory_order_release);
}

bool GuardTruncated(int slot) noexcept {
  return slot >= 0 && g_slots[slot].truncated.load(std::memory_order_relaxed) != 0;
}

}  // namespace shm_impl

void InstallTruncationGuard() {
  using namespace shm_impl;
  std::lock_guard<std::mutex> const lock(g_install_mutex);
  (void)KernelPageSize();  // read now: the handler only loads it
  struct sigaction current{};
  if (::sigaction(SIGBUS, nullptr, &current) != 0) {
    throw std::system_error(errno, std::generic_category(), "sigaction(SIGBUS)");
  }
  if ((current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == &OnSigbus) {
    g_installed.store(true, std::memory_order_release);
    return;
  }
  struct sigaction ours{};
  ours.sa_sigaction = &OnSigbus;
  ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  ::sigemptyset(&ours.sa_mask);
  // `current` becomes the newest previous handler. If it is one already (an
  // application put back a handler the guard had replaced), the ones after
  // it are no longer installed anywhere: the chain ends with it.
  std::size_t count = g_previous_count.load(std::memory_order_relaxed);
  std::size_t known = count;
  for (std::size_t i = 0; i < count; ++i) {
    if (SameHandler(g_previous[i], current)) known = i;
  }
  if (known < count) {
    g_previous[known] = current;  // its flags and mask as they are now
    g_previous_count.store(known + 1, std::memory_order_release);
  } else {
    if (count == kMaxPrevious) {
      detail::Log().warn("shared memory: truncation guard installed over {} other SIGBUS handlers; "
                         "the newest replaces the one before it in its chain",
                         kMaxPrevious + 1);
      --count;
    }
    g_previous[count] = current;
    g_previous_count.store(count + 1, std::memory_order_release);
  }
  if (::sigaction(SIGBUS, &ours, nullptr) != 0) {
    throw std::system_error(errno, std::generic_category(), "sigaction(SIGBUS)");
  }
  g_installed.store(true, std::memory_order_release);
  detail::Log().debug("shared memory: truncation guard installed (SIGBUS)");
}

std::atomic<std::uint32_t> const& TruncationEvents() noexcept { return shm_impl::g_truncations; }

}  // namespace circbuf
