// Paced throughput: the rate at which messages are delivered with nothing
// lost, the same pacing for every transport so that their ratio is fair.
//   The reader publishes how many messages it has consumed in an
//   acknowledgement word on its own cache lines, every `ack_every` messages
//   and whenever it finds nothing to read (if the count moved), so that the
//   acknowledgement does not bounce between the cores per message.
//   The writer never runs more than half the ring's capacity ahead of the
//   last acknowledgement: before each message it compares with the last
//   value it loaded and, only when out of room, spins (pause, acquire load)
//   until the reader has moved on.
//   In bytes, a message takes FloorRecordBytes(payload) in either ring (the
//   same record size as circbuf's). A circbuf writer half a ring ahead of its
//   reader never laps it (a record is overwritten only once the writer's
//   frontier is a capacity past it: modules/ring/layout.cppm, "limit"), so a
//   paced circbuf run loses nothing, and the run fails if it does.
// The rate is what the reader received over the time from the first message
// to the reader's acknowledgement of the last one (the stop message).
#pragma once

#include <x86intrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "support/copy_floor.hpp"
#include "support/harness.hpp"

namespace circbuf::bench {

struct PacedShared {
  alignas(128) std::atomic<std::uint64_t> acked{0};  // reader: messages consumed (the stop message counts)
  alignas(128) std::atomic<std::uint64_t> received{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> lost{0};
  std::atomic<std::uint64_t> bad{0};
  std::atomic<int> ready{0};
  std::atomic<int> stop{0};  // the writer gave up waiting for the reader (1)
};

struct Pacing {
  std::uint64_t window;     // messages the writer may be ahead of the last acknowledgement
  std::uint64_t ack_every;  // messages between the reader's acknowledgements
};

// Half the capacity ahead at most; an acknowledgement every eighth of the
// capacity, at most every 64 messages.
inline Pacing PacingFor(std::size_t capacity, std::size_t payload) {
  std::size_t const record = FloorRecordBytes(payload);
  return {std::max<std::uint64_t>(1, capacity / 2 / record), std::clamp<std::uint64_t>(capacity / 8 / record, 1, 64)};
}

// make_sender() and make_receiver() return a std::unique_ptr to a final
// Endpoint class (direct calls in the loops below); make_receiver is called
// in the reader process. cleanup() runs after the reader has stopped.
template <class MakeSender, class MakeReceiver, class Cleanup>
void RunPaced(benchmark::State& state, MakeSender make_sender, MakeReceiver make_receiver, Cleanup cleanup,
              std::size_t capacity, std::size_t payload, std::chrono::milliseconds duration) {
  Pacing const pacing = PacingFor(capacity, payload);
  std::uint64_t received_total = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t lost_total = 0;
  std::uint64_t sent_total = 0;
  std::uint64_t writer_waits = 0;
  double seconds_total = 0;
  for (auto _ : state) {
    auto* r = MapShared<PacedShared>();
    Process receiver(g_cpus.echo, [&] {
      auto ep = make_receiver();
      std::vector<std::byte> buf(65536);
      r->ready.store(1);
      std::uint64_t consumed = 0;
      std::uint64_t acked = 0;
      std::uint64_t n_bytes = 0;
      std::uint64_t wrong_size = 0;
      for (;;) {
        std::size_t const n = ep->Receive(buf);
        if (n == 0) {
          if (consumed != acked) {
            acked = consumed;
            r->acked.store(acked, std::memory_order_release);  // pairs with the writer's acquire
          } else if (r->stop.load(std::memory_order_relaxed) != 0) {
            break;
          }
          continue;
        }
        if (n == 1) break;
        wrong_size += n != payload ? 1 : 0;
        ++consumed;
        n_bytes += n;
        if (consumed - acked >= pacing.ack_every) {
          acked = consumed;
          r->acked.store(acked, std::memory_order_release);
        }
      }
      r->received = consumed;
      r->bytes = n_bytes;
      r->bad = wrong_size;
      r->lost = ep->Lost();
      r->acked.store(consumed + 1, std::memory_order_release);  // the stop message: the run is over
      return 0;
    });
    Pin(g_cpus.main);
    auto ep = make_sender();
    while (r->ready.load() == 0) std::this_thread::yield();
    std::vector<std::byte> out(payload, std::byte{0x5a});
    std::uint64_t sent = 0;
    std::uint64_t acked = 0;
    std::uint64_t waits = 0;
    auto admit = [&] {  // room for one more message
      if (sent + 1 <= acked + pacing.window) return;
      ++waits;
      for (;;) {
        acked = r->acked.load(std::memory_order_acquire);  // pairs with the reader's release
        if (sent + 1 <= acked + pacing.window) return;
        _mm_pause();
      }
    };
    auto const start = std::chrono::steady_clock::now();
    auto const end = start + duration;
    do {
      for (int i = 0; i < 64; ++i) {
        admit();
        ep->Send(out);
        ++sent;
      }
    } while (std::chrono::steady_clock::now() < end);
    admit();
    std::byte const stop{0};
    ep->Send(std::span(&stop, 1));
    // The reader acknowledges sent + 1 when it took the stop message, or
    // anything else when it stopped otherwise (a lost stop message).
    auto const give_up = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    bool confirmed = false;
    for (std::uint64_t spins = 0;; ++spins) {
      if (r->acked.load(std::memory_order_acquire) == sent + 1) {
        confirmed = true;
        break;
      }
      if (spins % 1024 == 0 && std::chrono::steady_clock::now() > give_up) break;
      _mm_pause();
    }
    auto const elapsed = std::chrono::steady_clock::now() - start;
    r->stop.store(1);
    receiver.Wait();
    ep.reset();
    cleanup();
    sent_total += sent;
    received_total += r->received;
    bytes_total += r->bytes;
    lost_total += r->lost;
    writer_waits += waits;
    seconds_total += std::chrono::duration<double>(elapsed).count();
    bool const bad = r->bad.load() != 0;
    Unmap(r);
    if (!confirmed) {
      state.SkipWithError("the reader did not take the stop message within 2 s");
    } else if (bad) {
      state.SkipWithError("the reader got messages of the wrong size");
    }
  }
  if (lost_total != 0 || received_total != sent_total) {
    state.SkipWithError("a paced run lost messages: the pacing must keep the writer from lapping the reader");
  }
  state.counters["delivered_msgs_per_s"] = static_cast<double>(received_total) / seconds_total;
  state.counters["delivered_GB_per_s"] = static_cast<double>(bytes_total) / seconds_total / 1e9;
  state.counters["lost"] = static_cast<double>(lost_total + (sent_total - std::min(sent_total, received_total)));
  state.counters["window_msgs"] = static_cast<double>(pacing.window);
  state.counters["ack_every"] = static_cast<double>(pacing.ack_every);
  state.counters["writer_waits_per_s"] = static_cast<double>(writer_waits) / seconds_total;
}

}  // namespace circbuf::bench
