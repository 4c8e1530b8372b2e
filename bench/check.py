#!/usr/bin/python3
"""Runs a short version of the suite and checks the performance targets,
printing each ratio. Exit status: 0 all met, 1 a target missed, 2 a
measurement missing. Speed is never asserted in the tests; CI runs this and
prints the figures without failing on them.

    python3 bench/check.py [--build build/clang-bench]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import suite


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/clang-bench")
    ap.add_argument("--cpus", default="0,1")
    a = ap.parse_args()
    build = Path(a.build)
    tmp = Path(tempfile.mkdtemp(prefix="circbuf-check-"))
    lat = suite.rows(suite.run(build, "bench_latency", tmp / "latency.json", [
        "--round_trips=200000", f"--cpus={a.cpus}",
        "--benchmark_filter=floor|circbuf/64/|audit|unix-socket/64/|iceoryx.*/64/|boost.*/64/"]))
    pair_runs = [suite.rows(suite.run(build, "bench_latency", tmp / f"pair{i}.json", [
        "--round_trips=200000", f"--cpus={a.cpus}", "--benchmark_filter=floor|circbuf/64/"])) for i in (1, 2)]
    tp_data = suite.run(build, "bench_throughput", tmp / "throughput.json", [
        "--seconds=0.4", f"--cpus={a.cpus}", "--benchmark_filter=^throughput|writer-rate/circbuf/64/[01]/"])
    tp = suite.rows(tp_data)
    print(f"\ncircbuf performance targets on {suite.machine()} (ratios within one run; "
          "target 1 from three back-to-back pairs)\n")
    results = []

    def target(label, ok, detail):
        results.append(ok)
        state = "met " if ok else ("MISS" if ok is not None else "N/A ")
        print(f"  [{state}] {label}: {detail}")

    def get(table, key, field):
        b = table.get(key)
        return None if b is None or "error_message" in b else b.get(field)

    p50 = get(lat, ("latency", "circbuf", 64), "p50_ns")
    # Target 1 compares two measurements, and this kind of machine drifts
    # between a fast and a slow state on a scale of minutes: a floor measured
    # in one and circbuf in the other gives a meaningless ratio. So the floor
    # and circbuf run back to back three times (the main run and two more),
    # each pair gives its ratios, and the median pair is judged; all three
    # are printed.
    pairs = []
    for table in [lat] + pair_runs:
        f = get(table, ("latency", "floor", 64), "p50_ns")
        c50 = get(table, ("latency", "circbuf", 64), "p50_ns")
        c999 = get(table, ("latency", "circbuf", 64), "p999_ns")
        if None not in (f, c50, c999):
            pairs.append((f, c50, c999))
    if len(pairs) < 3:
        target("1. latency", None, "measurement missing")
    else:
        def judged(ratio_of, label, limit, which):
            ranked = sorted(pairs, key=ratio_of)
            f, c50, c999 = ranked[1]
            value = c50 if which == "p50" else c999
            every = ", ".join(f"{ratio_of(p):.2f}" for p in pairs)
            target(label, ratio_of(ranked[1]) <= limit,
                   f"{value:.1f} ns / {f:.1f} ns = {ratio_of(ranked[1]):.2f} "
                   f"(median of 3 back-to-back pairs: {every})")
        judged(lambda p: p[1] / p[0], "1a. 64 B one-way p50 <= 1.3 x floor p50", 1.3, "p50")
        judged(lambda p: p[2] / p[0], "1b. 64 B one-way p99.9 <= 4 x floor p50", 4.0, "p999")
    got = get(tp, ("throughput", "circbuf", 65535), "delivered_GB_per_s")
    mc = get(tp, ("throughput", "memcpy", 65535), "GB_per_s")
    if None in (got, mc):
        target("2. 65535 B delivered >= 0.5 x memcpy", None, "measurement missing")
    else:
        target("2. 65535 B delivered >= 0.5 x memcpy", got >= 0.5 * mc, f"{got:.2f} GB/s / {mc:.2f} GB/s = {got / mc:.2f}")
    rates = suite.writer_rates(tp_data)
    if 0 in rates and 1 in rates:
        target("3. writer rate with 1 reader >= 0.7 x with none", rates[1] >= 0.7 * rates[0],
               f"{rates[1]:,.0f} / {rates[0]:,.0f} msg/s = {rates[1] / rates[0]:.2f}")
    else:
        target("3. writer rate", None, "measurement missing")
    uds = get(lat, ("latency", "unix-socket", 64), "p50_ns")
    iox = get(lat, ("latency", "iceoryx-spin", 64), "p50_ns")
    if p50 is not None and uds is not None:
        target("4a. 64 B p50 >= 20 x lower than a Unix socket", uds >= 20 * p50, f"{uds:.0f} ns / {p50:.1f} ns = {uds / p50:.1f}x")
    else:
        target("4a. vs Unix socket", None, "measurement missing")
    if p50 is not None and iox is not None:
        target("4b. 64 B p50 >= 5 x lower than iceoryx", iox >= 5 * p50, f"{iox:.0f} ns / {p50:.1f} ns = {iox / p50:.1f}x")
    else:
        target("4b. vs iceoryx", None, "iceoryx not measured in this build")
    losers = []
    for (k, t, s), b in tp.items():
        if k != "throughput" or t in ("circbuf", "memcpy") or "error_message" in b:
            continue
        ours = get(tp, ("throughput", "circbuf", s), "delivered_GB_per_s")
        if ours is not None and b["delivered_GB_per_s"] >= ours:
            losers.append(f"{t} {s} B: {b['delivered_GB_per_s']:.2f} >= {ours:.2f} GB/s")
    target("4c. higher delivered throughput than every other transport at every size", not losers,
           "; ".join(losers) if losers else "yes")
    audit = lat.get(("audit", "circbuf", 64))
    if audit:
        clean = audit["syscalls"] == 0 and audit["minor_faults"] == 0 and audit["major_faults"] == 0 and audit["seccomp"] == 1
        target("5. no system call, no page fault on Read/Write", clean,
               f"{audit['syscalls']:.0f} system calls, {audit['minor_faults']:.0f}+{audit['major_faults']:.0f} "
               f"page faults in {audit['audited_operations']:.0f} operations (seccomp {'on' if audit['seccomp'] else 'off'})")
    else:
        target("5. hot-path audit", None, "measurement missing")
    missed = sum(1 for r in results if r is False)
    missing = sum(1 for r in results if r is None)
    print(f"\n{len(results) - missed - missing} met, {missed} missed, {missing} not measured")
    sys.exit(1 if missed else (2 if missing else 0))


if __name__ == "__main__":
    main()
