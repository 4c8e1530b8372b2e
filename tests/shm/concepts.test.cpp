// Compile-time checks of what SharedMemory::AsStruct / AsSpan admit.
#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

import circbuf.shm;

using circbuf::Storable;

namespace {

struct Quote {
  std::uint64_t sequence;
  double bid;
  double ask;
  char symbol[8];
};
struct WithAtomics {
  std::atomic<std::uint64_t> position;
  std::uint32_t flags;
};
// Not trivially copyable: its copy constructor is user-provided.
struct NonTrivial {
  NonTrivial() = default;
  NonTrivial(NonTrivial const& /*other*/) : value(2) {}
  NonTrivial(NonTrivial&&) = delete;
  NonTrivial& operator=(NonTrivial const&) = delete;
  NonTrivial& operator=(NonTrivial&&) = delete;
  ~NonTrivial() = default;
  int value = 1;
};
struct Huge {
  char bytes[16];
};
struct alignas(8192) OverAligned {
  int value;
};
struct alignas(4096) PageAligned {
  int value;
};
struct Wide {
  std::uint64_t a, b, c, d;
};

}  // namespace

// Admitted: plain data, arrays of it, lock-free atomics and structs holding them.
static_assert(Storable<int>);
static_assert(Storable<std::byte>);
static_assert(Storable<Quote>);
static_assert(Storable<Quote[4]>);
static_assert(Storable<std::array<Quote, 4>>);
static_assert(Storable<std::atomic<std::uint64_t>>);
static_assert(Storable<std::atomic<std::uint32_t>>);
static_assert(Storable<WithAtomics>);
static_assert(Storable<PageAligned>);
// Refused: non-trivial types, pointers at any array depth, member pointers,
// references, lock-based atomics, types aligned beyond the user region's page.
static_assert(!Storable<std::string>);
static_assert(!Storable<std::vector<int>>);
static_assert(!Storable<NonTrivial>);
static_assert(!Storable<int*>);
static_assert(!Storable<char const*>);
static_assert(!Storable<Quote* [4]>);
static_assert(!Storable<int Quote::*>);
static_assert(!Storable<int&>);
static_assert(!Storable<void>);
static_assert(!Storable<OverAligned>);
static_assert(!std::atomic<Wide>::is_always_lock_free);
static_assert(!Storable<std::atomic<Wide>>);
static_assert(!Storable<std::atomic<Huge>>);

// The same verdicts through the real member templates (a refused type is a
// compile error there, so only the admitted ones can be spelled).
template <class T>
concept HasAsStruct = requires(circbuf::SharedMemory& shm) { shm.AsStruct<T>(); };
template <class T>
concept HasAsSpan = requires(circbuf::SharedMemory& shm) { shm.AsSpan<T>(); };
static_assert(HasAsStruct<Quote> && HasAsStruct<Quote const> && HasAsSpan<std::uint64_t>);
static_assert(HasAsStruct<WithAtomics>);
static_assert(!HasAsStruct<std::string> && !HasAsSpan<int*> && !HasAsStruct<OverAligned>);
static_assert(!HasAsStruct<std::atomic<Wide>>);

TEST(StorableConcept, VerdictsAreCompileTime) {
  // Everything above is a static_assert; this test exists so that the file is
  // a ctest entry and a regression in the concept fails the build.
  SUCCEED();
}
