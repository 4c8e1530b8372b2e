// market_data reader: reads the Quote structs that example_market_data_writer
// publishes, checks that its own sequence numbers line up with what the ring
// reports as lost, and prints a summary once the writer has closed the ring.
//
//   example_market_data_reader [--in-place]
//
// Two ways to read a fixed struct, both safe against a writer that laps the
// reader while it reads:
//   Read(bytes of a local Quote)  copies the message into the struct;
//   ReadInPlace(fn)               lets fn look at the message where it lies in
//                                 the ring; the return value says afterwards
//                                 whether it stayed intact (> 0) or was
//                                 overwritten meanwhile (kLapped: discard).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <span>
#include <string_view>

#include "quote.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using market_data::Quote;

int main(int argc, char** argv) {
  bool const in_place = argc > 1 && std::string_view(argv[1]) == "--in-place";
  try {
    // Capacity 0: take whatever the writer created. Wait up to 10 s for the
    // ring to appear, then start at the oldest quote still in it.
    cb::Reader reader(cb::Spec::Make(market_data::kRingName, 0),
                      {.start = cb::StartAt::kOldest, .wait_for_buffer = std::chrono::seconds(10)});

    Quote q{};
    std::uint64_t expected = 0;  // the writer's seq we expect next
    bool first = true;
    std::uint64_t missing = 0;  // quotes skipped, by our own count
    std::int64_t spread_sum = 0;
    bool writer_gone = false;
    for (;;) {
      int n = 0;  // what the read below returns
      if (in_place) {
        // The view is shared memory the writer may overwrite at any moment:
        // copy what is needed out of it, and trust the copy only if the call
        // returns > 0.
        n = reader.ReadInPlace([&](std::span<std::byte const> message) {
          if (message.size() == sizeof(Quote)) std::memcpy(&q, message.data(), sizeof(Quote));
        });
      } else {
        n = reader.Read(std::as_writable_bytes(std::span(&q, 1)));
      }

      if (n == static_cast<int>(sizeof(Quote))) {
        if (!first) missing += q.seq - expected;
        first = false;
        expected = q.seq + 1;
        spread_sum += q.ask - q.bid;
      } else if (n > 0) {
        std::fprintf(stderr, "reader: unexpected message of %d bytes\n", n);
        return 1;
      } else if (n == cb::kLapped) {
        // The writer overwrote quotes this reader had not read yet. The
        // reader has jumped to the oldest intact one; exactly LastLoss()
        // quotes were skipped (and added to Lost()).
        std::printf("reader: lapped, %llu quotes lost\n", static_cast<unsigned long long>(reader.LastLoss()));
      } else if (n == cb::kEmpty) {
        // Caught up. Empty again after the writer closed the ring (or died):
        // everything it published has been read.
        if (writer_gone) break;
        // Sleep until the next quote instead of spinning; Wait also says
        // when the writer has gone (see examples/blocking_reader).
        cb::WaitResult const why = reader.Wait(std::chrono::milliseconds(100));
        writer_gone = why == cb::WaitResult::kClosed || why == cb::WaitResult::kDead;
      } else {  // kBufferTooSmall (not a Quote stream) or kCorrupt
        std::fprintf(stderr, "reader: Read returned %d\n", n);
        return 1;
      }
    }
    std::uint64_t const delivered = reader.Delivered();
    std::printf("reader: %llu quotes read, %llu lost, mean spread %.1f ticks, last seq %llu\n",
                static_cast<unsigned long long>(delivered), static_cast<unsigned long long>(reader.Lost()),
                delivered ? static_cast<double>(spread_sum) / static_cast<double>(delivered) : 0.0,
                static_cast<unsigned long long>(q.seq));
    // The ring's count of lost messages and the gaps in the writer's own
    // numbering must agree exactly.
    if (missing != reader.Lost()) {
      std::fprintf(stderr, "reader: the Quote numbers skip %llu, but Lost() says %llu\n",
                   static_cast<unsigned long long>(missing), static_cast<unsigned long long>(reader.Lost()));
      return 1;
    }
  } catch (std::exception const& e) {
    std::fprintf(stderr, "reader: %s\n", e.what());
    return 1;
  }
}
