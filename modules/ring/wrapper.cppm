// circbuf.ring:wrapper: IWrapper, the common base of Writer and Reader. It
// owns the two SharedMemory segments of a ring, validates what it attached to
// and copies the immutable header fields into the object, so the hot paths
// never re-read (or trust again) the shared header.
//
// Word-wise copies. A reader may copy bytes that the writer is overwriting at
// that very moment; it then discards them (the `limit` test, see :layout).
// To keep that race-free in C++ terms (the seqlock problem, P1478) both sides
// access ring memory through std::atomic_ref<std::uint64_t> with
// memory_order_relaxed: on x86-64 and AArch64 these are plain 8-byte moves,
// so the cost is losing wide vector copies, which the benchmarks measure.
module;

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

export module circbuf.ring:wrapper;

import circbuf.shm;
import :layout;

namespace circbuf::CircularBuffer {

inline std::uint64_t LoadWord(std::byte const* ring, std::uint64_t offset) noexcept {
  // std::atomic_ref<T const> arrives only in C++26; a load never writes (the
  // reader's data segment is even mapped PROT_READ).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
  auto* word = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(ring + offset));
  return std::atomic_ref<std::uint64_t>(*word).load(std::memory_order_relaxed);
}

inline void StoreWord(std::byte* ring, std::uint64_t offset, std::uint64_t value) noexcept {
  auto* word = reinterpret_cast<std::uint64_t*>(ring + offset);
  std::atomic_ref<std::uint64_t>(*word).store(value, std::memory_order_relaxed);
}

inline void CopyToRing(std::byte* ring, std::uint64_t offset, std::byte const* src, std::size_t n) noexcept {
  std::size_t const full = n / 8;
  for (std::size_t i = 0; i < full; ++i) {
    std::uint64_t word = 0;  // overwritten whole by the memcpy: the compiler drops the store
    std::memcpy(&word, src + i * 8, 8);
    StoreWord(ring, offset + i * 8, word);
  }
  if (std::size_t const rest = n % 8; rest != 0) {
    std::uint64_t word = 0;  // the record's padding bytes are zero
    std::memcpy(&word, src + full * 8, rest);
    StoreWord(ring, offset + full * 8, word);
  }
}

inline void CopyFromRing(std::byte* dst, std::byte const* ring, std::uint64_t offset, std::size_t n) noexcept {
  std::size_t const full = n / 8;
  std::size_t i = 0;
#if defined(__SSE2__)
  // Two 8-byte atomic loads feed one 16-byte store: the destination is the
  // caller's private memory, so only the loads need to be atomic, and one
  // store per 16 bytes instead of two lifts a store-bound loop. The software
  // prefetch 2 KiB ahead keeps enough cache misses in flight, which 8-byte
  // loads alone do not; it runs past the message on purpose: a reader that
  // is behind finds the next records there (prefetching is a hint: it never
  // faults, even past the end of the mapping). 64 KiB messages: 8.8 -> 17 GB/s.
  constexpr std::size_t kPrefetchAhead = 2048;
  for (; i + 2 <= full; i += 2) {
    if ((i & 7) == 0) __builtin_prefetch(ring + offset + i * 8 + kPrefetchAhead);
    std::uint64_t const lo = LoadWord(ring, offset + i * 8);
    std::uint64_t const hi = LoadWord(ring, offset + i * 8 + 8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i * 8),
                     _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
  }
#endif
  for (; i < full; ++i) {
    std::uint64_t const word = LoadWord(ring, offset + i * 8);
    std::memcpy(dst + i * 8, &word, 8);
  }
  if (std::size_t const rest = n % 8; rest != 0) {
    std::uint64_t const word = LoadWord(ring, offset + full * 8);
    std::memcpy(dst + full * 8, &word, rest);
  }
}

// The wake word (see :layout). Bump: [W5], word := (word | kWakeArmed) + 1,
// which clears the armed bit and moves the count; lock-free and
// async-signal-safe. FutexWake: FUTEX_WAKE of up to `count` sleepers of the
// word (a shared futex: any process that maps the page). Both never fail in a
// way a caller could act on, so they return nothing.
void BumpWake(std::uint32_t* word) noexcept;
void FutexWake(std::uint32_t* word, int count) noexcept;

}  // namespace circbuf::CircularBuffer

export namespace circbuf::CircularBuffer {

// What a reader (or a tool) can tell about the writer. Slow path: a system call.
enum class WriterStatus : std::uint8_t {
  kNone,    // no writer has attached to this ring yet
  kAlive,   // a writer process holds the ring
  kClosed,  // the last writer closed cleanly
  kDead,    // the last writer died without closing; a new one may take over
};

class IWrapper {
 public:
  // The ring's name and capacity as attached (capacity filled in for a
  // reader that passed 0).
  [[nodiscard]] Spec const& GetSpec() const noexcept { return spec_; }
  // Bytes of record space.
  [[nodiscard]] std::uint64_t Capacity() const noexcept { return capacity_; }
  // Largest message this ring accepts: MaxMessageFor(Capacity()).
  [[nodiscard]] std::size_t MaxMessageSize() const noexcept { return max_message_; }
  // Whether a writer is attached and alive, closed, dead, or never was
  // (probes the writer's OFD lock: a system call, slow path only).
  [[nodiscard]] WriterStatus GetWriterStatus() const;
  // Pid of the writer that holds (or last held) the ring; 0 if none ever did.
  [[nodiscard]] pid_t WriterPid() const noexcept;
  // Positions as published now (diagnostics and tools).
  [[nodiscard]] std::uint64_t PublishedTail() const noexcept {
    return std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
  }
  // The shared State, read-only (diagnostics; load its fields with atomic_ref).
  [[nodiscard]] State const& SharedState() const noexcept { return *state_; }
  // True once another process has shrunk (ftruncate) one of the ring's
  // segments under this attachment (see circbuf.shm's truncation guard):
  // what this process sees of the ring is no longer the ring. A reader then
  // returns kCorrupt from every Read. Slow path; sticky.
  [[nodiscard]] bool Truncated() const noexcept;
  // Bytes of the record space that this process maps with huge pages (see
  // WriterOptions::huge_pages); 0 with 4 KiB pages. Slow path: reads
  // /proc/self/smaps.
  [[nodiscard]] std::size_t HugePageBytes() const;

  IWrapper(IWrapper const&) = delete;
  IWrapper& operator=(IWrapper const&) = delete;

 protected:
  enum class Role : std::uint8_t { kWriter, kReader };
  IWrapper(Spec const& spec, Role role, mode_t mode, gid_t group, HugePages huge_pages,
           std::chrono::milliseconds wait_for_buffer);
  ~IWrapper() = default;

  // state_shm_ is engaged from the end of the constructor on (which throws
  // otherwise); Writer and Reader call this only after it.
  // NOLINTNEXTLINE(bugprone-unchecked-optional-access)
  [[nodiscard]] int StateHandle() const noexcept { return state_shm_->NativeHandle(); }
  // After refusing what it attached to: leave the segments this object did
  // not create exactly as they were (never unlink them on the way out).
  void KeepAttachedSegments() noexcept;
  // Slow path (two fstat calls): true if a segment's file is now shorter
  // than what this process maps, also where no access has faulted yet (a cut
  // inside a page reads as zeros without a fault). Sticky: then Truncated()
  // is true too.
  bool CheckShrunk() noexcept;
  // The data segment's end mark (see :layout) is gone or changed: a cut of
  // the data segment, also one inside a page that no access faults on.
  // Sticky (Truncated() is true from then on). Hot paths inline the load.
  bool EndMarkGone() noexcept;
  [[nodiscard]] bool EndMarkIntact() const noexcept { return LoadWord(data_, end_mark_) == kEndMark; }

  Spec spec_{};
  std::optional<SharedMemory> state_shm_;  // NAME
  std::optional<SharedMemory> data_shm_;   // NAME.data (read-only for readers)
  State* state_ = nullptr;          // mapped read-only for a reader: loads only
  std::uint32_t* wake_ = nullptr;   // the wake word (see :layout), read-write for all
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t end_mark_ = 0;  // EndMarkOffset(capacity_)
  std::uint64_t chunk_ = 0;
  std::size_t max_message_ = 0;
  // TruncationEvents() of circbuf.shm, and the count last seen: when they
  // differ, some segment of this process was truncated (maybe one of ours).
  std::atomic<std::uint32_t> const* truncations_ = &TruncationEvents();
  std::uint32_t truncations_seen_ = 0;
  bool shrunk_ = false;  // CheckShrunk found a segment file shorter than its mapping

 private:
  void AttachAsWriter(mode_t mode, gid_t group, HugePages huge_pages);
  void AttachAsReader(std::chrono::milliseconds wait_for_buffer);
  void Validate();
  void CheckEndMark() const;
  void BindState(State* state) noexcept;
};

}  // namespace circbuf::CircularBuffer
