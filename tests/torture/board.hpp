// circbuf-torture: what the controller and the participants share.
//
// The board is one memfd that the controller creates and every participant
// inherits across fork+exec (its descriptor number is on the command line),
// so it never appears in /dev/shm. Each participant owns one Slot and is the
// only process that writes it; the controller reads it (while the
// participant runs, and after it died) and writes only `stop` and the
// config. All fields are lock-free atomics: a participant SIGKILLed in the
// middle of an update leaves every field either old or new, never torn.
//
// Message format (every byte is a function of the run's seed and the
// message's sequence number, so any reader can check it):
//   size  1 .. max_message, from SizeOf(seed, seq)
//   n >= 16: [seq u64][body: n - 16 bytes of Body(seed, seq)][checksum u64]
//            checksum = Checksum(seq, first n - 8 bytes)
//   n < 16:  n bytes of Body(seed, seq)
// Included before any import (docs/toolchain-notes.md, "Includes, imports and where spdlog may go", rule 1).
#pragma once

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace circbuf::torture {

inline constexpr int kMaxSlots = 16;

enum Role : std::uint32_t { kRoleWriter, kRoleReader, kRoleLocker };

// Where a participant is. Stored just before the participant enters the
// step, so the phase a dead participant shows is the step it died in.
enum Phase : std::uint32_t {
  kStarting,      // exec'd, no library call yet
  kWriterOpen,    // inside Writer's constructor: create, attach or take over
  kWriterIdle,    // between messages (building the next one)
  kWriting,       // inside Writer::Write
  kClaimed,       // between Claim and Commit, filling the claimed slot
  kCommitting,    // inside Commit
  kWriterClose,   // inside ~Writer
  kReaderOpen,    // inside Reader's constructor (attach)
  kReading,       // inside Reader::Read
  kChecking,      // checking the delivered message
  kReaderWait,    // inside Reader::Wait
  kReaderClose,   // inside ~Reader (detach; may be the last one out)
  kLockOpen,      // SemaphoreLock constructor (sem_open: may create the semaphore)
  kLockAcquire,   // inside SemaphoreLock::Acquire
  kLockHeld,      // holding the SemaphoreLock
  kLockRelease,   // inside SemaphoreLock::Release
  kLockClose,     // SemaphoreLock destructor
  kShmOpen,       // SharedMemory constructor: create or attach, under its lock
  kShmInit,       // SharedMemory `initialize` callback: creating, lock held
  kShmHeld,       // attached to the plain segment
  kShmClose,      // ~SharedMemory: detach, maybe last one out
  kStopped,       // finished cleanly after `stop`
  kPhaseCount
};

inline char const* PhaseName(std::uint32_t phase) {
  static constexpr char const* kNames[] = {"starting",     "writer-open",  "writer-idle", "write",        "claimed",
                                           "commit",       "writer-close", "reader-open", "read",         "check",
                                           "wait",         "reader-close", "lock-open",   "lock-acquire", "lock-held",
                                           "lock-release", "lock-close",   "shm-open",    "shm-init",     "shm-held",
                                           "shm-close",    "stopped"};
  static_assert(sizeof kNames / sizeof kNames[0] == kPhaseCount);
  return phase < kPhaseCount ? kNames[phase] : "?";
}

// Calls whose duration is bounded (--max-block-ms).
enum Op : std::uint32_t {
  kOpWriterOpen,
  kOpWriterClose,
  kOpReaderOpen,
  kOpReaderClose,
  kOpLockAcquire,
  kOpShmOpen,
  kOpShmClose,
  kOpCount
};
inline char const* OpName(std::uint32_t op) {
  static constexpr char const* kNames[] = {
      "Writer()", "~Writer()", "Reader()", "~Reader()", "SemaphoreLock::Acquire", "SharedMemory()", "~SharedMemory()"};
  static_assert(sizeof kNames / sizeof kNames[0] == kOpCount);
  return op < kOpCount ? kNames[op] : "?";
}

using U64 = std::atomic<std::uint64_t>;
static_assert(U64::is_always_lock_free);

// A reader incarnation's accounting (one Reader object), see torture.md:
//   start      S0: the sequence number of the first message it could see
//   next       E: the sequence number it expects next (everything below E is
//              accounted for: delivered or counted lost)
//   delivered, lost: its own counts of outcomes; lib_*: Reader::Delivered/Lost
// Invariant: delivered + lost == next - start, own counts == library counts.
// closed_*: totals of this slot's Reader objects that were destroyed cleanly,
// in the same record so that a kill never counts one twice or not at all.
struct Accounting {
  U64 incarnation;  // 0: no Reader object at the moment
  U64 start;
  U64 next;
  U64 delivered;
  U64 lost;
  U64 lib_delivered;
  U64 lib_lost;
  U64 closed_readers;
  U64 closed_delivered;
  U64 closed_lost;
};

struct alignas(64) Slot {
  std::atomic<std::uint32_t> role;
  std::atomic<std::uint32_t> phase;
  std::atomic<std::int32_t> pid;
  std::atomic<std::uint32_t> ready;  // past its first attach
  U64 heartbeat_ns;
  U64 failures;
  U64 max_block_ns[kOpCount];
  U64 ops[kOpCount];
  // Reader: double-buffered accounting of the current Reader object.
  // Writes go to acc[(gen + 1) & 1], then gen is incremented (release).
  U64 gen;
  Accounting acc[2];
  U64 laps;
  U64 unsynced_starts;
  // Writer:
  U64 writer_high;      // 1 + highest sequence number that may have been committed
  U64 messages_written; // committed by this slot, all incarnations (+1 per Commit/Write returned)
  U64 gaps_written;     // Writer::Skip calls that returned (gap records)
  U64 writer_opens;
  U64 took_over;
  U64 ring_created;
  // Locker:
  U64 lock_recovered;   // acquisitions that took over from a dead holder
  // First failure, for the controller to print.
  std::atomic<std::uint32_t> message_set;
  char message[300];
};

struct Config {
  char ring[64];
  char lock[64];
  char segment[64];
  std::uint64_t seed;
  std::uint64_t capacity;
  std::uint64_t max_message;
  std::uint64_t max_block_ns;
  std::uint64_t reopen_every;  // mean number of operations between clean detach + reattach
};

struct Board {
  Config config;
  std::atomic<std::uint32_t> stop;
  U64 final_total;  // the writer's NextSequence at its clean close (stop)
  Slot slots[kMaxSlots];
};

inline std::uint64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

inline void StoreMax(U64& target, std::uint64_t value) {
  std::uint64_t seen = target.load(std::memory_order_relaxed);
  while (value > seen && !target.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

// ---- messages ------------------------------------------------------------------------

inline std::uint64_t Mix(std::uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Mostly small (1 .. 64), one in four anywhere in 1 .. max.
inline std::size_t SizeOf(std::uint64_t seed, std::uint64_t seq, std::size_t max) {
  std::uint64_t const r = Mix(seed ^ Mix(seq));
  std::size_t const cap = (r & 3) == 0 ? max : std::min<std::size_t>(64, max);
  return 1 + static_cast<std::size_t>((r >> 8) % cap);
}

inline std::uint8_t BodyByte(std::uint64_t base, std::size_t i) {
  return static_cast<std::uint8_t>((Mix(base + i / 8) >> ((i % 8) * 8)) + i);
}

inline std::uint64_t Checksum(std::uint64_t seq, std::byte const* p, std::size_t n) {
  std::uint64_t h = Mix(seq ^ 0xc0ffee);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, p + i, 8);
    h = Mix(h ^ w);
  }
  std::uint64_t w = 0;
  std::memcpy(&w, p + i, n - i);
  return Mix(h ^ w ^ n);
}

// Fills `out` (size SizeOf(seed, seq, max)) with message `seq`. `split` is
// called once in the middle (the writer dawdles there between Claim and Commit).
template <class Split>
void Fill(std::uint64_t seed, std::uint64_t seq, std::span<std::byte> out, Split const& split) {
  std::uint64_t const base = Mix(seed ^ (seq * 0x9e3779b97f4a7c15ULL));
  std::size_t const n = out.size();
  if (n < 16) {
    for (std::size_t i = 0; i < n; ++i) out[i] = std::byte(BodyByte(base, i));
    split();
    return;
  }
  std::memcpy(out.data(), &seq, 8);
  for (std::size_t i = 8; i < n - 8; ++i) {
    out[i] = std::byte(BodyByte(base, i));
    if (i == n / 2) split();
  }
  if (n == 16) split();  // the loop above has no byte n / 2 to stop at
  std::uint64_t const sum = Checksum(seq, out.data(), n - 8);
  std::memcpy(out.data() + n - 8, &sum, 8);
}

// Why a delivered message is wrong, or nullptr if it is message `seq`.
inline char const* Check(std::uint64_t seed, std::uint64_t seq, std::span<std::byte const> got, std::size_t max) {
  std::size_t const n = got.size();
  if (n != SizeOf(seed, seq, max)) return "wrong size";
  std::uint64_t const base = Mix(seed ^ (seq * 0x9e3779b97f4a7c15ULL));
  if (n < 16) {
    for (std::size_t i = 0; i < n; ++i) {
      if (got[i] != std::byte(BodyByte(base, i))) return "wrong bytes (short message)";
    }
    return nullptr;
  }
  std::uint64_t embedded = 0;
  std::memcpy(&embedded, got.data(), 8);
  if (embedded != seq) return "embedded sequence number differs from the ring's";
  std::uint64_t sum = 0;
  std::memcpy(&sum, got.data() + n - 8, 8);
  if (sum != Checksum(seq, got.data(), n - 8)) return "checksum mismatch (torn or overwritten)";
  for (std::size_t i = 8; i < n - 8; ++i) {
    if (got[i] != std::byte(BodyByte(base, i))) return "wrong bytes";
  }
  return nullptr;
}

// Plain copy of an Accounting record.
struct Counts {
  std::uint64_t incarnation = 0;
  std::uint64_t start = 0, next = 0, delivered = 0, lost = 0, lib_delivered = 0, lib_lost = 0;
  std::uint64_t closed_readers = 0, closed_delivered = 0, closed_lost = 0;
};

// Written by the slot's owner only (or by the controller while no owner lives).
inline void Publish(Slot& slot, Counts const& c) {
  std::uint64_t const gen = slot.gen.load(std::memory_order_relaxed);
  Accounting& a = slot.acc[(gen + 1) & 1];
  a.incarnation.store(c.incarnation, std::memory_order_relaxed);
  a.start.store(c.start, std::memory_order_relaxed);
  a.next.store(c.next, std::memory_order_relaxed);
  a.delivered.store(c.delivered, std::memory_order_relaxed);
  a.lost.store(c.lost, std::memory_order_relaxed);
  a.lib_delivered.store(c.lib_delivered, std::memory_order_relaxed);
  a.lib_lost.store(c.lib_lost, std::memory_order_relaxed);
  a.closed_readers.store(c.closed_readers, std::memory_order_relaxed);
  a.closed_delivered.store(c.closed_delivered, std::memory_order_relaxed);
  a.closed_lost.store(c.closed_lost, std::memory_order_relaxed);
  slot.gen.store(gen + 1, std::memory_order_release);
}

// A consistent copy of the last published record (a seqlock read: the
// owner may be publishing meanwhile).
inline Counts Snapshot(Slot const& slot) {
  for (;;) {
    std::uint64_t const gen = slot.gen.load(std::memory_order_acquire);
    Accounting const& a = slot.acc[gen & 1];
    Counts c;
    c.incarnation = a.incarnation.load(std::memory_order_relaxed);
    c.start = a.start.load(std::memory_order_relaxed);
    c.next = a.next.load(std::memory_order_relaxed);
    c.delivered = a.delivered.load(std::memory_order_relaxed);
    c.lost = a.lost.load(std::memory_order_relaxed);
    c.lib_delivered = a.lib_delivered.load(std::memory_order_relaxed);
    c.lib_lost = a.lib_lost.load(std::memory_order_relaxed);
    c.closed_readers = a.closed_readers.load(std::memory_order_relaxed);
    c.closed_delivered = a.closed_delivered.load(std::memory_order_relaxed);
    c.closed_lost = a.closed_lost.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.gen.load(std::memory_order_relaxed) == gen) return c;
  }
}

// participants.cpp: runs the participant in `slot` until stop (or death).
int RunParticipant(Board& board, int slot, std::uint64_t incarnation);

}  // namespace circbuf::torture
