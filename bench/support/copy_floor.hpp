// The copy floor across cores (README, "Performance"): the least a copying
// transport between two processes does. A writer memcpy's each message into
// a shared ring and release-stores a counter; one reader acquire-polls the
// counter and memcpy's the message out. No overwrite detection, no sequence
// numbers, one reader: for large messages no copying transport can beat it;
// for small ones the counter on its own line costs a second cache-line
// transfer per message that circbuf does not make (circbuf's reader polls the
// record header on the payload's own line), so there it is a reference, not
// a bound.
//
// Layout, one direction (two mappings, both MAP_SHARED | MAP_ANONYMOUS, made
// before fork, populated like circbuf's segments):
//   control  one page; tail (u64) alone on the first two cache lines
//   records  `capacity` bytes (the size of the circbuf ring it is compared
//            with), records back to back as circbuf's are
//            (modules/ring/layout.cppm): an 8-byte length word, the payload,
//            padding to a multiple of 8. A record that does not fit before
//            the end leaves a length word 0 there and starts at offset 0.
// So a message takes as many bytes, and touches as many cache lines, as the
// same message in a circbuf ring.
//
// Synchronization
//   Owner: the writer owns the records and tail; the reader owns its cursor
//   and writes nothing shared.
//   [F1] writer: length word and payload (plain stores, std::memcpy), then
//        tail.store(release). Pairs with [F2].
//   [F2] reader: tail.load(acquire) when its cached tail is used up; then
//        plain loads (std::memcpy) of every record below that tail.
//   The writer must never lap the reader (that would be a data race, and
//   nothing here would notice): a round trip has one message in flight, and
//   a paced run (support/paced.hpp) keeps the writer within half the
//   capacity of what the reader acknowledged.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "support/harness.hpp"

namespace circbuf::bench {

inline constexpr std::size_t kFloorHeaderBytes = 8;  // the length word, as circbuf's record header

// Bytes a `length`-byte message takes in the ring: as in circbuf.
constexpr std::size_t FloorRecordBytes(std::size_t length) {
  return kFloorHeaderBytes + ((length + 7) & ~std::size_t{7});
}

struct alignas(128) FloorControl {
  std::atomic<std::uint64_t> tail{0};  // byte position after the last record published (never wraps)
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// One direction: the two mappings, made before fork and inherited.
class FloorRing {
 public:
  // `capacity` is rounded up to a multiple of 64, as circbuf's is.
  explicit FloorRing(std::size_t capacity)
      : capacity_((capacity + 63) & ~std::size_t{63}), control_(Map(kControlBytes)), records_(Map(capacity_)) {
    new (control_) FloorControl{};
  }
  ~FloorRing() {
    ::munmap(control_, kControlBytes);
    ::munmap(records_, capacity_);
  }
  FloorRing(FloorRing const&) = delete;
  FloorRing& operator=(FloorRing const&) = delete;

  [[nodiscard]] std::size_t Capacity() const { return capacity_; }
  [[nodiscard]] std::atomic<std::uint64_t>& Tail() const { return static_cast<FloorControl*>(control_)->tail; }
  [[nodiscard]] std::byte* Records() const { return static_cast<std::byte*>(records_); }

 private:
  static constexpr std::size_t kControlBytes = 4096;
  static void* Map(std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    return p;
  }
  std::size_t capacity_;
  void* control_;
  void* records_;
};

class FloorWriter {
 public:
  explicit FloorWriter(FloorRing const& ring) : ring_(ring) {}
  void Write(std::span<std::byte const> m) {
    std::size_t const record = FloorRecordBytes(m.size());
    std::size_t offset = position_ % ring_.Capacity();
    if (offset + record > ring_.Capacity()) {  // does not fit before the end: mark it, start over
      std::uint64_t const none = 0;
      std::memcpy(ring_.Records() + offset, &none, sizeof none);
      position_ += ring_.Capacity() - offset;
      offset = 0;
    }
    std::uint64_t const length = m.size();
    std::memcpy(ring_.Records() + offset, &length, sizeof length);
    std::memcpy(ring_.Records() + offset + kFloorHeaderBytes, m.data(), m.size());
    position_ += record;
    ring_.Tail().store(position_, std::memory_order_release);  // [F1] pairs with [F2]
  }

 private:
  FloorRing const& ring_;
  std::uint64_t position_ = 0;
};

class FloorReader {
 public:
  explicit FloorReader(FloorRing const& ring) : ring_(ring) {}
  // The next message into `out` (large enough for any message); its length,
  // or 0 if none yet.
  std::size_t Read(std::span<std::byte> out) {
    if (cursor_ == tail_) {
      tail_ = ring_.Tail().load(std::memory_order_acquire);  // [F2] pairs with [F1]
      if (cursor_ == tail_) return 0;
    }
    std::size_t offset = cursor_ % ring_.Capacity();
    std::uint64_t length = 0;
    std::memcpy(&length, ring_.Records() + offset, sizeof length);
    if (length == 0) {  // the writer's end-of-ring mark: the record is at offset 0
      cursor_ += ring_.Capacity() - offset;
      offset = 0;
      std::memcpy(&length, ring_.Records(), sizeof length);
    }
    std::memcpy(out.data(), ring_.Records() + offset + kFloorHeaderBytes, length);
    cursor_ += FloorRecordBytes(length);
    return length;
  }

 private:
  FloorRing const& ring_;
  std::uint64_t cursor_ = 0;
  std::uint64_t tail_ = 0;  // the last tail loaded: records below it are complete
};

// ---- Endpoints for the harness ------------------------------------------------------

class FloorEndpoint final : public Endpoint {
 public:
  FloorEndpoint(FloorRing const& out, FloorRing const& in) : writer_(out), reader_(in) {}
  void Send(std::span<std::byte const> m) override { writer_.Write(m); }
  std::size_t Receive(std::span<std::byte> out) override { return reader_.Read(out); }

 private:
  FloorWriter writer_;
  FloorReader reader_;
};

class FloorSender final : public Endpoint {
 public:
  explicit FloorSender(FloorRing const& ring) : writer_(ring) {}
  void Send(std::span<std::byte const> m) override { writer_.Write(m); }
  std::size_t Receive(std::span<std::byte> /*out*/) override { return 0; }

 private:
  FloorWriter writer_;
};

class FloorReceiver final : public Endpoint {
 public:
  explicit FloorReceiver(FloorRing const& ring) : reader_(ring) {}
  void Send(std::span<std::byte const> /*message*/) override {}
  std::size_t Receive(std::span<std::byte> out) override { return reader_.Read(out); }

 private:
  FloorReader reader_;
};

// Ping over ring a, pong over ring b, each `capacity` bytes (as
// RingRoundTrip's two rings).
inline Transport FloorRoundTrip(std::size_t capacity) {
  auto a = std::make_shared<FloorRing>(capacity);
  auto b = std::make_shared<FloorRing>(capacity);
  return {"copy-floor", [a, b] { return std::make_unique<FloorEndpoint>(*a, *b); },
          [a, b] { return std::make_unique<FloorEndpoint>(*b, *a); }};
}

}  // namespace circbuf::bench
