"""SkipConv2d / make_skippable: reference path vs the dense conv, sparse vs reference, residual
formulation, per-stream state, refresh, mask modes, STE gradients, timm / torchvision models."""

import pytest
import timm
import torch
import torchvision
from devices import DEVICES
from torch import nn

from passbench import skip
from passbench.skip import SkipConv2d, dispatch

CONVS = {  # (conv kwargs, input H, W): stride, padding, dilation, groups / depthwise, 1x1, bias, odd sizes
    "3x3": (dict(in_channels=4, out_channels=6, kernel_size=3, padding=1), 16, 16),
    "stride2_odd": (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=False), 19, 13),
    "dilated": (dict(in_channels=4, out_channels=5, kernel_size=3, padding=2, dilation=2), 15, 17),
    "depthwise": (dict(in_channels=6, out_channels=6, kernel_size=5, padding=2, groups=6), 16, 12),
    "grouped_valid": (dict(in_channels=4, out_channels=8, kernel_size=3, groups=2), 14, 14),
    "1x1": (dict(in_channels=4, out_channels=7, kernel_size=1), 9, 16),
}


def _frames(n, c, h, w, b=2, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, h, w, generator=g).to(device) for _ in range(n)]


def _single(conv_kw, method, patch=4, device="cpu", **kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(**conv_kw)).to(device)
    ref = nn.Conv2d(**conv_kw).to(device)
    ref.load_state_dict(model[0].state_dict())
    skip.make_skippable(model, method, patch_size=patch, **kw)
    return model.eval(), ref.eval()


@pytest.mark.parametrize("name", list(CONVS))
@pytest.mark.parametrize("execution", ["reference", "sparse", "auto"])
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_no_skip_is_dense_and_all_skip_is_previous_output(name, execution, device):
    kw, h, w = CONVS[name]
    xs = _frames(3, kw["in_channels"], h, w, device=device)
    model, ref = _single(kw, "fixed", keep=1.0, execution=execution, device=device)
    for x in xs:
        torch.testing.assert_close(model(x), ref(x))
    model, _ = _single(kw, "fixed", keep=0.0, execution=execution, device=device)
    first = model(xs[0])
    for x in xs[1:]:
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CONVS))
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("device", DEVICES)
@torch.no_grad()
def test_sparse_path_equals_reference_path(name, residual, device):
    kw, h, w = CONVS[name]
    xs = _frames(4, kw["in_channels"], h, w, seed=1, device=device)
    outs, stats = {}, {}
    for execution in ("reference", "sparse"):
        model, _ = _single(kw, "fixed", keep=0.4, seed=7, execution=execution, device=device)
        model[0].residual = residual
        outs[execution] = [model(x) for x in xs]
        stats[execution] = skip.collect_stats(model)
    for a, b in zip(outs["reference"], outs["sparse"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # the reference path books the MACs the sparse kernel reports
    assert stats["reference"]["executed_macs"] == stats["sparse"]["executed_macs"]
    assert 0 < stats["sparse"]["executed_macs"] < stats["sparse"]["dense_macs"]


@torch.no_grad()
def test_skipconv_residual_formulation_exact_without_skips():
    kw, h, w = CONVS["stride2_odd"]
    kw = {**kw, "bias": True}
    xs = _frames(3, 4, h, w)
    # threshold 0: "norm < 0" never holds, nothing skipped: prev_out + W * (x_t - x_{t-1}) == conv(x_t)
    model, ref = _single(kw, "skipconv_norm", threshold=0.0, execution="reference")
    assert model[0].residual
    for x in xs:
        torch.testing.assert_close(model(x), ref(x), rtol=1e-5, atol=1e-5)
    model, ref = _single(kw, "skipconv_norm", threshold=1e9, execution="sparse")
    first = model(xs[0])
    for x in xs[1:]:
        torch.testing.assert_close(model(x), first, rtol=0, atol=0)
    assert skip.collect_stats(model)["patch_skip_rate"] == 1.0


@torch.no_grad()
def test_batch_streams_are_independent():
    kw, h, w = CONVS["3x3"]
    model, ref = _single(kw, "skipconv_norm", threshold=1e-3, execution="sparse")
    x0 = torch.rand(2, 4, h, w)
    x1 = x0.clone()
    x1[0] += 0.5  # stream 0 changes everywhere, stream 1 is static
    model(x0)
    y = model(x1)
    mask = model[0].last.mask
    assert mask[0].sum() == 0 and mask[1].min() == 1  # stream 0 computed, stream 1 skipped
    torch.testing.assert_close(y, ref(x1), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_reset_resolution_change_and_refresh():
    kw, h, w = CONVS["3x3"]
    model, ref = _single(kw, "fixed", keep=0.0, execution="reference")
    xs = _frames(3, 4, h, w)
    model(xs[0])
    with pytest.raises(ValueError, match="changed mid-stream"):
        model(torch.rand(2, 4, h + 8, w))
    with pytest.raises(ValueError, match="changed mid-stream"):
        model(torch.rand(3, 4, h, w))  # batch size is part of the stream
    skip.reset(model)
    big = torch.rand(2, 4, h + 8, w)
    torch.testing.assert_close(model(big), ref(big))  # first frame of the new stream: dense
    assert model[0].last is None
    # refresh every 2 frames: frames 0, 2 dense (exact), 1, 3 gated (all skipped with keep 0)
    model, ref = _single(kw, "fixed", keep=0.0, refresh_every=2)
    outs = [model(x) for x in _frames(4, 4, h, w, seed=3)]
    torch.testing.assert_close(outs[2], ref(_frames(4, 4, h, w, seed=3)[2]))
    assert torch.equal(outs[1], outs[0]) and torch.equal(outs[3], outs[2])
    assert model[0].stats.gated_frames == 2 and model[0].stats.frames == 4


@torch.no_grad()
def test_skip_session_keeps_counters_and_drops_state():
    kw, h, w = CONVS["3x3"]
    model, _ = _single(kw, "fixed", keep=0.5)
    with skip.skip_session(model):
        for x in _frames(3, 4, h, w):
            model(x)
    assert model[0].state.prev_in is None
    st = skip.collect_stats(model)
    assert st["frames"] == 3 and 0 < st["patch_skip_rate"] < 1


@torch.no_grad()
def test_mask_modes():
    kw, h, w = CONVS["3x3"]
    xs = _frames(2, 4, h, w)
    model, ref = _single(kw, "fixed", keep=1.0, execution="reference")  # gate: skip nothing
    first = model(xs[0])
    skip.set_mask_mode(model, "inverted")  # skip what the gate keeps -> everything
    torch.testing.assert_close(model(xs[1]), first, rtol=0, atol=0)
    skip.set_mask_mode(model, "off")
    torch.testing.assert_close(model(xs[0]), ref(xs[0]))
    assert model[0].last is None
    with pytest.raises(ValueError, match="mode must be one of"):
        skip.set_mask_mode(model, "positive")


@pytest.mark.parametrize("method,params", [
    ("pass", dict(embed_dim=8, hidden=16, min_patches=4)),
    ("skipconv_gumbel", {}),
], ids=["pass", "gumbel"])
@pytest.mark.parametrize("mode,sign", [("normal", 1.0), ("inverted", -1.0)])
def test_ste_gradient_of_the_reference_path_is_the_hand_worked_chain_rule(method, params, mode, sign):
    # One gated conv, loss L = sum(W * y). In the reference path y = where(skip, y_{t-1}, conv(x_t)), so with
    # the straight-through estimator dL/d skip_prob of patch k is sum over the patch's output pixels and
    # channels of W * (y_{t-1} - conv(x_t)) (negated where the mask is inverted). The gate parameters'
    # gradient must then equal that of sum_k prob_k * G_k: a zero STE gives 0, a reversed one the negative.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv)
    skip.make_skippable(model, method, patch_size=4, execution="reference", **params)
    x0, x1 = _frames(2, 3, 16, 16)
    with torch.no_grad():
        y0 = nn.functional.conv2d(x0, conv.weight, conv.bias, padding=1)  # the stored t-1 output, by hand
        y1 = nn.functional.conv2d(x1, conv.weight, conv.bias, padding=1)
    model.train()
    with torch.no_grad():
        model(x0)
    skip.set_mask_mode(model, mode)
    w = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    y = model(x1)
    layer = model[0]
    assert layer.last_path == "reference" and layer.last.active
    g_patch = (w * (y0 - y1)).sum(1).view(2, 4, 4, 4, 4).sum((2, 4))  # (B, Hp, Wp): dL/d skip mask per patch
    params_ = skip.gate_parameters(model)
    want = torch.autograd.grad((sign * layer.last.prob * g_patch).sum(), params_, retain_graph=True)
    (y * w).sum().backward()
    assert sum(float(g.abs().sum()) for g in want) > 1e-6  # the check is not vacuous
    for q, g in zip(params_, want):
        torch.testing.assert_close(q.grad, g, rtol=1e-4, atol=1e-7)


def test_budget_loss_is_mac_weighted_hinge():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 1))
    skip.make_skippable(model, "skipconv_gumbel", patch_size=4)
    x0, x1 = _frames(2, 3, 16, 16)
    model.train()
    model(x0)
    model(x1)
    layers = [m for _, m in skip.skippable_layers(model)]
    w = torch.tensor([16 * 16 * 8 * 3 * 9, 16 * 16 * 4 * 8 * 1], dtype=torch.float)
    fire = torch.stack([1 - m.last.prob.mean() for m in layers])
    expect = (w / w.sum() * torch.relu(fire - 0.3)).sum()
    loss = skip.budget_loss(model, 0.3)
    torch.testing.assert_close(loss, expect)
    loss.backward()
    assert all(q.grad is not None for q in skip.gate_parameters(model))


@torch.no_grad()
def test_norm_thresholds_and_residual_norms():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1))
    skip.make_skippable(model, "skipconv", gate="norm", thresholds=[0.1, 0.2])
    assert [m.gate.threshold for _, m in skip.skippable_layers(model)] == [0.1, 0.2]
    x0, x1 = _frames(2, 3, 16, 16)
    model(x0)
    skip.set_mask_mode(model, "off")
    model(x1)  # norms are read on dense passes too (threshold calibration)
    norms = skip.residual_norms(model)
    assert [tuple(n.shape) for n in norms] == [(2, 2, 2), (2, 2, 2)]
    torch.testing.assert_close(norms[0], (x1 - x0).abs().mean(1).view(2, 2, 8, 2, 8).mean((2, 4)))
    with pytest.raises(ValueError, match="2 norm-gated layers"):
        skip.set_thresholds(model, [1.0])


def _assert_wrapped_model_matches(model, x_shape):
    torch.manual_seed(0)
    model.eval()
    frames = [torch.rand(*x_shape) for _ in range(3)]
    with torch.no_grad():
        dense = [model(x) for x in frames]
        n_conv = sum(isinstance(m, nn.Conv2d) for m in model.modules())
        skip.make_skippable(model, "fixed", keep=1.0, patch_size=4)
        assert len(skip.skippable_layers(model)) == n_conv
        with skip.skip_session(model):
            for x, d in zip(frames, dense):
                torch.testing.assert_close(model(x), d, rtol=1e-4, atol=1e-4)
        skip.reset(model)
        for m in skip.skippable_layers(model):
            m[1].gate.keep = 0.5
        with skip.skip_session(model):
            outs = [model(x) for x in frames]
    assert outs[-1].shape == dense[-1].shape and torch.isfinite(outs[-1]).all()
    st = skip.collect_stats(model)
    assert 0.3 < st["patch_skip_rate"] < 0.7 and st["executed_macs"] < st["dense_macs"]


def test_timm_mobilenetv2_wraps_and_runs():
    _assert_wrapped_model_matches(timm.create_model("mobilenetv2_100", pretrained=False), (1, 3, 64, 64))


def test_torchvision_resnet18_wraps_and_runs():
    _assert_wrapped_model_matches(torchvision.models.resnet18(), (2, 3, 64, 64))


def test_pass_gates_on_torchvision_model_three_frames():
    model = torchvision.models.resnet18().eval()
    skip.make_skippable(model, "pass_p", patch_size=4, layers=["layer*"], exclude=["*downsample*"], rates=0.5)
    names = [n for n, _ in skip.skippable_layers(model)]
    assert names and all(n.startswith("layer") and "downsample" not in n for n in names)
    with torch.no_grad(), skip.skip_session(model):
        for _ in range(3):
            y = model(torch.rand(1, 3, 96, 96))  # layer1 at 24x24: a 6x6 grid, over min_patches
    assert y.shape == (1, 1000)
    assert skip.collect_stats(model)["gate_macs"] > 0


def test_paper_linear_head_via_input_shape_and_resolution_error():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    skip.make_skippable(model, "pass", patch_size=4, head="linear", embed_dim=8, hidden=32, rates=0.5,
                        input_shape=(3, 32, 32))
    assert [m.gate.grid for _, m in skip.skippable_layers(model)] == [(8, 8), (4, 4)]
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
        model(torch.rand(1, 3, 32, 32))
        skip.reset(model)
        model(torch.rand(1, 3, 48, 32))
        with pytest.raises(ValueError, match="fixed-resolution classifier"):
            model(torch.rand(1, 3, 48, 32))


def test_clear_errors():
    with pytest.raises(ValueError, match="has no nn.Conv2d"):
        skip.make_skippable(nn.Sequential(nn.Linear(3, 3)), "pass")
    with pytest.raises(ValueError, match="match no Conv2d"):
        skip.make_skippable(nn.Sequential(nn.Conv2d(3, 3, 1)), "pass", layers=["backbone.*"])
    with pytest.raises(TypeError, match="method='fixed'"):
        skip.make_skippable(nn.Sequential(nn.Conv2d(3, 3, 1)), "fixed", threshold=0.1)
    with pytest.raises(KeyError, match="unknown methods"):
        skip.make_skippable(nn.Sequential(nn.Conv2d(3, 3, 1)), "nope")
    m = skip.make_skippable(nn.Sequential(nn.Conv2d(3, 3, 1)), "dense")
    with pytest.raises(ValueError, match="already has SkipConv2d"):
        skip.make_skippable(m, "pass")
    with pytest.raises(ValueError, match="no SkipConv2d"):
        skip.reset(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_state_dict_keys_and_dense_checkpoint_loading():
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    sd = dense.state_dict()
    model = skip.make_skippable(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)), "skipconv_gumbel")
    assert {"0.conv.weight", "0.conv.bias", "0.gate.proj.weight", "2.conv.weight"} <= set(model.state_dict())
    res = model.load_state_dict(sd, strict=False)
    assert all(".gate." in k for k in res.missing_keys) and not res.unexpected_keys
    assert torch.equal(model[0].conv.weight, dense[0].weight)
    again = skip.make_skippable(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)), "skipconv_gumbel")
    again.load_state_dict(model.state_dict(), strict=True)
    assert isinstance(model[0], SkipConv2d) and model[0].weight is model[0].conv.weight


def test_auto_path_uses_choose_path(monkeypatch):
    kw, h, w = CONVS["3x3"]
    model, _ = _single(kw, "fixed", keep=0.5, execution="auto")
    calls = []
    monkeypatch.setattr(dispatch, "choose_path", lambda *a, **k: calls.append(a) or "sparse")
    with torch.no_grad():
        for x in _frames(2, 4, h, w):
            model(x)
    assert len(calls) == 1 and model[0].last_path == "sparse"


@torch.no_grad()
def test_dense_method_passes_through_and_counts():
    kw, h, w = CONVS["stride2_odd"]
    model, ref = _single(kw, "dense")
    xs = _frames(2, 4, h, w)
    for x in xs:
        assert torch.equal(model(x), ref(x))
    st = skip.collect_stats(model)
    assert st["dense_macs"] == st["executed_macs"] == 2 * 2 * 6 * 10 * 7 * 4 * 9  # frames B Cout Ho Wo Cin k^2
    assert st["patch_skip_rate"] == 0.0 and st["mac_reduction"] == 0.0 and st["gate_macs"] == 0


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("execution", ["sparse", "auto"])
def test_reused_state_buffers_survive_in_place_consumers(mode, execution):
    """The wrapper writes its state into kept buffers (no per-frame allocation) and hands the caller
    a copy: in-place consumers (ReLU(inplace=True)) inside the net, and a caller that scribbles on
    every output it got, must leave every later frame exactly as the reference path gives it."""
    def net(ex):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(8, 8, 1), nn.ReLU(inplace=True), nn.Conv2d(8, 3, 3, padding=1))
        return skip.make_skippable(m, "fixed", keep=0.5, seed=5, patch_size=4, execution=ex).eval()

    xs = _frames(7, 4, 20, 24, b=2, seed=3)
    ref_model, model = net("reference"), net(execution)
    with torch.no_grad():
        ref = [ref_model(x) for x in xs]
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    with ctx:
        for k, x in enumerate(xs):
            y = model(x)
            torch.testing.assert_close(y, ref[k], rtol=1e-5, atol=1e-5, msg=f"frame {k}")
            y.mul_(0)  # the caller owns what it got: scribbling on it must change no state
    paths = {m.last_path for _, m in skip.skippable_layers(model)}
    assert execution != "sparse" or paths == {"sparse"}


@pytest.mark.parametrize("method,kw", [("fixed", {"keep": 0.5, "seed": 2}), ("skipconv", {"thresholds": 0.3})])
@torch.no_grad()
def test_fold_batchnorm_keeps_skipped_outputs(method, kw):
    """Folding BN into wrapped convs changes no output: gates read the (unchanged) conv input, and
    Skip-Conv's bias-free residual form stays exact with the BN scale in W and its shift in prev_out."""
    def net():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
        for bn in (m[1], m[4]):  # non-trivial running statistics
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        return skip.make_skippable(m, method, patch_size=4, execution="sparse", **kw).eval()

    xs = _frames(5, 3, 16, 20, b=1, seed=4)
    plain, folded = net(), net()
    assert skip.fold_batchnorm(folded) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    for x in xs:
        torch.testing.assert_close(folded(x), plain(x), rtol=1e-4, atol=1e-5)
    a, b = skip.collect_stats(plain), skip.collect_stats(folded)
    assert a["executed_macs"] == b["executed_macs"] and 0 < a["patch_skip_rate"] < 1
    with pytest.raises(ValueError, match="eval mode"):
        skip.fold_batchnorm(net().train())


@torch.no_grad()
def test_reference_computed_accumulates_slow_change_until_recomputed():
    """A patch changing by 0.1 per frame under a 0.25 norm threshold: compared with X_{t-1} (the
    papers) it is never recomputed and its output drifts; compared with the input it was last computed
    from (reference="computed") the change accumulates and the patch is recomputed on frame 3."""
    torch.manual_seed(0)
    xs = [torch.zeros(1, 2, 8, 8)]
    for t in range(1, 6):
        x = xs[0].clone()
        x[..., :4, :4] += 0.1 * t  # one 4x4 input patch brightens slowly
        xs.append(x)
    executed = {}
    for ref in ("previous", "computed"):
        m = skip.make_skippable(nn.Sequential(nn.Conv2d(2, 3, 1)), "skipconv", patch_size=4, thresholds=0.25,
                                reference=ref, execution="sparse").eval()
        per_frame = []
        for x in xs:
            before = skip.collect_stats(m)["executed_macs"]
            m(x)
            per_frame.append(skip.collect_stats(m)["executed_macs"] - before)
        executed[ref] = per_frame
    dense = 1 * 3 * 8 * 8 * 2
    assert executed["previous"][0] == dense and executed["previous"][1:] == [0] * 5
    assert executed["computed"][0] == dense
    assert executed["computed"][1:3] == [0, 0] and executed["computed"][3] > 0  # 0.3 > 0.25 on frame 3
    assert executed["computed"][4] == 0  # reference updated on frame 3: 0.1 change again
    with pytest.raises(ValueError, match="reference"):
        skip.make_skippable(nn.Sequential(nn.Conv2d(2, 3, 1)), "fixed", reference="last")


@pytest.mark.parametrize("name", ["3x3", "stride2_odd", "1x1"])
@torch.no_grad()
def test_reference_computed_sparse_equals_reference_path(name):
    kw, h, w = CONVS[name]
    xs = _frames(5, kw["in_channels"], h, w, seed=2)
    outs = {}
    for execution in ("reference", "sparse"):
        model, _ = _single(kw, "fixed", keep=0.4, seed=3, execution=execution, reference="computed")
        outs[execution] = [model(x) for x in xs]
    for a, b in zip(outs["reference"], outs["sparse"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
