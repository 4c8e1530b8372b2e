// Support for bench/wait.bench.cpp: looking at blocking readers from outside.
//   WakeWordView     the ring's wake word (circbuf.ring:layout: u32 at offset
//                    128 of the state segment), mapped read-only: armed bit
//                    and wake count, read without a system call
//   InterruptCount   one CPU's column of a /proc/interrupts line (CAL, TLB)
//   Membarrier...    the blocking-reader protocol before the wake word
//                    (docs/design.md, "Blocking readers"): each Wait issued
//                    MEMBARRIER_CMD_GLOBAL_EXPEDITED
#pragma once

#include <fcntl.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace circbuf::bench {

class WakeWordView {
 public:
  explicit WakeWordView(std::string const& ring) {
    int const fd = ::open(("/dev/shm/" + ring.substr(1)).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p != MAP_FAILED) page_ = static_cast<std::uint32_t*>(p);
  }
  ~WakeWordView() {
    if (page_ != nullptr) ::munmap(page_, kPage);
  }
  WakeWordView(WakeWordView const&) = delete;
  WakeWordView& operator=(WakeWordView const&) = delete;

  [[nodiscard]] bool Valid() const { return page_ != nullptr; }
  // Relaxed: an observation from outside; nothing is ordered by it.
  [[nodiscard]] std::uint32_t Load() const {
    return page_ == nullptr ? 0 : std::atomic_ref<std::uint32_t>(page_[kOffset / 4]).load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool Armed() const { return (Load() & 1U) != 0; }
  // Bits 1..31: moved by every wake (the writer's, attach, close, RequestStop).
  [[nodiscard]] std::uint32_t Count() const { return Load() >> 1; }
  static std::uint32_t Wakes(std::uint32_t before, std::uint32_t after) { return (after - before) & 0x7fffffffU; }

 private:
  static constexpr std::size_t kPage = 4096;
  static constexpr std::size_t kOffset = 128;  // SegmentHeader::attachers + kWakeWordOffset
  std::uint32_t* page_ = nullptr;
};

// The count in CPU `cpu`'s column of the /proc/interrupts line that starts
// with `tag` ("CAL", "TLB"); nothing if the line or the column is missing.
inline std::optional<std::uint64_t> InterruptCount(std::string const& tag, int cpu) {
  std::ifstream in("/proc/interrupts");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  int column = -1;
  {
    std::istringstream head(line);
    std::string name;
    for (int i = 0; head >> name; ++i) {
      if (name == "CPU" + std::to_string(cpu)) column = i;
    }
  }
  if (column < 0) return std::nullopt;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string first;
    row >> first;
    if (first != tag + ":") continue;
    std::uint64_t value = 0;
    for (int i = 0; i <= column; ++i) {
      if (!(row >> value)) return std::nullopt;
    }
    return value;
  }
  return std::nullopt;
}

inline long Membarrier(int command) { return ::syscall(SYS_membarrier, command, 0, 0); }
// True if this kernel has MEMBARRIER_CMD_GLOBAL_EXPEDITED and its registration.
inline bool HaveGlobalExpedited() {
  long const commands = Membarrier(MEMBARRIER_CMD_QUERY);
  int const want = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
  return commands > 0 && (commands & want) == want;
}

}  // namespace circbuf::bench
