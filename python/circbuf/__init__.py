"""circbuf: one writer process, many reader processes, a circular buffer in shared memory.

A thin ctypes binding over the C ABI of libcircbuf.so.0 (capi/circbuf.h), for CPython 3.8+.
The library is looked up as $CIRCBUF_LIBRARY, then next to the installed package
(<prefix>/lib/<multiarch>/, <prefix>/lib/, <prefix>/lib64/), then on the dynamic loader's
search path; importing raises ImportError naming every place tried.

    import circbuf

    with circbuf.Writer("/quotes", 1 << 20) as writer:      # creates the ring (1 MiB)
        writer.write(b"hello")

    with circbuf.Reader("/quotes", start="oldest") as reader:
        for message in reader:                              # bytes; ends when the writer leaves
            print(message)

Outcomes of a read, the Pythonic way
------------------------------------
* Nothing new: read() returns None, read_into() 0, read_batch() []. None of them blocks;
  wait() and iteration sleep (with the GIL released).
* Lapped (the writer overwrote messages this reader had not read yet; a reader never gets
  a torn message): by default the loss is counted (``reader.lost``, ``reader.last_loss``,
  ``reader.stats.laps``) and the read goes on with the next intact message, so read()
  returns that message. A reader opened with ``strict=True`` raises circbuf.LappedError
  (``.lost`` messages) instead, after it has resynchronised: the next read continues.
* Buffer too small: cannot happen in read() or read_batch() (they read into an internal
  buffer of the largest message, 65535 bytes, allocated once per reader). read_into()
  raises circbuf.BufferTooSmallError (``.needed`` bytes); the message stays unread, so a
  read into a larger buffer gets it, and skip() passes over it.
* Corrupt contents (or a truncated segment): circbuf.CorruptError.

Errors
------
C error codes raise exceptions that derive both from circbuf.Error and from the builtin a
Python programmer expects, carrying circbuf_last_error()'s message:

    CIRCBUF_E_NOENT     RingNotFoundError      (FileNotFoundError)
    CIRCBUF_E_PERM      RingPermissionError    (PermissionError)
    CIRCBUF_E_INVALID   InvalidArgumentError   (ValueError)
    CIRCBUF_E_CAPACITY  CapacityMismatchError  (ValueError)
    CIRCBUF_E_BUSY      BusyError              (OSError, errno EBUSY)
    CIRCBUF_E_NOTRING   NotARingError          (ValueError)
    CIRCBUF_E_STATE     StateError             (OSError, errno EIO)
    CIRCBUF_E_NOMEM     OutOfMemoryError       (MemoryError)
    CIRCBUF_E_SYSTEM    SystemCallError        (OSError)

A closed Writer or Reader raises circbuf.ClosedError (a ValueError) on every use but
close() (idempotent) and request_stop() (a no-op); it never crashes. Wrong argument types
raise TypeError (a str where bytes are needed, a float capacity).

Threads and the GIL
-------------------
A handle is used by one thread at a time (as in C), except that request_stop() may come
from any thread or a signal handler while another thread waits, and close() may come from
another thread while one waits or iterates (it stops the wait first). Calls that may block
(open, close, wait, iteration when it waits, inspect, list, remove, writer_status) release
the GIL: ctypes.CDLL releases it around every foreign call. The per-message calls that never
block (write, read, read_into, read_batch, skip, the counters) keep it, through
ctypes.PyDLL, because releasing and re-taking it would cost more than the call itself.
"""

from __future__ import annotations

from . import _lib, _ring
from ._errors import (
    BufferTooSmallError,
    BusyError,
    CapacityMismatchError,
    ClosedError,
    CorruptError,
    Error,
    InvalidArgumentError,
    LappedError,
    NotARingError,
    OutOfMemoryError,
    RingNotFoundError,
    RingPermissionError,
    StateError,
    SystemCallError,
)
from ._ring import (
    Reader,
    ReaderStats,
    RingInfo,
    Writer,
    WriterStats,
    library_version,
    list_rings,
    remove,
)

__version__ = "0.1.0"

#: The path (or soname) libcircbuf was loaded from.
library_path: str = _lib.path

#: True if the per-message calls go through the _circbuf_speedups extension (built with the
#: library where python3-dev is installed), False if through ctypes (docs/python.md, "Speed").
SPEEDUPS: bool = _ring.SPEEDUPS

MAX_MESSAGE: int = _lib.MAX_MESSAGE  #: the largest message any ring accepts
MIN_CAPACITY: int = _lib.MIN_CAPACITY
MAX_CAPACITY: int = _lib.MAX_CAPACITY

#: circbuf.list(pattern="") -> list[RingInfo]: every segment matching the glob (list_rings).
list = list_rings  # noqa: A001 - the API's name; the builtin stays reachable as builtins.list
#: circbuf.inspect(name) -> RingInfo: one segment seen from outside.
inspect = _ring.inspect

# Not in __all__: list and inspect, which `from circbuf import *` would let shadow the builtin
# list and the standard library's inspect module (use circbuf.list, circbuf.inspect).
__all__ = [
    "BufferTooSmallError",
    "BusyError",
    "CapacityMismatchError",
    "ClosedError",
    "CorruptError",
    "Error",
    "InvalidArgumentError",
    "LappedError",
    "MAX_CAPACITY",
    "MAX_MESSAGE",
    "MIN_CAPACITY",
    "NotARingError",
    "OutOfMemoryError",
    "Reader",
    "ReaderStats",
    "RingInfo",
    "RingNotFoundError",
    "RingPermissionError",
    "SPEEDUPS",
    "StateError",
    "SystemCallError",
    "Writer",
    "WriterStats",
    "library_path",
    "library_version",
    "list_rings",
    "remove",
]
