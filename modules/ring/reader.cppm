// circbuf.ring:reader: one of any number of passive readers of a ring.
//
// Synchronization (see :layout for the fields)
//   Owner: a reader owns only its private cursor; it writes nothing shared on
//   the hot path (the State and the data segment are even mapped read-only),
//   so the writer's cost does not depend on how many readers there are. The
//   only shared word a reader writes is the wake word (header page of NAME,
//   see :layout), when Wait is about to sleep.
//   [R1] header.load(acquire) at the cursor; then limit.load(relaxed). Pairs
//        with [W2]: a non-zero header means the record is complete. Pairs
//        with [W1]: if the header word came from a newer lap (the reader was
//        lapped), the limit shows it.
//   [R2] payload loads(relaxed); atomic_thread_fence(acquire); limit.load(relaxed).
//        Pairs with [W1]: if any payload byte came from a newer lap (the
//        writer overwrote it during the copy), limit shows it and the copy is
//        discarded. A record at position p is intact while p >= limit - capacity.
//   [R3] tail and index[k] loads(acquire) in Wait, late join and
//        resynchronisation only (index_sequence[k], index_check[k] after index[k]). Pair with
//        [W3]. What they name is a claim that the record must confirm (see
//        "Resynchronisation" in reader.cpp).
//   [R4] wake.fetch_or(kWakeArmed, seq_cst) in Wait before it looks at tail,
//        the writer state and its stop flag for the last time and sleeps on
//        the value it armed. Pairs with the writer's [W5] (see :writer).
//   So a caught-up reader polls one word on the cache line that the next
//   record's payload starts on, and limit, which changes once per chunk (an
//   L1 hit); it never reads the writer's per-message tail line.
//
// Exact loss: every record carries a sequence number. After a lap the reader
// jumps to an intact record (through the index; where: ReaderOptions::on_lap)
// and adds the difference of sequence numbers to Lost(): delivered + lost
// equals what was written while the reader was attached. A gap record
// (Writer::Skip: messages lost upstream of the writer) is counted the same
// way when the reader reaches it: kLapped, LastLoss() its count.
//
// Untrusted contents: the reader trusts nothing it reads from the ring beyond
// what it checked at attach (capacity, chunk, max message: copied into the
// object). Every offset it reads at is cursor % capacity with an 8-aligned
// cursor, and a record is used only if it lies wholly inside the buffer, is
// at most MaxMessageSize() long and carries the expected sequence number;
// positions taken from the State (latest, index[]) are resynchronisation
// points that the record found there must confirm (its header carries the
// sequence number the State gives with the position), and a lapped reader
// never moves backwards (see reader.cpp); a record that ends beyond limit,
// or a limit below the one an earlier validation saw (the frontier went
// backwards), is corrupt. When something breaks
// these rules Read returns kCorrupt and the reader *stays put*: its cursor
// does not move, so every later Read returns kCorrupt again until the ring
// is repaired (a writer that takes over rewrites what follows tail) or
// the reader is destroyed; nothing is delivered from a corrupt record.
// A far-forward limit looks like a lap: the reader resynchronises through
// the index, and if no intact record can be found, that Read is kCorrupt --
// unless limit is less than a capacity past tail: then the writer has claimed
// a record past every committed one and not committed it yet (it may have
// died there), and that Read is kEmpty until it, or the writer that takes
// over, commits one.
// A segment truncated under the reader (circbuf.shm's truncation guard):
// every Read returns kCorrupt from then on, and Truncated() is true. Cost on
// the hot path: one relaxed load of a process-local counter per delivered
// message (and on the empty path), compared with a member.
module;

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

export module circbuf.ring:reader;

import :layout;
import :wrapper;

export namespace circbuf::CircularBuffer {

enum class StartAt : std::uint8_t {
  kLatest,  // the newest message already in the ring, then everything after it
  kOldest,  // the oldest message still intact in the ring
  kNext,    // only messages written after the reader attached
};

// Where a lapped reader (one the writer overwrote) resumes. Loss is exact in
// every policy: LastLoss() is the difference of sequence numbers.
enum class OnLap : std::uint8_t {
  kHeadroom,  // the first intact record at least half the capacity behind the writer's frontier (default)
  kOldest,    // the oldest intact record: the fewest messages lost now, but at the edge, lapped again soon
  kLatest,    // the newest committed record: the most headroom, the most messages skipped
};

struct ReaderOptions {
  StartAt start = StartAt::kLatest;
  // The default was chosen by bench_throughput's lap/ runs (README,
  // "Performance": kLapped per second and delivered rate for each policy).
  OnLap on_lap = OnLap::kHeadroom;
  // How long to wait for a ring that does not exist yet (0: fail at once
  // with std::system_error ENOENT).
  std::chrono::milliseconds wait_for_buffer{0};
  // How often a reader asleep in Wait checks that the writer is alive (one
  // fcntl on the reader's side): the bound on reporting WaitResult::kDead
  // when nobody is left to wake it. At least 1 ms.
  std::chrono::milliseconds liveness_interval{100};
  // The message type this reader expects (TypedReader sets it): a ring that
  // records another type, or none, is refused (std::invalid_argument naming
  // both). {}: any ring.
  TypeTag type{};
};

// What Reader::Wait saw, in this order of precedence.
enum class WaitResult : std::uint8_t {
  kStopped,    // RequestStop() was called (sticky until ClearStop())
  kReady,      // something to Read: a message, a lap, or corrupt contents
  kTruncated,  // a segment of the ring was truncated under this reader (Read: kCorrupt)
  kTakenOver,  // a new writer attached since the previous Wait (after a death or a close)
  kClosed,     // nothing to read and the writer closed the ring (reported once per writer)
  kDead,       // nothing to read and the writer died (once per writer, within liveness_interval)
  kTimeout,    // nothing to read by the deadline
};

// What a read saw: the result type for new code (Read's int says the same,
// for the seed's API), so that a switch over it is checked by the compiler.
enum class Outcome : std::uint8_t {
  kMessage,         // a message was delivered (ReadResult::size bytes)
  kEmpty,           // nothing new
  kLapped,          // messages lost (ReadResult::lost): overwritten while behind (resynchronised), or a gap record
  kBufferTooSmall,  // the next message is ReadResult::size bytes; it stays unread (see Skip)
  kCorrupt,         // the ring's contents break its rules (see the header of this file)
};

struct [[nodiscard]] ReadResult {
  Outcome outcome;
  std::size_t size;    // kMessage: bytes delivered; kBufferTooSmall: the message's length
  std::uint64_t lost;  // kLapped: messages skipped (LastLoss())
};

// What one Poll call did.
struct [[nodiscard]] PollResult {
  std::size_t delivered;  // messages handed to the handler
  std::uint64_t laps;     // laps on the way (each resynchronised; Poll went on)
  std::uint64_t lost;     // messages those laps skipped
  Outcome stopped;        // why it returned: kMessage (max delivered), kEmpty or kCorrupt
};

// Between a reader and the writer, as the State says now: an estimate (the
// writer moves on meanwhile; a changed State can make it anything), for
// monitoring, never for the protocol.
struct BacklogSize {
  std::uint64_t bytes;     // stream bytes from the reader's position to the writer's tail
  std::uint64_t messages;  // messages written that this reader has not read, skipped or lost yet
};

// A reader's counters (all since it attached): delivered + lost + skipped is
// every message written since its first.
struct ReaderStats {
  std::uint64_t delivered;  // messages delivered (Read, ReadInPlace, Receive, Poll)
  std::uint64_t lost;       // messages lost: overwritten, or skipped by the writer (gap records)
  std::uint64_t laps;       // kLapped outcomes (gap records included)
  std::uint64_t corrupt;    // kCorrupt outcomes
  std::uint64_t skipped;    // messages passed over by Skip
};

// Thread safety: a Reader is one cursor. Its calls must not run concurrently
// with each other, with one exception: RequestStop (and StopRequested) may
// be called from any thread or a signal handler while another thread is in
// Wait. Distinct Readers (in one process or many) never affect each other.
class Reader final : public IWrapper {
 public:
  // Attaches to an existing ring. Spec::capacity may be 0 ("whatever it
  // has"); otherwise it must match. Throws std::system_error (ENOENT: no such
  // ring), std::length_error (capacity mismatch), std::invalid_argument (not
  // a circbuf ring, other layout version, corrupt state).
  explicit Reader(Spec const& spec, ReaderOptions options = {});
  ~Reader() = default;
  Reader(Reader const&) = delete;
  Reader& operator=(Reader const&) = delete;
  // Movable: the attachment, the cursor and the counters go along; the
  // moved-from Reader may only be destroyed or assigned to. Not while
  // another thread is in Wait or calls RequestStop on either.
  Reader(Reader&&) noexcept = default;
  Reader& operator=(Reader&&) noexcept = default;

  // Copies the next message into `out` and returns its length (> 0), or
  // kEmpty, kLapped (resynchronised; see LastLoss), kBufferTooSmall (the
  // message stays unread; see PendingSize) or kCorrupt. Never blocks, never
  // writes shared memory, never delivers a byte the writer overwrote. On any
  // return but a length, `out` may hold bytes of a message that was being
  // overwritten: ignore them.
  [[nodiscard, gnu::always_inline]] inline int Read(std::span<std::byte> out) {
    int const n = Begin();
    if (n <= 0) return n;
    if (static_cast<std::size_t>(n) > out.size()) [[unlikely]] {
      pending_size_ = static_cast<std::size_t>(n);
      return kBufferTooSmall;
    }
    CopyFromRing(out.data(), data_, offset_ + kHeaderBytes, static_cast<std::size_t>(n));
    return Finish(n);
  }

  // Zero-copy: calls fn(std::span<std::byte const>) with the next message
  // where it lies in the ring, then checks whether the writer overwrote it
  // meanwhile. Returns the length if the view was intact throughout, kLapped
  // if it was overwritten (discard whatever fn derived from it), or the other
  // outcomes of Read. The view is shared memory that the writer may be
  // rewriting: copy out what you need and trust it only on a positive return.
  template <class Fn>
  [[nodiscard]] int ReadInPlace(Fn&& fn) {
    int const n = Begin();
    if (n <= 0) return n;
    std::forward<Fn>(fn)(std::span<std::byte const>(data_ + offset_ + kHeaderBytes, static_cast<std::size_t>(n)));
    return Finish(n);
  }

  // Read with the result type: the same outcomes as an enum (see Outcome).
  // On anything but kMessage, `out` may hold torn bytes: ignore them.
  [[gnu::always_inline]] inline ReadResult Receive(std::span<std::byte> out) {
    int const n = Read(out);
    if (n > 0) [[likely]] {
      return {Outcome::kMessage, static_cast<std::size_t>(n), 0};
    }
    switch (n) {
      case kEmpty: return {Outcome::kEmpty, 0, 0};
      case kLapped: return {Outcome::kLapped, 0, last_loss_};
      case kBufferTooSmall: return {Outcome::kBufferTooSmall, pending_size_, 0};
      default: return {Outcome::kCorrupt, 0, 0};
    }
  }

  // Delivers up to `max` messages to handler(std::span<std::byte const>),
  // each copied out of the ring and validated before the handler sees it (a
  // buffer of MaxMessageSize() bytes, allocated by the first Poll), so the
  // handler never sees a byte the writer overwrote, and the span is valid
  // only during the call. A lap on the way is resynchronised and counted
  // (PollResult::laps, ::lost), and Poll goes on; it returns at max
  // messages, at kEmpty or at kCorrupt. The handler may throw: the message
  // it was given counts as delivered, and the exception propagates.
  template <class Handler>
  // NOLINTNEXTLINE(cppcoreguidelines-missing-std-forward): called once per message, so never moved from
  [[nodiscard]] PollResult Poll(Handler&& handler, std::size_t max) {
    PollResult result{0, 0, 0, Outcome::kMessage};
    if (poll_buffer_.empty()) [[unlikely]] {
      poll_buffer_.resize(max_message_);
    }
    // Hoisted: the handler may write memory, which would make the compiler
    // reload the vector's pointer and size on every message.
    std::span<std::byte> const buffer(poll_buffer_);
    while (result.delivered < max) {
      int const n = Read(buffer);
      if (n > 0) [[likely]] {
        ++result.delivered;
        handler(std::span<std::byte const>(buffer.data(), static_cast<std::size_t>(n)));
        continue;
      }
      if (n == kLapped) {  // counted first: the reader has moved past it whatever Poll does next
        ++result.laps;
        result.lost += last_loss_;
        if (result.laps <= max) continue;
      }
      result.stopped = n == kEmpty || n == kLapped ? Outcome::kEmpty : Outcome::kCorrupt;
      break;
    }
    return result;
  }

  // Passes over the next message without copying it (the one a
  // kBufferTooSmall left unread, typically), counted in Stats().skipped,
  // not in Lost(). Returns its length, or what Read would have returned
  // instead of a message (kEmpty, kLapped, kCorrupt).
  [[nodiscard]] int Skip() {
    int const n = Begin();
    if (n <= 0) return n;
    ++expected_;
    ++skipped_;
    cursor_ += RecordBytes(static_cast<std::size_t>(n));
    offset_ += RecordBytes(static_cast<std::size_t>(n));
    if (offset_ == capacity_) offset_ = 0;
    pending_size_ = 0;
    return n;
  }

  // Bytes and messages between this reader and the writer (an estimate:
  // see BacklogSize). Two loads of the State.
  [[nodiscard]] BacklogSize Backlog() const noexcept;
  [[nodiscard]] inline ReaderStats Stats() const noexcept { return {delivered_, lost_, laps_, corrupt_, skipped_}; }

  // Blocks until there is something to Read, or something happened to the
  // writer, or the deadline passed, or RequestStop() was called; returns
  // which (see WaitResult). Returns at once, without a system call, if a
  // message is already there. kClosed, kDead and kTakenOver are reported
  // once per writer: the next Wait sleeps on until a message, a new writer
  // (kTakenOver) or the deadline, so `while (Wait() != kStopped)` never spins. Bounds: a message committed while the
  // reader sleeps wakes it within one wake-up (a futex), a close or a new writer likewise, a writer's death within
  // ReaderOptions::liveness_interval. Cost to the writer: one system call per sleep, at most (the first message after a
  // reader armed), nothing while nobody sleeps, and nothing after a reader died asleep.
  [[nodiscard]] WaitResult Wait(std::chrono::nanoseconds timeout);
  [[nodiscard]] WaitResult WaitUntil(std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] inline WaitResult Wait() { return WaitUntil(std::chrono::steady_clock::time_point::max()); }

  // Makes a Wait in progress (in any thread) and every later one return
  // kStopped, until ClearStop(). Async-signal-safe: it may be called from a
  // signal handler (lock-free atomics and one futex system call). The wake
  // reaches every reader asleep on this ring; the others go back to sleep.
  void RequestStop() noexcept;
  inline void ClearStop() noexcept { stop_.store(false, std::memory_order_relaxed); }
  [[nodiscard]] inline bool StopRequested() const noexcept { return stop_.load(std::memory_order_relaxed); }

  // Messages delivered by Read / ReadInPlace so far.
  [[nodiscard]] inline std::uint64_t Delivered() const noexcept { return delivered_; }
  // Messages lost so far (overwritten, or skipped by the writer: see
  // Writer::Skip): Delivered() + Lost() is what was written since this
  // reader's first message.
  [[nodiscard]] inline std::uint64_t Lost() const noexcept { return lost_; }
  // Messages skipped by the last kLapped.
  [[nodiscard]] inline std::uint64_t LastLoss() const noexcept { return last_loss_; }
  // Length of the message that the last kBufferTooSmall left unread.
  [[nodiscard]] inline std::size_t PendingSize() const noexcept { return pending_size_; }
  // Stream position of the next record this reader looks at.
  [[nodiscard]] inline std::uint64_t Position() const noexcept { return cursor_; }
  // Sequence number of the next message this reader expects (valid once it
  // has read or skipped one).
  [[nodiscard]] inline std::uint64_t NextSequence() const noexcept { return expected_; }

 private:
  // Finds the next record: returns its length (> 0) with header_ set, or an
  // outcome (<= 0). Skips padding records.
  [[gnu::always_inline]] inline int Begin() {
    for (;;) {
      std::uint64_t const header = std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset_))
                                       .load(std::memory_order_acquire);  // [R1]
      // Relaxed: ordered after the header by [R1]'s acquire (see Overwritten).
      std::uint64_t const limit = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_relaxed);
      if (cursor_ + capacity_ < limit) [[unlikely]] {
        return Lapped();
      }
      if (header == 0) {
        if (truncations_->load(std::memory_order_relaxed) != truncations_seen_) [[unlikely]] {
          if (Truncation()) return CorruptSegment();
        }
        // A cut inside a page reads as zeros, and a reader would wait at a
        // zero header forever: the end mark says so (see :layout).
        if (!EndMarkIntact()) [[unlikely]] {
          return TruncatedData();
        }
        // While waiting, also ask for the line after the header's: a record
        // of more than 56 bytes continues there, and the writer fills it just
        // before it publishes the header, so both lines then travel together.
        if (std::uint64_t const next = (offset_ | 63) + 1; next < capacity_) __builtin_prefetch(data_ + next);
        return kEmpty;
      }
      std::size_t const n = HeaderLength(header);
      if (n == 0) [[unlikely]] {  // padding record: the rest of this lap is unused; or a gap record
        if (IsGap(header)) return Gap(header, limit);
        // Padding ends a lap, so it never starts one (that would loop here).
        if (!IsPadding(header) || offset_ == 0) return Corrupt(header);
        cursor_ += capacity_ - offset_;
        offset_ = 0;
        continue;
      }
      // Beyond the buffer, too long, beyond the frontier (the writer stores
      // limit before it writes a byte below it: [W1] before [W2]), or not the
      // next sequence number: corrupt.
      if (offset_ + RecordBytes(n) > capacity_ || n > max_message_ || cursor_ + RecordBytes(n) > limit ||
          HeaderSequence(header) != (expected_ & kSequenceMask)) [[unlikely]] {
        return Corrupt(header);
      }
      header_ = header;
      return static_cast<int>(n);
    }
  }

  // After the payload was copied or looked at: was it intact throughout?
  [[gnu::always_inline]] inline int Finish(int n) {
    std::atomic_thread_fence(std::memory_order_acquire);  // [R2] pairs with [W1]
    // Relaxed on purpose: after [R2]'s fence, which orders this load after
    // the data it validates.
    std::uint64_t const limit = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_relaxed);
    if (cursor_ + capacity_ < limit) [[unlikely]] {
      return Lapped();
    }
    // The frontier never goes backwards: one below what an earlier
    // validation saw is a changed State, and cannot vouch for this copy.
    if (limit < limit_floor_) [[unlikely]] {
      return Corrupt(header_);
    }
    limit_floor_ = limit;
    // A segment truncated during the copy reads as zeros from the fault on;
    // a cut inside a page reads as zeros without a fault, and the end mark,
    // loaded after the copy, is gone (see :layout for why it is in time).
    if (truncations_->load(std::memory_order_relaxed) != truncations_seen_) [[unlikely]] {
      if (Truncation()) return CorruptSegment();
    }
    if (!EndMarkIntact()) [[unlikely]] {
      return TruncatedData();
    }
    Advance(static_cast<std::size_t>(n));
    return n;
  }

  [[gnu::always_inline]] inline void Advance(std::size_t n) noexcept {
    ++expected_;
    ++delivered_;
    cursor_ += RecordBytes(n);
    offset_ += RecordBytes(n);
    if (offset_ == capacity_) offset_ = 0;
  }

  // A position and the full sequence number of the record there, both taken
  // from the State (an index entry, or latest): a resynchronisation point
  // (Verify says whether the record agrees).
  struct Point {
    std::uint64_t position;
    std::uint64_t sequence;
    std::uint64_t skipped;  // State::skipped as of that record (index_skipped[k])
  };
  // WalkToNewest's result: the newest message committed, and where the
  // records committed after it (gap records) end.
  struct Newest {
    std::optional<Point> last;  // none if only gap records follow the start (or it is one, alone)
    std::size_t length = 0;  // of the message at last
    Point end{};  // after the last committed record
  };
  int Lapped();
  int Gap(std::uint64_t header, std::uint64_t limit);  // a gap record at the cursor (see :layout)
  int Corrupt(std::uint64_t header);
  int CorruptSegment() noexcept {  // a segment was truncated: counted, kCorrupt
    ++corrupt_;
    return kCorrupt;
  }
  int TruncatedData();  // the end mark is gone: logs once, kCorrupt (sticky through shrunk_)
  // The frontier as far as this reader can tell: limit, or the highest
  // limit an earlier validation saw if limit is below it.
  [[nodiscard]] inline std::uint64_t Limit() const noexcept {
    return std::max(std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_acquire), limit_floor_);
  }
  // Length of the record at p.position if the data segment agrees with the
  // State about it (a message header there with p.sequence's low 48 bits, a
  // length that fits) and it is still intact; 0 if not.
  [[nodiscard]] std::size_t Verify(Point p) const noexcept;
  // The oldest (newest: the newest) intact record that the index names, its
  // check word vouches for and the data confirms; after_cursor: also one
  // that lies ahead of this reader's cursor, with a sequence number that its
  // distance allows (see reader.cpp).
  // at_least: only entries at that position or beyond (OnLap::kHeadroom).
  [[nodiscard]] std::optional<Point> FindOldest(bool after_cursor, bool newest = false,
                                                std::uint64_t at_least = 0) const noexcept;
  // Where a lapped reader resumes, by on_lap_ (nullopt: no intact record).
  [[nodiscard]] std::optional<Point> ResumePoint() const noexcept;
  [[nodiscard]] std::optional<Newest> WalkToNewest(Point p) const noexcept;
  // The count of the gap record at `position` if it is one that carries
  // `sequence` (the number expected there) and is still intact; 0 if not.
  [[nodiscard]] std::uint64_t VerifyGap(std::uint64_t position, std::uint64_t sequence) const noexcept;
  // Slow path after TruncationEvents() moved: true if one of our segments
  // was truncated (then every Read is kCorrupt), else remembers the count.
  bool Truncation() noexcept;
  void MoveTo(std::uint64_t position) noexcept;
  void Start(StartAt start);
  // Wait's checks after arming: kReady if there is nothing to report yet
  // (sleep on), else what to return.
  std::optional<WaitResult> Look(bool probe_due);
  [[nodiscard]] inline bool HasData() const noexcept {
    return cursor_ < std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_seq_cst);
  }

  std::uint64_t cursor_ = 0;  // position of the next record to read
  std::uint64_t offset_ = 0;  // cursor_ % capacity_
  std::uint64_t expected_ = 0;  // sequence number of the record at cursor_
  std::uint64_t gaps_before_ = 0;  // State::skipped as of the record at cursor_ (what gap records skipped before it)
  std::uint64_t header_ = 0;  // header of the record Begin found
  std::uint64_t delivered_ = 0;
  std::uint64_t lost_ = 0;
  std::uint64_t last_loss_ = 0;
  std::size_t pending_size_ = 0;
  std::uint64_t limit_floor_ = 0;  // the limit of the last validated delivery (limit never goes backwards)
  OnLap on_lap_ = OnLap::kHeadroom;
  std::uint64_t laps_ = 0;
  std::uint64_t corrupt_ = 0;
  std::uint64_t skipped_ = 0;
  std::vector<std::byte> poll_buffer_;  // Poll's copy: empty until the first Poll
  // Wait: the writer epoch last reported, the liveness bound, the stop flag
  // (lock-free, so a signal handler may set it).
  std::uint64_t seen_epoch_ = 0;
  std::uint64_t dead_epoch_ = ~std::uint64_t{0};  // epoch of the writer last reported dead
  std::uint64_t closed_epoch_ = ~std::uint64_t{0};  // epoch of the writer last reported closed
  std::chrono::nanoseconds liveness_interval_{};
  std::chrono::steady_clock::time_point next_probe_;  // the epoch: the first sleep probes
  StopFlag stop_;
  static_assert(std::atomic<bool>::is_always_lock_free);
};

}  // namespace circbuf::CircularBuffer
