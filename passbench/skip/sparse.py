"""Block-sparse execution of one convolution: compute only the active output patches.

The PASS paper (AAAI-23, "Preliminary", Eq. 1-3) counts the MACs saved by skipping output patches
and points to block-wise sparse convolution for the implementation (SBNet, Ren et al. 2018;
BlockCopy, Verelst & Tuytelaars 2021). The public PASS / Skip-Conv code computes the dense
convolution and masks afterwards, which saves no time. This module does the real thing in pure
torch, after SBNet's *gather - convolve - scatter* scheme:

1. gather, for each active output patch, its input window of
   ``(P - 1) * stride + (k - 1) * dilation + 1`` pixels per side (the patch plus its halo) into
   one batch ``(n_active, Cin, win, win)``;
2. run one ``F.conv2d`` with padding 0 on that batch -> ``(n_active, Cout, P, P)`` (a 1x1
   stride-1 conv in channels-last: one ``addmm`` on the gathered pixel rows);
3. scatter the patches into the output (a clone of ``prev_out``, or ``prev_out`` itself when the
   caller hands it over with ``inplace=True``).

Two implementations of gather / scatter:

* channels-last (``x`` and ``prev_out`` both NHWC): cached row-index tables turn gather into one
  pass over pixel rows of the (B*H*W, Cin) input matrix (``skip.native.gather_rows``, zeros for
  padding pixels; fallback: ``index_select`` with padding rows clamped then zeroed; no ``F.pad`` of
  the whole map), and scatter into one pass (``scatter_rows``; fallback ``index_copy_``);
* generic (any strides): ``F.pad`` once, an ``as_strided`` window view and advanced indexing,
  ``index_put_`` into an ``as_strided`` patch view of the output.

Deviations from SBNet: SBNet gathers NHWC tiles with custom CUDA kernels; here gather and scatter
are one pass each through a small C++ extension on CPU (``skip.native``: built on first use, cached,
bit-identical to the PyTorch fallback it replaces) and plain torch indexing ops elsewhere (CUDA, or
no compiler). Edge patches that stick out of the map are computed at full size and cropped on
scatter (their wasted outputs are counted in ``executed_macs``). Measured speed:
``docs/engine-benchmark.md``.

``choose_path`` decides per layer shape and keep fraction whether the sparse path pays (cached
micro-benchmark); ``blend_skipped`` is the cheap mask-honouring blend for its dense path.
"""

from __future__ import annotations

import math
import os
import time
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip import native as _native

__all__ = [
    "sparse_conv2d",
    "sparse_conv2d_functional",
    "blend_skipped",
    "blend_and_update",
    "choose_path",
    "conv_out_size",
    "dense_macs",
    "clear_dispatch_cache",
]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution along one axis (torch.nn.Conv2d's formula)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def dense_macs(weight: torch.Tensor, out_hw: tuple[int, int], batch: int = 1) -> int:
    """MACs of the dense convolution: ``B * Ho * Wo * Cout * (Cin / groups) * kh * kw``.

    This is Eq. 1 of the PASS paper generalised to channels, groups, padding and dilation
    (Eq. 1 assumes one channel and no padding: ``K^2 * Ho * Wo``).
    """
    cout, cin_g, kh, kw = weight.shape
    return int(batch * out_hw[0] * out_hw[1] * cout * cin_g * kh * kw)


def sparse_conv2d_functional(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride,
    padding,
    dilation,
    groups: int,
    prev_out: torch.Tensor,
    compute_mask: torch.Tensor,
    patch: int,
    *,
    residual: bool = False,
    inplace: bool = False,
) -> tuple[torch.Tensor, int]:
    """Block-sparse convolution from raw parameters (the lower-level entry of ``sparse_conv2d``).

    Args:
        x: (B, Cin, H, W) current input (any memory format).
        weight: (Cout, Cin / groups, kh, kw) filter.
        bias: (Cout,) or None. Ignored (treated as None) when ``residual`` is True.
        stride, padding, dilation: int or pair, as in ``F.conv2d``; padding is zero padding (an int
            pair; the string forms 'same'/'valid' are not accepted).
        groups: conv groups.
        prev_out: (B, Cout, Ho, Wo) the previous output, returned on skipped patches.
        compute_mask: bool (B, ceil(Ho / patch), ceil(Wo / patch)); True = compute this patch.
        patch: output patch size in output pixels; edge patches may be partial.
        residual: Skip-Conv residual form (Habibian et al., CVPR-21, Eq. 2-3): ``x`` is the input
            difference ``X_t - X_{t-1}`` and the active patches get ``prev_out + conv_nobias(x)``
            instead of ``conv(x)``.
        inplace: the caller hands over ownership of ``prev_out``: it is written in place and
            returned (saves the full-map copy ``prev_out.clone()``). Must not be set when
            ``prev_out`` is still needed, or when it requires grad.

    Returns:
        ``(out, executed_macs)``: out (B, Cout, Ho, Wo) equals
        ``where(mask_upsampled, conv(x), prev_out)`` (or the residual form); executed_macs is the
        number of MACs actually computed: ``n_active * P^2 * Cout * Cin/groups * kh * kw``, which
        includes the wasted part of cropped edge patches; with every patch active the dense
        convolution is run and its exact MACs are returned.
    """
    sh, sw = _pair(stride)
    ph, pw = _pair(padding) if not isinstance(padding, str) else (None, None)
    if ph is None:
        raise ValueError(f"sparse_conv2d: string padding {padding!r} is not supported; pass ints")
    dh, dw = _pair(dilation)
    if x.dim() != 4:
        raise ValueError(f"sparse_conv2d: x must be (B, Cin, H, W), got shape {tuple(x.shape)}")
    B, cin, H, W = x.shape
    cout, cin_g, kh, kw = weight.shape
    if cin_g * groups != cin:
        raise ValueError(f"sparse_conv2d: weight {tuple(weight.shape)} with groups={groups} does not fit Cin={cin}")
    Ho, Wo = conv_out_size(H, kh, sh, ph, dh), conv_out_size(W, kw, sw, pw, dw)
    if tuple(prev_out.shape) != (B, cout, Ho, Wo):
        raise ValueError(f"sparse_conv2d: prev_out has shape {tuple(prev_out.shape)}, expected {(B, cout, Ho, Wo)}")
    P = int(patch)
    if P < 1:
        raise ValueError(f"sparse_conv2d: patch must be >= 1, got {patch}")
    nH, nW = -(-Ho // P), -(-Wo // P)
    if tuple(compute_mask.shape) != (B, nH, nW):
        raise ValueError(
            f"sparse_conv2d: compute_mask has shape {tuple(compute_mask.shape)}, expected {(B, nH, nW)} "
            f"(B, ceil(Ho/{P}), ceil(Wo/{P})) for output {Ho}x{Wo}"
        )
    if compute_mask.dtype != torch.bool:
        compute_mask = compute_mask != 0
    if residual:
        bias = None

    flat = compute_mask.reshape(-1).nonzero().squeeze(1)  # (n_active,) indices into (B, nH, nW)
    n_act = int(flat.numel())
    if n_act == 0:
        return (prev_out if inplace else prev_out.clone()), 0
    if n_act == B * nH * nW:
        # No skip: the dense conv is exact and cheapest (no halo re-reads, no edge waste).
        y = F.conv2d(x, weight, bias, (sh, sw), (ph, pw), (dh, dw), groups)
        if residual:
            y = prev_out.add_(y) if inplace else prev_out + y
        elif inplace:
            y = prev_out.copy_(y)
        return y, dense_macs(weight, (Ho, Wo), B)
    out = prev_out if inplace else prev_out.clone()
    macs = int(n_act * P * P * cout * cin_g * kh * kw)
    geom = (B, H, W, P, kh, kw, sh, sw, ph, pw, dh, dw)
    if _nhwc_ok(x) and _nhwc_ok(out):
        _sparse_nhwc(x, weight, bias, groups, out, flat, geom, (Ho, Wo, nH, nW), residual)
        return out, macs

    # 1. pad once: conv padding on top/left, and on bottom/right at least the conv padding, more
    #    when the last (partial) patch's full window reaches past the padded map.
    win_h, win_w = (P - 1) * sh + (kh - 1) * dh + 1, (P - 1) * sw + (kw - 1) * dw + 1
    need_h, need_w = (nH - 1) * P * sh + win_h, (nW - 1) * P * sw + win_w
    pb, pr = max(ph, need_h - H - ph), max(pw, need_w - W - pw)
    xp = F.pad(x, (pw, pr, ph, pb)) if (ph or pw or pb or pr) else x  # (B, Cin, Hp, Wp)

    # 2. gather the active windows from a strided (overlapping) view of the padded input. The
    #    view's dimension order follows the memory format so that the gather copies contiguous runs
    #    (rows of W in NCHW, pixels of C channels in channels-last).
    cl = _is_channels_last(xp)
    bi = torch.div(flat, nH * nW, rounding_mode="floor")
    rem = flat - bi * (nH * nW)
    ii = torch.div(rem, nW, rounding_mode="floor")
    jj = rem - ii * nW
    s_b, s_c, s_h, s_w = xp.stride()
    grid = (B, nH, nW)
    grid_st = (s_b, P * sh * s_h, P * sw * s_w)
    if cl:
        windows = xp.as_strided(grid + (win_h, win_w, cin), grid_st + (s_h, s_w, s_c), xp.storage_offset())
        xg = windows[bi, ii, jj]  # (n_active, win_h, win_w, Cin), a copy
        if kh == kw == 1 and groups == 1 and sh == sw == 1:
            # 1x1 conv on the gathered pixels is one matmul: (N*P*P, Cin) @ (Cin, Cout).
            w2 = weight.reshape(cout, cin).t()
            flat_x = xg.reshape(-1, cin)
            y = torch.addmm(bias, flat_x, w2) if bias is not None else flat_x @ w2
            y = y.view(n_act, P, P, cout).permute(0, 3, 1, 2)  # (n_active, Cout, P, P), channels-last
        else:
            xg = xg.permute(0, 3, 1, 2)  # (n_active, Cin, win_h, win_w) as a channels-last tensor
            y = None
    else:
        windows = xp.as_strided(grid + (cin, win_h, win_w), grid_st + (s_c, s_h, s_w), xp.storage_offset())
        xg = windows[bi, ii, jj]  # (n_active, Cin, win_h, win_w), a copy
        y = None

    # 3. one batched convolution with padding 0 -> (n_active, Cout, P, P)
    if y is None:
        y = F.conv2d(xg, weight, bias, (sh, sw), 0, (dh, dw), groups)

    # 4. scatter. Full patches go through one index_put on a patch view of `out`; patches on the
    #    ragged bottom row / right column (when P does not divide Ho / Wo) are cropped.
    _scatter(out, y, bi, ii, jj, P, nH, nW, Ho, Wo, residual)
    return out, macs


def _nhwc_ok(t: torch.Tensor) -> bool:
    """True when ``t`` is a dense channels-last tensor, so ``t.permute(0, 2, 3, 1)`` is a (B*H*W, C) matrix."""
    return t.is_contiguous(memory_format=torch.channels_last) and t.shape[1] > 1


_TABLES: dict[tuple, tuple] = {}


def _nhwc_tables(geom: tuple, out_grid: tuple, device: torch.device) -> tuple:
    """Row-index tables of the channels-last path, cached per geometry.

    Returns ``(in_rows, in_bad, out_rows, out_ok)``: in_rows (B*nH*nW, win_h*win_w) int64 row of
    the (B*H*W, Cin) input matrix feeding each window pixel (clamped into the map); in_bad the same
    shape, True where the pixel is zero padding (None if no window touches padding); out_rows
    (B*nH*nW, P*P) row of the (B*Ho*Wo, Cout) output matrix per patch pixel (clamped); out_ok, True
    where that pixel is inside the map (None when P divides Ho and Wo).
    """
    key = (geom, out_grid, str(device))
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    B, H, W, P, kh, kw, sh, sw, ph, pw, dh, dw = geom
    Ho, Wo, nH, nW = out_grid
    win_h, win_w = (P - 1) * sh + (kh - 1) * dh + 1, (P - 1) * sw + (kw - 1) * dw + 1
    kw_ = dict(device=device, dtype=torch.int64)
    h = torch.arange(nH, **kw_)[:, None] * (P * sh) - ph + torch.arange(win_h, **kw_)  # (nH, win_h)
    w = torch.arange(nW, **kw_)[:, None] * (P * sw) - pw + torch.arange(win_w, **kw_)  # (nW, win_w)
    b = torch.arange(B, **kw_).view(B, 1, 1, 1, 1) * (H * W)
    in_rows = b + (h.clamp(0, H - 1) * W).view(1, nH, 1, win_h, 1) + w.clamp(0, W - 1).view(1, 1, nW, 1, win_w)
    bad = ((h < 0) | (h >= H)).view(1, nH, 1, win_h, 1) | ((w < 0) | (w >= W)).view(1, 1, nW, 1, win_w)
    bad = bad.expand(B, nH, nW, win_h, win_w).reshape(B * nH * nW, win_h * win_w)
    out_rows, out_ok = _out_tables(B, Ho, Wo, P, device)
    hit = (in_rows.reshape(B * nH * nW, win_h * win_w), bad if bool(bad.any()) else None, out_rows, out_ok)
    if len(_TABLES) > 512:  # bounded: a long-running process may see many shapes
        _TABLES.clear()
    _TABLES[key] = hit
    return hit


def _out_tables(B: int, Ho: int, Wo: int, P: int, device) -> tuple:
    """``(out_rows, out_ok)``: (B*nH*nW, P*P) row of the (B*Ho*Wo, C) channels-last matrix per
    patch pixel (clamped into the map), and True where that pixel is inside the map (None when P
    divides Ho and Wo). Cached."""
    key = ("out", B, Ho, Wo, P, str(device))
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    nH, nW = -(-Ho // P), -(-Wo // P)
    kw_ = dict(device=device, dtype=torch.int64)
    oh = torch.arange(nH, **kw_)[:, None] * P + torch.arange(P, **kw_)  # (nH, P)
    ow = torch.arange(nW, **kw_)[:, None] * P + torch.arange(P, **kw_)  # (nW, P)
    bo = torch.arange(B, **kw_).view(B, 1, 1, 1, 1) * (Ho * Wo)
    rows = bo + (oh.clamp(max=Ho - 1) * Wo).view(1, nH, 1, P, 1) + ow.clamp(max=Wo - 1).view(1, 1, nW, 1, P)
    ok = ((oh < Ho).view(1, nH, 1, P, 1) & (ow < Wo).view(1, 1, nW, 1, P)).expand(B, nH, nW, P, P)
    hit = (rows.reshape(B * nH * nW, P * P), None if bool(ok.all()) else ok.reshape(B * nH * nW, P * P))
    _TABLES[key] = hit
    return hit


def blend_skipped(y: torch.Tensor, prev_out: torch.Tensor, compute_mask: torch.Tensor, patch: int) -> torch.Tensor:
    """``where(mask_upsampled, y, prev_out)`` for the dense path of a dispatcher, cheaply.

    With both tensors channels-last the skipped patches of ``prev_out`` are copied into ``y`` in
    place (one ``index_select`` + ``index_copy_`` over the skipped pixels only, instead of
    upsampling the mask and a three-tensor ``torch.where`` over the whole map); otherwise it falls
    back to ``torch.where``. ``y`` must be owned by the caller (it may be modified and returned).

    Args:
        y: (B, C, Ho, Wo) the dense convolution output.
        prev_out: (B, C, Ho, Wo) previous output.
        compute_mask: bool (B, ceil(Ho / patch), ceil(Wo / patch)); True = computed patch (keep y).
        patch: output patch size.
    """
    B, C, Ho, Wo = y.shape
    if tuple(prev_out.shape) != tuple(y.shape):
        raise ValueError(f"blend_skipped: prev_out {tuple(prev_out.shape)} != y {tuple(y.shape)}")
    if _nhwc_ok(y) and _nhwc_ok(prev_out):
        skip = (~compute_mask.bool()).reshape(-1).nonzero().squeeze(1)
        if skip.numel() == 0:
            return y
        if _use_native(y) and y.dtype == prev_out.dtype:
            y2d, p2d = y.permute(0, 2, 3, 1).view(-1, C), prev_out.permute(0, 2, 3, 1).view(-1, C)
            _native.copy_rows(y2d, p2d, _native_out_table(B, Ho, Wo, patch, y.device), skip)
            return y
        rows_t, ok_t = _out_tables(B, Ho, Wo, patch, y.device)
        rows = rows_t.index_select(0, skip).reshape(-1)
        if ok_t is not None:
            rows = rows[ok_t.index_select(0, skip).reshape(-1)]
        y2d, p2d = y.permute(0, 2, 3, 1).view(-1, C), prev_out.permute(0, 2, 3, 1).view(-1, C)
        y2d.index_copy_(0, rows, p2d.index_select(0, rows))
        return y
    m = compute_mask.bool().repeat_interleave(patch, 1).repeat_interleave(patch, 2)[:, None, :Ho, :Wo]
    return torch.where(m, y, prev_out)


def blend_update_ok(y: torch.Tensor, prev_out: torch.Tensor) -> bool:
    """Whether ``blend_and_update`` takes its row-copy path (both channels-last, same shape and dtype)."""
    return (_nhwc_ok(y) and _nhwc_ok(prev_out) and y.shape == prev_out.shape and y.dtype == prev_out.dtype
            and y.device == prev_out.device)


def _patch_rows(sel: torch.Tensor, B: int, Ho: int, Wo: int, patch: int, device) -> torch.Tensor:
    """Rows of the (B*Ho*Wo, C) channels-last matrix covered by the patches ``sel`` (flat indices)."""
    rows_t, ok_t = _out_tables(B, Ho, Wo, patch, device)
    rows = rows_t.index_select(0, sel).reshape(-1)
    if ok_t is not None:
        rows = rows[ok_t.index_select(0, sel).reshape(-1)]
    return rows


def blend_and_update(y: torch.Tensor, prev_out: torch.Tensor, compute_mask: torch.Tensor, patch: int) -> torch.Tensor:
    """The dense path of a dispatcher that owns ``prev_out`` (its state): ``y`` takes ``prev_out`` on the
    skipped patches and ``prev_out`` takes ``y`` on the computed ones, so that both hold
    ``where(mask_upsampled, y, prev_out)``; one map's worth of row copies in all, instead of
    ``blend_skipped`` plus a full copy of the result into the state. Both channels-last
    (``blend_update_ok``); ``y`` must be the caller's own tensor. Returns ``y``.

    Args:
        y: (B, C, Ho, Wo) the dense convolution output (modified).
        prev_out: (B, C, Ho, Wo) previous output (modified: the new state).
        compute_mask: bool (B, ceil(Ho / patch), ceil(Wo / patch)); True = computed patch.
        patch: output patch size.
    """
    if not blend_update_ok(y, prev_out):
        raise ValueError("blend_and_update: y and prev_out must be channels-last tensors of one shape and dtype")
    B, C, Ho, Wo = y.shape
    flat = compute_mask.bool().reshape(-1)
    y2d, p2d = y.permute(0, 2, 3, 1).view(-1, C), prev_out.permute(0, 2, 3, 1).view(-1, C)
    nat = _use_native(y)
    table = _native_out_table(B, Ho, Wo, patch, y.device) if nat else None
    skip = (~flat).nonzero().squeeze(1)
    if skip.numel():
        if nat:  # one pass over the skipped rows (skip.native), else index_select + index_copy_
            _native.copy_rows(y2d, p2d, table, skip)
        else:
            rows = _patch_rows(skip, B, Ho, Wo, patch, y.device)
            y2d.index_copy_(0, rows, p2d.index_select(0, rows))
    comp = flat.nonzero().squeeze(1)
    if comp.numel() == flat.numel():
        prev_out.copy_(y)
    elif comp.numel():
        if nat:
            _native.copy_rows(p2d, y2d, table, comp)
        else:
            rows = _patch_rows(comp, B, Ho, Wo, patch, y.device)
            p2d.index_copy_(0, rows, y2d.index_select(0, rows))
    return y


def _sparse_nhwc(x, weight, bias, groups, out, flat, geom, out_grid, residual) -> None:
    """Channels-last gather - conv - scatter on (pixels, channels) matrices, without padding ``x``.

    Gather is one ``index_select`` of whole pixel rows (C contiguous floats each) from the
    (B*H*W, Cin) view of ``x``; window pixels in the zero padding are clamped to a real pixel and
    then zeroed (``index_fill_``), which replaces the full-map ``F.pad`` of the generic path.
    Scatter is one ``index_copy_`` (``index_add_`` in residual mode) into the (B*Ho*Wo, Cout) view
    of ``out``; pixels of cropped edge patches are dropped first.
    """
    B, H, W, P, kh, kw, sh, sw, ph, pw, dh, dw = geom
    cout, cin = weight.shape[0], x.shape[1]
    n = flat.numel()
    win_h, win_w = (P - 1) * sh + (kh - 1) * dh + 1, (P - 1) * sw + (kw - 1) * dw + 1
    x2d = x.permute(0, 2, 3, 1).reshape(B * H * W, cin)  # a view: x is channels-last
    nat = _use_native(x)
    if nat:  # one pass: gather the window rows, zeros for padding pixels (skip.native)
        in_neg, out_neg = _native_tables(geom, out_grid, x.device)
        xg = _native.gather_rows(x2d, in_neg, flat)  # (n*win_h*win_w, Cin)
    else:
        in_rows, in_bad, out_rows, out_ok = _nhwc_tables(geom, out_grid, x.device)
        xg = x2d.index_select(0, in_rows.index_select(0, flat).reshape(-1))  # (n*win_h*win_w, Cin)
        if in_bad is not None:
            bad = in_bad.index_select(0, flat).reshape(-1).nonzero().squeeze(1)
            if bad.numel():
                xg.index_fill_(0, bad, 0.0)
    if kh == kw == 1 and groups == 1 and sh == sw == 1:
        # 1x1 conv on gathered pixels is one matmul: (n*P*P, Cin) @ (Cin, Cout).
        w2 = weight.reshape(cout, cin).t()
        y2d = torch.addmm(bias, xg, w2) if bias is not None else xg @ w2  # (n*P*P, Cout)
    else:
        xw = xg.view(n, win_h, win_w, cin).permute(0, 3, 1, 2)  # (n, Cin, win_h, win_w) channels-last
        y = F.conv2d(xw, weight, bias, (sh, sw), 0, (dh, dw), groups)  # (n, Cout, P, P)
        y2d = y.permute(0, 2, 3, 1).reshape(n * P * P, cout)
    out2d = out.permute(0, 2, 3, 1).view(-1, cout)  # a view: out is channels-last
    if nat:  # one pass: rows of cropped edge pixels dropped, index_add_'s sum in residual mode
        _native.scatter_rows(out2d, out_neg, flat, y2d.to(out.dtype).contiguous(), residual)
        return
    rows = out_rows.index_select(0, flat).reshape(-1)
    if out_ok is not None:
        keep = out_ok.index_select(0, flat).reshape(-1).nonzero().squeeze(1)
        rows, y2d = rows.index_select(0, keep), y2d.index_select(0, keep)
    if residual:
        out2d.index_add_(0, rows, y2d)
    else:
        out2d.index_copy_(0, rows, y2d.to(out.dtype))


def _use_native(x: torch.Tensor) -> bool:
    """The native gather/scatter (``skip.native``) runs on CPU tensors when it could be built and
    ``PASSBENCH_NATIVE`` is not 0; elsewhere (CUDA, no compiler) the PyTorch ops run: same bits."""
    return x.device.type == "cpu" and _native.available()


def _native_out_table(B: int, Ho: int, Wo: int, patch: int, device) -> torch.Tensor:
    """``_out_tables`` rows with -1 on pixels outside the map (cached): the native ops' output table."""
    key = ("native-out", B, Ho, Wo, patch, str(device))
    hit = _TABLES.get(key)
    if hit is None:
        rows, ok = _out_tables(B, Ho, Wo, patch, device)
        hit = _TABLES[key] = (rows.masked_fill(~ok, -1) if ok is not None else rows).contiguous()
    return hit


def _native_tables(geom: tuple, out_grid: tuple, device: torch.device) -> tuple:
    """``(in_rows, out_rows)`` of ``_nhwc_tables`` with -1 marking padding / cropped pixels (cached)."""
    key = ("native", geom, out_grid, str(device))
    hit = _TABLES.get(key)
    if hit is None:
        in_rows, in_bad, out_rows, out_ok = _nhwc_tables(geom, out_grid, device)
        in_neg = in_rows.masked_fill(in_bad, -1) if in_bad is not None else in_rows
        out_neg = out_rows.masked_fill(~out_ok, -1) if out_ok is not None else out_rows
        hit = _TABLES[key] = (in_neg.contiguous(), out_neg.contiguous())
    return hit


def _is_channels_last(t: torch.Tensor) -> bool:
    """True when ``t`` is laid out NHWC (channels-last) rather than NCHW."""
    return t.stride(1) == 1 and t.shape[1] > 1 and not t.is_contiguous()


def _patch_view(out: torch.Tensor, h0: int, w0: int, nh: int, nw: int, ph: int, pw: int, P: int) -> torch.Tensor:
    """(B, nh, nw, Cout, ph, pw) view of ``out`` over the patch grid starting at pixel (h0, w0).

    In channels-last the view is (B, nh, nw, ph, pw, Cout) instead, so that scatter writes
    contiguous runs of channels; ``_put`` permutes the values to match.
    """
    s_b, s_c, s_h, s_w = out.stride()
    if _is_channels_last(out):
        shape, st = (ph, pw, out.shape[1]), (s_h, s_w, s_c)
    else:
        shape, st = (out.shape[1], ph, pw), (s_c, s_h, s_w)
    return out.as_strided(
        (out.shape[0], nh, nw) + shape, (s_b, P * s_h, P * s_w) + st, out.storage_offset() + h0 * s_h + w0 * s_w
    )


def _put(view: torch.Tensor, idx, val: torch.Tensor, cl: bool, residual: bool) -> None:
    """Write ``val`` (n, Cout, ph, pw) into the indexed patches of ``view`` (add if residual)."""
    if cl:
        val = val.permute(0, 2, 3, 1)  # (n, ph, pw, Cout) to match the channels-last patch view
    view.index_put_(idx, val, accumulate=residual)  # patches are distinct: accumulate is out += y


def _scatter(out, y, bi, ii, jj, P, nH, nW, Ho, Wo, residual) -> None:
    cl = _is_channels_last(out)
    rh, rw = Ho - (nH - 1) * P, Wo - (nW - 1) * P  # size of the last row / column of patches
    if rh == P and rw == P:
        _put(_patch_view(out, 0, 0, nH, nW, P, P, P), (bi, ii, jj), y, cl, residual)
        return
    last_i, last_j = ii == nH - 1, jj == nW - 1
    fi, fj = (nH if rh == P else nH - 1), (nW if rw == P else nW - 1)  # full-size rows / cols
    # Each part: (selector, first patch row i0, rows, crop height, first patch col j0, cols, crop
    # width); the view covers exactly those patches (as_strided must stay inside `out`).
    if rh == P:  # only the right column is ragged
        parts = [(~last_j, 0, nH, P, 0, fj, P), (last_j, 0, nH, P, nW - 1, 1, rw)]
    elif rw == P:  # only the bottom row is ragged
        parts = [(~last_i, 0, fi, P, 0, nW, P), (last_i, nH - 1, 1, rh, 0, nW, P)]
    else:
        parts = [
            (~last_i & ~last_j, 0, fi, P, 0, fj, P),
            (~last_i & last_j, 0, fi, P, nW - 1, 1, rw),
            (last_i & ~last_j, nH - 1, 1, rh, 0, fj, P),
            (last_i & last_j, nH - 1, 1, rh, nW - 1, 1, rw),
        ]
    for sel, i0, nh, hh, j0, nw, ww in parts:
        sel_idx = sel.nonzero().squeeze(1)
        if sel_idx.numel() == 0 or nh == 0 or nw == 0:
            continue
        view = _patch_view(out, i0 * P, j0 * P, nh, nw, hh, ww, P)
        idx = (bi[sel_idx], ii[sel_idx] - i0, jj[sel_idx] - j0)
        _put(view, idx, y[sel_idx][:, :, :hh, :ww], cl, residual)


def sparse_conv2d(
    x: torch.Tensor,
    conv: nn.Conv2d,
    prev_out: torch.Tensor,
    compute_mask: torch.Tensor,
    patch: int,
    *,
    residual: bool = False,
    inplace: bool = False,
) -> tuple[torch.Tensor, int]:
    """Block-sparse ``conv(x)`` on the active output patches, ``prev_out`` elsewhere.

    Args:
        x: (B, Cin, H, W) current input.
        conv: the layer (any stride / padding / dilation / groups / bias; padding_mode 'zeros').
        prev_out: (B, Cout, Ho, Wo) previous output, kept on skipped patches.
        compute_mask: bool (B, ceil(Ho / patch), ceil(Wo / patch)); True = compute this patch.
        patch: output patch size in output pixels (edge patches may be partial).
        residual: Skip-Conv residual form: out = prev_out + conv_without_bias(x) on active patches
            (``x`` is then the input difference). See ``sparse_conv2d_functional``.
        inplace: write into ``prev_out`` (the caller hands it over) instead of cloning it.

    Returns:
        ``(out (B, Cout, Ho, Wo), executed_macs)``; see ``sparse_conv2d_functional``.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"sparse_conv2d: conv must be nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"sparse_conv2d: padding_mode {conv.padding_mode!r} is not supported (only 'zeros')")
    return sparse_conv2d_functional(
        x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups,
        prev_out, compute_mask, patch, residual=residual, inplace=inplace,
    )


# --------------------------------------------------------------------------------------------
# Dense / sparse dispatcher
# --------------------------------------------------------------------------------------------

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
    _TABLES.clear()
    _MEMO.clear()


def _weight_channels_last(conv: nn.Conv2d) -> bool:
    w = conv.weight
    return w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()


def _mask_with(B: int, nH: int, nW: int, keep: float, device, gen: torch.Generator) -> torch.Tensor:
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
    masks = [_mask_with(B, nH, nW, k, device, gen) for k in _CAL_KEEPS]
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
