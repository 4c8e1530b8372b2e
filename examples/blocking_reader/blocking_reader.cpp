// blocking_reader: a reader that sleeps in Reader::Wait(timeout) while the
// ring is empty instead of spinning on Read, so an idle reader costs no CPU.
// The writer pays nothing for this unless a reader is actually asleep.
//
//   example_blocking_reader [ring name] [idle seconds before giving up]
//     (default: /example-quotes 10; any circbuf ring works, e.g. one made by
//      example_market_data_writer or by `circbuf pub`)
//
// What it handles:
//   * the ring does not exist yet: waits up to 30 s for it to appear;
//   * timeouts: Wait returns false when nothing arrived; every timeout it
//     asks whether the writer is still there (WriterStatus);
//   * the writer going away: kClosed (it closed cleanly) ends the loop once
//     everything is read; kDead (it died) keeps waiting, since a new writer
//     may take the ring over and continue the stream;
//   * a message larger than the buffer: grows the buffer (kBufferTooSmall);
//   * being lapped: reports exactly how many messages were lost.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <vector>

import circbuf;

namespace cb = circbuf::CircularBuffer;
using namespace std::chrono_literals;

namespace {

char const* Describe(cb::WriterStatus status) {
  switch (status) {
    case cb::WriterStatus::kNone: return "no writer yet";
    case cb::WriterStatus::kAlive: return "writer alive";
    case cb::WriterStatus::kClosed: return "writer closed the ring";
    case cb::WriterStatus::kDead: return "writer died (a new one may take over)";
  }
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  std::string const name = argc > 1 ? argv[1] : "/example-quotes";
  int const idle_limit_s = argc > 2 ? std::atoi(argv[2]) : 10;
  try {
    cb::Reader reader(cb::Spec::Make(name, 0), {.start = cb::StartAt::kNext, .wait_for_buffer = 30s});
    std::printf("attached to %s (%llu bytes, %s)\n", name.c_str(), static_cast<unsigned long long>(reader.Capacity()),
                Describe(reader.GetWriterStatus()));

    std::vector<std::byte> buffer(256);  // grows to the largest message seen
    std::uint64_t bytes = 0;
    int idle_s = 0;
    bool writer_closed = false;
    for (;;) {
      int const n = reader.Read(buffer);
      if (n > 0) {
        bytes += static_cast<std::uint64_t>(n);
        idle_s = 0;
        continue;
      }
      if (n == cb::kBufferTooSmall) {
        buffer.resize(reader.PendingSize());  // the message stays unread until then
        continue;
      }
      if (n == cb::kLapped) {
        std::printf("lapped: %llu messages lost\n", static_cast<unsigned long long>(reader.LastLoss()));
        continue;
      }
      if (n == cb::kCorrupt) {
        std::fprintf(stderr, "the ring %s is corrupt\n", name.c_str());
        return 1;
      }

      // kEmpty. Empty again after the writer closed the ring: all read.
      if (writer_closed) {
        std::printf("%s: done\n", Describe(cb::WriterStatus::kClosed));
        break;
      }

      // Sleep until the writer publishes something, at most 1 s; Wait says
      // why it returned.
      switch (reader.Wait(1s)) {
        case cb::WaitResult::kReady: continue;  // something to Read (a message or a lap)
        case cb::WaitResult::kClosed:
          writer_closed = true;  // one more Read: a last message may have come just before the close
          continue;
        case cb::WaitResult::kDead: std::printf("the writer died; waiting for a new one\n"); break;
        case cb::WaitResult::kTakenOver: std::printf("a new writer took over\n"); continue;
        case cb::WaitResult::kTruncated: continue;  // Read reports it (kCorrupt)
        case cb::WaitResult::kStopped: return 0;    // nobody calls RequestStop here
        case cb::WaitResult::kTimeout: break;
      }

      // A second without messages.
      ++idle_s;
      std::printf("idle %d s (%s)\n", idle_s, Describe(reader.GetWriterStatus()));
      if (idle_s >= idle_limit_s) {
        std::printf("giving up after %d idle seconds\n", idle_s);
        break;
      }
    }
    std::printf("read %llu messages (%llu bytes), lost %llu\n", static_cast<unsigned long long>(reader.Delivered()),
                static_cast<unsigned long long>(bytes), static_cast<unsigned long long>(reader.Lost()));
  } catch (std::exception const& e) {
    // e.g. std::system_error ENOENT: no ring appeared within 30 s.
    std::fprintf(stderr, "blocking_reader: %s\n", e.what());
    return 1;
  }
}
