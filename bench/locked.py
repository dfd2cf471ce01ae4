#!/usr/bin/env python3
"""Locked instructions executed per message by bench_ops' shmring rows.

Runs BUILD/bench/bench_ops under valgrind's callgrind (which counts every
executed instruction, so the figure does not depend on the machine's load),
then sums the executions of the instructions that lock the bus or drain the
store buffer: a lock prefix, xchg with memory (locked implicitly) and mfence.
This is what `perf stat` would count with a PMU, which VMs often lack.

Usage: python3 bench/locked.py BUILD_DIR
"""
import os
import re
import subprocess
import sys
import tempfile

ROWS = ["shm-copy", "shm-single", "shm-zerocopy", "shm-batch32"]
MSGS = 2000000  # bench_ops --quick: 5 trials x 400000 messages


def executed(profile, binary):
    """Execution count per instruction address of `binary`."""
    counts, skip, ours = {}, False, False
    name = os.path.basename(binary)
    with open(profile) as f:
        for line in f:
            if line.startswith("ob="):
                ours = line.strip().endswith(name)
            elif line.startswith("calls="):
                skip = True  # the next cost line is the callee's inclusive cost
            else:
                m = re.match(r"^(0x[0-9a-f]+) \d+ (\d+)", line)
                if m:
                    if not skip and ours:
                        a = int(m.group(1), 16)
                        counts[a] = counts.get(a, 0) + int(m.group(2))
                    skip = False
    return counts


def locked_sites(binary):
    """(address, function, instruction) of every locked instruction."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    fn, sites = None, []
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:", line)
        if m:
            fn = m.group(1)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        op, args = m.group(2), m.group(3)
        if op == "lock" or op == "mfence" or (op.startswith("xchg") and "(" in args):
            sites.append((int(m.group(1), 16), fn, (op + " " + args.split(",")[0]).strip()))
    return sites


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 bench/locked.py BUILD_DIR")
    binary = os.path.join(sys.argv[1], "bench", "bench_ops")
    sites = locked_sites(binary)
    print("\n== locked: locked instructions executed per message (callgrind, bench_ops --quick) ==")
    print("%-14s %12s %12s  %s" % ("operation", "membarrier", "exchange", "where (membarrier path)"))
    for row in ROWS:
        per = {}
        where = ""
        for env in ("0", "1"):
            with tempfile.TemporaryDirectory() as d:
                prof = os.path.join(d, "cg.out")
                e = dict(os.environ, SHMRING_NO_MEMBARRIER=env)
                subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=yes",
                                "--compress-pos=no", "--compress-strings=no",
                                "--callgrind-out-file=" + prof, binary, "--quick", "--only", row],
                               env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               check=True)
                counts = executed(prof, binary)
            total, parts = 0, {}
            for a, fn, ins in sites:
                c = counts.get(a, 0)
                if c * 1000 >= MSGS:  # at least once per thousand messages
                    total += c
                    parts[fn + ": " + ins] = parts.get(fn + ": " + ins, 0) + c
            per[env] = total / MSGS
            if env == "0":
                where = ", ".join("%s (%.3g)" % (k, v / MSGS) for k, v in sorted(parts.items()))
        print("%-14s %12.3f %12.3f  %s" % (row, per["0"], per["1"], where or "none"))
    print("  (membarrier: the default path; exchange: SHMRING_NO_MEMBARRIER=1, the fallback)")


if __name__ == "__main__":
    main()
