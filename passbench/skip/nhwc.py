"""The channels-last (NHWC) path of block-sparse execution: row-index tables over (pixels, channels).

With ``x`` and ``prev_out`` both channels-last, a (B, C, H, W) map is a (B*H*W, C) matrix of pixel
rows. Cached row-index tables per geometry turn

* the sparse path's gather into one pass over the input's pixel rows (``skip.native.gather_rows``,
  zeros for padding pixels; fallback: ``index_select`` with padding rows clamped then zeroed; no
  ``F.pad`` of the whole map) and its scatter into one pass (``scatter_rows``; fallback
  ``index_copy_`` / ``index_add_``): ``sparse_nhwc``, called by ``skip.sparse.sparse_conv2d``;
* the dispatcher's dense path into row copies of the skipped patches only: ``blend_skipped``
  (``where(mask, y, prev_out)``, ``torch.where`` for other layouts) and ``blend_and_update`` (``y``
  and the state ``prev_out`` both end up holding the blend, one map's worth of copies in all).

The native ops (``skip.native``, a small C++ extension built on first use) give the same bits as
the PyTorch fallback; ``use_native`` says which runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from passbench.skip import native as _native

__all__ = ["blend_and_update", "blend_skipped", "blend_update_ok", "clear_tables", "nhwc_ok", "sparse_nhwc",
           "use_native"]


def nhwc_ok(t: torch.Tensor) -> bool:
    """True when ``t`` is a dense channels-last tensor, so ``t.permute(0, 2, 3, 1)`` is a (B*H*W, C) matrix."""
    return t.is_contiguous(memory_format=torch.channels_last) and t.shape[1] > 1


_TABLES: dict[tuple, tuple] = {}


def clear_tables() -> None:
    """Forget the cached row-index tables."""
    _TABLES.clear()


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
    if nhwc_ok(y) and nhwc_ok(prev_out):
        skip = (~compute_mask.bool()).reshape(-1).nonzero().squeeze(1)
        if skip.numel() == 0:
            return y
        if use_native(y) and y.dtype == prev_out.dtype:
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
    return (nhwc_ok(y) and nhwc_ok(prev_out) and y.shape == prev_out.shape and y.dtype == prev_out.dtype
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
    nat = use_native(y)
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


def sparse_nhwc(x, weight, bias, groups, out, flat, geom, out_grid, residual) -> None:
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
    nat = use_native(x)
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


def use_native(x: torch.Tensor) -> bool:
    """The native gather/scatter (``skip.native``) runs on CPU tensors when it could be built and
    ``PASSBENCH_NATIVE`` is not 0; elsewhere (CUDA, no compiler) the PyTorch ops run: same bits (the
    tests compare both by patching this function)."""
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
