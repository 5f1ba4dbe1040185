"""Every conv of a model at the sample protocol's input: map, patch grids, MACs, and which are gated.

    .venv/bin/python scripts/everyconv_layers.py timm:resnet18 [--patches 8 4] [--wh 384 224]   # markdown table
    .venv/bin/python scripts/everyconv_layers.py timm:resnet18 --params                        # make_skippable kwargs

The plan is ``passbench.skip.convplan.every_conv``: every Conv2d is gated (the PASS paper's scheme), at the
largest of ``--patches`` whose output grid holds >= ``--min-patches`` patches, except the stem and the convs
no candidate reaches; both are listed with the reason. ``--params`` prints the plan as one line of YAML
flow (``{patch_size: ..., exclude: [...]}``) for ``scripts/train_everyconv.sh`` and
``scripts/make_everyconv_configs.py``. Grids are written W x H (patches across x down), MACs per frame
(batch 1, FlopCounter convention: Cout Hout Wout Cin/groups k^2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from passbench.skip.convplan import block_followers, every_conv  # noqa: E402


def model_and_plan(model_name: str, wh=(384, 224), patches=(8, 4), min_patches: int = 16):
    """A registered model (random init: the plan depends on shapes only) and its every-conv plan."""
    import torch

    from passbench.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, pretrained=False).eval()
    return model, every_conv(model, (3, wh[1], wh[0]), tuple(patches), min_patches)


def flow(params: dict) -> str:
    """One line of YAML flow style (what ``python -m passbench.train key=value`` parses)."""
    return yaml.safe_dump(params, default_flow_style=True, sort_keys=False, width=100000).strip()


def gate_macs(site, embed_dim: int = 16, hidden: int = 64) -> int:
    """MACs of one untrained PASS gate of the committed size on ``site`` at its chosen patch (FlopCounter / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from passbench.skip import PassGate

    gate = PassGate(site.cin, site.patch * site.stride, embed_dim=embed_dim, hidden=hidden).eval()
    x = torch.zeros(1, site.cin, *site.in_hw)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        gate.logits(x, x, site.grids[site.patch])
    return int(fc.get_total_flops()) // 2


def table(plan, patches) -> str:
    cands = sorted(set(patches), reverse=True)
    total = sum(s.macs for s in plan.sites)
    head = ("| conv | k / s | Cin -> Cout | out map (W x H) | " + " | ".join(f"grid p{q}" for q in cands)
            + " | MMACs | % | decision | PASS gate MMACs |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    gates = 0
    for s in plan.sites:
        grids = " | ".join(f"{s.grids[q][1]}x{s.grids[q][0]} ({s.grids[q][0] * s.grids[q][1]})" for q in cands)
        dec = f"patch {s.patch}" if s.patch is not None else f"dense: {s.reason}"
        gm = gate_macs(s) if s.patch is not None else 0
        gates += gm
        lines.append(f"| `{s.name}` | {s.kernel} / {s.stride} | {s.cin} -> {s.cout}{' g' + str(s.groups) if s.groups > 1 else ''}"
                     f" | {s.out_hw[1]}x{s.out_hw[0]} | {grids} | {s.macs / 1e6:.1f} | {100 * s.macs / total:.1f} | {dec} | "
                     f"{gm / 1e6:.1f}{' (> conv)' if gm > s.macs else ''} |")
    g = plan.gated()
    lines.append("")
    lines.append(f"{len(g)} of {len(plan.sites)} convs gated, {100 * plan.gated_mac_share():.1f} % of the convs' "
                 f"{total / 1e9:.3f} GMACs; PASS gates (embed 16, hidden 64) {gates / 1e9:.3f} GMACs per gated frame "
                 f"({100 * gates / total:.1f} % of the convs); left dense: {', '.join(f'`{n}`' for n in plan.exclude)}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="a passbench model name (timm:resnet18, fairmot_dla34_conv, ...)")
    ap.add_argument("--wh", type=int, nargs=2, default=(384, 224), metavar=("W", "H"))
    ap.add_argument("--patches", type=int, nargs="+", default=[8, 4], help="candidate patch sizes")
    ap.add_argument("--min-patches", type=int, default=16)
    ap.add_argument("--params", action="store_true", help="print make_skippable's patch_size / exclude only")
    ap.add_argument("--follow", action="store_true",
                    help="print the one-gate-per-block pairs {follower: leader} only (make_skippable's follow)")
    args = ap.parse_args(argv)
    model, plan = model_and_plan(args.model, tuple(args.wh), tuple(args.patches), args.min_patches)
    if args.params:
        print(flow(plan.params()))
        return 0
    if args.follow:
        print(flow(block_followers(model, plan)))
        return 0
    print(f"{args.model} at {args.wh[0]}x{args.wh[1]}, candidate patches {args.patches}, min_patches "
          f"{args.min_patches} (`scripts/everyconv_layers.py {args.model} --patches "
          f"{' '.join(map(str, args.patches))}`):\n")
    print(table(plan, args.patches))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
