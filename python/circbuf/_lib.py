"""The ctypes declarations of circbuf.h (libcircbuf.so.0): loading, structs, constants.

Nothing here is public API; circbuf/__init__.py re-exports what is.

Two views of the same loaded library are kept:

* ``cdll`` (ctypes.CDLL) releases the GIL for the duration of each call. It is
  used for every call that can block or take a while: open and close (they take
  a cross-process lock), wait, inspect, list, remove, writer status.
* ``pydll`` (ctypes.PyDLL, same handle) keeps the GIL. It is used only for the
  per-message calls that never block (write, read, poll, skip, the counters):
  releasing and re-taking the GIL around a call of a few tens of nanoseconds
  costs more than the call itself (30-100 ns per call measured on the
  development VM), and the window would be too short for another thread to use.

The hot functions are declared without ``argtypes``: ctypes' per-argument
conversion through ``from_param`` costs about 50 ns per argument, so the
callers pass ready-made ctypes objects (c_void_p handles, c_size_t sizes) or
bytes (passed as a char pointer) and nothing else.
"""

from __future__ import annotations

import ctypes
import os
import sysconfig
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

SONAME = "libcircbuf.so.0"

# ---- Constants (circbuf.h) -------------------------------------------------------------------
MAX_MESSAGE = 65535
MIN_CAPACITY = 4096
MAX_CAPACITY = 52428800

EMPTY = 0
LAPPED = -1
BUFFER_TOO_SMALL = -2
CORRUPT = -3

E_INVALID = -10
E_NOENT = -11
E_PERM = -12
E_BUSY = -13
E_NOTRING = -14
E_CAPACITY = -15
E_STATE = -16
E_NOMEM = -17
E_SYSTEM = -18

START = {"latest": 0, "oldest": 1, "next": 2}
ON_LAP = {"headroom": 0, "oldest": 1, "latest": 2}
HUGE_PAGES = {"as-mounted": 0, "no": 1, "prefer": 2, "require": 3}

WAIT_STOPPED = 0
WAIT_READY = 1
WAIT_TRUNCATED = 2
WAIT_TAKEN_OVER = 3
WAIT_CLOSED = 4
WAIT_DEAD = 5
WAIT_TIMEOUT = 6
WAIT_NAMES = ("stopped", "ready", "truncated", "taken-over", "closed", "dead", "timeout")

WRITER_STATUS_NAMES = ("none", "alive", "closed", "dead")
KIND_NAMES = ("foreign", "segment", "ring", "ring-other", "unfinished")

NAME_BYTES = 256
PROBLEM_BYTES = 512


# ---- Structs (their layout is part of the ABI) ---------------------------------------------
class WriterOptions(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("mode", c_uint32),
        ("huge_pages", c_int32),
        ("reserved", c_int32),
    ]


class ReaderOptions(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("start", c_int32),
        ("on_lap", c_int32),
        ("wait_for_buffer_ms", c_uint32),
        ("liveness_ms", c_uint32),
        ("reserved", c_uint32),
    ]


class PollResult(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("stopped", c_int32),
        ("delivered", c_uint64),
        ("laps", c_uint64),
        ("lost", c_uint64),
    ]


class WriterStatsStruct(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("took_over", c_uint32),
        ("messages", c_uint64),
        ("bytes", c_uint64),
        ("laps", c_uint64),
    ]


class ReaderStatsStruct(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("reserved", c_uint32),
        ("delivered", c_uint64),
        ("lost", c_uint64),
        ("laps", c_uint64),
        ("corrupt", c_uint64),
        ("skipped", c_uint64),
    ]


class InfoStruct(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("kind", c_int32),
        ("name", c_char * NAME_BYTES),
        ("capacity", c_uint64),
        ("tail", c_uint64),
        ("messages", c_uint64),
        ("writer_epoch", c_uint64),
        ("max_message", c_uint32),
        ("refcount", c_uint32),
        ("writer_pid", c_int32),
        ("writer_status", c_int32),
        ("stale", c_int32),
        ("sleeping", c_int32),
        ("corrupt", c_int32),
        ("damaged", c_int32),
        ("open_errno", c_int32),
        ("reserved", c_int32),
        ("problem", c_char * PROBLEM_BYTES),
    ]


# The batch handler: data arrives as POINTER(c_char) because slicing such a pointer
# (data[:size]) builds the bytes object directly, without a second foreign call
# (ctypes.string_at is one, and costs about as much as the callback itself).
HANDLER_FN = ctypes.CFUNCTYPE(None, POINTER(c_char), c_size_t, ctypes.py_object)


# ---- Loading ------------------------------------------------------------------------------------
def _candidates() -> list[str]:
    """Where to look for the library, in order (see load())."""
    found: list[str] = []
    env = os.environ.get("CIRCBUF_LIBRARY")
    if env:
        found.append(env)
    # Installed layout: <prefix>/lib/python3/dist-packages/circbuf/ (Debian) or
    # <prefix>/lib/python3.X/site-packages/circbuf/; the library sits in
    # <prefix>/lib/<multiarch>/, <prefix>/lib/ or <prefix>/lib64/.
    package = Path(__file__).resolve().parent
    if len(package.parents) >= 3:
        libdir = package.parents[2]
        prefix = libdir.parent
        multiarch = sysconfig.get_config_var("MULTIARCH")
        if multiarch:
            found.append(str(libdir / multiarch / SONAME))
        found.append(str(libdir / SONAME))
        found.append(str(prefix / "lib64" / SONAME))
    found.append(str(package / SONAME))  # a copy vendored into the package
    return found


def load() -> tuple[ctypes.CDLL, ctypes.PyDLL, str]:
    """Loads libcircbuf: $CIRCBUF_LIBRARY, then next to the installed package, then the
    dynamic loader's search path (ctypes.CDLL("libcircbuf.so.0")). Raises ImportError
    naming everything tried."""
    tried: list[str] = []
    for path in _candidates():
        if path != os.environ.get("CIRCBUF_LIBRARY") and not os.path.exists(path):
            tried.append(f"{path}: not there")
            continue
        try:
            cdll = ctypes.CDLL(path)
        except OSError as error:
            tried.append(f"{path}: {error}")
            continue
        return cdll, ctypes.PyDLL(path, handle=cdll._handle), path
    try:
        cdll = ctypes.CDLL(SONAME)
    except OSError as error:
        tried.append(f"{SONAME} (dynamic loader search path): {error}")
    else:
        return cdll, ctypes.PyDLL(SONAME, handle=cdll._handle), SONAME
    text = "; ".join(tried)
    hint = ""
    if "__asan" in text or "__tsan" in text or "Sanitizer" in text:
        hint = (" (the library was built with a sanitizer: the interpreter cannot host an "
                "ASan/TSan-instrumented libcircbuf without LD_PRELOAD of the runtime)")
    raise ImportError(f"circbuf: cannot load {SONAME}{hint}; tried: {text}. "
                      "Set CIRCBUF_LIBRARY to the library's path.")


cdll, pydll, path = load()


def _declare(lib: ctypes.CDLL, name: str, restype, argtypes=None):
    function = getattr(lib, name)
    function.restype = restype
    if argtypes is not None:
        function.argtypes = argtypes
    return function


_W = POINTER(WriterOptions)
_R = POINTER(ReaderOptions)

# ---- Calls that may block or take a while: CDLL (GIL released), argtypes checked --------------
last_error = _declare(cdll, "circbuf_last_error", c_char_p, [])
version = _declare(cdll, "circbuf_version", c_char_p, [])
writer_options_init = _declare(cdll, "circbuf_writer_options_init", None, [_W])
writer_open = _declare(cdll, "circbuf_writer_open", c_int,
                       [c_char_p, c_uint64, _W, POINTER(c_void_p)])
writer_close = _declare(cdll, "circbuf_writer_close", None, [c_void_p])
writer_skip = _declare(cdll, "circbuf_writer_skip", c_int, [c_void_p, c_uint64])
writer_next_sequence = _declare(cdll, "circbuf_writer_next_sequence", c_uint64, [c_void_p])
writer_stats_get = _declare(cdll, "circbuf_writer_stats_get", c_int,
                            [c_void_p, POINTER(WriterStatsStruct)])
reader_options_init = _declare(cdll, "circbuf_reader_options_init", None, [_R])
reader_open = _declare(cdll, "circbuf_reader_open", c_int,
                       [c_char_p, c_uint64, _R, POINTER(c_void_p)])
reader_close = _declare(cdll, "circbuf_reader_close", None, [c_void_p])
reader_wait = _declare(cdll, "circbuf_reader_wait", c_int, [c_void_p, c_int64])
reader_request_stop = _declare(cdll, "circbuf_reader_request_stop", None, [c_void_p])
reader_clear_stop = _declare(cdll, "circbuf_reader_clear_stop", None, [c_void_p])
reader_stats_get = _declare(cdll, "circbuf_reader_stats_get", c_int,
                            [c_void_p, POINTER(ReaderStatsStruct)])
reader_writer_status = _declare(cdll, "circbuf_reader_writer_status", c_int, [c_void_p])
info_init = _declare(cdll, "circbuf_info_init", None, [POINTER(InfoStruct)])
inspect = _declare(cdll, "circbuf_inspect", c_int, [c_char_p, POINTER(InfoStruct)])
list_ = _declare(cdll, "circbuf_list", c_int, [c_char_p, POINTER(InfoStruct), c_size_t])
remove = _declare(cdll, "circbuf_remove", c_int, [c_char_p, c_int])

# ---- Per-message calls that never block: PyDLL (GIL kept), no argtypes (see above) ------------
# Callers pass: handle c_void_p (or None: the C layer answers E_INVALID for NULL),
# pointers as c_void_p or bytes, sizes as c_size_t.
# circbuf_poll calls back into Python for every message: under CDLL each callback would
# take the GIL back and give it up again (measured: 1.4-1.7 x the cost per message).
poll = _declare(pydll, "circbuf_poll", c_int,
                [c_void_p, HANDLER_FN, ctypes.py_object, c_size_t, POINTER(PollResult)])
write = _declare(pydll, "circbuf_write", c_int)
read_batch = _declare(pydll, "circbuf_read_batch", c_int)
read = _declare(pydll, "circbuf_read", c_int)
skip = _declare(pydll, "circbuf_skip", c_int)
writer_capacity = _declare(pydll, "circbuf_writer_capacity", c_uint64)
writer_max_message = _declare(pydll, "circbuf_writer_max_message", c_size_t)
reader_delivered = _declare(pydll, "circbuf_reader_delivered", c_uint64)
reader_lost = _declare(pydll, "circbuf_reader_lost", c_uint64)
reader_last_loss = _declare(pydll, "circbuf_reader_last_loss", c_uint64)
reader_pending_size = _declare(pydll, "circbuf_reader_pending_size", c_size_t)
reader_capacity = _declare(pydll, "circbuf_reader_capacity", c_uint64)
reader_max_message = _declare(pydll, "circbuf_reader_max_message", c_size_t)


# ---- Zero-copy access to read-only buffers ------------------------------------------------------
# ctypes can take the address of a writable buffer (c_char.from_buffer) but not of a
# read-only one (a read-only memoryview, a read-only numpy array) without copying it.
# The C API can: PyObject_GetBuffer gives the address and holds the export until
# PyBuffer_Release. Py_buffer's layout is part of the limited API since 3.11 and has
# not changed since 3.3.
class PyBuffer(Structure):
    _fields_ = [
        ("buf", c_void_p),
        ("obj", c_void_p),  # a strong reference, dropped by PyBuffer_Release
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", c_int),
        ("ndim", c_int),
        ("format", c_void_p),
        ("shape", c_void_p),
        ("strides", c_void_p),
        ("suboffsets", c_void_p),
        ("internal", c_void_p),
    ]


try:
    _pythonapi = ctypes.pythonapi
    # pythonapi is a PyDLL: a failing PyObject_GetBuffer raises its exception here
    # (TypeError for str, BufferError for a non-contiguous view).
    get_buffer = _declare(_pythonapi, "PyObject_GetBuffer", c_int,
                          [ctypes.py_object, POINTER(PyBuffer), c_int])
    release_buffer = _declare(_pythonapi, "PyBuffer_Release", None, [POINTER(PyBuffer)])
except (AttributeError, OSError):  # not CPython: callers fall back to a copy
    get_buffer = None
    release_buffer = None
PYBUF_SIMPLE = 0  # contiguous bytes, read-only is fine
