// circbuf.shm: a named POSIX shared-memory segment, owned RAII-style.
//
// Segment layout (one source of truth; pinned by static_asserts below and by
// tests/shm/layout.test.cpp):
//
//   offset 0     +--------------------------------------------------------+
//                | refcount u32 (atomic_ref) | pad .................. 64  | line 0: attach/detach only
//   offset 64    +--------------------------------------------------------+
//                | magic u64 | version u32 | header_bytes u32           |  line 1: written once by
//                | user_bytes u64 | creator_pid i32 | pad ......... 128 |  the creator, magic last
//   offset 128   +--------------------------------------------------------+
//                | attachers[64]: any attacher writes (zero at creation) |  line 2: the user region's
//   offset 192   +--------------------------------------------------------+  owner defines it (the ring:
//                | reserved (zero) ................................. 4096 |  its wake word, see :layout)
//   offset 4096  +--------------------------------------------------------+
//                | (only with larger pages) never touched, not allocated  |
//   header_bytes +========================================================+
//                | user region: user_bytes bytes, page aligned            |
//                | (AsStruct / AsSpan view this part only)                |
//                +--------------------------------------------------------+
//
// The header takes a whole page so that the user region can be mapped with
// its own protection: a read-only attachment maps the header page read-write
// (to count itself, and to write the attachers line) and the user region
// read-only. So what every attacher must be able to write lives in line 2,
// and the user region can stay out of reach of a read-only attacher's bugs.
//
// Page size: header_bytes is one page of the creator's kernel, PageSize():
// 4096 on x86-64, 16384 or 65536 on some aarch64 kernels (kMinPageSize ..
// kMaxPageSize). It is the mmap offset of the user region, so it must be a
// multiple of the page size of every process that maps the segment; an
// attacher takes it from the header (HeaderBytesProblem judges it) and
// never assumes it. The header struct itself is the first 4096 bytes; the
// rest of a larger header region is never touched (a hole in the file where
// the kernel's pages are smaller; where they are that large, the page is
// allocated whole). Anything else that must be page aligned (a ring's end
// mark) is aligned to header_bytes.
//
// Special values: magic == 0 means "creation did not finish" (the creator died
// between ftruncate and publishing the header); any other magic than
// kSegmentMagic means "not a circbuf segment" and such a segment is never
// touched or unlinked.
//
// Synchronization
//   * Creating, attaching and detaching are serialised by a SemaphoreLock with
//     the segment's name (semaphores and segments live in different
//     namespaces of /dev/shm: "sem.NAME" and "NAME").
//   * refcount: read and written only under that lock (atomic_ref, acq_rel),
//     so it never goes wrong while everyone is alive.
//   * Liveness: every attachment holds a shared flock(2) on its descriptor of
//     the segment; the kernel drops it when the process dies. A detaching
//     process that can then take the flock exclusively is the last live one
//     and unlinks the segment, whatever refcount says (dead attachments never
//     decremented it); an attaching process that can take it exclusively
//     finds the segment stale and resets refcount to 0 before counting itself.
//   * The header line, and the user region through `initialize`, are written
//     before magic is stored with release; attachers, and tools that read
//     the file without the lock, load magic with acquire ([S1] pairs with [S2]).
//   * A SharedMemory object belongs to the process that constructed it: in a
//     forked child its destructor only unmaps (the flock is shared with the
//     parent's descriptor and must not be dropped by the child).
//
// Untrusted segments: an attacher checks the file size with fstat before it
// touches a page (header page first, then magic, version, sizes against the
// file). A segment that another process truncates *after* it was mapped
// would raise SIGBUS on the next access; the truncation guard (see
// InstallTruncationGuard below, installed by the first SharedMemory) turns
// that fault into zero-filled pages and a flag, Truncated(), that the ring
// reports as kCorrupt. No system call is added to any hot path.
module;

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

export module circbuf.shm;

export import circbuf.sync;

export namespace circbuf {

inline constexpr std::size_t kCacheLineSize = 64;
// The page sizes circbuf lays segments out in ("Page size" above): the
// kernel's, from 4 KiB (x86-64) to 64 KiB (some aarch64 kernels).
inline constexpr std::size_t kMinPageSize = 4096;
inline constexpr std::size_t kMaxPageSize = 65536;
// Largest user region of one segment: the 50 MiB ring data limit, plus the
// page that holds a ring's end mark (circbuf.ring:layout).
inline constexpr std::size_t kMaxSegmentSize = std::size_t{50} * 1024 * 1024 + kMinPageSize;

// The kernel's page size (sysconf(_SC_PAGESIZE), read once).
[[nodiscard]] std::size_t KernelPageSize() noexcept;
// The page size this process lays the segments it creates out in: the
// kernel's, unless SimulatePageSizeForTesting chose another.
[[nodiscard]] std::size_t PageSize() noexcept;
// "" if a segment whose header region is `header_bytes` long can be mapped
// by this process, else what is wrong with it: it must be a power of two
// from kMinPageSize to kMaxPageSize and a multiple of the kernel's page
// size (it is the mmap offset of the user region).
[[nodiscard]] std::string HeaderBytesProblem(std::uint64_t header_bytes);

// Lays out the segments this process creates from now on as a kernel with
// `bytes`-byte pages would (0: the kernel's page size again), so that the
// arithmetic of 16 and 64 KiB kernels runs on a 4 KiB one. Attaching is not
// affected: a segment's own header says how it is laid out. Throws
// std::invalid_argument unless HeaderBytesProblem(bytes) is "".
void SimulatePageSizeForTesting(std::size_t bytes);

// ---- What may live in shared memory ------------------------------------------
//
// Admitted: trivially copyable standard-layout types without pointers at the
// top level (a pointer means nothing at another process's address), and
// std::atomic<U> only when it is always lock-free (a lock-based atomic keeps
// its lock in process-private memory). Arrays are judged by their element.
// Refused at compile time: std::string and other non-trivial types, pointers
// and member pointers, references, non-lock-free atomics, and types aligned
// beyond the page that the user region is aligned to. Not detectable without
// reflection, and therefore the caller's responsibility: pointer members
// inside a struct, and non-lock-free atomics nested inside a struct.
//
// Note: GCC and Clang report std::atomic<U> as trivially copyable (docs/toolchain-notes.md,
// "Includes, imports and where spdlog may go", rule 4), so atomics are recognised explicitly, not through that trait.

template <class T>
inline constexpr bool kIsStdAtomic = false;
template <class U>
inline constexpr bool kIsStdAtomic<std::atomic<U>> = true;

template <class T>
concept LockFreeAtomic = kIsStdAtomic<std::remove_cv_t<T>> && std::remove_cv_t<T>::is_always_lock_free;

template <class T>
concept Storable =
    std::is_object_v<T> && !std::is_pointer_v<std::remove_all_extents_t<T>> &&
    !std::is_member_pointer_v<std::remove_all_extents_t<T>> &&
    std::is_standard_layout_v<std::remove_all_extents_t<T>> &&
    (LockFreeAtomic<std::remove_all_extents_t<T>> || (!kIsStdAtomic<std::remove_cv_t<std::remove_all_extents_t<T>>> &&
                                                      std::is_trivially_copyable_v<std::remove_all_extents_t<T>>)) &&
    alignof(T) <= kMinPageSize;

// ---- Segment header ------------------------------------------------------------

inline constexpr std::uint64_t kSegmentMagic = 0x3130'4D48'5342'4343ULL;  // "CCBSHM01" little-endian
inline constexpr std::uint32_t kSegmentVersion = 1;

struct SegmentHeader {
  // line 0: attach/detach
  std::uint32_t refcount;
  std::byte pad0[kCacheLineSize - sizeof(std::uint32_t)];
  // line 1: written once by the creator, magic last
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t header_bytes;
  std::uint64_t user_bytes;
  std::int32_t creator_pid;
  std::byte pad1[kCacheLineSize - 28];
  // line 2: written by any attacher, read-only or not; zero at creation.
  // Its meaning belongs to the user region's owner (see AttacherLine).
  std::byte attachers[kCacheLineSize];
  // rest of the first 4 KiB (the header region may be longer: header_bytes)
  std::byte reserved[kMinPageSize - 3 * kCacheLineSize];
};
static_assert(std::is_trivial_v<SegmentHeader> && std::is_standard_layout_v<SegmentHeader>);
static_assert(offsetof(SegmentHeader, refcount) == 0);
static_assert(offsetof(SegmentHeader, magic) == 64);
static_assert(offsetof(SegmentHeader, version) == 72);
static_assert(offsetof(SegmentHeader, header_bytes) == 76);
static_assert(offsetof(SegmentHeader, user_bytes) == 80);
static_assert(offsetof(SegmentHeader, creator_pid) == 88);
static_assert(offsetof(SegmentHeader, attachers) == 128);
static_assert(offsetof(SegmentHeader, reserved) == 192);
static_assert(sizeof(SegmentHeader) == kMinPageSize);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);

// ---- SharedMemory -------------------------------------------------------------

enum class Access : std::uint8_t {
  kReadWrite,
  kReadOnly,  // the user region is mapped PROT_READ; a write to it faults
};

enum class OpenMode : std::uint8_t {
  kCreateOrAttach,  // attach if it exists, else create
  kCreate,          // fail with EEXIST if it exists
  kAttach,          // fail with ENOENT if it does not exist
};

// Huge pages for the user region of a segment this process creates: the
// transparent huge pages of the tmpfs behind /dev/shm. Whether it gives them
// is the mount's choice (its huge= option; huge=never, the default of most
// systems, gives none: see docs/huge-pages.md). Attachers map whatever the
// creator got, with no option of their own. A huge page is 2 MiB on x86-64
// (the PMD size) and aligned in the file, and the user region starts one
// page (P bytes, PageSize()) into the file, so a region of S bytes can hold
// at most floor((S + P) / 2 MiB) - 1 of them: none below 4 MiB - P.
enum class HugePages : std::uint8_t {
  kAsMounted,  // no request: huge pages only if the mount forces them (huge=always, within_size)
  kPrefer,     // ask for them (MADV_HUGEPAGE, enough with huge=advise); 4 KiB pages if none come
  kRequire,    // ask for them; creation fails (EOPNOTSUPP, nothing left behind) if none come
};

struct ShmOptions {
  OpenMode open = OpenMode::kCreateOrAttach;
  Access access = Access::kReadWrite;
  mode_t mode = 0600;  // permissions of a newly created segment (and its lock)
  // Group of a newly created segment (and its lock); kKeepGroup: the
  // creator's. For readers running as other users: e.g. mode 0660 and their
  // group. Creation fails with EPERM if the creator may not use that group.
  gid_t group = kKeepGroup;
  std::chrono::milliseconds lock_timeout{10'000};  // bound on waiting for the lock
  HugePages huge_pages = HugePages::kAsMounted;    // at creation only
  // Runs once, in the creating process, on the zeroed user region, while the
  // segment's lock is still held: an attacher never sees the region before
  // it has run. If it throws, the segment is removed and the error propagates.
  // The `{}` is not redundant: without a default member initializer clang's
  // -Wmissing-designated-field-initializers flags every ShmOptions{.open = ...}.
  std::function<void(std::span<std::byte>)> initialize{};  // NOLINT(readability-redundant-member-init)
};

class SharedMemory {
 public:
  // Opens or creates the segment `name` with a user region of `size` bytes
  // (1 .. kMaxSegmentSize). When attaching, `size` must equal the segment's
  // size; with OpenMode::kAttach a size of 0 means "whatever it has".
  // The creator sizes the segment, reserves its memory (posix_fallocate, so a
  // full /dev/shm is an error here and never a SIGBUS later) and prefaults the
  // mapping (MAP_POPULATE). Throws std::invalid_argument (bad name, a segment
  // that is not circbuf's or has another layout version),
  // std::length_error (size 0, too large, or a size mismatch) and
  // std::system_error (errno and the name) when a system call fails. On any
  // error nothing is created, leaked or truncated.
  SharedMemory(std::string_view name, std::size_t size, ShmOptions options = {});
  ~SharedMemory();

  SharedMemory(SharedMemory const&) = delete;
  SharedMemory& operator=(SharedMemory const&) = delete;
  SharedMemory(SharedMemory&& other) noexcept;
  SharedMemory& operator=(SharedMemory&& other) noexcept;

  // The segment's name, as given ("/NAME").
  [[nodiscard]] inline std::string const& Name() const noexcept { return name_; }
  // Bytes of the user region (the header page is not counted).
  [[nodiscard]] inline std::size_t Size() const noexcept { return size_; }
  // Bytes of the header region (SegmentHeader::header_bytes): the page size
  // the segment was laid out in, and the file offset of the user region.
  [[nodiscard]] inline std::size_t HeaderBytes() const noexcept { return header_bytes_; }
  // How the user region is mapped in this process.
  [[nodiscard]] inline Access GetAccess() const noexcept { return access_; }
  // True if this object created the segment (false: it attached).
  [[nodiscard]] inline bool Created() const noexcept { return created_; }
  // Attachments recorded in the segment (live ones, plus dead ones not yet
  // noticed). Slow-path diagnostic.
  [[nodiscard]] std::uint32_t RefCount() const noexcept;
  // Bytes of the user region that this process maps with huge pages (the
  // PMD-mapped shared memory of the mapping in /proc/self/smaps); 0 if none,
  // or if /proc is not mounted. Slow path: reads a file.
  [[nodiscard]] std::size_t HugePageBytes() const;
  // Line 2 of the header page (SegmentHeader::attachers, 64 bytes, 64-byte
  // aligned): shared memory that every attachment may write, a read-only one
  // too. For the few words that readers of a segment must write (the ring's
  // wake word), so that its user region can be mapped read-only for them.
  [[nodiscard]] inline std::byte* AttacherLine() const noexcept {
    return header_ == nullptr ? nullptr : header_->attachers;
  }
  // The segment's file descriptor (for fstat and the like; do not close it).
  [[nodiscard]] inline int NativeHandle() const noexcept { return fd_; }

  // This attachment will not unlink the segment when it detaches, even as
  // the last one out. For an attacher that refuses what it found (another
  // layout version, corrupt contents): refusing must change nothing.
  inline void KeepOnDetach() noexcept { keep_ = true; }

  // True once the truncation guard has caught an access to this attachment
  // beyond the end of its file (another process shrank the segment): the
  // missing pages now read as zeros in this process only, and the contents
  // are no longer the segment's. Sticky; re-attach to a re-created segment.
  // One relaxed load of process-local memory.
  [[nodiscard]] bool Truncated() const noexcept;

  // Bytes of the user region as raw memory.
  [[nodiscard]] inline std::byte* Data() noexcept { return user_; }
  [[nodiscard]] inline std::byte const* Data() const noexcept { return user_; }

  // The user region viewed as one T at its start. T must be const on a
  // read-only attachment. Throws std::length_error if sizeof(T) > Size().
  template <class T>
    requires Storable<std::remove_const_t<T>>
  [[nodiscard]] T* AsStruct() {
    CheckView(sizeof(T), std::is_const_v<T>, "AsStruct");
    return reinterpret_cast<T*>(user_);
  }

  // The user region viewed as Size() / sizeof(T) elements of T.
  template <class T>
    requires Storable<std::remove_const_t<T>>
  [[nodiscard]] std::span<T> AsSpan() {
    CheckView(sizeof(T), std::is_const_v<T>, "AsSpan");
    return {reinterpret_cast<T*>(user_), size_ / sizeof(T)};
  }

  // True if a segment with this name exists (whatever its contents).
  static bool Exists(std::string_view name);
  // Unlinks a segment by name and its lock, regardless of who is attached.
  // For cleanup tools; false if it did not exist.
  static bool Remove(std::string_view name);

 private:
  void CheckView(std::size_t bytes, bool is_const, char const* what) const;
  void Detach() noexcept;

  std::string name_;
  SemaphoreLock lock_;
  std::size_t size_ = 0;
  std::size_t header_bytes_ = 0;
  SegmentHeader* header_ = nullptr;
  std::byte* user_ = nullptr;
  int fd_ = -1;
  int guard_slot_ = -1;  // this attachment's entry in the truncation guard's registry (-1: none)
  pid_t owner_pid_ = 0;
  Access access_ = Access::kReadWrite;
  bool created_ = false;
  bool keep_ = false;
};

// ---- Truncation guard -----------------------------------------------------------
//
// A process-wide SIGBUS handler for segments that another process shrinks
// (ftruncate) while they are mapped here. The handler looks the faulting
// address (si_addr) up in a lock-free registry of this process's circbuf
// mappings; if it lies in one, it maps zero-filled private anonymous pages
// over the rest of that mapping (MAP_FIXED, with the mapping's protection),
// flags the attachment as truncated and returns, so the access repeats and
// reads zeros (a zero record header means "nothing yet" to a reader). Any
// other SIGBUS goes to the handler that was installed before, or gets the
// default action (the process dies with SIGBUS, as without the guard).
//
// SharedMemory installs it on the first attach in a process, so the promise
// "a shrunk segment never kills a reader" needs no call from the user. An
// application that installs its own SIGBUS handler afterwards replaces the
// guard: call InstallTruncationGuard() again after it (idempotent; the
// application's handler then receives every fault that is not circbuf's,
// once: if it chains to the handler it replaced, the guard, the fault goes
// on to the handler before that, and past the oldest to the default action).
// Zero pages in place of the file is process-local: other processes, the
// writer included, see the file as it is. Limit: kGuardSlots attachments
// per process are covered (beyond that a warning is logged and the
// attachment is unguarded).
void InstallTruncationGuard();
inline constexpr std::size_t kGuardSlots = 1024;
// Truncations the guard has caught in this process, over all segments. A
// reader compares it with the value it last saw: one relaxed load.
std::atomic<std::uint32_t> const& TruncationEvents() noexcept;

}  // namespace circbuf

// Not exported: the registry, for the implementation units of circbuf.shm.
namespace circbuf::shm_impl {
int GuardAcquire() noexcept;  // a free registry slot, or -1 if all are taken
void GuardCoverHeader(int slot, void* header) noexcept;
void GuardCoverUser(int slot, void* user, std::size_t bytes, int prot) noexcept;
void GuardRelease(int slot) noexcept;  // before the mappings are unmapped
bool GuardTruncated(int slot) noexcept;
}  // namespace circbuf::shm_impl
