"""Wrapper speed paths against the reference path: the dispatcher's dense path that blends into the state
(``nhwc.blend_and_update``), and the state kept without a copy of X_{t-1} when no gate reads it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench import skip
from passbench.skip import skippable_layers

CL = torch.channels_last


def _frames(n, c, h, w, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(b, c, h, w, generator=g)
    return [(base + 0.3 * t * torch.randn(b, c, h, w, generator=g)).contiguous(memory_format=CL) for t in range(n)]


def _net(method, execution, **kw):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 1),
                      nn.ReLU(inplace=True), nn.Conv2d(8, 3, 3, padding=1))
    return skip.make_skippable(m, method, patch_size=4, execution=execution, **kw).eval().to(memory_format=CL)


@pytest.mark.parametrize("method,kw", [("fixed", {"keep": 0.5, "seed": 5}), ("skipconv", {"thresholds": 0.4}),
                                       ("pass_p", {"rates": 0.5, "min_patches": 4, "embed_dim": 8, "hidden": 8})])
def test_dense_dispatch_blends_into_the_state_exactly(method, kw, monkeypatch):
    """Forced dense dispatch (channels-last: blend_and_update), in-place consumers in the net and a caller that
    scribbles on every output: every frame equals the reference path's."""
    xs = _frames(7, 4, 18, 23, seed=3)
    ref_model = _net(method, "reference", **kw)
    with torch.no_grad():
        ref = [ref_model(x).clone() for x in xs]
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "dense")
    model = _net(method, "auto", **kw)
    with torch.inference_mode():
        for k, x in enumerate(xs):
            y = model(x)
            torch.testing.assert_close(y, ref[k], rtol=1e-5, atol=1e-5, msg=f"frame {k}")
            y.mul_(0)
    assert {m.last_path for _, m in skippable_layers(model)} == {"dense"}


@pytest.mark.parametrize("execution", ["sparse", "auto"])
def test_state_without_input_copy_when_no_gate_reads_it(execution):
    """The random-mask gate never reads X_{t-1}: the wrapper keeps a reference instead of a copy, so a caller
    that overwrites its inputs after each frame changes nothing; a PASS gate (which reads it) keeps a copy."""
    xs = _frames(6, 4, 16, 20, seed=1)
    ref_model, model = _net("fixed", "reference", keep=0.5, seed=2), _net("fixed", execution, keep=0.5, seed=2)
    with torch.no_grad():
        ref = [ref_model(x.clone()).clone() for x in xs]
    with torch.inference_mode():
        for k, x in enumerate(xs):
            x = x.clone()
            torch.testing.assert_close(model(x), ref[k], rtol=1e-5, atol=1e-5, msg=f"frame {k}")
            assert skippable_layers(model)[0][1].state.prev_in.data_ptr() == x.data_ptr()  # no copy
            x.mul_(0)  # the caller reuses its input buffer
    pmodel = _net("pass_p", execution, rates=0.5, min_patches=4, embed_dim=8, hidden=8)
    with torch.inference_mode():
        x = xs[0].clone()
        pmodel(x)
        assert skippable_layers(pmodel)[0][1].state.prev_in.data_ptr() != x.data_ptr()
        assert torch.equal(skippable_layers(pmodel)[0][1].state.prev_in, x)


@pytest.mark.parametrize("execution", ["sparse", "auto"])
def test_undecided_gate_keeps_references_and_the_reference_results(execution):
    """A PASS gate under min_patches never decides: its layer is dense, its state holds references (no copies),
    outputs and every counter equal the reference path's; lowering min_patches mid-stream makes the next
    frame dense (the referenced values may be stale) and the gate decide from the one after."""
    kw = dict(rates=0.5, min_patches=64, embed_dim=8, hidden=8)
    xs = _frames(6, 4, 12, 12, seed=4)  # 3x3 grids of patch 4: under min_patches
    ref_model, model = _net("pass_p", "reference", **kw), _net("pass_p", execution, **kw)
    with torch.no_grad():
        ref = [ref_model(x).clone() for x in xs]
    with torch.inference_mode():
        for k, x in enumerate(xs):
            y = model(x)
            assert torch.equal(y, ref[k]), k
            layer = skippable_layers(model)[-1][1]
            if k:
                assert layer.state.prev_out.data_ptr() == y.data_ptr()  # a reference, not a copy
            y.mul_(0)
    want, got = skip.collect_stats(ref_model), skip.collect_stats(model)
    for key in ("dense_macs", "executed_macs", "gate_macs", "patch_skip_rate", "frames"):
        assert got[key] == want[key], key
    assert [r["gated_frames"] for r in got["layers"]] == [r["gated_frames"] for r in want["layers"]]
    for _, m in skippable_layers(model):
        m.gate.min_patches = 4
    with torch.inference_mode():
        y = model(xs[0])
        assert all(m.last is None and m.last_path == "dense" for _, m in skippable_layers(model))
        model(xs[1])
        assert all(m.last is not None and m.last.active for _, m in skippable_layers(model))
