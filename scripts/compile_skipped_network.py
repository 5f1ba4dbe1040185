"""``torch.compile`` of a whole skipping network against the same network eager, in one process.

    .venv/bin/python scripts/compile_skipped_network.py [CONFIG] [--frames 12] [--threads 1]

Builds CONFIG's model twice as the runner builds it (``scripts/profile_gates.py``'s ``config_model``: weights,
BN folded, channels-last; two instances, since each holds its own stream state), compiles one with
``torch.compile`` (inductor, default mode) and streams ``--frames`` consecutive PETS09-S2L1 frames through both,
alternating per frame (frame 0 dense, later frames gated). Prints per frame both times and the largest output
difference, then the medians over frames 3.. (frame 0 compiles, frames 1-2 hold the dispatcher's one-off
calibration), Dynamo's graph counters (a graph break at each of the wrapper's data-dependent steps) and the
load average. Default CONFIG: ``configs/everyconv/pass_p_r40.yaml``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_gates import config_model, letterboxed  # noqa: E402


def _first(o):
    """The first tensor of a model output (dict of heads, tuple, or tensor)."""
    if isinstance(o, dict):
        return _first(next(iter(o.values())))
    if isinstance(o, (list, tuple)):
        return _first(o[0])
    return o


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default="configs/everyconv/pass_p_r40.yaml")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    eager, seq, wh = config_model(a.config)
    compiled = torch.compile(config_model(a.config)[0])
    frames = letterboxed(seq, wh, a.frames)
    print(f"{a.config}: {a.threads} threads, {a.frames} frames, load average {os.getloadavg()[0]:.2f}")
    te, tc = [], []
    with torch.inference_mode():
        for i, x in enumerate(frames):
            t0 = time.perf_counter()
            y1 = eager(x)
            t1 = time.perf_counter()
            y2 = compiled(x)
            t2 = time.perf_counter()
            diff = (_first(y1) - _first(y2)).abs().max().item()
            if i >= 3:
                te.append(t1 - t0)
                tc.append(t2 - t1)
            print(f"frame {i:2d}: eager {1e3 * (t1 - t0):9.1f} ms  compiled {1e3 * (t2 - t1):9.1f} ms  max |diff| {diff:.1e}")
    med = lambda v: 1e3 * statistics.median(v)  # noqa: E731
    print(f"medians over frames 3..: eager {med(te):.1f} ms, compiled {med(tc):.1f} ms "
          f"(compiled / eager time {med(tc) / med(te):.2f})")
    print(f"dynamo: {dict(torch._dynamo.utils.counters['stats'])}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
