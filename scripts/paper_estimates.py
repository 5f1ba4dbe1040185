"""Estimated wall time of the paper-scale stages on one GPU, from their MACs (no GPU was lent to measure them).

    python scripts/paper_estimates.py [--tmacs 10] [--overhead-ms 15]   (prints the table of docs/paper-scale.md)

Model: every frame a stage touches costs the network's dense MACs at its input (``passbench.models.measure_model``,
FlopCounterMode / 2); a training sample costs 3x its forward (forward + backward, whose input and weight
gradients cost about two forwards), a PASS / Skip-Conv sample is a frame pair (2 frames); the gates' own MACs
and skipped patches are ignored (an upper bound for the skipping rows' arithmetic, not for their time: the
PyTorch gather / scatter path on a GPU is unmeasured). Throughput ``--tmacs`` sustained tera-MACs per second
(10: an A100-class GPU in fp32 with TF32 convolutions at about half of its dense peak) and a fixed per-frame
cost ``--overhead-ms`` for JPEG decoding, letterboxing, decoding and tracking on the CPU at evaluation.
Frame counts: the MOT17 train sequences' lengths (``passbench.datasets.scenes``) split as FairMOT's half split
(first N // 2 train, the rest evaluated). Steps and batch sizes: those of ``scripts/train_paper.sh``.
"""

from __future__ import annotations

import argparse
import sys

# (stage, model, steps, batch, frames per sample) as scripts/train_paper.sh trains them
TRAIN = (
    ("pass_p", "fairmot_dla34", 4000, 4, 2),
    ("pass_f", "fairmot_dla34", 4000, 8, 2),
    ("skipconv_gumbel", "fairmot_dla34", 4000, 8, 2),
    ("dla34", "dla34", 12000, 8, 1),
    ("hrnet_w32", "hrnet_w32", 12000, 8, 1),
    ("regnety_040", "regnety_040", 12000, 8, 1),
    ("fpn_resnet34", "fpn_resnet34", 12000, 8, 1),
    ("hardnet85", "hardnet85", 12000, 8, 1),
)
EVAL = ("fairmot_dla34", "dla34", "hrnet_w32", "regnety_040", "fpn_resnet34", "hardnet85")
WH = (1088, 608)


def main(argv: list[str] | None = None) -> int:
    from passbench.datasets.scenes import MOT17_TRAIN
    from passbench.models import measure_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tmacs", type=float, default=10.0, help="sustained tera-MACs per second (default 10)")
    ap.add_argument("--overhead-ms", type=float, default=15.0, help="CPU cost per evaluated frame (default 15 ms)")
    args = ap.parse_args(argv)
    n_train = sum(s.frames // 2 for s in MOT17_TRAIN.values())
    n_eval = sum(s.frames - s.frames // 2 for s in MOT17_TRAIN.values())
    gmacs = {m: measure_model(m, WH)[1] for m in {t[1] for t in TRAIN} | set(EVAL)}
    print(f"MOT17 half split: {n_train} training frames, {n_eval} evaluated frames; {WH[0]}x{WH[1]}; "
          f"{args.tmacs:g} TMAC/s sustained, {args.overhead_ms:g} ms per evaluated frame besides the forward")
    print("| stage | model | GMACs / frame | steps x batch x frames | PMACs | estimated time |")
    print("|---|---|---|---|---|---|")
    for stage, model, steps, batch, frames in TRAIN:
        pmacs = 3 * steps * batch * frames * gmacs[model] / 1e6
        print(f"| train {stage} | {model} | {gmacs[model]:.1f} | {steps} x {batch} x {frames} | {pmacs:.1f} | "
              f"{pmacs * 1e3 / args.tmacs / 60:.0f} min |")
    for model in EVAL:
        pmacs = n_eval * gmacs[model] / 1e6
        s = n_eval * (gmacs[model] / 1e3 / args.tmacs + args.overhead_ms / 1e3)
        print(f"| evaluate one row | {model} | {gmacs[model]:.1f} | {n_eval} frames | {pmacs:.2f} | {s / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
