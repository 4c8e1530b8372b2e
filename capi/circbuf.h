/* circbuf.h: the C ABI of circbuf (libcircbuf.so.0), for C and for every
 * language that binds to C (the Python package in python/ is one).
 *
 * The same rings as the C++ API (import circbuf;): one writer process, any
 * number of reader processes, messages of 1 .. 65535 bytes in a circular
 * buffer in shared memory. A reader that falls behind is overwritten and
 * told exactly how many messages it lost; it never gets a torn message. The
 * protocol and the layout are the C++ library's (modules/ring/layout.cppm);
 * this header adds nothing to them.
 *
 * C11, usable from C++ (extern "C"); no C++ type crosses it, no exception
 * leaves it, and no input makes it abort: NULL handles, bad sizes and bad
 * names return CIRCBUF_E_INVALID with a message.
 *
 * ---- Errors -------------------------------------------------------------------
 * Every function that can fail returns an int: >= 0 on success (a length, a
 * count or an outcome), or one of the negative CIRCBUF_E_* codes. After an
 * error, circbuf_last_error() is a one-line message naming what was wrong
 * (thread-local: each thread sees its own last error). A call that succeeds
 * leaves it as it was: read it right after a call that returned an error
 * (the pointer stays valid until that thread's next failing call).
 *
 * ---- Threads ------------------------------------------------------------------
 * A handle is used by one thread at a time (as the C++ Reader and Writer),
 * except circbuf_reader_request_stop, which any thread or a signal handler
 * may call while another thread waits. Distinct handles never interfere.
 *
 * ---- ABI ------------------------------------------------------------------------
 * Part of the ABI: the functions below, the constants, and the layout of
 * circbuf_writer_options, circbuf_reader_options, circbuf_poll_result,
 * circbuf_reader_stats, circbuf_writer_stats and circbuf_info. Options and
 * info structs begin with their own size (set by the caller: the *_init
 * functions do it), so later versions can grow them at the end. The handles
 * are opaque. The exported symbols are listed in capi/circbuf.symbols; CI
 * compares the built library with that list.
 */
#ifndef CIRCBUF_H
#define CIRCBUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CIRCBUF_ABI_VERSION 0 /* the soname's number: libcircbuf.so.0 */

/* ---- Limits (the C++ library's, modules/ring/layout.cppm) ---- */
#define CIRCBUF_MAX_MESSAGE 65535u
#define CIRCBUF_MIN_CAPACITY 4096u
#define CIRCBUF_MAX_CAPACITY 52428800u /* 50 MiB */

/* ---- Outcomes of a read (the C++ kEmpty, kLapped, kBufferTooSmall, kCorrupt) ---- */
#define CIRCBUF_EMPTY 0             /* nothing new */
#define CIRCBUF_LAPPED (-1)         /* overwritten while behind; circbuf_reader_last_loss() messages lost */
#define CIRCBUF_BUFFER_TOO_SMALL (-2) /* the next message is circbuf_reader_pending_size() bytes; it stays unread */
#define CIRCBUF_CORRUPT (-3)        /* the ring's contents break its rules (or it was truncated) */

/* ---- Errors ---- */
#define CIRCBUF_E_INVALID (-10) /* bad argument: NULL handle or pointer, bad size, bad name, bad option */
#define CIRCBUF_E_NOENT (-11)   /* no such ring */
#define CIRCBUF_E_PERM (-12)    /* permission denied */
#define CIRCBUF_E_BUSY (-13)    /* another live writer holds the ring; or live processes (remove) */
#define CIRCBUF_E_NOTRING (-14) /* not a circbuf ring, another layout version, or its State is corrupt */
#define CIRCBUF_E_CAPACITY (-15) /* the ring exists with another capacity */
#define CIRCBUF_E_STATE (-16)   /* not now: commit without a claim, a truncated ring (EIO) */
#define CIRCBUF_E_NOMEM (-17)   /* out of memory */
#define CIRCBUF_E_SYSTEM (-18)  /* any other system error (the message has errno's text) */

/* ---- Where a new reader starts (C++ StartAt) and where a lapped one resumes (C++ OnLap) ---- */
#define CIRCBUF_START_LATEST 0 /* the newest message (default) */
#define CIRCBUF_START_OLDEST 1 /* the oldest still intact */
#define CIRCBUF_START_NEXT 2   /* the next one written */
#define CIRCBUF_ON_LAP_HEADROOM 0 /* default: some way ahead of the oldest, so it is not lapped again at once */
#define CIRCBUF_ON_LAP_OLDEST 1
#define CIRCBUF_ON_LAP_LATEST 2

/* ---- What circbuf_reader_wait returned for (C++ WaitResult) ---- */
#define CIRCBUF_WAIT_STOPPED 0   /* circbuf_reader_request_stop was called (sticky) */
#define CIRCBUF_WAIT_READY 1     /* something to read: a message, a lap or corrupt contents */
#define CIRCBUF_WAIT_TRUNCATED 2 /* a segment of the ring was truncated (reads: CIRCBUF_CORRUPT) */
#define CIRCBUF_WAIT_TAKEN_OVER 3 /* a new writer attached */
#define CIRCBUF_WAIT_CLOSED 4    /* nothing to read and the writer closed the ring */
#define CIRCBUF_WAIT_DEAD 5      /* nothing to read and the writer died */
#define CIRCBUF_WAIT_TIMEOUT 6   /* nothing to read by the deadline */

/* ---- The writer as a reader or a look sees it (C++ WriterStatus) ---- */
#define CIRCBUF_WRITER_NONE 0   /* none has attached yet */
#define CIRCBUF_WRITER_ALIVE 1
#define CIRCBUF_WRITER_CLOSED 2 /* the last writer closed cleanly */
#define CIRCBUF_WRITER_DEAD 3   /* it died without closing; a new writer may take over */

/* Huge pages for a new ring's records (C++ HugePages; docs/huge-pages.md) */
#define CIRCBUF_HUGE_PAGES_AS_MOUNTED 0 /* only if the mount forces them */
#define CIRCBUF_HUGE_PAGES_PREFER 1     /* ask; 4 KiB pages if none come */
#define CIRCBUF_HUGE_PAGES_REQUIRE 2    /* ask; creation fails (CIRCBUF_E_SYSTEM) if none come */

typedef struct circbuf_writer circbuf_writer; /* opaque */
typedef struct circbuf_reader circbuf_reader; /* opaque */

/* The calling thread's last error message ("" if none). Never NULL. */
const char* circbuf_last_error(void);
/* "0.1.0" */
const char* circbuf_version(void);

/* ---- Writer ------------------------------------------------------------------------ */
typedef struct circbuf_writer_options {
  uint32_t size;       /* sizeof(circbuf_writer_options) */
  uint32_t mode;       /* permissions of new segments (default 0600) */
  int32_t huge_pages;  /* CIRCBUF_HUGE_PAGES_* (default AS_MOUNTED) */
  int32_t reserved;    /* 0 (checked: CIRCBUF_E_INVALID otherwise) */
} circbuf_writer_options;
void circbuf_writer_options_init(circbuf_writer_options* options);

/* Creates ring `name` ("/quotes") with `capacity` bytes of record space
 * (4096 .. 52428800, rounded up to 64), or attaches to it, and becomes its
 * writer. `options` may be NULL (defaults). On success *out is the handle. */
int circbuf_writer_open(const char* name, uint64_t capacity, const circbuf_writer_options* options,
                        circbuf_writer** out);
/* Marks the ring closed cleanly and releases it. NULL: nothing. */
void circbuf_writer_close(circbuf_writer* writer);

/* Publishes one message of 1 .. circbuf_writer_max_message() bytes; never
 * waits for a reader. 0, or an error (the ring is unchanged). */
int circbuf_write(circbuf_writer* writer, const void* data, size_t size);
/* Zero-copy: room for `size` bytes in the ring at *slot; fill them, then
 * circbuf_commit(n <= size) publishes n bytes, or circbuf_abort drops it.
 * Nothing is visible to readers before the commit. */
int circbuf_claim(circbuf_writer* writer, size_t size, void** slot);
int circbuf_commit(circbuf_writer* writer, size_t size);
int circbuf_abort(circbuf_writer* writer);
/* Skips `count` sequence numbers (C++ Writer::Skip): the next message gets
 * circbuf_writer_next_sequence() + count, and every reader that reaches this
 * point reads CIRCBUF_LAPPED with circbuf_reader_last_loss() == count. For a
 * writer that forwards a stream with its own numbers (a bridge, a replay):
 * messages lost upstream stay counted downstream. count 0: nothing. 0, or an
 * error. */
int circbuf_writer_skip(circbuf_writer* writer, uint64_t count);
/* The sequence number the next message gets (0 for a NULL handle). */
uint64_t circbuf_writer_next_sequence(const circbuf_writer* writer);

typedef struct circbuf_writer_stats {
  uint32_t size;      /* sizeof(circbuf_writer_stats) */
  uint32_t took_over; /* 1: this writer took the ring over from one that died */
  uint64_t messages;  /* messages published by this writer */
  uint64_t bytes;     /* their payload bytes */
  uint64_t laps;      /* times it wrapped around the ring */
} circbuf_writer_stats;
int circbuf_writer_stats_get(const circbuf_writer* writer, circbuf_writer_stats* out);
/* Bytes of record space, and the largest message (0 for a NULL handle). */
uint64_t circbuf_writer_capacity(const circbuf_writer* writer);
size_t circbuf_writer_max_message(const circbuf_writer* writer);

/* ---- Reader ------------------------------------------------------------------------ */
typedef struct circbuf_reader_options {
  uint32_t size;               /* sizeof(circbuf_reader_options) */
  int32_t start;               /* CIRCBUF_START_* (default LATEST) */
  int32_t on_lap;              /* CIRCBUF_ON_LAP_* (default HEADROOM) */
  uint32_t wait_for_buffer_ms; /* wait up to this long for the ring to appear (default 0: fail at once) */
  uint32_t liveness_ms;        /* how often a waiting reader checks that the writer lives (default 100) */
  uint32_t reserved;           /* 0 (checked: CIRCBUF_E_INVALID otherwise) */
} circbuf_reader_options;
void circbuf_reader_options_init(circbuf_reader_options* options);

/* Attaches to ring `name`. capacity 0: whatever it has (else it must match).
 * `options` may be NULL (defaults). */
int circbuf_reader_open(const char* name, uint64_t capacity, const circbuf_reader_options* options,
                        circbuf_reader** out);
void circbuf_reader_close(circbuf_reader* reader); /* NULL: nothing */

/* Copies the next message into buffer[0 .. capacity) and returns its length
 * (> 0), or CIRCBUF_EMPTY, CIRCBUF_LAPPED, CIRCBUF_BUFFER_TOO_SMALL,
 * CIRCBUF_CORRUPT, or an error. Never blocks. On any return but a length the
 * buffer may hold bytes of a message being overwritten: ignore them. */
int circbuf_read(circbuf_reader* reader, void* buffer, size_t capacity);

/* Zero-copy: calls view(data, size, context) with the next message where it
 * lies in the ring (read-only), then checks that the writer did not
 * overwrite it meanwhile: returns its length if the bytes `view` saw were
 * the message's; CIRCBUF_LAPPED if they may not have been, or
 * CIRCBUF_CORRUPT if the ring was found truncated or changed meanwhile (in
 * both cases throw away what view made of them); or an outcome as
 * circbuf_read when there was nothing to view (view not called). `view`
 * must not call into this reader. */
typedef void (*circbuf_view_fn)(const void* data, size_t size, void* context);
int circbuf_read_in_place(circbuf_reader* reader, circbuf_view_fn view, void* context);

/* Batch: hands up to `max` messages, each copied out of the ring and
 * validated first, to handler(data, size, context); laps on the way are
 * counted and passed. Returns the number delivered (>= 0) or an error; `out`
 * (may be NULL) says what it saw. The copy buffer is allocated on the first
 * call (64 KiB), not per message. */
typedef struct circbuf_poll_result {
  uint32_t size;      /* sizeof(circbuf_poll_result) */
  int32_t stopped;    /* why it returned: 1 (max delivered), CIRCBUF_EMPTY or CIRCBUF_CORRUPT */
  uint64_t delivered; /* messages handed to the handler */
  uint64_t laps;      /* laps on the way */
  uint64_t lost;      /* messages those laps skipped */
} circbuf_poll_result;
typedef void (*circbuf_handler_fn)(const void* data, size_t size, void* context);
int circbuf_poll(circbuf_reader* reader, circbuf_handler_fn handler, void* context, size_t max,
                 circbuf_poll_result* out);

/* Batch copy, for bindings where a callback per message costs too much (the
 * Python package): copies up to `max` messages one after another into
 * buffer[0 .. capacity), packed (message k starts where k - 1 ends), and
 * their lengths into sizes[0 .. max); laps on the way are counted in `out`
 * (may be NULL) and passed. Returns how many it copied (>= 0), or an error;
 * CIRCBUF_BUFFER_TOO_SMALL only if the first message does not fit (it
 * stays unread, as after circbuf_read). It stops at max messages (or after
 * max laps), at a message that does not fit in what is left (stopped 1: it
 * stays unread for the next call), at empty or at corrupt (stopped
 * CIRCBUF_EMPTY or CIRCBUF_CORRUPT). `out` is filled on every return. */
int circbuf_read_batch(circbuf_reader* reader, void* buffer, size_t capacity, uint32_t* sizes, size_t max,
                       circbuf_poll_result* out);

/* Passes over the message that CIRCBUF_BUFFER_TOO_SMALL left unread (counted
 * as skipped, not lost): returns its length (> 0), or an outcome as
 * circbuf_read when there was no message to skip. */
int circbuf_skip(circbuf_reader* reader);

/* Sleeps until there is something to read, the writer closes or dies, or
 * `timeout_ns` passes (< 0: no limit); returns CIRCBUF_WAIT_*, or an error.
 * CLOSED, DEAD and TAKEN_OVER are events: each is reported once per writer
 * (the next wait on a closed ring sleeps until its timeout, or a new writer
 * comes); circbuf_reader_writer_status says what the writer is now. */
int circbuf_reader_wait(circbuf_reader* reader, int64_t timeout_ns);
/* Makes a current or the next circbuf_reader_wait return
 * CIRCBUF_WAIT_STOPPED. Async-signal-safe; any thread. Sticky until
 * circbuf_reader_clear_stop. */
void circbuf_reader_request_stop(circbuf_reader* reader);
void circbuf_reader_clear_stop(circbuf_reader* reader);

/* Counters (0 for a NULL handle). */
uint64_t circbuf_reader_delivered(const circbuf_reader* reader);
uint64_t circbuf_reader_lost(const circbuf_reader* reader);      /* messages lost to overwrites, all told */
uint64_t circbuf_reader_last_loss(const circbuf_reader* reader); /* those of the last CIRCBUF_LAPPED */
size_t circbuf_reader_pending_size(const circbuf_reader* reader); /* after CIRCBUF_BUFFER_TOO_SMALL */
uint64_t circbuf_reader_capacity(const circbuf_reader* reader);
size_t circbuf_reader_max_message(const circbuf_reader* reader);

typedef struct circbuf_reader_stats {
  uint32_t size;      /* sizeof(circbuf_reader_stats) */
  uint32_t reserved;
  uint64_t delivered; /* messages delivered */
  uint64_t lost;      /* messages lost to overwrites */
  uint64_t laps;      /* CIRCBUF_LAPPED outcomes */
  uint64_t corrupt;   /* CIRCBUF_CORRUPT outcomes */
  uint64_t skipped;   /* messages passed over by circbuf_skip */
} circbuf_reader_stats;
int circbuf_reader_stats_get(const circbuf_reader* reader, circbuf_reader_stats* out);
/* CIRCBUF_WRITER_*, or an error (a system call: slow path). */
int circbuf_reader_writer_status(const circbuf_reader* reader);

/* ---- Rings seen from outside (C++ circbuf.ring:inspect: no attach, nothing mapped) ---- */
#define CIRCBUF_KIND_FOREIGN 0    /* not circbuf's */
#define CIRCBUF_KIND_SEGMENT 1    /* a circbuf segment that is not a ring's State (e.g. a data segment) */
#define CIRCBUF_KIND_RING 2       /* a ring */
#define CIRCBUF_KIND_RING_OTHER 3 /* a ring of another layout version */
#define CIRCBUF_KIND_UNFINISHED 4 /* a creator has not finished it, or died first */
#define CIRCBUF_NAME_BYTES 256
#define CIRCBUF_PROBLEM_BYTES 512

typedef struct circbuf_info {
  uint32_t size;              /* sizeof(circbuf_info) */
  int32_t kind;               /* CIRCBUF_KIND_* */
  char name[CIRCBUF_NAME_BYTES]; /* "/quotes", NUL-terminated */
  uint64_t capacity;          /* rings: bytes of record space */
  uint64_t tail;              /* rings: the writer's position in the stream */
  uint64_t messages;          /* rings: messages written */
  uint64_t writer_epoch;
  uint32_t max_message;
  uint32_t refcount;          /* attachments recorded (dead ones until noticed) */
  int32_t writer_pid;
  int32_t writer_status;      /* CIRCBUF_WRITER_* */
  int32_t stale;              /* 1: no live process holds it */
  int32_t sleeping;           /* 1: the wake word is armed: a reader went to sleep in wait since the
                                 writer's last message (it may have timed out since) */
  int32_t corrupt;            /* 1: the State breaks the rules (problem says which) */
  int32_t damaged;            /* 1: a segment file is not as long as its header says */
  int32_t open_errno;         /* list only: it could not be opened (errno) */
  int32_t reserved;
  char problem[CIRCBUF_PROBLEM_BYTES]; /* corrupt or damaged: what (NUL-terminated, cut to fit) */
} circbuf_info;
void circbuf_info_init(circbuf_info* info);

/* Looks at segment `name`; fills *out (its size field set by the caller). */
int circbuf_inspect(const char* name, circbuf_info* out);
/* Every segment whose name matches the glob `pattern` (NULL or "": all):
 * fills out[0 .. min(max, found)) (each out[i].size set by the caller, or
 * by circbuf_info_init) and returns how many were found (may exceed max). */
int circbuf_list(const char* pattern, circbuf_info* out, size_t max);
/* Removes ring `name` (both segments). 0 removed; CIRCBUF_E_NOENT nothing
 * there; CIRCBUF_E_BUSY live processes hold it (force: remove anyway). */
int circbuf_remove(const char* name, int force);

#ifdef __cplusplus
}
#endif

#endif /* CIRCBUF_H */
