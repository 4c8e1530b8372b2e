"""circbuf's exceptions, and the mapping from the C ABI's error codes to them.

Every exception this package raises for a condition of its own derives from
circbuf.Error. Those for a C error code also derive from the builtin exception
a Python programmer would expect (FileNotFoundError for a missing ring,
ValueError for a bad argument, ...), so either ``except`` clause catches them.
"""

from __future__ import annotations

import errno as _errno

from . import _lib


class Error(Exception):
    """Base of every circbuf exception. ``code`` is the C ABI's CIRCBUF_* code, or None."""

    code: int | None = None


# ---- Errors: a call failed; the message is circbuf_last_error()'s --------------------------------
class InvalidArgumentError(Error, ValueError):
    """CIRCBUF_E_INVALID: a bad name, size or option."""


class CapacityMismatchError(Error, ValueError):
    """CIRCBUF_E_CAPACITY: the ring exists with another capacity."""


class NotARingError(Error, ValueError):
    """CIRCBUF_E_NOTRING: not a circbuf ring, another layout version, or its State is corrupt."""


class RingNotFoundError(Error, FileNotFoundError):
    """CIRCBUF_E_NOENT: no such ring."""


class RingPermissionError(Error, PermissionError):
    """CIRCBUF_E_PERM: permission denied."""


class BusyError(Error, OSError):
    """CIRCBUF_E_BUSY: another live writer holds the ring (Writer), or live processes
    hold it (remove without force). errno is EBUSY."""


class StateError(Error, OSError):
    """CIRCBUF_E_STATE: not now (e.g. the ring was truncated: errno EIO)."""


class OutOfMemoryError(Error, MemoryError):
    """CIRCBUF_E_NOMEM."""


class SystemCallError(Error, OSError):
    """CIRCBUF_E_SYSTEM: another system error; the message has errno's text."""


class ClosedError(Error, ValueError):
    """The Writer or Reader was closed (like I/O on a closed file: a ValueError)."""


# ---- Outcomes of a read that are not a message -------------------------------------------------
class LappedError(Error):
    """Strict readers only: the writer overwrote ``lost`` messages before this reader read
    them. The reader has already resynchronised: the next read continues with the oldest
    intact message (or where on_lap says). From read_batch, ``messages`` holds the messages
    that call delivered (the lap lies somewhere among them); otherwise it is empty. From
    read_batch_into, ``count`` is how many messages that call put into the buffer."""

    def __init__(self, lost: int, messages: list[bytes] | None = None, count: int = 0) -> None:
        super().__init__(f"lapped by the writer: {lost} message(s) lost")
        self.lost = lost
        self.messages = messages if messages is not None else []
        self.count = count if messages is None else len(self.messages)
        self.code = _lib.LAPPED


class BufferTooSmallError(Error):
    """read_into: the next message is ``needed`` bytes, more than the buffer holds. The
    message stays unread: read it into a larger buffer, or Reader.skip() passes over it."""

    def __init__(self, needed: int, capacity: int) -> None:
        super().__init__(f"the next message is {needed} bytes; the buffer holds {capacity}")
        self.needed = needed
        self.capacity = capacity
        self.code = _lib.BUFFER_TOO_SMALL


class CorruptError(Error):
    """The ring's contents break its rules, or a segment was truncated. ``messages``: from
    read_batch, the messages that call delivered before it met the corruption."""

    def __init__(self, text: str, messages: list[bytes] | None = None) -> None:
        super().__init__(text)
        self.messages = messages if messages is not None else []
        self.code = _lib.CORRUPT


def last_error_text(fallback: str) -> str:
    """circbuf_last_error() of this thread, or `fallback` if it is empty."""
    text = _lib.last_error()
    return text.decode("utf-8", "replace") if text else fallback


def from_code(code: int, what: str = "circbuf call") -> Error:
    """The exception for a negative CIRCBUF_E_* `code`, with the C layer's message. Must be
    called right after the failing call, on the same thread (the message is thread-local)."""
    text = last_error_text(f"{what} failed with code {code}")
    exception: Error
    if code == _lib.E_NOENT:
        exception = RingNotFoundError(_errno.ENOENT, text)
    elif code == _lib.E_PERM:
        exception = RingPermissionError(_errno.EACCES, text)
    elif code == _lib.E_INVALID:
        exception = InvalidArgumentError(text)
    elif code == _lib.E_CAPACITY:
        exception = CapacityMismatchError(text)
    elif code == _lib.E_BUSY:
        exception = BusyError(_errno.EBUSY, text)
    elif code == _lib.E_NOTRING:
        exception = NotARingError(text)
    elif code == _lib.E_STATE:
        exception = StateError(_errno.EIO, text)
    elif code == _lib.E_NOMEM:
        exception = OutOfMemoryError(text)
    elif code == _lib.E_SYSTEM:
        exception = SystemCallError(text)
    else:
        exception = Error(f"{text} (unexpected code {code})")
    exception.code = code
    return exception
