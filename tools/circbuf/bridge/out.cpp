// circbuf bridge out: one more ordinary Reader of a ring that publishes
// every message to a JetStream subject (docs/bridge.md).
//   - Asynchronously: js_PublishMsgAsync with at most --max-pending
//     publishes in flight; the acknowledgements arrive on the client's
//     thread (OnAck). Never one round trip per message.
//   - Each message carries the ring's sequence number (Circbuf-Seq) and the
//     message id SUBJECT:SEQ (Nats-Msg-Id), so the stream drops a second
//     copy within its duplicate window: a publish sent again after a lost
//     acknowledgement, or a restarted bridge.
//   - A lap on the ring (the bridge fell behind by more than the ring holds)
//     becomes a gap message: no payload, Circbuf-Seq = the first sequence
//     lost, Circbuf-Gap = how many. So does any other hole in the sequence
//     (after a restart, what the ring no longer holds).
//   - A restart resumes: the stream's last message of the subject says up
//     to which ring sequence it is complete; the ring is read from its
//     oldest message and what the stream has is skipped.
//   - A publish that fails (a timeout while a server is away, no responders
//     while a cluster elects a leader) is sent again, in sequence order,
//     once every publish in flight has settled; one JetStream refuses for
//     good (a message too large for the stream) is counted as lost, and the
//     next message tells the other side through the sequence hole.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
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

namespace out_impl {

// Shared with the client's acknowledgement thread (OnAck).
struct Acks {
  std::mutex mutex;
  std::vector<natsMsg*> failed;  // owned; sent again by the main loop
  // !failed.empty(), for a look without the mutex on every message. Set
  // under the mutex after the push (release); the main loop's acquire load
  // then takes the mutex to see the list.
  std::atomic<bool> any_failed{false};
  std::string last_error;
  std::uint64_t acked = 0;
  std::uint64_t duplicates = 0;  // acknowledged as already stored (a resend, a restart)
  std::uint64_t refused = 0;     // refused for good: lost
  std::uint64_t refused_messages = 0;
};

void OnAck(jsCtx* /*js*/, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto& acks = *static_cast<Acks*>(closure);
  std::lock_guard const lock(acks.mutex);
  if (pa != nullptr) {
    ++acks.acked;
    if (pa->Duplicate) ++acks.duplicates;
    natsMsg_Destroy(msg);
    return;
  }
  natsStatus const err = pae != nullptr ? pae->Err : NATS_ERR;
  jsErrCode const code = pae != nullptr ? pae->ErrCode : static_cast<jsErrCode>(0);
  acks.last_error = std::string(natsStatus_GetText(err)) +
                    (pae != nullptr && pae->ErrText != nullptr ? std::string(": ") + pae->ErrText : "");
  // JetStream refused this message itself (too large, a sealed stream, ...):
  // sending it again cannot help.
  if (code == JSStreamMessageExceedsMaximumErr || code == JSStreamSealedErr || code == JSStreamNotFoundErr) {
    ++acks.refused;
    ++acks.refused_messages;
    natsMsg_Destroy(msg);
    return;
  }
  acks.failed.push_back(msg);  // ownership: ours now (see jsPubAckHandler)
  acks.any_failed.store(true, std::memory_order_release);
}

struct Counters {
  std::uint64_t published = 0;  // messages handed to the client (first sends)
  std::uint64_t bytes = 0;
  std::uint64_t gaps = 0;       // gap messages published
  std::uint64_t lost = 0;       // messages they announce
  std::uint64_t resent = 0;
  std::uint64_t skipped = 0;    // ring messages the stream already had (resume)
  std::uint64_t too_large = 0;  // larger than the server's max_payload: lost, announced by a gap
};

class Publisher {
 public:
  Publisher(Connection& connection, OutOptions const& options, Acks& acks)
      : connection_(connection), options_(options), acks_(acks) {
    jsPubOptions_Init(&pub_);
    pub_.MaxWait = Millis(options.ack_wait);
  }

  // The ring sequence after the stream's last message of our subject, if any.
  std::optional<std::uint64_t> ResumePoint() {
    natsMsg* last = nullptr;
    auto jerr = static_cast<jsErrCode>(0);
    natsStatus const s = js_GetLastMsg(&last, connection_.Js(), options_.stream.stream.c_str(),
                                       options_.stream.subject.c_str(), nullptr, &jerr);
    MsgPtr const owned(last);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return std::nullopt;
    if (s != NATS_OK) throw Error(kUnreachable, "looking up the stream's last message: " + NatsError(s));
    auto const seq = HeaderNumber(last, kSeqHeader);
    if (!seq) {
      throw Error(kConflict, "the last message on " + options_.stream.subject + " in stream " + options_.stream.stream +
                                 " has no " + kSeqHeader + " header: another publisher uses this subject");
    }
    auto const gap = HeaderNumber(last, kGapHeader);
    std::uint64_t const next = *seq + (gap ? *gap : 1);
    Log().info("resuming: stream {} holds {} up to ring sequence {} (stream sequence {})", options_.stream.stream,
               options_.stream.subject, next - 1, natsMsg_GetSequence(last));
    return next;
  }

  void SetNext(std::uint64_t next) { next_ = next; }

  // A message of the ring with sequence `seq`.
  void Message(std::uint64_t seq, std::span<std::byte const> payload) {
    if (next_ && seq < *next_) {  // the stream has it already (a restart)
      ++counters_.skipped;
      return;
    }
    if (next_ && seq > *next_) Gap(*next_, seq - *next_);
    natsMsg* msg = nullptr;
    if (natsMsg_Create(&msg, options_.stream.subject.c_str(), nullptr, reinterpret_cast<char const*>(payload.data()),
                       static_cast<int>(payload.size())) != NATS_OK) {
      throw Error(kSystem, "out of memory (natsMsg_Create)");
    }
    MsgPtr owned(msg);
    std::string const text = std::to_string(seq);
    (void)natsMsgHeader_Set(msg, kSeqHeader, text.c_str());
    std::string const id = options_.stream.subject + ":" + text;
    if (Send(owned, id)) {
      ++counters_.published;
      counters_.bytes += payload.size();
    } else {
      // Larger than the server takes: lost; the gap says so.
      ++counters_.too_large;
      Log().warn("ring sequence {}: {} bytes exceed the server's max_payload ({} bytes); announced as lost", seq,
                 payload.size(), natsConnection_GetMaxPayload(connection_.Nc()));
      next_ = seq;  // the next message (or gap) covers it
      Gap(seq, 1);
      return;
    }
    next_ = seq + 1;
  }

  // `count` ring messages from `first` on were lost (a lap).
  void Gap(std::uint64_t first, std::uint64_t count) {
    if (next_ && first < *next_) {  // partly published already
      std::uint64_t const overlap = std::min(count, *next_ - first);
      first += overlap;
      count -= overlap;
    }
    if (count == 0) return;
    natsMsg* msg = nullptr;
    if (natsMsg_Create(&msg, options_.stream.subject.c_str(), nullptr, nullptr, 0) != NATS_OK) {
      throw Error(kSystem, "out of memory (natsMsg_Create)");
    }
    MsgPtr owned(msg);
    std::string const text = std::to_string(first);
    std::string const n = std::to_string(count);
    (void)natsMsgHeader_Set(msg, kSeqHeader, text.c_str());
    (void)natsMsgHeader_Set(msg, kGapHeader, n.c_str());
    std::string const id = options_.stream.subject + ":" + text + "+" + n;
    (void)Send(owned, id);
    ++counters_.gaps;
    counters_.lost += count;
    Log().warn("ring sequences {} .. {} lost on the source ring ({} messages): published as a gap", first,
               first + count - 1, count);
    next_ = first + count;
  }

  // The ring is read up to its newest message: if that is still below what
  // the stream holds, the ring was made anew (its sequence starts at 0
  // again) and nothing is published until it passes the stream's: say so once.
  void CaughtUp(std::uint64_t ring_next) {
    if (warned_behind_ || !next_ || counters_.published != 0 || ring_next >= *next_) return;
    warned_behind_ = true;
    Log().warn("the ring's newest sequence is {}, below the stream's {}: a ring made anew? nothing is published until "
               "it passes {} (use another subject, or purge the stream)",
               ring_next == 0 ? 0 : ring_next - 1, *next_ - 1, *next_ - 1);
  }

  // Sends what failed again, in sequence order, once nothing is in flight.
  void Retry() {
    if (!acks_.any_failed.load(std::memory_order_acquire)) return;
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = Millis(options_.ack_wait * 2);
    (void)js_PublishAsyncComplete(connection_.Js(), &wait);  // let the rest settle (or fail) first
    std::vector<natsMsg*> failed;
    std::string why;
    {
      std::lock_guard const lock(acks_.mutex);
      failed.swap(acks_.failed);
      acks_.any_failed.store(false, std::memory_order_relaxed);  // under the mutex: a later push sets it again
      why = acks_.last_error;
    }
    if (failed.empty()) return;
    std::multimap<std::uint64_t, MsgPtr> ordered;
    for (natsMsg* m : failed) ordered.emplace(HeaderNumber(m, kSeqHeader).value_or(0), MsgPtr(m));
    Log().warn("{} publishes not acknowledged ({}); sending them again from ring sequence {} (backoff {} ms)",
               ordered.size(), why, ordered.begin()->first, backoff_ms_);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
    backoff_ms_ = std::min<std::int64_t>(backoff_ms_ * 2, 2000);
    for (auto& [seq, msg] : ordered) {
      (void)Send(msg, {});
      ++counters_.resent;
    }
  }
  void AckProgress() {  // a successful round: the backoff starts small again
    backoff_ms_ = 50;
  }

  // Waits until every publish is acknowledged (or --ack-wait twice passed
  // with nothing acknowledged), sending failures again.
  void Drain() {
    for (int round = 0; round < 20; ++round) {
      jsPubOptions wait;
      jsPubOptions_Init(&wait);
      wait.MaxWait = Millis(options_.ack_wait * 2);
      natsStatus const s = js_PublishAsyncComplete(connection_.Js(), &wait);
      bool retry = false;
      {
        std::lock_guard const lock(acks_.mutex);
        retry = !acks_.failed.empty();
      }
      if (retry) {
        Retry();
        continue;
      }
      if (s == NATS_OK) return;
      if (StopRequested()) return;
    }
  }

  [[nodiscard]] Counters const& Count() const noexcept { return counters_; }
  [[nodiscard]] std::optional<std::uint64_t> Next() const noexcept { return next_; }

 private:
  // Hands a message to the client; false if it can never be sent (larger
  // than max_payload). Waits (and sends failures again) while the window
  // of --max-pending publishes is full or the client is reconnecting.
  bool Send(MsgPtr& msg, std::string const& id) {
    jsPubOptions po = pub_;
    if (!id.empty()) po.MsgId = id.c_str();
    for (int attempt = 0;; ++attempt) {
      natsMsg* raw = msg.get();
      natsStatus const s = js_PublishMsgAsync(connection_.Js(), &raw, &po);
      if (raw == nullptr) {
        natsMsg* const given = msg.release();  // the client owns it now
        (void)given;
      }
      if (s == NATS_OK) return true;
      if (s == NATS_MAX_PAYLOAD) return false;
      if (s == NATS_CONNECTION_CLOSED) throw Error(kUnreachable, "the NATS connection was closed");
      // NATS_TIMEOUT: stalled with max pending in flight; others: reconnecting.
      if (attempt % 50 == 49) Log().debug("publish waits: {}", NatsError(s));
      std::this_thread::sleep_for(std::chrono::milliseconds(s == NATS_TIMEOUT ? 0 : 10));
    }
  }

  Connection& connection_;
  OutOptions const& options_;
  Acks& acks_;
  jsPubOptions pub_{};
  std::optional<std::uint64_t> next_;  // the ring sequence to publish next
  Counters counters_;
  bool warned_behind_ = false;
  std::int64_t backoff_ms_ = 50;
};

cb::Reader* g_reader = nullptr;  // for the stop hook
void StopReader() noexcept {
  if (g_reader != nullptr) g_reader->RequestStop();
}

std::string U(std::uint64_t v) { return std::to_string(v); }

}  // namespace out_impl

using namespace out_impl;

int RunOut(OutOptions const& options) {
  std::string const name = CheckRingName(options.ring);
  CheckSubject(options.stream.subject);
  CheckStreamName(options.stream.stream);
  if (SharedMemory::Exists(name)) {
    (void)InspectRing(name);  // look before attaching (see tail.cpp)
  } else if (options.wait == 0) {
    throw Error(kNoSuchBuffer, name + ": no such ring");  // before any connection
  }
  InstallStopHandlers();
  // Static: the client may call OnAck on its thread while the connection
  // closes, after this frame is gone (RunOut runs once per process).
  static Acks acks;
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.PublishAsync.MaxPending = options.max_pending;
  js_options.PublishAsync.AckHandler = OnAck;
  js_options.PublishAsync.AckHandlerClosure = &acks;
  js_options.PublishAsync.StallWait = 100;
  js_options.Wait = Millis(options.connect.connect_timeout);
  Connection connection(options.connect, "circbuf bridge out " + name, &js_options);
  StreamState const stream = EnsureStream(connection, options.stream, options.connect.connect_timeout * 2);
  Publisher publisher(connection, options, acks);
  // An empty stream has no last message to resume after, so it is not asked:
  // asking nats-server 2.9.10 for it right after the stream was created can
  // crash the server (nil pointer in jsMsgGetRequest; seen once in about
  // fifteen runs of the bridge tests under ThreadSanitizer, the test then
  // timing out with an empty stream).
  std::optional<std::uint64_t> const resume = stream.last_sequence == 0 ? std::nullopt : publisher.ResumePoint();
  cb::StartAt start = options.from == "latest" ? cb::StartAt::kLatest
                      : options.from == "next" ? cb::StartAt::kNext
                                               : cb::StartAt::kOldest;
  if (resume) {
    start = cb::StartAt::kOldest;
    publisher.SetNext(*resume);
  }
  auto const wait = std::chrono::milliseconds(static_cast<std::int64_t>(options.wait * 1000));
  cb::Reader reader(cb::Spec::Make(name, 0), {.start = start, .wait_for_buffer = wait});
  g_reader = &reader;
  SetStopHook(StopReader);
  if (StopRequested()) reader.RequestStop();
  struct Unhook {
    Unhook() = default;
    Unhook(Unhook const&) = delete;
    Unhook& operator=(Unhook const&) = delete;
    Unhook(Unhook&&) = delete;
    Unhook& operator=(Unhook&&) = delete;
    ~Unhook() {
      SetStopHook(nullptr);
      g_reader = nullptr;
    }
  } unhook;
  Log().info("bridge out: ring {} -> stream {} subject {} (from {})", name, options.stream.stream,
             options.stream.subject, resume ? "the resume point" : options.from);

  std::vector<std::byte> buffer(reader.MaxMessageSize());
  std::string why = "stopped by a signal";
  bool closing = false;
  auto next_tick = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  std::uint64_t tick_published = 0;
  std::uint64_t tick_acked = 0;
  while (!StopRequested()) {
    publisher.Retry();
    int const n = reader.Read(buffer);
    if (n > 0) {
      publisher.Message(reader.NextSequence() - 1,
                        std::span<std::byte const>(buffer.data(), static_cast<std::size_t>(n)));
    } else if (n == cb::kLapped) {
      if (reader.LastLoss() != 0) publisher.Gap(reader.NextSequence() - reader.LastLoss(), reader.LastLoss());
    } else if (n != cb::kEmpty) {
      throw Error(kNotCircbuf, name + (reader.Truncated() ? ": a segment of the ring was truncated while bridging"
                                                          : ": corrupt ring (read failed)"));
    }
    auto const now = std::chrono::steady_clock::now();
    if (now >= next_tick) {
      std::uint64_t acked = 0;
      {
        std::lock_guard const lock(acks.mutex);
        acked = acks.acked;
      }
      if (acked != tick_acked) publisher.AckProgress();
      if (options.progress) {
        Counters const& c = publisher.Count();
        auto const backlog = reader.Backlog();
        std::fprintf(stderr,
                     "circbuf bridge out: %s msg/s, acked %s msg/s, published %llu, in flight %llu, ring lag %llu, "
                     "gaps %llu (lost %llu), resent %llu\n",
                     HumanCount(static_cast<double>(c.published - tick_published)).c_str(),
                     HumanCount(static_cast<double>(acked - tick_acked)).c_str(),
                     static_cast<unsigned long long>(c.published),
                     static_cast<unsigned long long>(c.published + c.gaps + c.resent -
                                                     std::min(acked, c.published + c.gaps + c.resent)),
                     static_cast<unsigned long long>(backlog.messages), static_cast<unsigned long long>(c.gaps),
                     static_cast<unsigned long long>(c.lost), static_cast<unsigned long long>(c.resent));
      }
      tick_published = publisher.Count().published;
      tick_acked = acked;
      next_tick = now + std::chrono::seconds(1);
    }
    if (n != cb::kEmpty) continue;
    if (publisher.Count().skipped != 0) publisher.CaughtUp(reader.NextSequence());
    if (closing) {
      why = "the writer closed the ring";
      break;
    }
    cb::WaitResult const w = reader.WaitUntil(std::min(next_tick, now + std::chrono::milliseconds(100)));
    if (w == cb::WaitResult::kStopped) break;
    if ((w == cb::WaitResult::kClosed || w == cb::WaitResult::kDead) && options.until_closed) closing = true;
  }
  publisher.Drain();
  Counters const& c = publisher.Count();
  std::uint64_t acked = 0;
  std::uint64_t duplicates = 0;
  std::uint64_t refused = 0;
  std::size_t unacked = 0;
  {
    std::lock_guard const lock(acks.mutex);
    acked = acks.acked;
    duplicates = acks.duplicates;
    refused = acks.refused_messages;
    unacked = acks.failed.size();
    for (natsMsg* m : acks.failed) natsMsg_Destroy(m);
    acks.failed.clear();
  }
  std::fflush(stdout);
  std::fprintf(stderr,
               "circbuf bridge out: published %s messages (%s bytes), %s gaps (%s messages lost on the source ring), "
               "%s too large for the server's max_payload (sent as gaps), "
               "%s acknowledged (%s duplicates), %s sent again, %s refused, %s unacknowledged, %s already in the "
               "stream; next ring sequence %s; %s\n",
               U(c.published).c_str(), U(c.bytes).c_str(), U(c.gaps).c_str(), U(c.lost).c_str(), U(c.too_large).c_str(),
               U(acked).c_str(), U(duplicates).c_str(), U(c.resent).c_str(), U(refused).c_str(), U(unacked).c_str(),
               U(c.skipped).c_str(), publisher.Next() ? U(publisher.Next().value_or(0)).c_str() : "-", why.c_str());
  return kOk;
}

}  // namespace circbuf::tool::bridge
