"""Where a skipped frame's time goes through ``make_skippable``: convolution vs everything else, beside the
dense twin, per network, at one keep fraction of fixed random masks (no gate), in one process.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/profile_wrapper_overhead.py --nets resnet18 fairmot_dla34_conv \
        --keep 0.25 --frames 24

Per network: frames 0-3 warm up both models (frame 0 dense, frame 1 holds the dispatcher's calibration),
frames 4..n-1 are timed under ``torch.profiler`` (CPU), the dense twin's block then the skipped model's, then
again without the profiler, alternating per frame (the speedup to quote). Prints the wall time per frame, the convolutions' own time (``aten::mkldnn_convolution`` / ``aten::thnn_conv2d``
/ ``aten::_slow_conv2d_forward``, whichever ran, and the GEMMs the sparse kernel runs 1x1 convs as), the other ops' own time, the time outside any op (Python,
dispatch and the profiler's own per-op cost), the executed-MAC reduction over the timed
frames, and the skipped model's ten costliest other ops. The profiler adds per-op overhead to both
models alike; the ratios, not the absolute times, are the result. BatchNorm folded, channels-last, 1
thread unless ``--threads``; the load average is printed.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from passbench.bench import _macs_now, build_net, fold_bn, load_frames
from passbench.skip import make_skippable, reset

# the convolutions' own ops; the sparse kernel runs a stride-1 1x1 conv as one GEMM on gathered rows (addmm / mm),
# so those count as convolution too (a model's own linear layers with them: ResNet-18's fc, ~0.2 ms here)
CONV_OPS = ("aten::mkldnn_convolution", "aten::thnn_conv2d", "aten::_slow_conv2d_forward",
            "aten::_nnpack_spatial_convolution", "aten::addmm", "aten::mm")


def profile_net(name: str, keep: float, frames: int, size: tuple[int, int], patch: int) -> None:
    clip = [f.contiguous(memory_format=torch.channels_last) for f in load_frames(frames, size)]
    base = fold_bn(build_net(name))
    dense = copy.deepcopy(base).to(memory_format=torch.channels_last)
    net = make_skippable(copy.deepcopy(base).to(memory_format=torch.channels_last), "fixed", patch_size=patch,
                         execution="auto", keep=keep)
    reset(net)
    walls, profs = {}, {}
    with torch.no_grad():
        for t in range(4):
            net(clip[t])
            dense(clip[t])
        d0, e0 = _macs_now({"kind": "skip", "net": net})  # (dense, executed + gate) MACs so far
        for which, model in (("dense", dense), ("skipped", net)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                t0 = time.perf_counter()
                for t in range(4, frames):
                    model(clip[t])
                walls[which] = (time.perf_counter() - t0) / (frames - 4)
            profs[which] = prof.key_averages()
            if which == "skipped":  # copies made by clone(): the full-map output copies handed to callers
                clones = [e for e in prof.events() if e.name == "aten::copy_" and e.cpu_parent is not None
                          and e.cpu_parent.name == "aten::clone"]
        plain = {"dense": [], "skipped": []}  # the same frames again without the profiler, alternating
        for t in range(4, frames):
            for which, model in (("dense", dense), ("skipped", net)):
                t0 = time.perf_counter()
                model(clip[t])
                plain[which].append(time.perf_counter() - t0)
        d1, e1 = _macs_now({"kind": "skip", "net": net})  # the unprofiled pass repeats the same frames
    n = frames - 4
    red = (d1 - d0) / max(e1 - e0, 1)
    conv = {w: sum(e.self_cpu_time_total for e in ka if e.key in CONV_OPS) / n / 1e3 for w, ka in profs.items()}
    ops = {w: sum(e.self_cpu_time_total for e in ka) / n / 1e3 for w, ka in profs.items()}
    wd, ws = walls["dense"] * 1e3, walls["skipped"] * 1e3
    pd, ps = statistics.median(plain["dense"]) * 1e3, statistics.median(plain["skipped"]) * 1e3
    print(f"\n{name} at {size[0]}x{size[1]}, patch {patch}, fixed random masks keep {keep}, execution auto, "
          f"{n} timed frames (under the profiler)")
    print(f"  without the profiler (median of {n} frames, alternating): dense {pd:.1f} ms, skipped {ps:.1f} ms: "
          f"speedup {pd / ps:.2f}x for an executed-MAC reduction of {red:.2f}x (counted over both passes): ratio {pd / ps / red:.2f}")
    print(f"  profiled dense   {wd:7.1f} ms/frame: convs {conv['dense']:6.1f} ms, other ops {ops['dense'] - conv['dense']:5.1f} ms, "
          f"outside any op (Python, dispatch, profiler) {wd - ops['dense']:5.1f} ms")
    print(f"  profiled skipped {ws:7.1f} ms/frame: convs {conv['skipped']:6.1f} ms, other ops "
          f"{ops['skipped'] - conv['skipped']:5.1f} ms, outside any op {ws - ops['skipped']:5.1f} ms")
    print(f"  profiled: speedup {wd / ws:.2f}x; ratio {wd / ws / red:.2f}; conv-time "
          f"reduction {conv['dense'] / conv['skipped']:.2f}x (conv efficiency {conv['dense'] / conv['skipped'] / red:.2f}); "
          f"time the skipping adds outside the convs {ws - conv['skipped'] - (wd - conv['dense']):.1f} ms")
    print(f"  skipped model's clone() copies (the outputs handed to callers): {len(clones) / n:.0f} a frame, "
          f"{sum(e.self_cpu_time_total for e in clones) / n / 1e3:.2f} ms")
    others = sorted((e for e in profs["skipped"] if e.key not in CONV_OPS), key=lambda e: -e.self_cpu_time_total)
    print("  skipped model's costliest other ops (self time, ms/frame, calls/frame): " + ", ".join(
        f"{e.key} {e.self_cpu_time_total / n / 1e3:.2f} ({e.count / n:.0f})" for e in others[:10]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["resnet18"])
    ap.add_argument("--keep", type=float, default=0.25)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, nargs=2, default=(384, 224))
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.frames < 6:
        ap.error("--frames: at least 6 (4 warm-up frames, then the timed ones)")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    for name in args.nets:
        profile_net(name, args.keep, args.frames, tuple(args.size), args.patch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
