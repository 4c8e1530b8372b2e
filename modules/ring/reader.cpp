module;

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "../detail/log.hpp"

module circbuf.ring;

namespace circbuf::CircularBuffer {

Reader::Reader(Spec const& spec, ReaderOptions options)
    : IWrapper(spec, Role::kReader, 0, kKeepGroup, HugePages::kAsMounted, options.wait_for_buffer),
      on_lap_(options.on_lap),
      liveness_interval_(std::max<std::chrono::nanoseconds>(options.liveness_interval, std::chrono::milliseconds(1))) {
  if (on_lap_ != OnLap::kHeadroom && on_lap_ != OnLap::kOldest && on_lap_ != OnLap::kLatest) {
    KeepAttachedSegments();
    throw std::invalid_argument("ring \"" + std::string(spec.Name()) + "\": ReaderOptions::on_lap " +
                                std::to_string(static_cast<int>(on_lap_)) + " is not an OnLap policy");
  }
  if (options.type != TypeTag{}) {
    if (TypeTag const recorded = RecordedType(); recorded != options.type) {
      KeepAttachedSegments();
      throw std::invalid_argument("ring \"" + std::string(spec.Name()) + "\" holds " + DescribeType(recorded) +
                                  "; this reader expects " + DescribeType(options.type));
    }
  }
  seen_epoch_ = std::atomic_ref<std::uint64_t>(state_->writer_epoch).load(std::memory_order_acquire);
  Start(options.start);
  detail::Log().info("ring \"{}\": reader attached at position {} (capacity {})", spec_.Name(), cursor_, capacity_);
}

void Reader::MoveTo(std::uint64_t position) noexcept {
  cursor_ = position;
  offset_ = position % capacity_;
}

// ---- Resynchronisation ---------------------------------------------------------------
//
// Where a reader starts (Start) and where a lapped one resumes (Lapped) are
// positions taken from the State's index. The State may have been changed
// by another process (docs/threat-model.md), so an entry is only a claim:
// its check word (IndexCheck of position and sequence number, stored with
// them) must agree, and the data segment, which only the writer writes,
// must confirm it: the word there must be a message header with the low 48
// bits of the entry's sequence number, a length that fits, and be intact
// afterwards. A reader that starts at the newest message (kLatest, kNext)
// walks from the newest confirmed entry along the records after it (each
// the next sequence number) to the last one committed: State::latest is
// not used, since a payload word near a changed latest can pass for a
// header (any small integer is one of sequence 0).
// A lapped reader also never moves backwards: the point must lie ahead of
// its cursor, with a sequence number no lower than the one it expects, at
// most one message per 16 bytes (the smallest record) ahead of it besides
// what gap records skipped in between (index_skipped[k], against what the
// reader knows was skipped before its cursor), and less than 2^47 ahead (a
// gap that large could be a record it already delivered, renumbered by a
// multiple of 2^48: the headers hold 48 bits). A claim that fails is skipped
// (the next index entry), never delivered.

std::size_t Reader::Verify(Point p) const noexcept {
  if (p.position % kRecordAlignment != 0) return 0;
  // Acquire, as [R1]: a header published after padding we followed (or
  // after the record before it) is not older than what we saw there.
  std::uint64_t const header = AcquireWord(data_, p.position % capacity_);
  std::atomic_thread_fence(std::memory_order_acquire);  // as [R2]: pairs with [W1]
  if (p.position + capacity_ < Limit()) return 0;        // overwritten (or the point is stale)
  std::size_t const n = HeaderLength(header);
  bool const fits = n != 0 && n <= max_message_ && p.position % capacity_ + RecordBytes(n) <= capacity_;
  return fits && HeaderSequence(header) == (p.sequence & kSequenceMask) ? n : 0;
}

std::optional<Reader::Point> Reader::FindOldest(bool after_cursor, bool newest, std::uint64_t at_least) const noexcept {
  std::uint64_t const limit = Limit();
  std::uint64_t const low = limit > capacity_ ? limit - capacity_ : 0;
  std::optional<Point> found;
  for (std::uint64_t b = low; b < low + capacity_; b += chunk_) {
    std::size_t const k = (b / chunk_) % kChunks;
    Point const p{std::atomic_ref<std::uint64_t>(state_->index[k]).load(std::memory_order_acquire),  // [R3]
                  std::atomic_ref<std::uint64_t>(state_->index_sequence[k]).load(std::memory_order_relaxed),
                  std::atomic_ref<std::uint64_t>(state_->index_skipped[k]).load(std::memory_order_relaxed)};
    std::uint64_t const check = std::atomic_ref<std::uint64_t>(state_->index_check[k]).load(std::memory_order_relaxed);
    std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
    if (b >= tail) break;
    // The entry must belong to boundary b of this lap (not an older or newer
    // one), name a committed record, and agree with its check word.
    if (p.position == kNoRecord || p.position < b || p.position >= b + capacity_ || p.position >= tail) continue;
    if (p.position < at_least) continue;
    if (check != IndexCheck(p.position, p.sequence, p.skipped) || p.skipped > p.sequence) continue;
    if (after_cursor) {
      if (p.position <= cursor_ || p.sequence < expected_ || p.skipped < gaps_before_) continue;
      std::uint64_t const advance = p.sequence - expected_;    // sequence numbers ahead of the cursor's
      std::uint64_t const skipped = p.skipped - gaps_before_;  // of which gap records skipped
      // The 2^47 rule is on messages: a gap record's count is tied to no distance, and the
      // check word covers index_skipped[k].
      if (skipped > advance || advance - skipped > (p.position - cursor_) / RecordBytes(1) ||
          advance - skipped >= kSequenceMask / 2) {
        continue;
      }
    }
    if (Verify(p) == 0 && VerifyGap(p.position, p.sequence) == 0) continue;  // a message, or a gap record
    if (!newest) return p;
    if (!found || p.position > found->position) found = p;
  }
  return found;
}

std::uint64_t Reader::VerifyGap(std::uint64_t position, std::uint64_t sequence) const noexcept {
  std::uint64_t const off = position % capacity_;
  if (position % kRecordAlignment != 0 || off + kGapRecordBytes > capacity_) return 0;
  // The header with acquire ([R1]): the count, stored before it ([W2]), is then not older.
  std::uint64_t const header = AcquireWord(data_, off);
  std::uint64_t const count = LoadWord(data_, off + kHeaderBytes);
  std::atomic_thread_fence(std::memory_order_acquire);  // as [R2]: pairs with [W1]
  if (position + capacity_ < Limit()) return 0;
  if (!IsGap(header) || MarkSequence(header) != (sequence & kGapSequenceMask) || count == 0 || count > kMaxGap) {
    return 0;
  }
  return count;
}

// From a confirmed record (a message or a gap record), along the records
// the writer wrote after it (each header the next sequence number, padding
// skipped, a gap record adding its count), to the last one committed:
// latest, found without trusting State::latest. Nullopt if the writer keeps
// ahead of the walk, or the start was overwritten meanwhile.
std::optional<Reader::Newest> Reader::WalkToNewest(Point p) const noexcept {
  Newest found{std::nullopt, 0, p};
  Point& at = found.end;  // the next record's position, number and skipped count
  for (std::uint64_t steps = 0; steps <= capacity_ / RecordBytes(1); ++steps) {
    std::uint64_t q = at.position;
    if (steps != 0 && q % capacity_ != 0 && IsPadding(LoadWord(data_, q % capacity_))) {
      q += capacity_ - q % capacity_;  // padding: the next record starts the next lap
    }
    if (std::uint64_t const count = VerifyGap(q, at.sequence); count != 0) {
      at = {q + kGapRecordBytes, at.sequence + count, at.skipped + count};
      continue;
    }
    if (std::size_t const m = Verify({q, at.sequence, at.skipped}); m != 0) {
      found.last = Point{q, at.sequence, at.skipped};
      found.length = m;
      at = {q + RecordBytes(m), at.sequence + 1, at.skipped};
      continue;
    }
    // Nothing newer is committed at q (0, an older lap, or overwritten). The
    // start must still be intact, or the walk may have followed stale records.
    if (steps == 0 || (Verify(p) == 0 && VerifyGap(p.position, p.sequence) == 0)) return std::nullopt;
    return found;
  }
  return std::nullopt;
}

void Reader::Start(StartAt start) {
  limit_floor_ = 0;  // set by the first validated delivery (a State value is no floor yet)
  std::uint64_t tail = 0;
  std::uint64_t next = 0;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
    if (tail == 0) {  // nothing written yet: the first message will be sequence 0
      MoveTo(0);
      expected_ = 0;
      gaps_before_ = 0;
      return;
    }
    if (start == StartAt::kOldest) {
      if (std::optional<Point> const oldest = FindOldest(false)) {
        MoveTo(oldest->position);
        expected_ = oldest->sequence;
        gaps_before_ = oldest->skipped;
        return;
      }
      continue;
    }
    // kLatest, kNext: the newest confirmed index entry, then along the
    // records after it to the last one committed (State::latest is not
    // trusted: a payload word near it could pass for a header).
    std::optional<Point> const newest = FindOldest(false, true);
    if (!newest) continue;
    std::optional<Newest> const last = WalkToNewest(*newest);
    if (!last) continue;
    // kNext: after the last record, gap records too (a gap recorded before
    // the reader came is not its loss); before padding, if the next record
    // did not fit (Begin skips the padding). kLatest: the newest message
    // after the entry; if only gap records follow it, where they end.
    Point const at = start == StartAt::kNext || !last->last ? last->end : *last->last;
    MoveTo(at.position);
    expected_ = at.sequence;
    gaps_before_ = at.skipped;
    return;
  }
  // A writer lapping the whole ring faster than we can look, or a State
  // whose positions agree with no record. The oldest record the index
  // names, if the data confirms one (for kNext too: better old messages
  // than a guess); else tail, expecting the sequence number stored with it
  // (Begin checks the first header against it: kCorrupt if it disagrees,
  // until a lap resynchronises).
  if (std::optional<Point> const oldest = FindOldest(false)) {
    MoveTo(oldest->position);
    expected_ = oldest->sequence;
    gaps_before_ = oldest->skipped;
    return;
  }
  // tail with the sequence stored before it, as a pair: only while nothing
  // is committed (latest kNoRecord before and after: a ring whose data
  // segment was created anew), where no record can confirm them.
  std::uint64_t skipped = 0;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::uint64_t const before = std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_acquire);
    tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
    next = std::atomic_ref<std::uint64_t>(state_->sequence).load(std::memory_order_acquire);
    skipped = std::atomic_ref<std::uint64_t>(state_->skipped).load(std::memory_order_acquire);
    std::uint64_t const after = std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_acquire);
    if (before == kNoRecord && after == kNoRecord) break;
  }
  if (tail % kRecordAlignment != 0) {
    KeepAttachedSegments();
    throw std::invalid_argument("ring \"" + std::string(spec_.Name()) + "\": corrupt positions (tail " +
                                std::to_string(tail) + " is not a record boundary)");
  }
  MoveTo(tail);
  expected_ = next;
  gaps_before_ = std::min(skipped, next);
}

// kOldest: the oldest intact record ahead of the cursor, right at the edge
// of what the writer overwrites next. kHeadroom: the first one at least half
// a capacity behind the frontier (an index entry: one per chunk), so the
// reader has half a lap to catch up before the next overwrite; the oldest if
// the index names none there. kLatest: the newest confirmed entry, then along
// the records after it to the last one committed (WalkToNewest; the entry
// itself if the writer keeps ahead of the walk). Each candidate passes the
// after-cursor rules of FindOldest, so no policy moves a reader backwards.
std::optional<Reader::Point> Reader::ResumePoint() const noexcept {
  switch (on_lap_) {
    case OnLap::kOldest: break;
    case OnLap::kHeadroom: {
      std::uint64_t const limit = Limit();
      if (limit > capacity_ / 2) {
        if (std::optional<Point> const p = FindOldest(true, false, limit - capacity_ / 2)) return p;
      }
      break;
    }
    case OnLap::kLatest: {
      std::optional<Point> const p = FindOldest(true, true);
      if (!p) break;
      std::optional<Newest> const last = WalkToNewest(*p);
      // The walk adds one sequence number per message record (16 bytes or
      // more) and a gap record's count to the skipped ones, so its end keeps
      // FindOldest's distance rule; the 2^47 rule (on messages) is checked again.
      if (last && last->last && last->last->position > p->position &&
          (last->last->sequence - expected_) - (last->last->skipped - gaps_before_) < kSequenceMask / 2) {
        return last->last;
      }
      return p;
    }
  }
  return FindOldest(true);
}

BacklogSize Reader::Backlog() const noexcept {
  std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
  std::uint64_t const sequence = std::atomic_ref<std::uint64_t>(state_->sequence).load(std::memory_order_relaxed);
  return {tail > cursor_ ? tail - cursor_ : 0, sequence > expected_ ? sequence - expected_ : 0};
}

int Reader::Lapped() {
  if (truncations_->load(std::memory_order_relaxed) != truncations_seen_ && Truncation()) return CorruptSegment();
  for (int attempt = 0; attempt < 1000; ++attempt) {
    std::optional<Point> const oldest = ResumePoint();
    if (!oldest) {
      // No committed record is intact: the writer has claimed past all of
      // them (a large record after padding) and not committed it yet -- it
      // may be slow, or dead until a new writer takes over. Nothing to read
      // until it commits; the loss is counted exactly then. A limit more
      // than a capacity past tail is never a write in progress: corrupt.
      std::uint64_t const limit = Limit();
      std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
      if (tail <= limit && limit - tail < capacity_) return kEmpty;
      continue;
    }
    std::uint64_t const gap = oldest->sequence - expected_;
    lost_ += gap;
    last_loss_ = gap;
    expected_ = oldest->sequence;
    gaps_before_ = oldest->skipped;
    MoveTo(oldest->position);
    ++laps_;
    return kLapped;
  }
  ++corrupt_;
  return kCorrupt;  // no intact record could be found: the positions make no sense
}

// A gap record at the cursor (Begin found its header; `limit` was loaded
// after it, as for a message): it must lie inside the buffer and below the
// frontier, carry the sequence number this reader expects and a count of 1 ..
// kMaxGap, and be intact after the count was read (as Finish checks a copy).
// Then its count is lost: kLapped, LastLoss() == count.
int Reader::Gap(std::uint64_t header, std::uint64_t limit) {
  if (offset_ + kGapRecordBytes > capacity_ || cursor_ + kGapRecordBytes > limit ||
      MarkSequence(header) != (expected_ & kGapSequenceMask)) {
    return Corrupt(header);
  }
  std::uint64_t const count = LoadWord(data_, offset_ + kHeaderBytes);
  std::atomic_thread_fence(std::memory_order_acquire);  // [R2] pairs with [W1]
  std::uint64_t const now = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_relaxed);
  if (cursor_ + capacity_ < now) return Lapped();
  if (now < limit_floor_) return Corrupt(header);
  // As Finish: a count zeroed by a cut of the segment is a truncation, not a broken record.
  if (truncations_->load(std::memory_order_relaxed) != truncations_seen_ && Truncation()) return CorruptSegment();
  if (!EndMarkIntact()) return TruncatedData();
  if (count == 0 || count > kMaxGap) return Corrupt(header);
  limit_floor_ = now;
  lost_ += count;
  last_loss_ = count;
  expected_ += count;
  gaps_before_ += count;
  cursor_ += kGapRecordBytes;
  offset_ += kGapRecordBytes;
  if (offset_ == capacity_) offset_ = 0;
  ++laps_;
  return kLapped;
}

int Reader::Corrupt(std::uint64_t header) {
  ++corrupt_;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true, std::memory_order_relaxed)) {
    detail::Log().error("ring \"{}\": corrupt record at position {} (header {:#018x}, expected sequence {})",
                        spec_.Name(), cursor_, header, expected_ & kSequenceMask);
  }
  return kCorrupt;
}

int Reader::TruncatedData() {
  ++corrupt_;
  EndMarkGone();
  (void)Truncation();  // logs it (Truncated() is true now)
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

// ---- Wait ---------------------------------------------------------------------------
//
// Protocol (the wake word: see :layout; the writer's half: [W4], [W5]):
//   1. Something to read already: return at once. Nothing is armed, so the
//      writer pays nothing for a Wait that does not sleep.
//   2. Arm ([R4]: fetch_or of the armed bit, seq_cst), keeping the value
//      armed; then look at the stop flag, tail, truncation, the writer's
//      epoch and state, and (once per liveness_interval) the writer's lock
//      and the segments' file sizes (a cut that no access has faulted on).
//   3. FUTEX_WAIT on the armed value. Any wake after step 2 changed the word
//      ([W5] replaces it), so the wait returns at once or is woken.
//   4. Something to read after the sleep: if woken, FUTEX_WAKE everyone else
//      asleep on the ring (the writer wakes two, the readers pass it on);
//      return kReady. Otherwise go to 2.
// The settle slice: the writer loads the wake word without a fence after
// its tail store ([W4]), so a commit whose tail store is still in the
// writer's store buffer when the reader arms can be missed by both sides:
// the writer saw the word unarmed, the reader saw the old tail. Stores leave
// a store buffer within nanoseconds to microseconds (no architecture bounds
// it, but hardware does), so the first sleep after arming lasts kSettle
// (50 us) and step 2 runs again: such a message is then seen. That holds for
// every new armed value (each reader settles once per value it arms). A lost wake
// thus costs at most kSettle of latency, and only for the rare commit that
// races with a reader's arming (docs/design.md, "Blocking readers").
namespace reader_impl {

constexpr std::chrono::nanoseconds kSettle = std::chrono::microseconds(50);

timespec ToTimespec(std::chrono::nanoseconds d) noexcept {
  return {static_cast<time_t>(d.count() / 1'000'000'000), static_cast<long>(d.count() % 1'000'000'000)};
}

}  // namespace reader_impl
using namespace reader_impl;

WaitResult Reader::Wait(std::chrono::nanoseconds timeout) {
  auto const now = std::chrono::steady_clock::now();
  // now + timeout without overflow: a timeout past the clock's range waits without end.
  if (timeout >= std::chrono::steady_clock::time_point::max() - now) {
    return WaitUntil(std::chrono::steady_clock::time_point::max());
  }
  return WaitUntil(now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout));
}

std::optional<WaitResult> Reader::Look(bool probe_due) {
  if (stop_.load(std::memory_order_seq_cst)) return WaitResult::kStopped;
  if (HasData()) return WaitResult::kReady;
  if (Truncated()) return WaitResult::kTruncated;
  std::uint64_t const epoch = std::atomic_ref<std::uint64_t>(state_->writer_epoch).load(std::memory_order_acquire);
  if (epoch != seen_epoch_) {
    bool const had_writer = seen_epoch_ != 0;
    seen_epoch_ = epoch;
    if (had_writer) return WaitResult::kTakenOver;
  }
  auto const state =
      static_cast<WriterState>(std::atomic_ref<std::uint32_t>(state_->writer_state).load(std::memory_order_acquire));
  // kClosed and kDead: once per writer (epoch); after that Wait sleeps on
  // until a message, a new writer or the deadline.
  if (state == WriterState::kClosed && closed_epoch_ != epoch) {
    closed_epoch_ = epoch;
    return WaitResult::kClosed;
  }
  if (probe_due && CheckShrunk()) {
    truncations_seen_ = ~truncations_->load(std::memory_order_relaxed);  // Read takes its truncation path
    return WaitResult::kTruncated;
  }
  if (state == WriterState::kActive && dead_epoch_ != epoch && probe_due) {
    bool dead = false;
    try {
      dead = GetWriterStatus() == WriterStatus::kDead;
    } catch (...) {
      dead = false;  // fcntl failed: no verdict; the next probe tries again
    }
    if (dead) {
      dead_epoch_ = epoch;
      return WaitResult::kDead;
    }
  }
  return std::nullopt;
}

WaitResult Reader::WaitUntil(std::chrono::steady_clock::time_point deadline) {
  if (stop_.load(std::memory_order_relaxed)) return WaitResult::kStopped;
  if (HasData()) return WaitResult::kReady;
  std::atomic_ref<std::uint32_t> wake(*wake_);
  std::uint32_t slept_on = 0;  // the armed value of the last sleep (armed values are odd)
  for (;;) {
    // A plain look at the word first, so that a header page cut away by a
    // shrunk state segment faults on a load, never inside the arming RMW:
    // under ThreadSanitizer a fault inside a non-relaxed atomic RMW deadlocks
    // the thread when the truncation guard runs (docs/toolchain-notes.md,
    // "ThreadSanitizer: SIGBUS inside an atomic"). Elsewhere it changes
    // nothing: the guard handles either fault, and the load only brings in
    // the line the RMW takes next.
    (void)wake.load(std::memory_order_relaxed);  // not an ordering: [R4] orders
    std::uint32_t const armed = wake.fetch_or(kWakeArmed, std::memory_order_seq_cst) | kWakeArmed;  // [R4]
    auto now = std::chrono::steady_clock::now();
    bool const probe_due = now >= next_probe_;
    if (probe_due) next_probe_ = now + liveness_interval_;
    if (std::optional<WaitResult> const seen = Look(probe_due)) return *seen;
    now = std::chrono::steady_clock::now();
    if (now >= deadline) return WaitResult::kTimeout;
    // The first sleep on a new armed value settles (see above); later ones
    // last until the next liveness probe.
    std::chrono::nanoseconds slice = armed != slept_on ? kSettle : std::chrono::nanoseconds(next_probe_ - now);
    slept_on = armed;
    slice = std::clamp<std::chrono::nanoseconds>(slice, std::chrono::nanoseconds(0), deadline - now);
    timespec const ts = ToTimespec(slice);
    long const woken = ::syscall(SYS_futex, wake_, FUTEX_WAIT, armed, &ts, nullptr, 0);
    // Before arming again (an arm costs the writer a wake): is it over?
    if (HasData()) {
      if (woken == 0) FutexWake(wake_, INT_MAX);  // step 4: pass the writer's wake on
      return WaitResult::kReady;
    }
    if (stop_.load(std::memory_order_seq_cst)) return WaitResult::kStopped;
  }
}

void Reader::RequestStop() noexcept {
  stop_.store(true, std::memory_order_seq_cst);
  BumpWake(wake_);  // [W5]: a Wait between its last look and FUTEX_WAIT does not sleep
  FutexWake(wake_, INT_MAX);
}

}  // namespace circbuf::CircularBuffer
