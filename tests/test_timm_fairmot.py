"""``timm:<arch>`` models (passbench.models.timm_fairmot) over several timm families: feature levels
against timm's own ``feature_info``, the output contract, normalisation inside the model, skippability
(dense == model bit for bit, sparse == reference with random masks) and BatchNorm folding."""

from __future__ import annotations

import copy

import pytest
import torch

from passbench.models import build_model, measure_model, model_spec, model_table
from passbench.models.timm_fairmot import TimmFairMOT, select_levels

FAMILIES = ["timm:resnet18", "timm:mobilenetv3_large_100", "timm:efficientnet_b0", "timm:regnetx_002",
            "timm:convnext_atto"]
# The layer-by-layer skip tests take 5-10 s per family here on 2 busy cores: the deepest bodies run
# only with the slow tests (CI=true).
_SLOW_SKIP = {"timm:efficientnet_b0", "timm:convnext_atto"}
SKIP_FAMILIES = [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_SKIP else n for n in FAMILIES]
HEADS = {"hm": 1, "wh": 4, "reg": 2, "id": 128}
SW, SH, PATCH = 96, 64, 4  # small input (w x h) and patch: the sparse path runs layer by layer on CPU


def _frames(n: int, seed: int = 0, w: int = SW, h: int = SH) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h, w, generator=g)
    return [(base + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1) for _ in range(n)]


def _randomize_bn(m: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine, so that folding / skipping is really exercised."""
    g = torch.Generator().manual_seed(1)
    for q in m.modules():
        if isinstance(q, torch.nn.BatchNorm2d):
            n = q.num_features
            q.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            q.running_var.copy_(0.5 + torch.rand(n, generator=g))
            q.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            q.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return m


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    torch.manual_seed(0)
    return request.param, _randomize_bn(build_model(request.param)).eval()


def test_select_levels_hand_examples():
    assert select_levels([2, 4, 8, 16, 32]) == [1, 2, 3, 4]
    assert select_levels([2, 4, 4, 8, 16, 32, 64]) == [2, 3, 4, 5]  # deepest level per stride; no 64
    assert select_levels([4, 8, 16]) == [0, 1, 2]
    for bad in ([16, 16, 16], [2, 8, 16, 32], [4, 16, 32]):
        with pytest.raises(ValueError, match="strides 4, 8"):
            select_levels(bad, "x")


def test_levels_follow_timm_feature_info(model):
    """The levels used are timm's own stride-4/8/16/32 levels (read from a full features_only body)."""
    import timm

    name, m = model
    info = timm.create_model(name[5:], pretrained=False, features_only=True).feature_info
    red, ch = info.reduction(), info.channels()
    want = [max(i for i, r in enumerate(red) if r == s) for s in (4, 8, 16, 32)]
    assert m.levels == want and m.strides == [4, 8, 16, 32]
    assert m.channels == [ch[i] for i in want] == m.neck.in_channels
    assert m.neck.out_ch == 32 and m.hm[0].out_channels == 64  # the light model's neck / head_conv


@pytest.mark.parametrize("hw", [(SH, SW), (100, 148)])
def test_forward_contract(model, hw):
    name, m = model
    h, w = hw
    with torch.no_grad():
        out = m(torch.rand(2, 3, h, w))
    assert set(out) == set(HEADS)
    for k, c in HEADS.items():
        assert out[k].shape == (2, c, -(-h // 4), -(-w // 4)), (name, k, hw)
        assert torch.isfinite(out[k]).all(), (name, k)
    torch.testing.assert_close(m.hm[-1].bias, torch.full((1,), -2.19))


def test_normalisation_inside_the_model():
    """normalize=True on x == the same weights with normalize=False on (x - ImageNet mean) / std."""
    torch.manual_seed(0)
    m = _randomize_bn(build_model("timm:resnet18")).eval()
    raw = copy.deepcopy(m)
    raw.normalize = False
    x = torch.rand(1, 3, SH, SW)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a, b = m(x), raw((x - mean) / std)
    for k in HEADS:
        torch.testing.assert_close(a[k], b[k])
    assert "mean" not in m.state_dict()  # not persistent: checkpoints hold weights only


@pytest.mark.parametrize("name", SKIP_FAMILIES)
def test_skippable_dense_equals_model(name):
    skip = pytest.importorskip("passbench.skip")
    torch.manual_seed(0)
    m = _randomize_bn(build_model(name)).eval()
    dense = skip.make_skippable(copy.deepcopy(m), "dense", patch_size=PATCH, execution="reference")
    assert len(skip.skippable_layers(dense)) == sum(isinstance(q, torch.nn.Conv2d) for q in m.modules())
    with torch.no_grad():
        for t, x in enumerate(_frames(2, seed=1)):
            d, ref = dense(x), m(x)
            for k in HEADS:
                torch.testing.assert_close(d[k], ref[k], rtol=0, atol=0, msg=f"{name} dense {k} t={t}")


@pytest.mark.parametrize("name", SKIP_FAMILIES)
def test_sparse_equals_reference_with_random_masks(name):
    """Random patch masks (method "fixed", keep 0.5) on every conv over 3 frames: sparse == reference."""
    skip = pytest.importorskip("passbench.skip")
    torch.manual_seed(0)
    m = _randomize_bn(build_model(name)).eval()
    frames = _frames(3, seed=1)
    with torch.no_grad():
        plain = [m(x) for x in frames]
    kw = dict(patch_size=PATCH, keep=0.5, seed=3)
    ref = skip.make_skippable(copy.deepcopy(m), "fixed", execution="reference", **kw)
    sparse = skip.make_skippable(m, "fixed", execution="sparse", **kw)
    with torch.no_grad():
        for t, x in enumerate(frames):
            r, s = ref(x), sparse(x)
            for k in HEADS:
                tol = 1e-4 + 1e-5 * float(r[k].abs().max())
                torch.testing.assert_close(s[k], r[k], rtol=1e-4, atol=tol, msg=f"{name} sparse {k} t={t}")
            if t > 0:  # skipping changed the output: the test is not vacuous
                assert not torch.allclose(r["hm"], plain[t]["hm"], atol=1e-6), name
    assert 0.3 < skip.collect_stats(sparse)["patch_skip_rate"] < 0.7
    assert any(q.last_path == "sparse" for _, q in skip.skippable_layers(sparse))


# timm's BatchNormAct2d (EfficientNet, MobileNetV3, RegNet) is a BatchNorm2d subclass that also applies
# its activation: folding must keep the activation (the runner folds BN in every row by default).
@pytest.mark.parametrize("name", FAMILIES)
def test_fold_batchnorm_keeps_outputs(name):
    from passbench.skip import fold_batchnorm

    torch.manual_seed(0)
    m = _randomize_bn(build_model(name)).eval()
    folded = copy.deepcopy(m)
    assert fold_batchnorm(folded) >= 7  # at least the neck's 7 conv-BN pairs (and the body's)
    x = torch.rand(1, 3, SH, SW)
    with torch.no_grad():
        a, b = m(x), folded(x)
    for k in HEADS:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-4)


def test_names_everywhere_and_errors():
    assert model_spec("timm:resnet18").family == "timm_fairmot"
    t = model_table(["timm:resnet18", "fairmot_mbv2"], input_wh=(SW, SH), measure=False)
    assert list(t.name) == ["fairmot_mbv2", "timm:resnet18"]
    assert measure_model("timm:resnet18", (SW, SH), "meta") == measure_model("timm:resnet18", (SW, SH), "cpu")
    assert isinstance(build_model("timm:resnet18", pretrained=None), TimmFairMOT)
    with pytest.raises(ValueError, match="expected none, imagenet or the path"):
        build_model("timm:resnet18", pretrained="imagenet21k")
    with pytest.raises(KeyError, match="did you mean timm:resnet18"):
        build_model("timm:resnet1")
    with pytest.raises(ValueError, match=r"strides \[16, 16, 16\]"):
        build_model("timm:vit_tiny_patch16_224")
    with pytest.raises(KeyError, match="resnet1"):
        model_spec("timm:resnet1")
