"""Wall-clock benchmark of block-sparse execution: per conv layer shape, and end to end.

Run ``python -m passbench.bench --quick`` (about a minute on 2 CPU threads) or without
``--quick`` for the full grid (3x3 / 1x1 / depthwise 3x3 x C {32, 64, 128, 256} x maps {32, 64,
128, 256} x patch {4, 8, 16} x keep {1, .75, .5, .25, .1}); ``--csv PATH`` saves the rows.

Timed region, per layer: one call of the convolution on a (1, C, H, H) input (``torch.no_grad``),
after warm-up; dense in NCHW and channels-last (the best of the two is the baseline), sparse
(``sparse_conv2d``, channels-last, ``inplace=True``: the caller hands over ``prev_out``, as a
wrapper holding the previous output does) and "auto" (``choose_path`` then the chosen path; the dense
path includes ``blend_skipped``, since it must still return prev_out on skipped patches; the
dispatcher's calibration is excluded from the timed region). All variants of one shape run
round-robin in the same process and the medians are reported (the machine is shared).
End to end (``--e2e``): see ``run_e2e``; ``--nets`` takes torchvision ``mobilenet_v2`` / ``resnet18`` or any
``passbench.models`` name (``fairmot_dla34_conv``, ``timm:resnet18``, ...), ``--keeps`` the keep fractions,
``--no-hooks`` / ``--no-norm`` / ``--no-alias`` leave out the kernel-only, norm-gate and output-aliasing variants. The light model with its
gates is profiled by ``scripts/profile_gates.py --light``. Results and verdicts: ``docs/engine-benchmark.md``.
"""

from __future__ import annotations

import argparse
import os
import csv
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip.dispatch import calibrate, choose_path, random_keep_mask
from passbench.skip.nhwc import blend_skipped
from passbench.skip.sparse import dense_macs, sparse_conv2d

KEEPS = (1.0, 0.75, 0.5, 0.25, 0.1)
FULL = dict(kinds=("3x3", "1x1", "dw3x3"), channels=(32, 64, 128, 256), maps=(32, 64, 128, 256), patches=(4, 8, 16))
QUICK = dict(kinds=("3x3", "1x1", "dw3x3"), channels=(64, 256), maps=(32, 64), patches=(8,))


def make_conv(kind: str, c: int) -> nn.Conv2d:
    """The benchmarked layer: C -> C channels, stride 1, 'same' zero padding, with bias."""
    if kind == "3x3":
        return nn.Conv2d(c, c, 3, padding=1)
    if kind == "1x1":
        return nn.Conv2d(c, c, 1)
    if kind == "dw3x3":
        return nn.Conv2d(c, c, 3, padding=1, groups=c)
    raise ValueError(f"unknown layer kind {kind!r}; expected 3x3, 1x1 or dw3x3")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: list, reps: int, device: torch.device, stat=statistics.median) -> list[float]:
    """``stat`` (median) of the seconds of each callable, run round-robin ``reps`` times after 2
    warm-up rounds; with ``stat=None`` the raw lists."""
    for _ in range(2):
        for f in fns:
            f()
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for i, f in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            f()
            _sync(device)
            ts[i].append(time.perf_counter() - t0)
    return ts if stat is None else [stat(v) for v in ts]


@torch.no_grad()
def bench_shape(kind: str, c: int, hw: int, patch: int, keeps, reps: int, device: torch.device) -> list[dict]:
    """Time dense (NCHW, channels-last), sparse and auto at each keep fraction for one layer shape."""
    conv = make_conv(kind, c).to(device).eval()
    conv_cl = make_conv(kind, c).to(device).eval()
    conv_cl.load_state_dict(conv.state_dict())
    conv_cl = conv_cl.to(memory_format=torch.channels_last)
    w, b = conv.weight, conv.bias
    w_cl = conv_cl.weight
    x = torch.randn(1, c, hw, hw, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    prev = conv_cl(x_cl).contiguous(memory_format=torch.channels_last)  # (1, C, H, W), the state
    n = -(-hw // patch)
    gen = torch.Generator().manual_seed(0)
    masks = [random_keep_mask(1, n, n, k, device, gen) for k in keeps]
    calibrate(conv_cl, x.shape, patch, device)  # dispatcher calibration: outside the timed region

    def dense_nchw():
        return F.conv2d(x, w, b, 1, conv.padding, 1, conv.groups)

    def dense_cl():
        return F.conv2d(x_cl, w_cl, b, 1, conv.padding, 1, conv.groups)

    def sparse(m):
        return sparse_conv2d(x_cl, conv_cl, prev, m, patch, inplace=True)

    def auto(m, k):
        if choose_path(conv_cl, x.shape, k, patch, device) == "sparse":
            return sparse(m)
        return blend_skipped(dense_cl(), prev, m, patch)  # the dense path still honours the mask

    def auto_recompute(m, k):  # "dense" = recompute every patch (exact dense output, no blend)
        if choose_path(conv_cl, x.shape, k, patch, device) == "sparse":
            return sparse(m)
        return dense_cl()

    fns = [dense_nchw, dense_cl]
    for m, k in zip(masks, keeps):
        fns += [lambda m=m: sparse(m), lambda m=m, k=k: auto(m, k), lambda m=m, k=k: auto_recompute(m, k)]
    raw = interleaved(fns, reps, device, stat=None)
    t = [statistics.median(v) for v in raw]
    tmin = [min(v) for v in raw]  # the machine is shared: minima show the intrinsic ratio
    t_best = min(t[0], t[1])
    rows = []
    dmacs = dense_macs(w, (hw, hw))
    for i, (m, k) in enumerate(zip(masks, keeps)):
        keep = float(m.float().mean())
        _, emacs = sparse(m)
        t_s, t_a, t_r = t[2 + 3 * i], t[3 + 3 * i], t[4 + 3 * i]
        rows.append(dict(
            kind=kind, channels=c, map=hw, patch=patch, keep_target=k, keep=round(keep, 4),
            dense_nchw_ms=t[0] * 1e3, dense_cl_ms=t[1] * 1e3, sparse_ms=t_s * 1e3, auto_ms=t_a * 1e3,
            auto_path=choose_path(conv_cl, x.shape, k, patch, device),
            sparse_over_dense=t_s / t_best, auto_over_dense=t_a / t_best, auto_recompute_over_dense=t_r / t_best,
            speedup=t_best / t_s, mac_ideal=1.0 / keep, exec_mac_ideal=dmacs / max(emacs, 1),
            efficiency=(t_best / t_s) * keep,
            speedup_min=min(tmin[0], tmin[1]) / tmin[2 + 3 * i],
            auto_over_dense_min=tmin[3 + 3 * i] / min(tmin[0], tmin[1]),
        ))
    return rows


def conditions(device: torch.device) -> str:
    try:
        load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    except (OSError, AttributeError):
        load = ""
    return (
        f"torch {torch.__version__}, python {platform.python_version()}, threads {torch.get_num_threads()}, "
        f"device {device} ({platform.processor() or platform.machine()}), dtype float32, batch 1, "
        "dense baseline = best of NCHW / channels-last, sparse + auto in channels-last (inplace)" + load
    )


def print_rows(rows: list[dict], header: bool = True) -> None:
    hdr = (f"{'layer':6} {'C':>4} {'map':>4} {'P':>3} {'keep':>5} {'dNCHW':>8} {'dCL':>8} {'sparse':>8} "
           f"{'s/d':>5} {'speedup':>7} {'1/k':>5} {'execI':>5} {'eff':>5} {'auto/d':>6} {'autoR/d':>7} path")
    if header:
        print(hdr)
    for r in rows:
        print(f"{r['kind']:6} {r['channels']:4d} {r['map']:4d} {r['patch']:3d} {r['keep']:5.2f} "
              f"{r['dense_nchw_ms']:8.3f} {r['dense_cl_ms']:8.3f} {r['sparse_ms']:8.3f} "
              f"{r['sparse_over_dense']:5.2f} {r['speedup']:7.2f} {r['mac_ideal']:5.1f} "
              f"{r['exec_mac_ideal']:5.1f} {r['efficiency']:5.2f} {r['auto_over_dense']:6.2f} "
              f"{r['auto_recompute_over_dense']:7.2f} {r['auto_path']}",
              flush=True)


def summarize(rows: list[dict]) -> None:
    """The targets: efficiency >= 0.7 at keep <= 0.5 (C >= 32, map >= 32); auto never > 1.10 x dense."""
    print("\nsummary (targets: speedup >= 0.7 x 1/k at k <= 0.5; auto <= 1.10 x best dense at every k)")
    for kind in sorted({r["kind"] for r in rows}):
        sub = [r for r in rows if r["kind"] == kind and r["keep_target"] <= 0.5]
        if sub:
            met = sum(r["efficiency"] >= 0.7 for r in sub)
            eff = statistics.median(r["efficiency"] for r in sub)
            met_m = sum(r["speedup_min"] * r["keep"] >= 0.7 for r in sub)
            print(f"  {kind:6} k<=0.5: efficiency >= 0.7 in {met}/{len(sub)} rows (medians; {met_m}/{len(sub)} "
                  f"with min times), median efficiency {eff:.2f}")
        allk = [r for r in rows if r["kind"] == kind]
        bad = [r for r in allk if r["auto_over_dense"] > 1.10]
        worst = max(allk, key=lambda r: r["auto_over_dense"])
        bad_m = [r for r in allk if r["auto_over_dense_min"] > 1.10]
        bad_r = [r for r in allk if r["auto_recompute_over_dense"] > 1.10]
        print(f"  {kind:6} auto > 1.10 x dense in {len(bad)}/{len(allk)} rows (medians; {len(bad_m)} with min "
              f"times; autoR: {len(bad_r)}); worst {worst['auto_over_dense']:.2f} "
              f"(C {worst['channels']} map {worst['map']} P {worst['patch']} k {worst['keep_target']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m passbench.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a subset that runs in about a minute")
    ap.add_argument("--csv", help="write the per-layer rows to this CSV file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds per shape (default 9 quick, 7 full)")
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer grid")
    ap.add_argument("--kinds", nargs="+", choices=FULL["kinds"], help="override the grid's layer kinds")
    ap.add_argument("--channels", nargs="+", type=int, help="override the grid's channel counts")
    ap.add_argument("--maps", nargs="+", type=int, help="override the grid's map sizes (px)")
    ap.add_argument("--patches", nargs="+", type=int, help="override the grid's patch sizes")
    ap.add_argument("--e2e", action="store_true", help="also run the end-to-end networks on real frames")
    ap.add_argument("--frames", type=int, default=None, help="e2e: frames per run (default 8 quick, 24 full)")
    ap.add_argument("--data-root", default=None, help="e2e: data root (default: passbench.paths)")
    ap.add_argument("--size", type=int, nargs=2, default=(384, 288), metavar=("W", "H"), help="e2e frame size")
    ap.add_argument("--patch", type=int, default=8, help="e2e: output patch size of every layer")
    ap.add_argument("--fold-bn", action="store_true", help="e2e: fold BatchNorm into the convs (all variants)")
    ap.add_argument("--nets", nargs="+", default=list(TORCHVISION_NETS),
                    help="e2e: torchvision mobilenet_v2 / resnet18 or passbench model names (fairmot_dla34_conv, "
                         "timm:resnet18, fairmot_mbv2)")
    ap.add_argument("--keeps", nargs="+", type=float, help="e2e: keep fractions (default .5 .25 .1; quick .25)")
    ap.add_argument("--no-hooks", action="store_true", help="e2e: leave out the kernel-only hook variants")
    ap.add_argument("--no-norm", action="store_true", help="e2e: leave out the norm-gate variants")
    ap.add_argument("--no-alias", action="store_true", help="e2e: leave out the output-aliasing variants")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device available")
    grid = dict(QUICK if args.quick else FULL)
    for key in ("kinds", "channels", "maps", "patches"):
        if getattr(args, key):
            grid[key] = tuple(getattr(args, key))
    reps = args.reps or (9 if args.quick else 7)
    print("conditions:", conditions(device))
    print("command:", "python -m passbench.bench " + " ".join(sys.argv[1:] if argv is None else argv))
    rows: list[dict] = []
    if not args.no_layers:
        print(f"\nper layer (ms = median of {reps} interleaved rounds; s/d = sparse / best dense; "
              "execI = dense MACs / executed MACs; eff = speedup / (1/k); auto = dispatcher, dense path "
              "with blend_skipped; autoR = dispatcher, dense path recomputes all patches)")
        first = True
        for kind in grid["kinds"]:
            for c in grid["channels"]:
                for hw in grid["maps"]:
                    for p in grid["patches"]:
                        r = bench_shape(kind, c, hw, p, KEEPS, reps, device)
                        print_rows(r, header=first)
                        first = False
                        rows += r
        summarize(rows)
        if args.csv:
            with open(args.csv, "w", newline="") as f:
                wr = csv.DictWriter(f, fieldnames=list(rows[0]))
                wr.writeheader()
                wr.writerows(rows)
            print(f"wrote {len(rows)} rows to {args.csv}")
    if args.e2e:
        run_e2e(quick=args.quick, frames=args.frames, device=device, data_root=args.data_root,
                size=tuple(args.size), patch=args.patch, fold=args.fold_bn, nets=tuple(args.nets), keeps=args.keeps,
                hooks=not args.no_hooks, norm=not args.no_norm, alias=not args.no_alias)
    return 0


# --------------------------------------------------------------------------------------------
# End to end: torchvision MobileNetV2 / ResNet-18 on consecutive real frames
# --------------------------------------------------------------------------------------------

VIDEO = "MOT15/train/PETS09-S2L1/PETS09-S2L1.avi"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_frames(n: int, size: tuple[int, int] = (384, 288), data_root=None, start: int = 0) -> list[torch.Tensor]:
    """``n`` consecutive frames of PETS09-S2L1 (PyAV), resized to ``size`` = (W, H).

    Returns: list of (1, 3, H, W) float32 in [0, 1], RGB.
    """
    import av

    from passbench.paths import resolve_data_root

    path = resolve_data_root(data_root) / VIDEO
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the e2e benchmark needs the PETS09-S2L1 video (see data README)")
    frames = []
    with av.open(str(path)) as container:
        for i, fr in enumerate(container.decode(video=0)):
            if i < start:
                continue
            rgb = fr.to_ndarray(format="rgb24", width=size[0], height=size[1])  # (H, W, 3) uint8
            frames.append(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0))
            if len(frames) == n:
                break
    if len(frames) < n:
        raise ValueError(f"{path}: only {len(frames)} frames from {start}, asked for {n}")
    return frames


TORCHVISION_NETS = ("mobilenet_v2", "resnet18")


def build_net(name: str) -> nn.Module:
    """A network by name, random init (no weights offline), eval mode: a torchvision classifier
    (``mobilenet_v2``, ``resnet18``) or any ``passbench.models`` name (``fairmot_dla34_conv``,
    ``fairmot_mbv2``, ``timm:resnet18``, ...: FairMOT-style detectors returning a dict of maps)."""
    torch.manual_seed(0)
    if name in TORCHVISION_NETS:
        import torchvision

        return getattr(torchvision.models, name)(weights=None).eval()
    from passbench.models import build_model

    return build_model(name, pretrained=False).eval()


def fold_bn(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a conv into it (``passbench.skip.fold``), in place."""
    from passbench.skip.fold import fold_batchnorm
    fold_batchnorm(net.eval())
    return net


def _version(t: torch.Tensor) -> int | None:
    """The tensor's in-place version counter (None for an inference tensor, which keeps none)."""
    return None if t.is_inference() else t._version


def attach_engine_hooks(net: nn.Module, keep: float, patch: int | dict[str, int], seed: int = 0, recompute: bool = False,
                        names: list[str] | None = None) -> list[dict]:
    """Minimal skipping without ``passbench.skip.make_skippable``: every Conv2d keeps its previous
    output and, from the second frame on, computes a random ``keep`` fraction of its output patches
    with ``sparse_conv2d(inplace=True)`` when ``choose_path`` says so (else dense conv +
    ``blend_skipped``).

    Kernel-only reference for the wrapper's numbers: no gate, no state copies. ``inplace=True`` is
    exact only where no op modifies a conv output in place: true of torchvision's ResNet-18 / MobileNetV2
    as built (a BatchNorm follows every conv), false once BatchNorm is folded (an in-place ReLU then
    writes into the kept output, so later skipped patches reuse post-ReLU values). Each counter's
    ``overwritten`` counts the frames on which the kept output had been modified in place since it was
    returned (its version counter moved; not tracked under ``torch.inference_mode``): a hooked network
    with ``overwritten > 0`` times the kernel without the output copy that an exact result needs.
    ``recompute``: where the dispatcher says dense, run the plain conv
    and keep its output on every patch (exact dense output, no blend; executed MACs = dense).
    ``patch``: one size, or ``{glob: size}`` per conv name as ``make_skippable`` takes it; ``names``: hook
    only these convs (default: every Conv2d). Returns per-conv counters ``{dense_macs, executed_macs,
    patches, skipped}``.
    """
    from passbench.skip.make import patch_for

    counters = []
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and (names is None or n in names)]
    for i, (cname, conv) in enumerate(convs):
        st = {"prev": None, "gen": torch.Generator().manual_seed(seed + i), "dense_macs": 0, "executed_macs": 0,
              "patches": 0, "skipped": 0, "overwritten": 0, "version": None}
        counters.append(st)

        def fwd(x, conv=conv, st=st, patch=patch_for(cname, patch)):
            if st["prev"] is None:
                y = conv._conv_forward(x, conv.weight, conv.bias)
                st["prev"] = y
                st["version"] = _version(y)
                dm = dense_macs(conv.weight, y.shape[2:], y.shape[0])
                st["dense_macs"] += dm
                st["executed_macs"] += dm
                return y
            prev = st["prev"]
            if _version(prev) != st["version"]:
                st["overwritten"] += 1  # the caller modified the kept output in place after it was returned
            B, _, Ho, Wo = prev.shape
            grid = (B, -(-Ho // patch), -(-Wo // patch))
            compute = torch.rand(grid, generator=st["gen"]) < keep
            dm = dense_macs(conv.weight, (Ho, Wo), B)
            st["dense_macs"] += dm
            n_act = int(compute.sum())
            st["patches"] += compute.numel()
            k = n_act / compute.numel()
            if choose_path(conv, tuple(x.shape), k, patch) == "sparse":
                y, em = sparse_conv2d(x, conv, prev, compute, patch, inplace=True)
                st["skipped"] += compute.numel() - n_act
            elif recompute:
                y, em = conv._conv_forward(x, conv.weight, conv.bias), dm
            else:
                y, em = blend_skipped(conv._conv_forward(x, conv.weight, conv.bias), prev, compute, patch), dm
                st["skipped"] += compute.numel() - n_act
            st["prev"] = y
            st["version"] = _version(y)
            st["executed_macs"] += em
            return y

        conv.forward = fwd
    return counters


def norm_thresholds(net: nn.Module, frames: list[torch.Tensor], skip: float) -> list[float]:
    """Per-layer norm-gate thresholds at the ``skip`` quantile of the frame-0 -> frame-1 residual norms."""
    from passbench.skip import reset, residual_norms, set_mask_mode

    set_mask_mode(net, "off")
    reset(net)
    with torch.no_grad():
        net(frames[0])
        net(frames[1])
    th = [float(torch.quantile(n.flatten().float(), skip)) for n in residual_norms(net)]
    set_mask_mode(net, "normal")
    reset(net)
    return th


def _macs_now(variant: dict) -> tuple[int, int]:
    """(dense, executed incl. gate) MACs counted so far by a variant."""
    if variant["kind"] == "hooks":
        return (sum(c["dense_macs"] for c in variant["counters"]),
                sum(c["executed_macs"] for c in variant["counters"]))
    from passbench.skip import collect_stats

    st = collect_stats(variant["net"])
    return st["dense_macs"], st["executed_macs"] + st["gate_macs"]


def run_e2e(quick: bool = False, frames: int | None = None, device=torch.device("cpu"), data_root=None,
            size: tuple[int, int] = (384, 288), patch: int = 8, nets=TORCHVISION_NETS,
            fold: bool = False, keeps=None, hooks: bool = True, norm: bool = True, alias: bool = True) -> list[dict]:
    """FPS dense vs skipped on consecutive PETS09-S2L1 frames; prints one row per variant.

    Timed region: one ``net(frame)`` forward (``torch.no_grad``, batch 1, channels-last for the
    skipped variants), frames 2..n-1 (frame 0 runs dense in every skipped variant, frame 1 holds the
    dispatcher's one-off calibration); all variants run round-robin per frame. MACs are counted over
    the same frames. ``mac_red`` = dense MACs / (executed + gate MACs); ``ratio`` = speedup / mac_red
    (target >= 0.6); ``skip`` = patch skip rate (hooks: patches actually skipped, over all frames).
    ``hooks ... autoR``: kernel-only hooks whose dense path recomputes every patch. ``fold``: fold BatchNorm into the convs first (all variants, dense included).
    ``alias``: also ``fixed k=... auto alias``, ``auto`` with output aliasing (``passbench.skip.aliasing``):
    that lever's before / after in one process.
    """
    import copy

    from passbench.skip import collect_stats, make_skippable, reset, set_thresholds
    from passbench.skip.aliasing import set_output_aliasing

    n = frames or (8 if quick else 24)
    clip = [f.to(device) for f in load_frames(n, size, data_root)]
    clip_cl = [f.contiguous(memory_format=torch.channels_last) for f in clip]
    keeps = tuple(keeps) if keeps else ((0.25,) if quick else (0.5, 0.25, 0.1))
    print(f"\nend to end: {n} consecutive frames of {VIDEO} at {size[0]}x{size[1]}, patch {patch}, "
          f"timed frames 2..{n - 1}, torch.no_grad, batch 1, BatchNorm {'folded' if fold else 'kept'}")
    print(f"{'net':13} {'variant':28} {'ms':>8} {'fps':>6} {'speedup':>7} {'mac_red':>7} {'ratio':>5} {'skip':>5}")
    all_rows = []
    for name in nets:
        base = build_net(name).to(device)
        if fold:
            base = fold_bn(base)
        variants: dict[str, dict] = {
            "dense nchw": dict(kind="dense", net=base, cl=False),
            "dense channels-last": dict(kind="dense", net=copy.deepcopy(base).to(memory_format=torch.channels_last),
                                        cl=True),
        }
        for k in keeps:
            for ex in ("sparse", "auto", "auto alias")[: 3 if alias else 2]:
                net = make_skippable(copy.deepcopy(base).to(memory_format=torch.channels_last), "fixed",
                                     patch_size=patch, execution=ex.split()[0], keep=k)
                verdict = set_output_aliasing(net, clip_cl[0]) if ex == "auto alias" else None
                variants[f"fixed k={k} {ex}"] = dict(kind="skip", net=net, cl=True, alias=verdict)
            for tag, rec in ((("auto", False), ("autoR", True)) if hooks else ()):
                hooked = copy.deepcopy(base).to(memory_format=torch.channels_last)
                variants[f"hooks k={k} {tag}"] = dict(kind="hooks", net=hooked, cl=True,
                                                       counters=attach_engine_hooks(hooked, k, patch, recompute=rec))
        for q in ((0.5,) if quick else (0.5, 0.8)) if norm else ():
            net = make_skippable(copy.deepcopy(base).to(memory_format=torch.channels_last), "skipconv_norm",
                                 patch_size=patch, execution="auto")
            set_thresholds(net, norm_thresholds(net, clip_cl, q))
            variants[f"norm gate q={q} auto"] = dict(kind="skip", net=net, cl=True)
        for v in variants.values():
            if v["kind"] == "skip":
                reset(v["net"])
            v["times"] = []
        with torch.no_grad():
            for t in range(n):
                for v in variants.values():
                    x = clip_cl[t] if v["cl"] else clip[t]
                    if t == 2 and v["kind"] != "dense":
                        v["macs0"] = _macs_now(v)
                    _sync(device)
                    t0 = time.perf_counter()
                    v["net"](x)
                    _sync(device)
                    if t >= 2:
                        v["times"].append(time.perf_counter() - t0)
        t_dense = min(statistics.median(v["times"]) for v in variants.values() if v["kind"] == "dense")
        for vname, v in variants.items():
            ms = statistics.median(v["times"]) * 1e3
            row = dict(net=name, variant=vname, ms=ms, fps=1e3 / ms, speedup=t_dense * 1e3 / ms,
                       mac_reduction=1.0, ratio=float("nan"), skip=0.0)
            if v["kind"] != "dense":
                d1, e1 = _macs_now(v)
                d0, e0 = v["macs0"]
                row["mac_reduction"] = (d1 - d0) / max(e1 - e0, 1)
                row["ratio"] = row["speedup"] / row["mac_reduction"]
                if v["kind"] == "skip":
                    row["skip"] = collect_stats(v["net"])["patch_skip_rate"]
                else:  # hooks: fraction of patches actually skipped (autoR recomputes on dense layers)
                    row["skip"] = sum(c["skipped"] for c in v["counters"]) / max(
                        1, sum(c["patches"] for c in v["counters"]))
            if v["kind"] == "hooks":
                row["overwritten"] = sum(c["overwritten"] for c in v["counters"])
            all_rows.append(row)
            note = (f"  (kept outputs modified in place on {row['overwritten']} layer-frames: not exact, "
                    "no output copy)") if row.get("overwritten") else ""
            if v.get("alias") is not None:
                note = f"  (no output copy on {sum(r == 'ok' for r in v['alias'].values())} of {len(v['alias'])} layers)"
            print(f"{name:13} {vname:28} {ms:8.1f} {row['fps']:6.2f} {row['speedup']:7.2f} "
                  f"{row['mac_reduction']:7.2f} {row['ratio']:5.2f} {row['skip']:5.2f}{note}", flush=True)
    return all_rows


if __name__ == "__main__":
    raise SystemExit(main())
