/* circbuf-peer-c: the interop peer over the C ABI (capi/circbuf.h), compiled
 * as C11 by the C compiler. The same command line as circbuf-peer (peer.cpp):
 *   circbuf-peer-c write NAME CAPACITY COUNT MAXSIZE
 *     creates ring NAME, prints "ready", waits for a line on stdin, writes
 *     COUNT messages (tests/capi/pattern.h) flat out, prints "done", waits
 *     for EOF on stdin, closes the ring and exits 0
 *   circbuf-peer-c read NAME COUNT [oldest|latest|next] [MAXSIZE]
 *     attaches, prints "ready", reads until delivered + lost == COUNT (or
 *     the writer is gone and nothing is left), checking every message's
 *     bytes (and its size, given the writer's MAXSIZE), prints "delivered D
 *     lost L bad B"; exit 0 if B == 0, 1 if not, 2 on an error */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "circbuf.h"
#include "pattern.h"

static int Die(char const* what, int rc) {
  fprintf(stderr, "circbuf-peer-c: %s: %d: %s\n", what, rc, circbuf_last_error());
  return 2;
}

static int Write(char const* name, uint64_t capacity, uint64_t count, size_t max) {
  circbuf_writer* w = NULL;
  int rc = circbuf_writer_open(name, capacity, NULL, &w);
  if (rc != 0) return Die("open", rc);
  printf("ready\n");
  fflush(stdout);
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL) {
    circbuf_writer_close(w);
    return 2;
  }
  static unsigned char message[CIRCBUF_MAX_MESSAGE];
  for (uint64_t i = 0; i < count; ++i) {
    size_t const size = PatternSize(i, max);
    PatternFill(i, message, size);
    rc = circbuf_write(w, message, size);
    if (rc != 0) {
      circbuf_writer_close(w);
      return Die("write", rc);
    }
  }
  printf("done\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin) != NULL) {
  }
  circbuf_writer_close(w);
  return 0;
}

static int Read(char const* name, uint64_t count, int start, size_t writer_max) {
  circbuf_reader_options options;
  circbuf_reader_options_init(&options);
  options.start = start;
  circbuf_reader* r = NULL;
  int rc = circbuf_reader_open(name, 0, &options, &r);
  if (rc != 0) return Die("open", rc);
  printf("ready\n");
  fflush(stdout);
  static unsigned char buffer[CIRCBUF_MAX_MESSAGE];
  uint64_t bad = 0;
  while (circbuf_reader_delivered(r) + circbuf_reader_lost(r) < count) {
    int const n = circbuf_read(r, buffer, sizeof buffer);
    if (n > 0) {
      uint64_t const i = circbuf_reader_delivered(r) - 1 + circbuf_reader_lost(r);
      if (!PatternMatches(i, writer_max, buffer, (size_t)n)) ++bad;
    } else if (n == CIRCBUF_EMPTY) {
      int const why = circbuf_reader_wait(r, 5000000000LL);
      if (why == CIRCBUF_WAIT_TIMEOUT || why == CIRCBUF_WAIT_CLOSED || why == CIRCBUF_WAIT_DEAD) {
        if (circbuf_read(r, buffer, 0) == CIRCBUF_EMPTY) break; /* nothing more will come */
      } else if (why < 0) {
        circbuf_reader_close(r);
        return Die("wait", why);
      }
    } else if (n == CIRCBUF_LAPPED) {
      /* counted in circbuf_reader_lost */
    } else {
      ++bad;
      if (n == CIRCBUF_CORRUPT || n < CIRCBUF_CORRUPT) break;
    }
  }
  printf("delivered %" PRIu64 " lost %" PRIu64 " bad %" PRIu64 "\n", circbuf_reader_delivered(r),
         circbuf_reader_lost(r), bad);
  fflush(stdout);
  circbuf_reader_close(r);
  return bad == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc == 6 && strcmp(argv[1], "write") == 0) {
    return Write(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10), (size_t)strtoull(argv[5], NULL, 10));
  }
  if (argc >= 4 && argc <= 6 && strcmp(argv[1], "read") == 0) {
    int start = CIRCBUF_START_OLDEST;
    if (argc >= 5 && strcmp(argv[4], "latest") == 0) start = CIRCBUF_START_LATEST;
    if (argc >= 5 && strcmp(argv[4], "next") == 0) start = CIRCBUF_START_NEXT;
    size_t const max = argc == 6 ? (size_t)strtoull(argv[5], NULL, 10) : 0;
    return Read(argv[2], strtoull(argv[3], NULL, 10), start, max);
  }
  fprintf(stderr, "usage: circbuf-peer-c write NAME CAPACITY COUNT MAXSIZE | read NAME COUNT [oldest|latest|next] [MAXSIZE]\n");
  return 2;
}
