module;

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../detail/log.hpp"

module circbuf.ring;

namespace circbuf::CircularBuffer {

Reader::Reader(Spec const& spec, ReaderOptions options)
    : IWrapper(spec, Role::kReader, 0, kKeepGroup, HugePages::kAsMounted, options.wait_for_buffer) {
  Start(options.start);
  detail::Log().info("ring \"{}\": reader attached at position {} (capacity {})", spec_.Name(), cursor_, capacity_);
}

void Reader::MoveTo(std::uint64_t position) noexcept {
  cursor_ = position;
  offset_ = position % capacity_;
}

namespace reader_impl {

// Sequence number of the committed record at `position`, if it is still
// intact after the header was read ([R2] again); false if it was overwritten.
bool SequenceAt(State* state, std::byte const* data, std::uint64_t capacity, std::uint64_t position,
                std::uint64_t& sequence) {
  std::uint64_t const header = LoadWord(data, position % capacity);
  std::atomic_thread_fence(std::memory_order_acquire);  // as [R1]: pairs with [W1]
  if (position + capacity < std::atomic_ref<std::uint64_t>(state->limit).load(std::memory_order_relaxed)) {
    return false;
  }
  sequence = HeaderSequence(header);
  // A record, and one that lies wholly inside the buffer.
  std::size_t const n = HeaderLength(header);
  return n != 0 && position % capacity + RecordBytes(n) <= capacity;
}

// The oldest committed record that is intact now, through the index; kNoRecord if none.
std::uint64_t FindOldest(State* state, std::uint64_t capacity, std::uint64_t chunk) {
  std::uint64_t const limit = std::atomic_ref<std::uint64_t>(state->limit).load(std::memory_order_acquire);
  std::uint64_t const low = limit > capacity ? limit - capacity : 0;
  for (std::uint64_t b = low; b < low + capacity; b += chunk) {
    std::uint64_t const e =
        std::atomic_ref<std::uint64_t>(state->index[(b / chunk) % kChunks]).load(std::memory_order_acquire);  // [R3]
    std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state->tail).load(std::memory_order_acquire);
    if (b >= tail) break;
    // The entry must belong to boundary b of this lap (not an older or newer
    // one) and name a committed record.
    if (e != kNoRecord && e % kRecordAlignment == 0 && e >= b && e < b + capacity && e < tail) return e;
  }
  return kNoRecord;
}

}  // namespace reader_impl
using namespace reader_impl;

void Reader::Start(StartAt start) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
    if (tail == 0) {  // nothing written yet: the first message will be sequence 0
      MoveTo(0);
      expected_ = 0;
      synced_ = true;
      return;
    }
    std::uint64_t const latest = std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_relaxed);
    std::uint64_t position = kNoRecord;
    if (start == StartAt::kOldest) position = FindOldest(state_, capacity_, chunk_);
    if (position == kNoRecord) position = latest;
    if (position == kNoRecord || position >= tail) continue;  // latest is being replaced: look again
    if (position % kRecordAlignment != 0 || tail % kRecordAlignment != 0) break;  // corrupt: see below
    std::uint64_t sequence = 0;
    if (!SequenceAt(state_, data_, capacity_, position, sequence)) continue;
    if (start == StartAt::kNext) {
      if (position != latest) continue;
      // Everything up to tail is skipped: the next record is latest's successor.
      std::uint64_t const now = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
      if (now != tail) continue;
      MoveTo(tail);
      expected_ = sequence + 1;
    } else {
      MoveTo(position);
      expected_ = sequence;
    }
    synced_ = true;
    return;
  }
  // A writer lapping the whole ring faster than we can look: start at tail
  // and learn the sequence from the first record read.
  std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
  if (tail % kRecordAlignment != 0) {
    KeepAttachedSegments();
    throw std::invalid_argument("ring \"" + std::string(spec_.Name()) + "\": corrupt positions (tail " +
                                std::to_string(tail) + " is not a record boundary)");
  }
  MoveTo(tail);
  synced_ = false;
}

int Reader::Lapped() {
  if (truncations_->load(std::memory_order_relaxed) != truncations_seen_ && Truncation()) return kCorrupt;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::uint64_t const oldest = FindOldest(state_, capacity_, chunk_);
    if (oldest == kNoRecord) {
      // No committed record is intact: the writer has claimed past all of
      // them (a large record after padding) and not committed it yet -- it
      // may be slow, or dead until a new writer takes over. Nothing to read
      // until it commits; the loss is counted exactly then. A limit more
      // than a capacity past tail is never a write in progress: corrupt.
      std::uint64_t const limit = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_acquire);
      std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
      if (tail <= limit && limit - tail < capacity_) return kEmpty;
      continue;
    }
    std::uint64_t sequence = 0;
    if (!SequenceAt(state_, data_, capacity_, oldest, sequence)) continue;
    if (synced_) {
      std::uint64_t const gap = (sequence - expected_) & kSequenceMask;
      lost_ += gap;
      last_loss_ = gap;
      expected_ += gap;
    } else {
      expected_ = sequence;
      synced_ = true;
      last_loss_ = 0;
    }
    MoveTo(oldest);
    return kLapped;
  }
  return kCorrupt;  // no intact record could be found: the positions make no sense
}

int Reader::Corrupt(std::uint64_t header) {
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true, std::memory_order_relaxed)) {
    detail::Log().error("ring \"{}\": corrupt record at position {} (header {:#018x}, expected sequence {})",
                        spec_.Name(), cursor_, header, expected_ & kSequenceMask);
  }
  return kCorrupt;
}

bool Reader::Truncation() noexcept {
  std::uint32_t const now = truncations_->load(std::memory_order_seq_cst);
  if (!Truncated()) {
    truncations_seen_ = now;
    return false;
  }
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true, std::memory_order_relaxed)) {
    try {
      detail::Log().error("ring \"{}\": a segment of the ring was truncated by another process while attached; "
                          "reads fail from now on (kCorrupt)",
                          spec_.Name());
    } catch (...) {
      logged.store(false, std::memory_order_relaxed);  // not logged (noexcept here): a later call tries again
    }
  }
  return true;
}

bool Reader::Wait(std::chrono::nanoseconds timeout) {
  auto tail = [this] { return std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_seq_cst); };
  if (cursor_ < tail() || Truncated()) return true;  // a truncated ring: Read reports it
  auto const deadline = std::chrono::steady_clock::now() + timeout;
  std::atomic_ref<std::uint32_t> waiters(state_->waiters);
  waiters.fetch_add(1, std::memory_order_seq_cst);
  // Asymmetric fence, the other half of [W4]: after this call the writer has
  // either made its tail store visible to our load below, or will see our
  // increment of waiters and wake us. Without it (old kernel, seccomp, a
  // writer that could not register) we sleep in slices of 1 ms, bounding the
  // cost of a wake-up lost to store-load reordering.
  bool fenced =
      (std::atomic_ref<std::uint32_t>(state_->writer_flags).load(std::memory_order_acquire) & kWriterFenced) != 0;
  if (fenced && ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) fenced = false;
  bool ready = false;
  for (;;) {
    std::uint64_t const seen = tail();
    if (cursor_ < seen || Truncated()) {
      ready = true;
      break;
    }
    auto const now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    auto slice = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    if (!fenced) slice = std::min<std::chrono::nanoseconds>(slice, std::chrono::milliseconds(1));
    timespec const ts{static_cast<time_t>(slice.count() / 1'000'000'000),
                      static_cast<long>(slice.count() % 1'000'000'000)};
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&state_->tail), FUTEX_WAIT, static_cast<std::uint32_t>(seen),
              &ts, nullptr, 0);
  }
  waiters.fetch_sub(1, std::memory_order_seq_cst);
  return ready;
}

}  // namespace circbuf::CircularBuffer
