module;

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>

#include "../detail/log.hpp"

module circbuf.ring;

namespace circbuf::CircularBuffer {

namespace writer_impl {

bool LockRange(int fd, short type) {
  struct flock lock{};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

}  // namespace writer_impl
using namespace writer_impl;

Writer::Writer(Spec const& spec, WriterOptions options)
    : IWrapper(spec, Role::kWriter, options.mode, options.group, options.huge_pages, std::chrono::milliseconds(0),
               options.type) {
  std::string const ring = "ring \"" + std::string(spec_.Name()) + "\"";
  // One writer at a time: an OFD write lock on byte 0 of the state segment,
  // dropped by the kernel when the holder dies.
  if (!LockRange(StateHandle(), F_WRLCK)) {
    int const error = errno;
    if (error == EAGAIN || error == EACCES) {
      throw std::system_error(EBUSY, std::generic_category(),
                              ring + " already has a live writer (pid " + std::to_string(WriterPid()) + ")");
    }
    throw std::system_error(error, std::generic_category(), "fcntl(F_OFD_SETLK) on " + ring);
  }
  try {
    auto const previous =
        static_cast<WriterState>(std::atomic_ref<std::uint32_t>(state_->writer_state).load(std::memory_order_acquire));
    pid_t const previous_pid = WriterPid();
    if (options.type != TypeTag{}) RecordType(options.type);
    Recover();
    first_seq_ = seq_;
    first_skipped_ = skipped_;
    first_lap_ = pos_ / capacity_;
    took_over_ = previous == WriterState::kActive;
    if (took_over_) {
      detail::Log().warn("{}: writer pid {} died; taking over at position {}, sequence {}", ring, previous_pid, pos_,
                         seq_);
    }
    owner_pid_ = ::getpid();
    std::atomic_ref<std::int32_t>(state_->writer_pid).store(owner_pid_, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->writer_epoch).fetch_add(1, std::memory_order_relaxed);
    std::atomic_ref<std::uint32_t>(state_->writer_state)
        .store(static_cast<std::uint32_t>(WriterState::kActive), std::memory_order_release);
    // Readers asleep in Wait learn of the new writer (kTakenOver) now, not at
    // the end of a sleep slice.
    WakeAll();
    detail::Log().info("{}: writer attached (capacity {}, position {}, sequence {})", ring, capacity_, pos_, seq_);
  } catch (...) {
    LockRange(StateHandle(), F_UNLCK);
    KeepAttachedSegments();  // a ring we refuse (e.g. corrupt) stays as it was
    throw;
  }
}

Writer::~Writer() {
  // A forked child's copy: the parent still writes (and the lock is the
  // parent's too, shared through the open file description).
  if (::getpid() != owner_pid_) return;
  std::atomic_ref<std::uint32_t>(state_->writer_state)
      .store(static_cast<std::uint32_t>(WriterState::kClosed), std::memory_order_release);
  WakeAll();  // [W5] after the store: a reader that arms after it sees kClosed
  LockRange(StateHandle(), F_UNLCK);
  detail::Log().info("ring \"{}\": writer closed at position {}, sequence {}", spec_.Name(), pos_, seq_);
}

// Finds where the stream stands from what is committed: the newest index
// entry below tail names a committed record; the records from there must end
// exactly at tail. Then the records after tail whose header is already
// published: a writer that died between [W2] and [W3] has shown them to
// readers, so they are committed too (the header is the readers' commit).
// Also repairs index entries that such a writer did not store.
void Writer::Recover() {
  std::uint64_t const tail = std::atomic_ref<std::uint64_t>(state_->tail).load(std::memory_order_acquire);
  limit_ = std::atomic_ref<std::uint64_t>(state_->limit).load(std::memory_order_acquire);
  std::string const corrupt = "ring \"" + std::string(spec_.Name()) + "\": corrupt state: ";
  std::uint64_t p = 0;
  std::uint64_t boundary = 0;  // next chunk boundary whose index entry is due
  std::uint64_t last = kNoRecord;
  std::uint64_t seq = 0;
  std::uint64_t skipped = 0;  // State::skipped as of seq
  // A committed record at `at` whose full sequence number is seq (the caller
  // checked its header against it).
  auto take = [&](std::uint64_t at, std::uint64_t header) {
    for (; boundary <= at; boundary += chunk_) {
      std::size_t const k = (boundary / chunk_) % kChunks;
      std::atomic_ref<std::uint64_t>(state_->index_sequence[k]).store(seq, std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(state_->index_skipped[k]).store(skipped, std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(state_->index_check[k])
          .store(IndexCheck(at, seq, skipped), std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(state_->index[k]).store(at, std::memory_order_release);
    }
    last = at;
    ++seq;
    p = at + RecordBytes(HeaderLength(header));
  };
  // The count of a gap record at `at` that carries seq, or 0 if it is not one.
  auto gap_count = [&](std::uint64_t at, std::uint64_t header) -> std::uint64_t {
    std::uint64_t const off = at % capacity_;
    if (!IsGap(header) || off + kGapRecordBytes > capacity_ || MarkSequence(header) != (seq & kGapSequenceMask)) {
      return 0;
    }
    std::uint64_t const count = LoadWord(data_, off + kHeaderBytes);
    return count <= kMaxGap ? count : 0;
  };
  // A committed gap record at `at` (no index entry names one).
  auto take_gap = [&](std::uint64_t at, std::uint64_t count) {
    last = at;
    seq += count;
    skipped += count;
    p = at + kGapRecordBytes;
  };
  if (tail != 0) {
    // The newest index entry below tail that is intact and whose record
    // carries the sequence number stored with it (a writer that died between
    // the two stores of an entry left it torn: an older entry serves).
    std::uint64_t start = kNoRecord;
    std::uint64_t start_seq = 0;
    std::uint64_t start_skipped = 0;
    for (std::size_t k = 0; k < kChunks; ++k) {
      std::uint64_t const e = std::atomic_ref<std::uint64_t>(state_->index[k]).load(std::memory_order_acquire);
      std::uint64_t const s = std::atomic_ref<std::uint64_t>(state_->index_sequence[k]).load(std::memory_order_relaxed);
      std::uint64_t const sk = std::atomic_ref<std::uint64_t>(state_->index_skipped[k]).load(std::memory_order_relaxed);
      std::uint64_t const check =
          std::atomic_ref<std::uint64_t>(state_->index_check[k]).load(std::memory_order_relaxed);
      if (e != kNoRecord && e % kRecordAlignment == 0 && e < tail && e + capacity_ >= limit_ &&
          check == IndexCheck(e, s, sk) && (start == kNoRecord || e > start) &&
          HeaderSequence(LoadWord(data_, e % capacity_)) == (s & kSequenceMask)) {
        start = e;
        start_seq = s;
        start_skipped = sk;
      }
    }
    std::uint64_t const latest = std::atomic_ref<std::uint64_t>(state_->latest).load(std::memory_order_relaxed);
    std::uint64_t const next = std::atomic_ref<std::uint64_t>(state_->sequence).load(std::memory_order_relaxed);
    std::uint64_t const next_skipped = std::atomic_ref<std::uint64_t>(state_->skipped).load(std::memory_order_relaxed);
    // A ring whose data segment was created anew (IWrapper::AttachAsWriter,
    // ResetPositions): nothing committed, continue at tail.
    bool const reset = start == kNoRecord && latest == kNoRecord && tail == limit_ && tail % capacity_ == 0;
    bool const overrun = start == kNoRecord && limit_ > capacity_ && !reset;
    if (reset) {
      start = tail;
      seq = next;
      skipped = next_skipped;
    } else if (overrun) {
      // The dead writer claimed a record (after padding) past every committed
      // one, and may have overwritten them all: no header is left to read
      // the sequence number from. Continue at tail with the one stored there.
      // latest is the start of the record that ends at tail: within a
      // capacity of it (a latest further back would also send the boundary
      // walk in `take` through every chunk in between).
      if (next == 0 || latest == kNoRecord || latest >= tail || tail - latest > capacity_ ||
          latest % kRecordAlignment != 0 || next_skipped > next) {
        throw std::invalid_argument(corrupt + "no index entry below tail " + std::to_string(tail));
      }
      start = tail;  // nothing for the loop below to read
      last = latest;
      seq = next;
      skipped = next_skipped;
    } else if (start == kNoRecord) {
      start = 0;  // never wrapped (or only gap records so far): the first record is at 0, sequence 0
    } else {
      seq = start_seq;  // the full 64 bits: a header holds only the low 48
      skipped = start_skipped;
    }
    p = start;
    // The entry for start's own boundary is there (for an overrun: latest's).
    boundary = reset ? tail : ((overrun ? latest : start) / chunk_ + 1) * chunk_;
    while (p < tail) {
      std::uint64_t const off = p % capacity_;
      std::uint64_t const header = LoadWord(data_, off);
      std::size_t const n = HeaderLength(header);
      if (n == 0) {
        if (IsGap(header)) {
          std::uint64_t const count = gap_count(p, header);
          if (count == 0) {
            throw std::invalid_argument(corrupt + "bad gap record at position " + std::to_string(p));
          }
          take_gap(p, count);
          continue;
        }
        p += capacity_ - off;
        continue;
      }
      if (n > max_message_ || off + RecordBytes(n) > capacity_) {
        throw std::invalid_argument(corrupt + "bad record at position " + std::to_string(p));
      }
      if (HeaderSequence(header) != (seq & kSequenceMask)) {
        throw std::invalid_argument(corrupt + "record at position " + std::to_string(p) + " has sequence number " +
                                    std::to_string(HeaderSequence(header)) + ", not " +
                                    std::to_string(seq & kSequenceMask));
      }
      take(p, header);
    }
    if (p != tail || (last == kNoRecord && !reset)) {
      throw std::invalid_argument(corrupt + "records from position " + std::to_string(start) + " end at " +
                                  std::to_string(p) + ", not at tail " + std::to_string(tail));
    }
  }
  // Records published by their header after tail. The word at p is 0 ("nothing
  // yet"), the next record's header, or padding published after that record.
  std::uint64_t extra = 0;
  for (;;) {
    std::uint64_t at = p;
    std::uint64_t header = LoadWord(data_, at % capacity_);
    if (header == 0) break;
    if (IsPadding(header)) {
      at += capacity_ - at % capacity_;
      header = LoadWord(data_, 0);
    }
    if (IsGap(header)) {
      std::uint64_t const count = gap_count(at, header);
      if (count == 0) break;
      take_gap(at, count);
      ++extra;
      continue;
    }
    std::size_t const n = HeaderLength(header);
    if (n == 0 || n > max_message_ || at % capacity_ + RecordBytes(n) > capacity_ ||
        HeaderSequence(header) != (seq & kSequenceMask)) {
      break;
    }
    take(at, header);
    ++extra;
  }
  pos_ = p;
  offset_ = p % capacity_;
  seq_ = seq;
  skipped_ = skipped;
  next_boundary_ = boundary;
  if (last != kNoRecord) std::atomic_ref<std::uint64_t>(state_->latest).store(last, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(state_->sequence).store(seq, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(state_->skipped).store(skipped, std::memory_order_relaxed);
  if (extra != 0) {
    std::atomic_ref<std::uint64_t>(state_->tail).store(p, std::memory_order_release);
    detail::Log().warn("ring \"{}\": {} message(s) published after the committed tail by a writer that died; "
                       "kept them",
                       spec_.Name(), extra);
  }
}

void Writer::CheckNotTruncated() {
  bool truncated = false;
  if (std::uint32_t const now = truncations_->load(std::memory_order_seq_cst); now != truncations_seen_) {
    truncated = Truncated();
    if (!truncated) truncations_seen_ = now;  // another attachment's segment
  }
  if (truncated || EndMarkGone()) {
    throw std::system_error(EIO, std::generic_category(),
                            "ring \"" + std::string(spec_.Name()) +
                                "\": a segment was truncated by another process; nothing written now reaches a reader");
  }
}

void Writer::UpdateIndex(std::uint64_t start, std::uint64_t sequence) noexcept {
  for (; next_boundary_ <= start; next_boundary_ += chunk_) {
    std::size_t const k = (next_boundary_ / chunk_) % kChunks;
    std::atomic_ref<std::uint64_t>(state_->index_sequence[k]).store(sequence, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->index_skipped[k]).store(skipped_, std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->index_check[k])
        .store(IndexCheck(start, sequence, skipped_), std::memory_order_relaxed);
    std::atomic_ref<std::uint64_t>(state_->index[k]).store(start, std::memory_order_release);  // [W3] pairs with [R3]
  }
}

void Writer::Skip(std::uint64_t count) {
  while (count != 0) {
    std::uint64_t const n = std::min(count, kMaxGap);
    PublishGap(Reserve(kGapRecordBytes), n);
    count -= n;
  }
}

// Publish (writer.cppm) for a gap record: the count first, then the "nothing
// yet" word after the record, then the header ([W2]), padding after it, and
// the commit group with tail last ([W3]). No index entry names it: the next
// message's does (UpdateIndex runs at the next message at or after the boundary).
void Writer::PublishGap(std::uint64_t offset, std::uint64_t count) {
  claimed_ = 0;  // as Write: abandons an uncommitted Claim
  std::uint64_t const start = pos_ + pad_;
  std::uint64_t end = offset + kGapRecordBytes;
  if (end == capacity_) end = 0;
  StoreWord(data_, offset + kHeaderBytes, count);
  StoreWord(data_, end, 0);
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset))
      .store(MakeGap(seq_), std::memory_order_release);  // [W2]
  if (pad_ != 0) {
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(data_ + offset_))
        .store(MakePadding(seq_), std::memory_order_release);  // [W2] for the padding, after its record
  }
  pos_ = start + kGapRecordBytes;
  offset_ = end;
  seq_ += count;
  skipped_ += count;
  std::atomic_ref<std::uint64_t>(state_->latest).store(start, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(state_->sequence).store(seq_, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(state_->skipped).store(skipped_, std::memory_order_relaxed);
  std::atomic_ref<std::uint64_t>(state_->tail).store(pos_, std::memory_order_release);  // [W3]
  if ((std::atomic_ref<std::uint32_t>(*wake_).load(std::memory_order_relaxed) & kWakeArmed) != 0) WakeReaders();
}

void Writer::WakeReaders() noexcept {
  BumpWake(wake_);  // [W5]
  // Two, not all: each reader woken with something to read wakes the rest
  // (Reader::Wait), so the writer's cost does not grow with the number of
  // sleepers; two, so that one woken reader that dies before it passes the
  // wake on does not leave the others asleep.
  FutexWake(wake_, 2);
}

void Writer::WakeAll() noexcept {
  BumpWake(wake_);  // [W5]
  FutexWake(wake_, INT_MAX);
}

void Writer::ThrowBadSize(std::size_t n) const {
  throw std::length_error("ring \"" + std::string(spec_.Name()) + "\": message of " + std::to_string(n) +
                          " bytes: must be 1 .. " + std::to_string(max_message_) +
                          (max_message_ < kMaxMessageSize ? " in a ring of this capacity" : ""));
}

void Writer::ThrowBadCommit(std::size_t n) const {
  throw std::logic_error("ring \"" + std::string(spec_.Name()) + "\": Commit(" + std::to_string(n) + ") " +
                         (claimed_ == 0 ? "without a Claim" : "outside 1 .. " + std::to_string(claimed_)));
}

void Writer::RecordType(TypeTag type) {
  TypeTag const recorded = RecordedType();
  if (recorded == type) return;
  if (recorded != TypeTag{}) {
    throw std::invalid_argument("ring \"" + std::string(spec_.Name()) + "\" holds " + DescribeType(recorded) +
                                "; this writer writes " + DescribeType(type));
  }
  // type_size last: a reader that loads it (first) and finds it set sees the rest.
  std::atomic_ref<std::uint64_t>(state_->type_id).store(type.id, std::memory_order_relaxed);
  std::atomic_ref<std::uint32_t>(state_->type_align).store(type.align, std::memory_order_relaxed);
  std::atomic_ref<std::uint32_t>(state_->type_size).store(type.size, std::memory_order_release);
}

void Writer::ScopedClaim::ThrowStale() {
  throw std::logic_error(
      "ScopedClaim::Commit: the claim was committed, aborted, or abandoned by a later Write or Claim");
}

void Writer::ReportAbandonedClaim() const noexcept {
  try {
    detail::Log().warn("ring \"{}\": a ScopedClaim was destroyed without Commit or Abort; aborted (nothing published)",
                       spec_.Name());
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor calls this; losing the warning is harmless
  }
}

}  // namespace circbuf::CircularBuffer
