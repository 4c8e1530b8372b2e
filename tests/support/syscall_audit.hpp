// A system-call and page-fault audit of a stretch of code, in the process
// that runs it (the tests' "no system call on the hot path" checks and the
// benchmarks' audit run use the same one). Included before any import.
#pragma once

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace circbuf::audit {

// In the process that runs it: a seccomp filter that traps every system call
// except exit_group, rt_sigreturn and getrusage (which reads the fault
// counters), so that any system call made inside the audited loop is counted
// (and fails with ENOSYS). It cannot be removed: the process must leave with
// _exit (exit_group) right after the loop. Page faults: getrusage deltas.
struct Audit {
  std::atomic<std::uint64_t> syscalls{0};
  std::atomic<std::uint64_t> minor_faults{0};
  std::atomic<std::uint64_t> major_faults{0};
  std::atomic<std::uint64_t> operations{0};
  std::atomic<int> installed{0};
};
inline Audit* g_audit = nullptr;

inline void OnSigsys(int /*signal*/, siginfo_t* /*info*/, void* context) {
  if (g_audit != nullptr) g_audit->syscalls.fetch_add(1, std::memory_order_relaxed);
  auto* uc = static_cast<ucontext_t*>(context);
  uc->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
}

inline rusage Usage() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru;
}

// Starts the audit window. Returns false if seccomp is unavailable (then
// only faults are counted).
inline bool BeginAudit(Audit& a) {
  g_audit = &a;
  struct sigaction sa{};
  sa.sa_sigaction = OnSigsys;
  sa.sa_flags = SA_SIGINFO;
  ::sigaction(SIGSYS, &sa, nullptr);
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getrusage, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  bool const ok =
      ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
  a.installed = ok ? 1 : 0;
  rusage const ru = Usage();
  a.minor_faults = static_cast<std::uint64_t>(ru.ru_minflt);
  a.major_faults = static_cast<std::uint64_t>(ru.ru_majflt);
  return ok;
}

inline void EndAudit(Audit& a, std::uint64_t operations) {
  rusage const ru = Usage();
  a.minor_faults = static_cast<std::uint64_t>(ru.ru_minflt) - a.minor_faults;
  a.major_faults = static_cast<std::uint64_t>(ru.ru_majflt) - a.major_faults;
  a.operations = operations;
}

}  // namespace circbuf::audit
