// circbuf.ring:inspect (see inspect.cppm): pread-based looks at segments in
// /dev/shm, the rules of a State, and removal under the segment's lock.
module;

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

module circbuf.ring;

namespace circbuf::CircularBuffer {

// Not an anonymous namespace: g++-14 ICEs on internal-linkage helpers in module
// units at -O1 and up (docs/toolchain-notes.md, "ICE in ipa_comdats").
namespace inspect_impl {

std::string N(std::uint64_t v) { return std::to_string(v); }

// glibc's shm_open(3) and sem_open(3) keep NAME in /dev/shm/NAME and
// /dev/shm/sem.NAME (circbuf.shm).
std::string PathOf(std::string_view name) { return "/dev/shm/" + std::string(name.substr(1)); }
std::string LockPathOf(std::string_view name) { return "/dev/shm/sem." + std::string(name.substr(1)); }

void CheckName(std::string_view name) { ValidateName(name, "segment"); }

// Whether a process holds a flock on the file open as `fd`, from
// /proc/locks: nothing is locked to find out. (The probe it replaces,
// flock(LOCK_EX | LOCK_NB) then LOCK_UN, held an exclusive flock for an
// instant; the last process detaching converts its shared flock to an
// exclusive one to know it is the last, and losing that instant to a
// looker, it kept the segment.) Lines are "N: FLOCK ADVISORY READ PID
// MAJ:MIN:INODE START END", with "->" after N for a request still blocked,
// which holds nothing. nullopt if /proc/locks cannot be read.
std::optional<bool> FlockHeld(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  char id[64];
  std::snprintf(id, sizeof id, "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
  std::FILE* locks = std::fopen("/proc/locks", "re");
  if (locks == nullptr) return std::nullopt;
  bool held = false;
  char line[256];
  while (!held && std::fgets(line, sizeof line, locks) != nullptr) {
    char number[16];
    char type[16];
    char mode[16];
    char access[16];
    char pid[16];
    char file[64];
    if (std::sscanf(line, "%15s %15s %15s %15s %15s %63s", number, type, mode, access, pid, file) != 6) continue;
    held = std::strcmp(type, "FLOCK") == 0 && std::strcmp(file, id) == 0;  // "->" lands in type: not held
  }
  std::fclose(locks);
  return held;
}

// A file descriptor closed on every path out.
class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd const&) = delete;
  Fd& operator=(Fd const&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }

 private:
  int fd_;
};

// A segment file opened read-only; read with pread, never mapped.
class SegmentFile {
 public:
  explicit SegmentFile(std::string_view name)
      : fd_(::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) {
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    struct stat st{};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      error_ = EINVAL;
      return;
    }
    file_bytes_ = static_cast<std::uint64_t>(st.st_size);
    std::uint32_t header_bytes = 0;
    if (Read(offsetof(SegmentHeader, header_bytes), header_bytes) && HeaderBytesProblem(header_bytes).empty()) {
      header_bytes_ = header_bytes;
    }
  }
  ~SegmentFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  SegmentFile(SegmentFile const&) = delete;
  SegmentFile& operator=(SegmentFile const&) = delete;
  SegmentFile(SegmentFile&&) = delete;
  SegmentFile& operator=(SegmentFile&&) = delete;

  [[nodiscard]] int Error() const { return error_; }  // 0: open
  [[nodiscard]] int Fd() const { return fd_; }
  [[nodiscard]] std::uint64_t FileBytes() const { return file_bytes_; }  // when opened (fstat)
  // The header's header_bytes when opened, where HeaderBytesProblem accepts
  // it (the file offset of the user region); 0 if not.
  [[nodiscard]] std::uint64_t HeaderBytes() const { return header_bytes_; }

  // The sizeof(T) bytes at `offset`; false if the file ends before them (it
  // may have been cut since FileBytes) or on an error.
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

  // A word that another process changes: read until two reads agree.
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

  // No live process holds a shared flock on it (FlockHeld: no lock taken;
  // only where /proc/locks is not readable, the probe that takes one).
  [[nodiscard]] bool Stale() const {
    if (std::optional<bool> const held = FlockHeld(fd_)) return !*held;
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) return false;
    ::flock(fd_, LOCK_UN);
    return true;
  }

 private:
  int fd_ = -1;
  int error_ = 0;
  std::uint64_t file_bytes_ = 0;
  std::uint64_t header_bytes_ = 0;
};

template <class T>
T StateWord(SegmentFile const& file, std::size_t field_offset) {
  T value{};
  if (file.HeaderBytes() == 0 || !file.Word(file.HeaderBytes() + field_offset, value)) return T{};
  return value;
}

// "" if the file is as long as its header says; else what is wrong.
std::string SizeDamage(std::string const& what, SegmentFile const& file, std::uint64_t user_bytes) {
  if (file.HeaderBytes() == 0) {
    std::uint32_t header_bytes = 0;
    if (!file.Read(offsetof(SegmentHeader, header_bytes), header_bytes))
      return "truncated: " + what + " lost its header";
    return "damaged: " + what + ": " + HeaderBytesProblem(header_bytes);
  }
  if (file.FileBytes() == file.HeaderBytes() + user_bytes) return "";
  return "truncated or damaged: " + what + " is " + N(file.FileBytes()) + " bytes, its header says " +
         N(file.HeaderBytes() + user_bytes) + " (" + N(file.HeaderBytes()) + " + " + N(user_bytes) + ")";
}

// Messages written: the sequence number of the record at `latest`, plus 1,
// from the data segment (sequence numbers used: gap records' count too). The writer may be overwriting that record
// meanwhile: as the Reader does, the header counts only if the record was
// still intact after it was read (its position p >= limit - capacity).
std::uint64_t MessagesWritten(SegmentFile const& state, std::uint64_t capacity, SegmentFile const& data) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto const latest = StateWord<std::uint64_t>(state, offsetof(State, latest));
    if (latest == kNoRecord) return 0;
    std::uint64_t h = 0;
    if (!data.Word(data.HeaderBytes() + latest % capacity, h)) return 0;  // a data segment cut short
    bool const intact = latest + capacity >= StateWord<std::uint64_t>(state, offsetof(State, limit));
    if (intact && h != 0 && HeaderLength(h) != 0) return HeaderSequence(h) + 1;
    // A gap record (Writer::Skip): the State's next sequence number, written with it.
    if (intact && IsGap(h)) return StateWord<std::uint64_t>(state, offsetof(State, sequence));
  }
  return 0;
}

// The State's rules on a snapshot of its file. Positions change while we
// read them: they are judged on a snapshot in which tail did not move (tail,
// the others, tail again); a writer that never lets one be taken is live,
// and left unjudged.
std::string Corruption(State const& s, SegmentFile const& file) {
  if (std::string problem = HeaderProblem(s); !problem.empty()) return problem;
  auto const writer_state = StateWord<std::uint32_t>(file, offsetof(State, writer_state));
  if (writer_state > static_cast<std::uint32_t>(WriterState::kClosed)) {
    return "writer_state " + N(writer_state) + ": must be 0 (none), 1 (active) or 2 (closed)";
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto const tail = StateWord<std::uint64_t>(file, offsetof(State, tail));
    auto const latest = StateWord<std::uint64_t>(file, offsetof(State, latest));
    auto const limit = StateWord<std::uint64_t>(file, offsetof(State, limit));
    if (StateWord<std::uint64_t>(file, offsetof(State, tail)) != tail) continue;
    return PositionProblem(tail, latest, limit, s.capacity, s.chunk);
  }
  return "";
}

void FillRing(SegmentInfo& info, State const& s, SegmentFile const& state_file) {
  info.ring_version = s.version;
  if (s.version != kRingVersion) {
    info.kind = SegmentKind::kRingOther;
    return;
  }
  info.kind = SegmentKind::kRing;
  if (std::string const wrong = Corruption(s, state_file); !wrong.empty()) info.corrupt = "corrupt State: " + wrong;
  if (info.corrupt.empty() && info.user_bytes != sizeof(State)) {
    info.corrupt =
        "corrupt State: the state segment holds " + N(info.user_bytes) + " bytes, a State is " + N(sizeof(State));
  }
  info.capacity = s.capacity;
  info.chunk = s.chunk;
  info.max_message = s.max_message;
  info.type = {s.type_size, s.type_align, s.type_id};
  info.tail = StateWord<std::uint64_t>(state_file, offsetof(State, tail));
  info.writer_pid = StateWord<std::int32_t>(state_file, offsetof(State, writer_pid));
  info.writer_epoch = StateWord<std::uint64_t>(state_file, offsetof(State, writer_epoch));
  {  // the wake word's armed bit (:layout, in the state segment's header page)
    std::uint32_t wake = 0;
    info.sleeping =
        state_file.Word(offsetof(SegmentHeader, attachers) + kWakeWordOffset, wake) && (wake & kWakeArmed) != 0;
  }
  switch (static_cast<WriterState>(StateWord<std::uint32_t>(state_file, offsetof(State, writer_state)))) {
    case WriterState::kClosed: info.writer = WriterStatus::kClosed; break;
    case WriterState::kActive:
      info.writer = WriterLockHeld(state_file.Fd()) ? WriterStatus::kAlive : WriterStatus::kDead;
      break;
    default: info.writer = WriterStatus::kNone; break;  // kNone, or corrupt (said above)
  }
  std::string const data_name = DataSegmentName(info.name);
  SegmentFile const data(data_name);
  if (data.Error() != 0) return;
  info.has_data = true;
  info.data_stale = data.Stale();
  if (data.FileBytes() == 0) return;  // being created (or re-created) right now
  SegmentHeader header{};
  if (!data.Read(0, header) || header.magic != kSegmentMagic) {
    if (data.FileBytes() < sizeof(SegmentHeader)) {
      info.damage = "truncated or damaged: data segment " + data_name + " is " + N(data.FileBytes()) +
                    " bytes, less than its " + N(sizeof(SegmentHeader)) + "-byte header";
    }
    return;
  }
  info.data_refcount = header.refcount;
  info.damage = SizeDamage("data segment " + data_name, data, header.user_bytes);
  if (!info.corrupt.empty()) return;  // nothing below may trust the State
  std::uint64_t const page = data.HeaderBytes();  // the end mark's page (see :layout, "End mark")
  if (info.damage.empty() && header.user_bytes != DataBytes(s.capacity, page)) {
    info.damage = "damaged: data segment " + data_name + " holds " + N(header.user_bytes) +
                  " bytes, a ring of capacity " + N(s.capacity) + " laid out in " + N(page) + "-byte pages has " +
                  N(DataBytes(s.capacity, page)) + " (records and end mark)";
  }
  if (info.damage.empty()) {  // the end mark, as a Reader checks it
    std::uint64_t mark = 0;
    if (!data.Read(page + EndMarkOffset(s.capacity, page), mark) || mark != kEndMark) {
      info.damage = "truncated or damaged: data segment " + data_name + " has lost its end mark (cut inside its " +
                    "record space)";
    }
  }
  if (info.damage.empty()) {
    info.messages = MessagesWritten(state_file, s.capacity, data);
    // What gap records skipped (Writer::Skip), as the State says: at most the numbers used.
    info.skipped = std::min(StateWord<std::uint64_t>(state_file, offsetof(State, skipped)), info.messages);
  }
}

// The file of segment `fd` is unfinished now (circbuf.shm: magic 0, and 0
// or at least a header page of bytes); false if it is gone or has a header.
bool FileUnfinished(int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return false;
  if (st.st_size == 0) return true;
  std::uint64_t magic = 1;
  return st.st_size >= static_cast<off_t>(sizeof(SegmentHeader)) &&
         ::pread(fd, &magic, sizeof magic, offsetof(SegmentHeader, magic)) == static_cast<ssize_t>(sizeof magic) &&
         magic == 0;
}

std::string Who(SegmentInfo const& s) {
  std::string text = N(s.refcount) + " attachment(s) recorded";
  if (s.kind == SegmentKind::kRing && s.writer != WriterStatus::kNone) {
    text += ", writer pid " + std::to_string(s.writer_pid) + " " + std::string(ToString(s.writer));
  }
  return text;
}

}  // namespace inspect_impl
using namespace inspect_impl;  // NOLINT(google-build-using-namespace): this unit's own helpers

std::string HeaderProblem(State const& s) {
  if (s.state_bytes != sizeof(State)) return "state_bytes " + N(s.state_bytes) + ": must be " + N(sizeof(State));
  if (s.capacity < kMinCapacity || s.capacity > kMaxCapacity || s.capacity % kCapacityAlignment != 0) {
    return "capacity " + N(s.capacity) + " bytes: must be " + N(kMinCapacity) + " .. " + N(kMaxCapacity) +
           ", a multiple of " + N(kCapacityAlignment);
  }
  if (s.chunk != s.capacity / kChunks) {
    return "chunk " + N(s.chunk) + ": must be capacity / " + N(kChunks) + " = " + N(s.capacity / kChunks);
  }
  if (s.max_message != MaxMessageFor(s.capacity)) {
    return "max_message " + N(s.max_message) + ": must be " + N(MaxMessageFor(s.capacity)) + " for capacity " +
           N(s.capacity);
  }
  return "";
}

std::string PositionProblem(std::uint64_t tail, std::uint64_t latest, std::uint64_t limit, std::uint64_t capacity,
                            std::uint64_t chunk) {
  // Positions are record starts or ends: multiples of 8. They count bytes
  // from 0 and never wrap: 2^64 bytes would take centuries at any rate, so a
  // limit within 4 capacities of 2^64 is a changed State, refused so that
  // no position sum (cursor + capacity, pos + record, ...) can overflow.
  if (tail % kRecordAlignment != 0) return "tail " + N(tail) + ": must be a multiple of 8";
  if (limit > ~std::uint64_t{0} - 4 * capacity) {
    return "limit " + N(limit) + ": beyond 2^64 - 4 x capacity (positions never come near wrapping)";
  }
  if (limit % chunk != 0) return "limit " + N(limit) + ": must be a multiple of chunk (" + N(chunk) + ")";
  if (tail > limit) return "tail " + N(tail) + " is beyond limit " + N(limit);
  if (limit - tail > 2 * capacity) {
    return "limit " + N(limit) + " is more than 2 x capacity (" + N(2 * capacity) + ") beyond tail " + N(tail);
  }
  std::uint64_t const apart = latest <= tail ? tail - latest : latest - tail;
  if (latest != kNoRecord && (latest % kRecordAlignment != 0 || apart > capacity)) {
    return "latest " + N(latest) + ": must be " + N(kNoRecord) +
           " (none) or a multiple of 8 within a capacity of tail " + N(tail);
  }
  return "";
}

bool WriterLockHeld(int fd) {
  struct flock probe{};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 0;
  probe.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &probe) != 0) throw std::system_error(errno, std::generic_category(), "F_OFD_GETLK");
  return probe.l_type != F_UNLCK;
}

SegmentInfo Inspect(std::string_view name) {
  CheckName(name);
  SegmentInfo info;
  info.name = name;
  SegmentFile const file(name);
  if (file.Error() != 0) {
    if (file.Error() == EINVAL)
      throw std::system_error(EINVAL, std::generic_category(), info.name + ": not a regular shared-memory file");
    throw std::system_error(file.Error(), std::generic_category(), info.name);
  }
  info.file_bytes = file.FileBytes();
  SegmentHeader h{};
  bool const has_header = file.Read(0, h);
  if (!has_header || h.magic != kSegmentMagic) {
    bool const unfinished = info.file_bytes == 0 || (has_header && h.magic == 0);
    if (unfinished && LockExists(name)) {
      info.kind = SegmentKind::kUnfinished;
      info.lock_held = LockHeld(name);
      info.stale = !info.lock_held && file.Stale();
    }
    return info;
  }
  info.kind = SegmentKind::kSegment;
  info.refcount = h.refcount;
  info.segment_version = h.version;
  info.user_bytes = h.user_bytes;
  info.creator_pid = h.creator_pid;
  info.stale = file.Stale();
  if (info.segment_version != kSegmentVersion) return info;
  info.header_bytes = file.HeaderBytes();
  info.damage = SizeDamage("the segment", file, info.user_bytes);
  State s{};
  if (file.HeaderBytes() == 0 || !file.Read(file.HeaderBytes(), s)) return info;
  info.state_magic = s.magic;
  if (s.magic == kRingMagic) {
    std::string const own_damage = info.damage;
    FillRing(info, s, file);
    if (!own_damage.empty()) {  // the state segment's own comes first, and nothing is derived from it
      info.damage = own_damage;
      info.messages = 0;
      info.skipped = 0;
    }
  }
  return info;
}

bool NameMatches(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return true;
  std::string const p = pattern.front() == '/' ? std::string(pattern) : "/" + std::string(pattern);
  return ::fnmatch(p.c_str(), std::string(name).c_str(), 0) == 0;
}

std::vector<SegmentInfo> List(std::string_view pattern) {
  std::vector<SegmentInfo> out;
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) throw std::system_error(errno, std::generic_category(), "/dev/shm");
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
    if (!NameMatches(pattern, name)) continue;
    try {
      out.push_back(Inspect(name));
    } catch (std::system_error const& e) {
      if (e.code().value() == ENOENT) continue;  // removed meanwhile
      SegmentInfo info;
      info.name = name;
      info.open_errno = e.code().value();
      out.push_back(info);
    } catch (std::invalid_argument const&) {
      continue;  // a name no circbuf segment can have
    }
  }
  // A lock without its segment is circbuf's when it is a data segment's, or
  // a ring's whose data segment (or its lock) is there.
  auto const has = [](std::vector<std::string> const& v, std::string const& n) {
    return std::ranges::binary_search(v, n);
  };
  for (auto const& name : locks) {
    if (has(names, name) || !NameMatches(pattern, name)) continue;
    if (!IsDataSegmentName(name) && !has(names, DataSegmentName(name)) && !has(locks, DataSegmentName(name))) continue;
    SegmentInfo info;
    info.name = name;
    info.kind = SegmentKind::kUnfinished;
    info.lock_only = true;
    info.lock_held = LockHeld(name);
    info.stale = !info.lock_held;
    out.push_back(info);
  }
  std::ranges::sort(out, {}, &SegmentInfo::name);
  return out;
}

bool LockExists(std::string_view name) {
  struct stat st{};
  return ::lstat(LockPathOf(name).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool LockHeld(std::string_view name) {
  Fd const fd(::open(LockPathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (fd.get() < 0) return false;
  if (std::optional<bool> const held = FlockHeld(fd.get())) return *held;  // no lock taken (see FlockHeld)
  bool const held = ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
  return held;  // closing fd drops the probe's flock, if it got it
}

bool RemoveSegment(std::string_view name, bool force) {
  CheckName(name);
  std::string const n(name);
  SemaphoreLock lock(name);  // serialises us with attaching and detaching processes
  if (!lock.TryAcquireFor(std::chrono::seconds(2))) {
    throw std::system_error(EBUSY, std::generic_category(),
                            n + ": its lock is held by another process (attaching or detaching); try again");
  }
  SemaphoreLock::Guard guard(lock, std::adopt_lock);
  Fd const fd(::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    int const error = errno;
    if (error == ENOENT) lock.Unlink();  // the lock we just created for nothing
    throw std::system_error(error, std::generic_category(), n);
  }
  // Under the lock, again: still a circbuf segment (it may have been
  // replaced since the caller looked), and nobody holds it.
  std::uint64_t magic = 0;
  if (::pread(fd.get(), &magic, sizeof magic, offsetof(SegmentHeader, magic)) != static_cast<ssize_t>(sizeof magic) ||
      magic != kSegmentMagic) {
    return false;
  }
  bool const live = ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0;
  if (live && !force) return false;
  return SharedMemory::Remove(name);  // also unlinks the lock's name
}

bool RemoveUnfinished(std::string_view name) {
  CheckName(name);
  if (!LockExists(name)) return false;  // gone meanwhile (or never circbuf's)
  SemaphoreLock lock(name);
  if (!lock.TryAcquire()) return false;  // its creator (or an attacher) is alive
  SemaphoreLock::Guard guard(lock, std::adopt_lock);
  Fd const fd(::open(PathOf(name).c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    int const error = errno;
    if (error != ENOENT) throw std::system_error(error, std::generic_category(), std::string(name));
    lock.Unlink();  // only the lock was left
    return true;
  }
  if (FileUnfinished(fd.get()) && ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return SharedMemory::Remove(name);
  return false;
}

// Not an anonymous namespace: g++-14 ICEs on internal-linkage helpers in module
// units at -O1 and up (docs/toolchain-notes.md, "ICE in ipa_comdats").
namespace inspect_impl {

// The data segment of ring `ring` (whose State `state` describes) as Remove
// may take it along: a circbuf segment of the data size of that ring, or an
// unfinished one; nothing else (another ring's State named so, a foreign file).
bool IsDataOf(SegmentInfo const& state, SegmentInfo const& data) {
  if (data.kind == SegmentKind::kUnfinished) return true;
  if (data.kind != SegmentKind::kSegment) return false;
  // A healthy ring says how large its data segment is; a corrupt State
  // cannot, and its data segment goes with it (a circbuf segment by its
  // header), as does one whose own header_bytes is damaged (0 here: nothing
  // to compute its size with).
  return state.kind != SegmentKind::kRing || !state.corrupt.empty() || data.header_bytes == 0 ||
         data.user_bytes == DataBytes(state.capacity, data.header_bytes);
}

std::optional<SegmentInfo> InspectIfThere(std::string const& name) {
  try {
    return Inspect(name);
  } catch (std::system_error const& e) {
    if (e.code().value() == ENOENT) return std::nullopt;
    throw;
  }
}

}  // namespace inspect_impl
using namespace inspect_impl;  // NOLINT(google-build-using-namespace): this unit's own helpers

RemoveResult Remove(std::string_view name, bool force) {
  (void)Spec::Make(name, 0);  // the name rules of a ring
  std::string const ring(name);
  std::string const data = DataSegmentName(name);
  RemoveResult result;
  std::optional<SegmentInfo> const state = InspectIfThere(ring);
  std::optional<SegmentInfo> const data_info = InspectIfThere(data);
  if (!state && !data_info) {
    // Only locks left (a creator killed before it made a file): removed
    // under the lock if nobody holds it. A lock is circbuf's by the rule of
    // List: a data segment's, or a ring's whose data segment's lock is there
    // too (a lone sem.NAME may be anybody's POSIX semaphore).
    bool const data_lock = LockExists(data);
    for (auto const& lock : {ring, data}) {
      if (!LockExists(lock) || (lock == ring && !data_lock)) continue;
      if (!RemoveUnfinished(lock)) {
        result.busy = lock + ": its lock is held by a live process (a creator or attacher)";
        return result;
      }
      result.removed.push_back(lock);
    }
    return result;
  }
  std::vector<SegmentInfo> targets;
  if (state) {
    if (state->kind == SegmentKind::kForeign) throw std::invalid_argument(ring + ": not a circbuf buffer; left alone");
    targets.push_back(*state);
    if (data_info && IsDataOf(*state, *data_info)) targets.push_back(*data_info);
  } else {
    if (data_info->kind != SegmentKind::kSegment && data_info->kind != SegmentKind::kUnfinished) {
      throw std::invalid_argument(data + ": not a circbuf data segment" +
                                  (data_info->kind == SegmentKind::kForeign ? "" : " (a ring's State)") +
                                  "; left alone");
    }
    targets.push_back(*data_info);
  }
  for (auto const& t : targets) {
    if (!t.stale && !force) {
      result.busy = ring + ": live processes attached (" + Who(targets.front()) + ")";
      return result;
    }
  }
  for (auto const& t : targets) {
    bool const removed = t.kind == SegmentKind::kUnfinished ? RemoveUnfinished(t.name) : RemoveSegment(t.name, force);
    if (!removed) {
      result.busy = t.name + ": a process attached meanwhile (or it changed)";
      return result;
    }
    result.removed.push_back(t.name);
  }
  return result;
}

}  // namespace circbuf::CircularBuffer
