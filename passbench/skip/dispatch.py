"""The dense / sparse dispatcher: per layer shape and keep fraction, run block-sparse only where it pays.

``choose_path`` decides per layer shape and keep fraction whether the sparse path
(``skip.sparse.sparse_conv2d``) is predicted faster than the dense convolution followed by the cheap
mask-honouring blend (``skip.nhwc.blend_skipped``), from a cached micro-benchmark of both
(``calibrate``). ``PASSBENCH_SPARSE_DISPATCH=dense|sparse`` forces a path. Measured: ``docs/engine-benchmark.md``.
"""

from __future__ import annotations

import math
import os
import time
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip.nhwc import blend_skipped, clear_tables
from passbench.skip.sparse import conv_out_size, sparse_conv2d_functional

__all__ = ["DENSE_ABOVE_KEEP", "SPARSE_MARGIN", "calibrate", "choose_path", "clear_dispatch_cache", "random_keep_mask"]

#: Above this keep fraction the sparse path is never chosen (halo re-reads + gather/scatter cost
#: more than the few skipped MACs); measured, see docs/engine-benchmark.md.
DENSE_ABOVE_KEEP = 0.9
#: Sparse must be predicted at least this much faster than dense to be chosen (guards the
#: "never more than 10 % slower than dense" target against calibration noise).
SPARSE_MARGIN = 0.9
_CAL_KEEPS = (0.5, 0.25, 0.125)
_CAL_REPS = 9
_DISPATCH: dict[tuple, tuple[float, float, float]] = {}
# Per-module memo in front of _DISPATCH: choose_path runs per layer and frame, so its lookup must
# cost a few microseconds, not a key of a dozen fields.
_MEMO: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def clear_dispatch_cache() -> None:
    """Forget all calibrations of ``choose_path`` (and the gather tables)."""
    _DISPATCH.clear()
    clear_tables()
    _MEMO.clear()


def _weight_channels_last(conv: nn.Conv2d) -> bool:
    w = conv.weight
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def random_keep_mask(B: int, nH: int, nW: int, keep: float, device, gen: torch.Generator) -> torch.Tensor:
    """Random (B, nH, nW) mask with exactly round(keep * nH * nW) active patches per item (>= 1)."""
    n = nH * nW
    m = max(1, min(n, round(keep * n)))
    order = torch.rand(B, n, generator=gen).argsort(dim=1)[:, :m]
    mask = torch.zeros(B, n, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.view(B, nH, nW).to(device)


@torch.no_grad()
def calibrate(conv: nn.Conv2d, x_shape, patch: int, device=None, channels_last: bool | None = None):
    """Time dense and sparse for one layer shape; returns ``(t_dense, a, b)`` in seconds.

    The sparse time is modelled as ``a + b * keep`` (fixed overhead + cost per kept patch), a
    least-squares line through the minimum times at keep 0.5, 0.25 and 0.125, measured interleaved
    with the dense conv (``_CAL_REPS`` rounds). Results are cached per (geometry, shape, patch, device, format, threads).
    """
    device = torch.device(device) if device is not None else conv.weight.device
    if channels_last is None:
        channels_last = _weight_channels_last(conv)
    B, cin, H, W = (int(v) for v in x_shape)
    key = (
        tuple(conv.weight.shape), conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None,
        (B, cin, H, W), int(patch), str(device), bool(channels_last), conv.weight.dtype, torch.get_num_threads(),
    )
    hit = _DISPATCH.get(key)
    if hit is not None:
        return hit
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    w = conv.weight.detach().to(device)
    bias = conv.bias.detach().to(device) if conv.bias is not None else None
    x = torch.randn(B, cin, H, W, device=device, dtype=w.dtype).contiguous(memory_format=fmt)
    conv_ = lambda: F.conv2d(x, w, bias, conv.stride, conv.padding, conv.dilation, conv.groups)  # noqa: E731
    prev = conv_().contiguous(memory_format=fmt)
    Ho, Wo = prev.shape[2:]
    nH, nW = -(-Ho // patch), -(-Wo // patch)
    gen = torch.Generator().manual_seed(0)
    masks = [random_keep_mask(B, nH, nW, k, device, gen) for k in _CAL_KEEPS]
    # The dense alternative of a dispatcher must still honour the mask: dense conv + blend (timed
    # with half of the patches skipped).
    dense = lambda: blend_skipped(conv_(), prev, masks[0], patch)  # noqa: E731
    fns = [dense] + [
        (lambda m=m: sparse_conv2d_functional(
            x, w, bias, conv.stride, conv.padding, conv.dilation, conv.groups, prev, m, patch, inplace=True))
        for m in masks
    ]
    times = _interleaved_mins(fns, _CAL_REPS, device)
    keeps = [float(m.float().mean()) for m in masks]
    # Least-squares line through the (keep, time) points, clamped to a >= 0, b >= 0.
    km, tm = sum(keeps) / len(keeps), sum(times[1:]) / len(keeps)
    var = sum((k - km) ** 2 for k in keeps)
    b = max(0.0, sum((k - km) * (t - tm) for k, t in zip(keeps, times[1:])) / max(var, 1e-12))
    a = max(0.0, tm - b * km)
    hit = (times[0], a, b)
    _DISPATCH[key] = hit
    return hit


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_mins(fns, reps: int, device) -> list[float]:
    """Minimum seconds per callable, run round-robin (after one warm-up each).

    The minimum, not the median: on a shared machine the noise only adds time, and a dispatcher
    needs the intrinsic cost ratio; the benchmark itself reports medians.
    """
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
    return [min(v) for v in ts]


def choose_path(conv: nn.Conv2d, x_shape, keep_fraction: float, patch: int, device=None) -> str:
    """Return ``"sparse"`` if block-sparse execution is predicted faster than dense, else ``"dense"``.

    Rules, in order: ``keep_fraction >= DENSE_ABOVE_KEEP`` -> dense; fewer than 4 patches per map
    -> dense; otherwise a per-shape micro-benchmark (``calibrate``, run once per layer shape at
    first use and cached) gives ``t_dense`` and ``t_sparse(k) = a + b * k``, and sparse is chosen
    iff ``t_sparse(keep_fraction) < SPARSE_MARGIN * t_dense``. The memory format timed is that of
    ``conv.weight`` (convert the model with ``.to(memory_format=torch.channels_last)`` to time
    channels-last). Set ``PASSBENCH_SPARSE_DISPATCH=dense|sparse`` to force a path.

    Args:
        conv: the layer.
        x_shape: (B, Cin, H, W) of its input.
        keep_fraction: fraction of output patches computed, in [0, 1].
        patch: output patch size in output pixels.
        device: where it runs (default: the weight's device).
    """
    forced = os.environ.get("PASSBENCH_SPARSE_DISPATCH", "")
    if forced in ("dense", "sparse"):
        return forced
    if forced:
        raise ValueError(f"PASSBENCH_SPARSE_DISPATCH={forced!r}: expected 'dense' or 'sparse'")
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"choose_path: keep_fraction must be in [0, 1], got {keep_fraction}")
    if keep_fraction >= DENSE_ABOVE_KEEP:
        return "dense"
    if keep_fraction == 0.0:
        return "sparse"  # nothing to compute: sparse returns prev_out without a single MAC
    memo = _MEMO.get(conv)
    mkey = (tuple(x_shape), patch, device, torch.get_num_threads())
    cal = memo.get(mkey) if memo is not None else None
    if cal is None:
        cal = _calibration_or_none(conv, x_shape, patch, device)
        _MEMO.setdefault(conv, {})[mkey] = cal
    if cal is None:
        return "dense"
    t_dense, a, b = cal
    return "sparse" if a + b * keep_fraction < SPARSE_MARGIN * t_dense else "dense"


def _calibration_or_none(conv: nn.Conv2d, x_shape, patch: int, device):
    """``calibrate(...)``, or None when the map has fewer than 4 patches (always dense)."""
    kh, kw = conv.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    Ho = conv_out_size(int(x_shape[2]), kh, sh, ph, dh)
    Wo = conv_out_size(int(x_shape[3]), kw, sw, pw, dw)
    if math.ceil(Ho / patch) * math.ceil(Wo / patch) < 4:
        return None
    return calibrate(conv, x_shape, patch, device)
