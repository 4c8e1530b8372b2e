// circbuf.ring:writer: the one writer of a ring.
//
// Synchronization (see :layout for the fields)
//   Owner: the writer alone writes tail, latest, limit, index[], the record
//   bytes and the ownership group; tail, latest, limit and index[] never go
//   backwards. Readers never write any of them.
//   [W1] limit.store(relaxed); atomic_thread_fence(release) -- before the
//        writer stores the first byte of a chunk. Pairs with [R1]/[R2] in the
//        reader: a reader that loaded any byte stored after [W1] sees the new
//        limit, and discards what it read.
//   [W2] header.store(release) -- the commit, after the payload and after the
//        0 stored in the next header slot. Pairs with [R1]: a reader that
//        sees the header sees the whole record, and then 0 (or a newer
//        record) at the next slot.
//   [W3] tail.store(release) after [W2]; index_sequence[k] (relaxed), then
//        index[k].store(release) after that, so an index entry only ever
//        names a committed record (also after a writer died between the
//        two). Pair with [R3] (Wait, late join, resynchronisation) and with
//        the next writer's take-over; a torn entry (a sequence number that
//        is not its record's) is skipped by both.
//   [W4] wake.load(relaxed) after [W3] with only a compiler barrier between
//        them: one load of a line that changes only when a reader goes to
//        sleep, so free while nobody sleeps. If the armed bit is set, one
//        compare-exchange clears it and bumps the count ([W5]), then one
//        FUTEX_WAKE: one system call per sleep, not per message.
//        No fence orders [W3] before [W4] (a full fence per message would
//        stall on the store buffer; docs/design.md gives its measured cost).
//        So a reader may arm just after this load and still miss a tail
//        store that sits in the store buffer; Reader::Wait closes that window
//        by sleeping a short settle slice first and looking again (see there).
//   [W5] wake compare-exchange(seq_cst), the writer's waking RMW (also when
//        it attaches and closes). Pairs with the reader's arming fetch_or:
//        RMWs of one word are totally ordered, so either the reader's arm
//        reads the bumped word (and then sees the tail, the writer state,
//        released before it) or the bump changes the value the reader will
//        FUTEX_WAIT on (the wait returns at once, or the FUTEX_WAKE finds it).
//
// Crash behaviour: one writer at a time, enforced by an OFD write lock on
// the state segment that the kernel drops when the writer dies. A new
// writer takes over: it finds the last committed record from the index,
// checks that the records from there carry consecutive sequence numbers and
// end exactly at tail, and continues the 64-bit sequence numbers (the high
// bits from index_sequence, or from the State's sequence); whatever the dead writer had claimed but not committed
// is overwritten. Readers see WriterStatus::kDead meanwhile.
// fork(): the OFD lock belongs to the open file description, which a child
// shares; a child of a writer that outlives its parent keeps the ring locked
// (and must not write). Create the Writer after forking workers. A Writer
// belongs to the process that made it: in a forked child its destructor
// changes nothing shared (it neither closes the ring nor drops the lock).
module;

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

export module circbuf.ring:writer;

import :layout;
import :wrapper;

export namespace circbuf::CircularBuffer {

struct WriterOptions {
  // Permissions of newly created segments and their locks. Readers need
  // read-write access to both segments (each counts its attachments in its
  // header page; they map the records themselves read-only), so a group of
  // readers running as other users needs e.g. mode 0660 and that group.
  mode_t mode = 0600;
  gid_t group = kKeepGroup;  // kKeepGroup: the creator's group
  // Huge pages for the record space when this writer creates the ring (see
  // circbuf::HugePages and docs/huge-pages.md): fewer TLB misses on rings of
  // several MiB. Needs /dev/shm mounted with huge=advise (or within_size,
  // always) and a capacity of 4 MiB or more; kPrefer falls back to 4 KiB
  // pages, kRequire fails with EOPNOTSUPP. Readers need no option.
  HugePages huge_pages = HugePages::kAsMounted;
  // The message type to record (TypedWriter sets it): a ring this writer
  // creates records it; an untyped ring gets it; a ring of another type is
  // refused (std::invalid_argument naming both). {}: untyped, any ring.
  TypeTag type{};
};

// A writer's counters: what this Writer object wrote.
struct WriterStats {
  std::uint64_t messages;  // messages published by this Writer
  std::uint64_t bytes;     // their payload bytes
  std::uint64_t laps;      // times this Writer wrapped around the ring
  bool took_over;          // it took the ring over from a writer that had died
  std::uint64_t skipped;   // sequence numbers this Writer skipped (Skip)
};

// Thread safety: a Writer is the ring's one writer. Its calls must not run
// concurrently with each other (give each producer thread its own ring, or
// serialise them); readers in any thread or process never need a lock.
class Writer final : public IWrapper {
 public:
  // Creates the ring (or attaches to it) and becomes its writer. Throws
  // std::system_error with EBUSY if another live process is its writer,
  // std::length_error if the ring exists with another capacity,
  // std::invalid_argument if NAME is not a circbuf ring or it is corrupt.
  explicit Writer(Spec const& spec, WriterOptions options = {});
  ~Writer();  // marks the ring closed cleanly and releases it
  Writer(Writer const&) = delete;
  Writer& operator=(Writer const&) = delete;
  // Movable: the ring, its lock and the position go along (no ScopedClaim
  // may be outstanding); the moved-from Writer owns nothing, and its
  // destructor leaves the ring alone. Not move-assignable: that would close
  // a ring implicitly; destroy the old Writer first.
  Writer(Writer&&) noexcept = default;
  Writer& operator=(Writer&&) = delete;

  // Publishes one message of 1 .. MaxMessageSize() bytes. Never waits for a
  // reader. Throws std::length_error for a bad size (the ring is unchanged),
  // and std::system_error (EIO) once another process has truncated a segment
  // of the ring (checked once per chunk, so within capacity / 8 bytes).
  [[gnu::always_inline]] inline void Write(std::span<std::byte const> message) {
    std::size_t const n = message.size();
    if (n == 0 || n > max_message_) [[unlikely]] {
      ThrowBadSize(n);
    }
    std::uint64_t const offset = Reserve(RecordBytes(n));
    CopyToRing(data_, offset + kHeaderBytes, message.data(), n);
    Publish(offset, n);
  }

  // Zero-copy: room for a message of n bytes, in place in the ring. Fill it,
  // then Commit(m) with m <= n to publish m bytes. Nothing is visible to
  // readers before Commit; a later Claim or Write abandons an uncommitted
  // claim. The span is plain memory that a lapped reader may be looking at,
  // so writes through it are outside the atomic protocol of Write (the same
  // caveat as every seqlock; readers still never deliver torn data).
  [[gnu::always_inline]] [[nodiscard]] inline std::span<std::byte> Claim(std::size_t n) {
    if (n == 0 || n > max_message_) [[unlikely]] {
      ThrowBadSize(n);
    }
    claim_offset_ = Reserve(RecordBytes(n));
    claimed_ = n;
    ++claim_generation_;
    return {data_ + claim_offset_ + kHeaderBytes, n};
  }
  // Drops an uncommitted claim: nothing of it becomes visible. No claim: nothing.
  inline void Abort() noexcept { claimed_ = 0; }
  [[gnu::always_inline]] inline void Commit(std::size_t n) {
    if (claimed_ == 0 || n == 0 || n > claimed_) [[unlikely]] {
      ThrowBadCommit(n);
    }
    if (std::size_t const rest = n % 8; rest != 0) {  // zero the record's padding bytes
      std::uint64_t const word = LoadWord(data_, claim_offset_ + kHeaderBytes + n - rest);
      StoreWord(data_, claim_offset_ + kHeaderBytes + n - rest, word & ((std::uint64_t{1} << (rest * 8)) - 1));
    }
    Publish(claim_offset_, n);
  }

  // A claim that cannot leak: room for n bytes as Claim gives it, committed
  // with Commit(m) (m <= n) or dropped with Abort(); one that is destroyed
  // without either aborts (nothing becomes visible to readers; a debug build
  // logs a warning). It must not outlive its Writer, and a Write or another
  // claim meanwhile abandons it (its Commit then throws std::logic_error).
  class [[nodiscard]] ScopedClaim {
   public:
    ScopedClaim(ScopedClaim&& other) noexcept
        : writer_(std::exchange(other.writer_, nullptr)), bytes_(other.bytes_), generation_(other.generation_) {}
    ScopedClaim& operator=(ScopedClaim&&) = delete;
    ScopedClaim(ScopedClaim const&) = delete;
    ScopedClaim& operator=(ScopedClaim const&) = delete;
    inline ~ScopedClaim() {
      if (writer_ != nullptr) {
#ifndef NDEBUG
        writer_->ReportAbandonedClaim();
#endif
        Abort();
      }
    }
    // The claimed bytes, in place in the ring (the caveats of Claim).
    [[nodiscard]] inline std::span<std::byte> Bytes() const noexcept { return bytes_; }
    inline void Commit(std::size_t n) {
      if (writer_ == nullptr || writer_->claim_generation_ != generation_) [[unlikely]] {
        ThrowStale();
      }
      std::exchange(writer_, nullptr)->Commit(n);
    }
    inline void Commit() { Commit(bytes_.size()); }
    inline void Abort() noexcept {
      if (writer_ != nullptr && writer_->claim_generation_ == generation_) writer_->claimed_ = 0;
      writer_ = nullptr;
    }

   private:
    friend class Writer;
    ScopedClaim(Writer* writer, std::span<std::byte> bytes) noexcept
        : writer_(writer), bytes_(bytes), generation_(writer->claim_generation_) {}
    [[noreturn]] static void ThrowStale();
    Writer* writer_;
    std::span<std::byte> bytes_;
    std::uint64_t generation_;
  };
  [[nodiscard]] inline ScopedClaim ClaimScoped(std::size_t n) {
    std::span<std::byte> const bytes = Claim(n);
    return {this, bytes};
  }

  // Skips `count` sequence numbers: the next message gets NextSequence() +
  // count, and every reader that reaches this point counts `count` messages
  // as lost (its Read returns kLapped with LastLoss() == count), exactly as
  // if they had been written and overwritten. For a writer that forwards a
  // stream with its own numbers (a bridge, a replayed recording): messages
  // lost upstream stay counted downstream. Publishes one 16-byte gap record
  // per 2^46 - 1 numbers (see :layout); count 0 does nothing. Never waits;
  // abandons an uncommitted Claim, as Write does. Throws std::system_error
  // (EIO) as Write does.
  void Skip(std::uint64_t count);

  [[nodiscard]] inline WriterStats Stats() const noexcept {
    return {seq_ - first_seq_ - (skipped_ - first_skipped_), bytes_written_, pos_ / capacity_ - first_lap_, took_over_,
            skipped_ - first_skipped_};
  }

  // Sequence number the next message gets (48 bits are stored per record).
  [[nodiscard]] inline std::uint64_t NextSequence() const noexcept { return seq_; }
  // True if this writer took over from a writer that had died.
  [[nodiscard]] inline bool TookOver() const noexcept { return took_over_; }

 private:
  // Room for a record of `bytes` at the current position, or at the start
  // of the next lap if it does not fit before the end (the padding is
  // published with the record, by Publish). Moves the frontier first if the
  // record, or the 8-byte "nothing yet" word after it, reaches past it.
  // Returns the ring offset of the record. Changes nothing readers can see
  // but limit, so an abandoned Claim leaves no trace.
  [[gnu::always_inline]] inline std::uint64_t Reserve(std::uint64_t bytes) {
    pad_ = offset_ + bytes > capacity_ ? capacity_ - offset_ : 0;
    if (pos_ + pad_ + bytes + kHeaderBytes > limit_) [[unlikely]] {
      CheckNotTruncated();
      AdvanceLimit(pos_ + pad_ + bytes + kHeaderBytes);
    }
    return pad_ == 0 ? offset_ : 0;
  }

  inline void AdvanceLimit(std::uint64_t end) noexcept {
    limit_ = (end + chunk_ - 1) / chunk_ * chunk_;
    std::atomic_ref<std::uint64_t>(state_->limit).store(limit_, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);  // [W1] pairs with [R1], [R2]
  }

  [[gnu::always_inline]] inline void Publish(std::uint64_t offset, std::size_t n) {
    claimed_ = 0;  // a Write abandons an uncommitted Claim
    bytes_written_ += n;
    std::uint64_t const start = pos_ + pad_;
    std::uint64_t end = offset + RecordBytes(n);
    if (end == capacity_) end = 0;
    StoreWord(data_, end, 0);  // the next header slot: "nothing yet", ordered before [W2]
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset))
        .store(MakeHeader(seq_ & kSequenceMask, n), std::memory_order_release);  // [W2] pairs with [R1]
    if (pad_ != 0) [[unlikely]] {
      std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset_))
          .store(MakePadding(seq_), std::memory_order_release);  // [W2] for the padding, after its record
    }
    pos_ = start + RecordBytes(n);
    offset_ = end;
    ++seq_;
    // latest and sequence are ordered before tail by [W3]'s release.
    std::atomic_ref<std::uint64_t>(state_->latest).store(start, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->sequence).store(seq_, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->tail).store(pos_, std::memory_order_release);  // [W3]
    if (start >= next_boundary_) [[unlikely]] {  // [W3]
      UpdateIndex(start, seq_ - 1);
    }
    std::atomic_signal_fence(std::memory_order_seq_cst);  // [W4] compiler-only, see the header
    if ((std::atomic_ref<std::uint32_t>(*wake_).load(std::memory_order_relaxed) & kWakeArmed) != 0) [[unlikely]] {
      WakeReaders();
    }
  }

  // Once per chunk: throws std::system_error (EIO) if a segment of the ring
  // was truncated by another process (what is written after that reaches
  // no reader that checks: pages beyond the file's end become private zeros).
  void CheckNotTruncated();
  void UpdateIndex(std::uint64_t start, std::uint64_t sequence) noexcept;
  void PublishGap(std::uint64_t offset, std::uint64_t count);
  void WakeReaders() noexcept;           // [W5], then FUTEX_WAKE of two (they pass it on)
  void WakeAll() noexcept;               // [W5], then FUTEX_WAKE of every sleeper (attach, close)
  void Recover();
  void RecordType(TypeTag type);  // under the writer lock: stamp an untyped ring, refuse another type
  [[noreturn]] void ThrowBadSize(std::size_t n) const;
  [[noreturn]] void ThrowBadCommit(std::size_t n) const;
  void ReportAbandonedClaim() const noexcept;  // a ScopedClaim destroyed uncommitted (debug builds)

  std::uint64_t pos_ = 0;            // == tail after every Publish
  std::uint64_t offset_ = 0;         // pos_ % capacity_
  std::uint64_t limit_ = 0;          // == state_->limit
  std::uint64_t next_boundary_ = 0;  // smallest chunk boundary after the last record start
  std::uint64_t seq_ = 0;
  std::uint64_t skipped_ = 0;        // == state_->skipped: sequence numbers gap records skipped, in all
  std::uint64_t pad_ = 0;            // padding before the reserved record (0: none)
  std::uint64_t claim_offset_ = 0;
  std::size_t claimed_ = 0;
  std::uint64_t claim_generation_ = 0;  // bumped by every Claim (a ScopedClaim's is current or stale)
  std::uint64_t bytes_written_ = 0;
  std::uint64_t first_seq_ = 0;  // seq_ when this Writer attached
  std::uint64_t first_skipped_ = 0;  // skipped_ then
  std::uint64_t first_lap_ = 0;  // pos_ / capacity_ then
  bool took_over_ = false;
  Taken<pid_t> owner_pid_;  // the process that made this Writer (see fork() above); 0 once moved from
};

}  // namespace circbuf::CircularBuffer
