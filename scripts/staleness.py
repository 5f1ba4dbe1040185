"""How far a skipping model's heads drift from the dense model's over consecutive frames without refresh.

    .venv/bin/python scripts/staleness.py weights/sample/pass_p.pt --rate 0.4 [--allocation learned uniform]
        [--steps 8] [--streams 12] [--reference previous]

PASS-P's triplet loss scores one step: the state primed densely on X_{t-1}, the gated pass on X_t. Tracking
without a dense refresh reuses outputs computed many frames ago. This script measures both on the evaluation
split (second halves of PETS09-S2L1 and TUD-Stadtmitte, letterboxed to the checkpoint's input size): for
``streams`` runs of ``steps + 1`` consecutive frames (frame 0 dense, frames 1.. gated at inference masks,
top-k at the operating point ``--rate`` with the given allocation), each head's distance to the dense
model's head on the same frame, in the units the gates were trained with (``extra.head_scales``), per step.
Prints one line per (allocation, step) and, with ``--json``, the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from passbench.datasets.mot import load_sequence
from passbench.tracking.letterbox import letterbox
from passbench.train import skiputil as sk
from passbench.train.build import build_net, make_skippable
from passbench.train.common import read_final
from passbench.train.data import TRAIN_SEQUENCES, eval_frames
from passbench.train.operating_point import set_operating_point
from passbench.train.pass_p import head_mse, head_maps


def eval_streams(input_wh: tuple[int, int], streams: int, steps: int) -> list[torch.Tensor]:
    """``streams`` runs of ``steps + 1`` consecutive evaluation frames, (steps + 1, 3, H, W) each, spread evenly
    over the second halves of the training sequences."""
    frames = eval_frames()
    out = []
    per_seq = max(1, streams // len(TRAIN_SEQUENCES))
    for name in TRAIN_SEQUENCES:
        seq, rng = load_sequence(name), frames[name]
        starts = np.linspace(rng[0], rng[-1] - steps, per_seq).astype(int)
        for s in starts:
            imgs = [letterbox(np.ascontiguousarray(rgb), input_wh)[0] for f, rgb in seq.frames(start=int(s), stop=int(s) + steps + 1)]
            out.append(torch.stack(imgs[: steps + 1]))
    return out


@torch.no_grad()
def drift(weights: str, rate: float, allocation: str, steps: int, streams: list[torch.Tensor],
          reference: str = "previous") -> dict[str, list[float]]:
    """Mean distance to dense per head and step (index 0 = step 1), in the checkpoint's head units."""
    fin = read_final(weights)
    heads = tuple(fin["config"]["heads"])
    scales = fin["extra"]["head_scales"]
    params = {**fin["skip"]["params"], "execution": "reference", "reference": reference}
    model = make_skippable(build_net(fin["model_name"], pretrained=False), {"method": fin["skip"]["method"],
                                                                             "params": params})
    model.load_state_dict(fin["model"])
    model.eval()
    set_operating_point(model, fin["skip"]["method"], params, rate, None, allocation=allocation)
    tot = {h: [0.0] * steps for h in heads}
    for clip in streams:
        sk.reset(model)
        sk.set_mask_mode(model, "off")
        dense = [head_maps(model(x[None]), heads) for x in clip]
        sk.reset(model)
        sk.set_mask_mode(model, "normal")
        model(clip[:1])  # frame 0 after a reset runs densely
        for k in range(1, steps + 1):
            d = head_mse(dense[k], head_maps(model(clip[k:k + 1]), heads))
            for h in heads:
                tot[h][k - 1] += float(d[h].mean()) / scales[h]
    return {h: [v / len(streams) for v in vals] for h, vals in tot.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--rate", type=float, default=0.4)
    ap.add_argument("--allocation", nargs="+", default=["learned", "uniform"])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--reference", default="previous", choices=["previous", "computed"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    fin = read_final(args.weights)
    streams = eval_streams(tuple(fin["input_wh"]), args.streams, args.steps)
    res = {a: drift(args.weights, args.rate, a, args.steps, streams, args.reference) for a in args.allocation}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{args.weights} at {args.rate:.0%} of gated patches, reference {args.reference}, {len(streams)} streams: "
          "distance to dense per head (units of the untrained gates' one-step distance)")
    for a, per_head in res.items():
        for k in range(args.steps):
            cols = "  ".join(f"{h} {v[k]:.3f}" for h, v in per_head.items())
            print(f"{a:8s} step {k + 1}: {cols}  mean {np.mean([v[k] for v in per_head.values()]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
