// circbuf bridge in: a JetStream consumer that is the writer of a local ring
// (docs/bridge.md). Readers of the ring use circbuf as usual, and their
// Lost() is exact end to end:
//   - The ring's sequence numbers are the upstream ring's: a message with
//     upstream sequence s, when the ring's next sequence is n < s, is
//     written after Writer::Skip(s - n); a gap message (Circbuf-Gap: N)
//     becomes Skip(N); s < n is a second copy and is dropped.
//   - Pull subscription, --batch messages per request, no acknowledgements
//     (an ephemeral consumer that this process re-creates from the next
//     stream sequence when it is lost: a reconnect, a cluster node gone).
//   - When the ring sequence jumps and the stream sequence jumps with it
//     (the consumer fell behind or was re-created), the missing stream
//     sequences are fetched by number (direct get, next message of the
//     subject) while the stream still holds them: the gap fill. What it
//     cannot recover is what Skip counts.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nats/nats.h>

#include "bridge/bridge.hpp"
#include "bridge/log.hpp"
#include "bridge/nats.hpp"
#include "cli.hpp"

import circbuf;

#include "ring_info.hpp"  // after the import: it names module types (docs/toolchain-notes.md)

namespace cb = circbuf::CircularBuffer;

namespace circbuf::tool::bridge {

namespace in_impl {

struct Counters {
  std::uint64_t written = 0;
  std::uint64_t bytes = 0;
  std::uint64_t duplicates = 0;     // second copies dropped
  std::uint64_t gaps = 0;           // Skip calls
  std::uint64_t lost_upstream = 0;  // announced by gap messages (the source ring lapped its bridge)
  std::uint64_t lost_on_way = 0;    // sequence holes no gap message or gap fill explained
  std::uint64_t aligned = 0;        // skipped before the first message, to take the upstream sequence
  std::uint64_t filled = 0;         // messages recovered by the gap fill
  std::uint64_t too_large = 0;      // larger than this ring's MaxMessageSize: skipped, counted as lost
  std::uint64_t foreign = 0;        // messages without Circbuf-Seq: dropped
  std::uint64_t pending = 0;        // the consumer's count of stream messages not yet delivered
};

class Sink {
 public:
  Sink(Connection& connection, InOptions const& options, cb::Writer& writer, bool allow_direct)
      : connection_(connection), options_(options), writer_(writer), allow_direct_(allow_direct) {}

  // A message from the consumer (or the gap fill, `filling`), at stream sequence `stream_seq`.
  void Take(natsMsg* msg, std::uint64_t stream_seq, bool filling) {
    if (last_stream_ && stream_seq <= *last_stream_) {  // redelivered
      ++counters_.duplicates;
      return;
    }
    std::optional<std::uint64_t> const previous = last_stream_;
    auto const seq = HeaderNumber(msg, kSeqHeader);
    if (!seq) {
      last_stream_ = stream_seq;
      if (counters_.foreign++ == 0) {
        Log().warn("stream sequence {} has no {} header (not from circbuf bridge out): dropped", stream_seq,
                   kSeqHeader);
      }
      return;
    }
    auto const gap = HeaderNumber(msg, kGapHeader);
    Entry entry{*seq, gap ? *gap : 1, gap.has_value(), {}};
    bool const jumped = previous && stream_seq > *previous + 1;
    if (entry.first > writer_.NextSequence() && jumped && !filling) {
      Fill(*previous + 1, stream_seq);  // the stream may still hold what the consumer skipped
    }
    last_stream_ = stream_seq;
    if (entry.count == 0) return;
    if (entry.first + entry.count <= writer_.NextSequence() || held_.contains(entry.first)) {
      ++counters_.duplicates;  // the ring has it already, or it waits here already
      return;
    }
    if (!entry.gap) {
      auto const* data = reinterpret_cast<std::byte const*>(natsMsg_GetData(msg));
      entry.payload.assign(data, data + natsMsg_GetDataLength(msg));
    }
    held_bytes_ += entry.payload.size();
    held_.emplace(entry.first, std::move(entry));
    Drain();
    if (held_.empty()) return;
    // A hole before what is held. Before the first message: the upstream
    // sequence to take. After a jump in the stream that the gap fill could
    // not close: gone from the stream. Otherwise the missing messages may
    // still come (bridge out sends a publish again when its acknowledgement
    // was lost, so the stream can hold them out of order): wait for them up
    // to --reorder-wait (Expire).
    if (!started_) {
      Hole(true);
    } else if (jumped && !filling) {
      Hole(false);
    } else if (!hole_since_) {
      hole_since_ = std::chrono::steady_clock::now();
    }
  }

  // Gives up on a hole that waited --reorder-wait (or everything, `all`: at the end).
  void Expire(bool all) {
    while (!held_.empty() && (all || held_.size() > kMaxHeld || held_bytes_ > kMaxHeldBytes ||
                              (hole_since_ && std::chrono::steady_clock::now() - *hole_since_ >=
                                                  std::chrono::milliseconds(Millis(options_.reorder_wait))))) {
      Hole(false);
    }
  }

  [[nodiscard]] std::optional<std::uint64_t> LastStream() const noexcept { return last_stream_; }
  [[nodiscard]] Counters& Count() noexcept { return counters_; }
  [[nodiscard]] std::size_t Held() const noexcept { return held_.size(); }

 private:
  struct Entry {
    std::uint64_t first;  // ring sequence (a gap: its first)
    std::uint64_t count;  // 1, or the gap's length
    bool gap;
    std::vector<std::byte> payload;
  };
  static constexpr std::size_t kMaxHeld = 1 << 20;
  static constexpr std::size_t kMaxHeldBytes = std::size_t{256} << 20;

  // Skips the ring to the first held entry: those sequences are lost on the way
  // (`align`: the first message, which only takes the upstream sequence).
  void Hole(bool align) {
    std::uint64_t const n = writer_.NextSequence();
    std::uint64_t const first = held_.begin()->first;
    if (first > n) {
      writer_.Skip(first - n);
      ++counters_.gaps;
      (align ? counters_.aligned : counters_.lost_on_way) += first - n;
      if (!align) {
        Log().warn("ring sequences {} .. {} did not arrive: {} messages lost on the way", n, first - 1, first - n);
      }
    }
    Drain();
  }

  // Applies every held entry that is next in the ring, in order.
  void Drain() {
    while (!held_.empty() && held_.begin()->first <= writer_.NextSequence()) {
      auto node = held_.extract(held_.begin());
      Entry const& e = node.mapped();
      held_bytes_ -= e.payload.size();
      Apply(e);
    }
    if (held_.empty()) {
      hole_since_.reset();
    } else {
      hole_since_ = std::chrono::steady_clock::now();  // a new hole: its own wait
    }
  }

  void Apply(Entry const& e) {
    std::uint64_t const n = writer_.NextSequence();
    started_ = true;
    if (e.first + e.count <= n) {
      ++counters_.duplicates;
      return;
    }
    if (e.gap) {  // the source ring lapped its bridge: announced, exact
      std::uint64_t const announced = e.first + e.count - std::max(e.first, n);
      writer_.Skip(announced);
      ++counters_.gaps;
      counters_.lost_upstream += announced;
      return;
    }
    if (e.payload.empty() || e.payload.size() > writer_.MaxMessageSize()) {
      ++counters_.too_large;
      Log().warn("ring sequence {}: {} bytes do not fit this ring (1 .. {} bytes): skipped, counted as lost", e.first,
                 e.payload.size(), writer_.MaxMessageSize());
      writer_.Skip(1);
      return;
    }
    writer_.Write(e.payload);
    ++counters_.written;
    counters_.bytes += e.payload.size();
  }

  // Stream sequences [from, to): every message of our subject the stream still has, in order.
  void Fill(std::uint64_t from, std::uint64_t to) {
    std::uint64_t const before = counters_.filled;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 2000;
    std::uint64_t at = from;
    while (at < to) {
      natsMsg* raw = nullptr;
      natsStatus s = NATS_OK;
      if (allow_direct_) {
        jsDirectGetMsgOptions d;
        jsDirectGetMsgOptions_Init(&d);
        d.Sequence = at;
        d.NextBySubject = options_.stream.subject.c_str();
        s = js_DirectGetMsg(&raw, connection_.Js(), options_.stream.stream.c_str(), &o, &d);
      } else {
        s = js_GetMsg(&raw, connection_.Js(), options_.stream.stream.c_str(), at, &o, nullptr);
      }
      MsgPtr const msg(raw);
      if (s != NATS_OK) {
        if (allow_direct_ || s != NATS_NOT_FOUND) break;  // none left, or the stream cannot be asked now
        ++at;  // deleted or expired: the next one
        continue;
      }
      std::uint64_t got = natsMsg_GetSequence(raw);
      if (got == 0) got = HeaderNumber(raw, "Nats-Sequence").value_or(at);
      if (got >= to || got < at) break;
      char const* subject = natsMsg_GetSubject(raw);
      if (subject != nullptr && options_.stream.subject == subject) {
        Take(raw, got, true);
        ++counters_.filled;
      }
      at = got + 1;
    }
    if (counters_.filled != before) {
      Log().info("gap fill: {} messages recovered from stream sequences {} .. {}", counters_.filled - before, from,
                 to - 1);
    }
  }

  Connection& connection_;
  InOptions const& options_;
  cb::Writer& writer_;
  bool allow_direct_;
  std::optional<std::uint64_t> last_stream_;  // the stream sequence of the last message taken
  Counters counters_;
  bool started_ = false;
  std::map<std::uint64_t, Entry> held_;  // arrived ahead of a hole, by ring sequence
  std::size_t held_bytes_ = 0;
  std::optional<std::chrono::steady_clock::time_point> hole_since_;
};

struct SubDeleter {
  void operator()(natsSubscription* s) const noexcept {
    (void)natsSubscription_Unsubscribe(s);
    natsSubscription_Destroy(s);
  }
};
using SubPtr = std::unique_ptr<natsSubscription, SubDeleter>;

// An ephemeral pull consumer from `start_seq` on (0: by --from).
SubPtr Subscribe(Connection& connection, InOptions const& options, std::uint64_t start_seq) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = options.stream.stream.c_str();
  so.Config.AckPolicy = js_AckNone;
  so.Config.InactiveThreshold = std::int64_t{60} * 1000 * 1000 * 1000;  // ns: the server drops it after a minute away
  so.Config.MemoryStorage = true;
  so.Config.Replicas = 1;
  if (start_seq != 0) {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = start_seq;
  } else if (options.from == "oldest") {
    so.Config.DeliverPolicy = js_DeliverAll;
  } else if (options.from == "latest") {
    so.Config.DeliverPolicy = js_DeliverLast;
  } else if (options.from == "next") {
    so.Config.DeliverPolicy = js_DeliverNew;
  } else {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = std::stoull(options.from);
  }
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = Millis(options.connect.connect_timeout);
  natsSubscription* sub = nullptr;
  auto jerr = static_cast<jsErrCode>(0);
  natsStatus const s = js_PullSubscribe(&sub, connection.Js(), options.stream.subject.c_str(), nullptr, &o, &so, &jerr);
  if (s != NATS_OK) {
    natsSubscription_Destroy(sub);
    return nullptr;
  }
  Log().debug("pull consumer on {} from {}", options.stream.subject,
              start_seq != 0 ? "stream sequence " + std::to_string(start_seq) : options.from);
  return SubPtr(sub);
}

std::string U(std::uint64_t v) { return std::to_string(v); }

}  // namespace in_impl

using namespace in_impl;

int RunIn(InOptions const& options) {
  std::string const name = CheckRingName(options.ring);
  CheckSubject(options.stream.subject);
  CheckStreamName(options.stream.stream);
  if (options.from != "oldest" && options.from != "latest" && options.from != "next") {
    bool number = !options.from.empty() && options.from.size() < 20;
    for (char const c : options.from) number = number && c >= '0' && c <= '9';
    if (!number || std::stoull(options.from) == 0) {
      throw Error(kInvalid, "--from \"" + options.from + "\": oldest, latest, next or a stream sequence (1, 2, ...)");
    }
  }
  std::uint64_t const capacity = ParseCapacity(options.capacity);
  if (SharedMemory::Exists(name)) (void)InspectRing(name);  // look before attaching (see tail.cpp)
  InstallStopHandlers();
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = Millis(options.connect.connect_timeout);
  Connection connection(options.connect, "circbuf bridge in " + name, &js_options);
  StreamState const stream = EnsureStream(connection, options.stream, options.connect.connect_timeout * 2);
  cb::Writer writer(cb::Spec::Make(name, capacity));
  Sink sink(connection, options, writer, stream.allow_direct);
  Log().info("bridge in: stream {} subject {} (from {}) -> ring {} (next sequence {})", options.stream.stream,
             options.stream.subject, options.from, name, writer.NextSequence());
  SubPtr sub = Subscribe(connection, options, 0);
  if (!sub)
    throw Error(kConflict, "cannot create a consumer on stream " + options.stream.stream + ": " + NatsError(NATS_ERR));
  std::int64_t backoff_ms = 50;
  auto last_message = std::chrono::steady_clock::now();
  auto last_probe = last_message;
  auto next_tick = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::uint64_t tick_written = 0;
  while (!StopRequested()) {
    if (!sub) {
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min<std::int64_t>(backoff_ms * 2, 2000);
      std::uint64_t const from = sink.LastStream().value_or(0) + (sink.LastStream() ? 1 : 0);
      sub = Subscribe(connection, options, from);
      if (sub)
        Log().info("consumer re-created from stream sequence {}", from == 0 ? std::string(options.from) : U(from));
    }
    if (sub) {
      natsMsgList list{nullptr, 0};
      auto jerr = static_cast<jsErrCode>(0);
      natsStatus const s = natsSubscription_Fetch(&list, sub.get(), options.batch, 500, &jerr);
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = list.Msgs[i];
        jsMsgMetaData* meta = nullptr;
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK || meta == nullptr) {
          Log().warn("a fetched message without JetStream metadata: dropped ({})", NatsError(NATS_ERR));
          continue;
        }
        std::uint64_t const stream_seq = meta->Sequence.Stream;
        sink.Count().pending = meta->NumPending;
        jsMsgMetaData_Destroy(meta);
        sink.Take(m, stream_seq, false);
      }
      natsMsgList_Destroy(&list);
      sink.Expire(false);
      if (s == NATS_OK) {
        backoff_ms = 50;
        last_message = std::chrono::steady_clock::now();
      } else if (s == NATS_TIMEOUT) {
        // Nothing for a while: is the consumer still there? One that lived
        // on a server that died answers nothing at all, so a fetch only
        // times out: ask for its info (a request to the whole cluster).
        auto const now = std::chrono::steady_clock::now();
        if (now - last_message >= std::chrono::seconds(2) && now - last_probe >= std::chrono::seconds(2)) {
          last_probe = now;
          jsConsumerInfo* ci = nullptr;
          jsOptions o;
          jsOptions_Init(&o);
          o.Wait = 1000;
          auto cerr = static_cast<jsErrCode>(0);
          natsStatus const cs = natsSubscription_GetConsumerInfo(&ci, sub.get(), &o, &cerr);
          if (cs == NATS_OK && ci != nullptr) sink.Count().pending = ci->NumPending;
          jsConsumerInfo_Destroy(ci);
          if (cs != NATS_OK && connection.Connected()) {
            Log().warn("the consumer does not answer ({}); re-creating it", NatsError(cs));
            sub.reset();
          }
        }
      } else {
        // The consumer is gone (its server died, it was idle too long) or
        // the connection is away: a new one from the next sequence, with backoff.
        Log().warn("fetch: {}{}; re-creating the consumer", NatsError(s),
                   jerr != 0 ? " [JetStream error " + std::to_string(jerr) + "]" : "");
        sub.reset();
      }
    }
    auto const now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      Counters const& c = sink.Count();
      if (options.progress) {
        std::fprintf(stderr,
                     "circbuf bridge in: %s msg/s, written %llu, lag %llu, gaps filled %llu, lost %llu (upstream "
                     "%llu, on the way %llu), duplicates %llu\n",
                     HumanCount(static_cast<double>(c.written - tick_written)).c_str(),
                     static_cast<unsigned long long>(c.written), static_cast<unsigned long long>(c.pending),
                     static_cast<unsigned long long>(c.filled),
                     static_cast<unsigned long long>(c.lost_upstream) + c.lost_on_way + c.too_large,
                     static_cast<unsigned long long>(c.lost_upstream),
                     static_cast<unsigned long long>(c.lost_on_way) + c.too_large,
                     static_cast<unsigned long long>(c.duplicates));
      }
      tick_written = c.written;
      next_tick = now + std::chrono::seconds(1);
    }
  }
  sink.Expire(true);  // what waited behind a hole goes into the ring now
  Counters const& c = sink.Count();
  std::fprintf(stderr,
               "circbuf bridge in: wrote %s messages (%s bytes), %s gaps (%s messages lost: %s upstream, %s on the "
               "way), %s skipped at the start to take the upstream sequence, %s recovered by gap fill, %s duplicates "
               "dropped; next ring sequence %s; stopped by a signal\n",
               U(c.written).c_str(), U(c.bytes).c_str(), U(c.gaps).c_str(),
               U(c.lost_upstream + c.lost_on_way + c.too_large).c_str(), U(c.lost_upstream).c_str(),
               U(c.lost_on_way + c.too_large).c_str(), U(c.aligned).c_str(), U(c.filled).c_str(),
               U(c.duplicates).c_str(), U(writer.NextSequence()).c_str());
  return kOk;
}

}  // namespace circbuf::tool::bridge
