"""The Python binding against the interop peers: the C++ API's (circbuf-peer) and the C ABI's
(circbuf-peer-c), through the message pattern of tests/capi/pattern.h."""

from __future__ import annotations

import signal

import pytest

import circbuf
from pysupport import Process, bad_indices, pattern

try:
    import numpy
except ImportError:  # numpy is optional for users, and so for these tests
    numpy = None


def _start_writer(peer: str, name: str, capacity: int, count: int, max_size: int) -> Process:
    writer = Process([peer, "write", name, str(capacity), str(count), str(max_size)])
    writer.expect("ready")
    return writer


def test_cpp_writer_python_reader_overwritten(peer, ring_name):
    """A small ring, a writer that writes far more than fits before the reader reads: the
    reader gets every message it can, each one exactly the writer's message at its index, and
    is told exactly how many it lost."""
    count, max_size = 5000, 200
    with _start_writer(peer, ring_name, 4096, count, max_size) as writer:
        with circbuf.Reader(ring_name, start="oldest") as reader:
            writer.send("go\n")
            writer.expect("done")
            bad = []
            while True:
                message = reader.read()
                if message is None:
                    break
                index = reader.delivered - 1 + reader.lost
                if message != pattern(index, max_size):
                    bad.append(index)
            assert bad == []
            assert reader.delivered + reader.lost == count
            assert reader.lost > 0
            assert reader.delivered > 0
            # The last message is the writer's last: nothing after it, nothing before it torn.
            assert reader.stats.lost == reader.lost
            assert reader.stats.laps >= 1
            assert reader.wait(0) == "timeout"
            writer.close_stdin()
            assert writer.proc.wait(timeout=10) == 0
            assert reader.wait(5) == "closed"


def test_cpp_writer_python_strict_reader_counts_each_lap(peer, ring_name):
    """strict=True: every lap raises LappedError(lost=N) after resynchronising; the losses
    add up to the reader's count and the messages after each lap are the right ones."""
    count, max_size = 3000, 300
    with _start_writer(peer, ring_name, 4096, count, max_size) as writer:
        with circbuf.Reader(ring_name, start="oldest", strict=True) as reader:
            writer.send("go\n")
            writer.expect("done")
            buffer = bytearray(circbuf.MAX_MESSAGE)
            laps, lost, bad = 0, 0, []
            while True:
                try:
                    n = reader.read_into(buffer)
                except circbuf.LappedError as lap:
                    assert lap.lost > 0
                    assert lap.lost == reader.last_loss
                    laps += 1
                    lost += lap.lost
                    continue
                if n == 0:
                    break
                index = reader.delivered - 1 + reader.lost
                if bytes(buffer[:n]) != pattern(index, max_size):
                    bad.append(index)
            assert bad == []
            assert laps >= 1
            assert lost == reader.lost
            assert laps == reader.stats.laps
            assert reader.delivered + reader.lost == count


def test_cpp_writer_python_reader_lossless(peer, ring_name):
    """A ring large enough for everything: no loss, every message in order, read with
    read_batch and read_into while the writer writes."""
    count, max_size = 3000, 1000
    with _start_writer(peer, ring_name, 4 << 20, count, max_size) as writer:
        with circbuf.Reader(ring_name, start="oldest") as reader:
            writer.send("go\n")
            got = []
            buffer = bytearray(max_size)
            while len(got) < count:
                batch = reader.read_batch(64)
                got.extend(batch)
                n = reader.read_into(buffer)
                if n:
                    got.append(bytes(buffer[:n]))
                if not batch and not n:
                    assert reader.wait(5) == "ready"
            writer.expect("done")
            assert len(got) == count
            assert bad_indices(got, 0, max_size) == []
            assert reader.lost == 0
            assert reader.delivered == count
            assert reader.read() is None


def _write_pattern(writer: circbuf.Writer, count: int, max_size: int, corrupt: int = -1) -> None:
    """Writes messages 0 .. count-1, through each kind of buffer in turn; message `corrupt`
    gets one byte wrong."""
    for i in range(count):
        message = pattern(i, max_size)
        if i == corrupt:
            message = message[:-1] + bytes([message[-1] ^ 0x5A])
        kind = i % 4
        if kind == 0:
            writer.write(message)
        elif kind == 1:
            writer.write(bytearray(message))
        elif kind == 2:
            writer.write(memoryview(b"\0" + message)[1:])  # read-only, offset: no copy
        elif numpy is not None:
            array = numpy.frombuffer(message, dtype=numpy.uint8)  # read-only array
            writer.write(array)
        else:
            writer.write(message)


def test_python_writer_peer_reader(any_peer, ring_name):
    """A Python writer and the C++ / C reader peer: every message delivered, none lost, none
    wrong (the peer checks sizes and bytes)."""
    count, max_size = 4000, 900
    with circbuf.Writer(ring_name, 4 << 20) as writer:
        with Process([any_peer, "read", ring_name, str(count), "oldest", str(max_size)]) as reader:
            reader.expect("ready")
            _write_pattern(writer, count, max_size)
            reader.expect(f"delivered {count} lost 0 bad 0", timeout=20)
            assert reader.wait() == 0
        assert writer.stats.messages == count


def test_python_writer_peer_reader_sees_a_wrong_byte(any_peer, ring_name):
    """The same with one byte of message 7 changed: the peer must see exactly one bad message
    (else the test above proves nothing)."""
    count, max_size = 50, 100
    with circbuf.Writer(ring_name, 1 << 20) as writer:
        with Process([any_peer, "read", ring_name, str(count), "oldest", str(max_size)]) as reader:
            reader.expect("ready")
            _write_pattern(writer, count, max_size, corrupt=7)
            reader.expect(f"delivered {count} lost 0 bad 1", timeout=20)
            assert reader.wait() == 1


def test_python_writer_peer_reader_overwritten(any_peer, ring_name):
    """Python writes many more messages than fit while the peer is stopped (SIGSTOP): once it
    goes on, the peer checks every message it gets and counts the rest as lost, exactly."""
    count, max_size = 3000, 200
    with circbuf.Writer(ring_name, 4096) as writer:
        with Process([any_peer, "read", ring_name, str(count), "oldest", str(max_size)]) as reader:
            reader.expect("ready")
            # Attached before the first message (so its indices count from 0), then frozen
            # so that the writer laps it for certain.
            reader.proc.send_signal(signal.SIGSTOP)
            try:
                _write_pattern(writer, count, max_size)
            finally:
                reader.proc.send_signal(signal.SIGCONT)
            words = reader.line(timeout=20).split()
            assert words[0::2] == ["delivered", "lost", "bad"], words
            delivered, lost, bad = (int(w) for w in words[1::2])
            assert bad == 0
            assert lost > 0
            assert delivered > 0
            assert delivered + lost == count
            assert reader.wait() == 0


@pytest.mark.skipif(numpy is None, reason="numpy is not installed")
def test_cpp_writer_numpy_read_into(peer, ring_name):
    """read_into a numpy array: the bytes land in the array, without a copy through bytes."""
    count, max_size = 500, 700
    with _start_writer(peer, ring_name, 1 << 20, count, max_size) as writer:
        with circbuf.Reader(ring_name, start="oldest") as reader:
            writer.send("go\n")
            writer.expect("done")
            array = numpy.zeros(max_size, dtype=numpy.uint8)
            for i in range(count):
                n = reader.read_into(array)
                assert n > 0
                assert array[:n].tobytes() == pattern(i, max_size)
            assert reader.read_into(array) == 0
