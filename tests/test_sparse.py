"""Block-sparse convolution against the dense-masked reference (``F.conv2d`` + ``torch.where``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from devices import DEVICES
from torch import nn

from passbench.skip.dispatch import calibrate, choose_path, clear_dispatch_cache
from passbench.skip.nhwc import blend_skipped
from passbench.skip.sparse import dense_macs, sparse_conv2d, sparse_conv2d_functional

CL = torch.channels_last

# (name, Conv2d kwargs, input H, W, patch)
LAYERS = [
    ("3x3s1", dict(in_channels=8, out_channels=16, kernel_size=3, padding=1), 32, 32, 8),
    ("3x3s2_odd", dict(in_channels=8, out_channels=16, kernel_size=3, stride=2, padding=1), 33, 29, 4),
    ("1x1", dict(in_channels=16, out_channels=24, kernel_size=1), 16, 16, 4),
    ("1x1_odd", dict(in_channels=16, out_channels=8, kernel_size=1, bias=False), 15, 17, 4),
    ("1x1s2", dict(in_channels=8, out_channels=8, kernel_size=1, stride=2), 20, 20, 4),
    ("dw3x3", dict(in_channels=12, out_channels=12, kernel_size=3, padding=1, groups=12), 17, 23, 4),
    ("dw3x3s2", dict(in_channels=12, out_channels=12, kernel_size=3, stride=2, padding=1, groups=12), 24, 24, 4),
    ("dil2", dict(in_channels=8, out_channels=12, kernel_size=3, padding=2, dilation=2), 20, 21, 8),
    ("groups4", dict(in_channels=8, out_channels=12, kernel_size=3, padding=1, groups=4, bias=False), 19, 16, 5),
    ("5x5s2_nopad", dict(in_channels=4, out_channels=6, kernel_size=5, stride=2), 31, 30, 3),
    ("7x7s2_stem", dict(in_channels=3, out_channels=8, kernel_size=7, stride=2, padding=3), 30, 38, 4),
]


def upsample_mask(mask: torch.Tensor, patch: int, hw) -> torch.Tensor:
    """(B, nH, nW) -> (B, 1, Ho, Wo) nearest upsampling, cropped (partial edge patches)."""
    m = mask.repeat_interleave(patch, 1).repeat_interleave(patch, 2)
    return m[:, None, : hw[0], : hw[1]]


def reference(x, conv, prev, mask, patch, residual=False):
    y = F.conv2d(x, conv.weight, None if residual else conv.bias, conv.stride, conv.padding, conv.dilation,
                 conv.groups)
    if residual:
        y = prev + y
    return torch.where(upsample_mask(mask, patch, y.shape[2:]), y, prev)


def make(layer, batch=2, seed=0, fmt_x=None, fmt_out=None, device="cpu"):
    torch.manual_seed(seed)
    _, kw, H, W, P = layer
    conv = nn.Conv2d(**kw).to(device)
    x = torch.randn(batch, kw["in_channels"], H, W).to(device)
    with torch.no_grad():
        Ho, Wo = conv(x).shape[2:]
    prev = torch.randn(batch, kw["out_channels"], Ho, Wo).to(device)
    if fmt_x is not None:
        x = x.contiguous(memory_format=fmt_x)
    if fmt_out is not None:
        prev = prev.contiguous(memory_format=fmt_out)
    grid = (batch, -(-Ho // P), -(-Wo // P))
    return conv, x, prev, grid, P


def assert_close(out, ref):
    scale = ref.abs().max().item() + 1.0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("layer", LAYERS, ids=[l[0] for l in LAYERS])
@pytest.mark.parametrize("fmt", ["nchw", "cl", "mixed"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_matches_dense_masked_reference(layer, fmt, residual, device):
    fx, fo = {"nchw": (None, None), "cl": (CL, CL), "mixed": (CL, None)}[fmt]
    conv, x, prev, grid, P = make(layer, fmt_x=fx, fmt_out=fo, device=device)
    for keep in (0.2, 0.5, 0.8):
        mask = (torch.rand(grid) < keep).to(device)  # a different random mask per batch item
        mask[0, 0, 0], mask[1, -1, -1] = True, True  # exercise the ragged corner + at least one patch
        prev_before = prev.clone()
        out, macs = sparse_conv2d(x, conv, prev, mask, P, residual=residual)
        assert_close(out, reference(x, conv, prev, mask, P, residual))
        assert torch.equal(prev, prev_before), "prev_out must not change unless inplace=True"
        kh, kw_ = conv.kernel_size
        assert macs == int(mask.sum()) * P * P * conv.out_channels * conv.in_channels // conv.groups * kh * kw_


@pytest.mark.parametrize("layer", LAYERS[:3] + LAYERS[5:6], ids=[l[0] for l in LAYERS[:3] + LAYERS[5:6]])
@pytest.mark.parametrize("fmt", [None, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_all_skip_returns_prev_exactly_and_no_skip_is_dense(layer, fmt, device):
    conv, x, prev, grid, P = make(layer, fmt_x=fmt, fmt_out=fmt, device=device)
    out, macs = sparse_conv2d(x, conv, prev, torch.zeros(grid, dtype=torch.bool, device=device), P)
    assert macs == 0 and torch.equal(out, prev) and out.data_ptr() != prev.data_ptr()
    out, macs = sparse_conv2d(x, conv, prev, torch.ones(grid, dtype=torch.bool, device=device), P)
    dense = conv(x)
    assert_close(out, dense)
    assert macs == dense_macs(conv.weight, dense.shape[2:], x.shape[0])


@pytest.mark.parametrize("fmt", [None, CL], ids=["nchw", "cl"])
@torch.no_grad()
def test_inplace_writes_into_prev_out(fmt):
    conv, x, prev, grid, P = make(LAYERS[0], fmt_x=fmt, fmt_out=fmt)
    mask = torch.rand(grid) < 0.5
    ref = reference(x, conv, prev, mask, P)
    out, _ = sparse_conv2d(x, conv, prev, mask, P, inplace=True)
    assert out.data_ptr() == prev.data_ptr()
    assert_close(prev, ref)


@torch.no_grad()
def test_executed_macs_hand_count():
    # 3x3 conv, 2 -> 3 channels, 8x8 map padded to 8x8 output, patch 4 -> 2x2 patch grid.
    # One active patch: 4*4 output pixels * 3 out channels * 2 in channels * 9 taps = 864 MACs.
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x, prev = torch.randn(1, 2, 8, 8), torch.zeros(1, 3, 8, 8)
    mask = torch.tensor([[[False, True], [False, False]]])
    _, macs = sparse_conv2d(x, conv, prev, mask, 4)
    assert macs == 864
    # 6x6 output, patch 4: the bottom-right patch holds 2x2 real pixels but is computed at 4x4,
    # so it still costs 864 (the edge waste is executed, hence counted).
    x, prev = torch.randn(1, 2, 6, 6), torch.zeros(1, 3, 6, 6)
    out, macs = sparse_conv2d(x, conv, prev, torch.tensor([[[False, False], [False, True]]]), 4)
    assert macs == 864
    assert torch.count_nonzero(out[0, 0]) <= 4  # only the 2x2 real pixels were written
    # dense: 36 pixels * 3 * 2 * 9 = 1944 (Eq. 1 with channels)
    assert dense_macs(conv.weight, (6, 6)) == 1944


def test_functional_entry_and_bad_input():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    x, prev = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = torch.ones(1, 2, 2, dtype=torch.bool)
    mask[0, 1, 1] = False
    out, _ = sparse_conv2d_functional(x, conv.weight, conv.bias, 1, 1, 1, 1, prev, mask, 4)
    assert_close(out, reference(x, conv, prev, mask, 4))
    with pytest.raises(ValueError, match="compute_mask has shape"):
        sparse_conv2d(x, conv, prev, torch.ones(1, 3, 3, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match="prev_out has shape"):
        sparse_conv2d(x, conv, prev[:, :2], mask, 4)
    with pytest.raises(ValueError, match="padding_mode"):
        sparse_conv2d(x, nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), prev, mask, 4)


def test_choose_path_rules(monkeypatch):
    conv = nn.Conv2d(16, 16, 3, padding=1)
    assert choose_path(conv, (1, 16, 64, 64), 1.0, 8) == "dense"
    assert choose_path(conv, (1, 16, 64, 64), 0.95, 8) == "dense"
    assert choose_path(conv, (1, 16, 8, 8), 0.25, 8) == "dense"  # one patch per map: never worth it
    assert choose_path(conv, (1, 16, 64, 64), 0.0, 8) == "sparse"
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "sparse")
    assert choose_path(conv, (1, 16, 64, 64), 1.0, 8) == "sparse"
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "fast")
    with pytest.raises(ValueError, match="PASSBENCH_SPARSE_DISPATCH"):
        choose_path(conv, (1, 16, 64, 64), 0.5, 8)


def test_choose_path_calibrates_once_per_shape():
    clear_dispatch_cache()
    conv = nn.Conv2d(8, 8, 3, padding=1)
    assert choose_path(conv, (1, 8, 32, 32), 0.3, 4) in ("dense", "sparse")
    t_dense, a, b = cal = calibrate(conv, (1, 8, 32, 32), 4)
    assert t_dense > 0 and calibrate(conv, (1, 8, 32, 32), 4) is cal  # cached


def test_choose_path_follows_the_calibrated_cost_model(monkeypatch):
    # The dispatcher predicts sparse time a + b * keep from the layer's calibration (t_dense, a, b) and picks
    # sparse only where that is clearly below dense. Fake calibrations with decisions far from any margin:
    # a per-patch cost only (a = 0, b = 2 t_dense) is sparse at keep 0.1 (0.2 t_dense) and dense at keep 0.6
    # (1.2 t_dense); a fixed cost over dense (a = 1.2 t_dense, b = 0) is dense at every keep. Swapping the roles
    # of a and b, or comparing the wrong way, fails. One calibration per (layer, input shape).
    import sys

    calls = []
    cals = {32: (1.0, 0.0, 2.0), 48: (1.0, 1.2, 0.0)}

    def fake(conv, x_shape, patch, device=None):
        calls.append(tuple(x_shape))
        return cals[x_shape[2]]

    monkeypatch.setattr(sys.modules[choose_path.__module__], "calibrate", fake)
    clear_dispatch_cache()
    conv = nn.Conv2d(8, 8, 3, padding=1)
    assert choose_path(conv, (1, 8, 32, 32), 0.1, 4) == "sparse"
    assert choose_path(conv, (1, 8, 32, 32), 0.6, 4) == "dense"
    assert [choose_path(conv, (1, 8, 48, 48), k, 4) for k in (0.05, 0.3, 0.6)] == ["dense"] * 3
    assert calls == [(1, 8, 32, 32), (1, 8, 48, 48)]  # each shape calibrated once, then remembered


@pytest.mark.parametrize("fmt", [None, CL], ids=["nchw", "cl"])
@pytest.mark.parametrize("hw,patch", [((16, 16), 4), ((15, 13), 4)], ids=["even", "ragged"])
def test_blend_skipped_matches_where(fmt, hw, patch):
    torch.manual_seed(1)
    y, prev = torch.randn(2, 6, *hw), torch.randn(2, 6, *hw)
    if fmt is not None:
        y, prev = y.contiguous(memory_format=fmt), prev.contiguous(memory_format=fmt)
    mask = torch.rand(2, -(-hw[0] // patch), -(-hw[1] // patch)) < 0.5
    ref = torch.where(upsample_mask(mask, patch, hw), y, prev)
    assert torch.equal(blend_skipped(y.clone(), prev, mask, patch), ref)


@pytest.mark.parametrize("hw,patch", [((16, 24), 4), ((15, 22), 4)], ids=["whole", "partial-edge"])
@torch.no_grad()
def test_blend_and_update_is_the_masked_blend_in_both_tensors(hw, patch):
    from passbench.skip.nhwc import blend_and_update, blend_update_ok

    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 5, *hw, generator=g).contiguous(memory_format=CL)
    prev = torch.randn(2, 5, *hw, generator=g).contiguous(memory_format=CL)
    grid = (2, -(-hw[0] // patch), -(-hw[1] // patch))
    for mask in (torch.rand(grid, generator=g) < 0.5, torch.ones(grid, dtype=torch.bool),
                 torch.zeros(grid, dtype=torch.bool)):
        want = torch.where(upsample_mask(mask, patch, hw), y, prev)
        a, b = y.clone(), prev.clone()
        assert blend_update_ok(a, b)
        out = blend_and_update(a, b, mask, patch)
        assert out is a and torch.equal(a, want) and torch.equal(b, want)
    assert not blend_update_ok(y.contiguous(), prev)
    with pytest.raises(ValueError, match="channels-last"):
        blend_and_update(y.contiguous(), prev, mask, patch)
