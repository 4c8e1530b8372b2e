"""Writer, Reader, and rings seen from outside (inspect, list, remove)."""

from __future__ import annotations

import math
import numbers
import operator
import os
import threading
import time
from ctypes import addressof, byref, c_char, c_size_t, c_uint32, c_void_p, create_string_buffer, pointer
from ctypes import string_at
from itertools import accumulate
from ctypes import sizeof
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Union

from . import _lib
from ._errors import (
    BufferTooSmallError,
    ClosedError,
    CorruptError,
    Error,
    InvalidArgumentError,
    LappedError,
    from_code,
)

# Any object with the buffer protocol is accepted at run time (numpy arrays, array.array,
# mmap, ...); before PEP 688 (Python 3.12) a type checker cannot spell "has a buffer".
ReadableBuffer = Union[bytes, bytearray, memoryview, Any]
WritableBuffer = Union[bytearray, memoryview, Any]

# The per-message entry points, bound once: a module global is cheaper to reach than an
# attribute chain, and these run once per message.
_write = _lib.write
_read = _lib.read
_read_batch = _lib.read_batch
# read_batch(): one packed copy buffer (room for many small messages and at
# least one of the largest) and a lengths array, allocated on first use.
_BATCH_BYTES = 1 << 20
_last_loss = _lib.reader_last_loss
_size_t = c_size_t
_void_p = c_void_p
_EMPTY = _lib.EMPTY
_LAPPED = _lib.LAPPED

# wait() sleeps in slices of at most this long, so that signal handlers (KeyboardInterrupt
# above all) run within this delay: CPython runs them only between bytecodes, never while a
# foreign call is in progress.
_WAIT_SLICE_NS = 200_000_000

_CORRUPT_TEXT = "the ring's contents break its rules (or a segment of it was truncated)"


# ---- Argument checks -----------------------------------------------------------------------------
def _encode_name(name: Union[str, bytes], what: str = "ring name") -> bytes:
    if isinstance(name, str):
        raw = name.encode("utf-8", "surrogateescape")
    elif isinstance(name, bytes):
        raw = name
    else:
        raise TypeError(f"{what} must be str, not {type(name).__name__}")
    # A C string ends at the first NUL: "/a\0b" would silently become "/a".
    if b"\0" in raw:
        raise InvalidArgumentError(f"{what} {name!r}: contains a NUL character")
    return raw


def _unsigned(value: int, what: str, bits: int = 64) -> int:
    number = operator.index(value)  # TypeError for float, str, None
    if number < 0 or number >= 1 << bits:
        raise InvalidArgumentError(f"{what} {number} is out of range (0 .. 2**{bits} - 1)")
    return number


def _choice(value: str, choices: dict, what: str) -> int:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if value not in choices:
        raise InvalidArgumentError(f"{what} {value!r}: must be one of {', '.join(choices)}")
    return choices[value]


def _seconds(value: Optional[float], what: str) -> Optional[float]:
    if value is None:
        return None
    if not isinstance(value, numbers.Real):  # float("5") would accept a str
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise InvalidArgumentError(f"{what} {value!r}: must be >= 0 seconds (or None)")
    return seconds


# ---- Statistics and ring information -------------------------------------------------------------
@dataclass(frozen=True)
class WriterStats:
    """What one Writer published (circbuf_writer_stats)."""

    took_over: bool  #: it took the ring over from a writer that died
    messages: int  #: messages published by this writer
    bytes: int  #: their payload bytes
    laps: int  #: times it wrapped around the ring


@dataclass(frozen=True)
class ReaderStats:
    """What one Reader saw (circbuf_reader_stats)."""

    delivered: int  #: messages delivered
    lost: int  #: messages lost to overwrites
    laps: int  #: laps (each one a CIRCBUF_LAPPED outcome)
    corrupt: int  #: corrupt outcomes
    skipped: int  #: messages passed over by skip()


@dataclass(frozen=True)
class RingInfo:
    """A segment seen from outside, without attaching (circbuf_info).

    ``kind`` is "ring", "ring-other" (another layout version), "segment" (a circbuf segment
    that is not a ring's State, e.g. a data segment), "unfinished" (its creator has not
    finished it, or died first) or "foreign" (not circbuf's). ``writer_status`` is "none",
    "alive", "closed" or "dead". The ring fields are 0 for other kinds.
    """

    name: str
    kind: str
    capacity: int
    tail: int
    messages: int
    writer_epoch: int
    max_message: int
    refcount: int  #: attachments recorded (dead ones until noticed)
    writer_pid: int
    writer_status: str
    stale: bool  #: no live process holds it
    sleeping: bool  #: a reader is asleep in wait()
    corrupt: bool  #: the State breaks the rules (problem says which)
    damaged: bool  #: a segment file is not as long as its header says
    open_errno: int  #: list() only: it could not be opened (errno)
    problem: str


def _name_of(table: tuple, index: int) -> str:
    return table[index] if 0 <= index < len(table) else f"unknown({index})"


def _ring_info(info: _lib.InfoStruct) -> RingInfo:
    return RingInfo(
        name=info.name.decode("utf-8", "surrogateescape"),
        kind=_name_of(_lib.KIND_NAMES, info.kind),
        capacity=info.capacity,
        tail=info.tail,
        messages=info.messages,
        writer_epoch=info.writer_epoch,
        max_message=info.max_message,
        refcount=info.refcount,
        writer_pid=info.writer_pid,
        writer_status=_name_of(_lib.WRITER_STATUS_NAMES, info.writer_status),
        stale=bool(info.stale),
        sleeping=bool(info.sleeping),
        corrupt=bool(info.corrupt),
        damaged=bool(info.damaged),
        open_errno=info.open_errno,
        problem=info.problem.decode("utf-8", "replace"),
    )


def inspect(name: str) -> RingInfo:
    """Looks at segment `name` ("/quotes") without attaching to it or mapping it.

    Raises FileNotFoundError (circbuf.RingNotFoundError) if there is none, ValueError for a
    bad name, PermissionError if it cannot be read.
    """
    info = _lib.InfoStruct()
    _lib.info_init(byref(info))
    rc = _lib.inspect(_encode_name(name, "segment name"), byref(info))
    if rc < 0:
        raise from_code(rc, f"inspect({name!r})")
    return _ring_info(info)


def list_rings(pattern: str = "") -> List[RingInfo]:
    """Every circbuf segment whose name matches the glob `pattern` ("" or "*": all; a pattern
    is matched against names with their leading "/", e.g. "/quotes*"). Segments that could not
    be opened are listed with ``open_errno`` set. Exported as ``circbuf.list``."""
    raw = _encode_name(pattern if pattern is not None else "", "pattern")
    room = 64
    while True:
        infos = (_lib.InfoStruct * room)()
        for info in infos:
            _lib.info_init(byref(info))
        found = _lib.list_(raw, infos, room)
        if found < 0:
            raise from_code(found, f"list({pattern!r})")
        if found <= room:
            return [_ring_info(infos[i]) for i in range(found)]
        room = found + 16  # more appeared than there was room for: again, with room for them


def remove(name: str, force: bool = False) -> bool:
    """Removes ring `name` (both of its segments). True if it removed it, False if there was
    none. Raises circbuf.BusyError if live processes hold it, unless `force`."""
    rc = _lib.remove(_encode_name(name), 1 if force else 0)
    if rc == 0:
        return True
    if rc == _lib.E_NOENT:
        return False
    raise from_code(rc, f"remove({name!r})")


def library_version() -> str:
    """circbuf_version(): the loaded C library's version ("0.1.0")."""
    return _lib.version().decode("ascii", "replace")


# ---- Writer --------------------------------------------------------------------------------------
class Writer:
    """The one writer of ring `name`: creates it with `capacity` bytes of record space (4096 ..
    52428800, rounded up to 64) or attaches to it, and publishes messages into it.

    ``mode`` is the permission bits of new segments; ``huge_pages`` is "as-mounted", "no",
    "prefer" or "require" (docs/huge-pages.md). A context manager: ``with Writer(...) as w:``
    closes the ring cleanly at the end (readers then see "closed"). A Writer is used by one
    thread at a time. After os.fork() the child's copy must not be used: close() in the child
    only drops it (the parent's writer stays open).

    Raises: ValueError for a bad name or capacity, circbuf.CapacityMismatchError (a
    ValueError) if the ring exists with another capacity, circbuf.BusyError if another live
    writer holds it, PermissionError, circbuf.NotARingError if `name` is not a ring.
    """

    def __init__(self, name: str, capacity: int, *, mode: int = 0o600,
                 huge_pages: str = "as-mounted") -> None:
        self._h: Optional[c_void_p] = None  # first, so that __del__ copes with a failed __init__
        self._close_lock = threading.RLock()  # RLock: a signal handler may re-enter close()
        raw = _encode_name(name)
        size = _unsigned(capacity, "capacity")
        mode_bits = operator.index(mode)
        if not 0 <= mode_bits <= 0o7777:
            raise InvalidArgumentError(f"mode {mode_bits:#o}: must be permission bits "
                                       "(0 .. 0o7777)")
        options = _lib.WriterOptions()
        _lib.writer_options_init(byref(options))
        options.mode = mode_bits
        options.huge_pages = _choice(huge_pages, _lib.HUGE_PAGES, "huge_pages")
        handle = c_void_p()
        rc = _lib.writer_open(raw, size, byref(options), byref(handle))
        if rc < 0:
            raise from_code(rc, f"Writer({name!r})")
        if not handle:
            raise Error(f"Writer({name!r}): circbuf_writer_open returned {rc} without a handle")
        self._h = handle
        self._pid = os.getpid()
        self.name = name
        self._capacity = int(_lib.writer_capacity(handle))
        self._max_message = int(_lib.writer_max_message(handle))
        self._view = _lib.PyBuffer()  # reused by every write of a non-bytes buffer
        self._view_ptr = pointer(self._view)

    # ---- publishing ----
    def write(self, data: ReadableBuffer) -> int:
        """Publishes one message of 1 .. max_message bytes and returns its length; never waits
        for a reader. `data` is any C-contiguous bytes-like object (bytes, bytearray,
        memoryview, array.array, a numpy array: its bytes); it is not copied on the Python
        side (the C layer copies it into the ring).

        Raises ValueError (circbuf.InvalidArgumentError) for an empty or too large message,
        TypeError for a str or another object without the buffer protocol, BufferError for
        a non-contiguous buffer, ValueError (circbuf.ClosedError) once closed.
        """
        if type(data) is bytes:
            # bytes go straight through: ctypes passes a pointer to their contents.
            n = len(data)
            rc = _write(self._h, data, _size_t(n))
            if rc == 0:
                return n
            raise self._error(rc, n)
        return self._write_buffer(data)

    def _write_buffer(self, data: ReadableBuffer) -> int:
        if isinstance(data, str):
            raise TypeError("write() needs a bytes-like object, not str (encode it first)")
        get_buffer = _lib.get_buffer
        if get_buffer is None:  # not CPython: a copy, the only portable way for read-only data
            with memoryview(data) as view:
                payload = view.tobytes()
            return self.write(payload)
        view = self._view
        # Takes the buffer's address without copying, read-only buffers included; raises
        # TypeError (no buffer protocol) or BufferError (not contiguous).
        get_buffer(data, self._view_ptr, _lib.PYBUF_SIMPLE)
        try:
            n = view.len
            rc = _write(self._h, _void_p(view.buf), _size_t(n))
        finally:
            _lib.release_buffer(self._view_ptr)
        if rc == 0:
            return n
        raise self._error(rc, n)

    def skip(self, count: int) -> None:
        """Skips `count` sequence numbers: the next message gets next_sequence + count, and
        every reader that reaches this point reads a lap of `count` (reader.last_loss ==
        count, reader.lost grows by it). For a writer that forwards a stream with its own
        numbers (a bridge, a replayed recording), so that what was lost upstream stays
        counted downstream. count 0 does nothing.

        Raises ValueError for a negative count, OverflowError for one of 2**64 or more,
        ValueError (circbuf.ClosedError) once closed.
        """
        if count < 0:
            raise ValueError(f"skip({count}): the count must be >= 0")
        if count >= 1 << 64:
            raise OverflowError(f"skip({count}): the count must be < 2**64")
        rc = _lib.writer_skip(self._live(), count)
        if rc < 0:
            raise from_code(rc, f"skip({count})")

    @property
    def next_sequence(self) -> int:
        """The sequence number the next message gets."""
        return int(_lib.writer_next_sequence(self._live()))

    def _error(self, rc: int, size: int) -> Error:
        if self._h is None:
            return ClosedError(f"write() on a closed circbuf.Writer ({self.name!r})")
        return from_code(rc, f"write({size} bytes)")

    # ---- state ----
    def _live(self) -> c_void_p:
        handle = self._h
        if handle is None:
            raise ClosedError(f"operation on a closed circbuf.Writer ({self.name!r})")
        return handle

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._h is None

    @property
    def capacity(self) -> int:
        """Bytes of record space."""
        self._live()
        return self._capacity

    @property
    def max_message(self) -> int:
        """The largest message this ring accepts (65535 from a capacity of 149888 up)."""
        self._live()
        return self._max_message

    @property
    def stats(self) -> WriterStats:
        """Messages and bytes published by this writer, and its laps around the ring."""
        out = _lib.WriterStatsStruct()
        out.size = sizeof(out)
        rc = _lib.writer_stats_get(self._live(), byref(out))
        if rc < 0:
            raise from_code(rc, "Writer.stats")
        return WriterStats(bool(out.took_over), out.messages, out.bytes, out.laps)

    def close(self) -> None:
        """Marks the ring closed cleanly and releases it (the last process to leave a ring
        removes it). Idempotent."""
        with self._close_lock:
            handle, self._h = self._h, None
        if handle is not None and self._pid == os.getpid():
            _lib.writer_close(handle)

    def __enter__(self) -> "Writer":
        self._live()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self._h is None else f"capacity={self._capacity}"
        return f"<circbuf.Writer {getattr(self, 'name', '?')!r} {state}>"


# ---- Reader --------------------------------------------------------------------------------------
def _collect(data: Any, size: int, sink: list) -> None:
    # circbuf_poll's handler: copies the validated message out of the library's buffer.
    sink.append(data[:size])


_HANDLER = _lib.HANDLER_FN(_collect)  # module-level: the C side may call it for as long as we live


class Reader:
    """A reader of ring `name`: attaches to it (waiting up to `wait_for_buffer` seconds for it
    to appear) and reads its messages, never slowing the writer down.

    ``start``: where the first read begins: "latest" (the newest message), "oldest" (the oldest
    still intact) or "next" (the next one written). ``on_lap``: where a reader that was
    overwritten resumes: "headroom" (some way ahead of the oldest, so that it is not lapped
    again at once), "oldest" or "latest". ``strict``: raise circbuf.LappedError for each lap
    instead of only counting it (see the package docstring). ``capacity``: 0 takes the ring's;
    else it must match (circbuf.CapacityMismatchError).

    Threads: a Reader is used by one thread at a time, with two exceptions: request_stop()
    may be called from any thread (or a signal handler) while another waits, and close() may
    be called from another thread while one is in wait() or iterating (it stops that wait
    first). Other concurrent use (two threads reading, close() during a read) is not
    supported.
    """

    iter_timeout: Optional[float] = None
    """Seconds that ``for message in reader`` waits for each message before raising
    TimeoutError; None (default) waits as long as the writer lives."""

    def __init__(self, name: str, *, start: str = "latest", on_lap: str = "headroom",
                 wait_for_buffer: float = 0.0, strict: bool = False, capacity: int = 0) -> None:
        self._h: Optional[c_void_p] = None  # first, so that __del__ copes with a failed __init__
        self._wait_lock = threading.RLock()  # held by wait(); close() takes it to free safely
        self._close_lock = threading.RLock()  # RLock: a signal handler may re-enter it
        raw = _encode_name(name)
        size = _unsigned(capacity, "capacity")
        options = _lib.ReaderOptions()
        _lib.reader_options_init(byref(options))
        options.start = _choice(start, _lib.START, "start")
        options.on_lap = _choice(on_lap, _lib.ON_LAP, "on_lap")
        seconds = _seconds(wait_for_buffer, "wait_for_buffer") or 0.0
        options.wait_for_buffer_ms = min(math.ceil(seconds * 1000), 0xFFFFFFFF)
        handle = c_void_p()
        rc = _lib.reader_open(raw, size, byref(options), byref(handle))
        if rc < 0:
            raise from_code(rc, f"Reader({name!r})")
        if not handle:
            raise Error(f"Reader({name!r}): circbuf_reader_open returned {rc} without a handle")
        self._h = handle
        self._pid = os.getpid()
        self.name = name
        self.strict = bool(strict)
        self._capacity = int(_lib.reader_capacity(handle))
        self._max_message = int(_lib.reader_max_message(handle))
        # read(): one buffer of the largest message for the reader's life, so that "buffer
        # too small" cannot happen there and nothing is allocated per message but the bytes.
        self._buffer = create_string_buffer(_lib.MAX_MESSAGE)
        self._buffer_address = c_void_p(addressof(self._buffer))
        self._buffer_size = c_size_t(_lib.MAX_MESSAGE)
        self._buffer_view = memoryview(self._buffer).cast("B")
        # read_into(): the buffer last given and its export (see read_into).
        self._into: Any = None
        self._into_export: Any = None
        self._into_address = c_void_p()
        self._into_size = c_size_t(0)
        self._poll_result = _lib.PollResult()
        self._poll_result_ptr = pointer(self._poll_result)
        self._batch: Any = None  # read_batch(): (buffer, address, capacity) once used
        self._batch_sizes: Any = None
        self._batch_max = c_size_t(0)

    # ---- reading ----
    def read(self) -> Optional[bytes]:
        """The next message as bytes, or None if there is nothing new. Never blocks.

        A lap (the writer overwrote messages before this reader got to them) is counted in
        ``lost``/``last_loss`` and reading goes on with the next intact message; a strict
        reader raises circbuf.LappedError instead (already resynchronised: read again).
        Raises circbuf.CorruptError if the ring's contents break its rules.
        """
        while True:
            n = _read(self._h, self._buffer_address, self._buffer_size)
            if n > 0:
                return self._buffer_view[:n].tobytes()
            if n == _EMPTY:
                return None
            if n != _LAPPED:
                raise self._outcome_error(n, "read()")
            if self.strict:
                raise LappedError(int(_last_loss(self._h)))

    def read_into(self, buffer: WritableBuffer) -> int:
        """Copies the next message into the writable, C-contiguous `buffer` (bytearray,
        memoryview, numpy array, ...) and returns its length; 0 if there is nothing new.
        Never blocks. Laps as in read().

        Raises circbuf.BufferTooSmallError(needed=N) if the next message does not fit: it
        stays unread (read it into a larger buffer, or skip() passes over it). TypeError for a
        read-only or non-buffer object or a non-contiguous buffer.

        The reader keeps the last buffer given here exported (its address taken once), so
        that reading into the same buffer again costs a single foreign call. While exported,
        a bytearray cannot be resized (BufferError); pass another buffer, call
        release_buffer() or close the reader to let go of it.
        """
        if buffer is not self._into:
            self._bind_into(buffer)
        while True:
            n = _read(self._h, self._into_address, self._into_size)
            if n > 0:
                return n
            if n == _EMPTY:
                return 0
            if n != _LAPPED:
                raise self._outcome_error(n, "read_into()")
            if self.strict:
                raise LappedError(int(_last_loss(self._h)))

    def _bind_into(self, buffer: WritableBuffer) -> None:
        if isinstance(buffer, (bytes, str)):
            raise TypeError(f"read_into() needs a writable buffer (bytearray, memoryview, numpy "
                            f"array), not {type(buffer).__name__}")
        with memoryview(buffer) as view:  # TypeError without the buffer protocol
            size = view.nbytes
        # from_buffer takes the address without copying and holds an export of the buffer
        # for as long as `export` lives; TypeError if read-only or not C-contiguous.
        export = (c_char * size).from_buffer(buffer)
        self._into_export = export
        self._into = buffer
        self._into_address = c_void_p(addressof(export))
        self._into_size = c_size_t(size)

    def release_buffer(self) -> None:
        """Lets go of the buffer last passed to read_into() (see there)."""
        self._into = None
        self._into_export = None
        self._into_address = c_void_p()
        self._into_size = c_size_t(0)

    def read_batch(self, max: int = 256) -> List[bytes]:
        """Up to `max` messages (an empty list if there is nothing new), in one foreign call:
        circbuf_read_batch copies them, each validated, one after another into a buffer
        allocated on first use (1 MiB), and their lengths into an array; Python then only
        slices. Never blocks. A batch ends early at a message that no longer fits the
        buffer (it comes first in the next batch). Laps on the way are counted (``lost``);
        a strict reader raises circbuf.LappedError with the call's messages in
        ``.messages``.
        """
        count = operator.index(max)
        if count < 1:
            raise InvalidArgumentError(f"read_batch(max={count}): max must be >= 1")
        if self._batch_sizes is None or count > len(self._batch_sizes):
            if self._batch is None:
                buffer = create_string_buffer(_BATCH_BYTES)
                self._batch = (buffer, c_void_p(addressof(buffer)), c_size_t(_BATCH_BYTES))
            self._batch_sizes = (c_uint32 * count)()
        if self._batch_max.value != count:
            self._batch_max = c_size_t(count)
        result = self._poll_result
        result.size = sizeof(result)
        _, address, capacity = self._batch
        n = _read_batch(self._h, address, capacity, self._batch_sizes, self._batch_max, self._poll_result_ptr)
        if n < 0:
            raise self._outcome_error(n, "read_batch()")
        messages: List[bytes] = []
        if n:
            ends = list(accumulate(self._batch_sizes[:n]))
            data = string_at(address, ends[-1])  # one copy of the batch, then slices
            start = 0
            for end in ends:
                messages.append(data[start:end])
                start = end
        if result.stopped == _lib.CORRUPT:
            raise CorruptError(_CORRUPT_TEXT, messages)
        if self.strict and result.laps:
            raise LappedError(int(result.lost), messages)
        return messages

    def skip(self) -> bool:
        """Passes over the message that circbuf.BufferTooSmallError left unread (counted in
        stats.skipped, not lost). True if it skipped one; False if there was nothing to skip
        (nothing pending, or a lap took it meanwhile: that lap is counted)."""
        rc = _lib.skip(self._h)
        if rc > 0:  # circbuf.h says 1; the library returns the skipped message's size
            return True
        if rc == _EMPTY:
            return False
        if rc == _LAPPED:
            if self.strict:
                raise LappedError(int(_last_loss(self._h)))
            return False
        raise self._outcome_error(rc, "skip()")

    def _outcome_error(self, rc: int, what: str) -> Error:
        if rc == _lib.CORRUPT:
            return CorruptError(_CORRUPT_TEXT)
        if rc == _lib.BUFFER_TOO_SMALL:
            return BufferTooSmallError(int(_lib.reader_pending_size(self._h)),
                                       self._into_size.value)
        if self._h is None:
            return ClosedError(f"{what} on a closed circbuf.Reader ({self.name!r})")
        return from_code(rc, what)

    # ---- waiting ----
    def wait(self, timeout: Optional[float] = None) -> str:
        """Sleeps until there is something to read, the writer closes or dies, or `timeout`
        seconds pass (None: no limit). Returns "ready" (a message, a lap or corrupt contents to
        read), "closed" or "dead" (nothing left to read and the writer closed the ring or died;
        reported once per writer, as by circbuf_reader_wait: later waits sleep on until a
        message, a new writer or the timeout, and ``writer_status`` says where things stand),
        "taken-over" (a new writer attached), "truncated" (a segment was truncated; reads
        raise circbuf.CorruptError), "timeout", or "stopped" (request_stop() was called; sticky
        until clear_stop()).

        The GIL is released while it sleeps (libcircbuf is loaded with ctypes.CDLL, which
        releases it around every foreign call), so other Python threads run meanwhile. It
        sleeps in slices of at most 0.2 s so that signal handlers (Ctrl-C) still run.
        """
        seconds = _seconds(timeout, "timeout")
        deadline = None if seconds is None else time.monotonic_ns() + int(seconds * 1e9)
        with self._wait_lock:
            while True:
                if deadline is None:
                    slice_ns = _WAIT_SLICE_NS
                else:
                    slice_ns = min(max(deadline - time.monotonic_ns(), 0), _WAIT_SLICE_NS)
                rc = _lib.reader_wait(self._h, slice_ns)
                if rc == _lib.WAIT_TIMEOUT:
                    if deadline is None or time.monotonic_ns() < deadline:
                        continue
                    return "timeout"
                if rc < 0:
                    raise self._outcome_error(rc, "wait()")
                return _name_of(_lib.WAIT_NAMES, rc)

    def request_stop(self) -> None:
        """Makes a current or the next wait() return "stopped" (and ends iteration). Any
        thread may call it while another waits; it only sets a flag and wakes the sleeper,
        so it is also fit for a signal handler. Sticky until clear_stop(). A no-op once
        closed."""
        with self._close_lock:
            _lib.reader_request_stop(self._h)

    def clear_stop(self) -> None:
        """Undoes request_stop(): wait() sleeps again."""
        with self._close_lock:
            _lib.reader_clear_stop(self._live())

    # ---- iteration ----
    def messages(self, timeout: Optional[float] = None) -> Iterator[bytes]:
        """Yields every message as bytes, waiting (GIL released) when there is nothing new.
        Ends when nothing is left to read and the writer has closed the ring or died (also
        when that happened before this call), or when request_stop() is called. Raises
        TimeoutError if `timeout` seconds pass without a message (the reader is unchanged:
        iterate again to go on), circbuf.LappedError (strict readers) and circbuf.CorruptError
        as read() does."""
        read = self.read
        wait = self.wait
        while True:
            message = read()
            if message is not None:
                yield message
                continue
            # wait() reports "closed" and "dead" once per writer (as the C ABI does), so
            # a second iteration after the writer left would sleep for good: look first.
            if self.writer_status in ("closed", "dead"):
                return
            outcome = wait(timeout)
            if outcome in ("closed", "dead", "stopped"):
                return
            if outcome == "timeout":
                raise TimeoutError(f"no message from {self.name!r} within {timeout} s")
            # "ready", "taken-over" (a new writer goes on), "truncated" (read() raises)

    def __iter__(self) -> Iterator[bytes]:
        """``for message in reader``: messages(reader.iter_timeout)."""
        return self.messages(self.iter_timeout)

    # ---- state ----
    def _live(self) -> c_void_p:
        handle = self._h
        if handle is None:
            raise ClosedError(f"operation on a closed circbuf.Reader ({self.name!r})")
        return handle

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._h is None

    @property
    def delivered(self) -> int:
        """Messages delivered so far."""
        return int(_lib.reader_delivered(self._live()))

    @property
    def lost(self) -> int:
        """Messages lost to overwrites, all told."""
        return int(_lib.reader_lost(self._live()))

    @property
    def last_loss(self) -> int:
        """Messages lost in the last lap."""
        return int(_lib.reader_last_loss(self._live()))

    @property
    def pending_size(self) -> int:
        """After circbuf.BufferTooSmallError: the size of the message left unread."""
        return int(_lib.reader_pending_size(self._live()))

    @property
    def capacity(self) -> int:
        """Bytes of record space of the ring."""
        self._live()
        return self._capacity

    @property
    def max_message(self) -> int:
        """The largest message the ring accepts."""
        self._live()
        return self._max_message

    @property
    def stats(self) -> ReaderStats:
        """Delivered, lost, laps, corrupt outcomes and skipped messages."""
        out = _lib.ReaderStatsStruct()
        out.size = sizeof(out)
        rc = _lib.reader_stats_get(self._live(), byref(out))
        if rc < 0:
            raise from_code(rc, "Reader.stats")
        return ReaderStats(out.delivered, out.lost, out.laps, out.corrupt, out.skipped)

    @property
    def writer_status(self) -> str:
        """"none" (no writer attached yet), "alive", "closed" or "dead" (a system call)."""
        rc = _lib.reader_writer_status(self._live())
        if rc < 0:
            raise from_code(rc, "Reader.writer_status")
        return _name_of(_lib.WRITER_STATUS_NAMES, rc)

    def close(self) -> None:
        """Detaches (the last process to leave a ring removes it). Idempotent. From another
        thread while one is in wait(): stops that wait first, then frees the handle."""
        with self._close_lock:
            handle = self._h
            if handle is None:
                return
            if not self._wait_lock.acquire(blocking=False):
                # Another thread sleeps in wait() on this handle: wake it, and free the
                # handle only once it has left the C call.
                _lib.reader_request_stop(handle)
                self._wait_lock.acquire()
            try:
                self._h = None
                self.release_buffer()
                if self._pid == os.getpid():
                    _lib.reader_close(handle)
            finally:
                self._wait_lock.release()

    def __enter__(self) -> "Reader":
        self._live()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self._h is None else f"capacity={self._capacity}"
        return f"<circbuf.Reader {getattr(self, 'name', '?')!r} {state}>"
