// circbuf.ring:layout: the shared-memory layout of a ring, described once.
//
// A ring NAME is two SharedMemory segments:
//   NAME       the State below (control: positions, index, ownership)
//   NAME.data  `capacity` bytes of records, mapped read-only by readers
//
// ---- State (user region of segment NAME; offsets in bytes) --------------------
//
//     0 +--------------------------------------------------------------+
//       | magic u64 | version u32 | state_bytes u32 | capacity u64      |  header: written once,
//       | chunk u64 | max_message u32 | reserved u32 | type_size u32  |  before attachers see it
//       | type_align u32 | type_id u64 | pad .................... 128  |  (type: see TypeTag)
//   128 +--------------------------------------------------------------+
//       | tail u64 | latest u64 | sequence u64 | skipped u64 | pad 256 |  commit: writer, per message
//   256 +--------------------------------------------------------------+
//       | limit u64 | pad ...... 320 | index[8] u64 ...............384  |  frontier: writer, per chunk
//   384 +--------------------------------------------------------------+
//       | writer_pid i32 | writer_state u32 | writer_epoch u64 |        |  ownership: writer attach,
//       | reserved1 u32 | pad ......................................512  |  detach, take-over
//   512 +--------------------------------------------------------------+
//       | index_sequence[8] u64 ........ 576 | index_check[8] u64 ... 640  |  index: writer, per chunk
//   640 +--------------------------------------------------------------+
//       | index_skipped[8] u64 ....................................  704 |  index: writer, per chunk
//   704 +--------------------------------------------------------------+
//
//   Readers map the State read-only (PROT_READ): no reader writes it, so no
//   reader's stray write can reach it. The one word readers must write, the
//   wake word, lives in the attachers line of NAME's header page (circbuf.shm,
//   SegmentHeader::attachers, file offset 128), which every attachment maps
//   read-write:
//
//   ---- Wake word (u32 at SegmentHeader::attachers + 0; futex word) -------------
//
//    31                                                          1   0
//   +-------------------------------------------------------------+---+
//   |              wake count (bumped by every wake)              | A |
//   +-------------------------------------------------------------+---+
//
//     A (armed)  set by a reader about to sleep in Wait (fetch_or 1); cleared
//                by the writer's first commit after it, which then makes one
//                FUTEX_WAKE: one system call per sleep, none while nobody
//                sleeps, and nothing left behind by a reader that died asleep.
//     count      every wake (the writer's, a writer attaching or closing, a
//                RequestStop) replaces the word by (word | 1) + 1: A cleared,
//                the count moved, so a reader about to sleep on the value it
//                armed never misses a wake that came after it armed.
//
//   Groups that different processes write sit 128 bytes apart (two cache
//   lines: the adjacent-line prefetcher pairs lines), so no group shares a
//   line pair with a group written by someone else or at another rate.
//
// ---- Positions ------------------------------------------------------------------
//
//   tail, latest, limit and index[] are byte positions in the unbounded
//   stream (u64, never wrap, never go backwards); a position p lives at ring
//   offset p % capacity.
//     tail     end of the last committed record (for Wait, late join and
//              take-over; readers that are caught up poll record headers instead)
//     latest   start of the last committed record, a gap record too
//              (kNoRecord before the first; for take-over and the tool:
//              readers do not trust it)
//     sequence the sequence number of the next message (stored with tail):
//              a writer that takes over reads it when the dead writer's
//              claim has left no committed record intact to read it from
//     skipped  sequence numbers skipped by gap records so far, in all
//              (stored with tail; Writer::Skip): messages written = sequence
//              - skipped
//     limit    frontier: the writer has written, or may be writing, positions
//              below limit and no others. It moves in whole chunks
//              (chunk = capacity / kChunks) and is stored before the writer
//              touches the chunk. So a record at position p is intact as long
//              as p >= limit - capacity: the only test a reader needs, and it
//              reads a line that changes once per chunk, not per message.
//     index[k] start of the first committed record (a message or a gap record) at or after the chunk
//              boundary b with (b / chunk) % kChunks == k (kNoRecord if none
//              yet). A lapped reader resynchronises through it.
//     index_sequence[k]  the full (64-bit) sequence number of the record
//              index[k] names, and index_check[k] = IndexCheck(index[k],
//              index_sequence[k]), both stored before index[k]. A reader
//              takes a resynchronisation point only if the check agrees and
//              the record's header carries the sequence number's low 48 bits
//              (Reader::Verify): a position or a number changed on its own
//              breaks the check, and a payload word that looks like a header
//              of a small sequence number (any small integer does, for
//              sequence 0) is not taken for one.
//     index_skipped[k]  State::skipped as it was at the record index[k]
//              names (also in index_check[k]): how many of the sequence
//              numbers below index_sequence[k] gap records skipped, so that
//              a lapped reader can bound how far the sequence may have moved
//              over a distance (at most one message per 16 bytes, plus what
//              gap records skipped in between).
//   None of these positions ever goes backwards, across take-overs too.
//
// ---- Record (8-byte aligned, in segment NAME.data) -------------------------------
//
//    63                                             16 15               0
//   +--------------------------------------------------+-----------------+
//   |       sequence number (low 48 bits, 63..16)      |  length (bytes) |  message header, one u64
//   +--------------------------------------------------+-----------------+
//   |  payload: `length` bytes, then zero padding to a multiple of 8        |
//   +---------------------------------------------------------------------+
//    63 62 61                                       16 15               0
//   +--+--+--------------------------------------------+-----------------+
//   |1 |0 | next message's sequence (low 46 bits)      |        0        |  padding header
//   +--+--+--------------------------------------------+-----------------+
//   +--+--+--------------------------------------------+-----------------+
//   |1 |1 | first skipped sequence (low 46 bits)       |        0        |  gap header
//   +--+--+--------------------------------------------+-----------------+
//   |  count u64: sequence numbers skipped (1 .. 2^46 - 1)                |  gap record: 16 bytes
//   +---------------------------------------------------------------------+
//
//   length 1 .. 65535: a message; the record takes 8 + align8(length) bytes.
//   length 0: a padding record: the rest of the buffer up to its end is
//             unused (the next message did not fit before the end). Bit 63
//             (P) is set, so a padding header is never 0; bit 62 (G) is
//             clear; bits 61..16 hold the low 46 bits of the next message's
//             number.
//             Or, with P and G set, a gap record (Writer::Skip): `count`
//             sequence numbers were skipped by the writer (messages lost
//             upstream of it: a bridge, a replayed recording). The header
//             holds the low 46 bits of the first skipped number, which is
//             the number the reader expects there; a reader that reaches the
//             record counts `count` as lost (kLapped, LastLoss() == count)
//             and expects first + count next. A gap record is committed like
//             a message (count stored first, the header last) and has no
//             payload; index[] names it like a message when it is the first
//             record after a chunk boundary (index_sequence[k]: its first
//             skipped number), and latest names it while it is the newest.
//   header 0: "nothing here yet". The header is the commit: the writer stores
//             it last, with release, after the payload, and before that it
//             stores 0 in the header slot right after the record. So the word
//             at a caught-up reader's cursor is 0 until the next record is
//             complete, and the reader polls that one word (on the same cache
//             line as the payload it is about to copy) instead of tail.
//   A padding record is published together with the record after it (the
//   record's header first), so a reader never follows padding to a lap start
//   that holds nothing committed, even if the writer dies in between.
//   Sequence numbers start at 0 and count messages, not records. They are
//   64-bit: the State keeps full ones (sequence, index_sequence[]), from
//   which a late reader and a writer that takes over learn the high 16 bits;
//   a reader then counts on, and checks each header's low 48 bits.
//
// ---- End mark (segment NAME.data, after the record space) -----------------------
//
//   The data segment's user region is DataBytes(capacity, page) bytes: the
//   record space (capacity bytes), rounded up to whole pages, then one u64
//   kEndMark at EndMarkOffset(capacity, page), alone in the last page of the
//   file. `page` is the data segment's header_bytes (SharedMemory::
//   HeaderBytes(): the page size of the kernel that created it, which every
//   kernel that maps it divides; see "Page size" in circbuf.shm). It is
//   written when the segment is created and never again. A cut of the file
//   (ftruncate by another process) anywhere inside the record space, also in
//   the middle of a page, takes the last page with it: the kernel unmaps the
//   pages past the new end before it zeroes the rest of the page the cut
//   falls in. A cut inside a page does not fault (the rest of that page
//   reads as zeros), so a reader would copy the zeros as a message; instead
//   it loads the end mark after every copy (and when it finds nothing to
//   read): gone or zero means the ring was truncated (kCorrupt, Truncated()),
//   and the copy is not delivered. One load of a line nobody writes.
//
// Why padding and not a split copy: a record is always contiguous, so the
// zero-copy paths (Writer::Claim, Reader::ReadInPlace) can hand out one span,
// and the copy loops have no wrap test. The cost is at most one message's
// worth of bytes at the end of each lap.
module;

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

export module circbuf.ring:layout;

import circbuf.shm;

export namespace circbuf::CircularBuffer {

inline constexpr std::uint64_t kRingMagic = 0x3130'474E'4952'4243ULL;  // "CBRING01" little-endian
// 2: wake word in the header page, State read-only for readers, index_sequence[], the data segment's end mark
// 3: gap records (Writer::Skip), State::skipped and index_skipped[], padding holds 46 sequence bits
inline constexpr std::uint32_t kRingVersion = 3;
inline constexpr std::size_t kInterference = 128;  // two cache lines
inline constexpr std::uint64_t kChunks = 8;
inline constexpr std::uint64_t kNoRecord = ~std::uint64_t{0};

inline constexpr std::size_t kMaxMessageSize = 65535;
inline constexpr std::size_t kMinCapacity = 4096;
inline constexpr std::size_t kMaxCapacity = std::size_t{50} * 1024 * 1024;  // 50 MiB = 52428800
inline constexpr std::size_t kCapacityAlignment = 64;         // capacity is rounded up to this
inline constexpr std::size_t kRecordAlignment = 8;
inline constexpr std::size_t kHeaderBytes = 8;
// The names of a ring's two segments: NAME (the State) and NAME.data (the
// records). The one place that spells the rule out; tools and tests use these.
inline constexpr std::string_view kDataSegmentSuffix = ".data";
inline std::string DataSegmentName(std::string_view ring) {
  return std::string(ring) + std::string(kDataSegmentSuffix);
}
constexpr bool IsDataSegmentName(std::string_view name) noexcept { return name.ends_with(kDataSegmentSuffix); }
// The ring whose data segment `data` is (IsDataSegmentName(data) must hold).
constexpr std::string_view RingOfDataSegment(std::string_view data) noexcept {
  return data.substr(0, data.size() - kDataSegmentSuffix.size());
}
inline constexpr std::size_t kMaxRingNameLength = kMaxNameLength - kDataSegmentSuffix.size();  // room for ".data"

inline constexpr std::uint64_t kEndMark = 0x444E'4541'5441'4443ULL;  // "CDATAEND" little-endian
// `page`: the data segment's header_bytes (see "End mark" above), a power
// of two that HeaderBytesProblem accepted; 0 (none) gives `capacity` rather
// than a division by zero.
constexpr std::uint64_t EndMarkOffset(std::uint64_t capacity, std::uint64_t page) noexcept {
  return page == 0 ? capacity : (capacity + page - 1) / page * page;
}
// Bytes of the data segment's user region (see "End mark" above).
constexpr std::uint64_t DataBytes(std::uint64_t capacity, std::uint64_t page) noexcept {
  return EndMarkOffset(capacity, page) + 8;
}
static_assert(DataBytes(kMaxCapacity, kMinPageSize) <= kMaxSegmentSize);
static_assert(DataBytes(kMaxCapacity, kMaxPageSize) <= kMaxSegmentSize);

// The check word of an index entry: a 64-bit mix (splitmix64's finaliser)
// of its position, sequence number and skipped count. Not a secret: it
// catches entries changed at random or one field at a time, not a forger
// who recomputes it (docs/threat-model.md).
constexpr std::uint64_t IndexCheck(std::uint64_t position, std::uint64_t sequence, std::uint64_t skipped = 0) noexcept {
  std::uint64_t x = (position * 0x9E37'79B9'7F4A'7C15ULL) ^ (sequence + 0x632B'E59B'D9B4'E019ULL) ^
                    (skipped * 0xD6E8'FEB8'6659'FD93ULL);
  x = (x ^ (x >> 30)) * 0xBF58'476D'1CE4'E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D0'49BB'1331'11EBULL;
  return x ^ (x >> 31);
}

inline constexpr std::uint64_t kSequenceBits = 48;
inline constexpr std::uint64_t kSequenceMask = (std::uint64_t{1} << kSequenceBits) - 1;

// The message type of a typed ring (TypedWriter, TypedReader): size and
// alignment of the C++ type and an id its users choose, so that a reader of
// another type is refused at attach. All zero: untyped (any message).
struct TypeTag {
  std::uint32_t size;
  std::uint32_t align;
  std::uint64_t id;
  friend constexpr bool operator==(TypeTag const&, TypeTag const&) = default;
};
template <class T>
constexpr TypeTag TagOf(std::uint64_t id) noexcept {
  return {static_cast<std::uint32_t>(sizeof(T)), static_cast<std::uint32_t>(alignof(T)), id};
}

// What one ring is: its name and the bytes of record space.
// POD: it can itself be placed in shared memory or sent over a socket.
struct Spec {
  char name[kMaxRingNameLength + 1];  // "/quotes": segments "/quotes" and "/quotes.data"
  std::uint64_t capacity;         // bytes of record space; see Capacity rules below

  // Validates and builds a Spec. Capacity rules: kMinCapacity (4096) ..
  // kMaxCapacity (52428800) bytes, rounded up to a multiple of 64. The
  // largest message is MaxMessageFor(capacity): 65535 bytes from a capacity
  // of kMinCapacityForMaxMessage (149888) up, about 7/16 of it below. Throws
  // std::invalid_argument for a bad name, std::length_error for a bad
  // capacity, each naming the problem. A reader may pass capacity 0 ("take
  // the capacity of the existing ring").
  static Spec Make(std::string_view name, std::uint64_t capacity);

  [[nodiscard]] inline std::string_view Name() const noexcept { return name; }
};
static_assert(std::is_trivial_v<Spec> && std::is_standard_layout_v<Spec>);

// Largest message a ring of `capacity` bytes accepts. A record (header
// included) may take at most (capacity - chunk) / 2 - 8 bytes. Then
//  * a caught-up reader can always read the newest message: the frontier
//    that the record (and the 8-byte "nothing yet" word after it) pushes
//    ahead stays within one capacity of the record's start;
//  * when a record wraps, the padding record at the end of the old lap lies
//    beyond the new record, its "nothing yet" word and their frontier chunk,
//    so neither overwrites the other.
// So 1776 bytes in the smallest ring (4096), and 65535 bytes from a capacity
// of 149888 bytes (146.4 KiB) up.
constexpr std::size_t MaxMessageFor(std::uint64_t capacity) noexcept {
  std::uint64_t const record = ((capacity - capacity / kChunks) / 2 - kHeaderBytes) & ~std::uint64_t{7};
  std::uint64_t const room = record - kHeaderBytes;
  return room < kMaxMessageSize ? static_cast<std::size_t>(room) : kMaxMessageSize;
}
inline constexpr std::uint64_t kMinCapacityForMaxMessage = 149888;

constexpr std::uint64_t RecordBytes(std::size_t length) noexcept {
  return kHeaderBytes + ((length + kRecordAlignment - 1) & ~(kRecordAlignment - 1));
}
constexpr std::uint64_t MakeHeader(std::uint64_t sequence, std::size_t length) noexcept {
  return (sequence << 16) | static_cast<std::uint64_t>(length);
}
constexpr std::uint64_t kPaddingFlag = std::uint64_t{1} << 63;
constexpr std::uint64_t kGapFlag = std::uint64_t{1} << 62;
inline constexpr std::uint64_t kGapSequenceMask = (std::uint64_t{1} << 46) - 1;  // sequence bits of padding and gaps
inline constexpr std::uint64_t kGapRecordBytes = 16;                            // header, count
inline constexpr std::uint64_t kMaxGap = kGapSequenceMask;  // largest count of one gap record
inline constexpr std::uint64_t kMaxSkipSequence = std::uint64_t{1} << 63;  // Writer::Skip keeps sequences below
constexpr std::uint64_t MakePadding(std::uint64_t next_sequence) noexcept {
  return kPaddingFlag | ((next_sequence & kGapSequenceMask) << 16);
}
constexpr std::uint64_t MakeGap(std::uint64_t first_skipped) noexcept {
  return kPaddingFlag | kGapFlag | ((first_skipped & kGapSequenceMask) << 16);
}
constexpr std::size_t HeaderLength(std::uint64_t header) noexcept { return header & 0xffff; }
constexpr std::uint64_t HeaderSequence(std::uint64_t header) noexcept { return header >> 16; }
constexpr bool IsPadding(std::uint64_t header) noexcept {
  return (header & (kPaddingFlag | kGapFlag | 0xffff)) == kPaddingFlag;
}
constexpr bool IsGap(std::uint64_t header) noexcept {
  return (header & (kPaddingFlag | kGapFlag | 0xffff)) == (kPaddingFlag | kGapFlag);
}
// The sequence bits a padding or gap header carries.
constexpr std::uint64_t MarkSequence(std::uint64_t header) noexcept { return (header >> 16) & kGapSequenceMask; }

enum class WriterState : std::uint32_t {
  kNone = 0,    // no writer has attached yet
  kActive = 1,  // a writer attached and has not closed (alive, or died)
  kClosed = 2,  // the last writer closed cleanly
};
inline constexpr std::uint32_t kWakeArmed = 1;  // bit 0 of the wake word: a reader sleeps or is about to
// The wake word's offset in SegmentHeader::attachers of the state segment.
inline constexpr std::size_t kWakeWordOffset = 0;

// The control segment. A POD: every field that changes while others look is
// accessed through std::atomic_ref with an explicit memory order.
struct State {
  // header: written once by the creator, under the segment lock
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t state_bytes;
  std::uint64_t capacity;
  std::uint64_t chunk;
  std::uint32_t max_message;
  std::uint32_t reserved0;
  // The message type of a typed ring (TypeTag; all 0: untyped): set by the
  // creator, or by the first typed writer of an untyped ring.
  std::uint32_t type_size;
  std::uint32_t type_align;
  std::uint64_t type_id;
  std::byte pad0[kInterference - 56];
  // commit: writer, every message
  std::uint64_t tail;
  std::uint64_t latest;
  std::uint64_t sequence;
  std::uint64_t skipped;  // sequence numbers skipped by gap records, in all
  std::byte pad1[kInterference - 32];
  // frontier: writer, once per chunk
  std::uint64_t limit;
  std::byte pad2[56];
  std::uint64_t index[kChunks];
  // ownership: writer attach / detach / take-over
  std::int32_t writer_pid;
  std::uint32_t writer_state;
  std::uint64_t writer_epoch;
  std::uint32_t reserved1;
  std::byte pad3[kInterference - 20];
  // the index's sequence numbers: writer, once per chunk, before index[k]
  std::uint64_t index_sequence[kChunks];
  // IndexCheck(index[k], index_sequence[k], index_skipped[k]), stored with them
  std::uint64_t index_check[kChunks];
  // State::skipped at the record index[k] names, stored with it
  std::uint64_t index_skipped[kChunks];
};
static_assert(std::is_trivial_v<State> && std::is_standard_layout_v<State>);
static_assert(Storable<State>);
static_assert(offsetof(State, magic) == 0);
static_assert(offsetof(State, version) == 8);
static_assert(offsetof(State, state_bytes) == 12);
static_assert(offsetof(State, capacity) == 16);
static_assert(offsetof(State, chunk) == 24);
static_assert(offsetof(State, max_message) == 32);
static_assert(offsetof(State, reserved0) == 36);
static_assert(offsetof(State, type_size) == 40);
static_assert(offsetof(State, type_align) == 44);
static_assert(offsetof(State, type_id) == 48);
static_assert(offsetof(State, tail) == 128);
static_assert(offsetof(State, latest) == 136);
static_assert(offsetof(State, sequence) == 144);
static_assert(offsetof(State, skipped) == 152);
static_assert(offsetof(State, limit) == 256);
static_assert(offsetof(State, index) == 320);
static_assert(offsetof(State, writer_pid) == 384);
static_assert(offsetof(State, writer_state) == 388);
static_assert(offsetof(State, writer_epoch) == 392);
static_assert(offsetof(State, reserved1) == 400);
static_assert(offsetof(State, index_sequence) == 512);
static_assert(offsetof(State, index_check) == 576);
static_assert(offsetof(State, index_skipped) == 640);
static_assert(sizeof(State) == 704);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint64_t>::required_alignment <= alignof(std::uint64_t));

// Outcomes of Reader::Read besides a message's length (> 0).
inline constexpr int kEmpty = 0;            // nothing new
inline constexpr int kLapped = -1;          // messages lost: LastLoss() of them (overwritten, or a gap record)
inline constexpr int kBufferTooSmall = -2;  // next message is PendingSize() bytes; it stays unread
inline constexpr int kCorrupt = -3;         // the ring's contents break its own rules (see Reader)

}  // namespace circbuf::CircularBuffer
