#!/usr/bin/env python3
"""Runs a command and prints the peak memory of its whole process tree.

`/usr/bin/time -v` reports the largest single process's peak RSS, which undercounts a
`datasets.map(num_proc=2)` run, whose work happens in worker processes. This samples every
process of the tree every 0.2 s and records the peak of the summed PSS (proportional set size,
so pages shared after fork count once) and of the summed RSS. Standard library, Linux only.

Usage: tree_mem.py OUT.json CMD [ARGS...]     (exit status: the command's)
"""

import json
import os
import subprocess
import sys
import time


def children(pid: int) -> list:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def mem(pid: int) -> tuple:
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def main() -> None:
    out, cmd = sys.argv[1], sys.argv[2:]
    proc = subprocess.Popen(cmd)
    peak_pss = peak_rss = 0
    while proc.poll() is None:
        pss = rss = 0
        for p in tree(proc.pid):
            a, b = mem(p)
            pss, rss = pss + a, rss + b
        peak_pss, peak_rss = max(peak_pss, pss), max(peak_rss, rss)
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump({"peak_tree_pss_kib": peak_pss, "peak_tree_rss_kib": peak_rss}, f)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
