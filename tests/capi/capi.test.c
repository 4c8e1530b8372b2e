/* The C ABI (capi/circbuf.h) from C, compiled as C11 by the C compiler: a
 * round trip in one process, every bad input (NULL handles and pointers,
 * bad names, sizes and options: each an error code and a message, never a
 * crash), exact loss under overwrite, zero-copy reads and claims, poll, wait,
 * and inspect/list/remove. Exit status 0 if every check passed; each failed
 * check prints its line. (The C writer with a C++ reader and the reverse:
 * interop.test.cpp.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "circbuf.h"
#include "pattern.h"

static int g_failures = 0;
static int g_checks = 0;

#define CHECK(cond)                                                                                  \
  do {                                                                                               \
    ++g_checks;                                                                                      \
    if (!(cond)) {                                                                                   \
      ++g_failures;                                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond,       \
              circbuf_last_error());                                                                 \
    }                                                                                                \
  } while (0)

/* The call failed with `code`, and the message mentions `text`. */
#define CHECK_ERROR(call, code, text)                                                                \
  do {                                                                                               \
    int const rc_ = (call);                                                                          \
    CHECK(rc_ == (code));                                                                            \
    CHECK(strstr(circbuf_last_error(), (text)) != NULL);                                             \
  } while (0)

static char g_name[64];
static int g_serial = 0;

static char const* NewName(void) {
  snprintf(g_name, sizeof g_name, "/cbt-capi-%d-%d", (int)getpid(), g_serial++);
  return g_name;
}

static void BadInput(void) {
  circbuf_writer* w = (circbuf_writer*)1;
  circbuf_reader* r = (circbuf_reader*)1;
  unsigned char buffer[16];
  CHECK_ERROR(circbuf_writer_open(NULL, 65536, NULL, &w), CIRCBUF_E_INVALID, "name is NULL");
  CHECK(w == NULL); /* *out is cleared first, whatever fails after */
  CHECK_ERROR(circbuf_writer_open("/x", 65536, NULL, NULL), CIRCBUF_E_INVALID, "out is NULL");
  CHECK_ERROR(circbuf_writer_open("", 65536, NULL, &w), CIRCBUF_E_INVALID, "ring");
  CHECK(w == NULL);
  CHECK_ERROR(circbuf_writer_open("no-slash", 65536, NULL, &w), CIRCBUF_E_INVALID, "no-slash");
  CHECK_ERROR(circbuf_writer_open("/a/b", 65536, NULL, &w), CIRCBUF_E_INVALID, "/a/b");
  char long_name[300];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[0] = '/';
  long_name[sizeof long_name - 1] = '\0';
  CHECK_ERROR(circbuf_writer_open(long_name, 65536, NULL, &w), CIRCBUF_E_INVALID, "long");
  CHECK_ERROR(circbuf_writer_open(NewName(), 0, NULL, &w), CIRCBUF_E_INVALID, "capacity 0");
  CHECK_ERROR(circbuf_writer_open(NewName(), 1, NULL, &w), CIRCBUF_E_INVALID, "capacity 1 bytes");
  CHECK_ERROR(circbuf_writer_open(NewName(), (uint64_t)1 << 40, NULL, &w), CIRCBUF_E_INVALID, "must be 4096");
  circbuf_writer_options wo;
  circbuf_writer_options_init(&wo);
  wo.huge_pages = 9;
  CHECK_ERROR(circbuf_writer_open(NewName(), 65536, &wo, &w), CIRCBUF_E_INVALID, "huge_pages 9");
  circbuf_writer_options_init(&wo);
  wo.reserved = 1;
  CHECK_ERROR(circbuf_writer_open(NewName(), 65536, &wo, &w), CIRCBUF_E_INVALID, "reserved: must be 0");
  wo.size = 4;
  CHECK_ERROR(circbuf_writer_open(NewName(), 65536, &wo, &w), CIRCBUF_E_INVALID, "size field");
  CHECK(access("/dev/shm/cbt-capi-x", F_OK) != 0);

  CHECK_ERROR(circbuf_reader_open(NewName(), 0, NULL, &r), CIRCBUF_E_NOENT, "cbt-capi");
  CHECK(r == NULL);
  circbuf_reader_options ro;
  circbuf_reader_options_init(&ro);
  ro.start = 7;
  CHECK_ERROR(circbuf_reader_open(NewName(), 0, &ro, &r), CIRCBUF_E_INVALID, "start 7");
  circbuf_reader_options_init(&ro);
  ro.on_lap = -1;
  CHECK_ERROR(circbuf_reader_open(NewName(), 0, &ro, &r), CIRCBUF_E_INVALID, "on_lap -1");
  circbuf_reader_options_init(&ro);
  ro.reserved = 2;
  CHECK_ERROR(circbuf_reader_open(NewName(), 0, &ro, &r), CIRCBUF_E_INVALID, "reserved: must be 0");

  /* NULL handles everywhere: an error or a zero, never a crash. */
  CHECK_ERROR(circbuf_write(NULL, buffer, 1), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK_ERROR(circbuf_claim(NULL, 1, NULL), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK_ERROR(circbuf_commit(NULL, 1), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK_ERROR(circbuf_abort(NULL), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK_ERROR(circbuf_writer_stats_get(NULL, NULL), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK(circbuf_writer_capacity(NULL) == 0 && circbuf_writer_max_message(NULL) == 0);
  CHECK_ERROR(circbuf_read(NULL, buffer, sizeof buffer), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_read_in_place(NULL, NULL, NULL), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_poll(NULL, NULL, NULL, 1, NULL), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_skip(NULL), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_reader_wait(NULL, 0), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_reader_stats_get(NULL, NULL), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK_ERROR(circbuf_reader_writer_status(NULL), CIRCBUF_E_INVALID, "reader is NULL");
  CHECK(circbuf_reader_delivered(NULL) == 0 && circbuf_reader_lost(NULL) == 0 && circbuf_reader_last_loss(NULL) == 0);
  CHECK(circbuf_reader_pending_size(NULL) == 0 && circbuf_reader_capacity(NULL) == 0);
  circbuf_reader_request_stop(NULL);
  circbuf_reader_clear_stop(NULL);
  circbuf_writer_close(NULL);
  circbuf_reader_close(NULL);
  circbuf_writer_options_init(NULL);
  circbuf_reader_options_init(NULL);
  circbuf_info_init(NULL);
  CHECK_ERROR(circbuf_inspect(NULL, NULL), CIRCBUF_E_INVALID, "name is NULL");
  CHECK_ERROR(circbuf_list(NULL, NULL, 1), CIRCBUF_E_INVALID, "out is NULL");
  CHECK_ERROR(circbuf_remove(NULL, 0), CIRCBUF_E_INVALID, "name is NULL");
  CHECK_ERROR(circbuf_remove("bad", 0), CIRCBUF_E_INVALID, "bad");
  CHECK(circbuf_last_error() != NULL);
  CHECK(strcmp(circbuf_version(), "0.1.0") == 0);
}

struct Seen {
  unsigned char bytes[CIRCBUF_MAX_MESSAGE];
  size_t size;
  int calls;
};

static void View(void const* data, size_t size, void* context) {
  struct Seen* seen = (struct Seen*)context;
  memcpy(seen->bytes, data, size);
  seen->size = size;
  ++seen->calls;
}

static void RoundTrip(void) {
  char name[64];
  strcpy(name, NewName());
  circbuf_writer* w = NULL;
  CHECK(circbuf_writer_open(name, 65536, NULL, &w) == 0);
  if (w == NULL) return;
  CHECK(circbuf_writer_capacity(w) == 65536);
  size_t const max = circbuf_writer_max_message(w);
  CHECK(max > 1000 && max <= CIRCBUF_MAX_MESSAGE);
  circbuf_writer* second = NULL;
  CHECK_ERROR(circbuf_writer_open(name, 65536, NULL, &second), CIRCBUF_E_BUSY, "");
  CHECK(second == NULL);
  circbuf_reader_options ro;
  circbuf_reader_options_init(&ro);
  ro.start = CIRCBUF_START_OLDEST;
  circbuf_reader* r = NULL;
  CHECK_ERROR(circbuf_reader_open(name, 4096, &ro, &r), CIRCBUF_E_CAPACITY, "capacity");
  CHECK(circbuf_reader_open(name, 0, &ro, &r) == 0);
  if (r == NULL) {
    circbuf_writer_close(w);
    return;
  }
  unsigned char message[CIRCBUF_MAX_MESSAGE];
  unsigned char got[CIRCBUF_MAX_MESSAGE];
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY);
  CHECK(circbuf_reader_wait(r, 1000000) == CIRCBUF_WAIT_TIMEOUT);

  /* Bad sizes leave the ring unchanged. */
  CHECK_ERROR(circbuf_write(w, message, 0), CIRCBUF_E_INVALID, "message of 0 bytes");
  CHECK_ERROR(circbuf_write(w, message, max + 1), CIRCBUF_E_INVALID, "must be 1 ..");
  CHECK_ERROR(circbuf_write(w, NULL, 5), CIRCBUF_E_INVALID, "data is NULL");
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY);

  /* Every size from 1 to max, byte for byte. */
  for (uint64_t i = 0; i < 300; ++i) {
    size_t const size = PatternSize(i, max);
    PatternFill(i, message, size);
    CHECK(circbuf_write(w, message, size) == 0);
    int const n = circbuf_read(r, got, sizeof got);
    CHECK(n == (int)size);
    CHECK(n > 0 && PatternMatches(i, max, got, (size_t)n));
  }
  CHECK(circbuf_reader_delivered(r) == 300 && circbuf_reader_lost(r) == 0);

  /* Too small a buffer: the message stays; pending size; skip. */
  PatternFill(1000, message, 100);
  CHECK(circbuf_write(w, message, 100) == 0);
  CHECK(circbuf_read(r, got, 10) == CIRCBUF_BUFFER_TOO_SMALL);
  CHECK(circbuf_reader_pending_size(r) == 100);
  CHECK_ERROR(circbuf_read(r, NULL, 10), CIRCBUF_E_INVALID, "buffer is NULL");
  CHECK(circbuf_skip(r) == 100);
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY);

  /* Zero-copy both ways. */
  void* slot = NULL;
  CHECK_ERROR(circbuf_commit(w, 5), CIRCBUF_E_STATE, "without a Claim");
  CHECK(circbuf_claim(w, 64, &slot) == 0 && slot != NULL);
  CHECK_ERROR(circbuf_claim(w, max + 1, &slot), CIRCBUF_E_INVALID, "must be 1 ..");
  CHECK(circbuf_claim(w, 64, &slot) == 0 && slot != NULL);
  memcpy(slot, "claimed", 7);
  CHECK_ERROR(circbuf_commit(w, 65), CIRCBUF_E_INVALID, "outside 1 .. 64");
  CHECK(circbuf_commit(w, 7) == 0);
  struct Seen seen = {{0}, 0, 0};
  CHECK(circbuf_read_in_place(r, View, &seen) == 7);
  CHECK(seen.calls == 1 && seen.size == 7 && memcmp(seen.bytes, "claimed", 7) == 0);
  CHECK(circbuf_claim(w, 32, &slot) == 0);
  memcpy(slot, "aborted", 7);
  CHECK(circbuf_abort(w) == 0);
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY); /* nothing of an aborted claim is visible */
  CHECK_ERROR(circbuf_read_in_place(r, NULL, NULL), CIRCBUF_E_INVALID, "view is NULL");

  /* Exact loss under overwrite: 5000 messages into 64 KiB, read afterwards. */
  for (uint64_t i = 0; i < 5000; ++i) {
    size_t const size = PatternSize(i, 200);
    PatternFill(i, message, size);
    CHECK(circbuf_write(w, message, size) == 0);
  }
  uint64_t const before = circbuf_reader_delivered(r);
  uint64_t laps = 0;
  uint64_t bad = 0;
  for (;;) {
    int const n = circbuf_read(r, got, sizeof got);
    if (n == CIRCBUF_EMPTY) break;
    if (n == CIRCBUF_LAPPED) {
      ++laps;
      CHECK(circbuf_reader_last_loss(r) > 0);
      continue;
    }
    CHECK(n > 0);
    uint64_t const i = circbuf_reader_delivered(r) - 1 - before + circbuf_reader_lost(r);
    if (n <= 0 || !PatternMatches(i, 200, got, (size_t)n)) ++bad;
  }
  CHECK(bad == 0);
  CHECK(laps >= 1);
  CHECK(circbuf_reader_delivered(r) - before + circbuf_reader_lost(r) == 5000);
  circbuf_reader_stats rs;
  rs.size = sizeof rs;
  CHECK(circbuf_reader_stats_get(r, &rs) == 0);
  CHECK(rs.laps == laps && rs.lost == circbuf_reader_lost(r) && rs.skipped == 1);
  circbuf_writer_stats ws;
  ws.size = sizeof ws;
  CHECK(circbuf_writer_stats_get(w, &ws) == 0);
  CHECK(ws.messages == 300 + 1 + 1 + 5000 && ws.took_over == 0);
  CHECK(circbuf_reader_writer_status(r) == CIRCBUF_WRITER_ALIVE);

  /* Poll: a batch, validated, lap counted. */
  for (uint64_t i = 0; i < 10; ++i) {
    PatternFill(i, message, 50);
    CHECK(circbuf_write(w, message, 50) == 0);
  }
  circbuf_poll_result pr;
  pr.size = sizeof pr;
  struct Seen last = {{0}, 0, 0};
  CHECK(circbuf_poll(r, View, &last, 4, &pr) == 4);
  CHECK(pr.delivered == 4 && pr.stopped == 1 && last.calls == 4 && PatternMatches(3, 0, last.bytes, last.size));
  CHECK(circbuf_poll(r, View, &last, 100, &pr) == 6);
  CHECK(pr.stopped == CIRCBUF_EMPTY && last.calls == 10);
  CHECK(circbuf_poll(r, View, &last, 100, NULL) == 0);
  CHECK_ERROR(circbuf_poll(r, NULL, NULL, 1, NULL), CIRCBUF_E_INVALID, "handler is NULL");

  /* Batch copy: packed into one buffer, lengths apart; stops where the buffer is full. */
  for (uint64_t i = 0; i < 10; ++i) {
    PatternFill(i, message, 50);
    CHECK(circbuf_write(w, message, 50) == 0);
  }
  uint32_t sizes[16];
  CHECK(circbuf_read_batch(r, got, 10, sizes, 16, &pr) == CIRCBUF_BUFFER_TOO_SMALL);
  CHECK(circbuf_reader_pending_size(r) == 50);
  CHECK(circbuf_read_batch(r, got, 160, sizes, 16, &pr) == 3); /* 3 x 50 fit in 160 */
  CHECK(pr.stopped == 1 && pr.delivered == 3 && sizes[0] == 50 && sizes[2] == 50);
  CHECK(PatternMatches(0, 0, got, 50) && PatternMatches(1, 0, got + 50, 50) && PatternMatches(2, 0, got + 100, 50));
  CHECK(circbuf_read_batch(r, got, sizeof got, sizes, 2, &pr) == 2 && pr.stopped == 1); /* max */
  CHECK(PatternMatches(3, 0, got, 50) && PatternMatches(4, 0, got + 50, 50));
  CHECK(circbuf_read_batch(r, got, sizeof got, sizes, 16, &pr) == 5 && pr.stopped == CIRCBUF_EMPTY);
  CHECK(PatternMatches(9, 0, got + 200, 50));
  CHECK(circbuf_read_batch(r, got, sizeof got, sizes, 16, NULL) == 0);
  CHECK_ERROR(circbuf_read_batch(r, got, sizeof got, NULL, 16, NULL), CIRCBUF_E_INVALID, "sizes is NULL");
  CHECK_ERROR(circbuf_read_batch(NULL, got, sizeof got, sizes, 16, NULL), CIRCBUF_E_INVALID, "reader is NULL");
  /* Across laps: counted, and delivered + lost is every message written. */
  uint64_t const batch_before = circbuf_reader_delivered(r) + circbuf_reader_lost(r);
  for (uint64_t i = 0; i < 3000; ++i) {
    PatternFill(i, message, 100);
    CHECK(circbuf_write(w, message, 100) == 0);
  }
  uint64_t batch_laps = 0;
  for (;;) {
    int const k = circbuf_read_batch(r, got, sizeof got, sizes, 16, &pr);
    CHECK(k >= 0);
    batch_laps += pr.laps;
    if (k <= 0 && pr.stopped == CIRCBUF_EMPTY) break;
  }
  CHECK(batch_laps >= 1);
  CHECK(circbuf_reader_delivered(r) + circbuf_reader_lost(r) - batch_before == 3000);

  /* inspect and list see it; remove refuses while it is held. */
  circbuf_info info;
  circbuf_info_init(&info);
  CHECK(circbuf_inspect(name, &info) == 0);
  CHECK(info.kind == CIRCBUF_KIND_RING && info.capacity == 65536 && info.writer_status == CIRCBUF_WRITER_ALIVE);
  CHECK(info.writer_pid == (int32_t)getpid() && info.refcount == 2 && info.corrupt == 0 && info.damaged == 0);
  CHECK(info.messages == ws.messages + 10 + 10 + 3000 && strcmp(info.name, name) == 0 && info.stale == 0);
  circbuf_info listed[4];
  for (int i = 0; i < 4; ++i) circbuf_info_init(&listed[i]);
  char pattern[80];
  snprintf(pattern, sizeof pattern, "%s*", name);
  CHECK(circbuf_list(pattern, listed, 4) == 2); /* the ring and its data segment */
  CHECK(listed[0].kind == CIRCBUF_KIND_RING && strcmp(listed[0].name, name) == 0);
  CHECK(listed[1].kind == CIRCBUF_KIND_SEGMENT);
  CHECK(circbuf_list(pattern, listed, 1) == 2); /* found 2, filled 1 */
  CHECK(circbuf_list(pattern, NULL, 0) == 2);
  CHECK_ERROR(circbuf_remove(name, 0), CIRCBUF_E_BUSY, "live processes");

  circbuf_writer_close(w);
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY);
  CHECK(circbuf_reader_wait(r, 1000000000) == CIRCBUF_WAIT_CLOSED);
  CHECK(circbuf_reader_writer_status(r) == CIRCBUF_WRITER_CLOSED);
  circbuf_reader_request_stop(r);
  CHECK(circbuf_reader_wait(r, -1) == CIRCBUF_WAIT_STOPPED); /* no limit, but stopped */
  circbuf_reader_clear_stop(r);
  circbuf_reader_close(r);
  CHECK(circbuf_inspect(name, &info) == CIRCBUF_E_NOENT); /* the last one out removed it */
  CHECK(circbuf_remove(name, 0) == CIRCBUF_E_NOENT);
}

/* Gaps: a writer that forwards another stream skips what was lost upstream
 * (circbuf_writer_skip), and a reader counts it as lost where it happened. */
static void Gaps(void) {
  char name[64];
  strcpy(name, NewName());
  circbuf_writer* w = NULL;
  CHECK(circbuf_writer_open(name, 65536, NULL, &w) == 0);
  if (w == NULL) return;
  circbuf_reader* r = NULL;
  CHECK(circbuf_reader_open(name, 0, NULL, &r) == 0);
  if (r == NULL) {
    circbuf_writer_close(w);
    return;
  }
  unsigned char got[64];
  CHECK(circbuf_write(w, "before", 6) == 0);
  uint64_t const next = circbuf_writer_next_sequence(w);
  CHECK(next == 1);
  CHECK(circbuf_writer_next_sequence(NULL) == 0);
  CHECK_ERROR(circbuf_writer_skip(NULL, 1), CIRCBUF_E_INVALID, "writer is NULL");
  CHECK(circbuf_writer_skip(w, 0) == 0 && circbuf_writer_next_sequence(w) == next);
  CHECK(circbuf_writer_skip(w, 9) == 0 && circbuf_writer_next_sequence(w) == next + 9);
  CHECK(circbuf_write(w, "after", 5) == 0);
  CHECK(circbuf_read(r, got, sizeof got) == 6 && memcmp(got, "before", 6) == 0);
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_LAPPED);
  CHECK(circbuf_reader_last_loss(r) == 9 && circbuf_reader_lost(r) == 9);
  CHECK(circbuf_read(r, got, sizeof got) == 5 && memcmp(got, "after", 5) == 0);
  CHECK(circbuf_read(r, got, sizeof got) == CIRCBUF_EMPTY);
  circbuf_writer_stats ws;
  ws.size = sizeof ws;
  CHECK(circbuf_writer_stats_get(w, &ws) == 0 && ws.messages == 2);
  circbuf_reader_close(r);
  circbuf_writer_close(w);
}

int main(void) {
  BadInput();
  RoundTrip();
  Gaps();
  if (g_failures != 0) {
    fprintf(stderr, "%d of %d checks failed\n", g_failures, g_checks);
    return 1;
  }
  printf("all %d checks passed\n", g_checks);
  return 0;
}
