#!/usr/bin/env bash
# Huge pages against 4 KiB pages for the record space, same binary, same
# machine, interleaved runs. /dev/shm's tmpfs decides whether huge pages
# exist at all (its huge= mount option), so the script runs the benchmarks in
# a private mount namespace with its own tmpfs on /dev/shm mounted
# huge=advise: the system's /dev/shm is not touched. Needs root (or
# CAP_SYS_ADMIN) and the clang-bench build (built here if missing). Prints
# one Markdown table: delivered throughput per message size, the writer's
# rate with 0 and 1 reader, and one-way latency (p50, p99) on a ring of the
# same capacity.
#   bench/hugepages.sh [capacity-bytes, default 50 MiB] [seconds, default 0.5] [repetitions, default 6]
set -euo pipefail
cd "$(dirname "$0")/.."
capacity=${1:-52428800}
seconds=${2:-0.5}
reps=${3:-6}
[[ -x build/clang-bench/bench_throughput && -x build/clang-bench/bench_latency ]] ||
  { cmake --preset clang-bench >/dev/null && cmake --build build/clang-bench --target bench_throughput bench_latency; }
out=$(mktemp -d /tmp/circbuf-hugepages-XXXXXX)
trap 'rm -rf "$out"' EXIT
export out capacity seconds reps
unshare -m bash -c '
  set -euo pipefail
  mount --make-rprivate /
  mount -t tmpfs -o size=2g,mode=1777,huge=advise circbuf-hugepages /dev/shm
  for rep in $(seq "$reps"); do
    order="no prefer"; (( rep % 2 == 0 )) && order="prefer no"  # neither always runs first
    for pages in $order; do
      CIRCBUF_LOG=off build/clang-bench/bench_throughput --capacity="$capacity" --huge-pages="$pages" \
        --seconds="$seconds" --benchmark_filter="^throughput/circbuf/|^writer-rate/circbuf/64/[01]/" \
        --benchmark_out="$out/$pages-$rep.json" --benchmark_out_format=json >/dev/null
      CIRCBUF_LOG=off build/clang-bench/bench_latency --capacity="$capacity" --huge-pages="$pages" \
        --round_trips=200000 --benchmark_filter="^latency/circbuf/(64|1024|65535)/" \
        --benchmark_out="$out/$pages-$rep-latency.json" --benchmark_out_format=json >/dev/null
    done
  done'
python3 - "$out" "$capacity" <<'PY'
import glob, json, os, statistics, sys
out, capacity = sys.argv[1], int(sys.argv[2])
runs = {"no": {}, "prefer": {}}
huge = 0.0
# Files are PAGES-REP.json and PAGES-REP-latency.json; runs[pages][name][rep].
for path in sorted(glob.glob(f"{out}/*.json")):
    pages, rep = os.path.basename(path).removesuffix(".json").split("-")[:2]
    for b in json.load(open(path))["benchmarks"]:
        if b["name"].startswith("throughput/circbuf/"):
            name = "delivered, " + b["name"].split("/")[2] + " B"
            runs[pages].setdefault(name, {})[rep] = b["delivered_GB_per_s"]
        elif b["name"].startswith("latency/circbuf/"):
            size = b["name"].split("/")[2]
            for q in ("p50", "p99"):
                runs[pages].setdefault(f"one-way {q} ns, {size} B", {})[rep] = b[f"{q}_ns"]
        elif b["name"].startswith("writer-rate"):
            name = f"writer rate, 64 B, {b['readers']:.0f} reader(s)"
            runs[pages].setdefault(name, {})[rep] = b["writer_msgs_per_s"] / 1e6
            if pages == "prefer":
                huge = max(huge, b["huge_page_MiB"])
print(f"circbuf ring of {capacity / 2**20:.0f} MiB, 4 KiB pages against huge pages (a huge=advise tmpfs; the "
      f"writer mapped {huge:.0f} MiB of the ring with huge pages); median of "
      f"{len(glob.glob(out + '/no-*-latency.json'))} interleaved runs, {os.cpu_count()} CPUs\n")
print("| benchmark | 4 KiB pages | huge pages | huge / 4 KiB, median of paired runs |\n| --- | ---: | ---: | ---: |")
def key(name):
    kind = 0 if name.startswith("delivered") else 1 if name.startswith("writer") else 2
    return (kind, name.split(",")[0], int("".join(c for c in name.split(",")[-1] if c.isdigit())))
for name in sorted(runs["no"], key=key):
    a, b = runs["no"][name], runs["prefer"].get(name, {})
    small, big = statistics.median(a.values()), statistics.median(b.values() or [float("nan")])
    # The two runs of a pair ran back to back: their ratio is immune to this
    # machine's slow drifts between a fast and a slow state.
    ratio = statistics.median([b[r] / a[r] for r in a if r in b] or [float("nan")])
    unit = "M msg/s" if name.startswith("writer") else "GB/s" if name.startswith("delivered") else "ns"
    print(f"| {name} | {small:,.3f} {unit} | {big:,.3f} {unit} | {ratio:.2f} |")
print("\n(throughput and writer rate: higher is better; latency: lower is better)")
if os.environ.get("RAW"):
    for pages in runs:
        for name, values in sorted(runs[pages].items(), key=lambda kv: key(kv[0])):
            print(f"{pages:6} {name:32} " + " ".join(f"{values[r]:.3f}" for r in sorted(values, key=int)))
PY
