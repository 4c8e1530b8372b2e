#!/usr/bin/env bash
# Reader scaling on whatever machine this runs on: the circbuf writer's rate
# for 64-byte messages with 0, 1, 2, 4 .. cores-1 reader processes, each
# pinned to its own CPU and reading flat out. One short script, so that it
# can be run on a machine with many cores (16+) and its table put in the
# README. Needs the clang-bench build (built here if missing).
#   bench/scaling.sh [seconds-per-point, default 1]
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x build/clang-bench/bench_throughput ]] || { cmake --preset clang-bench >/dev/null && cmake --build build/clang-bench --target bench_throughput; }
out=$(mktemp /tmp/circbuf-scaling-XXXXXX.json)
CIRCBUF_LOG=off build/clang-bench/bench_throughput --seconds="${1:-1}" --benchmark_filter='writer-rate' \
  --benchmark_out="$out" --benchmark_out_format=json >/dev/null
python3 - "$out" <<'PY'
import json, os, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b["name"].startswith("writer-rate")]
rows.sort(key=lambda b: b["readers"])
base = rows[0]["writer_msgs_per_s"]
print(f"circbuf writer rate, 64-byte messages, {os.cpu_count()} CPUs (writer on CPU 0, reader i on CPU 1+i)\n")
print("| readers | writer msg/s | vs no reader |\n| ---: | ---: | ---: |")
for b in rows:
    print(f"| {b['readers']:.0f} | {b['writer_msgs_per_s']:,.0f} | {b['writer_msgs_per_s'] / base:.2f} |")
PY
rm -f "$out"
