"""The Python API on its own: reads of every kind, laps, waits, threads, statistics."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import circbuf
from pysupport import bad_indices, pattern, python_child, shm_files

try:
    import numpy
except ImportError:  # numpy is optional for users, and so for these tests
    numpy = None


def test_sizes_and_limits(ring_name):
    with circbuf.Writer(ring_name, 4096) as writer:
        assert writer.capacity == 4096
        assert writer.max_message == 1776  # the smallest ring's (modules/ring/layout.cppm)
        with circbuf.Reader(ring_name) as reader:
            assert (reader.capacity, reader.max_message) == (4096, 1776)
    with circbuf.Writer(ring_name + "-big", 149888) as writer:
        assert writer.max_message == circbuf.MAX_MESSAGE == 65535
    circbuf.remove(ring_name + "-big", force=True)
    with circbuf.Writer(ring_name, 5000) as writer:
        assert writer.capacity == 5056  # rounded up to a multiple of 64


def test_write_and_read_every_kind_of_buffer(ring_name):
    with circbuf.Writer(ring_name, 1 << 16) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        assert writer.write(b"bytes") == 5
        assert writer.write(bytearray(b"bytearray")) == 9
        assert writer.write(memoryview(b"xread-only view")[1:]) == 14
        assert writer.write(memoryview(bytearray(b"writable view"))) == 13
        big = bytes(range(256)) * 4
        assert writer.write(big) == 1024
        assert reader.read() == b"bytes"
        assert reader.read_batch(2) == [b"bytearray", b"read-only view"]
        buffer = bytearray(100)
        assert reader.read_into(buffer) == 13
        assert buffer[:13] == b"writable view"
        assert reader.read() == big
        assert reader.read() is None
        assert reader.read_into(buffer) == 0
        assert reader.read_batch() == []
        assert writer.stats == circbuf.WriterStats(False, 5, 5 + 9 + 14 + 13 + 1024, 0)
        assert reader.stats == circbuf.ReaderStats(5, 0, 0, 0, 0)
        assert (reader.delivered, reader.lost, reader.last_loss) == (5, 0, 0)


def test_message_of_max_size(ring_name):
    with circbuf.Writer(ring_name, 4096) as writer, circbuf.Reader(ring_name) as reader:
        message = bytes(i & 0xFF for i in range(writer.max_message))
        writer.write(message)
        assert reader.read() == message


@pytest.mark.skipif(numpy is None, reason="numpy is not installed")
def test_numpy(ring_name):
    with circbuf.Writer(ring_name, 1 << 16) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        values = numpy.arange(10, dtype=numpy.float64)
        writer.write(values)
        frozen = numpy.arange(7, dtype=numpy.uint8)
        frozen.setflags(write=False)
        writer.write(frozen)
        out = numpy.zeros(10, dtype=numpy.float64)  # read_into counts bytes, not elements
        assert reader.read_into(out) == 80
        assert (out == values).all()
        raw = numpy.zeros((4, 8), dtype=numpy.uint8)  # 2-D, C-contiguous: 32 bytes
        assert reader.read_into(raw) == 7
        assert raw.reshape(-1)[:7].tolist() == list(range(7))
        writer.write(b"x")
        with pytest.raises(TypeError):
            reader.read_into(raw[:, ::2])  # not contiguous
        with pytest.raises(TypeError):
            reader.read_into(frozen)  # read-only
        with pytest.raises((BufferError, ValueError)):  # numpy's own: ValueError
            writer.write(values[::2])  # not contiguous
        with pytest.raises(BufferError):
            writer.write(memoryview(b"abcdef")[::2])
        assert reader.read() == b"x"


def test_read_into_too_small_buffer_leaves_the_message(ring_name):
    with circbuf.Writer(ring_name, 1 << 16) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        writer.write(b"0123456789")
        writer.write(b"next")
        writer.write(b"ten bytes!")
        small = bytearray(4)
        with pytest.raises(circbuf.BufferTooSmallError) as caught:
            reader.read_into(small)
        assert caught.value.needed == 10
        assert caught.value.capacity == 4
        assert isinstance(caught.value, circbuf.Error)
        assert reader.pending_size == 10
        large = bytearray(10)
        assert reader.read_into(large) == 10  # it stayed unread
        assert large == b"0123456789"
        assert reader.read_into(small) == 4
        assert small == b"next"
        with pytest.raises(circbuf.BufferTooSmallError):
            reader.read_into(small)
        assert reader.skip() is True  # passes over "ten bytes!"
        assert reader.skip() is False
        assert reader.read() is None
        assert reader.stats.skipped == 1
        assert reader.delivered == 2
        # The reader keeps the last buffer exported: a bytearray cannot be resized meanwhile.
        with pytest.raises(BufferError):
            small.extend(b"!")
        reader.release_buffer()
        small.extend(b"!")
        assert len(small) == 5


def test_start_positions(ring_name):
    with circbuf.Writer(ring_name, 1 << 16) as writer:
        for i in range(3):
            writer.write(b"m%d" % i)
        oldest = circbuf.Reader(ring_name, start="oldest")
        latest = circbuf.Reader(ring_name, start="latest")
        newest = circbuf.Reader(ring_name, start="next")
        default = circbuf.Reader(ring_name)
        assert oldest.read() == b"m0"
        assert latest.read() == b"m2"
        assert default.read() == b"m2"
        assert newest.read() is None
        writer.write(b"m3")
        assert newest.read() == b"m3"
        assert [oldest.read() for _ in range(4)] == [b"m1", b"m2", b"m3", None]
        for reader in (oldest, latest, newest, default):
            reader.close()


def _overwrite(writer, count, max_size):
    for i in range(count):
        writer.write(pattern(i, max_size))


def test_lap_is_counted_and_reading_goes_on(ring_name):
    count, max_size = 1000, 100
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        _overwrite(writer, count, max_size)
        first = reader.read()  # the lap is absorbed: the next intact message comes back
        assert reader.lost > 0
        assert reader.last_loss == reader.lost
        assert first == pattern(reader.lost, max_size)
        rest = []
        while (message := reader.read()) is not None:
            rest.append(message)
        assert bad_indices(rest, reader.lost + 1, max_size) == []
        assert reader.delivered + reader.lost == count


def test_skip_is_a_counted_gap_for_every_reader(ring_name):
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="next") as reader:
        writer.write(b"one")
        assert writer.next_sequence == 1
        writer.skip(0)
        writer.skip(41)
        assert writer.next_sequence == 42
        writer.write(b"two")
        assert reader.read() == b"one"
        assert reader.read() == b"two"  # the gap is absorbed like a lap
        assert reader.lost == reader.last_loss == 41
        assert reader.delivered == 2
        with pytest.raises(ValueError):
            writer.skip(-1)
        with pytest.raises(OverflowError):
            writer.skip(1 << 64)
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="next", strict=True) as reader:
        writer.skip(5)
        with pytest.raises(circbuf.LappedError) as caught:
            reader.read()
        assert caught.value.lost == 5


def test_strict_lap_raises_after_resynchronising(ring_name):
    count, max_size = 1000, 100
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="oldest", strict=True) as reader:
        _overwrite(writer, count, max_size)
        with pytest.raises(circbuf.LappedError) as caught:
            reader.read()
        assert caught.value.lost == reader.lost > 0
        assert caught.value.messages == []
        assert reader.read() == pattern(reader.lost, max_size)  # resynchronised


def test_strict_lap_in_a_batch_carries_the_batch(ring_name):
    count, max_size = 1000, 100
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="oldest", strict=True) as reader:
        _overwrite(writer, count, max_size)
        with pytest.raises(circbuf.LappedError) as caught:
            reader.read_batch(count)
        lap = caught.value
        assert lap.lost == reader.lost > 0
        assert len(lap.messages) == reader.delivered > 0
        assert bad_indices(lap.messages, lap.lost, max_size) == []
        assert reader.delivered + reader.lost == count


def test_on_lap_latest_resumes_at_the_newest(ring_name):
    count, max_size = 1000, 100
    with circbuf.Writer(ring_name, 4096) as writer, \
            circbuf.Reader(ring_name, start="oldest", on_lap="latest") as reader:
        _overwrite(writer, count, max_size)
        assert reader.read() == pattern(count - 1, max_size)
        assert reader.lost == count - 1
        assert reader.read() is None


def test_wait_timeout_and_ready(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer, circbuf.Reader(ring_name) as reader:
        started = time.monotonic()
        assert reader.wait(0.3) == "timeout"
        elapsed = time.monotonic() - started
        assert 0.28 <= elapsed < 2.0
        assert reader.wait(0) == "timeout"
        writer.write(b"now")
        started = time.monotonic()
        assert reader.wait(5) == "ready"
        assert time.monotonic() - started < 1.0
        assert reader.wait(None) == "ready"  # still unread
        assert reader.read() == b"now"


def _spin(seconds: float) -> int:
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        count += 1
    return count


def test_wait_releases_the_gil_and_request_stop_ends_it(ring_name):
    with circbuf.Writer(ring_name, 8192), circbuf.Reader(ring_name) as reader:
        alone = _spin(0.2)
        result = []
        waiter = threading.Thread(target=lambda: result.append(reader.wait(20)))
        waiter.start()
        time.sleep(0.05)  # let it fall asleep
        beside = _spin(0.2)  # this thread runs while the other one is asleep in C
        assert waiter.is_alive()
        assert beside > alone * 0.5, (beside, alone)
        started = time.monotonic()
        reader.request_stop()
        waiter.join(5)
        assert not waiter.is_alive()
        assert result == ["stopped"]
        assert time.monotonic() - started < 1.0
        assert reader.wait(0) == "stopped"  # sticky
        reader.clear_stop()
        assert reader.wait(0) == "timeout"


def test_request_stop_ends_iteration_from_another_thread(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer, \
            circbuf.Reader(ring_name, start="oldest") as reader:
        writer.write(b"one")
        got = []

        def iterate() -> None:
            for message in reader:
                got.append(message)

        thread = threading.Thread(target=iterate)
        thread.start()
        time.sleep(0.1)
        reader.request_stop()
        thread.join(5)
        assert not thread.is_alive()
        assert got == [b"one"]


def test_close_from_another_thread_while_waiting(ring_name):
    with circbuf.Writer(ring_name, 8192):
        reader = circbuf.Reader(ring_name)
        result = []
        waiter = threading.Thread(target=lambda: result.append(reader.wait()))
        waiter.start()
        time.sleep(0.1)
        reader.close()  # stops the wait, then frees the handle: no crash
        waiter.join(5)
        assert not waiter.is_alive()
        assert result == ["stopped"]
        assert reader.closed
        with pytest.raises(ValueError):
            reader.wait(0)


def test_iteration_timeout(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer, circbuf.Reader(ring_name) as reader:
        writer.write(b"a")
        reader.iter_timeout = 0.1
        got = []
        with pytest.raises(TimeoutError):
            for message in reader:
                got.append(message)
        assert got == [b"a"]
        writer.write(b"b")
        assert next(reader.messages(timeout=1)) == b"b"


def test_wait_for_buffer(ring_name):
    def create() -> None:
        time.sleep(0.2)
        writer = circbuf.Writer(ring_name, 8192)
        created.append(writer)

    created = []
    thread = threading.Thread(target=create)
    thread.start()
    try:
        with circbuf.Reader(ring_name, wait_for_buffer=5) as reader:
            assert reader.capacity == 8192
    finally:
        thread.join()
        for writer in created:
            writer.close()
    with pytest.raises(FileNotFoundError):
        circbuf.Reader(ring_name + "-never", wait_for_buffer=0.1)


def test_reader_capacity_must_match(ring_name):
    with circbuf.Writer(ring_name, 8192):
        with circbuf.Reader(ring_name, capacity=8192) as reader:
            assert reader.capacity == 8192
        with pytest.raises(circbuf.CapacityMismatchError) as caught:
            circbuf.Reader(ring_name, capacity=16384)
        assert isinstance(caught.value, ValueError)
        with pytest.raises(ValueError):
            circbuf.Writer(ring_name, 16384)  # busy or capacity: either refuses


def test_writer_reattaches_with_the_same_capacity(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer:
        writer.write(b"first writer")
        reader = circbuf.Reader(ring_name, start="oldest")
    with pytest.raises(circbuf.CapacityMismatchError):
        circbuf.Writer(ring_name, 16384)
    with circbuf.Writer(ring_name, 8192) as writer:
        writer.write(b"second writer")
        assert reader.read() == b"first writer"
        assert reader.read() == b"second writer"
    reader.close()


def test_library_identity():
    assert circbuf.library_version() == "0.1.0"
    assert circbuf.library_path
    assert issubclass(circbuf.NotARingError, ValueError)
    assert issubclass(circbuf.BusyError, OSError)
    for exception in (circbuf.BusyError, circbuf.NotARingError, circbuf.LappedError,
                      circbuf.BufferTooSmallError, circbuf.CorruptError, circbuf.ClosedError,
                      circbuf.RingNotFoundError, circbuf.InvalidArgumentError):
        assert issubclass(exception, circbuf.Error)


def test_wait_is_interruptible(ring_name):
    """wait() without a timeout still lets Ctrl-C through (it sleeps in slices)."""
    with circbuf.Writer(ring_name, 8192):
        script = (
            "import circbuf\n"
            f"reader = circbuf.Reader({ring_name!r})\n"
            "print('waiting', flush=True)\n"
            "try:\n"
            "    reader.wait()\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n"
        )
        with python_child(script) as child:
            child.expect("waiting")
            time.sleep(0.1)
            started = time.monotonic()
            child.proc.send_signal(signal.SIGINT)
            child.expect("interrupted", timeout=5)
            assert time.monotonic() - started < 2
            assert child.wait() == 0


def test_garbage_collected_handles_close(ring_name):
    writer = circbuf.Writer(ring_name, 8192)
    reader = circbuf.Reader(ring_name)
    del reader  # detaches now (CPython: the last reference)
    del writer  # closes the ring: nobody is left, so it is removed
    assert shm_files(ring_name) == []


def test_forked_child_does_not_close_the_parents_writer(ring_name):
    with circbuf.Writer(ring_name, 8192) as writer, circbuf.Reader(ring_name) as reader:
        pid = os.fork()
        if pid == 0:  # the child: dropping its copy must leave the parent's writer open
            try:
                writer.close()
                reader.close()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert reader.writer_status == "alive"
        writer.write(b"still open")
        assert reader.read() == b"still open"
        assert circbuf.inspect(ring_name).writer_status == "alive"
