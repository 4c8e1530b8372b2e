// circbuf.ring:wrapper: IWrapper, the common base of Writer and Reader. It
// owns the two SharedMemory segments of a ring, validates what it attached to
// and copies the immutable header fields into the object, so the hot paths
// never re-read (or trust again) the shared header.
//
// The copy. A reader may copy bytes that the writer is overwriting at that
// very moment; it then discards them (the `limit` test, see :layout). C++
// allows such a race only on atomics (the seqlock problem, P1478), so the
// portable copy accesses ring memory through std::atomic_ref<std::uint64_t>
// with memory_order_relaxed: plain 8-byte moves on x86-64 and AArch64. On
// x86-64 (outside the sanitizers) both sides copy with 16-byte SSE2 moves in
// inline assembly instead, outside the C++ abstract machine as the Linux
// kernel's copy routines are; which was chosen, its formal status and what
// ThreadSanitizer sees: docs/toolchain-notes.md, "The copy". Define
// CIRCBUF_WORD_COPY to build the word-wise copy on x86-64 too.
module;

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

// The copy between the ring and private memory: SSE2 moves in assembly on
// x86-64, 8-byte relaxed atomics elsewhere and under the sanitizers, which
// cannot see inside an asm statement (ThreadSanitizer would miss the race it
// is there to check; AddressSanitizer the bounds). See the comment at the
// top and docs/toolchain-notes.md, "The copy". Macros, not constants: an asm
// statement with x86 registers must not reach another target's compiler.
// NOLINTBEGIN(cppcoreguidelines-macro-usage)
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define CIRCBUF_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define CIRCBUF_SANITIZED 1
#endif
#if defined(__x86_64__) && !defined(CIRCBUF_SANITIZED) && !defined(CIRCBUF_WORD_COPY)
#define CIRCBUF_VECTOR_COPY 1
#else
#define CIRCBUF_VECTOR_COPY 0
#endif
// NOLINTEND(cppcoreguidelines-macro-usage)

export module circbuf.ring:wrapper;

import circbuf.shm;
import :layout;

namespace circbuf::CircularBuffer {

[[gnu::always_inline]] inline std::uint64_t LoadWord(std::byte const* ring, std::uint64_t offset) noexcept {
  // std::atomic_ref<T const> arrives only in C++26; a load never writes (the
  // reader's data segment is even mapped PROT_READ).
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast)
  auto* word = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(ring + offset));
  return std::atomic_ref<std::uint64_t>(*word).load(std::memory_order_relaxed);
}

// LoadWord with acquire: for the slow paths that read a header and then what
// it publishes (resynchronisation, late join), where no fence follows the header.
[[gnu::always_inline]] inline std::uint64_t AcquireWord(std::byte const* ring, std::uint64_t offset) noexcept {
  // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): as LoadWord
  auto* word = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(ring + offset));
  return std::atomic_ref<std::uint64_t>(*word).load(std::memory_order_acquire);
}

[[gnu::always_inline]] inline void StoreWord(std::byte* ring, std::uint64_t offset, std::uint64_t value) noexcept {
  auto* word = reinterpret_cast<std::uint64_t*>(ring + offset);
  std::atomic_ref<std::uint64_t>(*word).store(value, std::memory_order_relaxed);
}

// 1 .. 7 bytes at p as the low bytes of a word (the rest zero), without a
// libc call: two fixed-size loads that overlap where `rest` is not a power
// of two (the overlapping bytes are the same bytes, so OR keeps them).
[[gnu::always_inline]] inline std::uint64_t LoadTail(std::byte const* p, std::size_t rest) noexcept {
  if (rest >= 4) {
    std::uint32_t lo = 0;
    std::uint32_t hi = 0;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + rest - 4, 4);
    return lo | (std::uint64_t{hi} << (8 * (rest - 4)));
  }
  if (rest >= 2) {
    std::uint16_t lo = 0;
    std::uint16_t hi = 0;
    std::memcpy(&lo, p, 2);
    std::memcpy(&hi, p + rest - 2, 2);
    return lo | (std::uint64_t{hi} << (8 * (rest - 2)));
  }
  return std::to_integer<std::uint64_t>(*p);
}

// The low `rest` (1 .. 7) bytes of word to p, likewise without a libc call.
[[gnu::always_inline]] inline void StoreTail(std::byte* p, std::uint64_t word, std::size_t rest) noexcept {
  if (rest >= 4) {
    auto const lo = static_cast<std::uint32_t>(word);
    auto const hi = static_cast<std::uint32_t>(word >> (8 * (rest - 4)));
    std::memcpy(p + rest - 4, &hi, 4);
    std::memcpy(p, &lo, 4);
  } else if (rest >= 2) {
    auto const lo = static_cast<std::uint16_t>(word);
    auto const hi = static_cast<std::uint16_t>(word >> (8 * (rest - 2)));
    std::memcpy(p + rest - 2, &hi, 2);
    std::memcpy(p, &lo, 2);
  } else {
    *p = static_cast<std::byte>(word);
  }
}

#if CIRCBUF_VECTOR_COPY
// 64 bytes at a time in four 16-byte SSE2 moves (x86-64 baseline), written
// in assembly: the ring side's accesses race with the other process by
// design, which C++ allows only for atomics; an asm statement is outside the
// abstract machine (as the kernel's copy routines are), and "memory" keeps
// the compiler from moving ring accesses across it. x86-64 keeps loads in
// order with loads and stores with stores, so the protocol's fences hold for
// these moves as for 8-byte ones (docs/toolchain-notes.md, "The copy").
[[gnu::always_inline]] inline void Move64(std::byte* dst, std::byte const* src) noexcept {
  asm volatile("movdqu   (%[s]), %%xmm0\n\t"
               "movdqu 16(%[s]), %%xmm1\n\t"
               "movdqu 32(%[s]), %%xmm2\n\t"
               "movdqu 48(%[s]), %%xmm3\n\t"
               "movdqu %%xmm0,   (%[d])\n\t"
               "movdqu %%xmm1, 16(%[d])\n\t"
               "movdqu %%xmm2, 32(%[d])\n\t"
               "movdqu %%xmm3, 48(%[d])"
               :
               : [s] "r"(src), [d] "r"(dst)
               : "xmm0", "xmm1", "xmm2", "xmm3", "memory");
}

[[gnu::always_inline]] inline void Move16(std::byte* dst, std::byte const* src) noexcept {
  asm volatile("movdqu (%[s]), %%xmm0\n\t"
               "movdqu %%xmm0, (%[d])"
               :
               : [s] "r"(src), [d] "r"(dst)
               : "xmm0", "memory");
}
#endif

// The writer's copy of a message into the ring (offset: 8-aligned; the
// record's padding bytes, up to the next multiple of 8, become zero).
[[gnu::always_inline]] inline void CopyToRing(std::byte* ring, std::uint64_t offset, std::byte const* src,
                                              std::size_t n) noexcept {
  std::size_t i = 0;
#if CIRCBUF_VECTOR_COPY
  for (; i + 64 <= n; i += 64) Move64(ring + offset + i, src + i);
  for (; i + 16 <= n; i += 16) Move16(ring + offset + i, src + i);
#endif
  for (; i + 8 <= n; i += 8) {
    std::uint64_t word = 0;  // overwritten whole by the memcpy: the compiler drops the store
    std::memcpy(&word, src + i, 8);
    StoreWord(ring, offset + i, word);
  }
  if (i < n) StoreWord(ring, offset + i, LoadTail(src + i, n - i));
}

// The reader's copy of a message out of the ring. The software prefetch
// 2 KiB ahead keeps enough cache misses in flight for large messages; it
// runs past the message on purpose: a reader that is behind finds the next
// records there (a prefetch is a hint: it never faults, even past the end of
// the mapping). 64 KiB messages: 8.8 -> 17 GB/s with 8-byte loads.
[[gnu::always_inline]] inline void CopyFromRing(std::byte* dst, std::byte const* ring, std::uint64_t offset,
                                                std::size_t n) noexcept {
  constexpr std::size_t kPrefetchAhead = 2048;
  std::size_t i = 0;
#if CIRCBUF_VECTOR_COPY
  for (; i + 64 <= n; i += 64) {
    __builtin_prefetch(ring + offset + i + kPrefetchAhead);
    Move64(dst + i, ring + offset + i);
  }
  for (; i + 16 <= n; i += 16) Move16(dst + i, ring + offset + i);
#elif defined(__SSE2__)
  // Two 8-byte atomic loads feed one 16-byte store: the destination is the
  // caller's private memory, so only the loads need to be atomic.
  for (; i + 16 <= n; i += 16) {
    if ((i & 63) == 0) __builtin_prefetch(ring + offset + i + kPrefetchAhead);
    std::uint64_t const lo = LoadWord(ring, offset + i);
    std::uint64_t const hi = LoadWord(ring, offset + i + 8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
  }
#endif
  for (; i + 8 <= n; i += 8) {
    std::uint64_t const word = LoadWord(ring, offset + i);
    std::memcpy(dst + i, &word, 8);
  }
  if (i < n) StoreTail(dst + i, LoadWord(ring, offset + i), n - i);
}

// The wake word (see :layout). Bump: [W5], word := (word | kWakeArmed) + 1,
// which clears the armed bit and moves the count; lock-free and
// async-signal-safe. FutexWake: FUTEX_WAKE of up to `count` sleepers of the
// word (a shared futex: any process that maps the page). Both never fail in a
// way a caller could act on, so they return nothing.
void BumpWake(std::uint32_t* word) noexcept;
// A value that a move takes, leaving T{} behind (a moved-from Writer owns
// nothing: its destructor must not close the ring).
template <class T>
struct Taken {
  T value{};
  Taken() = default;
  Taken(Taken const&) = delete;
  Taken& operator=(Taken const&) = delete;
  Taken(Taken&& other) noexcept : value(std::exchange(other.value, T{})) {}
  Taken& operator=(Taken&& other) noexcept {
    value = std::exchange(other.value, T{});
    return *this;
  }
  ~Taken() = default;
  Taken& operator=(T v) noexcept {
    value = v;
    return *this;
  }
  operator T() const noexcept { return value; }  // NOLINT(google-explicit-constructor): a T in all but moves
};

// std::atomic<bool> that a move copies (Reader's stop flag; Reader is movable).
struct StopFlag : std::atomic<bool> {
  StopFlag() noexcept : std::atomic<bool>(false) {}
  StopFlag(StopFlag const&) = delete;
  StopFlag& operator=(StopFlag const&) = delete;
  StopFlag(StopFlag&& other) noexcept : std::atomic<bool>(other.load(std::memory_order_relaxed)) {}
  StopFlag& operator=(StopFlag&& other) noexcept {
    store(other.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }
  ~StopFlag() = default;
};

// "messages of 24 bytes, alignment 8, type id 0x51" (or "untyped messages").
std::string DescribeType(TypeTag type);
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
  [[nodiscard]] inline Spec const& GetSpec() const noexcept { return spec_; }
  // Bytes of record space.
  [[nodiscard]] inline std::uint64_t Capacity() const noexcept { return capacity_; }
  // Largest message this ring accepts: MaxMessageFor(Capacity()).
  [[nodiscard]] inline std::size_t MaxMessageSize() const noexcept { return max_message_; }
  // Whether a writer is attached and alive, closed, dead, or never was
  // (probes the writer's OFD lock: a system call, slow path only).
  [[nodiscard]] WriterStatus GetWriterStatus() const;
  // Pid of the writer that holds (or last held) the ring; 0 if none ever did.
  [[nodiscard]] pid_t WriterPid() const noexcept;
  // Positions as published now (diagnostics and tools).
  [[nodiscard]] inline std::uint64_t PublishedTail() const noexcept {
    return std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
  }
  // The record space as this process maps it (read-only for a reader):
  // diagnostics and tests, e.g. to check where ReadInPlace's view lies.
  [[nodiscard]] inline std::span<std::byte const> RecordSpace() const noexcept { return {data_, capacity_}; }
  // The message type recorded in the ring (all zero: untyped; see TypeTag).
  [[nodiscard]] TypeTag RecordedType() const noexcept;
  // The positions of the State as published now, each loaded on its own
  // (diagnostics and tests: the fields may come from different moments).
  // The State itself is not handed out: a reader maps it read-only and
  // nothing outside the library needs its layout at run time.
  struct Published {
    std::uint64_t tail;
    std::uint64_t latest;
    std::uint64_t limit;
    std::uint64_t sequence;
  };
  [[nodiscard]] inline Published PublishedPositions() const noexcept {
    return {std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire),
            std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_acquire),
            std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_acquire),
            std::atomic_ref<std::uint64_t>(state_->sequence).load(std::memory_order_acquire)};
  }
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
  // Moves (Reader, Writer) take the attachments along; the moved-from object
  // may only be destroyed or assigned to.
  IWrapper(IWrapper&&) noexcept = default;
  IWrapper& operator=(IWrapper&&) noexcept = default;

 protected:
  enum class Role : std::uint8_t { kWriter, kReader };
  // type: what a ring this writer creates records as its message type.
  IWrapper(Spec const& spec, Role role, mode_t mode, gid_t group, HugePages huge_pages,
           std::chrono::milliseconds wait_for_buffer, TypeTag type = {});
  ~IWrapper() = default;

  // state_shm_ is engaged from the end of the constructor on (which throws
  // otherwise); Writer and Reader call this only after it (-1 before).
  [[nodiscard]] inline int StateHandle() const noexcept {
    return state_shm_.has_value() ? state_shm_->NativeHandle() : -1;
  }
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
  [[nodiscard]] inline bool EndMarkIntact() const noexcept { return LoadWord(data_, end_mark_) == kEndMark; }

  Spec spec_{};
  std::optional<SharedMemory> state_shm_;  // NAME
  std::optional<SharedMemory> data_shm_;   // NAME.data (read-only for readers)
  State* state_ = nullptr;          // mapped read-only for a reader: loads only
  std::uint32_t* wake_ = nullptr;   // the wake word (see :layout), read-write for all
  std::byte* data_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t end_mark_ = 0;  // EndMarkOffset(capacity_, data segment's HeaderBytes()), by CheckEndMark
  std::uint64_t chunk_ = 0;
  std::size_t max_message_ = 0;
  // TruncationEvents() of circbuf.shm, and the count last seen: when they
  // differ, some segment of this process was truncated (maybe one of ours).
  std::atomic<std::uint32_t> const* truncations_ = &TruncationEvents();
  std::uint32_t truncations_seen_ = 0;
  bool shrunk_ = false;  // CheckShrunk found a segment file shorter than its mapping

 private:
  void AttachAsWriter(mode_t mode, gid_t group, HugePages huge_pages, TypeTag type);
  void AttachAsReader(std::chrono::milliseconds wait_for_buffer);
  void Validate();
  void CheckEndMark(SharedMemory const& data);  // data: *data_shm_; also sets end_mark_
  void BindState(State* state) noexcept;
};

}  // namespace circbuf::CircularBuffer
