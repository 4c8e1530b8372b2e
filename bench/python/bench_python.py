#!/usr/bin/python3
"""Python binding benchmark: a Python writer process and a Python reader process.

    CIRCBUF_LIBRARY=build/clang-bench/libcircbuf.so.0 PYTHONPATH=python \\
        /usr/bin/python3 bench/python/bench_python.py [--seconds S] [--json FILE]

For 64 B and 1 KiB messages, the rate of messages delivered to the reader process (messages
per second, from its first message to its last) for:

* circbuf, the reader using read_into (a preallocated bytearray), read_batch(256),
  read_batch_into(256) (a preallocated bytearray and array('I')) and read(),
  each with two writers: "paced" (lossless: the writer stays within half a ring of the
  reader, through a shared counter the reader updates every 256 messages) and "flat-out"
  (the writer never waits; the reader's losses are counted and reported);
* multiprocessing.Queue (put / get);
* a pipe, os.write / os.read of one fixed-size message per call;
* a Unix socketpair (SOCK_SEQPACKET), send / recv and send / recv_into.

Every writer writes for --seconds, then closes its end; every peer but flat-out circbuf is
lossless (the kernel or the queue holds the writer back). Plus, in this process: the cost
of a do-nothing C call through the binding (the per-call floor), and the reader's own cost
per message when draining a ring that is already full (no writer running meanwhile).

The figures are what they are: nothing here is tuned to meet the targets it reports.
"""

from __future__ import annotations

import argparse
import array
import json
import multiprocessing
import os
import platform
import socket
import sys
import time
from typing import Callable, Dict, List, Optional

try:
    import circbuf
except ImportError:  # run from a source tree without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python"))
    import circbuf
from circbuf import _lib, _ring  # the raw functions, for the per-call floor

CTX = multiprocessing.get_context("fork")
CIRCBUF_CAPACITY = 16 << 20
CHUNK = 256  # messages between clock reads (writers) and between counter updates (readers)


def _message(size: int) -> bytes:
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


# ---- circbuf -------------------------------------------------------------------------------------
def _circbuf_writer(conn, name: str, size: int, seconds: float, consumed, window: int) -> None:
    writer = circbuf.Writer(name, CIRCBUF_CAPACITY)
    conn.send("created")
    message = _message(size)
    write = writer.write
    assert conn.recv() == "go"
    written = 0
    deadline = time.perf_counter() + seconds
    while True:
        for _ in range(CHUNK):
            write(message)
        written += CHUNK
        if time.perf_counter() >= deadline:
            break
        if window:  # paced: stay within `window` messages of the reader, so none is lost
            while written - consumed.value > window:
                time.sleep(0.0001)
    writer.close()
    conn.send({"written": written})


def _circbuf_reader(conn, name: str, size: int, method: str, consumed) -> None:
    reader = circbuf.Reader(name, start="oldest")
    conn.send("ready")
    wait = reader.wait
    buffer = bytearray(size)
    # The clock starts at the first message.
    while not (reader.read_into(buffer) if method == "read_into" else reader.read()):
        wait(10)
    start = end = time.perf_counter()
    delivered = 1
    if method == "read_into":
        read_into = reader.read_into
        while True:
            if read_into(buffer):
                delivered += 1
                if not delivered % CHUNK:
                    consumed.value = delivered
                continue
            end = time.perf_counter()
            consumed.value = delivered
            if wait(10) in ("closed", "dead", "timeout"):
                break
    elif method == "read":
        read = reader.read
        while True:
            if read() is not None:
                delivered += 1
                if not delivered % CHUNK:
                    consumed.value = delivered
                continue
            end = time.perf_counter()
            consumed.value = delivered
            if wait(10) in ("closed", "dead", "timeout"):
                break
    elif method == "read_batch_into":
        read_batch_into = reader.read_batch_into
        into = bytearray(1 << 20)
        sizes = array.array("I", [0] * CHUNK)
        while True:
            n = read_batch_into(into, sizes)
            if n:
                delivered += n
                consumed.value = delivered
                continue
            end = time.perf_counter()
            if wait(10) in ("closed", "dead", "timeout"):
                break
    else:
        read_batch = reader.read_batch
        while True:
            batch = read_batch(CHUNK)
            if batch:
                delivered += len(batch)
                consumed.value = delivered
                continue
            end = time.perf_counter()
            if wait(10) in ("closed", "dead", "timeout"):
                break
    conn.send({"delivered": delivered, "lost": reader.lost, "seconds": end - start,
               "laps": reader.stats.laps})
    reader.close()


def run_circbuf(size: int, method: str, paced: bool, seconds: float) -> Dict:
    name = f"/cbt-pybench-{os.getpid()}"
    circbuf.remove(name, force=True)
    record = 8 + (size + 7) // 8 * 8
    window = CIRCBUF_CAPACITY // record // 2 if paced else 0
    consumed = CTX.RawValue("Q", 0)
    writer_end, writer_conn = CTX.Pipe()
    reader_end, reader_conn = CTX.Pipe()
    writer = CTX.Process(target=_circbuf_writer,
                         args=(writer_conn, name, size, seconds, consumed, window))
    writer.start()
    assert writer_end.recv() == "created"
    reader = CTX.Process(target=_circbuf_reader, args=(reader_conn, name, size, method, consumed))
    reader.start()
    assert reader_end.recv() == "ready"
    writer_end.send("go")
    wrote = writer_end.recv()
    got = reader_end.recv()
    writer.join()
    reader.join()
    circbuf.remove(name, force=True)
    result = {"delivered": got["delivered"], "lost": got["lost"], "laps": got["laps"],
              "written": wrote["written"], "seconds": got["seconds"]}
    if result["delivered"] + result["lost"] != result["written"]:
        result["mismatch"] = True  # would be a bug: every message is delivered or counted lost
    return result


# ---- peers ---------------------------------------------------------------------------------------
def _timed_writer(conn, send: Callable[[bytes], object], finish: Callable[[], object],
                  size: int, seconds: float) -> None:
    message = _message(size)
    assert conn.recv() == "go"
    written = 0
    deadline = time.perf_counter() + seconds
    while True:
        for _ in range(CHUNK):
            send(message)
        written += CHUNK
        if time.perf_counter() >= deadline:
            break
    finish()
    conn.send({"written": written})


def _queue_writer(conn, queue, size: int, seconds: float) -> None:
    def finish() -> None:
        queue.put(None)
        queue.close()
        queue.join_thread()  # the feeder thread has handed everything to the pipe
    _timed_writer(conn, queue.put, finish, size, seconds)


def _queue_reader(conn, queue, size: int) -> None:
    conn.send("ready")
    get = queue.get
    get()
    start = time.perf_counter()
    delivered = 1
    while get() is not None:
        delivered += 1
    conn.send({"delivered": delivered, "seconds": time.perf_counter() - start})


def _fd_writer(conn, fd: int, other: int, size: int, seconds: float, use_socket: bool) -> None:
    os.close(other)
    if use_socket:
        sock = socket.socket(fileno=fd)
        _timed_writer(conn, sock.send, sock.close, size, seconds)
    else:
        _timed_writer(conn, lambda m: os.write(fd, m), lambda: os.close(fd), size, seconds)


def _fd_reader(conn, fd: int, other: int, size: int, how: str) -> None:
    os.close(other)
    conn.send("ready")
    short = 0
    if how == "os.read":
        read = os.read
        first = read(fd, size)
        start = time.perf_counter()
        delivered = 1
        while True:
            data = read(fd, size)
            if len(data) == size:
                delivered += 1
            elif not data:
                break
            else:
                short += 1
    else:
        sock = socket.socket(fileno=fd)
        if how == "recv":
            recv = sock.recv
            first = recv(size)
            start = time.perf_counter()
            delivered = 1
            while True:
                data = recv(size)
                if len(data) == size:
                    delivered += 1
                elif not data:
                    break
                else:
                    short += 1
        else:
            buffer = bytearray(size)
            recv_into = sock.recv_into
            first = recv_into(buffer)
            start = time.perf_counter()
            delivered = 1
            while True:
                n = recv_into(buffer)
                if n == size:
                    delivered += 1
                elif not n:
                    break
                else:
                    short += 1
    assert first, "no first message"
    conn.send({"delivered": delivered, "seconds": time.perf_counter() - start, "short": short})


def run_peer(kind: str, size: int, seconds: float) -> Dict:
    writer_end, writer_conn = CTX.Pipe()
    reader_end, reader_conn = CTX.Pipe()
    opened: List[int] = []
    if kind == "queue":
        queue = CTX.Queue()
        writer = CTX.Process(target=_queue_writer, args=(writer_conn, queue, size, seconds))
        reader = CTX.Process(target=_queue_reader, args=(reader_conn, queue, size))
    else:
        if kind == "pipe":
            read_fd, write_fd = os.pipe()
        else:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            read_fd, write_fd = a.detach(), b.detach()
        opened = [read_fd, write_fd]
        how = {"pipe": "os.read", "socket": "recv", "socket-into": "recv_into"}[kind]
        writer = CTX.Process(target=_fd_writer,
                             args=(writer_conn, write_fd, read_fd, size, seconds, kind != "pipe"))
        reader = CTX.Process(target=_fd_reader, args=(reader_conn, read_fd, write_fd, size, how))
    writer.start()
    reader.start()
    for fd in opened:  # only the children hold the ends now: EOF reaches the reader
        os.close(fd)
    assert reader_end.recv() == "ready"
    writer_end.send("go")
    wrote = writer_end.recv()
    got = reader_end.recv()
    writer.join()
    reader.join()
    result = {"delivered": got["delivered"], "lost": 0, "written": wrote["written"],
              "seconds": got["seconds"]}
    if got.get("short"):
        result["short_reads"] = got["short"]
    if result["delivered"] != result["written"]:
        result["mismatch"] = True
    return result


# ---- this process: per-call floor, reader alone --------------------------------------------------
def _per_call(loop: Callable[[int], None], count: int) -> float:
    best = float("inf")
    for _ in range(3):  # the best of three: the least disturbed by the other processes
        start = time.perf_counter()
        loop(count)
        best = min(best, (time.perf_counter() - start) / count * 1e9)
    return best


def measure_floor() -> Dict:
    name = f"/cbt-pybench-floor-{os.getpid()}"
    circbuf.remove(name, force=True)
    with circbuf.Writer(name, 8192), circbuf.Reader(name) as reader:
        handle = reader._h
        delivered = _lib.reader_delivered

        def nothing_ctypes(n: int) -> None:
            for _ in range(n):
                delivered(handle)

        # The floor of the binding that read/write go through: the speedups extension if it
        # is in use (circbuf.SPEEDUPS), else ctypes.
        nothing = nothing_ctypes
        if circbuf.SPEEDUPS:
            fast_delivered = _ring._fast.delivered
            hv = reader._hv

            def nothing(n: int) -> None:
                for _ in range(n):
                    fast_delivered(hv)

        def version(n: int) -> None:
            for _ in range(n):
                _lib.version()

        def empty_read(n: int) -> None:
            for _ in range(n):
                reader.read()

        count = 300_000
        return {"binding": "speedups" if circbuf.SPEEDUPS else "ctypes",
                "reader_delivered_ns": _per_call(nothing, count),
                "reader_delivered_ctypes_ns": _per_call(nothing_ctypes, count),
                "version_cdll_ns": _per_call(version, count),
                "empty_read_ns": _per_call(empty_read, count)}


def measure_drain(size: int) -> Dict:
    """The reader's own cost per message: a ring filled first, then drained, no writer running."""
    name = f"/cbt-pybench-drain-{os.getpid()}"
    circbuf.remove(name, force=True)
    record = 8 + (size + 7) // 8 * 8
    # Well within the ring: a reader that is behind by more than about 7/8 of it is lapped.
    count = min(200_000, circbuf.MAX_CAPACITY // record // 2)
    message = _message(size)
    out = {}
    with circbuf.Writer(name, circbuf.MAX_CAPACITY) as writer:
        for method in ("read_into", "read", "read_batch", "read_batch_into"):
            best = float("inf")
            for _ in range(2):
                with circbuf.Reader(name, start="next") as reader:
                    for _ in range(count):
                        writer.write(message)
                    buffer = bytearray(size)
                    got = 0
                    start = time.perf_counter()
                    if method == "read_into":
                        read_into = reader.read_into
                        while read_into(buffer):
                            got += 1
                    elif method == "read":
                        read = reader.read
                        while read() is not None:
                            got += 1
                    elif method == "read_batch_into":
                        read_batch_into = reader.read_batch_into
                        into = bytearray(1 << 20)
                        sizes = array.array("I", [0] * CHUNK)
                        while True:
                            n = read_batch_into(into, sizes)
                            if not n:
                                break
                            got += n
                    else:
                        read_batch = reader.read_batch
                        while True:
                            batch = read_batch(CHUNK)
                            if not batch:
                                break
                            got += len(batch)
                    elapsed = time.perf_counter() - start
                    assert got == count and reader.lost == 0, (got, count, reader.lost)
                    best = min(best, elapsed / count * 1e9)
            out[method] = best
        start = time.perf_counter()
        for _ in range(count):
            writer.write(message)
        out["write"] = (time.perf_counter() - start) / count * 1e9
    return out


# ---- report --------------------------------------------------------------------------------------
RUNS = [
    ("circbuf read_into", "paced", lambda s, t: run_circbuf(s, "read_into", True, t)),
    ("circbuf read_batch(256)", "paced", lambda s, t: run_circbuf(s, "read_batch", True, t)),
    ("circbuf read_batch_into(256)", "paced", lambda s, t: run_circbuf(s, "read_batch_into", True, t)),
    ("circbuf read()", "paced", lambda s, t: run_circbuf(s, "read", True, t)),
    ("circbuf read_into", "flat-out", lambda s, t: run_circbuf(s, "read_into", False, t)),
    ("circbuf read_batch(256)", "flat-out", lambda s, t: run_circbuf(s, "read_batch", False, t)),
    ("circbuf read()", "flat-out", lambda s, t: run_circbuf(s, "read", False, t)),
    ("multiprocessing.Queue", "flat-out", lambda s, t: run_peer("queue", s, t)),
    ("pipe os.read", "flat-out", lambda s, t: run_peer("pipe", s, t)),
    ("socketpair SEQPACKET recv", "flat-out", lambda s, t: run_peer("socket", s, t)),
    ("socketpair SEQPACKET recv_into", "flat-out", lambda s, t: run_peer("socket-into", s, t)),
]


def _verdict(value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    return f"{'met' if met else 'NOT met'} (target {'>=' if at_least else '<='} {target:g})"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="writing time per run")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--sizes", default="64,1024", help="message sizes (bytes), comma-separated")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    setup = {"python": platform.python_version(), "library": circbuf.library_path,
             "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
             "seconds_per_run": args.seconds, "machine": platform.machine(),
             "circbuf_capacity": CIRCBUF_CAPACITY}
    print(f"circbuf Python benchmark: {setup['python']}, {circbuf.library_path}, "
          f"{setup['cpus']} CPUs, load average {setup['load_average_start'][0]:.2f}, "
          f"{args.seconds:g} s per run")
    floor = measure_floor()
    results: Dict[int, Dict[str, Dict]] = {}
    drains: Dict[int, Dict] = {}
    for size in sizes:
        results[size] = {}
        print(f"\n{size} B messages: writer process -> reader process")
        print(f"  {'reader':32s} {'writer':9s} {'delivered/s':>12s} {'ns/msg':>8s} "
              f"{'lost':>9s} {'written':>9s}")
        for label, writer_kind, run in RUNS:
            r = run(size, args.seconds)
            r["rate"] = r["delivered"] / r["seconds"] if r["seconds"] > 0 else 0.0
            results[size][f"{label} | {writer_kind}"] = r
            flags = "  MISMATCH" if r.get("mismatch") else ""
            if r.get("short_reads"):
                flags += f"  short reads {r['short_reads']}"
            print(f"  {label:32s} {writer_kind:9s} {r['rate']:12,.0f} {1e9 / r['rate']:8.0f} "
                  f"{r['lost']:9,d} {r['written']:9,d}{flags}", flush=True)
        drains[size] = measure_drain(size)

    print("\nIn this process:")
    print(f"  per-message calls through: {floor['binding']} (circbuf.SPEEDUPS: {circbuf.SPEEDUPS})")
    print(f"  do-nothing call circbuf_reader_delivered through it: {floor['reader_delivered_ns']:.0f} ns "
          f"(through ctypes' PyDLL: {floor['reader_delivered_ctypes_ns']:.0f} ns)")
    print(f"  circbuf_version (CDLL, GIL released and re-taken): {floor['version_cdll_ns']:.0f} ns")
    print(f"  Reader.read() on an empty ring: {floor['empty_read_ns']:.0f} ns")
    for size in sizes:
        d = drains[size]
        print(f"  {size} B, reader alone draining a full ring: read_into {d['read_into']:.0f} ns, "
              f"read() {d['read']:.0f} ns, read_batch(256) {d['read_batch']:.0f} ns, "
              f"read_batch_into(256) {d['read_batch_into']:.0f} ns per message; "
              f"writer alone: write() {d['write']:.0f} ns")

    print("\nRatios:")
    ratios = {}
    for size in sizes:
        r = results[size]
        pipe = r["pipe os.read | flat-out"]["rate"]
        into = r["circbuf read_into | paced"]["rate"]
        batch = r["circbuf read_batch(256) | paced"]["rate"]
        batch_into = r["circbuf read_batch_into(256) | paced"]["rate"]
        plain = r["circbuf read() | paced"]["rate"]
        d = drains[size]
        entry = {
            "read_into_over_pipe": into / pipe,
            "read_over_pipe": plain / pipe,
            "read_into_cost_over_floor_two_process": (1e9 / into) / floor["reader_delivered_ns"],
            "read_into_cost_over_floor_alone": d["read_into"] / floor["reader_delivered_ns"],
            "batch_over_read_into_two_process": batch / into,
            "batch_over_read_into_alone": d["read_into"] / d["read_batch"],
            "batch_into_over_read_into_two_process": batch_into / into,
            "batch_into_over_read_into_alone": d["read_into"] / d["read_batch_into"],
        }
        ratios[size] = entry
        print(f"  {size} B: circbuf read_into rate / pipe rate: {entry['read_into_over_pipe']:.2f} "
              f"(read(): {entry['read_over_pipe']:.2f}) "
              f"{_verdict(entry['read_into_over_pipe'], 10, True)}")
        print(f"  {size} B: read_into cost / do-nothing call: "
              f"{entry['read_into_cost_over_floor_two_process']:.2f} two processes, "
              f"{entry['read_into_cost_over_floor_alone']:.2f} reader alone "
              f"{_verdict(entry['read_into_cost_over_floor_alone'], 2, False)}")
        print(f"  {size} B: read_batch rate / read_into rate: "
              f"{entry['batch_over_read_into_two_process']:.2f} two processes, "
              f"{entry['batch_over_read_into_alone']:.2f} reader alone "
              f"{_verdict(entry['batch_over_read_into_alone'], 5, True)}")
        print(f"  {size} B: read_batch_into rate / read_into rate: "
              f"{entry['batch_into_over_read_into_two_process']:.2f} two processes, "
              f"{entry['batch_into_over_read_into_alone']:.2f} reader alone "
              f"{_verdict(entry['batch_into_over_read_into_alone'], 5, True)}")
    setup["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end: {setup['load_average_end'][0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setup": setup, "floor": floor, "drain": drains, "runs": results,
                       "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
