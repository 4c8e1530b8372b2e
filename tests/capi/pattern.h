/* The message pattern of the interop peers (peer.c, peer.cpp) and of the
 * Python tests (tests/python): message i of a writer (i = 0, 1, ...) has
 * PatternSize(i, max) bytes, byte k being (i >> 8k) & 0xff for k < 8 and
 * (i * 31 + k) & 0xff after. A reader knows i of a delivered message as
 * delivered + lost so far: every lap says exactly how many it skipped. C11
 * and C++; included before any import. */
#ifndef CIRCBUF_TEST_PATTERN_H
#define CIRCBUF_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>

static inline size_t PatternSize(uint64_t i, size_t max) { return (size_t)(1 + (i * 7919) % max); }

static inline unsigned char PatternByte(uint64_t i, size_t k) {
  return k < 8 ? (unsigned char)((i >> (8 * k)) & 0xff) : (unsigned char)((i * 31 + k) & 0xff);
}

static inline void PatternFill(uint64_t i, unsigned char* out, size_t size) {
  for (size_t k = 0; k < size; ++k) out[k] = PatternByte(i, k);
}

/* 1 if `got` is message i of a writer whose largest message is max (0: size
 * unknown, then only the bytes are checked). */
static inline int PatternMatches(uint64_t i, size_t max, unsigned char const* got, size_t size) {
  if (max != 0 && size != PatternSize(i, max)) return 0;
  for (size_t k = 0; k < size; ++k) {
    if (got[k] != PatternByte(i, k)) return 0;
  }
  return 1;
}

#endif
