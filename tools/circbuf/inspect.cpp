// circbuf tool: a read-only look at segments in /dev/shm, without attaching
// (so looking never changes a reference count or unlinks anything), and
// removal under the segment's lock.
//
// The layouts are the library's (SegmentHeader in circbuf.shm, State and the
// record header in circbuf.ring:layout). Words that others change are loaded
// with std::atomic_ref, as the library does.
//
// Probes (the library's own rules):
//   stale   no live process holds a shared flock on the segment: flock(LOCK_EX |
//           LOCK_NB) on a read-only descriptor succeeds (released at once).
//   writer  an OFD write lock on byte 0 of the state segment (F_OFD_GETLK).
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cli.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

std::string PathOf(std::string const& name) { return "/dev/shm/" + name.substr(1); }

template <class T>
T Load(T const& field) {
  // std::atomic_ref<T const> arrives only in C++26; a load never writes.
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
  return std::atomic_ref<T>(const_cast<T&>(field)).load(std::memory_order_acquire);
}

// A read-only mapping of the first `bytes` of a segment file.
class Mapping {
 public:
  Mapping(std::string const& name, int& open_errno) {
    fd_ = ::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd_ < 0) {
      open_errno = errno;
      return;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      open_errno = EINVAL;
      return;
    }
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
    if (file_bytes_ == 0) return;
    bytes_ = static_cast<std::size_t>(file_bytes_);
    void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) {
      open_errno = errno;
      bytes_ = 0;
      return;
    }
    base_ = static_cast<std::byte const*>(p);
  }
  ~Mapping() {
    // munmap takes void* but does not write through it.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
    if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), bytes_);
    if (fd_ >= 0) ::close(fd_);
  }
  Mapping(Mapping const&) = delete;
  Mapping& operator=(Mapping const&) = delete;

  [[nodiscard]] int Fd() const { return fd_; }
  [[nodiscard]] std::uint64_t FileBytes() const { return file_bytes_; }
  template <class T>
  [[nodiscard]] T const* At(std::size_t offset) const {
    return base_ != nullptr && offset + sizeof(T) <= bytes_ ? reinterpret_cast<T const*>(base_ + offset) : nullptr;
  }
  // No live process holds a shared flock on it.
  [[nodiscard]] bool Stale() const {
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) return false;
    ::flock(fd_, LOCK_UN);
    return true;
  }

 private:
  int fd_ = -1;
  std::uint64_t file_bytes_ = 0;
  std::byte const* base_ = nullptr;
  std::size_t bytes_ = 0;
};

bool WriterLocked(int fd) {
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &probe) != 0) return false;
  return probe.l_type != F_UNLCK;
}

// Sequence number of the record at `latest` + 1, from the data segment. The
// writer may be overwriting that record meanwhile: as the reader does, trust
// the header only if the record was still intact after it was read (its
// position is not below limit - capacity; [R1]/[R2] of the reader).
std::uint64_t MessagesWritten(cb::State const& state, Mapping const& data) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::uint64_t const latest = Load(state.latest);
    if (latest == cb::kNoRecord) return 0;
    auto const* header = data.At<std::uint64_t>(kPageSize + latest % state.capacity);
    if (header == nullptr) return 0;
    std::uint64_t const h = Load(*header);
    std::atomic_thread_fence(std::memory_order_acquire);
    bool const intact = latest + state.capacity >= Load(state.limit);
    if (intact && h != 0 && cb::HeaderLength(h) != 0) return cb::HeaderSequence(h) + 1;
  }
  return 0;
}

void FillRing(SegmentInfo& info, cb::State const& s, Mapping const& state_map) {
  info.ring_version = s.version;
  if (s.version != cb::kRingVersion) {
    info.kind = Kind::kRingOther;
    return;
  }
  info.kind = Kind::kRing;
  info.capacity = s.capacity;
  info.chunk = s.chunk;
  info.max_message = s.max_message;
  info.tail = Load(s.tail);
  info.writer_pid = Load(s.writer_pid);
  info.writer_epoch = Load(s.writer_epoch);
  info.waiters = Load(s.waiters);
  switch (static_cast<cb::WriterState>(Load(s.writer_state))) {
    case cb::WriterState::kNone: info.writer = "none"; break;
    case cb::WriterState::kClosed: info.writer = "closed"; break;
    case cb::WriterState::kActive: info.writer = WriterLocked(state_map.Fd()) ? "alive" : "dead"; break;
    default: info.writer = "?"; break;
  }
  int data_errno = 0;
  Mapping const data(info.name + ".data", data_errno);
  if (data_errno == 0) {
    info.has_data = true;
    info.data_stale = data.Stale();
    if (auto const* h = data.At<SegmentHeader>(0)) info.data_refcount = Load(h->refcount);
    if (s.capacity >= cb::kMinCapacity && s.capacity <= cb::kMaxCapacity) info.messages = MessagesWritten(s, data);
  }
}

}  // namespace

SegmentInfo Inspect(std::string const& name) {
  SegmentInfo info;
  info.name = name;
  Mapping const map(name, info.open_errno);
  if (info.open_errno != 0) {
    if (info.open_errno == EINVAL) throw Error(kNotCircbuf, name + ": not a regular shared-memory file");
    if (info.open_errno == ENOENT) throw Error(kNoSuchBuffer, name + ": no such buffer");
    throw Error(ExitForErrno(info.open_errno), name + ": " + ErrnoText(info.open_errno));
  }
  info.file_bytes = map.FileBytes();
  auto const* h = map.At<SegmentHeader>(0);
  if (h == nullptr || Load(h->magic) != kSegmentMagic) return info;
  info.kind = Kind::kSegment;
  info.refcount = Load(h->refcount);
  info.segment_version = h->version;
  info.user_bytes = h->user_bytes;
  info.creator_pid = h->creator_pid;
  info.stale = map.Stale();
  if (info.segment_version != kSegmentVersion) return info;
  if (auto const* s = map.At<cb::State>(kPageSize); s != nullptr && Load(s->magic) == cb::kRingMagic) {
    FillRing(info, *s, map);
  }
  return info;
}

SegmentInfo InspectRing(std::string const& name) {
  SegmentInfo info = Inspect(name);
  // A ring's state segment is published before its creator has initialised
  // the State in it (under the segment's lock): give it a moment.
  for (int i = 0; i < 50 && info.kind == Kind::kSegment && info.user_bytes == sizeof(cb::State); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    info = Inspect(name);
  }
  if (info.kind == Kind::kForeign) throw Error(kNotCircbuf, name + ": not a circbuf buffer (no circbuf header)");
  if (info.segment_version != kSegmentVersion) {
    throw Error(kNotCircbuf, name + ": segment layout version " + std::to_string(info.segment_version) +
                                 ", this tool reads version " + std::to_string(kSegmentVersion));
  }
  if (info.kind == Kind::kSegment) throw Error(kNotCircbuf, name + ": a circbuf segment, but not a ring");
  if (info.kind == Kind::kRingOther) {
    throw Error(kNotCircbuf, name + ": ring layout version " + std::to_string(info.ring_version) +
                                 ", this tool reads version " + std::to_string(cb::kRingVersion));
  }
  return info;
}

std::vector<SegmentInfo> ScanSegments() {
  std::vector<SegmentInfo> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) throw Error(ExitForErrno(errno), std::string("/dev/shm: ") + ErrnoText(errno));
  std::vector<std::string> names;
  while (dirent const* entry = ::readdir(dir)) {
    std::string const file = entry->d_name;
    if (file == "." || file == ".." || file.starts_with("sem.")) continue;
    if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN) continue;
    names.push_back("/" + file);
  }
  ::closedir(dir);
  std::ranges::sort(names);
  for (auto const& name : names) {
    try {
      out.push_back(Inspect(name));
    } catch (Error const&) {
      SegmentInfo info;
      info.name = name;
      int open_errno = 0;
      Mapping const probe(name, open_errno);
      if (open_errno == ENOENT) continue;  // removed meanwhile
      info.open_errno = open_errno;
      out.push_back(info);
    }
  }
  return out;
}

bool Resample(std::string const& name, std::uint64_t& tail, std::uint64_t& messages) {
  int open_errno = 0;
  Mapping const map(name, open_errno);
  if (open_errno != 0) return false;
  auto const* s = map.At<cb::State>(kPageSize);
  if (s == nullptr || Load(s->magic) != cb::kRingMagic) return false;
  tail = Load(s->tail);
  int data_errno = 0;
  Mapping const data(name + ".data", data_errno);
  if (data_errno == 0 && s->capacity >= cb::kMinCapacity) messages = MessagesWritten(*s, data);
  return true;
}

bool RemoveSegment(std::string const& name, bool force) {
  try {
    // The segment's own lock serialises us with attaching and detaching processes.
    SemaphoreLock lock(name);
    if (!lock.TryAcquireFor(std::chrono::seconds(2))) {
      throw Error(kBusy, name + ": its lock is held by another process (attaching or detaching); try again");
    }
    SemaphoreLock::Guard guard(lock, std::adopt_lock);
    int const fd = ::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      int const error = errno;
      if (error == ENOENT) lock.Unlink();  // the lock we just created for nothing
      throw Error(ExitForErrno(error), name + ": " + ErrnoText(error));
    }
    bool const live = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
    bool removed = false;
    if (!live || force) removed = SharedMemory::Remove(name);  // also unlinks the lock's name
    ::close(fd);
    return removed;
  } catch (...) {
    RethrowAsError();
  }
}

bool NameMatches(std::string const& pattern, std::string const& name) {
  if (pattern.empty()) return true;
  std::string const p = pattern.front() == '/' ? pattern : "/" + pattern;
  return ::fnmatch(p.c_str(), name.c_str(), 0) == 0;
}

}  // namespace circbuf::tool
