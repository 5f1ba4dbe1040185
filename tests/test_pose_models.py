"""passbench.models.pose: the output contract, the integral decoders against hand-worked examples,
parameters / MACs against REFERENCE.md 1.1, 1.2, 1.6 and 5, upstream state-dict layout, and patch
skipping (every conv wrapped; sparse == reference with random masks)."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from passbench.metrics.cost import count_macs, macs_by_module
from passbench.models import MODEL_SPECS, MODELS, build_model, count_params, measure_model
from passbench.models.pose import POSE_MODELS
from passbench.models.pose.common import soft_argmax_3d, soft_argmax_locmap
from passbench.models.pose.locmap import bone_lengths, decode_maps

SMALL = (128, 128)  # (H, W) test input: every family builds at it (LPSKI needs multiples of 64)
SKIP_HW, PATCH = (64, 64), 4  # skipping tests: smaller still (the sparse path runs layer by layer on CPU)
VOLUMETRIC = {"mhp_lpski", "mhp_lpski_w075", "mhp_lpski_w05", "mhp_lpwo", "mhp_lpwo_w05", "mhp_lpres", "posenet_r50"}


def _frames(n: int, seed: int = 0, hw: tuple[int, int] = SMALL) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, *hw, generator=g)
    return [(base + 0.05 * torch.randn(1, 3, *hw, generator=g)).clamp(0, 1) for _ in range(n)]


def _calibrated(name: str, hw: tuple[int, int]) -> nn.Module:
    """A random-init model with BatchNorm statistics of random images, in eval mode.

    With the init statistics (mean 0, var 1) activations shrink layer after layer and the outputs
    barely depend on the input (REFERENCE.md 1.2 notes the same for upstream's init), which would
    make a skipping test vacuous.
    """
    torch.manual_seed(0)
    m = build_model(name, input_hw=hw)
    for q in m.modules():
        if isinstance(q, nn.BatchNorm2d):
            q.reset_running_stats()
            q.momentum = None  # cumulative average over the calibration batch
    m.train()
    with torch.no_grad():
        m(torch.rand(4, 3, *hw, generator=torch.Generator().manual_seed(5)))
    return m.eval()


def _maps(out: dict) -> list[str]:
    return [k for k in ("coords", "heatmaps", "locmaps") if k in out]


def test_registry_names_rows_and_errors():
    assert set(POSE_MODELS) <= set(MODELS.names())
    rows = {n: MODEL_SPECS[n].paper_row for n in POSE_MODELS if MODEL_SPECS[n].paper_row}
    assert rows == {"mhp_lpski": "MHP", "posenet_r50": "PoseNet", "vnect": "VNect", "movnect": "MoVNect"}
    # The Table 1/2 configs name these models.
    assert {"mhp_lpski", "posenet_r50", "vnect", "movnect"} <= set(POSE_MODELS)
    assert MODEL_SPECS["vnect"].input_wh == (368, 368) and MODEL_SPECS["mhp_lpski"].input_wh == (256, 256)
    with pytest.raises(ValueError, match="no ImageNet weights exist for it"):
        build_model("mhp_lpski", pretrained=True)
    with pytest.raises(ValueError, match="width 0.5 is not buildable"):
        build_model("mhp_lpres", width=0.5)
    with pytest.raises(ValueError, match="multiples of 64"):
        build_model("mhp_lpski", input_hw=(96, 96))


@pytest.mark.parametrize("name", POSE_MODELS)
def test_output_contract(name):
    torch.manual_seed(0)
    m = build_model(name, input_hw=SMALL).eval()
    x = torch.cat(_frames(2))
    with torch.no_grad():
        out = m(x)
    j, d, (ho, wo) = m.num_joints, m.depth_dim, m.output_hw
    assert j == 18 and len(m.joint_set) == 18 and m.joint_set[-1] == "Thorax" and m.depth_range_mm == 2000.0
    assert m.input_hw == SMALL
    assert out["coords"].shape == (2, j, 3) and torch.isfinite(out["coords"]).all()
    c = out["coords"]
    assert (c[..., 0] >= 0).all() and (c[..., 0] <= wo - 1).all() and (c[..., 1] >= 0).all() and (c[..., 1] <= ho - 1).all()
    if name in VOLUMETRIC:
        assert out["heatmaps"].shape == (2, j, d, ho, wo)
        assert (c[..., 2] >= 0).all() and (c[..., 2] <= d - 1).all()
    else:
        assert out["heatmaps"].shape == (2, j, ho, wo) and out["locmaps"].shape == (2, j, 3, ho, wo)
    # Output stride as the paper / upstream: MHP LPSKI 8, LPRES / LPWO / PoseNet 4, VNect / MoVNect 8.
    stride = 8 if name.startswith("mhp_lpski") or name in ("vnect", "movnect") else 4
    assert (ho, wo) == (SMALL[0] // stride, SMALL[1] // stride)
    with pytest.raises(ValueError, match="input must be 128x128"):
        m(torch.rand(1, 3, 64, 128))


def test_soft_argmax_3d_hand_examples():
    j, d, h, w = 2, 4, 3, 5
    hm = torch.zeros(1, j * d, h, w)
    # Joint 0: a dominant peak at (z=2, y=1, x=3) -> coords (3, 1, 2).
    hm[0, 0 * d + 2, 1, 3] = 60.0
    # Joint 1: two equal peaks at (z=0, y=0, x=0) and (z=3, y=2, x=4) -> their midpoint (2, 1, 1.5).
    hm[0, 1 * d + 0, 0, 0] = 60.0
    hm[0, 1 * d + 3, 2, 4] = 60.0
    coords, vol = soft_argmax_3d(hm, j, d)
    torch.testing.assert_close(coords, torch.tensor([[[3.0, 1.0, 2.0], [2.0, 1.0, 1.5]]]), atol=1e-5, rtol=0)
    assert vol.shape == (1, j, d, h, w)
    # A flat volume decodes to the centre of every axis: ((w-1)/2, (h-1)/2, (d-1)/2).
    flat, _ = soft_argmax_3d(torch.zeros(1, j * d, h, w), j, d)
    torch.testing.assert_close(flat[0, 0], torch.tensor([2.0, 1.0, 1.5]))
    # MHP's weighting arange(1..N) - 1 (main/model.py) on random logits: the same numbers.
    g = torch.Generator().manual_seed(0)
    hm = torch.randn(2, j * d, h, w, generator=g)
    p = torch.softmax(hm.view(2, j, -1), 2).view(2, j, d, h, w)
    mhp = torch.stack([(p.sum((2, 3)) * torch.arange(1, w + 1)).sum(-1) - 1,
                       (p.sum((2, 4)) * torch.arange(1, h + 1)).sum(-1) - 1,
                       (p.sum((3, 4)) * torch.arange(1, d + 1)).sum(-1) - 1], -1)
    torch.testing.assert_close(soft_argmax_3d(hm, j, d)[0], mhp)
    with pytest.raises(ValueError, match="expected J\\*D"):
        soft_argmax_3d(torch.zeros(1, 7, 2, 2), j, d)


def test_location_map_decoding_hand_example():
    j, h, w, d = 1, 4, 6, 64
    hm = torch.full((1, j, h, w), -50.0)
    hm[0, 0, 2, 3] = 50.0  # heatmap peak at x=3, y=2
    z = torch.zeros(1, j, h, w)
    z[0, 0, 2, 3] = 5.0  # Z location map there: 5 bins in front of the root
    torch.testing.assert_close(soft_argmax_locmap(hm, z), torch.tensor([[[3.0, 2.0, 5.0]]]))
    maps = torch.cat([hm, torch.ones_like(z), 2 * torch.ones_like(z), z], 1)  # H, X, Y, Z
    out = decode_maps(maps, j, d)
    torch.testing.assert_close(out["coords"], torch.tensor([[[3.0, 2.0, 5.0 + d / 2]]]))  # z + D/2: root at D/2
    assert out["locmaps"].shape == (1, j, 3, h, w) and float(out["locmaps"][0, 0, 1, 0, 0]) == 2.0
    # VNect bone length: sqrt(dX^2 + dY^2 + dZ^2); (3, 4, 0) -> 5.
    deltas = torch.tensor([3.0, 4.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(bone_lengths(deltas, 1), torch.full((1, 1, 1, 1), 5.0))


# ---------------------------------------------------------------- params / MACs vs REFERENCE.md


def _measure(name: str, **kw) -> tuple[int, float]:
    """(params, GMACs) of one (1, 3, H, W) forward at the model's own input, on the meta device."""
    with torch.device("meta"):
        m = build_model(name, **kw).eval()
    h, w = m.input_hw
    return count_params(m), count_macs(m, torch.zeros(1, 3, h, w, device="meta")) / 1e9


def test_mhp_lpski_params_and_macs_exact():
    """REFERENCE.md 1.1 measured the upstream code: 3,500,064 / 0.4755 GMACs (w1.0), 1,364,336 / 0.2551 (w0.5)."""
    p, g = _measure("mhp_lpski")
    assert p == 3_500_064 and round(g, 4) == 0.4755
    p, g = _measure("mhp_lpski_w05")
    assert p == 1_364_336 and round(g, 4) == 0.2551


def test_mhp_lpwo_j21_params():
    """REFERENCE.md 1.1: LPWO with J=21 is 4.08 M (the closest to the MHP paper's 4.07 M)."""
    p, _ = _measure("mhp_lpwo", num_joints=21)
    assert round(p / 1e6, 2) == 4.08


def test_posenet_params_and_macs():
    """REFERENCE.md 1.2 / 5: 34.29 M, 8.43 GMACs (J=18, D=64, 256x256); MHP's table quotes 34.34 M = J=21."""
    p, g = _measure("posenet_r50")
    assert round(p / 1e6, 2) == 34.29 and round(g, 2) == 8.43
    p, _ = _measure("posenet_r50", num_joints=21)
    assert round(p / 1e6, 2) == 34.34


def test_vnect_params_and_macs():
    """REFERENCE.md 5 (ocean-joo port, J=17, 256x256): 14.57 M, 6.00 GMACs, held to 0.1 %. MHP's table:
    14.60 M (J=21 as VNect): held to 0.5 % (BN instead of the Caffe model's folded biases)."""
    p, g = _measure("vnect", num_joints=17, input_hw=(256, 256))
    assert p / 1e6 == pytest.approx(14.57, rel=1e-3) and g == pytest.approx(6.00, rel=1e-3)
    p, _ = _measure("vnect", num_joints=21)
    assert p / 1e6 == pytest.approx(14.60, rel=5e-3)


def test_movnect_params_near_paper():
    """MHP's table: MoVNect 1.03 M (REFERENCE.md 1.1): J=18 held to 1 %, J=17 (Human3.6M) and J=21
    (MPI-INF-3DHP, VNect's set) to 1.5 %. The ocean-joo port (2.12 M, REFERENCE.md 1.6) is twice that."""
    p, _ = _measure("movnect")
    assert p / 1e6 == pytest.approx(1.03, rel=0.01)
    for j in (17, 21):
        p, _ = _measure("movnect", num_joints=j)
        assert p / 1e6 == pytest.approx(1.03, rel=0.015), j


def test_posenet_deconv_share_of_macs():
    """The three ConvTranspose2d (not patch-skippable) by the analytic formula Cin*Hin*Win*Cout*k^2."""
    with torch.device("meta"):
        m = build_model("posenet_r50").eval()
    by = macs_by_module(m, torch.zeros(1, 3, 256, 256, device="meta"))
    want = 2048 * 8 * 8 * 256 * 16 + 256 * 16 * 16 * 256 * 16 + 256 * 32 * 32 * 256 * 16
    assert by["head.deconv_layers"] == want
    assert 0.2 < want / by[""] < 0.25  # about a fifth of the model


def test_meta_count_equals_cpu_count():
    assert measure_model("mhp_lpski", device="meta") == measure_model("mhp_lpski", device="cpu")


# ---------------------------------------------------------------- upstream layout


def test_mhp_state_dict_matches_upstream_layout():
    """REFERENCE.md 1.1: the upstream LPSKI state dict has 397 keys; names as upstream's CustomNet."""
    m = build_model("mhp_lpski")
    sd = m.state_dict()
    assert len(sd) == 397
    # Names read off upstream lpnet_ski_concat.py / model.py (backbone.<module>.<Sequential index>).
    shapes = {"backbone.first_conv.0.weight": (48, 3, 3, 3), "backbone.first_conv.2.weight": (48,),  # PReLU
              "backbone.inv_residual.0.conv.0.0.weight": (48, 1, 3, 3),  # t=1: depthwise first
              "backbone.inv_residual.1.conv.0.0.weight": (384, 64, 1, 1),  # t=6: 64 * 6 expansion
              "backbone.inv_residual.16.conv.2.weight": (320, 960, 1, 1),
              "backbone.last_conv.0.weight": (2048, 320, 1, 1),
              "backbone.deconv0.0.weight": (96, 2048 + 96, 1, 1), "backbone.deconv0.0.bias": (96,),
              "backbone.deconv0.3.weight": (256, 96, 3, 3), "backbone.deconv1.0.weight": (64, 256 + 64, 1, 1),
              "backbone.deconv2.0.weight": (48, 256 + 48, 1, 1), "backbone.final_layer.weight": (18 * 32, 256, 1, 1)}
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    assert not any("pixel_" in k for k in sd)  # the normalisation buffers are not persistent
    acts = [q for q in m.modules() if isinstance(q, (nn.ReLU, nn.ReLU6, nn.PReLU))]
    assert acts and all(isinstance(q, nn.PReLU) for q in acts)
    ups = [q for q in m.modules() if isinstance(q, nn.Upsample)]
    assert len(ups) == 3 and all(q.mode == "bilinear" and q.align_corners for q in ups)
    lpres = build_model("mhp_lpres").state_dict()
    assert len(lpres) == 397 and "backbone.deonv0.0.weight" in lpres  # upstream's spelling


@pytest.mark.skipif(not os.environ.get("PASSBENCH_UPSTREAM_MHP"),
                    reason="set PASSBENCH_UPSTREAM_MHP to a checkout of SangbumChoi/MobileHumanPose@a359dd9")
@pytest.mark.parametrize("variant,cls", [("lpski", "LpNetSkiConcat"), ("lpres", "LpNetResConcat"),
                                         ("lpwo", "LpNetWoConcat")])
def test_mhp_equals_the_upstream_code(variant, cls, monkeypatch):
    """The oracle itself: upstream's backbone file (not vendored; its own checkout), same keys in the
    same order, and the same output once upstream's random weights and BN statistics are loaded."""
    root = Path(os.environ["PASSBENCH_UPSTREAM_MHP"]) / "common" / "backbone"
    monkeypatch.setitem(sys.modules, "torchsummary", types.SimpleNamespace(summary=lambda *a, **k: None))
    spec = importlib.util.spec_from_file_location(f"upstream_{variant}", root / f"lpnet_{variant[2:]}_concat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for width in ((1.0, 0.5) if variant != "lpres" else (1.0,)):
        torch.manual_seed(0)
        up = getattr(mod, cls)((256, 256), 18, width_mult=width)
        for p in up.parameters():
            p.data.normal_(0.0, 0.05)
        for q in up.modules():
            if isinstance(q, nn.BatchNorm2d):
                q.running_mean.normal_(0.0, 0.1)
                q.running_var.uniform_(0.5, 1.5)
        wrapped = nn.Module()
        wrapped.backbone = up  # upstream CustomNet holds the backbone as .backbone
        ours = build_model(f"mhp_{variant}", width=width, normalize=False)
        assert list(wrapped.state_dict()) == list(ours.state_dict())
        ours.load_state_dict(wrapped.state_dict())
        x = torch.randn(1, 3, 256, 256)
        with torch.no_grad():
            torch.testing.assert_close(ours.eval().backbone(x), up.eval()(x), rtol=0, atol=0)


def _load_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not os.environ.get("PASSBENCH_UPSTREAM_POSENET"),
                    reason="set PASSBENCH_UPSTREAM_POSENET to a checkout of mks0601/3DMPPE_POSENET_RELEASE@dd025c5")
def test_posenet_equals_the_upstream_code(monkeypatch):
    """Upstream's ResPoseNet from its own files (model_urls and cfg stubbed: torchvision >= 0.13 dropped
    model_urls, and config.py creates output folders): same keys in the same order, same head output."""
    import torchvision.models.resnet as tv_resnet

    root = Path(os.environ["PASSBENCH_UPSTREAM_POSENET"])
    monkeypatch.setattr(tv_resnet, "model_urls", {}, raising=False)
    monkeypatch.setitem(sys.modules, "config", types.SimpleNamespace(
        cfg=types.SimpleNamespace(depth_dim=64, output_shape=(64, 64))))
    monkeypatch.setitem(sys.modules, "nets", types.ModuleType("nets"))
    monkeypatch.setitem(sys.modules, "nets.resnet", _load_file("nets.resnet", root / "common/nets/resnet.py"))
    up_model = _load_file("upstream_posenet_model", root / "main/model.py")
    torch.manual_seed(0)
    up = up_model.ResPoseNet(sys.modules["nets.resnet"].ResNetBackbone(50), up_model.HeadNet(18), 18)
    for p in up.parameters():
        p.data.normal_(0.0, 0.02)
    ours = build_model("posenet_r50", normalize=False)
    assert list(up.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(up.state_dict())
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():  # upstream's soft_argmax calls .cuda(): compare the heatmaps it would read
        torch.testing.assert_close(ours.eval().head(ours.backbone(x)), up.eval().head(up.backbone(x)), rtol=0, atol=0)


def test_mhp_skip_concat_comes_first():
    """Upstream concatenates the skip feature before the main path: cat([x0, z]) (REFERENCE.md 1.1)."""
    m = build_model("mhp_lpski").eval()
    seen = {}
    m.backbone.inv_residual[12].register_forward_hook(lambda mod, i, o: seen.__setitem__("x0", o))
    m.backbone.last_conv.register_forward_hook(lambda mod, i, o: seen.__setitem__("z", o))
    m.backbone.deconv0.register_forward_hook(lambda mod, i, o: seen.__setitem__("in", i[0]))
    with torch.no_grad():
        m(torch.rand(1, 3, 256, 256))
    torch.testing.assert_close(seen["in"], torch.cat([seen["x0"], seen["z"]], 1), rtol=0, atol=0)


def test_posenet_layout():
    m = build_model("posenet_r50")
    sd = m.state_dict()
    assert "backbone.layer4.2.conv3.weight" in sd and "head.final_layer.weight" in sd and "backbone.fc.weight" not in sd
    deconvs = [q for q in m.head.deconv_layers if isinstance(q, nn.ConvTranspose2d)]
    assert len(deconvs) == 3
    assert all(q.kernel_size == (4, 4) and q.stride == (2, 2) and q.padding == (1, 1) and q.bias is None and
               q.out_channels == 256 for q in deconvs)
    assert m.head.final_layer.out_channels == 18 * 64 and (m.output_hw, m.depth_dim) == ((64, 64), 64)


# ---------------------------------------------------------------- patch skipping

_WIDTHS = {"mhp_lpski_w075", "mhp_lpski_w05", "mhp_lpwo"}  # same code as a default-run model: slow only
_BIG = {"mhp_lpres", "posenet_r50"}  # 15-20 s each on 2 busy cores: slow only


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _WIDTHS | _BIG else n
                                  for n in POSE_MODELS])
def test_skippable_dense_equals_model(name):
    skip = pytest.importorskip("passbench.skip")
    m = _calibrated(name, SKIP_HW)
    n_conv = sum(isinstance(q, nn.Conv2d) for q in m.modules())
    dense = skip.make_skippable(copy.deepcopy(m), "dense", patch_size=PATCH, execution="reference")
    assert len(skip.skippable_layers(dense)) == n_conv  # every nn.Conv2d wrapped
    with torch.no_grad():
        for x in _frames(2, seed=1, hw=SKIP_HW):
            d, ref = dense(x), m(x)
            for k in _maps(ref):
                torch.testing.assert_close(d[k], ref[k], rtol=0, atol=0, msg=f"{name} dense {k}")


# The sparse path runs layer by layer on 2 CPU cores: one model per family in the default run.
_SLOW = _WIDTHS | _BIG | {"mhp_lpwo_w05", "vnect"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in POSE_MODELS])
def test_sparse_equals_reference_with_random_masks(name):
    """make_skippable(model, "fixed", keep=0.5) over 3 frames: sparse execution == reference blend."""
    skip = pytest.importorskip("passbench.skip")
    m = _calibrated(name, SKIP_HW)
    frames = _frames(3, seed=1, hw=SKIP_HW)
    with torch.no_grad():
        dense = [m(x) for x in frames]
    kw = dict(patch_size=PATCH, keep=0.5, seed=3)
    ref = skip.make_skippable(copy.deepcopy(m), "fixed", execution="reference", **kw)
    sparse = skip.make_skippable(m, "fixed", execution="sparse", **kw)
    with torch.no_grad():
        for t, x in enumerate(frames):
            r, s = ref(x), sparse(x)
            for k in _maps(r):
                tol = 1e-4 + 1e-5 * float(r[k].abs().max())
                torch.testing.assert_close(s[k], r[k], rtol=1e-4, atol=tol, msg=f"{name} sparse {k} t={t}")
            if t > 0:  # skipping changed the output (the test is not vacuous)
                assert not torch.allclose(r["heatmaps"], dense[t]["heatmaps"], atol=1e-6), name
    stats = skip.collect_stats(sparse)
    assert 0.3 < stats["patch_skip_rate"] < 0.7, stats["patch_skip_rate"]
    assert any(q.last_path == "sparse" for _, q in skip.skippable_layers(sparse))
