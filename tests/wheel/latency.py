"""`tunec check` latency through the Python API against the binary, paired (docs/performance.md).

Run with the Python of a virtualenv that has the wheel installed:

    python tests/wheel/latency.py examples/medreason/medreason.tune --runs 200

Each round times, in an order that alternates from one round to the next, one `tunec.check(FILE)`
and one run of the same binary with the same arguments (`tunec check --format json --color never
FILE`, through `subprocess.run`, its output parsed with `json.loads`): the second is the least a
Python caller can do to get the document, so the difference is what the module adds. Prints the
median, 10th and 90th percentiles of both and of the paired differences, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from collections.abc import Callable

import tunec


def direct(binary: str, path: str) -> object:
    done = subprocess.run(
        [binary, "check", "--format", "json", "--color", "never", "--", path],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(done.stdout)


def summary(name: str, ms: list[float]) -> str:
    deciles = statistics.quantiles(ms, n=10)
    return f"{name:<24} median {statistics.median(ms):7.2f}  p10 {deciles[0]:7.2f}  p90 {deciles[-1]:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    binary = tunec.find_binary()
    assert tunec.check(args.file) == direct(binary, args.file), "the two ways give different documents"

    def timed(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return (time.perf_counter() - start) * 1000

    def through_api() -> object:
        return tunec.check(args.file)

    def through_binary() -> object:
        return direct(binary, args.file)

    api: list[float] = []
    raw: list[float] = []
    for i in range(args.warmup + args.runs):
        if i % 2:
            b, a = timed(through_binary), timed(through_api)
        else:
            a, b = timed(through_api), timed(through_binary)
        if i >= args.warmup:
            api.append(a)
            raw.append(b)
    print(f"{args.runs} paired rounds, {binary}, tunec {tunec.version().version} ({tunec.version().commit})")
    print(summary("tunec.check()", api))
    print(summary("binary + json.loads", raw))
    print(summary("difference (paired)", [a - b for a, b in zip(api, raw, strict=True)]))


if __name__ == "__main__":
    main()
