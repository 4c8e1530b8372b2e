// The message of the market_data example: one fixed-size POD struct per
// quote. Everything a reader in another process needs is inside the struct:
// fixed-size arrays instead of std::string, integers instead of pointers, so
// its bytes mean the same thing in every process (circbuf::Storable checks
// that at compile time, see writer.cpp).
#pragma once

#include <cstdint>

namespace market_data {

inline constexpr char const* kRingName = "/example-quotes";
// The ring records the message type (size, alignment and this id): a reader
// of another type is refused when it attaches (TypedWriter, TypedReader).
inline constexpr std::uint64_t kQuoteTypeId = 0x51554F5445'0001;  // "QUOTE", version 1

struct Quote {
  char symbol[8];            // "AAPL", zero-padded
  std::int64_t bid;          // price in 1/10000 of a currency unit
  std::int64_t ask;
  std::uint32_t bid_size;
  std::uint32_t ask_size;
  std::uint64_t seq;         // the writer's own count, 0, 1, 2, ...
  std::uint64_t timestamp;   // CLOCK_REALTIME, nanoseconds
};
static_assert(sizeof(Quote) == 48);  // no hidden padding: the layout is the wire format

}  // namespace market_data
