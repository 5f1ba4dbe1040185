"""Native gather / scatter (``skip.native``, C++ built on first use) against the PyTorch ops it replaces.

Skipped (with the reason) where the library cannot be built: the kernel then runs its PyTorch ops.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench.skip import native, nhwc, sparse
from test_sparse import LAYERS, make

CL = torch.channels_last


@pytest.fixture(scope="module")
def built():
    if not native.available():
        pytest.skip(f"native gather/scatter not built here: {native.unavailable_reason()}")


@pytest.mark.parametrize("layer", LAYERS, ids=[l[0] for l in LAYERS])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@torch.no_grad()
def test_native_and_pytorch_paths_give_the_same_bits(built, layer, residual, dtype, monkeypatch):
    conv, x, prev, grid, P = make(layer, fmt_x=CL, fmt_out=CL)
    conv = conv.to(dtype)
    x, prev = x.to(dtype), prev.to(dtype)
    g = torch.Generator().manual_seed(1)
    for keep in (0.3, 0.7):
        mask = torch.rand(grid, generator=g) < keep
        outs = {}
        for nat in (True, False):
            monkeypatch.setattr(nhwc, "use_native", lambda t, nat=nat: nat)
            outs[nat] = sparse.sparse_conv2d(x, conv, prev, mask, P, residual=residual)
        assert outs[True][1] == outs[False][1]
        assert torch.equal(outs[True][0], outs[False][0])


@torch.no_grad()
def test_gather_and_scatter_rows_by_hand(built):
    x2d = torch.arange(12.0).view(4, 3)  # rows 0..3
    table = torch.tensor([[0, -1, 3], [2, 2, -1]])
    got = native.gather_rows(x2d, table, torch.tensor([1, 0]))
    want = torch.tensor([[6.0, 7, 8], [6, 7, 8], [0, 0, 0], [0, 1, 2], [0, 0, 0], [9, 10, 11]])
    assert torch.equal(got, want)
    out = torch.zeros(4, 3)
    native.scatter_rows(out, torch.tensor([[1, -1], [3, 0]]), torch.tensor([1]), torch.ones(2, 3) * 5, False)
    assert torch.equal(out, torch.tensor([[5.0] * 3, [0] * 3, [0] * 3, [5] * 3]))
    native.scatter_rows(out, torch.tensor([[1, -1], [3, 0]]), torch.tensor([1]), torch.ones(2, 3), True)
    assert torch.equal(out[0], torch.tensor([6.0] * 3)) and torch.equal(out[3], torch.tensor([6.0] * 3))
    with pytest.raises(RuntimeError, match="patch index out of range"):
        native.gather_rows(x2d, table, torch.tensor([2]))
    with pytest.raises(RuntimeError, match="int64"):
        native.gather_rows(x2d, table.int(), torch.tensor([0]))


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(native, "_STATE", {})
    monkeypatch.setenv(native.ENV, "0")
    assert not native.available() and native.unavailable_reason() == "PASSBENCH_NATIVE=0"


@pytest.mark.parametrize("hw", [(16, 24), (15, 22)], ids=["whole", "partial-edge"])
@torch.no_grad()
def test_native_blends_equal_the_pytorch_blends(built, hw, monkeypatch):
    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, 6, *hw, generator=g).contiguous(memory_format=CL)
    prev = torch.randn(2, 6, *hw, generator=g).contiguous(memory_format=CL)
    mask = torch.rand(2, -(-hw[0] // 4), -(-hw[1] // 4), generator=g) < 0.5
    res = {}
    for nat in (True, False):
        monkeypatch.setattr(nhwc, "use_native", lambda t, nat=nat: nat)
        a, b = y.clone(), prev.clone()
        res[nat] = (nhwc.blend_skipped(y.clone(), prev, mask, 4), nhwc.blend_and_update(a, b, mask, 4), b)
    for u, v in zip(res[True], res[False]):
        assert torch.equal(u, v)
    x2d, z = torch.arange(8.0).view(4, 2), torch.zeros(4, 2)
    native.copy_rows(z, x2d, torch.tensor([[3, -1], [0, 1]]), torch.tensor([0]))
    assert torch.equal(z, torch.tensor([[0.0, 0], [0, 0], [0, 0], [6, 7]]))
