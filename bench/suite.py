"""Shared code of report.py and check.py: run the benchmark binaries and read
their Google Benchmark JSON into plain tables."""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRESET = "clang-bench"
DEFAULT_BUILD = ROOT / "build" / PRESET
BINARIES = ["bench_latency", "bench_throughput", "bench_wait"]


def ensure_built(build: Path, binaries: list[str] = BINARIES) -> None:
    """Builds the benchmark binaries in `build` if one is missing or stale
    (ninja decides; nothing to do takes a fraction of a second). A build
    directory that is not configured yet is configured with the clang-bench
    preset first (in another directory than the preset's, with -B). Prints
    every command; exits with status 2 and a message naming what is missing
    when a tool is missing or a step fails."""
    for tool in ("cmake", "ninja"):
        if shutil.which(tool) is None:
            _fail(f"{tool} not found: it is needed to build the benchmarks. Install the toolchain first "
                  f"(as root): {ROOT / 'toolchains' / 'setup-debian12.sh'}")
    build = build.resolve()
    if not (build / "CMakeCache.txt").exists():
        _step(["cmake", "--preset", PRESET] + ([] if build == DEFAULT_BUILD else ["-B", str(build)]))
    _step(["cmake", "--build", str(build), "--target", *binaries])


def _step(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr)
    if done.returncode != 0:
        _fail(f"{cmd[0]} {cmd[1]} failed (exit {done.returncode}): see above. "
                 f"{ROOT / 'toolchains' / 'setup-debian12.sh'} installs what the build needs "
                 "(clang-19, clang-tools-19, cmake >= 3.28, ninja, the libraries).")


def _fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)


def run(build: Path, binary: str, out: Path, args: list[str]) -> dict:
    """Runs one benchmark binary with JSON output; returns the parsed JSON.
    Call ensure_built first."""
    exe = build / binary
    if not exe.exists():
        _fail(f"{exe} not found after the build: is {build} a build directory of the {PRESET} preset?")
    env = dict(os.environ, CIRCBUF_LOG="off")
    cmd = [str(exe), f"--benchmark_out={out}", "--benchmark_out_format=json", *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def rows(data: dict) -> dict:
    """{(kind, transport, size): benchmark entry}, e.g. ("latency", "circbuf", 64)."""
    table = {}
    for b in data["benchmarks"]:
        parts = b["name"].split("/")
        if len(parts) < 3:
            continue
        kind, transport, size = parts[0], parts[1], parts[2]
        try:
            table[(kind, transport, int(size))] = b
        except ValueError:
            continue
    return table


def lap_rows(data: dict) -> dict:
    """{(size, policy): entry} of the lap/circbuf/SIZE/POLICY runs."""
    table = {}
    for b in data["benchmarks"]:
        parts = b["name"].split("/")
        if len(parts) >= 4 and parts[0] == "lap":
            table[(int(parts[2]), parts[3])] = b
    return table


def writer_rates(data: dict) -> dict:
    """{readers: writer messages per second} from the writer-rate runs."""
    return {int(b["readers"]): b["writer_msgs_per_s"] for b in data["benchmarks"]
            if b["name"].startswith("writer-rate/") and "error_message" not in b}


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}"
