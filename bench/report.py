#!/usr/bin/python3
"""Runs the whole benchmark suite and writes, into OUT (default docs/perf):
latency.json and throughput.json (Google Benchmark), summary.md (tables with
ratios measured in the same run) and latency.png, latency_sizes.png and throughput.png.

    python3 bench/report.py [--build build/clang-bench] [--out docs/perf] [--quick] [--reuse]

Like check.py, it builds the benchmarks first when a binary is missing or stale.
"""

import argparse
import datetime
import json
from pathlib import Path

import suite

LAT_SIZES = [8, 64, 1024, 65535]
TP_SIZES = [8, 64, 73, 1024, 65535]


def fmt_ns(v):
    return f"{v / 1000:.1f} us" if v >= 10000 else f"{v:.0f} ns"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(suite.DEFAULT_BUILD))
    ap.add_argument("--out", default="docs/perf")
    ap.add_argument("--quick", action="store_true", help="fewer round trips, shorter runs")
    ap.add_argument("--cpus", default="0,1")
    ap.add_argument("--reuse", action="store_true", help="rebuild the summary and plots from OUT's JSON files")
    a = ap.parse_args()
    build, out = Path(a.build), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    trips = "200000" if a.quick else "1000000"
    seconds = "0.3" if a.quick else "1"
    if a.reuse:
        lat = suite.rows(json.loads((out / "latency.json").read_text()))
        tp_data = json.loads((out / "throughput.json").read_text())
    else:
        suite.ensure_built(build)
        lat = suite.rows(suite.run(build, "bench_latency", out / "latency.json", [f"--round_trips={trips}", f"--cpus={a.cpus}"]))
        tp_data = suite.run(build, "bench_throughput", out / "throughput.json", [f"--seconds={seconds}", f"--cpus={a.cpus}"])
    tp = suite.rows(tp_data)

    floor = lat[("latency", "floor", 64)]["p50_ns"]
    md = [f"# circbuf benchmark report", "",
          f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {suite.machine()}; "
          f"processes pinned to CPUs {a.cpus}. One run, all transports: compare ratios within it.", "",
          "## One-way latency (round trip / 2)", "",
          f"Floor: one cache line bounced between the two processes, p50 {floor:.1f} ns one way.", "",
          "Copy floor (copy-floor): memcpy into a shared ring of the same size as circbuf's, a release-stored "
          "counter, memcpy out (bench/support/copy_floor.hpp); the last column compares each p50 with its p50 "
          "at the same size.", "",
          "| transport | bytes | p50 | p90 | p99 | p99.9 | max | p50 / floor | p50 / copy floor |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    transports = sorted({t for (k, t, s) in lat if k == "latency" and t != "floor"},
                        key=lambda t: (t != "circbuf", t != "copy-floor", t))
    for t in transports:
        for s in LAT_SIZES:
            b = lat.get(("latency", t, s))
            if b is None or "error_message" in b:
                continue
            cf = lat.get(("latency", "copy-floor", s))
            vs_copy = f"{b['p50_ns'] / cf['p50_ns']:.2f}" if cf and "error_message" not in cf else ""
            md.append(f"| {t} | {s} | {fmt_ns(b['p50_ns'])} | {fmt_ns(b['p90_ns'])} | {fmt_ns(b['p99_ns'])} | "
                      f"{fmt_ns(b['p999_ns'])} | {fmt_ns(b['max_ns'])} | {b['p50_ns'] / floor:.2f} | {vs_copy} |")
    audit = lat.get(("audit", "circbuf", 64))
    if audit:
        md += ["", f"Hot-path audit: the echo process ran {audit['audited_operations']:.0f} Read/Write operations "
               f"under a seccomp filter that traps every system call: {audit['syscalls']:.0f} system calls, "
               f"{audit['minor_faults']:.0f} minor and {audit['major_faults']:.0f} major page faults "
               f"(seccomp installed: {'yes' if audit['seccomp'] else 'no'})."]

    md += ["", "## Throughput (sender flat out, delivered to one receiver)", "",
           "circbuf never blocks its writer: what a slower reader misses is lost and counted. "
           "The kernel transports and the peers block the sender when full (consume semantics with "
           "back-pressure), so they lose nothing but slow the sender down.", "",
           "| transport | bytes | delivered msg/s | delivered GB/s | sender msg/s | lost | vs memcpy |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    tps = sorted({t for (k, t, s) in tp if k == "throughput" and t != "memcpy"}, key=lambda t: (t != "circbuf", t))
    for s in TP_SIZES:
        mc = tp.get(("throughput", "memcpy", s))
        mc_gbs = mc["GB_per_s"] if mc else None
        if mc:
            md.append(f"| memcpy (one thread) | {s} | | {mc_gbs:.2f} | | | 1.00 |")
        for t in tps:
            b = tp.get(("throughput", t, s))
            if b is None or "error_message" in b:
                continue
            ratio = f"{b['delivered_GB_per_s'] / mc_gbs:.2f}" if mc_gbs else ""
            md.append(f"| {t} | {s} | {b['delivered_msgs_per_s']:,.0f} | {b['delivered_GB_per_s']:.2f} | "
                      f"{b['sent_msgs_per_s']:,.0f} | {100 * b['loss_fraction']:.1f} % | {ratio} |")
    md += paced_table(tp) + lap_table(suite.lap_rows(tp_data))
    md += ["", "## The writer's rate with readers attached (64-byte messages)", "",
           "| readers | writer msg/s | vs no reader |", "| ---: | ---: | ---: |"]
    rates = suite.writer_rates(tp_data)
    for readers, rate in sorted(rates.items()):
        md.append(f"| {readers} | {rate:,.0f} | {rate / rates[min(rates)]:.2f} |")
    md += ["", f"Reader counts go up to cores - 1 ({suite.machine()}); run bench/scaling.sh on a bigger machine.", ""]
    (out / "summary.md").write_text("\n".join(md))
    print("\n".join(md))
    plots(lat, tp, transports, tps, out)


def paced_table(tp):
    md = ["", "## Paced throughput, nothing lost: circbuf against the copy floor", "",
          "Both paced the same way (bench/support/paced.hpp): the reader acknowledges what it consumed every "
          "few messages, and the writer never runs more than half the ring ahead of the last acknowledgement, "
          "so circbuf is never lapped (a run that loses a message is an error).", "",
          "| bytes | copy floor msg/s | copy floor GB/s | circbuf msg/s | circbuf GB/s | circbuf lost | circbuf / copy floor |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in TP_SIZES:
        f, c = tp.get(("paced", "copy-floor", s)), tp.get(("paced", "circbuf", s))
        if f is None or c is None:
            continue
        if "error_message" in f or "error_message" in c:
            md.append(f"| {s} | {f.get('error_message', '')} | | {c.get('error_message', '')} | | | |")
            continue
        md.append(f"| {s} | {f['delivered_msgs_per_s']:,.0f} | {f['delivered_GB_per_s']:.2f} | "
                  f"{c['delivered_msgs_per_s']:,.0f} | {c['delivered_GB_per_s']:.2f} | {c['lost']:.0f} | "
                  f"{c['delivered_msgs_per_s'] / f['delivered_msgs_per_s']:.2f} |")
    return md


def lap_table(laps):
    if not laps:
        return []
    md = ["", "## A reader that falls behind a flat-out writer: the lap policies", "",
          "One reader looping Read, ReaderOptions::on_lap as given; kLapped of reads = kLapped returns of all "
          "Read returns other than kEmpty; lost = Lost / (Delivered + Lost).", "",
          "| bytes | on_lap | reads/s | kLapped/s | kLapped of reads | delivered msg/s | lost | writer msg/s |",
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    order = {"oldest": 0, "headroom": 1, "latest": 2}
    for (s, policy), b in sorted(laps.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 3))):
        name = policy + (" (default)" if b.get("is_default") == 1 else "")
        if "error_message" in b:
            md.append(f"| {s} | {name} | {b['error_message']} | | | | | |")
            continue
        md.append(f"| {s} | {name} | {b['reads_per_s']:,.0f} | {b['lapped_per_s']:,.0f} | "
                  f"{100 * b['lapped_fraction']:.3f} % | {b['delivered_msgs_per_s']:,.0f} | "
                  f"{100 * b['lost_fraction']:.1f} % | {b['writer_msgs_per_s']:,.0f} |")
    return md


def plots(lat, tp, transports, tps, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not available: no plots (apt-get install python3-matplotlib)")
        return
    names = ["floor"] + [t for t in transports if ("latency", t, 64) in lat and "error_message" not in lat[("latency", t, 64)]]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.2
    for i, (key, label) in enumerate([("p50_ns", "p50"), ("p99_ns", "p99"), ("p999_ns", "p99.9")]):
        vals = [lat[("latency", n, 64)][key] for n in names]
        ax.bar([x + i * width for x in range(len(names))], vals, width, label=label)
    ax.set_yscale("log")
    ax.set_xticks([x + width for x in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("one-way latency, ns (log)")
    ax.set_title("64-byte messages, one way (round trip / 2)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    # Latency against message size (p50; the floor is one cache line, 64 B).
    fig, ax = plt.subplots(figsize=(10, 5))
    colours = plt.get_cmap("tab20").colors
    for i, n in enumerate(names):
        pts = [(s, lat[("latency", n, s)]) for s in LAT_SIZES if ("latency", n, s) in lat]
        pts = [(s, b) for s, b in pts if "error_message" not in b]
        if not pts:
            continue
        ax.plot([s for s, _ in pts], [b["p50_ns"] for _, b in pts], marker="o", label=n,
                color="black" if n in ("circbuf", "copy-floor") else colours[i % len(colours)],
                linestyle="--" if n == "copy-floor" else "-",
                linewidth=3 if n == "circbuf" else 1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("message size, bytes (log)")
    ax.set_ylabel("one-way latency p50, ns (log)")
    ax.set_title("One-way latency p50 against message size (round trip / 2)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "latency_sizes.png", dpi=110)
    fig, ax = plt.subplots(figsize=(10, 5))
    for t in ["memcpy"] + tps:
        pts = [(s, tp[("throughput", t, s)]) for s in TP_SIZES if ("throughput", t, s) in tp]
        pts = [(s, b) for s, b in pts if "error_message" not in b]
        if not pts:
            continue
        ys = [b["GB_per_s"] if t == "memcpy" else b["delivered_GB_per_s"] for _, b in pts]
        ax.plot([s for s, _ in pts], ys, marker="o", label=t, linestyle="--" if t == "memcpy" else "-")
    for t, style in (("copy-floor", dict(color="black", linestyle=":")), ("circbuf", dict(color="black", linestyle="-."))):
        pts = [(s, tp[("paced", t, s)]) for s in TP_SIZES if ("paced", t, s) in tp]
        pts = [(s, b) for s, b in pts if "error_message" not in b]
        if pts:
            ax.plot([s for s, _ in pts], [b["delivered_GB_per_s"] for _, b in pts], marker="s",
                    label=f"{t}, paced (no loss)", **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("message size, bytes (log)")
    ax.set_ylabel("delivered GB/s (log)")
    ax.set_title("Throughput delivered to one reader (flat out; paced: nothing lost)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    print(f"plots: {out / 'latency.png'}, {out / 'latency_sizes.png'}, {out / 'throughput.png'}")


if __name__ == "__main__":
    main()
