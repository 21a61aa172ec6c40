#!/usr/bin/env python3
"""The table of tests/bench/run_data_bench.sh: one Markdown row per run, then the ratios.

Tokens per CPU-second is the comparison (the machine may be shared; CPU time is what contention
disturbs least). For raw encode_batch the CPU seconds are those of the encode calls alone (the
timed region raw_tokenize.py reports), not of its whole process. With several rounds, each
implementation's ratio uses its best round.

Usage: summarize.py RESULTS.tsv WORK_DIR
"""

import csv
import json
import sys
from pathlib import Path


def main() -> None:
    results, work = Path(sys.argv[1]), Path(sys.argv[2])
    with results.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    print("| Rows | Implementation | Wall | CPU | Tokens per CPU-s | Peak RSS, largest process | Peak PSS, process tree | Load before / after |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    best: dict = {}
    raw_rounds: dict = {}
    for r in rows:
        n, impl, tokens = int(r["rows"]), r["impl"], int(r["tokens"])
        wall, cpu = float(r["wall_s"]), float(r["cpu_s"])
        note = ""
        if impl == "raw encode_batch":
            # raw-N.jsonl has the timed region of each round, in the order of the rows.
            if n not in raw_rounds:
                raw_rounds[n] = (work / f"raw-{n}.jsonl").read_text().splitlines()
            stats = json.loads(raw_rounds[n].pop(0))
            wall, cpu, note = stats["seconds"], stats["cpu_seconds"], " (encode calls only)"
        rate = tokens / cpu
        key = (n, impl)
        best[key] = max(best.get(key, 0.0), rate)
        mib = lambda kib: f"{int(kib) / 1024:,.0f} MiB"  # noqa: E731
        print(
            f"| {n:,} | {impl}{note} | {wall:,.1f} s | {cpu:,.1f} s | {rate:,.0f} | {mib(r['peak_rss_kib'])} "
            f"| {mib(r['tree_pss_kib'])} | {r['load_before']} / {r['load_after']} |"
        )
    print()
    for n in sorted({k[0] for k in best}):
        seed = max((v for (m, impl), v in best.items() if m == n and impl.startswith("seed")), default=None)
        raw = best.get((n, "raw encode_batch"))
        for (m, impl), v in sorted(best.items()):
            if m != n:
                continue
            parts = []
            if seed:
                parts.append(f"{v / seed:.2f}x the seed's")
            if raw:
                parts.append(f"{v / raw:.2f}x raw encode_batch's")
            print(f"{n:,} rows, {impl}: {v:,.0f} tokens per CPU-s, {', '.join(parts)}")


if __name__ == "__main__":
    main()
