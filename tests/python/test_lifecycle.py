"""Rings created, listed, left and removed; readers and writers that die."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

import circbuf
from pysupport import Process, bad_indices, pattern, python_child, shm_files


def _ls_json(tool: str, name: str) -> list:
    run = subprocess.run([tool, "ls", name, "--json"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_ring_from_python_is_listed_and_removed_when_the_last_process_leaves(tool, ring_name):
    writer = circbuf.Writer(ring_name, 10000)
    for i in range(3):
        writer.write(pattern(i, 50))
    rows = _ls_json(tool, ring_name)
    assert [row["name"] for row in rows] == [ring_name]
    row = rows[0]
    assert row["kind"] == "ring"
    assert row["capacity"] == 10048  # rounded up to a multiple of 64
    assert row["writer_pid"] == os.getpid()
    assert row["writer"] == "alive"
    assert row["messages"] == 3
    assert row["stale"] is False
    assert shm_files(ring_name) == sorted([ring_name[1:], ring_name[1:] + ".data"])
    # The same seen from Python.
    info = circbuf.inspect(ring_name)
    assert (info.kind, info.capacity, info.messages) == ("ring", 10048, 3)
    assert (info.writer_pid, info.writer_status) == (os.getpid(), "alive")
    assert [r.name for r in circbuf.list(ring_name)] == [ring_name]
    assert ring_name in [r.name for r in circbuf.list()]

    writer.close()
    assert shm_files(ring_name) == []
    assert _ls_json(tool, ring_name) == []
    assert circbuf.list(ring_name) == []
    with pytest.raises(FileNotFoundError):
        circbuf.inspect(ring_name)


def test_ring_stays_while_a_reader_holds_it(tool, ring_name):
    writer = circbuf.Writer(ring_name, 8192)
    writer.write(b"last words")
    reader = circbuf.Reader(ring_name, start="oldest")
    writer.close()
    assert shm_files(ring_name) != []
    rows = _ls_json(tool, ring_name)
    assert [(r["name"], r["writer"]) for r in rows] == [(ring_name, "closed")]
    assert reader.writer_status == "closed"
    assert reader.read() == b"last words"
    assert reader.wait(1) == "closed"
    reader.close()
    assert shm_files(ring_name) == []
    assert _ls_json(tool, ring_name) == []


_KILLED_READER = """
import sys, circbuf
reader = circbuf.Reader(sys.argv[1] if len(sys.argv) > 1 else {name!r}, start="oldest")
print("ready", flush=True)
got = 0
for message in reader:
    got += 1
    if got == {half}:
        print("half", flush=True)
"""


def test_sigkilled_python_reader_changes_nothing_for_another(ring_name):
    """A Python reader process SIGKILLed mid-stream: the writer goes on and another reader
    still gets every message, none lost; the ring goes away when the live ones leave."""
    count, half, max_size = 2000, 1000, 300
    writer = circbuf.Writer(ring_name, 4 << 20)
    reader = circbuf.Reader(ring_name, start="oldest")
    victim = python_child(_KILLED_READER.format(name=ring_name, half=half))
    try:
        victim.expect("ready")
        for i in range(half):
            writer.write(pattern(i, max_size))
        victim.expect("half")
        got = reader.read_batch(half // 2)  # this reader is mid-stream too
        victim.kill()  # while it sleeps in wait() or reads: either way, mid-stream
        assert victim.proc.returncode == -signal.SIGKILL
        for i in range(half, count):
            writer.write(pattern(i, max_size))
        while len(got) < count:
            batch = reader.read_batch()
            if not batch:
                assert reader.wait(5) == "ready"
            got.extend(batch)
        assert len(got) == count
        assert bad_indices(got, 0, max_size) == []
        assert (reader.delivered, reader.lost) == (count, 0)
        assert writer.stats.messages == count
        assert reader.read() is None
    finally:
        victim.kill()
        writer.close()
        reader.close()
    assert shm_files(ring_name) == []  # the dead reader does not keep it alive


def test_iteration_ends_when_the_writer_closes(ring_name):
    sent = [pattern(i, 500) for i in range(200)]
    writer = circbuf.Writer(ring_name, 1 << 20)
    reader = circbuf.Reader(ring_name, start="next")
    reader.iter_timeout = 10  # a failure raises TimeoutError instead of hanging

    def write() -> None:
        for i, message in enumerate(sent):
            writer.write(message)
            if i % 50 == 0:
                time.sleep(0.01)  # so that the reader also sleeps in wait() now and then
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        got = list(reader)
    finally:
        thread.join()
    assert got == sent
    assert reader.writer_status == "closed"
    assert list(reader) == []  # again: the writer is gone and nothing is left
    reader.close()


def test_iteration_ends_when_the_writer_dies(peer, ring_name):
    count, max_size = 100, 100
    writer = Process([peer, "write", ring_name, str(1 << 20), str(count), str(max_size)])
    try:
        writer.expect("ready")
        with circbuf.Reader(ring_name, start="oldest") as reader:
            writer.send("go\n")
            writer.expect("done")
            writer.kill()  # SIGKILL: no clean close
            started = time.monotonic()
            got = list(reader.messages(timeout=10))
            assert time.monotonic() - started < 5
            assert len(got) == count
            assert bad_indices(got, 0, max_size) == []
            assert reader.writer_status == "dead"
            # wait() says "dead" once per writer (here, or it already did so during the
            # iteration); after that it sleeps on. Iterating again ends at once.
            assert reader.wait(0.3) in ("dead", "timeout")
            assert reader.wait(0) == "timeout"
            assert list(reader.messages(timeout=10)) == []
    finally:
        writer.kill()


def test_second_writer_is_busy(peer, ring_name):
    with Process([peer, "write", ring_name, "8192", "1", "10"]) as other:
        other.expect("ready")
        with pytest.raises(circbuf.BusyError) as caught:
            circbuf.Writer(ring_name, 8192)
        assert isinstance(caught.value, OSError)
        assert isinstance(caught.value, circbuf.Error)
        assert caught.value.code == -13
        assert str(other.proc.pid) in str(caught.value) or "writer" in str(caught.value)
        # Nor may it be removed while the other process holds it, unless forced.
        with pytest.raises(circbuf.BusyError):
            circbuf.remove(ring_name)
    # Same process: a second Writer on a ring this process writes is busy too.
    with circbuf.Writer(ring_name, 8192):
        with pytest.raises(circbuf.BusyError):
            circbuf.Writer(ring_name, 8192)


def test_writer_takes_over_from_a_dead_one(peer, ring_name):
    with Process([peer, "write", ring_name, "8192", "5", "10"]) as dead:
        dead.expect("ready")
        dead.send("go\n")
        dead.expect("done")
        dead.kill()
    with circbuf.Writer(ring_name, 8192) as writer:
        assert writer.stats.took_over is True
        with circbuf.Reader(ring_name, start="latest") as reader:
            assert reader.writer_status == "alive"
            writer.write(b"after")
            assert reader.read() in (pattern(4, 10), b"after")


def test_remove(ring_name):
    assert circbuf.remove(ring_name) is False
    writer = circbuf.Writer(ring_name, 8192)
    with pytest.raises(circbuf.BusyError):
        circbuf.remove(ring_name)
    assert circbuf.remove(ring_name, force=True) is True
    assert shm_files(ring_name) == []
    writer.write(b"still mapped")  # the writer's mapping outlives the name
    writer.close()
    assert circbuf.remove(ring_name) is False
