"""Time one MHP training step (batch 8, 256x256) and one evaluation forward (batch 1) per width and
thread count: the measurement behind the choice of width 0.5 and one thread in scripts/train_pose.sh.

    .venv/bin/python scripts/time_pose_step.py [--threads 1 2] [--models mhp_lpski_w05 mhp_lpski]

Prints one line per (model, threads): the training step times of 5 steps (the first includes warm-up) and
the median of 8 forwards. On a shared machine the numbers move with the load: compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from passbench.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=["mhp_lpski_w05", "mhp_lpski"])
    args = ap.parse_args()
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.models:
            torch.manual_seed(0)
            model = build_model(name).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x = torch.rand(8, 3, 256, 256)
            steps = []
            for _ in range(5):
                t = time.perf_counter()
                loss = model(x)["coords"].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps.append(time.perf_counter() - t)
            model.eval()
            fwd = []
            with torch.no_grad():
                for _ in range(10):
                    t = time.perf_counter()
                    model(x[:1])
                    fwd.append(time.perf_counter() - t)
            print(f"{name} threads={threads}: train step (batch 8) s: {' '.join(f'{s:.2f}' for s in steps)}; "
                  f"forward (batch 1) median {1000 * statistics.median(fwd[2:]):.1f} ms", flush=True)


if __name__ == "__main__":
    main()
