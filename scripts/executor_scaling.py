"""The wall time a sweep would take on N workers, from the per-row task times of a measured ``--executor ray``
run (its log: one line per finished row ending ``[S s on NODE]``).

    python scripts/executor_scaling.py RAY_LOG --wall SECONDS [--workers 1 2 4 8 16 32]

Each row is one task and a task runs on one worker; Ray hands tasks out as workers free up, which for
independent tasks is list scheduling: the estimate places the rows longest first on the least-loaded worker
(LPT), adds the measured run's fixed cost (its wall time less its own 2-worker schedule: start-up,
model builds the rows share, the driver's writes) and reports the bound no schedule beats (the longest
row). Row times measured with every core busy are what a worker of one core gives; on nodes with more or
faster cores they shrink. A prediction from the measured rows, not a measurement: the README says which.
"""

from __future__ import annotations

import argparse
import heapq
import re
import sys
from pathlib import Path

ROW = re.compile(r"^(?P<name>[^\s:]+): .*\[(?P<s>\d+(?:\.\d+)?) s on (?P<node>[^\]]+)\]\s*$")


def row_times(log: Path) -> dict[str, float]:
    """Per finished row, its task's seconds (the last line wins when a row was re-run)."""
    out: dict[str, float] = {}
    for n, line in enumerate(log.read_text().splitlines(), 1):
        m = ROW.match(line)
        if m:
            out[m["name"]] = float(m["s"])
    if not out:
        raise SystemExit(f"{log}: no finished-row line ('NAME: ... [S s on NODE]') found")
    return out


def lpt(times: list[float], workers: int) -> float:
    """Makespan of longest-processing-time-first list scheduling on ``workers`` identical workers."""
    loads = [0.0] * workers
    heapq.heapify(loads)
    for t in sorted(times, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + t)
    return max(loads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--wall", type=float, required=True, help="the measured ray run's wall time, s")
    ap.add_argument("--measured-workers", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = ap.parse_args(argv)
    t = row_times(args.log)
    times = list(t.values())
    fixed = max(0.0, args.wall - lpt(times, args.measured_workers))
    print(f"{len(times)} rows from {args.log}: task time sum {sum(times):.0f} s, median "
          f"{sorted(times)[len(times) // 2]:.0f} s, longest {max(times):.0f} s ({max(t, key=t.get)}); measured wall "
          f"{args.wall:.0f} s on {args.measured_workers} workers, of which fixed cost {fixed:.0f} s")
    print(f"{'workers':>8s} {'predicted wall s':>17s} {'vs 1 worker':>12s}")
    one = lpt(times, 1) + fixed
    for w in args.workers:
        p = lpt(times, w) + fixed
        print(f"{w:8d} {p:17.0f} {p / one:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
