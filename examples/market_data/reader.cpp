// market_data reader: reads the Quote structs that example_market_data_writer
// publishes, checks that its own sequence numbers line up with what the ring
// reports as lost, and prints a summary once the writer has closed the ring.
//
//   example_market_data_reader [--in-place]
//
// A TypedReader<Quote>: attaching checks that the ring carries Quotes (the
// writer recorded size, alignment and type id). Two ways to read, both safe
// against a writer that laps the reader while it reads, both returning an
// Outcome that the switch below must handle in full (the compiler checks):
//   Read(q)          copies the next Quote into q (q changes only on kMessage);
//   ReadInPlace(fn)  lets fn look at the Quote where it lies in the ring; the
//                    outcome says afterwards whether it stayed intact
//                    (kMessage) or was overwritten meanwhile (kLapped: discard).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
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
    cb::TypedReader<Quote> typed(cb::Spec::Make(market_data::kRingName, 0), market_data::kQuoteTypeId,
                                 {.start = cb::StartAt::kOldest, .wait_for_buffer = std::chrono::seconds(10)});
    cb::Reader& reader = typed.Untyped();  // counters, Wait

    Quote q{};
    std::uint64_t expected = 0;  // the writer's seq we expect next
    bool first = true;
    std::uint64_t missing = 0;  // quotes skipped, by our own count
    std::int64_t spread_sum = 0;
    bool writer_gone = false;
    bool done = false;
    for (;;) {
      cb::Outcome outcome{};
      if (in_place) {
        // The reference is shared memory the writer may overwrite at any
        // moment: copy what is needed out of it, and trust the copy only if
        // the outcome is kMessage.
        outcome = typed.ReadInPlace([&](Quote const& in_ring) { q = in_ring; });
      } else {
        outcome = typed.Read(q);
      }

      switch (outcome) {
        case cb::Outcome::kMessage:
          if (!first) missing += q.seq - expected;
          first = false;
          expected = q.seq + 1;
          spread_sum += q.ask - q.bid;
          break;
        case cb::Outcome::kLapped:
          // The writer overwrote quotes this reader had not read yet. The
          // reader has resynchronised; exactly LastLoss() quotes were
          // skipped (and added to Lost()).
          std::printf("reader: lapped, %llu quotes lost\n", static_cast<unsigned long long>(reader.LastLoss()));
          break;
        case cb::Outcome::kEmpty: {
          // Caught up. Empty again after the writer closed the ring (or
          // died): everything it published has been read.
          if (writer_gone) {
            done = true;
            break;
          }
          // Sleep until the next quote instead of spinning; Wait also says
          // when the writer has gone (see examples/blocking_reader).
          cb::WaitResult const why = reader.Wait(std::chrono::milliseconds(100));
          writer_gone = why == cb::WaitResult::kClosed || why == cb::WaitResult::kDead;
          break;
        }
        case cb::Outcome::kBufferTooSmall:  // cannot happen for a typed ring: a message is one Quote
        case cb::Outcome::kCorrupt:
          std::fprintf(stderr, "reader: the ring is corrupt (or its messages are not Quotes)\n");
          return 1;
      }
      if (done) break;
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
