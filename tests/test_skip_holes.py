"""Edge cases of the skip engine, one test each. Every test here fails without the handling it names,
except those whose docstring or comment says "guard" (they pin a property of that handling).

1. BN folding keeps timm ``BatchNormAct2d``'s activation;  2. NaN: the reference and sparse paths give
one behaviour;  3. a batch of 0;  4. a ``make_skippable`` that fails leaves the model unwrapped;  5. a
shared conv called twice per forward (two streams in one state) is refused;  6. forced-dense dispatch
books the MACs of frames with nothing active;  7. the bfloat16 skipped-pixel count is exact;
8. ``padding="valid"`` / ``"same"`` are taken, and the mid-stream change message says what changed;
9. a shared conv in a submodule called directly (not through the model) is caught too.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.layers import BatchNormAct2d, Conv2dSame
from torch import nn

from passbench import skip
from passbench.skip import SkipConv2d, skippable_layers


def _frames(n, c, h, w, b=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, c, h, w, generator=g).to(dtype) for _ in range(n)]


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, so that folding changes the conv weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(c, generator=g) * 0.2 - 0.1)


def _count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


# ------------------------------------------------------------------------------------------------
# 1. BatchNorm folding keeps timm BatchNormAct2d's activation


@torch.no_grad()
def test_fold_keeps_batchnormact_activation_on_timm_mobilenetv2():
    net = timm.create_model("mobilenetv2_100", pretrained=False).eval()
    _randomize_bn(net)
    n_bna, n_relu6 = _count(net, BatchNormAct2d), _count(net, nn.ReLU6)
    assert n_bna > 30 and n_relu6 > 30  # the layers whose activation a plain BN fold would drop
    folded = copy.deepcopy(net)
    assert skip.fold_batchnorm(folded) == _count(net, nn.BatchNorm2d)
    assert _count(folded, nn.BatchNorm2d) == 0 and _count(folded, nn.ReLU6) == n_relu6
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    want = net(x)
    torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@torch.no_grad()
def test_fold_keeps_batchnormact_on_regnety040_and_skippable_layers():
    from passbench.models import build_model

    net = build_model("regnety_040", pretrained=False).eval()  # 71 BatchNormAct2d (timm ConvNormAct)
    _randomize_bn(net, seed=2)
    assert _count(net, BatchNormAct2d) == 71
    skip.make_skippable(net, "fixed", keep=0.5, seed=1, patch_size=4, execution="sparse", layers=["body.s1.*"])
    folded = copy.deepcopy(net)
    skip.fold_batchnorm(folded)
    assert _count(folded, BatchNormAct2d) == 0
    for x in _frames(2, 3, 64, 64, b=1, seed=3):
        want, got = net(x), folded(x)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4 * float(want[k].abs().max()), msg=k)


class _DoubledBN(nn.BatchNorm2d):
    """A BatchNorm2d subclass whose forward does more than BN: folding must not drop it."""

    def forward(self, x):
        return 2.0 * super().forward(x)


@torch.no_grad()
def test_fold_leaves_unknown_batchnorm_subclasses_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), _DoubledBN(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)).eval()
    _randomize_bn(net)
    x = torch.rand(1, 3, 8, 8)
    want = net(x)
    assert skip.fold_batchnorm(net) == 1  # the plain one only
    assert isinstance(net[1], _DoubledBN)
    torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# 2. NaN: one behaviour on both execution paths


def _nan_stream(n=8, nan_at=2, seed=0):
    xs = _frames(n, 4, 16, 16, b=2, seed=seed)
    xs[nan_at] = xs[nan_at].clone()
    xs[nan_at][0, :, 2:6, 3:7] = float("nan")  # a corrupted region in stream 0 only
    return xs


@pytest.mark.parametrize("method,kw", [
    ("fixed", {"keep": 0.5, "seed": 4}),
    ("skipconv", {"thresholds": 0.05, "refresh_every": 4}),  # (agrees with an arithmetic blend too: a guard)
    ("skipconv_gumbel", {"residual": False}),  # a learned gate: NaN logits give a NaN mask (= skip)
])
@torch.no_grad()
def test_nan_frame_gives_the_same_outputs_on_reference_and_sparse_paths(method, kw):
    outs = {}
    for execution in ("reference", "sparse"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1))
        skip.make_skippable(net, method, patch_size=4, execution=execution, **kw)
        outs[execution] = [net.eval()(x) for x in _nan_stream()]
    for t, (a, b) in enumerate(zip(outs["reference"], outs["sparse"])):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=True, msg=f"frame {t}")
    if method == "skipconv_gumbel":  # NaN scores make a NaN mask, which skips: the corrupted patches keep
        assert torch.isfinite(outs["sparse"][2]).all()  # the previous output
    else:
        assert torch.isnan(outs["sparse"][2]).any()  # computed patches of the NaN frame propagate it
    assert torch.isfinite(outs["sparse"][2][1]).all()  # the other stream is untouched
    if method == "skipconv":  # the residual form recovers at the next dense refresh (frame 4)
        assert all(torch.isfinite(y).all() for y in outs["reference"][4:])


@torch.no_grad()
def test_nan_state_recovers_once_every_patch_is_computed_again():
    """The reference path recovers from a NaN state exactly as the sparse path does: once the NaN
    patches are computed from a finite input (an arithmetic blend would stay NaN forever: 0 * NaN)."""
    for execution in ("reference", "sparse"):
        net = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), "fixed", keep=0.5, seed=1,
                                  patch_size=4, execution=execution).eval()
        xs = _nan_stream(n=4)
        for x in xs[:3]:
            net(x)
        net[0].gate.keep = 1.0  # compute every patch from the finite frame 3
        assert torch.isfinite(net(xs[3])).all(), execution


# ------------------------------------------------------------------------------------------------
# 3. a batch of 0


@pytest.mark.parametrize("execution", ["reference", "sparse", "auto"])
@pytest.mark.parametrize("method,kw", [("fixed", {"keep": 0.5}), ("pass", {}), ("skipconv", {"thresholds": 0.1})])
@torch.no_grad()
def test_empty_batch_runs_every_frame(execution, method, kw):
    net = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), method, patch_size=4,
                              execution=execution, **kw).eval()
    for _ in range(3):
        assert net(torch.rand(0, 4, 16, 16)).shape == (0, 6, 16, 16)
    assert skip.collect_stats(net)["executed_macs"] == 0


# ------------------------------------------------------------------------------------------------
# 4. make_skippable is atomic


def _snapshot(model):
    return list(model.state_dict()), [(n, type(m), id(m)) for n, m in model.named_modules()]


def test_make_skippable_failure_leaves_model_untouched_and_exclude_retry_works():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(4, 2, 1))
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"layer '2'.*exclude=\['2'\]"):
        skip.make_skippable(net, "fixed", keep=0.5)
    assert _snapshot(net) == before
    skip.make_skippable(net, "fixed", keep=0.5, exclude=["2"])  # the retry the message suggests
    assert [n for n, _ in skippable_layers(net)] == ["0", "3"] and type(net[2]) is nn.Conv2d


def test_make_skippable_threshold_count_error_leaves_model_untouched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1))
    before = _snapshot(net)
    with pytest.raises(ValueError, match="3 thresholds for 2"):
        skip.make_skippable(net, "skipconv", thresholds=[0.1, 0.2, 0.3])
    assert _snapshot(net) == before


def test_make_skippable_refuses_conv_subclasses_with_their_own_forward():
    """timm's Conv2dSame pads in its forward: the sparse path would compute a different conv."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Conv2dSame(4, 4, 3, stride=2))
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"layer '1'.*Conv2dSame.*exclude"):
        skip.make_skippable(net, "fixed", keep=0.5)
    assert _snapshot(net) == before


# ------------------------------------------------------------------------------------------------
# 5. a conv module called twice in one forward


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(torch.relu(self.conv(x)))


@torch.no_grad()
def test_shared_conv_called_twice_in_one_forward_is_an_error_naming_it():
    net = skip.make_skippable(_Shared(), "fixed", keep=1.0).eval()
    with pytest.raises(RuntimeError, match=r"'conv' was called twice in one forward"):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(RuntimeError, match="called twice"):  # the failed forward left no stale bookkeeping
        net(torch.rand(1, 4, 16, 16))
    # Calling the layer itself outside a model forward stays allowed (one stream per call sequence).
    x = torch.rand(1, 4, 16, 16)
    torch.testing.assert_close(net.conv(x), net.conv.conv(x))


class _Boom(nn.Module):
    fail = False

    def forward(self, x):
        if self.fail:
            raise RuntimeError("boom")
        return x


@torch.no_grad()
def test_model_forward_after_an_exception_is_counted_afresh():
    """Guard for the fix above (passes before it too): a forward that raised half-way must not make
    the next forward look like a second call of the layers that already ran."""
    net = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), _Boom(), nn.Conv2d(4, 4, 1)),
                              "fixed", keep=0.5).eval()
    net(torch.rand(1, 4, 16, 16))
    net[1].fail = True
    with pytest.raises(RuntimeError, match="boom"):  # raised after layer 0 ran
        net(torch.rand(1, 4, 16, 16))
    net[1].fail = False
    for _ in range(3):
        net(torch.rand(1, 4, 16, 16))


# ------------------------------------------------------------------------------------------------
# 6. forced dense dispatch books the MACs it computed


@torch.no_grad()
def test_forced_dense_dispatch_counts_every_frame(monkeypatch):
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "dense")
    net = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), "fixed", keep=0.0,
                              execution="auto").eval()
    for x in _frames(4, 4, 16, 16):
        net(x)
    st = skip.collect_stats(net)
    per_frame = 2 * 6 * 16 * 16 * 4 * 9  # B Cout Ho Wo Cin k^2
    assert net[0].last_path == "dense"
    assert st["executed_macs"] == st["dense_macs"] == 4 * per_frame  # the dense conv ran on all four
    assert st["mask_macs"] == per_frame  # what the sparse kernel would have run: frame 0 only


# ------------------------------------------------------------------------------------------------
# 7. bfloat16 skipped-pixel count


@torch.no_grad()
def test_bfloat16_skipped_pixel_count_is_exact():
    conv = nn.Conv2d(3, 4, 3, padding=1).to(torch.bfloat16)
    net = skip.make_skippable(nn.Sequential(conv), "fixed", keep=0.5, seed=0, execution="reference").eval()
    for x in _frames(2, 3, 224, 224, b=2, dtype=torch.bfloat16):
        net(x)
    skipped = net[0].last.mask.float() > 0.5  # (2, 28, 28), exactly 0/1 in any dtype
    assert net[0].stats.px_skipped == int(skipped.sum()) * 64  # 8 x 8 output pixels per patch
    assert net[0].stats.px_skipped > 256  # past bfloat16's exact-integer range


# ------------------------------------------------------------------------------------------------
# 8. string padding and the mid-stream change message


@pytest.mark.parametrize("padding,k,dilation", [("valid", 3, 1), ("same", 3, 1), ("same", 5, 2), ("valid", 1, 1)])
@torch.no_grad()
def test_string_padding_equal_to_integer_padding_is_accepted(padding, k, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, k, padding=padding, dilation=dilation)
    ref = copy.deepcopy(conv)
    xs = _frames(3, 4, 17, 14)
    outs = {}
    for execution in ("reference", "sparse"):
        net = skip.make_skippable(nn.Sequential(copy.deepcopy(conv)), "fixed", keep=0.5, seed=2, patch_size=4,
                                  execution=execution).eval()
        outs[execution] = [net(x) for x in xs]
        assert net[0].conv.weight.shape == conv.weight.shape
    torch.testing.assert_close(outs["reference"][0], ref(xs[0]))  # frame 0: dense, same geometry
    for a, b in zip(outs["reference"], outs["sparse"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert conv.padding == padding  # the caller's conv object is not modified


def test_same_padding_that_is_asymmetric_is_refused_clearly():
    net = nn.Sequential(nn.Conv2d(4, 4, 4, padding="same"))
    with pytest.raises(ValueError, match=r"layer '0'.*padding='same'.*asymmetric"):
        skip.make_skippable(net, "fixed", keep=0.5)


@pytest.mark.parametrize("shape,what", [((2, 5, 16, 16), r"channels 4 -> 5"),
                                        ((2, 4, 24, 16), r"resolution 16x16 -> 24x16"),
                                        ((3, 4, 16, 16), r"batch 2 -> 3")])
@torch.no_grad()
def test_mid_stream_change_names_what_changed(shape, what):
    net = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)), "fixed", keep=0.5).eval()
    net(torch.rand(2, 4, 16, 16))
    with pytest.raises(ValueError, match=what) as e:
        net(torch.rand(*shape))
    assert "reset" in str(e.value)
    assert isinstance(net[0], SkipConv2d)


def test_reference_select_has_the_blend_gradient():
    """Guard for the NaN fix: the reference path's select keeps the arithmetic blend's gradients
    (d/dmu = prev - new, d/dprev = mu, d/dnew = 1 - mu), so gate training is unchanged."""
    from passbench.skip.wrapper import SelectSTE

    g = torch.Generator().manual_seed(0)
    mu0 = (torch.rand(2, 1, 4, 5, generator=g) > 0.5).float()
    prev0, new0, w = (torch.randn(2, 3, 4, 5, generator=g) for _ in range(3))
    grads = []
    for fn in (lambda m, p, n: m * p + (1 - m) * n, SelectSTE.apply):
        mu, prev, new = (t.clone().requires_grad_() for t in (mu0, prev0, new0))
        y = fn(mu, prev, new)
        (y * w).sum().backward()
        grads.append((y.detach(), mu.grad, prev.grad, new.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------------
# 9. a submodule holding a shared conv, called directly


class _Root(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(4, 4, 1)
        self.block = _Shared()

    def forward(self, x):
        return self.block(self.stem(x))


@torch.no_grad()
def test_shared_conv_in_a_submodule_called_directly_is_refused_or_exact():
    # The once-per-forward check counted the root model's forwards only: a submodule called on its own ran
    # its shared conv twice in one stream state, the second call skipping to the first (a silent wrong output).
    torch.manual_seed(0)
    net = _Root().eval()
    dense = copy.deepcopy(net)
    skip.make_skippable(net, "fixed", keep=0.5, patch_size=4)
    x = torch.rand(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    want = dense.block(x)
    for _ in range(3):  # a static stream: every skipped patch must take exactly the dense output
        try:
            got = net.block(x)
        except RuntimeError as e:  # refusing is a correct fix too
            assert "called twice" in str(e)
            return
        torch.testing.assert_close(got, want)
