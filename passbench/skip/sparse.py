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

This module holds the entry points and the generic path; the channels-last path is ``skip.nhwc``.
``skip.dispatch.choose_path`` decides per layer shape and keep fraction whether the sparse path pays
(cached micro-benchmark).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip.nhwc import nhwc_ok, sparse_nhwc

__all__ = [
    "sparse_conv2d",
    "sparse_conv2d_functional",
    "conv_out_size",
    "dense_macs",
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
    if nhwc_ok(x) and nhwc_ok(out):
        sparse_nhwc(x, weight, bias, groups, out, flat, geom, (Ho, Wo, nH, nW), residual)
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
