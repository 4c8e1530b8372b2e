"""Every bad input, and every use of a closed handle: an exception, never a crash."""

from __future__ import annotations

import os

import pytest

import circbuf
from pysupport import SHM

BAD_NAMES = [
    "",  # empty
    "no-slash",  # must start with '/'
    "/",  # nothing after the '/'
    "/a/b",  # a second '/'
    "/" + "x" * 300,  # too long (at most 252 with the '/', less room for ".data")
    "/with space",  # printable ASCII without spaces only
    "/..",
    "/nul\0inside",  # a C string would stop at the NUL
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_names(name):
    with pytest.raises(ValueError) as caught:
        circbuf.Writer(name, 8192)
    assert isinstance(caught.value, circbuf.Error)
    assert str(caught.value)  # the C layer's message (or ours, for the NUL)
    with pytest.raises(ValueError):
        circbuf.Reader(name)
    with pytest.raises(ValueError):
        circbuf.inspect(name)
    with pytest.raises(ValueError):
        circbuf.remove(name)


def test_longest_name_is_fine():
    name = f"/cbt-py-{os.getpid()}-long-"
    name += "x" * (247 - len(name))  # 252 less ".data"
    try:
        with circbuf.Writer(name, 8192) as writer:
            writer.write(b"ok")
    finally:
        circbuf.remove(name, force=True)
    with pytest.raises(ValueError):
        circbuf.Writer(name + "y", 8192)


@pytest.mark.parametrize("name", [None, 42, 3.5, ["/x"]], ids=repr)
def test_name_of_wrong_type(name):
    with pytest.raises(TypeError):
        circbuf.Writer(name, 8192)
    with pytest.raises(TypeError):
        circbuf.Reader(name)


@pytest.mark.parametrize("capacity", [0, 1, 4095, 52428801, 1 << 40, 1 << 64, -1], ids=repr)
def test_bad_capacity(ring_name, capacity):
    with pytest.raises(ValueError) as caught:
        circbuf.Writer(ring_name, capacity)
    assert isinstance(caught.value, circbuf.Error)
    assert not os.path.exists(os.path.join(SHM, ring_name[1:]))


@pytest.mark.parametrize("capacity", [4096.0, "4096", None], ids=repr)
def test_capacity_of_wrong_type(ring_name, capacity):
    with pytest.raises(TypeError):
        circbuf.Writer(ring_name, capacity)


def test_capacity_limits_are_accepted(ring_name):
    for capacity in (circbuf.MIN_CAPACITY, circbuf.MAX_CAPACITY):
        with circbuf.Writer(ring_name, capacity) as writer:
            assert writer.capacity == capacity
        assert circbuf.remove(ring_name) is False  # gone with its writer


def test_bad_options(ring_name):
    with pytest.raises(ValueError):
        circbuf.Writer(ring_name, 8192, huge_pages="always")
    with pytest.raises(ValueError):
        circbuf.Writer(ring_name, 8192, mode=0o10000)
    with pytest.raises(TypeError):
        circbuf.Writer(ring_name, 8192, huge_pages=1)
    with circbuf.Writer(ring_name, 8192):
        with pytest.raises(ValueError):
            circbuf.Reader(ring_name, start="first")
        with pytest.raises(ValueError):
            circbuf.Reader(ring_name, on_lap="never")
        with pytest.raises(ValueError):
            circbuf.Reader(ring_name, wait_for_buffer=-1)
        with pytest.raises(ValueError):
            circbuf.Reader(ring_name, capacity=-5)


def test_bad_messages(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        for empty in (b"", bytearray(), memoryview(b"")):
            with pytest.raises(ValueError) as caught:
                writer.write(empty)
            assert isinstance(caught.value, circbuf.InvalidArgumentError)
        with pytest.raises(ValueError):
            writer.write(bytes(writer.max_message + 1))
        with pytest.raises(ValueError):
            writer.write(bytearray(writer.max_message + 1))
        with pytest.raises(ValueError):
            writer.write(bytes(70000))  # beyond any ring's largest message
        for wrong in ("text", 5, None, 1.5, [1, 2]):
            with pytest.raises(TypeError):
                writer.write(wrong)
        # Nothing of that reached the ring.
        assert writer.stats.messages == 0
        assert reader.read() is None
        with pytest.raises(TypeError):
            reader.read_into(b"immutable")
        with pytest.raises(TypeError):
            reader.read_into(memoryview(b"read-only"))
        with pytest.raises(TypeError):
            reader.read_into("text")
        with pytest.raises(TypeError):
            reader.read_into(12)
        with pytest.raises(ValueError):
            reader.read_batch(0)
        with pytest.raises(TypeError):
            reader.read_batch(2.5)
        with pytest.raises(ValueError):
            reader.wait(-1)
        with pytest.raises(TypeError):
            reader.wait("soon")


def test_missing_ring(ring_name):
    with pytest.raises(FileNotFoundError) as caught:
        circbuf.Reader(ring_name)
    assert isinstance(caught.value, circbuf.RingNotFoundError)
    assert caught.value.code == -11
    assert ring_name in str(caught.value)
    with pytest.raises(FileNotFoundError):
        circbuf.inspect(ring_name)
    assert circbuf.remove(ring_name) is False
    assert circbuf.list(ring_name) == []


def test_foreign_file_is_not_a_ring_and_is_left_alone(ring_name):
    path = os.path.join(SHM, ring_name[1:])
    junk = b"not a circbuf ring " * 300
    with open(path, "wb") as f:
        f.write(junk)
    try:
        with pytest.raises(circbuf.NotARingError) as caught:
            circbuf.Reader(ring_name)
        assert isinstance(caught.value, ValueError)
        with pytest.raises(circbuf.NotARingError):
            circbuf.Writer(ring_name, 8192)
        assert circbuf.inspect(ring_name).kind == "foreign"
        with open(path, "rb") as f:
            assert f.read() == junk  # never touched
    finally:
        os.unlink(path)
        # The attempts took the segment's lock (sem.NAME), which nobody holds now; remove()
        # leaves a foreign segment's name alone, so the test cleans up after itself.
        lock = os.path.join(SHM, "sem." + ring_name[1:])
        if os.path.exists(lock):
            os.unlink(lock)


def test_closed_writer(ring_name):
    writer = circbuf.Writer(ring_name, 8192)
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    uses = [
        lambda: writer.write(b"x"),
        lambda: writer.write(bytearray(b"x")),
        lambda: writer.write(memoryview(b"x")),
        lambda: writer.stats,
        lambda: writer.capacity,
        lambda: writer.max_message,
        lambda: writer.__enter__(),
    ]
    for use in uses:
        with pytest.raises(ValueError) as caught:
            use()
        assert isinstance(caught.value, circbuf.ClosedError)
    assert "closed" in repr(writer)


def test_closed_reader(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer:
        reader = circbuf.Reader(ring_name)
        reader.read_into(bytearray(10))
        reader.close()
        reader.close()  # idempotent
        writer.write(b"after close")
        assert reader.closed
        uses = [
            reader.read,
            lambda: reader.read_into(bytearray(100)),
            lambda: reader.read_into(bytearray(10)),
            reader.read_batch,
            reader.skip,
            lambda: reader.wait(0),
            reader.wait,
            lambda: reader.delivered,
            lambda: reader.lost,
            lambda: reader.last_loss,
            lambda: reader.pending_size,
            lambda: reader.stats,
            lambda: reader.writer_status,
            lambda: reader.capacity,
            lambda: reader.max_message,
            reader.clear_stop,
            lambda: next(iter(reader)),
            lambda: reader.__enter__(),
        ]
        for use in uses:
            with pytest.raises(ValueError) as caught:
                use()
            assert isinstance(caught.value, circbuf.ClosedError), use
        reader.request_stop()  # a no-op: it may race with close() from a signal handler


def test_context_managers_close(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer:
        with circbuf.Reader(ring_name) as reader:
            pass
        assert reader.closed
    assert writer.closed
    assert circbuf.remove(ring_name) is False
