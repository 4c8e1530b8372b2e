// circbuf.sync: names and locks shared between unrelated processes.
//
// SemaphoreLock serialises the slow paths of circbuf (creating, attaching to
// and freeing shared memory) between processes that share nothing but a name.
//
// Crash behaviour (the reason this is more than sem_wait/sem_post):
//   A named POSIX semaphore is not released when its holder dies, so a holder
//   killed with SIGKILL would block every later process forever. SemaphoreLock
//   therefore pairs the semaphore with a kernel-released lock beside it: an
//   exclusive flock(2) on the semaphore's own file (/dev/shm/sem.NAME).
//   Exclusion comes from the flock, which the kernel drops when the holder's
//   process dies; the semaphore's count mirrors the lock (1 free, 0 held) for
//   anyone who looks at it. Acquire takes the flock first and then the
//   semaphore with sem_trywait. Because every holder posts the semaphore
//   before it drops the flock, a process that holds the flock and finds the
//   count at 0 knows that the previous holder died inside the critical
//   section: it takes over, logs a warning and reports Recovered().
//   Unlink() may remove the name while the lock is held (the last user of a
//   segment does so); a waiter that then gets the flock on the unlinked file
//   notices that the name now points elsewhere and reopens it.
module;

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include <semaphore.h>

export module circbuf.sync;

export namespace circbuf {

// Longest IPC name that circbuf accepts, leading '/' included. A named
// semaphore lives in /dev/shm as "sem." + name without its '/', and a file
// name has at most NAME_MAX (255) bytes: 255 - 4 + 1.
inline constexpr std::size_t kMaxNameLength = 252;

// Checks a POSIX IPC name: "/" followed by 1 .. 251 printable ASCII
// characters, none of them '/', and not "/." or "/..". Throws
// std::invalid_argument that names `what` (e.g. "semaphore") and the problem.
void ValidateName(std::string_view name, std::string_view what);

// Severity threshold of the library's "circbuf" spdlog logger.
enum class LogLevel : std::uint8_t { kTrace, kDebug, kInfo, kWarn, kError, kOff };
void SetLogLevel(LogLevel level);

// "No group change": the group of a new file stays the creator's.
inline constexpr gid_t kKeepGroup = static_cast<gid_t>(-1);

class SemaphoreLock {
 public:
  struct Options {
    mode_t mode = 0600;  // permissions of a newly created semaphore
    // Group of a newly created semaphore; kKeepGroup: the creator's. Set only
    // by the process that owns the file, best effort (SharedMemory checks
    // the same group on its segment and fails there if it cannot be set).
    gid_t group = kKeepGroup;
  };

  // Opens the named semaphore, creating it (count 1) if it does not exist.
  // Throws std::invalid_argument for a bad name, std::system_error (errno and
  // the name) when a system call fails.
  explicit SemaphoreLock(std::string_view name);
  SemaphoreLock(std::string_view name, Options options);
  ~SemaphoreLock();  // releases the lock if this object holds it

  SemaphoreLock(SemaphoreLock const&) = delete;
  SemaphoreLock& operator=(SemaphoreLock const&) = delete;
  SemaphoreLock(SemaphoreLock&& other) noexcept;
  SemaphoreLock& operator=(SemaphoreLock&& other) noexcept;

  // Blocks until the lock is held. Throws std::logic_error if already held.
  void Acquire();
  // Takes the lock if it is free now; false if another process holds it.
  [[nodiscard]] bool TryAcquire();
  // Waits at most `timeout`; false on timeout (the lock is then not held).
  [[nodiscard]] bool TryAcquireFor(std::chrono::nanoseconds timeout);
  // Releases the lock. Throws std::logic_error if it is not held.
  void Release();

  // True while this object holds the lock.
  [[nodiscard]] inline bool Held() const noexcept { return held_; }
  // True when the last acquisition took over from a holder that died inside.
  [[nodiscard]] inline bool Recovered() const noexcept { return recovered_; }
  // The semaphore's name, as given ("/NAME"; its file is /dev/shm/sem.NAME).
  [[nodiscard]] inline std::string const& Name() const noexcept { return name_; }

  // Removes the name (sem_unlink). Holders and waiters keep working; the next
  // process to open the name creates a fresh semaphore. ENOENT is not an error.
  void Unlink();
  // Removes a semaphore by name; false if it did not exist.
  static bool Remove(std::string_view name);

  // BasicLockable / TimedLockable spelling, so that std::unique_lock works.
  inline void lock() { Acquire(); }
  inline bool try_lock() { return TryAcquire(); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> const& timeout) {
    return TryAcquireFor(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  inline void unlock() { Release(); }

  // Scoped guard: acquires in the constructor, releases in the destructor.
  class Guard {
   public:
    explicit Guard(SemaphoreLock& lock) : lock_(&lock) { lock_->Acquire(); }
    // Adopts a lock that the caller already holds (after TryAcquireFor).
    Guard(SemaphoreLock& lock, std::adopt_lock_t /*unused*/) : lock_(&lock) {}
    // Release throws only if the lock is not held (checked here) or sem_post
    // fails, which means a broken semaphore: std::terminate is the answer.
    ~Guard() {  // NOLINT(bugprone-exception-escape)
      if (lock_->Held()) lock_->Release();
    }
    Guard(Guard const&) = delete;
    Guard& operator=(Guard const&) = delete;
    [[nodiscard]] bool Recovered() const noexcept { return lock_->Recovered(); }

   private:
    SemaphoreLock* lock_;
  };

 private:
  enum class Attempt : std::uint8_t { kBlock, kOnce, kUntil };
  bool AcquireImpl(Attempt attempt, std::chrono::steady_clock::time_point deadline);
  void Open();
  void Close() noexcept;

  std::string name_;
  std::string path_;  // the semaphore's file, /dev/shm/sem.NAME
  Options options_;
  sem_t* sem_ = nullptr;
  int fd_ = -1;  // open file description of path_, carries the flock
  pid_t owner_pid_ = 0;  // a forked child's copy never touches the lock
  bool held_ = false;
  bool recovered_ = false;
};

}  // namespace circbuf
