"""Speed of skipping on every conv of a plain-conv FairMOT: same-process FPS ratio to the dense twin.

    .venv/bin/python scripts/everyconv_speed.py [--model timm:resnet18] [--threads 1] [--rounds 5] [--block 10]
                                                [--alias on|off|both]

No training needed: the time of a skipped frame depends on the skip masks' rate, not on what the weights
are. The model (seeded random init, BatchNorm folded, channels-last, 384x224) is wrapped on the every-conv
plan (``passbench.skip.convplan.every_conv``, patch candidates 8 and 4: the stem and the grids under 16
patches stay dense, listed in the output) with each method at 20 / 40 / 60 / 80 % skip:

* ``random``: seeded random masks, compute fraction ``keep = 1 - rate`` per layer (``fixed``);
* ``keyframe``: a fraction ``rate`` of the frames reuses every gated output, the others are computed
  whole (evenly spaced key frames);
* ``pass``: PASS gates of the committed size (embed 16, hidden 64), *untrained*, set to the rate through
  the operating-point knob (``train.operating_point.set_operating_point``; untrained gates all start
  at the same rate, so the learned allocation is the uniform one). Their masks are not the trained
  gates' masks, their cost is: top-k at a fixed rate computes the same ops whatever the weights.

Streams ``2 + warmup + (rounds + 1) * block`` consecutive PETS09-S2L1 frames (letterboxed). Frame 0 is
dense (no reference yet), frame 1 holds the dispatcher's one-off calibration, ``warmup`` more frames
load the kernels; none is timed. No refresh: every
later frame is gated. Each frame runs every variant and the dense twin (every ``SkipConv2d`` replaced by
its conv) one after the other, in this process, in an order that rotates from frame to frame; a round is ``block`` consecutive frames (a multiple of
5: the key-frame pattern of every rate repeats every 5 frames) and its time per variant is the mean
per frame. Reported: median over rounds of the per-round FPS ratio (dense twin time / variant time),
its min-max over rounds, and ``mac_red`` = the network's dense MACs / (executed + gate MACs) over the
timed frames (unwrapped convs at dense MACs). ``eff`` = FPS ratio / mac_red (the goal is >= 0.6).

Where the time goes: after the timed rounds, one more block with forward hooks (means per frame over it) (hooks add a little
Python per layer, so they are kept out of the timed rounds): the gates' time (as a share of the
skipped frame), the wrapped layers' time including gates, and the rest (stem, unwrapped
convs, activations, upsampling, heads' non-conv ops); for the dense twin the wrapped convs' time and
the rest (the time no skipping of these convs can remove). Prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from passbench.metrics.cost import count_macs  # noqa: E402
from passbench.skip import collect_stats, dense_twin, fold_batchnorm, make_skippable, reset  # noqa: E402
from passbench.skip import skippable_layers  # noqa: E402
from passbench.skip.aliasing import set_output_aliasing  # noqa: E402
from passbench.skip.convplan import every_conv  # noqa: E402
from passbench.train.operating_point import set_operating_point  # noqa: E402
from profile_gates import base_model, letterboxed  # noqa: E402

RATES = (0.2, 0.4, 0.6, 0.8)
WH = (384, 224)


def build(model_name: str, method: str, rate: float, plan_params: dict, alias: bool = True) -> torch.nn.Module:
    """One variant: the model wrapped on the plan with ``method`` at ``rate``; ``alias``: output aliasing
    probed and on (``passbench.skip.aliasing``, as the runner does), else every layer copies its output."""
    m = base_model(model_name, None)
    fold_batchnorm(m)
    m = m.to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    if method == "random":
        make_skippable(m, "fixed", keep=1.0 - rate, seed=0, **plan_params)
    elif method == "keyframe":
        make_skippable(m, "keyframe", rate=rate, **plan_params)
    elif method == "pass":
        make_skippable(m, "pass_p", embed_dim=16, hidden=64, rates=0.5, **plan_params)
        m.eval()
        set_operating_point(m, "pass_p", {}, rate, None)
    else:
        raise ValueError(method)
    m.eval()
    for _, layer in skippable_layers(m):
        layer.refresh_every = None  # every frame after the first is gated
    if alias:
        set_output_aliasing(m, torch.zeros(1, 3, WH[1], WH[0]).contiguous(memory_format=torch.channels_last))
    return m


class Hooks:
    """Forward hooks summing, per frame, the wall time of the given modules under a few keys."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = {}
        self.frames: dict[str, list[float]] = {}
        self.handles = []

    def add(self, mod: torch.nn.Module, key: str) -> None:
        def pre(m, args):
            m._ecs_t0 = time.perf_counter()

        def post(m, args, out):
            self.acc[key] = self.acc.get(key, 0.0) + time.perf_counter() - m._ecs_t0

        self.handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]

    def close_frame(self) -> None:
        for k, v in self.acc.items():
            self.frames.setdefault(k, []).append(v)
        self.acc.clear()

    def mean_ms(self, key: str) -> float:
        return statistics.fmean(self.frames[key]) * 1e3 if key in self.frames else 0.0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="timm:resnet18")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=5, help="frames per round (a multiple of 5)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed gated frames before the rounds")
    ap.add_argument("--methods", nargs="+", default=["random", "keyframe", "pass"])
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    ap.add_argument("--alias", choices=("on", "off", "both"), default="on",
                    help="output aliasing (passbench.skip.aliasing; on: as the runner); both: each variant twice, "
                         "'... copy' without it (the lever's before / after in one process)")
    args = ap.parse_args(argv)
    if args.block % 5:
        raise SystemExit("--block must be a multiple of 5 (the key-frame patterns repeat every 5 frames)")
    torch.set_num_threads(args.threads)
    from passbench.datasets.mot import load_sequence
    from passbench.paths import resolve_data_root

    load0 = os.getloadavg()
    seq = load_sequence(str(resolve_data_root(None) / "MOT15/train/PETS09-S2L1"))
    w = 2 + args.warmup  # frame 0 dense, frame 1 calibration, then warm-up (lazy kernel loading, allocator)
    frames = letterboxed(seq, WH, w + (args.rounds + 1) * args.block)
    plan = every_conv(base_model(args.model, None), (3, WH[1], WH[0]), (8, 4))
    modes = {"on": [(True, "")], "off": [(False, "")], "both": [(True, ""), (False, " copy")]}[args.alias]
    variants = {f"{meth} {r:.0%}{tag}": build(args.model, meth, r, plan.params(), alias) for meth in args.methods
                for r in args.rates for alias, tag in modes}
    twin = dense_twin(next(iter(variants.values())))
    net_macs = count_macs(twin, frames[0])
    models = {"dense twin": twin, **variants}
    wrapped = [n for n, _ in skippable_layers(next(iter(variants.values())))]
    print(f"{args.model} (FairMOT heads) at {WH[0]}x{WH[1]}, batch 1, float32, channels-last, BN folded, seeded "
          f"random init; torch {torch.__version__}, {args.threads} thread(s) of {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}); {args.rounds} rounds x {args.block} frames, "
          f"variants interleaved per frame; network {net_macs / 1e9:.3f} GMACs per frame; output aliasing "
          + {"on": "on", "off": "off", "both": "on, and off in the '... copy' variants"}[args.alias])
    print(f"gated: {len(plan.gated())} of {len(plan.sites)} convs, {100 * plan.gated_mac_share():.1f} % of the convs' "
          f"MACs, patch_size {plan.params()['patch_size']}; dense: "
          + ", ".join(f"{s.name} ({s.reason})" for s in plan.sites if s.patch is None))
    per_round: dict[str, list[float]] = {k: [] for k in models}
    macs0: dict[str, tuple[int, int]] = {}
    with torch.inference_mode():
        for m in variants.values():
            reset(m)
        for t, x in enumerate(frames[: w + args.rounds * args.block]):
            if t == w:
                for k, m in variants.items():
                    st = collect_stats(m)
                    macs0[k] = (st["dense_macs"], st["executed_macs"] + st["gate_macs"])
            keys = list(models)
            for k in keys[t % len(keys):] + keys[: t % len(keys)]:  # the order rotates from frame to frame
                m = models[k]
                t0 = time.perf_counter()
                m(x)
                dt = time.perf_counter() - t0
                if t >= w:
                    r = (t - w) // args.block
                    if len(per_round[k]) <= r:
                        per_round[k].append(0.0)
                    per_round[k][r] += dt / args.block
        macs1 = {}
        for k, m in variants.items():
            st = collect_stats(m)
            macs1[k] = (st["dense_macs"], st["executed_macs"] + st["gate_macs"])
        # one more block with hooks: where the time goes
        hooks = {k: Hooks() for k in models}
        for name in wrapped:
            hooks["dense twin"].add(twin.get_submodule(name), "layers")
        for k, m in variants.items():
            for name, layer in skippable_layers(m):
                hooks[k].add(layer, "layers")
                if layer.gate is not None:
                    hooks[k].add(layer.gate, "gates")
        frame_ms: dict[str, list[float]] = {k: [] for k in models}
        for x in frames[w + args.rounds * args.block:]:
            for k, m in models.items():
                t0 = time.perf_counter()
                m(x)
                frame_ms[k].append((time.perf_counter() - t0) * 1e3)
                hooks[k].close_frame()
        for h in hooks.values():
            h.remove()
    load1 = os.getloadavg()
    n_t = args.rounds * args.block
    d_rounds = per_round["dense twin"]
    d_ms = statistics.median(d_rounds) * 1e3
    hd = hooks["dense twin"]
    d_frame, d_layers = statistics.fmean(frame_ms["dense twin"]), hd.mean_ms("layers")
    print(f"load average {load0[0]:.1f} -> {load1[0]:.1f} (1 min), {load1[1]:.1f} (5 min)")
    print(f"dense twin: {d_ms:.1f} ms per frame (median of {args.rounds} round means); hooked block: wrapped convs "
          f"{d_layers:.1f} ms of {d_frame:.1f} ms, rest {d_frame - d_layers:.1f} ms "
          f"(skipping the wrapped convs entirely: at most {d_frame / max(d_frame - d_layers, 1e-9):.2f}x)\n")
    print("| variant | skip (patches) | ms / frame | FPS ratio (median) | min-max over rounds | mac_red | eff | "
          "gates ms | gates % of frame | wrapped layers ms (incl. gates) | rest ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k, m in variants.items():
        ratios = [d / v for d, v in zip(d_rounds, per_round[k])]
        (dd0, e0), (dd1, e1) = macs0[k], macs1[k]
        red = net_macs * n_t / max(net_macs * n_t - (dd1 - dd0) + (e1 - e0), 1)
        st = collect_stats(m)
        h, fm = hooks[k], statistics.fmean(frame_ms[k])
        g, lay = h.mean_ms("gates"), h.mean_ms("layers")
        print(f"| {k} | {st['patch_skip_rate']:.2f} | {statistics.median(per_round[k]) * 1e3:.1f} | "
              f"{statistics.median(ratios):.2f} | {min(ratios):.2f}-{max(ratios):.2f} | {red:.2f} | "
              f"{statistics.median(ratios) / red:.2f} | {g:.1f} | {100 * g / fm:.0f} | {lay:.1f} | {fm - lay:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
