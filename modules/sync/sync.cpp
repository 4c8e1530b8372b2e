module;

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <semaphore.h>

#include "../detail/log.hpp"

module circbuf.sync;

namespace circbuf {

// No anonymous namespace in module implementation units (GCC 14 ICE, see
// docs/toolchain-notes.md).
namespace sync_impl {

[[noreturn]] void ThrowErrno(int error, std::string const& what) {
  throw std::system_error(error, std::generic_category(), what);
}

std::string Quoted(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    auto const u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out + "\"";
}

// Creates the semaphore file `path` (count 1) unless it exists. glibc's
// sem_open(O_CREAT) builds it in a named temporary, /dev/shm/sem.XXXXXX, and
// link()s that into place: a process killed in between leaves the temporary
// behind for good, and nothing can tell whose it was (found by
// circbuf-torture). Here it is built in an unnamed file (O_TMPFILE), which
// vanishes with its process, and linked into place through /proc. False if
// that is not possible here (no O_TMPFILE on the file system, no /proc):
// then the caller falls back to sem_open(O_CREAT).
bool CreateSemaphoreFile(std::string const& path, mode_t mode) {
  int const fd = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd < 0) return false;
  sem_t initial{};
  bool ok = ::sem_init(&initial, 1, 1) == 0 &&  // what sem_open(O_CREAT) writes: shared, count 1
            ::write(fd, &initial, sizeof initial) == static_cast<ssize_t>(sizeof initial) && ::fchmod(fd, mode) == 0;
  if (ok) {
    std::string const self = "/proc/self/fd/" + std::to_string(fd);
    ok = ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0 || errno == EEXIST;
  }
  ::close(fd);
  return ok;
}

}  // namespace sync_impl
using namespace sync_impl;

void ValidateName(std::string_view name, std::string_view what) {
  auto fail = [&](std::string const& why) {
    throw std::invalid_argument(std::string(what) + " name " + Quoted(name) + ": " + why);
  };
  if (name.empty()) fail("empty; must be '/' followed by 1 .. 251 characters");
  if (name.front() != '/') fail("must start with '/'");
  if (name.size() < 2) fail("too short; must be '/' followed by 1 .. 251 characters");
  if (name.size() > kMaxNameLength) {
    fail("too long (" + std::to_string(name.size()) + " characters); at most " + std::to_string(kMaxNameLength) +
         " including the leading '/'");
  }
  if (name == "/." || name == "/..") fail("'.' and '..' are not names");
  for (std::size_t i = 1; i < name.size(); ++i) {
    auto const c = static_cast<unsigned char>(name[i]);
    if (c == '/') fail("'/' at position " + std::to_string(i) + "; only the first character may be '/'");
    if (c < 0x21 || c > 0x7e) {
      fail("character " + std::to_string(c) + " at position " + std::to_string(i) +
           "; use printable ASCII without spaces");
    }
  }
}

void SetLogLevel(LogLevel level) {
  static constexpr spdlog::level::level_enum kMap[] = {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                                                       spdlog::level::warn,  spdlog::level::err,   spdlog::level::off};
  detail::Log().set_level(kMap[static_cast<std::size_t>(level)]);
}

SemaphoreLock::SemaphoreLock(std::string_view name) : SemaphoreLock(name, Options{}) {}

SemaphoreLock::SemaphoreLock(std::string_view name, Options options)
    : name_(name), options_(options), owner_pid_(::getpid()) {
  ValidateName(name, "semaphore");
  path_ = "/dev/shm/sem." + name_.substr(1);
  Open();
}

SemaphoreLock::~SemaphoreLock() {
  if (held_ && owner_pid_ == ::getpid()) {
    try {
      Release();
    } catch (std::exception const& e) {
      detail::Log().error("semaphore {}: release in destructor failed: {}", name_, e.what());
    }
  }
  Close();
}

SemaphoreLock::SemaphoreLock(SemaphoreLock&& other) noexcept
    : name_(std::move(other.name_)),
      path_(std::move(other.path_)),
      options_(other.options_),
      sem_(std::exchange(other.sem_, nullptr)),
      fd_(std::exchange(other.fd_, -1)),
      owner_pid_(other.owner_pid_),
      held_(std::exchange(other.held_, false)),
      recovered_(other.recovered_) {}

SemaphoreLock& SemaphoreLock::operator=(SemaphoreLock&& other) noexcept {
  if (this != &other) {
    if (held_ && owner_pid_ == ::getpid()) {
      try {
        Release();
      } catch (std::exception const& e) {
        detail::Log().error("semaphore {}: release in move-assignment failed: {}", name_, e.what());
      }
    }
    Close();
    name_ = std::move(other.name_);
    path_ = std::move(other.path_);
    options_ = other.options_;
    sem_ = std::exchange(other.sem_, nullptr);
    fd_ = std::exchange(other.fd_, -1);
    owner_pid_ = other.owner_pid_;
    held_ = std::exchange(other.held_, false);
    recovered_ = other.recovered_;
  }
  return *this;
}

void SemaphoreLock::Open() {
  // Opens the semaphore, or creates it atomically (count 1) without leaving a
  // temporary behind if killed. Another process may unlink the name between sem_open
  // and the open of its file (the last user of a segment does, and so does a
  // refused attach): then both are opened again.
  for (int attempt = 0;; ++attempt) {
    sem_ = ::sem_open(name_.c_str(), 0);  // an existing one
    if (sem_ == SEM_FAILED && errno == ENOENT) {
      // Create it (see CreateSemaphoreFile), then open whatever is there now.
      sem_ = CreateSemaphoreFile(path_, options_.mode) ? ::sem_open(name_.c_str(), 0)
                                                       : ::sem_open(name_.c_str(), O_CREAT, options_.mode, 1U);
      if (sem_ == SEM_FAILED && errno == ENOENT && attempt < 100) continue;  // unlinked meanwhile
    }
    if (sem_ == SEM_FAILED) {
      sem_ = nullptr;
      ThrowErrno(errno, "sem_open(" + Quoted(name_) + ")");
    }
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd_ >= 0) break;
    int const error = errno;
    ::sem_close(sem_);
    sem_ = nullptr;
    if (error != ENOENT || attempt >= 100) {
      ThrowErrno(error, "open(" + Quoted(path_) + ") for the lock beside semaphore " + Quoted(name_));
    }
  }
  // umask may have stripped bits from the mode: set it (and the group) exactly
  // when this process owns the file (best effort; only the owner may, and
  // only that matters). The group first: fchown may clear mode bits.
  struct stat st{};
  if (::fstat(fd_, &st) == 0 && st.st_uid == ::geteuid()) {
    if (options_.group != kKeepGroup && st.st_gid != options_.group)
      (void)::fchown(fd_, static_cast<uid_t>(-1), options_.group);
    if ((st.st_mode & 07777) != options_.mode || options_.group != kKeepGroup) ::fchmod(fd_, options_.mode);
  }
}

void SemaphoreLock::Close() noexcept {
  if (sem_ != nullptr) ::sem_close(sem_);
  if (fd_ >= 0) ::close(fd_);
  sem_ = nullptr;
  fd_ = -1;
}

void SemaphoreLock::Acquire() { AcquireImpl(Attempt::kBlock, {}); }

bool SemaphoreLock::TryAcquire() { return AcquireImpl(Attempt::kOnce, {}); }

bool SemaphoreLock::TryAcquireFor(std::chrono::nanoseconds timeout) {
  return AcquireImpl(Attempt::kUntil, std::chrono::steady_clock::now() + timeout);
}

bool SemaphoreLock::AcquireImpl(Attempt attempt, std::chrono::steady_clock::time_point deadline) {
  if (held_) throw std::logic_error("semaphore " + Quoted(name_) + ": already held by this object");
  if (owner_pid_ != ::getpid()) {
    throw std::logic_error("semaphore " + Quoted(name_) + ": object was created in another process");
  }
  auto backoff = std::chrono::microseconds(20);
  for (;;) {
    if (fd_ < 0) Open();
    // 1. The kernel-released lock. flock has no timeout, so timed attempts
    //    poll with a capped exponential back-off (slow path only).
    int const how = attempt == Attempt::kBlock ? LOCK_EX : LOCK_EX | LOCK_NB;
    if (::flock(fd_, how) != 0) {
      int const error = errno;
      if (error == EINTR) continue;
      if (error != EWOULDBLOCK) ThrowErrno(error, "flock(" + Quoted(path_) + ")");
      if (attempt == Attempt::kOnce) return false;
      auto const now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(backoff, deadline - now));
      backoff = std::min(backoff * 2, std::chrono::microseconds(1000));
      continue;
    }
    // 2. Is the file we locked still the one the name points to? The last
    //    user of a segment unlinks the name while holding the lock.
    struct stat mine{};
    struct stat named{};
    if (::fstat(fd_, &mine) != 0 || ::stat(path_.c_str(), &named) != 0 || mine.st_ino != named.st_ino ||
        mine.st_dev != named.st_dev) {
      ::flock(fd_, LOCK_UN);
      Close();
      detail::Log().debug("semaphore {}: name was unlinked while waiting; reopening", name_);
      continue;
    }
    // 3. The semaphore itself. Holders post before they drop the flock, so a
    //    count of 0 here means the previous holder died holding the lock.
    recovered_ = false;
    if (::sem_trywait(sem_) != 0) {
      int const error = errno;
      if (error != EAGAIN) {
        ::flock(fd_, LOCK_UN);
        ThrowErrno(error, "sem_trywait(" + Quoted(name_) + ")");
      }
      recovered_ = true;
      detail::Log().warn("semaphore {}: previous holder died while holding the lock; taking it over", name_);
    }
    held_ = true;
    return true;
  }
}

void SemaphoreLock::Release() {
  if (!held_) throw std::logic_error("semaphore " + Quoted(name_) + ": released but not held");
  if (owner_pid_ != ::getpid()) {
    // A forked child's copy shares the parent's open file description: dropping
    // the flock here would drop the parent's lock.
    throw std::logic_error("semaphore " + Quoted(name_) + ": held by the process that forked this one");
  }
  held_ = false;
  int const post = ::sem_post(sem_);  // [L1] count back to 1 before the flock goes (see Acquire step 3)
  int const post_error = errno;
  ::flock(fd_, LOCK_UN);
  if (post != 0) ThrowErrno(post_error, "sem_post(" + Quoted(name_) + ")");
}

void SemaphoreLock::Unlink() {
  if (::sem_unlink(name_.c_str()) != 0 && errno != ENOENT) {
    ThrowErrno(errno, "sem_unlink(" + Quoted(name_) + ")");
  }
  detail::Log().debug("semaphore {}: unlinked", name_);
}

bool SemaphoreLock::Remove(std::string_view name) {
  ValidateName(name, "semaphore");
  std::string const n(name);
  if (::sem_unlink(n.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  ThrowErrno(errno, "sem_unlink(" + Quoted(n) + ")");
}

}  // namespace circbuf
