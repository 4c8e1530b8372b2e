// circbuf-torture participants, one process each (fork+exec of the torture
// binary with --slot): the writer, the readers and the lockers. Each one
// publishes its phase before every step (so the controller can aim SIGKILL
// at a step), measures every call that may block, and checks everything it
// can itself; a violation is written to its slot and the process goes on, so
// the controller sees it at the end of the round.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "torture/board.hpp"

import circbuf;

namespace circbuf::torture {

namespace {

namespace cb = circbuf::CircularBuffer;

class Participant {
 public:
  Participant(Board& board, int slot, std::uint64_t incarnation)
      : board_(board),
        config_(board.config),
        slot_(board.slots[slot]),
        index_(slot),
        rng_(Mix(config_.seed ^ Mix(static_cast<std::uint64_t>(slot) * 1'000'003ULL + incarnation))) {}

  int Run() {
    slot_.pid.store(::getpid(), std::memory_order_relaxed);
    switch (slot_.role.load(std::memory_order_relaxed)) {
      case kRoleWriter: RunWriter(); break;
      case kRoleReader: RunReader(); break;
      default: RunLocker(); break;
    }
    Enter(kStopped);
    return 0;
  }

  void Fail(std::string const& what) {
    slot_.failures.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "circbuf-torture: slot %d (pid %d, %s): %s\n", index_, ::getpid(),
                 PhaseName(slot_.phase.load(std::memory_order_relaxed)), what.c_str());
    if (slot_.message_set.exchange(1, std::memory_order_relaxed) == 0) {
      std::snprintf(slot_.message, sizeof slot_.message, "%s", what.c_str());
    }
  }

 private:
  void Enter(Phase phase) {
    slot_.phase.store(phase, std::memory_order_release);
    slot_.heartbeat_ns.store(NowNs(), std::memory_order_release);
  }
  [[nodiscard]] bool Stopping() const { return board_.stop.load(std::memory_order_acquire) != 0; }

  // Runs a call whose duration is bounded, records it, checks the bound, and
  // returns what the call returned. A call that throws is not recorded.
  template <class Fn>
  decltype(auto) Timed(Op op, Fn&& fn) {
    std::uint64_t const start = NowNs();
    if constexpr (std::is_void_v<std::invoke_result_t<Fn>>) {
      std::forward<Fn>(fn)();
      Took(op, start);
    } else {
      decltype(auto) result = std::forward<Fn>(fn)();
      Took(op, start);
      return result;
    }
  }
  void Took(Op op, std::uint64_t start) {
    std::uint64_t const took = NowNs() - start;
    StoreMax(slot_.max_block_ns[op], took);
    slot_.ops[op].fetch_add(1, std::memory_order_relaxed);
    if (took > config_.max_block_ns) {
      Fail(std::string(OpName(op)) + " took " + std::to_string(took / 1'000'000) + " ms, bound " +
           std::to_string(config_.max_block_ns / 1'000'000) + " ms");
    }
  }

  std::uint64_t Random(std::uint64_t below) { return below == 0 ? 0 : rng_() % below; }
  // Operations until the next clean detach: uniform in 1 .. 2 * mean.
  std::uint64_t Budget() { return 1 + Random(2 * config_.reopen_every); }
  // Spins (without sleeping, so the step stays short but killable) for up to `us`.
  static void Dawdle(std::uint64_t us) {
    std::uint64_t const until = NowNs() + us * 1000;
    while (NowNs() < until) {
    }
  }

  // A refused take-over: what the ring looks like, for the report.
  void DumpRing() {
    auto read = [](std::string const& file, std::vector<std::uint64_t>& words) {
      FILE* f = std::fopen(file.c_str(), "rb");
      if (f == nullptr) return;
      std::fseek(f, 4096, SEEK_SET);
      words.resize(std::fread(words.data(), 8, words.size(), f));
      std::fclose(f);
    };
    std::vector<std::uint64_t> state(640 / 8);
    std::vector<std::uint64_t> data(config_.capacity / 8);
    read("/dev/shm" + std::string(config_.ring), state);
    read("/dev/shm" + circbuf::CircularBuffer::DataSegmentName(config_.ring), data);
    if (state.size() < 80 || data.size() < config_.capacity / 8) return;
    std::fprintf(stderr, "ring dump: tail %llu latest %llu sequence %llu limit %llu writer_state %llu\n  index:",
                 (unsigned long long)state[16], (unsigned long long)state[17], (unsigned long long)state[18],
                 (unsigned long long)state[32], (unsigned long long)(state[48] >> 32));
    for (int k = 0; k < 8; ++k) std::fprintf(stderr, " %llu", (unsigned long long)state[40 + k]);
    std::fprintf(stderr, "\n  headers from offset 0:");
    for (std::uint64_t off = 0; off < config_.capacity && off < 1024;) {
      std::uint64_t const h = data[off / 8];
      std::fprintf(stderr, " [%llu: seq %llu len %llu%s]", (unsigned long long)off,
                   (unsigned long long)((h >> 16) & 0x7fffffffffffULL), (unsigned long long)(h & 0xffff),
                   (h >> 63) != 0 ? " P" : "");
      std::uint64_t const n = h & 0xffff;
      if (n == 0) break;
      off += 8 + ((n + 7) & ~std::uint64_t{7});
    }
    std::fprintf(stderr, "\n");
  }

  // ---- writer ----------------------------------------------------------------------
  void RunWriter() {
    auto const spec = cb::Spec::Make(config_.ring, config_.capacity);
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    auto const no_split = [] {};
    while (!Stopping()) {
      Enter(kWriterOpen);
      bool const existed = SharedMemory::Exists(config_.ring);
      std::optional<cb::Writer> holder;  // destroyed (timed) at the end of the round
      cb::Writer& w = Timed(kOpWriterOpen, [&]() -> cb::Writer& {
        try {
          return holder.emplace(spec);
        } catch (std::invalid_argument const&) {
          DumpRing();
          throw;
        }
      });
      slot_.writer_opens.fetch_add(1, std::memory_order_relaxed);
      if (w.TookOver()) slot_.took_over.fetch_add(1, std::memory_order_relaxed);
      if (!existed) slot_.ring_created.fetch_add(1, std::memory_order_relaxed);
      if (w.MaxMessageSize() != config_.max_message) Fail("writer: unexpected MaxMessageSize");
      slot_.ready.store(1, std::memory_order_release);
      std::uint64_t const budget = Budget();
      for (std::uint64_t k = 0; k < budget && !Stopping(); ++k) {
        Enter(kWriterIdle);
        std::uint64_t const seq = w.NextSequence();
        std::size_t const n = SizeOf(config_.seed, seq, config_.max_message);
        StoreMax(slot_.writer_high, seq + 1);  // before it can be committed
        if (Random(2) == 0) {
          Fill(config_.seed, seq, std::span(buf.data(), n), no_split);
          Enter(kWriting);
          w.Write(std::span<std::byte const>(buf.data(), n));
        } else {
          auto claimed = w.Claim(n);
          Enter(kClaimed);
          std::uint64_t const dawdle = Random(8) == 0 ? Random(300) : 0;
          Fill(config_.seed, seq, claimed, [&] { Dawdle(dawdle); });
          Enter(kCommitting);
          w.Commit(n);
        }
        slot_.messages_written.fetch_add(1, std::memory_order_relaxed);
        Enter(kWriterIdle);
        if (Random(32) == 0) {
          // A gap record (Writer::Skip): readers count it as a lap of
          // `count`, so their accounting (delivered + lost) must still close.
          std::uint64_t const count = 1 + Random(100);
          StoreMax(slot_.writer_high, w.NextSequence() + count);  // before it can be committed
          Enter(kWriting);
          w.Skip(count);
          slot_.gaps_written.fetch_add(1, std::memory_order_relaxed);
          Enter(kWriterIdle);
        }
        if ((k & 15) == 0) std::this_thread::sleep_for(std::chrono::microseconds(Random(200)));
      }
      if (Stopping()) {
        // End the stream with one committed record before announcing the
        // total. A writer that took over after a dead writer's claim had run
        // past every committed record leaves readers nothing intact to
        // resynchronise to: they read kEmpty, and learn their exact loss from
        // the next commit (Reader::Lapped). Without this record a run that
        // stops right after such a take-over would leave them waiting.
        std::uint64_t const seq = w.NextSequence();
        std::size_t const n = SizeOf(config_.seed, seq, config_.max_message);
        StoreMax(slot_.writer_high, seq + 1);
        Fill(config_.seed, seq, std::span(buf.data(), n), no_split);
        Enter(kWriting);
        w.Write(std::span<std::byte const>(buf.data(), n));
        slot_.messages_written.fetch_add(1, std::memory_order_relaxed);
        board_.final_total.store(w.NextSequence() + 1, std::memory_order_release);
      }
      Enter(kWriterClose);
      Timed(kOpWriterClose, [&] { holder.reset(); });  // w is gone from here on
    }
  }

  // ---- readers ---------------------------------------------------------------------
  void Publish(Counts const& c) { torture::Publish(slot_, c); }

  void RunReader() {
    auto const spec = cb::Spec::Make(config_.ring, 0);
    std::vector<std::byte> buf(cb::kMaxMessageSize);
    Counts c;
    {  // continue the totals of the previous processes in this slot
      Counts const last = Snapshot(slot_);
      c.closed_readers = last.closed_readers;
      c.closed_delivered = last.closed_delivered;
      c.closed_lost = last.closed_lost;
    }
    std::uint64_t objects = 0;
    while (!Stopping()) {
      Enter(kReaderOpen);
      auto const start = static_cast<cb::StartAt>(Random(3));
      std::optional<cb::Reader> holder;  // destroyed (timed) at the end of the round
      cb::Reader* opened = nullptr;
      try {
        opened = &Timed(kOpReaderOpen,
                        [&]() -> cb::Reader& { return holder.emplace(spec, cb::ReaderOptions{.start = start}); });
      } catch (std::system_error const& e) {
        if (e.code().value() != ENOENT) throw;
        // The writer is dead and the last reader left, so the ring is gone
        // until the writer's restart creates it again.
        Enter(kReaderWait);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      cb::Reader& r = *opened;
      c.incarnation = ++objects;
      c.start = c.next = r.NextSequence();
      c.delivered = c.lost = c.lib_delivered = c.lib_lost = 0;
      Publish(c);
      slot_.ready.store(1, std::memory_order_release);
      std::uint64_t const budget = Budget();
      bool first = true;
      for (std::uint64_t k = 0;; ++k) {
        if (Stopping()) {
          std::uint64_t const total = board_.final_total.load(std::memory_order_acquire);
          if (total != 0 && c.next >= total - 1) {
            if (c.next != total - 1) {
              Fail("reader: expects sequence " + std::to_string(c.next) + " but only " + std::to_string(total - 1) +
                   " were written");
            }
            break;
          }
        } else if (k >= budget) {
          break;
        }
        Enter(kReading);
        int const n = r.Read(buf);
        if (n > 0) {
          Enter(kChecking);
          std::uint64_t const seq = r.NextSequence() - 1;
          if (first && seq != c.start && c.start == 0) {
            // Reader::Start's documented fallback (no intact record to start
            // from): NextSequence() is 0 until the first record tells it.
            slot_.unsynced_starts.fetch_add(1, std::memory_order_relaxed);
            c.start = c.next = seq;
          }
          if (seq != c.next) {
            Fail("reader: delivered sequence " + std::to_string(seq) + " where start " + std::to_string(c.start) +
                 " + delivered " + std::to_string(c.delivered) + " + lost " + std::to_string(c.lost) + " = " +
                 std::to_string(c.next) + " was due");
          }
          if (char const* why =
                  Check(config_.seed, seq, std::span(buf.data(), static_cast<std::size_t>(n)), config_.max_message)) {
            Fail("reader: message " + std::to_string(seq) + " (" + std::to_string(n) + " bytes): " + why);
          }
          ++c.delivered;
          c.next = seq + 1;
        } else if (n == cb::kLapped) {
          slot_.laps.fetch_add(1, std::memory_order_relaxed);
          std::uint64_t const loss = r.LastLoss();
          if (first && loss == 0 && r.NextSequence() != c.start && c.start == 0) {
            // The same fallback, resynchronised by its first lap.
            slot_.unsynced_starts.fetch_add(1, std::memory_order_relaxed);
            c.start = c.next = r.NextSequence();
          } else {
            c.lost += loss;
            c.next += loss;
            if (r.NextSequence() != c.next) {
              Fail("reader: after a lap of " + std::to_string(loss) + " the reader expects " +
                   std::to_string(r.NextSequence()) + ", own count says " + std::to_string(c.next));
            }
          }
        } else if (n == cb::kEmpty) {
          Enter(kReaderWait);
          (void)r.Wait(std::chrono::milliseconds(2));
          continue;  // nothing changed
        } else {
          cb::IWrapper::Published const published = r.PublishedPositions();
          Fail("reader: Read returned " + std::to_string(n) + (n == cb::kCorrupt ? " (kCorrupt)" : "") +
               " at position " + std::to_string(r.Position()) + ", expecting sequence " +
               std::to_string(r.NextSequence()) + "; tail " + std::to_string(published.tail) + ", limit " +
               std::to_string(published.limit) + ", writer " +
               (r.GetWriterStatus() == cb::WriterStatus::kAlive ? "alive" : "not alive"));
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        first = false;
        c.lib_delivered = r.Delivered();
        c.lib_lost = r.Lost();
        if (c.lib_delivered != c.delivered || c.lib_lost != c.lost) {
          Fail("reader: library counts delivered " + std::to_string(c.lib_delivered) + ", lost " +
               std::to_string(c.lib_lost) + "; own counts " + std::to_string(c.delivered) + ", " +
               std::to_string(c.lost));
        }
        Publish(c);
      }
      // Closed cleanly: its counts move to the slot's totals, in the same record.
      c.incarnation = 0;
      ++c.closed_readers;
      c.closed_delivered += c.delivered;
      c.closed_lost += c.lost;
      c.delivered = c.lost = c.lib_delivered = c.lib_lost = 0;
      Publish(c);
      Enter(kReaderClose);
      Timed(kOpReaderClose, [&] { holder.reset(); });  // r is gone from here on
    }
  }

  // ---- lockers: SemaphoreLock and a plain SharedMemory segment, in a loop ------
  void RunLocker() {
    while (!Stopping()) {
      if (Random(2) == 0) {
        Enter(kLockOpen);
        std::optional<SemaphoreLock> holder;  // destroyed in its own phase (kLockClose)
        SemaphoreLock& lock = holder.emplace(config_.lock);
        Enter(kLockAcquire);
        Timed(kOpLockAcquire, [&] { lock.Acquire(); });
        if (lock.Recovered()) slot_.lock_recovered.fetch_add(1, std::memory_order_relaxed);
        Enter(kLockHeld);
        slot_.ready.store(1, std::memory_order_release);
        Dawdle(Random(500));
        Enter(kLockRelease);
        lock.Release();
        Enter(kLockClose);
        holder.reset();  // lock is gone from here on
      } else {
        Enter(kShmOpen);
        std::optional<SharedMemory> holder;  // destroyed (timed) in kShmClose
        std::uint64_t const dawdle = Random(300);
        ShmOptions options;
        options.initialize = [&](std::span<std::byte> region) {
          Enter(kShmInit);
          Dawdle(dawdle);
          region[0] = std::byte{1};
          Enter(kShmOpen);
        };
        SharedMemory& shm = Timed(
            kOpShmOpen, [&]() -> SharedMemory& { return holder.emplace(config_.segment, 4096, std::move(options)); });
        Enter(kShmHeld);
        slot_.ready.store(1, std::memory_order_release);
        if (shm.Data()[0] != std::byte{1}) Fail("locker: attached to a segment whose initialize never ran");
        Dawdle(Random(1000));
        Enter(kShmClose);
        Timed(kOpShmClose, [&] { holder.reset(); });  // shm is gone from here on
      }
    }
  }

  Board& board_;
  Config const& config_;
  Slot& slot_;
  int index_;
  std::mt19937_64 rng_;
};

}  // namespace

int RunParticipant(Board& board, int slot, std::uint64_t incarnation) {
  Participant p(board, slot, incarnation);
  try {
    return p.Run();
  } catch (std::exception const& e) {
    p.Fail(std::string("exception: ") + e.what());
  }
  return 2;
}

}  // namespace circbuf::torture
