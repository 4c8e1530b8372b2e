// Test support for the ring: unique ring names with cleanup, and the
// deterministic message contents that every reader can re-derive and check
// byte for byte from the sequence number alone.
#pragma once

#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace circbuf::test {

// 64-bit mix (splitmix64 finaliser).
inline std::uint64_t Mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Size of message `seq`: mostly small, one in eight anywhere in 1 .. max.
inline std::size_t SizeOf(std::uint64_t seq, std::size_t max) {
  std::uint64_t const r = Mix(seq);
  return (r & 7) == 0 ? 1 + (r >> 8) % max : 1 + (r >> 8) % std::min<std::size_t>(256, max);
}

// Contents of message `seq`: the sequence number (as much of it as fits),
// then a pattern that depends on seq and the byte's index.
inline void Fill(std::uint64_t seq, std::span<std::byte> out) {
  auto const base = static_cast<std::uint8_t>(Mix(seq ^ 0x5555));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::byte(static_cast<std::uint8_t>(base + i * 131));
  std::memcpy(out.data(), &seq, std::min<std::size_t>(8, out.size()));
}

inline bool Matches(std::uint64_t seq, std::span<std::byte const> got) {
  auto const base = static_cast<std::uint8_t>(Mix(seq ^ 0x5555));
  std::uint64_t prefix = 0;
  std::size_t const k = std::min<std::size_t>(8, got.size());
  std::memcpy(&prefix, got.data(), k);
  std::uint64_t const want = k == 8 ? seq : seq & ((std::uint64_t{1} << (8 * k)) - 1);
  if (prefix != want) return false;
  for (std::size_t i = k; i < got.size(); ++i) {
    if (got[i] != std::byte(static_cast<std::uint8_t>(base + i * 131))) return false;
  }
  return true;
}

inline std::vector<std::byte> Message(std::uint64_t seq, std::size_t size) {
  std::vector<std::byte> m(size);
  Fill(seq, m);
  return m;
}

// A unique ring name whose segments (and their locks) are removed when the
// test ends, however it ends.
struct RingName {
  std::string name = UniqueName("ring");
  RingName() = default;
  RingName(RingName const&) = delete;
  RingName& operator=(RingName const&) = delete;
  ~RingName() {
    // NAME and NAME.data (the rule is circbuf::CircularBuffer::DataSegmentName's,
    // which this header cannot use: it is included before `import circbuf;`).
    for (std::string const& n : {name, name + ".data"}) {
      ::shm_unlink(n.c_str());
      ::sem_unlink(n.c_str());
    }
  }
};

// The ring's wake word (circbuf.ring:layout: the first u32 of the attachers
// line, offset 128 of the state segment's header page), read from the file
// as another process sees it. ~0 if it cannot be read.
inline std::uint32_t WakeWord(std::string const& ring) {
  std::uint32_t word = ~std::uint32_t{0};
  int const fd = ::open(("/dev/shm/" + ring.substr(1)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return word;
  if (::pread(fd, &word, sizeof word, 128) != static_cast<ssize_t>(sizeof word)) word = ~std::uint32_t{0};
  ::close(fd);
  return word;
}

}  // namespace circbuf::test
