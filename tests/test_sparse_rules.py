"""Rules of the block-sparse convolution (``skip.sparse``) pinned against a dense oracle.

The oracle is written out here: ``F.conv2d`` on the whole map, then a blend by the nearest-upsampled patch
mask (active patches: the conv output, skipped ones: ``prev_out``); in residual form the active patches get
``prev_out + conv_without_bias(x)``. Everything runs in float64 on small maps, so the comparisons are tight.

Covered here: the dense shortcut when every patch is active (plain / residual, in place or not), ``inplace``
ownership, non-bool masks, the exact error messages, pairs whose two values differ, ``dense_macs`` of
non-square outputs, the generic gather / scatter path (taken whenever ``x`` and the output are not both
channels-last) for an output in any layout (NCHW, channels-last, W-major) and with ragged bottom rows /
right columns of patches, the gather branches of a channels-last input, and the helpers
``_is_channels_last`` / ``_patch_view``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip.nhwc import nhwc_ok
from passbench.skip.sparse import (
    _is_channels_last,
    _patch_view,
    conv_out_size,
    dense_macs,
    sparse_conv2d,
    sparse_conv2d_functional,
)

CL = torch.channels_last
DT = torch.float64


# ----------------------------------------------------------------------------------------------- oracle
def upsampled(mask: torch.Tensor, patch: int, hw) -> torch.Tensor:
    """(B, nH, nW) mask -> (B, 1, Ho, Wo) bool, nearest upsampling cropped to the output (partial edge patches)."""
    m = (mask != 0).repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m[:, None, : hw[0], : hw[1]]


def oracle(x, weight, bias, stride, padding, dilation, groups, prev, mask, patch, residual=False):
    """Dense conv on the whole map, blended with ``prev`` by the upsampled mask (residual: prev + conv_nobias)."""
    y = F.conv2d(x, weight, None if residual else bias, stride, padding, dilation, groups)
    if residual:
        y = prev + y
    return torch.where(upsampled(mask, patch, y.shape[2:]), y, prev)


def conv_oracle(x, conv, prev, mask, patch, residual=False):
    return oracle(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups, prev, mask,
                  patch, residual)


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def make_conv(seed=0, **kw):
    torch.manual_seed(seed)
    return nn.Conv2d(**kw).to(DT)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=DT)


def layout(t: torch.Tensor, name: str) -> torch.Tensor:
    """The same values in another memory layout: NCHW, channels-last, or W-major (a transposed buffer)."""
    if name == "nchw":
        return t.contiguous()
    if name == "cl":
        return t.contiguous(memory_format=CL)
    if name == "wmajor":  # strides (C*H*W, H*W, 1, H): W is the slow spatial axis
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    raise AssertionError(name)


# --------------------------------------------------------------- all patches active: the dense shortcut
@torch.no_grad()
def test_every_patch_active_residual_not_inplace_is_prev_plus_conv_without_bias():
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 8, 12, seed=1), rand(2, 4, 8, 12, seed=2)
    before = prev.clone()
    out, macs = sparse_conv2d(x, conv, prev, torch.ones(2, 2, 3, dtype=torch.bool), 4, residual=True)
    close(out, before + F.conv2d(x, conv.weight, None, 1, 1))
    assert out.data_ptr() != prev.data_ptr() and torch.equal(prev, before)  # prev_out untouched
    # dense MACs: B 2 * 8 * 12 pixels * Cout 4 * Cin 3 * 9 taps = 20736
    assert macs == 20736


@torch.no_grad()
def test_every_patch_active_residual_inplace_adds_into_prev_out():
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 8, 12, seed=1), rand(2, 4, 8, 12, seed=2)
    want = prev + F.conv2d(x, conv.weight, None, 1, 1)
    out, macs = sparse_conv2d(x, conv, prev, torch.ones(2, 2, 3, dtype=torch.bool), 4, residual=True, inplace=True)
    assert out is prev
    close(prev, want)
    assert macs == 20736


@torch.no_grad()
def test_every_patch_active_plain_inplace_copies_the_dense_conv_into_prev_out():
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 8, 12, seed=1), rand(2, 4, 8, 12, seed=2)
    out, _ = sparse_conv2d(x, conv, prev, torch.ones(2, 2, 3, dtype=torch.bool), 4, inplace=True)
    assert out is prev
    close(prev, F.conv2d(x, conv.weight, conv.bias, 1, 1))


# ---------------------------------------------------------------------------------- inplace ownership
@torch.no_grad()
def test_no_patch_active_inplace_returns_prev_out_itself_otherwise_a_copy():
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(1, 3, 8, 8, seed=1), rand(1, 4, 8, 8, seed=2)
    before = prev.clone()
    none = torch.zeros(1, 2, 2, dtype=torch.bool)
    out, macs = sparse_conv2d(x, conv, prev, none, 4, inplace=True)
    assert out is prev and macs == 0 and torch.equal(prev, before)
    out, macs = sparse_conv2d(x, conv, prev, none, 4, inplace=False)
    assert out is not prev and out.data_ptr() != prev.data_ptr() and torch.equal(out, before) and macs == 0


@pytest.mark.parametrize("fill", ["partial", "all", "none"])
@torch.no_grad()
def test_functional_entry_defaults_to_not_inplace(fill):
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 8, 8, seed=1), rand(2, 4, 8, 8, seed=2)
    mask = {"partial": torch.tensor([[[True, False], [False, True]], [[False, False], [True, False]]]),
            "all": torch.ones(2, 2, 2, dtype=torch.bool), "none": torch.zeros(2, 2, 2, dtype=torch.bool)}[fill]
    before = prev.clone()
    out, _ = sparse_conv2d_functional(x, conv.weight, conv.bias, 1, 1, 1, 1, prev, mask, 4)
    assert out.data_ptr() != prev.data_ptr() and torch.equal(prev, before)
    close(out, conv_oracle(x, conv, before, mask, 4))


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@torch.no_grad()
def test_inplace_in_the_generic_path_with_a_channels_last_prev_out(residual):
    # x NCHW, prev_out channels-last: not both channels-last, so the generic gather / scatter runs.
    conv = make_conv(in_channels=3, out_channels=5, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 10, 9, seed=1), rand(2, 5, 10, 9, seed=2).contiguous(memory_format=CL)
    assert not nhwc_ok(x)
    mask = torch.tensor([[[True, False, True], [False, False, True], [True, True, False]],
                         [[False, True, False], [True, False, False], [False, False, True]]])
    want = conv_oracle(x, conv, prev.clone(), mask, 4, residual)
    out, _ = sparse_conv2d(x, conv, prev, mask, 4, residual=residual, inplace=True)
    assert out is prev
    close(prev, want)


# ------------------------------------------------------------------------------------- non-bool masks
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8, torch.int64],
                         ids=["f32", "f64", "u8", "i64"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@torch.no_grad()
def test_non_bool_mask_means_nonzero(dtype, residual):
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(2, 3, 8, 12, seed=1), rand(2, 4, 8, 12, seed=2)
    bmask = torch.tensor([[[True, False, False], [False, True, True]], [[False, False, True], [False, False, False]]])
    out, macs = sparse_conv2d(x, conv, prev, bmask.to(dtype), 4, residual=residual)
    close(out, conv_oracle(x, conv, prev, bmask, 4, residual))
    # 4 active patches * 4*4 pixels * Cout 4 * Cin 3 * 9 taps = 6912
    assert macs == 6912


# ------------------------------------------------------------------------------------------- messages
def test_error_messages_are_exact():
    conv = make_conv(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    x, prev = rand(1, 4, 8, 8), rand(1, 4, 8, 8)
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    w, b = conv.weight, conv.bias
    with pytest.raises(ValueError, match=r"^sparse_conv2d: string padding 'same' is not supported; pass ints$"):
        sparse_conv2d_functional(x, w, b, 1, "same", 1, 1, prev, mask, 4)
    with pytest.raises(ValueError, match=r"^sparse_conv2d: x must be \(B, Cin, H, W\), got shape \(4, 8, 8\)$"):
        sparse_conv2d_functional(x[0], w, b, 1, 1, 1, 1, prev, mask, 4)
    with pytest.raises(ValueError,
                       match=r"^sparse_conv2d: weight \(4, 4, 3, 3\) with groups=2 does not fit Cin=4$"):
        sparse_conv2d_functional(x, w, b, 1, 1, 1, 2, prev, mask, 4)
    with pytest.raises(ValueError, match=r"^sparse_conv2d: prev_out has shape \(1, 2, 8, 8\), "
                                         r"expected \(1, 4, 8, 8\)$"):
        sparse_conv2d(x, conv, prev[:, :2], mask, 4)
    with pytest.raises(ValueError, match=r"^sparse_conv2d: patch must be >= 1, got 0$"):
        sparse_conv2d(x, conv, prev, mask, 0)
    with pytest.raises(ValueError, match=r"^sparse_conv2d: compute_mask has shape \(1, 3, 3\), expected "
                                         r"\(1, 2, 2\) \(B, ceil\(Ho/4\), ceil\(Wo/4\)\) for output 8x8$"):
        sparse_conv2d(x, conv, prev, torch.ones(1, 3, 3, dtype=torch.bool), 4)
    with pytest.raises(TypeError, match=r"^sparse_conv2d: conv must be nn\.Conv2d, got Conv1d$"):
        sparse_conv2d(x, nn.Conv1d(4, 4, 3), prev, mask, 4)
    with pytest.raises(ValueError,
                       match=r"^sparse_conv2d: padding_mode 'reflect' is not supported \(only 'zeros'\)$"):
        sparse_conv2d(x, nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), prev, mask, 4)


# -------------------------------------------------------------------------------------------- patch 1
@pytest.mark.parametrize("fmt", ["nchw", "cl"])
@torch.no_grad()
def test_patch_one_is_a_per_pixel_mask(fmt):
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=3, padding=1)
    x, prev = layout(rand(2, 3, 5, 6, seed=1), fmt), layout(rand(2, 4, 5, 6, seed=2), fmt)
    mask = torch.rand(2, 5, 6, generator=torch.Generator().manual_seed(3)) < 0.5
    out, macs = sparse_conv2d(x, conv, prev, mask, 1)
    close(out, conv_oracle(x, conv, prev, mask, 1))
    assert macs == int(mask.sum()) * 1 * 4 * 3 * 9  # one output pixel per active patch


# ------------------------------------------------------------- pairs with two different values, MACs
@pytest.mark.parametrize("fx,fo", [("nchw", "nchw"), ("cl", "cl"), ("cl", "nchw"), ("nchw", "cl")])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@torch.no_grad()
def test_asymmetric_stride_padding_dilation(fx, fo, residual):
    # kernel (3, 5), stride (1, 2), padding (2, 1), dilation (1, 2) on 11 x 21:
    # Ho = (11 + 4 - 1*2 - 1) // 1 + 1 = 13, Wo = (21 + 2 - 2*4 - 1) // 2 + 1 = 8; patch 4 -> 4 x 2 grid.
    conv = make_conv(in_channels=3, out_channels=4, kernel_size=(3, 5), stride=(1, 2), padding=(2, 1),
                     dilation=(1, 2))
    x = layout(rand(2, 3, 11, 21, seed=1), fx)
    prev = layout(rand(2, 4, 13, 8, seed=2), fo)
    g = torch.Generator().manual_seed(4)
    for mask in (torch.rand(2, 4, 2, generator=g) < 0.5, torch.rand(2, 4, 2, generator=g) < 0.5,
                 torch.ones(2, 4, 2, dtype=torch.bool)):
        mask[1, -1, -1] = True
        out, macs = sparse_conv2d(x, conv, prev, mask, 4, residual=residual)
        close(out, conv_oracle(x, conv, prev, mask, 4, residual))
        if bool(mask.all()):
            # dense: B 2 * 13 * 8 pixels * Cout 4 * Cin 3 * 15 taps = 37440
            assert macs == 37440
        else:
            # per active patch: 4*4 pixels * Cout 4 * Cin 3 * 15 taps = 2880
            assert macs == int(mask.sum()) * 2880


def test_dense_macs_non_square_output():
    w = torch.zeros(3, 2, 3, 5)  # Cout 3, Cin/groups 2, 3 x 5 taps
    assert dense_macs(w, (4, 6)) == 4 * 6 * 3 * 2 * 15 == 2160
    assert dense_macs(w, (4, 6), batch=2) == 4320
    assert dense_macs(w, (7, 1), batch=3) == 3 * 7 * 1 * 90 == 1890


@pytest.mark.parametrize("n,k,s,p,d", [(11, 3, 1, 2, 1), (21, 5, 2, 1, 2), (30, 5, 2, 0, 1), (7, 7, 3, 3, 1),
                                       (9, 1, 2, 0, 1), (16, 3, 3, 1, 3)])
def test_conv_out_size_matches_conv2d(n, k, s, p, d):
    y = F.conv2d(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, k, 1), None, (s, 1), (p, 0), (d, 1))
    assert conv_out_size(n, k, s, p, d) == y.shape[2] and isinstance(conv_out_size(n, k, s, p, d), int)


# ------------------------------------------------------- generic scatter: ragged edges, output layouts
# (name, H, W, padding) of a 3x3 stride-1 conv with patch 4 (Ho = H + 2p - 2, Wo = W + 2p - 2):
GEOMS = [
    ("whole", 8, 12, 1),           # 8 x 12: 2 x 3 full patches
    ("bottom", 10, 12, 1),         # 10 x 12: last patch row 2 high
    ("right", 8, 10, 1),           # 8 x 10: last patch column 2 wide
    ("both", 10, 9, 1),            # 10 x 9: last row 2 high, last column 1 wide
    ("bottom_nopad", 8, 10, 0),    # 6 x 8: only the bottom needs extra padding for the last window
    ("right_nopad", 10, 8, 0),     # 8 x 6: only the right needs extra padding
]


def named_masks(nH, nW):
    """Masks (B=2) activating exactly the edge patches; the two batch items differ."""
    def m(*cells):
        t = torch.zeros(2, nH, nW, dtype=torch.bool)
        for c in cells:
            t[c] = True
        return t

    g = torch.Generator().manual_seed(7)
    rnd = torch.rand(2, nH, nW, generator=g) < 0.5
    most = torch.ones(2, nH, nW, dtype=torch.bool)
    most[0, 0, 0] = False
    return {
        "first": m((0, 0, 0)),
        "last_row": m((1, nH - 1, slice(None))),
        "last_col": m((0, slice(None), nW - 1)),
        "corner": m((1, nH - 1, nW - 1)),
        "top_right": m((0, 0, nW - 1)),
        "bottom_left": m((1, nH - 1, 0)),
        "last_row_and_col": m((0, nH - 1, slice(None)), (0, slice(None), nW - 1), (1, 0, 0)),
        "random": rnd,
        "all_but_one": most,
    }


@pytest.mark.parametrize("geom", GEOMS, ids=[g[0] for g in GEOMS])
@pytest.mark.parametrize("out_fmt", ["nchw", "cl", "wmajor"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@torch.no_grad()
def test_generic_scatter_edges_and_output_layouts(geom, out_fmt, residual):
    _, H, W, pad = geom
    conv = make_conv(in_channels=3, out_channels=5, kernel_size=3, padding=pad)
    Ho, Wo = H + 2 * pad - 2, W + 2 * pad - 2
    x = rand(2, 3, H, W, seed=1)  # NCHW input: the generic path runs whatever prev_out's layout
    assert not nhwc_ok(x)
    prev = layout(rand(2, 5, Ho, Wo, seed=2), out_fmt)
    before = prev.clone()
    P = 4
    nH, nW = -(-Ho // P), -(-Wo // P)
    for name, mask in named_masks(nH, nW).items():
        out, macs = sparse_conv2d(x, conv, prev, mask, P, residual=residual)
        close(out, conv_oracle(x, conv, before, mask, P, residual))
        assert torch.equal(prev, before), name
        assert macs == int(mask.sum()) * P * P * 5 * 3 * 9, name  # full patches counted, edge waste included


@pytest.mark.parametrize("geom", GEOMS, ids=[g[0] for g in GEOMS])
@torch.no_grad()
def test_generic_gather_of_a_channels_last_input(geom):
    # x channels-last, prev_out NCHW: the generic gather reads a channels-last window view.
    _, H, W, pad = geom
    conv = make_conv(in_channels=3, out_channels=5, kernel_size=3, padding=pad)
    Ho, Wo = H + 2 * pad - 2, W + 2 * pad - 2
    x, prev = layout(rand(2, 3, H, W, seed=1), "cl"), rand(2, 5, Ho, Wo, seed=2)
    nH, nW = -(-Ho // 4), -(-Wo // 4)
    for name, mask in named_masks(nH, nW).items():
        out, _ = sparse_conv2d(x, conv, prev, mask, 4)
        close(out, conv_oracle(x, conv, prev, mask, 4))


# Kernels of the channels-last gather branch (1x1 stride-1 ungrouped: one matmul; anything else: conv).
CL_KERNELS = [
    ("k3x1", dict(in_channels=4, out_channels=6, kernel_size=(3, 1), padding=(1, 0))),
    ("k1x3", dict(in_channels=4, out_channels=6, kernel_size=(1, 3), padding=(0, 1))),
    ("k2x2", dict(in_channels=4, out_channels=6, kernel_size=2)),
    ("k1x1", dict(in_channels=4, out_channels=6, kernel_size=1)),
    ("k1x1_nobias", dict(in_channels=4, out_channels=6, kernel_size=1, bias=False)),
    ("k1x1_g2", dict(in_channels=4, out_channels=6, kernel_size=1, groups=2)),
    ("k1x1_s21", dict(in_channels=4, out_channels=6, kernel_size=1, stride=(2, 1))),
    ("k1x1_s12", dict(in_channels=4, out_channels=6, kernel_size=1, stride=(1, 2))),
]


@pytest.mark.parametrize("layer", CL_KERNELS, ids=[c[0] for c in CL_KERNELS])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@torch.no_grad()
def test_channels_last_input_kernel_branches(layer, residual):
    conv = make_conv(**layer[1])
    x = layout(rand(2, 4, 11, 13, seed=1), "cl")
    Ho, Wo = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups).shape[2:]
    prev = rand(2, 6, Ho, Wo, seed=2)  # NCHW: generic path
    grid = (2, -(-Ho // 4), -(-Wo // 4))
    g = torch.Generator().manual_seed(5)
    for _ in range(2):
        mask = torch.rand(grid, generator=g) < 0.5
        mask[0, 0, 0] = mask[1, -1, -1] = True
        mask[1, 0, 0] = False
        out, _ = sparse_conv2d(x, conv, prev, mask, 4, residual=residual)
        close(out, conv_oracle(x, conv, prev, mask, 4, residual))


# ------------------------------------------------------------------------------------------- helpers
def test_is_channels_last_follows_the_layout():
    t = rand(2, 3, 4, 5)
    assert _is_channels_last(t.contiguous(memory_format=CL))
    assert _is_channels_last(t.contiguous(memory_format=CL)[:, :, 1:, :3])  # a crop of a channels-last map
    assert _is_channels_last(rand(2, 3, 1, 5).contiguous(memory_format=CL))  # one row, still NHWC
    assert _is_channels_last(rand(2, 2, 4, 5).contiguous(memory_format=CL))
    assert not _is_channels_last(t)
    assert not _is_channels_last(t[:, :, :, ::2])  # a strided NCHW view
    assert not _is_channels_last(t[:, :2])
    assert not _is_channels_last(layout(t, "wmajor"))
    # One channel: NHWC and NCHW put the same numbers in the same places; never called channels-last.
    one = rand(2, 4, 6, 1).permute(0, 3, 1, 2)  # an NHWC buffer, C = 1: stride(1) == 1
    assert not _is_channels_last(one) and not _is_channels_last(one[:, :, :, :3])


@pytest.mark.parametrize("fmt", ["nchw", "cl"])
def test_patch_view_is_the_grid_of_patches(fmt):
    # out (2, 3, 9, 10), patches of 4 starting at pixel (1, 2): a 2 x 2 grid of 3 x 4 crops.
    out = layout(torch.arange(2 * 3 * 9 * 10, dtype=DT).view(2, 3, 9, 10), fmt)
    v = _patch_view(out, 1, 2, 2, 2, 3, 4, 4)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                ref = out[b, :, 1 + 4 * i: 4 + 4 * i, 2 + 4 * j: 6 + 4 * j]  # (C, 3, 4)
                got = v[b, i, j] if fmt == "nchw" else v[b, i, j].permute(2, 0, 1)  # cl: (3, 4, C)
                assert torch.equal(got, ref)
    assert v.shape == ((2, 2, 2, 3, 3, 4) if fmt == "nchw" else (2, 2, 2, 3, 4, 3))
    v.zero_()  # a view: writes reach `out`
    assert int((out == 0).sum()) == 2 * 2 * 2 * 3 * 3 * 4 + 1  # + the 0 at [0, 0, 0, 0], outside the view
