#!/usr/bin/env python3
"""Markdown tables for docs/benchmarks.md from one run of make bench.

Usage: python3 bench/report.py BUILD_DIR/bench
Reads results.csv and results.txt there and prints: the issue-16 targets
with their ratios, every figure of shmring against every peer (one matrix
per figure), and the raw tables of the run.
"""
import csv
import os
import re
import sys

SHM = ["shm-copy", "shm-single", "shm-zerocopy", "shm-batch32", "shm-wait-spin", "shm-wait-sleep"]
PEERS = ["ck_ring", "dpdk-ring", "iceoryx", "pipe", "unix-seqpacket", "mq"]


def load(path):
    v = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            try:
                v[(row["figure"], row["transport"], row["metric"])] = float(row["value"])
            except ValueError:
                pass
    return v


def get(v, fig, tr, metric):
    return v.get((fig, tr, metric))


def fmt_ratio(x):
    return "-" if x is None else ("%.2fx" % x)


def matrix(v, fig, metric, higher_better, unit):
    shm = [t for t in SHM if get(v, fig, t, metric) is not None]
    peers = [t for t in PEERS if get(v, fig, t, metric) is not None]
    if not shm or not peers:
        return ""
    lines = ["| %s | %s |" % (fig, " | ".join(peers)),
             "|---|" + "---|" * len(peers)]
    for s in shm:
        a = get(v, fig, s, metric)
        cells = []
        for p in peers:
            b = get(v, fig, p, metric)
            r = (a / b) if higher_better else (b / a)
            cells.append("%.2fx" % r)
        lines.append("| %s (%s %s) | %s |" % (s, "%.4g" % a, unit, " | ".join(cells)))
    return "\n".join(lines) + "\n"


def targets(v):
    out = ["| target | measured in this run | ratio | met |", "|---|---|---|---|"]
    ck = get(v, "ops", "ck_ring", "ns_per_msg")
    for s in ("shm-copy", "shm-single"):
        a = get(v, "ops", s, "ns_per_msg")
        if a and ck:
            out.append("| one core, push + pop of 64 B: at most 2x ck_ring | %s %.2f ns, ck_ring %.2f ns | %.3fx | %s |"
                       % (s, a, ck, a / ck, "yes" if a / ck <= 2 else "no"))
    for s in ("shm-copy", "shm-single", "shm-batch32"):
        a = get(v, "tput_64_1c", s, "msgs_per_s")
        for p in ("ck_ring", "dpdk-ring"):
            b = get(v, "tput_64_1c", p, "msgs_per_s")
            if a and b:
                out.append("| 64 B one-way, 1 -> 1: at least 1.5x %s | %s %.3g msg/s, %s %.3g | %.3fx | %s |"
                           % (p, s, a, p, b, a / b, "yes" if a / b >= 1.5 else "no"))
    fl = get(v, "rtt_8", "raw-floor", "p50_ns")
    for s in ("shm-copy", "shm-single", "shm-zerocopy"):
        a = get(v, "rtt_8", s, "p50_ns")
        if a and fl:
            out.append("| 8 B round trip p50: at most 1.3x the raw cache-line round trip | %s %.0f ns, floor %.0f ns | %.3fx | %s |"
                       % (s, a, fl, a / fl, "yes" if a / fl <= 1.3 else "no"))
    best, bp = None, None
    for p in PEERS:
        b = get(v, "tput_4096_1c", p, "msgs_per_s")
        if b and (best is None or b > best):
            best, bp = b, p
    for s in ("shm-copy", "shm-single", "shm-zerocopy", "shm-batch32"):
        a = get(v, "tput_4096_1c", s, "msgs_per_s")
        if a and best:
            out.append("| 4 KiB one-way, 1 -> 1: at least 1.2x the best peer | %s %.3g msg/s, best peer %s %.3g | %.3fx | %s |"
                       % (s, a, bp, best, a / best, "yes" if a / best >= 1.2 else "no"))
    return "\n".join(out) + "\n"


def raw_blocks(txt):
    blocks, cur = {}, None
    for line in open(txt):
        m = re.match(r"^== (\S+):", line)
        if m:
            cur = m.group(1)
            blocks[cur] = [line.rstrip("\n")]
        elif cur is not None:
            if line.strip() == "" or line.startswith("bench_") or line.startswith("run.sh"):
                cur = None
            else:
                blocks[cur].append(line.rstrip("\n"))
    return blocks


def main():
    d = sys.argv[1]
    v = load(os.path.join(d, "results.csv"))
    print("### Targets\n")
    print(targets(v))
    print("### Every figure against every peer\n")
    print("Each cell: how many times better shmring's row is than the peer's (above 1: shmring ahead).\n"
          "Round trips and hand-overs compare medians (peer / shmring), throughput compares msg/s (shmring / peer).\n")
    for fig, metric, hb, unit in (("rtt_8", "p50_ns", False, "ns"), ("rtt_1024", "p50_ns", False, "ns"),
                                  ("tput_64_1c", "msgs_per_s", True, "msg/s"),
                                  ("tput_64_3c", "msgs_per_s", True, "msg/s"),
                                  ("tput_4096_1c", "msgs_per_s", True, "msg/s"),
                                  ("tput_4096_3c", "msgs_per_s", True, "msg/s"),
                                  ("handover_1m", "median_ns", False, "ns"),
                                  ("handover_1m_transport", "median_ns", False, "ns")):
        m = matrix(v, fig, metric, hb, unit)
        if m:
            print(m)
    blocks = raw_blocks(os.path.join(d, "results.txt"))
    print("### Raw tables\n")
    for k, b in blocks.items():
        print("```")
        print("\n".join(b))
        print("```\n")


if __name__ == "__main__":
    main()
