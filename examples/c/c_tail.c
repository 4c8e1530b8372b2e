/* example_c_tail: the C ABI (circbuf.h, libcircbuf.so.0) from plain C11.
 * Prints every message of ring NAME as it arrives (or, with --write, writes
 * each line of stdin as one message), and says exactly how many messages a
 * lap lost. Ctrl-C stops it; so does the writer closing the ring.
 *   example_c_tail /quotes             read
 *   example_c_tail /quotes --write     write stdin, one message per line
 * Build against the installed package: cc c_tail.c -lcircbuf */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "circbuf.h"

static circbuf_reader* g_reader;

static void Stop(int signal) {
  (void)signal;
  circbuf_reader_request_stop(g_reader); /* async-signal-safe */
}

static int Write(char const* name) {
  circbuf_writer* w = NULL;
  if (circbuf_writer_open(name, 1 << 20, NULL, &w) != 0) {
    fprintf(stderr, "example_c_tail: %s\n", circbuf_last_error());
    return 1;
  }
  char line[4096];
  while (fgets(line, sizeof line, stdin) != NULL) {
    size_t n = strlen(line);
    if (n > 0 && line[n - 1] == '\n') --n;
    if (n == 0) continue;
    if (circbuf_write(w, line, n) != 0) fprintf(stderr, "example_c_tail: %s\n", circbuf_last_error());
  }
  circbuf_writer_close(w);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: example_c_tail NAME [--write]\n");
    return 2;
  }
  if (argc == 3 && strcmp(argv[2], "--write") == 0) return Write(argv[1]);
  circbuf_reader_options options;
  circbuf_reader_options_init(&options);
  options.start = CIRCBUF_START_OLDEST;
  options.wait_for_buffer_ms = 10000; /* the writer may start after us */
  if (circbuf_reader_open(argv[1], 0, &options, &g_reader) != 0) {
    fprintf(stderr, "example_c_tail: %s\n", circbuf_last_error());
    return 1;
  }
  signal(SIGINT, Stop);
  static char message[CIRCBUF_MAX_MESSAGE];
  for (;;) {
    int const n = circbuf_read(g_reader, message, sizeof message);
    if (n > 0) {
      printf("%.*s\n", n, message);
    } else if (n == CIRCBUF_LAPPED) {
      fprintf(stderr, "lost %llu messages (overwritten)\n", (unsigned long long)circbuf_reader_last_loss(g_reader));
    } else if (n == CIRCBUF_EMPTY) {
      fflush(stdout);
      int const why = circbuf_reader_wait(g_reader, -1);
      if (why == CIRCBUF_WAIT_CLOSED || why == CIRCBUF_WAIT_DEAD || why == CIRCBUF_WAIT_STOPPED) break;
    } else {
      fprintf(stderr, "example_c_tail: read: %d\n", n);
      break;
    }
  }
  printf("delivered %llu, lost %llu\n", (unsigned long long)circbuf_reader_delivered(g_reader),
         (unsigned long long)circbuf_reader_lost(g_reader));
  circbuf_reader_close(g_reader);
  return 0;
}
