// circbuf tool: a read-only look at segments in /dev/shm, without attaching
// (so looking never changes a reference count or unlinks anything), and
// removal under the segment's lock.
//
// The layouts are the library's (SegmentHeader in circbuf.shm, State and the
// record header in circbuf.ring:layout).
//
// Nothing is mapped: the segment files are read with pread(2). Another
// process may truncate a file while we look (a hostile or buggy one; see
// docs/threat-model.md); a mapping of it would then raise SIGBUS and kill the
// tool, whereas a read past the new end is only short, and is reported. The
// kernel copies the bytes, so a word that the writer changes meanwhile may
// come out mixed: words that change are read until two reads agree (see
// Word), and a record header is trusted as the reader trusts it (below).
//
// Damage: a circbuf segment whose file size is not its header page plus the
// user region its header states was truncated (or extended) by someone
// else; the library refuses to attach to it. Inspect says so in
// SegmentInfo::damage, for the ring's state segment and its data segment.
//
// Probes (the library's own rules):
//   stale   no live process holds a shared flock on the segment: flock(LOCK_EX |
//           LOCK_NB) on a read-only descriptor succeeds (released at once).
//   writer  an OFD write lock on byte 0 of the state segment (F_OFD_GETLK).
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "cli.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool {

namespace {

std::string PathOf(std::string const& name) { return "/dev/shm/" + name.substr(1); }

// A segment file opened read-only; read with pread, never mapped.
class SegmentFile {
 public:
  SegmentFile(std::string const& name, int& open_errno)
      : fd_(::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) {
    if (fd_ < 0) {
      open_errno = errno;
      return;
    }
    struct stat st{};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      open_errno = EINVAL;
      return;
    }
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
  }
  ~SegmentFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  SegmentFile(SegmentFile const&) = delete;
  SegmentFile& operator=(SegmentFile const&) = delete;

  [[nodiscard]] int Fd() const { return fd_; }
  // Size when opened (fstat).
  [[nodiscard]] std::uint64_t FileBytes() const { return file_bytes_; }

  // Reads the sizeof(T) bytes at `offset` into `out`; false if the file ends
  // before them (it may have been truncated since FileBytes) or on an error.
  template <class T>
  [[nodiscard]] bool Read(std::uint64_t offset, T& out) const {
    static_assert(std::is_trivially_copyable_v<T>);
    auto* bytes = reinterpret_cast<std::byte*>(&out);
    std::size_t done = 0;
    while (done < sizeof(T)) {
      ssize_t const got = ::pread(fd_, bytes + done, sizeof(T) - done, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      done += static_cast<std::size_t>(got);
    }
    return true;
  }

  // A word that another process changes: read until two reads agree (a
  // pread is a kernel copy, not an atomic load). False if it cannot be read.
  template <class T>
  [[nodiscard]] bool Word(std::uint64_t offset, T& out) const {
    T last{};
    if (!Read(offset, last)) return false;
    for (int attempt = 0; attempt < 8; ++attempt) {
      T now{};
      if (!Read(offset, now)) return false;
      if (now == last) break;
      last = now;
    }
    out = last;
    return true;
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
};

// Offset of a State field in the state segment file.
constexpr std::uint64_t StateAt(std::size_t field_offset) { return kPageSize + field_offset; }

template <class T>
T StateWord(SegmentFile const& file, std::size_t field_offset) {
  T value{};
  if (!file.Word(StateAt(field_offset), value)) return T{};
  return value;
}

bool WriterLocked(int fd) {
  struct flock probe{};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &probe) != 0) return false;
  return probe.l_type != F_UNLCK;
}

// "" if the file is as long as its header says; else what is wrong.
std::string SizeDamage(std::string const& what, std::uint64_t file_bytes, std::uint64_t user_bytes) {
  if (file_bytes == kPageSize + user_bytes) return "";
  return "truncated or damaged: " + what + " is " + std::to_string(file_bytes) + " bytes, its header says " +
         std::to_string(kPageSize + user_bytes) + " (" + std::to_string(kPageSize) + " + " +
         std::to_string(user_bytes) + ")";
}

// Sequence number of the record at `latest` + 1, from the data segment. The
// writer may be overwriting that record meanwhile: as the reader does, trust
// the header only if the record was still intact after it was read (its
// position is not below limit - capacity; [R1]/[R2] of the reader).
std::uint64_t MessagesWritten(SegmentFile const& state, std::uint64_t capacity, SegmentFile const& data) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto const latest = StateWord<std::uint64_t>(state, offsetof(cb::State, latest));
    if (latest == cb::kNoRecord) return 0;
    std::uint64_t h = 0;
    if (!data.Word(kPageSize + latest % capacity, h)) return 0;  // a data segment cut short
    bool const intact = latest + capacity >= StateWord<std::uint64_t>(state, offsetof(cb::State, limit));
    if (intact && h != 0 && cb::HeaderLength(h) != 0) return cb::HeaderSequence(h) + 1;
  }
  return 0;
}

std::string N(std::uint64_t v) { return std::to_string(v); }

// What breaks the library's rules in a ring's State (IWrapper::Validate, the
// positions of layout.cppm, the WriterState values); "" if nothing. Every
// value is untrusted: nothing is divided by, indexed with or looped over
// before it passed. The header is written once, before the segment is
// published. Positions change while we read them, so they are judged on a
// snapshot in which tail did not move (tail, the others, tail again); a
// writer that never lets one be taken is live, and left unjudged.
std::string Corruption(cb::State const& s, SegmentFile const& file) {
  if (s.state_bytes != sizeof(cb::State)) {
    return "state_bytes " + N(s.state_bytes) + ": must be " + N(sizeof(cb::State));
  }
  if (s.capacity < cb::kMinCapacity || s.capacity > cb::kMaxCapacity || s.capacity % cb::kCapacityAlignment != 0) {
    return "capacity " + N(s.capacity) + " bytes: must be " + N(cb::kMinCapacity) + " .. " + N(cb::kMaxCapacity) +
           ", a multiple of " + N(cb::kCapacityAlignment);
  }
  if (s.chunk != s.capacity / cb::kChunks) {
    return "chunk " + N(s.chunk) + ": must be capacity / " + N(cb::kChunks) + " = " + N(s.capacity / cb::kChunks);
  }
  if (s.max_message != cb::MaxMessageFor(s.capacity)) {
    return "max_message " + N(s.max_message) + ": must be " + N(cb::MaxMessageFor(s.capacity)) + " for capacity " +
           N(s.capacity);
  }
  auto const writer_state = StateWord<std::uint32_t>(file, offsetof(cb::State, writer_state));
  if (writer_state > static_cast<std::uint32_t>(cb::WriterState::kClosed)) {
    return "writer_state " + N(writer_state) + ": must be 0 (none), 1 (active) or 2 (closed)";
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto const tail = StateWord<std::uint64_t>(file, offsetof(cb::State, tail));
    auto const latest = StateWord<std::uint64_t>(file, offsetof(cb::State, latest));
    auto const limit = StateWord<std::uint64_t>(file, offsetof(cb::State, limit));
    if (StateWord<std::uint64_t>(file, offsetof(cb::State, tail)) != tail) continue;
    if (tail % cb::kRecordAlignment != 0) return "tail " + N(tail) + ": must be a multiple of 8";
    if (limit % s.chunk != 0) return "limit " + N(limit) + ": must be a multiple of chunk (" + N(s.chunk) + ")";
    if (tail > limit) return "tail " + N(tail) + " is beyond limit " + N(limit);
    if (limit - tail > 2 * s.capacity) {
      return "limit " + N(limit) + " is more than 2 x capacity (" + N(2 * s.capacity) + ") beyond tail " + N(tail);
    }
    // The writer stores latest just before tail: within a capacity of it.
    std::uint64_t const apart = latest <= tail ? tail - latest : latest - tail;
    if (latest != cb::kNoRecord && (latest % cb::kRecordAlignment != 0 || apart > s.capacity)) {
      return "latest " + N(latest) + ": must be " + N(cb::kNoRecord) +
             " (none) or a multiple of 8 within a capacity of tail " + N(tail);
    }
    return "";
  }
  return "";
}

void FillRing(SegmentInfo& info, cb::State const& s, SegmentFile const& state_file) {
  info.ring_version = s.version;
  if (s.version != cb::kRingVersion) {
    info.kind = Kind::kRingOther;
    return;
  }
  info.kind = Kind::kRing;
  if (std::string const wrong = Corruption(s, state_file); !wrong.empty()) info.corrupt = "corrupt State: " + wrong;
  info.capacity = s.capacity;
  info.chunk = s.chunk;
  info.max_message = s.max_message;
  info.tail = StateWord<std::uint64_t>(state_file, offsetof(cb::State, tail));
  info.writer_pid = StateWord<std::int32_t>(state_file, offsetof(cb::State, writer_pid));
  info.writer_epoch = StateWord<std::uint64_t>(state_file, offsetof(cb::State, writer_epoch));
  {  // the wake word's armed bit (layout: circbuf.ring:layout, in the state segment's header page)
    std::uint32_t wake = 0;
    info.sleeping =
        state_file.Word(offsetof(SegmentHeader, attachers) + cb::kWakeWordOffset, wake) && (wake & cb::kWakeArmed) != 0;
  }
  switch (static_cast<cb::WriterState>(StateWord<std::uint32_t>(state_file, offsetof(cb::State, writer_state)))) {
    case cb::WriterState::kNone: info.writer = "none"; break;
    case cb::WriterState::kClosed: info.writer = "closed"; break;
    case cb::WriterState::kActive: info.writer = WriterLocked(state_file.Fd()) ? "alive" : "dead"; break;
    default: info.writer = "?"; break;
  }
  int data_errno = 0;
  std::string const data_name = circbuf::CircularBuffer::DataSegmentName(info.name);
  SegmentFile const data(data_name, data_errno);
  if (data_errno != 0) return;
  info.has_data = true;
  info.data_stale = data.Stale();
  SegmentHeader header{};
  if (data.FileBytes() == 0) return;  // being created (or re-created) right now
  if (!data.Read(0, header) || header.magic != kSegmentMagic) {
    if (data.FileBytes() < kPageSize) {
      info.damage = "truncated or damaged: data segment " + data_name + " is " + std::to_string(data.FileBytes()) +
                    " bytes, less than its " + std::to_string(kPageSize) + "-byte header";
    }
    return;
  }
  info.data_refcount = header.refcount;
  info.damage = SizeDamage("data segment " + data_name, data.FileBytes(), header.user_bytes);
  if (!info.corrupt.empty()) return;  // nothing below may trust the State
  if (info.damage.empty() && header.user_bytes != cb::DataBytes(s.capacity)) {
    info.damage = "damaged: data segment " + data_name + " holds " + std::to_string(header.user_bytes) +
                  " bytes, a ring of capacity " + std::to_string(s.capacity) + " has " +
                  std::to_string(cb::DataBytes(s.capacity)) + " (records and end mark)";
  }
  if (info.damage.empty()) {
    info.messages = MessagesWritten(state_file, s.capacity, data);
  }
}

}  // namespace

SegmentInfo Inspect(std::string const& name) {
  SegmentInfo info;
  info.name = name;
  SegmentFile const file(name, info.open_errno);
  if (info.open_errno != 0) {
    if (info.open_errno == EINVAL) throw Error(kNotCircbuf, name + ": not a regular shared-memory file");
    if (info.open_errno == ENOENT) throw Error(kNoSuchBuffer, name + ": no such buffer");
    throw Error(ExitForErrno(info.open_errno), name + ": " + ErrnoText(info.open_errno));
  }
  info.file_bytes = file.FileBytes();
  SegmentHeader h{};
  bool const has_header = file.Read(0, h);
  if (!has_header || h.magic != kSegmentMagic) {
    // Unfinished as the library defines it (SharedMemory: magic 0, and 0 or
    // at least a header page of bytes), with the lock its creator took.
    bool const unfinished = info.file_bytes == 0 || (has_header && h.magic == 0);
    if (unfinished && LockExists(name)) {
      info.kind = Kind::kUnfinished;
      info.lock_held = LockHeld(name);
      info.stale = !info.lock_held && file.Stale();
    }
    return info;
  }
  info.kind = Kind::kSegment;
  info.refcount = h.refcount;
  info.segment_version = h.version;
  info.user_bytes = h.user_bytes;
  info.creator_pid = h.creator_pid;
  info.stale = file.Stale();
  if (info.segment_version != kSegmentVersion) return info;
  info.damage = SizeDamage("the segment", info.file_bytes, info.user_bytes);
  cb::State s{};
  if (!file.Read(kPageSize, s)) return info;
  info.state_magic = s.magic;
  if (s.magic == cb::kRingMagic) {
    std::string const own_damage = info.damage;
    FillRing(info, s, file);
    if (!own_damage.empty()) info.damage = own_damage;  // the state segment's own comes first
  }
  return info;
}

SegmentInfo InspectRing(std::string const& name, bool allow_damaged) {
  SegmentInfo info = Inspect(name);
  // A ring's state segment is published before its creator has initialised
  // the State in it (under the segment's lock): give it a moment.
  for (int i = 0; i < 50 && ((info.kind == Kind::kSegment && info.damage.empty() &&
                              info.user_bytes == sizeof(cb::State) && info.state_magic == 0) ||
                             (info.kind == Kind::kUnfinished && info.lock_held));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    info = Inspect(name);
  }
  if (info.kind == Kind::kForeign) throw Error(kNotCircbuf, name + ": not a circbuf buffer (no circbuf header)");
  if (info.kind == Kind::kUnfinished) {
    throw Error(kNotCircbuf, name + ": unfinished: its creator " +
                                 (info.lock_held ? "has not finished it yet"
                                                 : "died before finishing it (circbuf gc "
                                                   "removes it)"));
  }
  if (info.segment_version != kSegmentVersion) {
    throw Error(kNotCircbuf, name + ": segment layout version " + std::to_string(info.segment_version) +
                                 ", this tool reads version " + std::to_string(kSegmentVersion));
  }
  if (!info.damage.empty() || !info.corrupt.empty()) {
    if (allow_damaged) return info;
    throw Error(kNotCircbuf, name + ": " + (info.corrupt.empty() ? info.damage : info.corrupt));
  }
  if (info.kind == Kind::kSegment) {
    char magic[19];
    std::snprintf(magic, sizeof magic, "0x%016llx", static_cast<unsigned long long>(info.state_magic));
    throw Error(kNotCircbuf, name + ": a circbuf segment, but not a ring (State magic " + magic + ")");
  }
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
  std::vector<std::string> locks;
  while (dirent const* entry = ::readdir(dir)) {
    std::string const file = entry->d_name;
    if (file == "." || file == "..") continue;
    if (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN) continue;
    if (file.starts_with("sem.")) {
      if (file.size() > 4) locks.push_back("/" + file.substr(4));
    } else {
      names.push_back("/" + file);
    }
  }
  ::closedir(dir);
  std::ranges::sort(names);
  std::ranges::sort(locks);
  for (auto const& name : names) {
    try {
      out.push_back(Inspect(name));
    } catch (Error const&) {
      SegmentInfo info;
      info.name = name;
      int open_errno = 0;
      SegmentFile const probe(name, open_errno);
      if (open_errno == ENOENT) continue;  // removed meanwhile
      info.open_errno = open_errno;
      out.push_back(info);
    }
  }
  // A lock without its segment is circbuf's when it is a data segment's, or
  // a ring's whose data segment (or its lock) is there (leftovers.cpp).
  auto const has = [](std::vector<std::string> const& v, std::string const& n) {
    return std::ranges::binary_search(v, n);
  };
  for (auto const& name : locks) {
    if (has(names, name)) continue;
    if (!circbuf::CircularBuffer::IsDataSegmentName(name) &&
        !has(names, circbuf::CircularBuffer::DataSegmentName(name)) &&
        !has(locks, circbuf::CircularBuffer::DataSegmentName(name)))
      continue;
    SegmentInfo info;
    info.name = name;
    info.kind = Kind::kUnfinished;
    info.lock_only = true;
    info.lock_held = LockHeld(name);
    info.stale = !info.lock_held;
    out.push_back(info);
  }
  return out;
}

bool Resample(std::string const& name, std::uint64_t& tail, std::uint64_t& messages) {
  int open_errno = 0;
  SegmentFile const file(name, open_errno);
  if (open_errno != 0) return false;
  cb::State s{};
  if (!file.Read(kPageSize, s) || s.magic != cb::kRingMagic) return false;
  tail = StateWord<std::uint64_t>(file, offsetof(cb::State, tail));
  int data_errno = 0;
  SegmentFile const data(circbuf::CircularBuffer::DataSegmentName(name), data_errno);
  if (data_errno == 0 && s.capacity >= cb::kMinCapacity && s.capacity <= cb::kMaxCapacity) {
    messages = MessagesWritten(file, s.capacity, data);
  }
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
