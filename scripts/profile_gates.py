"""Where the time of a skipping model goes: gates vs wrapped layers vs the rest, against its dense twin.

    .venv/bin/python scripts/profile_gates.py [CONFIG]                 # a Table 3 row (its trained weights)
    .venv/bin/python scripts/profile_gates.py --light pass_p [--rate 0.5] [--layers heads|all|GLOB ...]
    .venv/bin/python scripts/profile_gates.py --light skipconv_norm --quantile 0.5
    .venv/bin/python scripts/profile_gates.py --light fixed --keep 0.25 --layers all

``CONFIG`` builds the model exactly as the runner does (weights, BN folded, channels-last). ``--light``
builds the light model ``fairmot_mbv2`` at 384x224 with the sample backbone ``weights/sample/task.pt``
and wraps it with METHOD: ``pass_p`` with *untrained* gates of the sample's size (embed 16, hidden 64,
top-k ``--rate``; the timing does not depend on the gate weights), ``skipconv_norm`` (per-layer
thresholds at the ``--quantile`` of the frame 0 -> 1 residual norms) or ``fixed`` (random masks at
``--keep``). ``--layers heads`` (default) gates the sample's layers (neck + head 3x3 / id 1x1, as
``scripts/train_sample.sh``), ``all`` every conv (the paper's scheme).

Streams ``--frames`` consecutive PETS09-S2L1 frames (letterboxed); frame 0 is dense, every later frame
gated (no refresh, so every timed frame is a *skipped* frame). Timed region: one model forward under
``torch.inference_mode``; the skipping model and its dense twin (every ``SkipConv2d`` replaced by its
conv) run alternately per frame in this process; per-frame medians over frames 2.. (frame 1 holds the
dispatcher's one-off calibration). Gate and layer times come from forward hooks (gate module, wrapped
layer), summed per frame, medians reported; ``--per-layer`` lists them per layer. ``--engines`` times the
skipping model under several gate engines (``passbench.skip.set_gate_engine``) in the same rounds.
Prints the load average (``os.getloadavg``) before and after: this machine is shared.
"""

from __future__ import annotations

import argparse
import collections
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passbench.bench import norm_thresholds  # noqa: E402  (per-layer quantile of frame 0 -> 1 residual norms)
from passbench.skip import (dense_twin, fold_batchnorm, make_skippable, reset, set_thresholds,  # noqa: E402
                            skippable_layers)

LIGHT_LAYERS = ["neck.*", "hm.0", "wh.0", "reg.0", "id.0", "id.2"]  # scripts/train_sample.sh
LIGHT_WH = (384, 224)


def light_model(method: str, layers, rate: float, keep: float) -> torch.nn.Module:
    """fairmot_mbv2 with the sample backbone, wrapped with ``method`` (untrained PASS gates)."""
    from passbench.models import build_model

    model = build_model("fairmot_mbv2", pretrained=False).eval()
    ck = torch.load(ROOT / "weights/sample/task.pt", map_location="cpu", weights_only=False)
    model.load_state_dict(ck["model"])
    params: dict = {}
    if method in ("pass", "pass_p", "pass_f"):
        torch.manual_seed(0)
        params = dict(embed_dim=16, hidden=64, rates=rate)
    elif method == "fixed":
        params = dict(keep=keep)
    elif method != "skipconv_norm":
        raise SystemExit(f"--light: method must be pass_p, skipconv_norm or fixed, got {method!r}")
    return make_skippable(model, method, patch_size=8, layers=layers, **params).eval()


def config_model(config: str):
    """(model, frames) of a Table 3 row, built as the runner builds it."""
    from passbench.config import load_config
    from passbench.datasets.mot import load_sequence
    from passbench.models import build_model
    from passbench.paths import resolve_data_root
    from passbench.runner.core import load_weights, weights_path

    cfg = load_config(config)
    model = build_model(cfg.model.name, pretrained=False).eval()
    model, skippable = load_weights(model, weights_path(cfg), cfg)
    if not skippable:
        raise SystemExit(f"{config}: not a skipping row")
    seq = load_sequence(str(resolve_data_root(None) / "MOT15/train/PETS09-S2L1"))
    return model.eval(), seq, tuple(cfg.model.input_wh)


def letterboxed(seq, wh, n: int) -> list[torch.Tensor]:
    from passbench.tracking.letterbox import letterbox

    out = []
    for _, rgb in seq.frames(1, n + 1):
        x, _ = letterbox(rgb, wh)
        out.append(x.unsqueeze(0).contiguous(memory_format=torch.channels_last))
    return out


class Clock:
    """Forward hooks summing the wall time of gate modules and wrapped layers per frame (``names``: time
    these modules of a dense twin as "layer" instead)."""

    def __init__(self, model, names: list[str] | None = None) -> None:
        self.acc: dict[str, float] = collections.defaultdict(float)
        self.per_frame: dict[str, list[float]] = collections.defaultdict(list)
        if names is not None:
            for name in names:
                self._hook(model.get_submodule(name), "layer", name)
            return
        for name, layer in skippable_layers(model):
            if layer.gate is not None:
                self._hook(layer.gate, "gate", name)
            self._hook(layer, "layer", name)

    def _hook(self, mod, kind: str, name: str) -> None:
        def pre(m, args):
            m._pb_t0 = time.perf_counter()

        def post(m, args, out):
            dt = time.perf_counter() - m._pb_t0
            self.acc[kind] += dt
            self.acc[f"{kind}:{name}"] += dt

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)

    def close_frame(self, record: bool) -> None:
        if record:
            for k, v in self.acc.items():
                self.per_frame[k].append(v)
        self.acc.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", help="a Table 3 config (default: --light pass_p)")
    ap.add_argument("--light", metavar="METHOD", help="pass_p | skipconv_norm | fixed on fairmot_mbv2 384x224")
    ap.add_argument("--layers", nargs="+", default=["heads"], help="heads (the sample's), all, or globs")
    ap.add_argument("--rate", type=float, default=0.5, help="pass_p: top-k skip rate of every gate")
    ap.add_argument("--keep", type=float, default=0.5, help="fixed: compute fraction")
    ap.add_argument("--quantile", type=float, default=0.5, help="skipconv_norm: threshold quantile")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--execution", default="auto", choices=("auto", "sparse"))
    ap.add_argument("--engines", nargs="+", default=None, help="gate engines to compare (eager, fast, compiled)")
    ap.add_argument("--per-layer", action="store_true", help="gate and layer medians per wrapped layer")
    ap.add_argument("--profiler", action="store_true", help="also print the torch profiler's top ops")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    if args.config:
        model, seq, wh = config_model(args.config)
        what = args.config
    else:
        from passbench.datasets.mot import load_sequence
        from passbench.paths import resolve_data_root

        method = args.light or "pass_p"
        layers = {"heads": LIGHT_LAYERS, "all": None}.get(args.layers[0], args.layers) if len(args.layers) == 1 \
            else args.layers
        model = light_model(method, layers, args.rate, args.keep)
        seq = load_sequence(str(resolve_data_root(None) / "MOT15/train/PETS09-S2L1"))
        wh = LIGHT_WH
        what = f"fairmot_mbv2 {wh[0]}x{wh[1]} {method} layers={args.layers} rate={args.rate} keep={args.keep}"
    fold_batchnorm(model)
    model = model.to(memory_format=torch.channels_last)
    frames = letterboxed(seq, wh, args.frames)
    if args.light == "skipconv_norm":
        set_thresholds(model, norm_thresholds(model, frames, args.quantile))
    for _, layer in skippable_layers(model):
        layer.refresh_every = None  # every frame after the first is gated
        layer.execution = args.execution
    twin = dense_twin(model)
    engines = args.engines or [None]
    wrapped = [name for name, _ in skippable_layers(model)]
    variants = {"dense twin": (twin, Clock(twin, wrapped))}
    for eng in engines:
        m = copy.deepcopy(model) if len(engines) > 1 else model
        if eng is not None:
            from passbench.skip import set_gate_engine

            set_gate_engine(m, eng)
        variants[f"skip[{eng or 'default'}]"] = (m, Clock(m))
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for name, (m, _) in variants.items():
            if name != "dense twin":
                reset(m)
        for t, x in enumerate(frames):
            for name, (m, clk) in variants.items():
                t0 = time.perf_counter()
                m(x)
                dt = time.perf_counter() - t0
                clk.close_frame(t >= 2)
                if t >= 2:
                    times[name].append(dt)
    load1 = os.getloadavg()
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"{what}: {args.threads} threads, {len(frames) - 2} timed gated frames (medians), load average "
          f"{load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores")
    d = med["dense twin"]
    tclk = variants["dense twin"][1]
    print(f"  dense twin                 {d:7.2f} ms  (the wrapped layers' convs: "
          f"{statistics.median(tclk.per_frame['layer']) * 1e3:.2f} ms)")
    for name, (m, clk) in variants.items():
        if name == "dense twin":
            continue
        g = statistics.median(clk.per_frame["gate"]) * 1e3 if clk.per_frame["gate"] else 0.0
        lay = statistics.median(clk.per_frame["layer"]) * 1e3
        print(f"  {name:26} {med[name]:7.2f} ms  ({d / med[name]:.2f}x dense)  gates {g:6.2f} ms "
              f"({100 * g / med[name]:.0f} % of the frame)  wrapped layers incl. gates {lay:6.2f} ms")
        if args.per_layer:
            for lname, layer in skippable_layers(m):
                gl = clk.per_frame.get(f"gate:{lname}")
                ll = clk.per_frame.get(f"layer:{lname}")
                dl = tclk.per_frame.get(f"layer:{lname}")
                gm = statistics.median(gl) * 1e3 if gl else 0.0
                lm = statistics.median(ll) * 1e3 if ll else 0.0
                dm = statistics.median(dl) * 1e3 if dl else 0.0
                print(f"    {lname:18} gate {gm:6.3f} ms  layer {lm:6.3f} ms  dense conv {dm:6.3f} ms  "
                      f"path {layer.last_path}")
    if args.profiler:
        m = next(v[0] for k, v in variants.items() if k != "dense twin")
        with torch.inference_mode():
            reset(m)
            for x in frames[:4]:
                m(x)
            with torch.profiler.profile() as prof:
                for x in frames[4:8]:
                    m(x)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
