"""Shared code of report.py and check.py: run the benchmark binaries and read
their Google Benchmark JSON into plain tables."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def run(build: Path, binary: str, out: Path, args: list[str]) -> dict:
    """Runs one benchmark binary with JSON output; returns the parsed JSON."""
    exe = build / binary
    if not exe.exists():
        sys.exit(f"{exe} not found: build the benchmarks first (cmake --workflow --preset clang-bench)")
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
