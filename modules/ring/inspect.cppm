// circbuf.ring:inspect: a look at rings and segments from outside, without
// attaching, and their removal. The `circbuf` tool's ls, stat, rm and gc
// are formatting over this partition; a program can use it the same way.
//
// Looking changes nothing: no reference count moves, nothing is mapped. The
// segment files in /dev/shm are read with pread(2), so a file that another
// process truncates meanwhile gives a short read (reported), never the
// SIGBUS a mapping would raise. Words the writer changes are read until two
// reads agree (a pread is a kernel copy, not an atomic load), and the
// positions are judged on a snapshot in which tail did not move.
//
// Every value read is untrusted. The State is judged by HeaderProblem and
// PositionProblem, the rules IWrapper::Validate applies when a Reader or
// Writer attaches (one statement of them, here); nothing is divided by,
// indexed with or looped over before it passed them. A State that breaks
// them is reported in SegmentInfo::corrupt, and nothing is derived from it.
//
// Probes (the library's own rules; circbuf.shm and Writer):
//   stale   no live process holds a flock on the segment, as /proc/locks
//           lists them: no lock is taken to find out (a probe that took one,
//           even for an instant, could keep the last process detaching from
//           removing the segment)
//   writer  the writer's OFD write lock on byte 0 of the state segment
//   unfinished  a creator took the segment's lock (/dev/shm/sem.NAME) and
//           has not finished the file (magic 0), or died first
//
// Thread safety: every function here may run concurrently with anything,
// in any process (they only read, and Remove* decide under the segment's lock).
module;

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

export module circbuf.ring:inspect;

import circbuf.shm;
import :layout;
import :wrapper;

export namespace circbuf::CircularBuffer {

// ---- The rules of a State -------------------------------------------------------
// What breaks the rules of a State's header (written once, by its creator):
// one line naming the field, what it holds and what would be right; "" if
// it keeps them. Does not look at magic and version (the caller has).
std::string HeaderProblem(State const& s);
// What breaks the rules of a snapshot of the positions of a State whose
// header passed HeaderProblem; "" if nothing. `latest` is kNoRecord or a
// multiple of 8 within a capacity of tail (the writer stores it just
// before tail).
std::string PositionProblem(std::uint64_t tail, std::uint64_t latest, std::uint64_t limit, std::uint64_t capacity,
                            std::uint64_t chunk);
// The writer's OFD lock on the state segment open as `fd` is held by a live
// process (F_OFD_GETLK). Throws std::system_error if the probe fails.
bool WriterLockHeld(int fd);

[[nodiscard]] constexpr std::string_view ToString(WriterStatus status) noexcept {
  switch (status) {
    case WriterStatus::kNone: return "none";
    case WriterStatus::kAlive: return "alive";
    case WriterStatus::kClosed: return "closed";
    case WriterStatus::kDead: return "dead";
  }
  return "?";
}

// ---- A look at one segment ------------------------------------------------------
enum class SegmentKind : std::uint8_t {
  kForeign,     // not circbuf's (no circbuf header), or not finished yet
  kSegment,     // a circbuf SharedMemory segment that is not a ring's State
  kRing,        // the state segment of a ring (NAME; its data is DataSegmentName(NAME))
  kRingOther,   // ring magic, another layout version
  kUnfinished,  // a creator has not finished it, or died first
};

struct SegmentInfo {
  std::string name;  // "/quotes"
  SegmentKind kind = SegmentKind::kForeign;
  int open_errno = 0;  // List only: non-zero if it could not be opened (e.g. EACCES)
  std::uint64_t file_bytes = 0;
  std::uint32_t refcount = 0;  // attachments recorded (dead ones until noticed)
  std::uint32_t segment_version = 0;
  std::uint64_t user_bytes = 0;
  std::uint64_t header_bytes = 0;  // its header region (the page size it was laid out in); 0: not a valid one
  pid_t creator_pid = 0;
  bool stale = false;  // no live process holds it (flock probe)
  // Rings only:
  std::uint32_t ring_version = 0;
  std::uint64_t capacity = 0;
  std::uint64_t chunk = 0;
  std::uint32_t max_message = 0;
  std::uint64_t tail = 0;
  std::uint64_t messages = 0;  // sequence numbers used: the latest intact record's sequence + 1
  std::uint64_t skipped = 0;   // of them, skipped by gap records (Writer::Skip): messages - skipped were written
  pid_t writer_pid = 0;
  WriterStatus writer = WriterStatus::kNone;
  std::uint64_t writer_epoch = 0;
  TypeTag type{};       // the ring's message type (all 0: untyped)
  // The wake word is armed: a reader went to sleep in Wait since the
  // writer's last message (it may have timed out since; the writer's next
  // commit disarms it).
  bool sleeping = false;
  bool has_data = false;  // the data segment exists
  bool data_stale = false;
  std::uint32_t data_refcount = 0;
  // Unfinished segments only:
  bool lock_only = false;  // only its lock, /dev/shm/sem.NAME, is there
  bool lock_held = false;  // a live process holds that lock (creating it)
  // Non-empty: the ring's State breaks the rules (HeaderProblem,
  // PositionProblem, the WriterState values), "corrupt State: ..." naming
  // the field. Nothing derived from such a State is filled in.
  std::string corrupt;
  std::uint64_t state_magic = 0;  // the State's magic (0: maybe not initialised yet)
  // Non-empty: the segment's file (or, for a ring, its data segment's) is
  // not as long as its header says, "truncated or damaged: ..." (a Reader
  // refuses such a ring; looking at it here is safe: nothing is mapped).
  std::string damage;
};

// Looks at one segment (a name with its leading '/'). Throws
// std::system_error for a file that cannot be opened (ENOENT: no such
// segment, EACCES, ...; EINVAL: not a regular file) and
// std::invalid_argument for a bad name. Whatever the file holds, the
// result describes it: corrupt and damaged segments are values, not errors.
[[nodiscard]] SegmentInfo Inspect(std::string_view name);
// Every segment in /dev/shm whose name matches the fnmatch(3) glob
// `pattern` ("/cbt-*"; empty: all), by name. Data segments are listed as
// well (kind kSegment), and circbuf locks without their segment (kind
// kUnfinished, lock_only). Segments that cannot be opened are listed with
// open_errno set.
[[nodiscard]] std::vector<SegmentInfo> List(std::string_view pattern = {});
// Whether `name` matches the glob `pattern` as List matches it.
[[nodiscard]] bool NameMatches(std::string_view pattern, std::string_view name);

// ---- Removal --------------------------------------------------------------------
// Under the segment's own lock (so never racing with a process attaching or
// detaching): unlinks segment `name` if no live process holds it, or if
// `force`. False if it is live and not forced. Throws std::system_error:
// EBUSY if the lock stays taken for 2 s, ENOENT if there is no such segment.
bool RemoveSegment(std::string_view name, bool force);
// Under the segment's lock: removes an unfinished segment whose creator died,
// or a lock with no segment. False (and leaves it) if a live process holds
// the lock, or it is no longer unfinished.
bool RemoveUnfinished(std::string_view name);
// /dev/shm/sem.NAME, a segment's lock, exists; a live process holds it.
[[nodiscard]] bool LockExists(std::string_view name);
[[nodiscard]] bool LockHeld(std::string_view name);

// Removes ring `name`: its state segment and its data segment, or what a
// creator that died before it finished them left (unfinished files, locks).
// Refused while a live process holds either, unless `force` (processes
// attached keep their mappings; new ones get a new ring): then `busy` says
// who holds it, and what was removed before is in `removed`. Nothing there:
// both empty. Throws std::invalid_argument for a bad ring name, or a
// segment that is not circbuf's (left alone); std::system_error if a
// segment's lock stays taken (EBUSY) or a file cannot be read.
struct RemoveResult {
  std::vector<std::string> removed;  // names unlinked, in order
  std::string busy;                  // non-empty: refused, and why
};
RemoveResult Remove(std::string_view name, bool force);

}  // namespace circbuf::CircularBuffer
