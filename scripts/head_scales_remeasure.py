"""The PASS-P head units (``distance: balanced``) a checkpoint stores, against the units the current code
measures for the same run: the untrained gates rebuilt as ``train_pass_p`` builds them (same seed, same
draws), ``measure_head_scales`` on the same calibration pairs.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/head_scales_remeasure.py weights/sample/pass_p.pt weights/pose/pass_p.pt

Why: the committed gates' units were measured with autograd off before a wrapper fix (the positive pass
wrote into the primed state snapshot the negative pass restores). Run at a commit before that fix, the
script must give back the stored units exactly (the rebuild is faithful); run on the fixed code, the
ratio measured / stored is how far the fix moves the units the gates were trained with.
Prints one line per head and checkpoint, with the commit and the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import torch

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, stage_samples
from passbench.train.common import make_cfg, read_final, seed_all
from passbench.train.pass_p import PassPObjective, calibration_pairs, measure_head_scales


def remeasure(weights: str) -> tuple[dict[str, float], dict[str, float]]:
    """(stored, measured) head units of the PASS-P checkpoint ``weights``."""
    fin = read_final(weights)
    stored = (fin.get("extra") or {}).get("head_scales")
    if not stored:
        raise SystemExit(f"{weights}: no head_scales stored (not a distance: balanced PASS-P checkpoint)")
    cfg = make_cfg("pass_p", {k: v for k, v in fin["config"].items() if k != "stage"})
    # train_pass_p's order of random draws: seed, samples, model (the gates' init), objective, calibration
    seed_all(cfg.seed)
    samples = stage_samples(cfg, None, pairs=True)
    model, _, _ = build_stage_model(cfg, skippable=True)
    sk.freeze(sk.backbone_parameters(model))
    sk.freeze(sk.gate_parameters(model), False)
    obj = PassPObjective(model, cfg)
    obj.train()
    measured = measure_head_scales(obj, calibration_pairs(samples, cfg, torch.device("cpu")))
    return {h: float(stored[h]) for h in cfg.heads}, measured


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", nargs="+", help="PASS-P final.pt files trained with distance: balanced")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit or '?'}; torch {torch.__version__}; threads 1; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for w in args.weights:
        stored, measured = remeasure(w)
        for h in stored:
            r = measured[h] / stored[h] if stored[h] else float("nan")
            print(f"{w} head {h:9s} stored {stored[h]:.6e} measured {measured[h]:.6e} ratio {r:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
