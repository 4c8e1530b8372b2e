"""Helpers shared by the Python tests: the interop pattern, peer processes, child scripts."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from typing import List, Optional

PYTHON_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "python"))
SHM = "/dev/shm"

# The pattern of tests/capi/pattern.h: message i of a writer has 1 + (i * 7919) % max bytes;
# byte k is (i >> 8k) & 0xff for k < 8 and (i * 31 + k) & 0xff after.
_RAMP = bytes(range(256)) * (65536 // 256 + 2)


def pattern_size(i: int, max_size: int) -> int:
    return 1 + (i * 7919) % max_size


def pattern(i: int, max_size: int) -> bytes:
    size = pattern_size(i, max_size)
    head = (i & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    if size <= 8:
        return head[:size]
    start = (i * 31 + 8) & 0xFF  # byte 8 is (i * 31 + 8) & 0xff, then +1 per byte, mod 256
    return head + _RAMP[start:start + size - 8]


def bad_indices(messages: List[bytes], first_index: int, max_size: int) -> List[int]:
    """Indices (in the writer's numbering) of the messages that do not match the pattern."""
    return [first_index + j for j, m in enumerate(messages)
            if m != pattern(first_index + j, max_size)]


def shm_files(name: str) -> List[str]:
    """The files of ring `name` in /dev/shm (its State and its data segment)."""
    base = name.lstrip("/")
    return sorted(f for f in os.listdir(SHM) if f in (base, base + ".data"))


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHON_DIR, env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Process:
    """A child process with line-based stdin/stdout; stdout lines are collected by a thread
    so that reads can time out."""

    def __init__(self, argv: List[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=child_env())
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float = 10.0) -> str:
        """The next line of its stdout; fails the test on timeout or EOF."""
        try:
            got = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.argv}: no output line within {timeout} s") from None
        if got is None:
            self.proc.wait(timeout=5)
            raise AssertionError(f"{self.argv}: exited ({self.proc.returncode}) without output; "
                                 f"stderr: {self.stderr()}")
        return got

    def expect(self, text: str, timeout: float = 10.0) -> None:
        got = self.line(timeout)
        assert got == text, f"{self.argv}: expected {text!r}, got {got!r}; stderr: {self.stderr()}"

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self, timeout: float = 10.0) -> int:
        self.close_stdin()
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close_stdin()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()


def python_child(script: str) -> Process:
    """A child Python process running `script` (with the circbuf package on its path)."""
    return Process([sys.executable, "-c", script])
