// Leftovers of a creator that died before it finished a segment (see
// SharedMemory in circbuf.shm): the segment file with magic 0 (0 bytes, or
// its final size with a zero header), and/or the lock beside it,
// /dev/shm/sem.NAME. Only circbuf's own rules decide, never a guess:
//   circbuf's   the file is unfinished as the library defines it (magic 0,
//               0 or at least a header page of bytes) and its lock exists
//               (the creator takes the lock before it creates the file); a
//               lock alone is circbuf's when its name is a data segment's
//               (NAME.data) or a ring's next to one (ScanSegments)
//   alive       a live process holds the lock (its flock): it is creating
//               the segment now, or attaching to it
//   dead        under the lock, nobody is creating it; if the file is still
//               unfinished and no attachment holds its shared flock, the
//               creator died: it is removed, and the lock with it, as the
//               next creator of the name would do.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "cli.hpp"

import circbuf;

namespace circbuf::tool {

namespace {

std::string LockPath(std::string const& name) { return "/dev/shm/sem." + name.substr(1); }

// The file of segment `name` is unfinished now: false if it is gone or has a header.
bool FileUnfinished(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_size == 0) return true;
  std::uint64_t magic = 1;
  return st.st_size >= static_cast<off_t>(kPageSize) &&
         ::pread(fd, &magic, sizeof magic, offsetof(SegmentHeader, magic)) == static_cast<ssize_t>(sizeof magic) &&
         magic == 0;
}

}  // namespace

bool LockExists(std::string const& name) {
  struct stat st{};
  return ::lstat(LockPath(name).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool LockHeld(std::string const& name) {
  int const fd = ::open(LockPath(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  bool const held = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);  // drops the probe's flock, if it got it
  return held;
}

bool RemoveUnfinished(std::string const& name) {
  try {
    if (!LockExists(name)) return false;  // gone meanwhile (or never circbuf's)
    SemaphoreLock lock(name);
    if (!lock.TryAcquire()) return false;  // its creator (or an attacher) is alive
    SemaphoreLock::Guard guard(lock, std::adopt_lock);
    int const fd = ::open(("/dev/shm/" + name.substr(1)).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      int const error = errno;
      if (error != ENOENT) throw Error(ExitForErrno(error), name + ": " + ErrnoText(error));
      lock.Unlink();  // only the lock was left
      return true;
    }
    bool removed = false;
    if (FileUnfinished(fd) && ::flock(fd, LOCK_EX | LOCK_NB) == 0) removed = SharedMemory::Remove(name);
    ::close(fd);
    return removed;
  } catch (...) {
    RethrowAsError();
  }
}

}  // namespace circbuf::tool
