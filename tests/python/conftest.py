"""pytest setup for the circbuf Python package's tests.

Sanitizer presets: an ASan/TSan-instrumented libcircbuf cannot be loaded into an
uninstrumented interpreter (ASan's runtime must come first in the process and aborts it
otherwise; TSan's cannot be dlopen()ed at all), so when CIRCBUF_SANITIZER is "address" or
"thread" every test module is replaced, before it is imported (importing circbuf would
load the library), by one test that skips with the reason. The suite then passes with
"N skipped" rather than failing or killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SANITIZER_REASON = ("the interpreter cannot host an ASan/TSan-instrumented libcircbuf without "
                    "LD_PRELOAD of the runtime")


def _skip_reason() -> str | None:
    sanitizer = os.environ.get("CIRCBUF_SANITIZER", "").strip().lower()
    if not sanitizer or sanitizer == "none":
        return None
    preload = os.environ.get("LD_PRELOAD", "")
    if sanitizer in ("address", "thread"):
        runtime = "asan" if sanitizer == "address" else "tsan"
        if runtime in preload:  # the runtime is preloaded: the library can load after all
            return None
        return f"CIRCBUF_SANITIZER={sanitizer}: {SANITIZER_REASON}"
    # Another sanitizer (undefined, ...): try to load the library in a child, since a
    # sanitizer runtime may abort the process that loads it.
    probe = subprocess.run([sys.executable, "-c", "import circbuf"], capture_output=True,
                           text=True, timeout=60, env=_child_env())
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["(no message)"])[-1]
    return f"CIRCBUF_SANITIZER={sanitizer}: libcircbuf does not load in the interpreter: {last}"


def _child_env() -> dict:
    env = dict(os.environ)
    python_dir = os.path.join(os.path.dirname(__file__), "..", "..", "python")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.abspath(python_dir),
                                                    env.get("PYTHONPATH", "")) if p)
    return env


SKIP_REASON = _skip_reason()


class _SkipItem(pytest.Item):
    def runtest(self) -> None:
        pytest.skip(SKIP_REASON)

    def reportinfo(self):
        return self.path, None, self.name


class _SkippedModule(pytest.File):
    """Stands in for a test module that must not be imported (see the module docstring)."""

    def collect(self):
        yield _SkipItem.from_parent(self, name=self.path.stem)


def pytest_pycollect_makemodule(module_path, parent):
    if SKIP_REASON is not None:
        return _SkippedModule.from_parent(parent, path=module_path)
    return None


def pytest_report_header(config) -> str:
    if SKIP_REASON is not None:
        return f"circbuf: SKIPPING every test: {SKIP_REASON}"
    return "circbuf: CIRCBUF_LIBRARY=" + os.environ.get("CIRCBUF_LIBRARY", "(unset: installed)")


def pytest_configure(config) -> None:
    if SKIP_REASON is not None:
        # Printed even under -q, where the report header is not.
        print(f"circbuf: skipping the Python tests: {SKIP_REASON}", file=sys.stderr)


# ---- Fixtures (circbuf is imported lazily: see the module docstring) -------------------------
_names = 0


@pytest.fixture
def ring_name():
    """A ring name unique to this test ("/cbt-py-PID-N"), removed (forcibly) at the end."""
    global _names
    _names += 1
    name = f"/cbt-py-{os.getpid()}-{_names}"
    yield name
    import circbuf

    circbuf.remove(name, force=True)


def _program(variable: str):
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"{variable} is not set (the path of the program this test needs)")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{variable}={path}: not an executable file")
    return os.path.abspath(path)


@pytest.fixture
def tool():
    """The circbuf command-line tool ($CIRCBUF_TOOL)."""
    return _program("CIRCBUF_TOOL")


@pytest.fixture(params=["CIRCBUF_PEER", "CIRCBUF_PEER_C"], ids=["peer-cpp", "peer-c"])
def any_peer(request):
    """Each interop peer in turn: the C++ API's ($CIRCBUF_PEER) and the C ABI's
    ($CIRCBUF_PEER_C)."""
    return _program(request.param)


@pytest.fixture
def peer():
    """The C++ API's interop peer ($CIRCBUF_PEER)."""
    return _program("CIRCBUF_PEER")
