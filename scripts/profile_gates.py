"""Where the time of a skipping model goes: gates vs wrapped layers vs the rest, against its dense twin.

    .venv/bin/python scripts/profile_gates.py [CONFIG]                 # a Table 3 row (its trained weights)
    .venv/bin/python scripts/profile_gates.py --light pass_p [--rate 0.5] [--layers heads|all|GLOB ...]
    .venv/bin/python scripts/profile_gates.py --light skipconv_norm --quantile 0.5
    .venv/bin/python scripts/profile_gates.py --light fixed --keep 0.25 --layers all
    .venv/bin/python scripts/profile_gates.py --model timm:resnet18 --light pass_p --layers everyconv \\
        --variants engine=eager engine=fast patches=8+4                 # one process, one row per variant

``CONFIG`` builds the model exactly as the runner does (weights, BN folded, channels-last). ``--light
METHOD`` builds ``--model`` (default the light model ``fairmot_mbv2``) at 384x224 and wraps it with
METHOD: ``pass_p`` with *untrained* gates of the committed size (embed 16, hidden 64, top-k ``--rate``;
the timing does not depend on the gate weights), ``skipconv_norm`` (per-layer thresholds at the
``--quantile`` of the frame 0 -> 1 residual norms), ``fixed`` (random masks at ``--keep``) or ``hooks``
(the same random masks through minimal forward hooks calling the kernel, no wrapper:
``passbench.bench.attach_engine_hooks``; the wrapper's overhead is the gap between ``fixed`` and
``hooks``). Weights: ``--weights PATH``, default ``weights/sample/task.pt`` for ``fairmot_mbv2`` and a
seeded random init for any other model (timing does not depend on them; the skip masks of norm gates
do). ``--layers heads`` (default) gates the sample's layers (neck + head 3x3 / id 1x1, as
``scripts/train_sample.sh``), ``all`` every conv, ``everyconv`` every conv but the stem and the convs
whose grid is under 16 patches at the largest of ``--patches`` that reaches 16 (``passbench.skip.convplan``).

``--variants``: several models in the same rounds, each the base settings with ``key=value[,key=value]``
on top; keys: ``engine`` (PASS gate engine: eager, fast, compiled), ``patches`` (candidate patch sizes
of ``everyconv``, ``+``-separated: ``8+4``), ``rate``, ``keep``, ``quantile``, ``method`` and ``execution``; with a
``CONFIG`` only ``engine`` (the row's weights fix the rest: ``CONFIG --engines fast compiled``). Streams
``--frames`` consecutive PETS09-S2L1 frames (letterboxed); frame 0 is dense, every later frame gated
(no refresh, so every timed frame is a *skipped* frame). Timed region: one model forward under
``torch.inference_mode``; the variants and the dense twin (every ``SkipConv2d`` replaced by its conv)
run round-robin per frame in this process; per-frame medians over frames 2.. (frame 1 holds the
dispatcher's one-off calibration). Gate and layer times come from forward hooks (gate module, wrapped
layer), summed per frame, medians reported; ``--per-layer`` lists them per layer. ``mac_red`` = the
network's dense MACs / (executed + gate MACs) over the timed frames (unwrapped layers at their dense
MACs), ``ratio`` = speedup / mac_red. Prints the load average (``os.getloadavg``) before and after.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from passbench.bench import attach_engine_hooks, norm_thresholds  # noqa: E402
from passbench.skip import (collect_stats, dense_twin, fold_batchnorm, make_skippable, reset,  # noqa: E402
                            set_gate_engine, set_thresholds, skippable_layers)
from passbench.skip.convplan import every_conv  # noqa: E402

LIGHT_LAYERS = ["neck.*", "hm.0", "wh.0", "reg.0", "id.0", "id.2"]  # scripts/train_sample.sh
LIGHT_WH = (384, 224)
METHODS = ("pass_p", "skipconv_norm", "fixed", "hooks")
KEYS = ("engine", "patches", "rate", "keep", "quantile", "method", "execution")


def base_model(name: str, weights: str | None) -> torch.nn.Module:
    """``name`` with ``weights`` (a passbench final.pt / state dict), or a seeded random init."""
    from passbench.models import build_model
    from passbench.models.checkpoint import load_checkpoint

    torch.manual_seed(0)
    model = build_model(name, pretrained=False).eval()
    if weights is None and name == "fairmot_mbv2":
        weights = str(ROOT / "weights/sample/task.pt")
    if weights:
        load_checkpoint(model, weights)
    return model


def layer_params(model, layers: list[str], wh: tuple[int, int], patches: tuple[int, ...]) -> dict:
    """make_skippable's ``layers`` / ``exclude`` / ``patch_size`` for ``--layers``."""
    if layers == ["everyconv"]:
        return every_conv(model, (3, wh[1], wh[0]), patches).params()
    sel = {"heads": LIGHT_LAYERS, "all": None}.get(layers[0], layers) if len(layers) == 1 else layers
    return {"layers": sel, "patch_size": patches[0]}


def wrap(model, opts: dict, layers: list[str], wh: tuple[int, int], frames: list[torch.Tensor]):
    """``model`` made skippable as ``opts`` says (method, rate, keep, quantile, patches, engine)."""
    method = opts["method"]
    params = layer_params(model, layers, wh, opts["patches"])
    if method == "hooks":  # kernel-only: random masks through forward hooks on the same layers, no wrapper
        names = [s.name for s in every_conv(model, (3, wh[1], wh[0]), opts["patches"]).gated()] \
            if layers == ["everyconv"] else None
        patch = params["patch_size"]
        return model, attach_engine_hooks(model, opts["keep"], patch, names=names)
    if method == "pass_p":
        torch.manual_seed(0)
        kw = dict(embed_dim=16, hidden=64, rates=opts["rate"])
        make_skippable(model, method, **params, **kw)
    elif method == "fixed":
        make_skippable(model, method, keep=opts["keep"], **params)
    elif method == "skipconv_norm":
        make_skippable(model, method, **params)
    else:
        raise SystemExit(f"method must be one of {METHODS}, got {method!r}")
    model.eval()
    if opts.get("engine"):
        set_gate_engine(model, opts["engine"])
    return model, None


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

    def median(self, key: str) -> float:
        v = self.per_frame.get(key)
        return statistics.median(v) * 1e3 if v else 0.0


def parse_variant(spec: str, base: dict) -> dict:
    """``"engine=eager,patches=8+4"`` on top of ``base`` (typed like the command-line options)."""
    out = dict(base)
    for item in filter(None, spec.split(",")):
        k, sep, v = item.partition("=")
        if not sep or k not in KEYS:
            raise SystemExit(f"--variants {spec!r}: expected key=value with key in {KEYS}")
        out[k] = (tuple(int(p) for p in v.split("+")) if k == "patches" else float(v) if k in ("rate", "keep",
                  "quantile") else v)
    return out


def _macs(m, counters) -> tuple[int, int]:
    """(dense, executed + gate) MACs of the wrapped / hooked layers so far."""
    if counters is not None:
        return sum(c["dense_macs"] for c in counters), sum(c["executed_macs"] for c in counters)
    st = collect_stats(m)
    return st["dense_macs"], st["executed_macs"] + st["gate_macs"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config", nargs="?", help="a Table 3 config (default: --light pass_p)")
    ap.add_argument("--light", metavar="METHOD", help=f"one of {METHODS} on --model at 384x224")
    ap.add_argument("--model", default="fairmot_mbv2", help="with --light: the network (fairmot_mbv2, timm:resnet18, ...)")
    ap.add_argument("--weights", default=None, help="with --light: weights file (default: see the docstring)")
    ap.add_argument("--layers", nargs="+", default=["heads"], help="heads (the sample's), all, everyconv, or globs")
    ap.add_argument("--patches", type=int, nargs="+", default=[8], help="patch size (everyconv: candidates)")
    ap.add_argument("--rate", type=float, default=0.5, help="pass_p: top-k skip rate of every gate")
    ap.add_argument("--keep", type=float, default=0.5, help="fixed / hooks: compute fraction")
    ap.add_argument("--quantile", type=float, default=0.5, help="skipconv_norm: threshold quantile")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--execution", default="auto", choices=("auto", "sparse"))
    ap.add_argument("--engines", nargs="+", default=None, help="gate engines to compare (= --variants engine=...)")
    ap.add_argument("--variants", nargs="+", default=None, help="key=value[,key=value] per variant (docstring)")
    ap.add_argument("--per-layer", action="store_true", help="gate and layer medians per wrapped layer")
    ap.add_argument("--profiler", action="store_true", help="also print the torch profiler's top ops")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    from passbench.datasets.mot import load_sequence
    from passbench.metrics.cost import count_macs
    from passbench.paths import resolve_data_root

    specs = args.variants or ([f"engine={e}" for e in args.engines] if args.engines else [""])
    if args.config:
        built = {}
        for spec in specs:  # with a config only the gate engine varies (the row's weights fix the rest)
            opts = parse_variant(spec, {"engine": None})
            if set(opts) != {"engine"}:
                raise SystemExit(f"--variants {spec!r}: with a CONFIG only engine=... varies")
            model, seq, wh = config_model(args.config)
            fold_batchnorm(model)
            if opts["engine"]:
                set_gate_engine(model, opts["engine"])
            built[f"skip[config{',' + spec if spec else ''}]"] = (model.to(memory_format=torch.channels_last), None)
        what = args.config
        frames = letterboxed(seq, wh, args.frames)  # the config's sequence and input, the same for every engine
    else:
        base = dict(method=args.light or "pass_p", rate=args.rate, keep=args.keep, quantile=args.quantile,
                    patches=tuple(args.patches), engine=None, execution=args.execution)
        seq = load_sequence(str(resolve_data_root(None) / "MOT15/train/PETS09-S2L1"))
        wh = LIGHT_WH
        frames = letterboxed(seq, wh, args.frames)
        what = (f"{args.model} {wh[0]}x{wh[1]} {base['method']} layers={args.layers} patches={args.patches} "
                f"rate={args.rate} keep={args.keep} weights={args.weights or 'default'}")
        built = {}
        for spec in specs:
            opts = parse_variant(spec, base)
            m = base_model(args.model, args.weights)
            fold_batchnorm(m)
            m = m.to(memory_format=torch.channels_last)
            m, counters = wrap(m, opts, args.layers, wh, frames)
            if opts["method"] == "skipconv_norm":
                set_thresholds(m, norm_thresholds(m, frames, opts["quantile"]))
            for _, layer in skippable_layers(m):
                layer.execution = opts["execution"]
            built[f"skip[{spec or 'default'}]"] = (m, counters)
    for m, counters in built.values():
        if counters is None:
            for _, layer in skippable_layers(m):
                layer.refresh_every = None  # every frame after the first is gated
    wrapped_names = None
    variants = {}
    for name, (m, counters) in built.items():
        if counters is None and wrapped_names is None:
            twin = dense_twin(m)
            wrapped_names = []
        if counters is None:  # the twin times every conv some variant wraps
            wrapped_names += [n for n, _ in skippable_layers(m) if n not in wrapped_names]
        variants[name] = (m, Clock(m) if counters is None else Clock(m, []), counters)
    if wrapped_names is None:  # only hook variants: the twin is the unhooked network
        twin = base_model(args.model, args.weights)
        fold_batchnorm(twin)
        twin = twin.to(memory_format=torch.channels_last)
        wrapped_names = []
    variants = {"dense twin": (twin, Clock(twin, wrapped_names), None), **variants}
    net_macs = count_macs(twin, frames[0])  # the whole network's dense MACs per frame
    times: dict[str, list[float]] = {k: [] for k in variants}
    macs0: dict[str, tuple[int, int]] = {}
    with torch.inference_mode():
        for name, (m, _, counters) in variants.items():
            if name != "dense twin" and counters is None:
                reset(m)
        for t, x in enumerate(frames):
            for name, (m, clk, counters) in variants.items():
                if t == 2 and name != "dense twin":
                    macs0[name] = _macs(m, counters)
                t0 = time.perf_counter()
                m(x)
                dt = time.perf_counter() - t0
                clk.close_frame(t >= 2)
                if t >= 2:
                    times[name].append(dt)
    load1 = os.getloadavg()
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    n_t = len(frames) - 2
    print(f"{what}: {args.threads} threads, {n_t} timed gated frames (medians), load average "
          f"{load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores")
    d = med["dense twin"]
    tclk = variants["dense twin"][1]
    print(f"  dense twin                 {d:7.2f} ms  (the convs any variant wraps: {tclk.median('layer'):.2f} ms; "
          f"network {net_macs / 1e9:.3f} GMACs)")
    for name, (m, clk, counters) in variants.items():
        if name == "dense twin":
            continue
        (d0, e0), (d1, e1) = macs0[name], _macs(m, counters)
        exe = net_macs * n_t - (d1 - d0) + (e1 - e0)  # unwrapped layers dense, wrapped as executed (+ gates)
        red = net_macs * n_t / max(exe, 1)
        g, lay = clk.median("gate"), clk.median("layer")
        print(f"  {name:26} {med[name]:7.2f} ms  ({d / med[name]:.2f}x dense)  gates {g:6.2f} ms "
              f"({100 * g / med[name]:.0f} % of the frame)  wrapped layers incl. gates {lay:6.2f} ms  "
              f"mac_red {red:.2f}  ratio {d / med[name] / red:.2f}")
        if args.per_layer and counters is None:
            for lname, layer in skippable_layers(m):
                print(f"    {lname:30} gate {clk.median('gate:' + lname):6.3f} ms  layer "
                      f"{clk.median('layer:' + lname):6.3f} ms  dense conv {tclk.median('layer:' + lname):6.3f} ms  "
                      f"path {layer.last_path}  patch {layer.patch_size}")
    if args.profiler:
        m = next(v[0] for k, v in variants.items() if k != "dense twin")
        with torch.inference_mode():
            reset(m)
            for x in frames[:4]:
                m(x)
            with torch.profiler.profile() as prof:
                for x in frames[4:8]:
                    m(x)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
