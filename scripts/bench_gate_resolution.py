"""What a lower gate resolution buys: one PASS gate's inference logits at pool 1 (the paper's gate), 2, 4 and p.

    .venv/bin/python scripts/bench_gate_resolution.py [--threads 1] [--reps 280]

``PassGate(pool=s)`` average-pools X_t and X_{t-1} by s before the patch embedding (kernel = stride = p / s): the
embedding, nearly all of a gate's MACs, costs s^2 times less; the mixer and head run on the same patch grid. Pool
p is the limit of the lever (one pixel per patch: a 1x1 embedding); what it still costs is the gate's per-op
floor, which no resolution can remove. Timed through the fast engine (``passbench.skip.fastgate.stacked_logits``,
the pooling included) on the every-conv plan's gate inputs (``scripts/bench_gate_embedding.py``'s shapes,
channels-last as the runner feeds them), untrained gates (timing does not depend on the weights), all pools of
one shape round-robin (``passbench.bench.interleaved``). Prints per shape the medians, their ratio to pool 1,
the gate MACs per call, and the load average.
"""

from __future__ import annotations

import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_gate_embedding import SHAPES, setup
from passbench.bench import interleaved
from passbench.skip import fastgate
from passbench.skip.gates import PassGate, fit_grid


def main() -> None:
    a = setup(__doc__)
    print(f"{'Cin x H x W, p, G':<22} {'pool':>4} {'ms':>7} {'x pool 1':>8} {'gate MMACs':>10}")
    for cin, h, w, p, g in SHAPES:
        grid = (-(-h // p), -(-w // p))
        x = fit_grid(torch.randn(1, cin, h, w), p, grid).contiguous(memory_format=torch.channels_last)
        prev = fit_grid(torch.randn(1, cin, h, w), p, grid).contiguous(memory_format=torch.channels_last)
        pools = sorted({1, 2, 4, p} & {s for s in range(1, p + 1) if p % s == 0})
        fns, macs = [], []
        for s in pools:
            P = fastgate.stack_params([PassGate(cin, p, embed_dim=16, hidden=64, pool=s).eval() for _ in range(g)])
            fns.append(lambda P=P: fastgate.stacked_logits(P, x, prev))
            with FlopCounterMode(display=False) as fc:
                fns[-1]()
            macs.append(fc.get_total_flops() / 2e6)
        with torch.no_grad():
            ts = [1e3 * t for t in interleaved(fns, a.reps, torch.device("cpu"))]
        for s, t, m in zip(pools, ts, macs):
            print(f"{f'{cin}x{h}x{w}, {p}, {g}':<22} {s:>4} {t:7.3f} {t / ts[0]:8.2f} {m:10.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
