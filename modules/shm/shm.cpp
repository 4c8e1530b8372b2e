module;

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../detail/log.hpp"

module circbuf.shm;

namespace circbuf {

// Not an anonymous namespace: GCC 14 ICEs (ipa-comdats.cc:355) on
// internal-linkage helpers in a module implementation unit at -O1 and above.
namespace shm_impl {

[[noreturn]] void ThrowErrno(int error, std::string const& what) {
  throw std::system_error(error, std::generic_category(), what);
}

std::string Q(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::atomic<std::size_t> g_kernel_page{0};
std::atomic<std::size_t> g_simulated_page{0};  // 0: none (SimulatePageSizeForTesting)

// The name again, for the lock's constructor (the member initialiser list
// has to check it first).
std::string_view CheckedName(std::string const& name, std::size_t size, ShmOptions const& options) {
  ValidateName(name, "shared memory");
  // The header region is one page (the mmap offset of the user region):
  // pages beyond kMaxPageSize would not fit the layout ("Page size" in
  // circbuf.shm, docs/toolchain-notes.md).
  if (std::size_t const page = KernelPageSize(); page < kMinPageSize || page > kMaxPageSize) {
    throw std::system_error(ENOTSUP, std::generic_category(),
                            "shared memory " + Q(name) + ": the kernel's page size is " + std::to_string(page) +
                                " bytes; circbuf supports pages of " + std::to_string(kMinPageSize) + " to " +
                                std::to_string(kMaxPageSize) + " bytes");
  }
  bool const any_size = options.open == OpenMode::kAttach && size == 0;
  if (!any_size && (size == 0 || size > kMaxSegmentSize)) {
    throw std::length_error("shared memory " + Q(name) + ": size " + std::to_string(size) + " bytes: must be 1 .. " +
                            std::to_string(kMaxSegmentSize));
  }
  return name;
}

std::atomic_ref<std::uint32_t> RefCountOf(SegmentHeader* header) {
  return std::atomic_ref<std::uint32_t>(header->refcount);
}

void* MapOrThrow(std::size_t bytes, int prot, int fd, off_t offset, std::string const& name) {
  void* p = ::mmap(nullptr, bytes, prot, MAP_SHARED | MAP_POPULATE, fd, offset);
  if (p == MAP_FAILED) ThrowErrno(errno, "mmap(" + Q(name) + ", " + std::to_string(bytes) + " bytes)");
  return p;
}

#ifndef MADV_POPULATE_WRITE
constexpr int MADV_POPULATE_WRITE = 23;  // Linux 5.14; older headers lack it
#endif

// Bytes of the mapping that starts at `address` that this process maps with
// huge pages: ShmemPmdMapped (+ FilePmdMapped) of its entry in
// /proc/self/smaps. 0 if there is no such entry or no /proc.
std::size_t PmdMappedBytes(void const* address) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  auto const start = reinterpret_cast<std::uintptr_t>(address);
  bool inside = false;
  std::size_t kib = 0;
  while (std::getline(smaps, line)) {
    // An entry starts with "START-END PERMS ...": hex digits, then '-'.
    std::size_t const dash = line.find('-');
    bool const header = dash != std::string::npos && dash > 0 && line.find_first_not_of("0123456789abcdef") == dash;
    if (header) {
      if (inside) break;
      inside = std::strtoull(line.substr(0, dash).c_str(), nullptr, 16) == start;
      continue;
    }
    if (!inside) continue;
    for (char const* field : {"ShmemPmdMapped:", "FilePmdMapped:"}) {
      if (line.starts_with(field)) kib += std::strtoull(line.c_str() + std::strlen(field), nullptr, 10);
    }
  }
  return kib * 1024;
}

// Size of a PMD-mapped huge page (2 MiB on x86-64).
std::size_t HugePmdBytes() {
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  std::size_t bytes = 0;
  return file >> bytes && bytes > kMaxPageSize ? bytes : std::size_t{2} * 1024 * 1024;
}

// The huge= option of the tmpfs mounted on /dev/shm ("never" if it has none).
std::string DevShmHugeOption() {
  std::ifstream mounts("/proc/self/mounts");
  std::string device;
  std::string point;
  std::string type;
  std::string options;
  std::string rest;
  std::string found = "never";
  while (mounts >> device >> point >> type >> options && std::getline(mounts, rest)) {
    if (point != "/dev/shm") continue;  // the last mount on it is the one in use
    found = "never";
    for (std::size_t at = 0; at <= options.size();) {
      std::size_t const comma = std::min(options.find(',', at), options.size());
      std::string_view const option = std::string_view(options).substr(at, comma - at);
      if (option.starts_with("huge=")) found = std::string(option.substr(5));
      at = comma + 1;
    }
  }
  return found;
}

// Allocates the user region (file offsets header_bytes ..) of a new segment
// through a mapping that asks for transparent huge pages, before anything
// else allocates it with 4 KiB pages. Returns the bytes that came as huge
// pages, and sets `kernel_lacks` when the kernel cannot do it at all.
// Nothing else is reported here: posix_fallocate afterwards reports a full
// /dev/shm as ENOSPC (MADV_POPULATE_WRITE fails with EFAULT instead of
// raising SIGBUS).
std::size_t AllocateWithHugePages(int fd, std::size_t header_bytes, std::size_t size, std::string& kernel_lacks) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(header_bytes));
  if (p == MAP_FAILED) return 0;
  std::size_t huge = 0;
  if (::madvise(p, size, MADV_HUGEPAGE) != 0) {
    if (errno == EINVAL)
      kernel_lacks = "the kernel refused MADV_HUGEPAGE (no transparent huge pages, or disabled for this process)";
  } else if (::madvise(p, size, MADV_POPULATE_WRITE) != 0) {
    if (errno == EINVAL) kernel_lacks = "the kernel lacks MADV_POPULATE_WRITE (Linux 5.14 or later)";
  } else {
    huge = PmdMappedBytes(p);
  }
  ::munmap(p, size);
  return huge;
}

// The segment file is now shorter than its header region and `user_bytes`.
bool FileShrunk(int fd, std::size_t header_bytes, std::size_t user_bytes) noexcept {
  struct stat st{};
  return ::fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) < header_bytes + user_bytes;
}

// Owns the pieces of a half-built attachment; undoes them unless released.
struct Pending {
  explicit Pending(std::string const& segment) : name(segment) {}
  Pending(Pending const&) = delete;
  Pending& operator=(Pending const&) = delete;

  std::string const& name;
  int fd = -1;
  void* header = nullptr;
  void* user = nullptr;
  std::size_t user_bytes = 0;
  int guard_slot = GuardAcquire();  // the truncation guard covers each mapping as it is made
  bool unlink = false;              // we created the segment: remove it on failure

  ~Pending() {
    GuardRelease(guard_slot);
    if (user != nullptr) ::munmap(user, user_bytes);
    if (header != nullptr) ::munmap(header, sizeof(SegmentHeader));
    if (fd >= 0) ::close(fd);
    if (unlink) ::shm_unlink(name.c_str());
  }
};

// Disarmed on success; on failure removes the lock's name when no segment exists.
struct UnlinkLockIfNoSegment {
  UnlinkLockIfNoSegment(std::string const& segment, SemaphoreLock& segment_lock) : name(segment), lock(segment_lock) {}
  UnlinkLockIfNoSegment(UnlinkLockIfNoSegment const&) = delete;
  UnlinkLockIfNoSegment& operator=(UnlinkLockIfNoSegment const&) = delete;
  ~UnlinkLockIfNoSegment() {
    if (!armed) return;
    // On the way out of a failed constructor: a second error must not
    // replace the first, so it is only logged.
    try {
      if (!SharedMemory::Exists(name)) lock.Unlink();
    } catch (std::exception const& e) {
      detail::Log().warn("shared memory {}: lock name not removed: {}", name, e.what());
    }
  }

  std::string const& name;
  SemaphoreLock& lock;
  bool armed = true;
};

}  // namespace shm_impl
using namespace shm_impl;

std::size_t KernelPageSize() noexcept {
  std::size_t page = g_kernel_page.load(std::memory_order_relaxed);
  if (page == 0) {
    long const bytes = ::sysconf(_SC_PAGESIZE);
    page = bytes > 0 ? static_cast<std::size_t>(bytes) : kMinPageSize;
    g_kernel_page.store(page, std::memory_order_relaxed);
  }
  return page;
}

std::size_t PageSize() noexcept {
  std::size_t const simulated = g_simulated_page.load(std::memory_order_relaxed);
  return simulated != 0 ? simulated : KernelPageSize();
}

std::string HeaderBytesProblem(std::uint64_t header_bytes) {
  std::size_t const kernel = KernelPageSize();
  if (header_bytes < kMinPageSize || header_bytes > kMaxPageSize || !std::has_single_bit(header_bytes)) {
    return "header_bytes " + std::to_string(header_bytes) + ": must be a power of two from " +
           std::to_string(kMinPageSize) + " to " + std::to_string(kMaxPageSize) + " (a page)";
  }
  if (header_bytes % kernel != 0) {
    return "header_bytes " + std::to_string(header_bytes) + ": laid out for smaller pages than this kernel's " +
           std::to_string(kernel) + " bytes";
  }
  return "";
}

void SimulatePageSizeForTesting(std::size_t bytes) {
  if (bytes != 0) {
    if (std::string const problem = HeaderBytesProblem(bytes); !problem.empty()) {
      throw std::invalid_argument("SimulatePageSizeForTesting(" + std::to_string(bytes) + "): " + problem);
    }
  }
  g_simulated_page.store(bytes, std::memory_order_relaxed);
}

SharedMemory::SharedMemory(std::string_view name, std::size_t size, ShmOptions options)
    : name_(name),
      lock_(CheckedName(name_, size, options), SemaphoreLock::Options{options.mode, options.group}),
      owner_pid_(::getpid()),
      access_(options.access) {
  if (!lock_.TryAcquireFor(options.lock_timeout)) {
    ThrowErrno(ETIMEDOUT, "shared memory " + Q(name_) + ": lock not acquired within " +
                              std::to_string(options.lock_timeout.count()) + " ms");
  }
  SemaphoreLock::Guard held(lock_, std::adopt_lock);
  // Whatever fails below: if no segment of this name exists afterwards, the
  // lock's name goes too, so a refused call leaves nothing in /dev/shm.
  UnlinkLockIfNoSegment cleanup{name_, lock_};

  Pending p{name_};
  for (int attempt = 0;; ++attempt) {
    if (attempt > 2) ThrowErrno(EAGAIN, "shared memory " + Q(name_) + ": segment keeps changing");
    // ---- create --------------------------------------------------------------
    if (options.open != OpenMode::kAttach) {
      p.fd = ::shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
      if (p.fd >= 0) {
        p.unlink = true;
        if (options.group != kKeepGroup && ::fchown(p.fd, static_cast<uid_t>(-1), options.group) != 0) {
          ThrowErrno(errno, "shared memory " + Q(name_) + ": cannot give it to group " + std::to_string(options.group));
        }
        ::fchmod(p.fd,
                 options.mode);  // exactly the mode asked for, whatever the umask (after fchown: it may clear bits)
        header_bytes_ = PageSize();
        std::size_t const total = header_bytes_ + size;
        if (::ftruncate(p.fd, static_cast<off_t>(total)) != 0) {
          ThrowErrno(errno, "ftruncate(" + Q(name_) + ", " + std::to_string(total) + ")");
        }
        std::size_t huge = 0;
        std::string kernel_lacks;
        if (options.huge_pages != HugePages::kAsMounted) {
          huge = AllocateWithHugePages(p.fd, header_bytes_, size, kernel_lacks);
        }
        // The header struct and the user region; the rest of a header region
        // longer than the struct stays a hole (nothing ever touches it).
        int error = ::posix_fallocate(p.fd, 0, static_cast<off_t>(sizeof(SegmentHeader)));
        if (error == 0) error = ::posix_fallocate(p.fd, static_cast<off_t>(header_bytes_), static_cast<off_t>(size));
        if (error != 0) {
          ThrowErrno(error,
                     "shared memory " + Q(name_) + ": cannot reserve " + std::to_string(total) + " bytes in /dev/shm");
        }
        if (options.huge_pages != HugePages::kAsMounted && huge == 0) {
          std::string const mounted = DevShmHugeOption();
          std::size_t const smallest = 2 * HugePmdBytes() - header_bytes_;
          std::string const what =
              size < smallest ? "a region of " + std::to_string(size) + " bytes is too small to hold one (it needs " +
                                    std::to_string(smallest) + " bytes or more)"
              : !kernel_lacks.empty() ? kernel_lacks
              : mounted == "never"    ? "/dev/shm is mounted huge=never; remount it with huge=advise"
                                      : "the kernel had none to give (/dev/shm is mounted huge=" + mounted + ")";
          if (options.huge_pages == HugePages::kRequire) {
            ThrowErrno(EOPNOTSUPP, "shared memory " + Q(name_) + ": huge pages required, but none were given: " + what);
          }
          detail::Log().info("shared memory {}: no huge pages ({}); using 4 KiB pages", name_, what);
        }
        p.header = MapOrThrow(sizeof(SegmentHeader), PROT_READ | PROT_WRITE, p.fd, 0, name_);
        GuardCoverHeader(p.guard_slot, p.header);
        auto* h = static_cast<SegmentHeader*>(p.header);
        h->version = kSegmentVersion;
        h->header_bytes = static_cast<std::uint32_t>(header_bytes_);
        h->user_bytes = size;
        h->creator_pid = ::getpid();
        RefCountOf(h).store(1, std::memory_order_relaxed);  // published by [S1], after `initialize`
        created_ = true;
        size_ = size;
        detail::Log().info("shared memory {}: created, {} bytes, mode {:o}{}", name_, size, options.mode,
                           options.huge_pages == HugePages::kAsMounted
                               ? std::string()
                               : ", " + std::to_string(huge) + " bytes on huge pages");
        break;
      }
      if (errno != EEXIST) ThrowErrno(errno, "shm_open(" + Q(name_) + ", O_CREAT)");
      if (options.open == OpenMode::kCreate) ThrowErrno(EEXIST, "shared memory " + Q(name_) + " already exists");
    }
    // ---- attach --------------------------------------------------------------
    p.fd = ::shm_open(name_.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (p.fd < 0) {
      if (errno == ENOENT && options.open != OpenMode::kAttach) continue;  // removed meanwhile
      ThrowErrno(errno, "shm_open(" + Q(name_) + ")");
    }
    struct stat st{};
    if (::fstat(p.fd, &st) != 0) ThrowErrno(errno, "fstat(" + Q(name_) + ")");
    auto const file_bytes = static_cast<std::size_t>(st.st_size);
    std::uint64_t magic = 0;
    if (file_bytes >= sizeof(SegmentHeader)) {
      // fstat said the page exists; if the file shrinks from here on, the
      // guard turns the fault into zeros (magic 0: refused below).
      p.header = MapOrThrow(sizeof(SegmentHeader), PROT_READ | PROT_WRITE, p.fd, 0, name_);
      GuardCoverHeader(p.guard_slot, p.header);
      magic = std::atomic_ref<std::uint64_t>(static_cast<SegmentHeader*>(p.header)->magic)
                  .load(std::memory_order_acquire);  // [S2]
    }
    if (magic == 0 && (file_bytes == 0 || file_bytes >= sizeof(SegmentHeader))) {
      // Creation never finished. Under the lock nobody is creating it now; if
      // nobody is attached either, the creator died: remove it and start over.
      if (::flock(p.fd, LOCK_EX | LOCK_NB) == 0) {
        detail::Log().warn("shared memory {}: found an unfinished segment ({} bytes) whose creator died; "
                           "removing it",
                           name_, file_bytes);
        ::shm_unlink(name_.c_str());
        GuardCoverHeader(p.guard_slot, nullptr);
        if (p.header != nullptr) ::munmap(p.header, sizeof(SegmentHeader));
        p.header = nullptr;
        ::close(p.fd);
        p.fd = -1;
        if (options.open == OpenMode::kAttach) {
          ThrowErrno(ENOENT, "shared memory " + Q(name_) + ": creator died before finishing it");
        }
        continue;
      }
    }
    if (magic != kSegmentMagic) {
      throw std::invalid_argument("shared memory " + Q(name_) + ": not a circbuf segment (" +
                                  std::to_string(file_bytes) + " bytes, no circbuf header)");
    }
    auto* h = static_cast<SegmentHeader*>(p.header);
    if (h->version != kSegmentVersion) {
      throw std::invalid_argument("shared memory " + Q(name_) + ": layout version " + std::to_string(h->version) +
                                  ", this library reads version " + std::to_string(kSegmentVersion));
    }
    // Judged and used from one copy (another process may change the page).
    std::uint32_t const header_bytes = std::atomic_ref<std::uint32_t>(h->header_bytes).load(std::memory_order_relaxed);
    std::uint64_t const user_bytes = std::atomic_ref<std::uint64_t>(h->user_bytes).load(std::memory_order_relaxed);
    if (std::string const problem = HeaderBytesProblem(header_bytes); !problem.empty()) {
      throw std::invalid_argument("shared memory " + Q(name_) + ": corrupt header: " + problem);
    }
    if (user_bytes == 0 || user_bytes > kMaxSegmentSize || file_bytes != header_bytes + user_bytes) {
      throw std::invalid_argument("shared memory " + Q(name_) + ": corrupt header (header " +
                                  std::to_string(header_bytes) + " bytes, user region " + std::to_string(user_bytes) +
                                  " bytes, file " + std::to_string(file_bytes) + " bytes)");
    }
    if (size != 0 && size != user_bytes) {
      throw std::length_error("shared memory " + Q(name_) + ": exists with " + std::to_string(user_bytes) +
                              " bytes, asked for " + std::to_string(size));
    }
    size_ = user_bytes;
    header_bytes_ = header_bytes;
    // Stale? If no live process holds a shared flock, every recorded
    // attachment belongs to a dead process.
    if (::flock(p.fd, LOCK_EX | LOCK_NB) == 0) {
      std::uint32_t const stale = RefCountOf(h).exchange(0, std::memory_order_acq_rel);
      if (stale != 0) {
        detail::Log().warn("shared memory {}: recovered; {} attachment(s) recorded but no live process "
                           "attached",
                           name_, stale);
      }
    }
    RefCountOf(h).fetch_add(1, std::memory_order_acq_rel);
    detail::Log().info("shared memory {}: attached, {} bytes, {} attachment(s)", name_, size_,
                       RefCountOf(h).load(std::memory_order_relaxed));
    break;
  }
  // Map the user region, then hold a shared flock for as long as we are attached.
  int const prot = access_ == Access::kReadOnly ? PROT_READ : PROT_READ | PROT_WRITE;
  p.user_bytes = size_;
  try {
    if (created_ && options.initialize) {
      // The creator initialises through a writable mapping, even when it
      // asked for a read-only one, while the lock still keeps attachers out.
      void* init = MapOrThrow(size_, PROT_READ | PROT_WRITE, p.fd, static_cast<off_t>(header_bytes_), name_);
      struct Unmap {
        Unmap(void* address, std::size_t bytes) : p(address), n(bytes) {}
        Unmap(Unmap const&) = delete;
        Unmap& operator=(Unmap const&) = delete;
        ~Unmap() { ::munmap(p, n); }
        void* p;
        std::size_t n;
      } const unmap{init, size_};
      options.initialize(std::span<std::byte>(static_cast<std::byte*>(init), size_));
    }
    if (created_) {
      std::atomic_ref<std::uint64_t>(static_cast<SegmentHeader*>(p.header)->magic)
          .store(kSegmentMagic, std::memory_order_release);  // [S1] pairs with [S2]
    }
    p.user = MapOrThrow(size_, prot, p.fd, static_cast<off_t>(header_bytes_), name_);
    GuardCoverUser(p.guard_slot, p.user, size_, prot);
    if (::flock(p.fd, LOCK_SH) != 0) ThrowErrno(errno, "flock(" + Q(name_) + ", LOCK_SH)");
  } catch (...) {
    if (!created_) RefCountOf(static_cast<SegmentHeader*>(p.header)).fetch_sub(1, std::memory_order_acq_rel);
    throw;
  }
  header_ = static_cast<SegmentHeader*>(std::exchange(p.header, nullptr));
  user_ = static_cast<std::byte*>(std::exchange(p.user, nullptr));
  fd_ = std::exchange(p.fd, -1);
  guard_slot_ = std::exchange(p.guard_slot, -1);
  p.unlink = false;
  cleanup.armed = false;
}

SharedMemory::~SharedMemory() { Detach(); }

SharedMemory::SharedMemory(SharedMemory&& other) noexcept
    : name_(std::move(other.name_)),
      lock_(std::move(other.lock_)),
      size_(std::exchange(other.size_, 0)),
      header_bytes_(std::exchange(other.header_bytes_, 0)),
      header_(std::exchange(other.header_, nullptr)),
      user_(std::exchange(other.user_, nullptr)),
      fd_(std::exchange(other.fd_, -1)),
      guard_slot_(std::exchange(other.guard_slot_, -1)),
      owner_pid_(other.owner_pid_),
      access_(other.access_),
      created_(other.created_),
      keep_(other.keep_) {}

SharedMemory& SharedMemory::operator=(SharedMemory&& other) noexcept {
  if (this != &other) {
    Detach();
    name_ = std::move(other.name_);
    lock_ = std::move(other.lock_);
    size_ = std::exchange(other.size_, 0);
    header_bytes_ = std::exchange(other.header_bytes_, 0);
    header_ = std::exchange(other.header_, nullptr);
    user_ = std::exchange(other.user_, nullptr);
    fd_ = std::exchange(other.fd_, -1);
    guard_slot_ = std::exchange(other.guard_slot_, -1);
    owner_pid_ = other.owner_pid_;
    access_ = other.access_;
    created_ = other.created_;
    keep_ = other.keep_;
  }
  return *this;
}

void SharedMemory::Detach() noexcept {
  if (fd_ < 0) return;
  bool const mine = owner_pid_ == ::getpid();
  if (mine) {
    bool locked = false;
    try {
      locked = lock_.TryAcquireFor(std::chrono::seconds(10));
    } catch (std::exception const& e) {
      detail::Log().error("shared memory {}: lock failed on detach: {}", name_, e.what());
    }
    if (!locked) {
      detail::Log().error("shared memory {}: lock not acquired within 10 s on detach; "
                          "detaching without updating the reference count",
                          name_);
    } else {
      // A header page that another process truncated away has no count left
      // to update. Asked with fstat (a slow path) before touching the page:
      // no fault at all, not even one for the guard (a fault inside an
      // atomic read-modify-write deadlocks ThreadSanitizer's runtime).
      bool const truncated = Truncated() || FileShrunk(fd_, header_bytes_, size_);
      std::uint32_t const left = truncated ? 0 : RefCountOf(header_).fetch_sub(1, std::memory_order_acq_rel) - 1;
      if (truncated) detail::Log().warn("shared memory {}: was truncated by another process while attached", name_);
      // Converting our shared flock to exclusive succeeds only if no other
      // live attachment exists, in this process or any other.
      if (keep_) {
        detail::Log().info("shared memory {}: detached, kept ({} attachment(s) left)", name_, left);
      } else if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        if (left != 0 && !truncated) {
          detail::Log().warn("shared memory {}: {} attachment(s) died without detaching; freeing anyway", name_, left);
        }
        ::shm_unlink(name_.c_str());
        try {
          lock_.Unlink();
        } catch (std::exception const& e) {
          detail::Log().error("shared memory {}: {}", name_, e.what());
        }
        detail::Log().info("shared memory {}: last one out, unlinked", name_);
      } else {
        detail::Log().info("shared memory {}: detached, {} attachment(s) left", name_, left);
      }
      try {
        lock_.Release();
      } catch (std::exception const& e) {
        detail::Log().error("shared memory {}: {}", name_, e.what());
      }
    }
  }
  GuardRelease(std::exchange(guard_slot_, -1));
  ::munmap(user_, size_);
  ::munmap(header_, sizeof(SegmentHeader));
  ::close(fd_);  // drops our flock (in a forked copy, the parent's descriptor keeps it)
  fd_ = -1;
  user_ = nullptr;
  header_ = nullptr;
}

std::size_t SharedMemory::HugePageBytes() const { return user_ == nullptr ? 0 : PmdMappedBytes(user_); }

bool SharedMemory::Truncated() const noexcept { return GuardTruncated(guard_slot_); }

std::uint32_t SharedMemory::RefCount() const noexcept {
  return header_ == nullptr ? 0 : RefCountOf(header_).load(std::memory_order_acquire);
}

void SharedMemory::CheckView(std::size_t bytes, bool is_const, char const* what) const {
  if (user_ == nullptr) throw std::logic_error("shared memory: " + std::string(what) + " on a moved-from object");
  if (bytes > size_) {
    throw std::length_error("shared memory " + Q(name_) + ": " + what + " of " + std::to_string(bytes) +
                            " bytes does not fit the " + std::to_string(size_) + "-byte region");
  }
  if (!is_const && access_ == Access::kReadOnly) {
    throw std::logic_error("shared memory " + Q(name_) + ": read-only attachment; use " + what + "<const T>");
  }
}

bool SharedMemory::Exists(std::string_view name) {
  ValidateName(name, "shared memory");
  std::string const path = "/dev/shm/" + std::string(name.substr(1));
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

bool SharedMemory::Remove(std::string_view name) {
  ValidateName(name, "shared memory");
  std::string const n(name);
  bool const removed = ::shm_unlink(n.c_str()) == 0;
  if (!removed && errno != ENOENT) ThrowErrno(errno, "shm_unlink(" + Q(n) + ")");
  SemaphoreLock::Remove(n);
  if (removed) detail::Log().info("shared memory {}: removed by name", n);
  return removed;
}

}  // namespace circbuf
