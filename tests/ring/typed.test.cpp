// Typed channels (issue 15): TypedWriter<T> / TypedReader<T> across
// processes, the type recorded in the ring and a reader of another type
// refused, Emplace, the typed zero-copy read and Poll, and a typed read
// that leaves the caller's value unchanged when it was lapped.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ring/support.hpp"
#include "support/expect.hpp"
#include "support/process.hpp"

import circbuf;

namespace cb = circbuf::CircularBuffer;
using circbuf::test::Child;
using circbuf::test::ErrorOf;
using circbuf::test::Pipe;
using circbuf::test::RingName;

namespace {

constexpr std::uint64_t kQuoteId = 0x51554f5445;  // "QUOTE"

struct Quote {
  std::uint64_t sequence;
  double bid;
  double ask;
  std::uint32_t instrument;
  std::uint32_t check;  // derived from the rest: a torn Quote would not match
};

Quote MakeQuote(std::uint64_t i) {
  Quote q{i, 100.0 + static_cast<double>(i % 1000) / 8, 100.5 + static_cast<double>(i % 1000) / 8,
          static_cast<std::uint32_t>(i * 7), 0};
  q.check = static_cast<std::uint32_t>(circbuf::test::Mix(i ^ q.instrument));
  return q;
}

bool Intact(Quote const& q) {
  Quote const want = MakeQuote(q.sequence);
  return q.bid == want.bid && q.ask == want.ask && q.instrument == want.instrument && q.check == want.check;
}

cb::Spec SpecOf(RingName const& r, std::uint64_t capacity) { return cb::Spec::Make(r.name, capacity); }

TEST(RingTyped, RoundTripAcrossProcessesWithExactLoss) {
  RingName r;
  constexpr std::uint64_t kCount = 200000;
  Pipe ready;
  cb::TypedWriter<Quote> w(SpecOf(r, 8192), kQuoteId);
  Child reader_process([&] {
    cb::TypedReader<Quote> reader(SpecOf(r, 0), kQuoteId, {.start = cb::StartAt::kOldest});
    ready.Send();
    Quote q{};
    std::uint64_t bad = 0;
    std::uint64_t next = 0;
    while (next < kCount) {
      switch (reader.Read(q)) {
        case cb::Outcome::kMessage:
          if (q.sequence < next || !Intact(q)) ++bad;
          next = q.sequence + 1;
          break;
        case cb::Outcome::kLapped:
        case cb::Outcome::kEmpty: break;
        case cb::Outcome::kBufferTooSmall:
        case cb::Outcome::kCorrupt: return 3;
      }
    }
    cb::ReaderStats const s = reader.Untyped().Stats();
    if (bad != 0) return 1;
    return s.delivered + s.lost == kCount ? 0 : 2;
  });
  ASSERT_EQ(ready.Receive(), '.');
  for (std::uint64_t i = 0; i < kCount; ++i) {
    if (i % 2 == 0) {
      w.Write(MakeQuote(i));
    } else {
      Quote const q = MakeQuote(i);
      w.Emplace(q.sequence, q.bid, q.ask, q.instrument, q.check);
    }
  }
  EXPECT_EQ(reader_process.Wait(), 0);
}

TEST(RingTyped, AReaderOfAnotherTypeIsRefusedWithBothNamed) {
  RingName r;
  cb::TypedWriter<Quote> w(SpecOf(r, 8192), kQuoteId);
  std::string error = ErrorOf<std::invalid_argument>([&] { cb::TypedReader<std::uint64_t> reader(SpecOf(r, 0), 7); });
  EXPECT_NE(error.find("holds messages of 32 bytes, alignment 8, type id 0x51554f5445"), std::string::npos) << error;
  EXPECT_NE(error.find("expects messages of 8 bytes, alignment 8, type id 0x7"), std::string::npos) << error;
  // Same size and alignment, another id: refused too.
  error = ErrorOf<std::invalid_argument>([&] { cb::TypedReader<Quote> reader(SpecOf(r, 0), kQuoteId + 1); });
  EXPECT_NE(error.find("type id 0x51554f5446"), std::string::npos) << error;
  EXPECT_EQ(w.Untyped().RecordedType(), cb::TagOf<Quote>(kQuoteId));
  // An untyped reader may read a typed ring.
  cb::Reader any(SpecOf(r, 0));
  EXPECT_EQ(any.RecordedType(), cb::TagOf<Quote>(kQuoteId));
}

TEST(RingTyped, AnUntypedRingIsRefusedToATypedReaderAndStampedByATypedWriter) {
  RingName r;
  std::optional<cb::Reader> keep;  // keeps the ring after the untyped writer closes
  {
    cb::Writer plain(SpecOf(r, 8192));
    std::string const error = ErrorOf<std::invalid_argument>([&] { cb::TypedReader<Quote> reader(SpecOf(r, 0), 1); });
    EXPECT_NE(error.find("holds untyped messages"), std::string::npos) << error;
    keep.emplace(SpecOf(r, 0));
    plain.Write(std::vector<std::byte>(8));
  }
  EXPECT_EQ(keep->RecordedType(), cb::TypeTag{});
  {
    cb::TypedWriter<Quote> typed(SpecOf(r, 8192), 1);
    EXPECT_EQ(keep->RecordedType(), cb::TagOf<Quote>(1));
    cb::TypedReader<Quote> reader(SpecOf(r, 0), 1);
  }
  // A typed writer of another type, once that one closed: refused, and the
  // ring keeps its type.
  std::string const error =
      ErrorOf<std::invalid_argument>([&] { cb::TypedWriter<std::uint64_t> other(SpecOf(r, 8192), 1); });
  EXPECT_NE(error.find("writer writes messages of 8 bytes"), std::string::npos) << error;
  EXPECT_EQ(keep->RecordedType(), cb::TagOf<Quote>(1));
}

TEST(RingTyped, ATypeLargerThanTheRingsLargestMessageIsRefused) {
  RingName r;
  struct Big {
    std::byte bytes[4000];
  };
  std::string const error = ErrorOf<std::length_error>([&] { cb::TypedWriter<Big> w(SpecOf(r, 4096), 1); });
  EXPECT_NE(error.find("4000 bytes does not fit; the ring's largest message is 1776 bytes"), std::string::npos)
      << error;
}

TEST(RingTyped, ALappedReadLeavesTheCallersValueUnchanged) {
  RingName r;
  cb::TypedWriter<Quote> w(SpecOf(r, 4096), kQuoteId);
  cb::TypedReader<Quote> reader(SpecOf(r, 0), kQuoteId, {.start = cb::StartAt::kOldest});
  for (std::uint64_t i = 0; i < 1000; ++i) w.Write(MakeQuote(i));
  Quote q = MakeQuote(123456);
  Quote const before = q;
  ASSERT_EQ(reader.Read(q), cb::Outcome::kLapped);
  EXPECT_TRUE(q.sequence == before.sequence && q.bid == before.bid && q.ask == before.ask &&
              q.instrument == before.instrument && q.check == before.check);
  ASSERT_EQ(reader.Read(q), cb::Outcome::kMessage);
  EXPECT_TRUE(Intact(q));
  EXPECT_EQ(q.sequence, reader.Untyped().NextSequence() - 1);
}

TEST(RingTyped, ZeroCopyReadAndPoll) {
  RingName r;
  cb::TypedWriter<Quote> w(SpecOf(r, 65536), kQuoteId);
  cb::TypedReader<Quote> reader(SpecOf(r, 0), kQuoteId, {.start = cb::StartAt::kOldest});
  for (std::uint64_t i = 0; i < 10; ++i) w.Write(MakeQuote(i));
  std::uint64_t seen = ~std::uint64_t{0};
  EXPECT_EQ(reader.ReadInPlace([&](Quote const& q) { seen = Intact(q) ? q.sequence : ~std::uint64_t{0}; }),
            cb::Outcome::kMessage);
  EXPECT_EQ(seen, 0U);
  std::uint64_t next = 1;
  std::uint64_t bad = 0;
  cb::PollResult const result = reader.Poll(
      [&](Quote const& q) {
        if (q.sequence != next || !Intact(q)) ++bad;
        ++next;
      },
      100);
  EXPECT_EQ(result.delivered, 9U);
  EXPECT_EQ(result.stopped, cb::Outcome::kEmpty);
  EXPECT_EQ(bad, 0U);
  // A message of another size from an untyped writer in a typed ring: kCorrupt, passed over.
  w.Untyped().Write(std::vector<std::byte>(5));
  w.Write(MakeQuote(10));
  Quote q{};
  EXPECT_EQ(reader.Read(q), cb::Outcome::kCorrupt);
  EXPECT_EQ(reader.Read(q), cb::Outcome::kMessage);
  EXPECT_EQ(q.sequence, 10U);
}

}  // namespace

// A constructor that throws inside Emplace publishes nothing: the claim is
// aborted, the exception goes on, and the next message is the next one a
// reader sees.
struct Picky {
  std::uint64_t value;
  explicit Picky(std::uint64_t v) : value(v) {
    if (v == 13) throw std::runtime_error("unlucky");
  }
};
static_assert(circbuf::Storable<Picky>);

TEST(RingTyped, EmplaceWhoseConstructorThrowsPublishesNothing) {
  RingName r;
  cb::TypedWriter<Picky> w(SpecOf(r, 4096), 77);
  cb::TypedReader<Picky> reader(SpecOf(r, 0), 77, {.start = cb::StartAt::kOldest});
  w.Emplace(std::uint64_t{12});
  EXPECT_THROW(w.Emplace(std::uint64_t{13}), std::runtime_error);
  w.Emplace(std::uint64_t{14});
  Picky got{0};
  ASSERT_EQ(reader.Read(got), cb::Outcome::kMessage);
  EXPECT_EQ(got.value, 12U);
  ASSERT_EQ(reader.Read(got), cb::Outcome::kMessage);
  EXPECT_EQ(got.value, 14U) << "nothing of the throwing Emplace was published";
  EXPECT_EQ(reader.Read(got), cb::Outcome::kEmpty);
  EXPECT_EQ(reader.Untyped().Lost(), 0U);
  EXPECT_EQ(w.Untyped().NextSequence(), 2U);
}
