"""The PASS gate's patch embedding two exact ways, on the every-conv gate shapes: is a strided conv cheaper?

    .venv/bin/python scripts/bench_gate_embedding.py [--threads 1] [--reps 280]

The fast gate engine (``passbench.skip.fastgate.stacked_logits``) embeds the patches of X_t and X_{t-1} as
``unfold(X_t) @ W_x + unfold(X_{t-1}) @ W_prev`` (two copies of the inputs, two GEMMs). The same function as
two convolutions with kernel = stride = p (oneDNN reads the input in place, no unfold copy), then the
(patches x channels) rows the rest of the gate reads. Both on the shapes of the every-conv plan's gates
(``docs/everyconv.md``: input channels, map, patch size, gates stacked on one input), with inputs in the
layout the runner feeds them (channels-last, ``model.channels_last``) and in NCHW. Untrained gates (the
timing does not depend on the weights). Times both round-robin (``passbench.bench.interleaved``: 2 warm-up
rounds, then ``--reps`` calls each, alternating) and prints per shape their medians, the ratio conv / GEMM, the largest absolute difference between the two results, and the load average.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from passbench.bench import interleaved
from passbench.skip import fastgate
from passbench.skip.gates import PassGate

# (Cin, H, W, p, gates reading the input): the plan's gate inputs at 384x224 (stride 4 / 8 / 16 maps)
SHAPES = [(64, 56, 96, 8, 1), (64, 56, 96, 8, 2), (32, 56, 96, 8, 4), (32, 56, 96, 8, 1),
          (128, 32, 48, 8, 1), (128, 32, 48, 8, 2), (256, 16, 24, 4, 1)]


def setup(doc: str) -> argparse.Namespace:
    """The gate benchmarks' start: ``--threads`` / ``--reps``, seed 0, the thread count set, the conditions printed."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=280)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    print(f"threads {a.threads}, {a.reps} interleaved calls each, load average {os.getloadavg()[0]:.2f}")
    return a


def main() -> None:
    a = setup(__doc__)
    print(f"{'Cin x H x W, p, G':<24} {'layout':<14} {'GEMM ms':>8} {'conv ms':>8} {'conv/GEMM':>9} {'max |diff|':>10}")
    for cin, h, w, p, g in SHAPES:
        gates = [PassGate(cin, p, embed_dim=16, hidden=64).eval() for _ in range(g)]
        P = fastgate.stack_params(gates)
        we = torch.cat([q.embed[0].weight.detach() for q in gates])
        wx, wp, gc = we[:, :cin].contiguous(), we[:, cin:].contiguous(), we.shape[0]
        for layout in ("channels_last", "contiguous"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            x = torch.randn(1, cin, h, w).contiguous(memory_format=fmt)
            prev = torch.randn(1, cin, h, w).contiguous(memory_format=fmt)

            def gemm():
                return torch.addmm(P["be"], fastgate.unfold_patches(x, p), P["wx"]).addmm_(
                    fastgate.unfold_patches(prev, p), P["wp"])

            def conv():
                e = F.conv2d(x, wx, P["be"], stride=p).add_(F.conv2d(prev, wp, None, stride=p))
                return e.permute(0, 2, 3, 1).reshape(-1, gc)

            diff = (gemm() - conv()).abs().max().item()
            mg, mc = (1e3 * t for t in interleaved([gemm, conv], a.reps, torch.device("cpu")))
            print(f"{f'{cin}x{h}x{w}, {p}, {g}':<24} {layout:<14} {mg:8.3f} {mc:8.3f} {mc / mg:9.2f} {diff:10.1e}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
