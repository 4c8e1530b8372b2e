// market_data writer: publishes fixed-size Quote structs into the typed ring
// "/example-quotes" (TypedWriter<Quote>: the ring records the type, so a
// reader of another type is refused) with the zero-copy write path:
// ClaimScoped() hands out the bytes of the next record inside the ring, the
// Quote is constructed right there, and Commit() publishes it (a claim left
// without Commit aborts: nothing half-written is ever visible). No copy, no
// allocation, never waits for a reader.
//
//   example_market_data_writer [count] [rate per second]   (default 1000000, 100000)
//
// Run one or more example_market_data_reader processes beside it, before or
// after starting it. The ring is removed when the last process detaches.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <thread>

#include "quote.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using market_data::Quote;

// A Quote may live in shared memory: trivially copyable, standard layout, no
// pointers. A std::string member would fail to compile here.
static_assert(circbuf::Storable<Quote>);

int main(int argc, char** argv) {
  std::uint64_t const count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
  double const rate = argc > 2 ? std::strtod(argv[2], nullptr) : 100'000;
  try {
    // 1 MiB of record space: a Quote record takes 8 + 48 bytes, so the ring
    // holds the last ~18700 quotes; a reader with up to 16383 unread loses
    // none (docs/sizing.md), one further behind may be lapped and is told
    // exactly how many it missed.
    cb::TypedWriter<Quote> typed(cb::Spec::Make(market_data::kRingName, 1 << 20), market_data::kQuoteTypeId);
    cb::Writer& writer = typed.Untyped();
    std::printf("writer: ring %s, %llu bytes, publishing %llu quotes at %.0f/s\n", market_data::kRingName,
                static_cast<unsigned long long>(writer.Capacity()), static_cast<unsigned long long>(count), rate);

    auto const period = std::chrono::duration<double>(1.0 / rate);
    auto next = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
      // Zero-copy write: the span is the payload of the next record, in the
      // ring itself (8-byte aligned, which is enough for Quote).
      cb::Writer::ScopedClaim slot = writer.ClaimScoped(sizeof(Quote));
      static_assert(alignof(Quote) <= 8);
      // Start the lifetime of a Quote in those bytes and fill it in place.
      Quote* q = std::construct_at(reinterpret_cast<Quote*>(slot.Bytes().data()));
      std::strncpy(q->symbol, i % 2 == 0 ? "AAPL" : "MSFT", sizeof q->symbol);
      q->bid = 1'890'000 + static_cast<std::int64_t>(i % 100);
      q->ask = q->bid + 100;
      q->bid_size = 100 + static_cast<std::uint32_t>(i % 7) * 100;
      q->ask_size = 200;
      q->seq = i;
      q->timestamp = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count());
      // Publish: readers see the whole Quote or nothing.
      slot.Commit();

      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
      std::this_thread::sleep_until(next);  // pace the stream (a real feed is paced by the market)
    }
    std::printf("writer: done, %llu quotes\n", static_cast<unsigned long long>(writer.NextSequence()));
    // ~Writer marks the ring closed: readers see WriterStatus::kClosed.
  } catch (std::exception const& e) {
    std::fprintf(stderr, "writer: %s\n", e.what());
    return 1;
  }
}
