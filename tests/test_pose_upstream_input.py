"""What an upstream pose checkpoint must see: the input arithmetic set by the checkpoint's origin
(``model.kwargs.input_range``) and upstream's flip test (``eval.flip_test``) in the pose runner."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from passbench.config import load_config
from passbench.datasets import synthetic_h36m as G
from passbench.models import build_model
from passbench.paths import REPO_ROOT
from passbench.runner import run

FAST = ["speed.enabled=false", "speed.threads=1", "model.fold_bn=false", "model.channels_last=false"]
SMALL = ["model.input_wh=[128,128]", "model.kwargs={input_hw: [128, 128]}"]


def test_input_range_255_is_upstreams_transform():
    """Oracle: upstream's own pipeline, torchvision ``ToTensor`` + ``Normalize(pixel_mean, pixel_std)`` on the
    float32 crop (3DMPPE / MHP ``data/dataset.py``: ``img_patch.astype(np.float32)``, never divided by 255)."""
    from torchvision import transforms

    from passbench.models.pose.common import IMAGENET_MEAN, IMAGENET_STD
    from passbench.pose.crop import to_input

    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    upstream = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    torch.manual_seed(0)
    raw = build_model("mhp_lpski_w05", input_hw=(64, 64), normalize=False).eval()  # the network alone
    up = build_model("mhp_lpski_w05", input_hw=(64, 64), input_range=255).eval()
    ours = build_model("mhp_lpski_w05", input_hw=(64, 64)).eval()
    up.load_state_dict(raw.state_dict())
    ours.load_state_dict(raw.state_dict())
    x = to_input(patch[None])  # (1, 3, 64, 64) in [0, 1], as the runner feeds
    with torch.no_grad():
        want_up = raw(upstream(patch.astype(np.float32))[None])["coords"]  # float input: no /255
        want_ours = raw(upstream(patch)[None])["coords"]  # uint8 input: ToTensor divides by 255
        got_up, got_ours = up(x)["coords"], ours(x)["coords"]
    torch.testing.assert_close(got_up, want_up, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_ours, want_ours, rtol=1e-4, atol=1e-4)
    # the two arithmetics are not the same: upstream's network sees about -2 .. 1110, ours -2.1 .. 2.7
    assert float(up._prepare(x).max()) > 1000 and float(ours._prepare(x).abs().max()) < 3
    with pytest.raises(ValueError, match="input_range must be > 0"):
        build_model("mhp_lpski_w05", input_range=0)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    G.generate(root, subjects=(9,), actions=(3, 14), frames=66, cams=(1,), size=128)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from passbench.train.common import make_cfg, save_final

    torch.manual_seed(0)
    model = build_model("mhp_lpski_w05", input_hw=(128, 128))
    with torch.no_grad():  # peaky, input-dependent heatmaps (random init decodes every joint near the grid centre,
        model.backbone.final_layer.weight.mul_(200.0)  # where a mirror changes nothing)
    path = tmp_path_factory.mktemp("w") / "final.pt"
    save_final(path, cfg=make_cfg("task", {"task": "pose", "model": "mhp_lpski_w05",
                                           "model_kwargs": {"input_hw": [128, 128]}}), model=model, skip=None)
    return path


def _cfg(*overrides: str):
    return load_config(REPO_ROOT / "configs/table1/mhp.yaml", [*FAST, *SMALL, "dataset.sequences=[S9]", *overrides])


def _by_hand(cfg, root, models, flip: bool) -> dict:
    """Scores with the coords predicted outside the runner: ``models[0]`` on each crop and, for a flip test,
    ``models[1]`` on its mirror, one forward each (upstream ``main/test.py`` runs the two views one after the
    other), averaged through ``passbench.pose.decode.flip_coords``."""
    from passbench.paths import DataRoot
    from passbench.pose.crop import crop_image, to_input
    from passbench.pose.data import stream_boxes
    from passbench.pose.decode import MapSpec, flip_coords
    from passbench.runner.pose import Scores, load_streams, pose_metrics
    from passbench.skip import reset, skippable_layers

    spec = MapSpec.of(models[0])
    data = load_streams(cfg, DataRoot(root, "x", False), spec.input_hw)
    scores = Scores()
    for st in data:
        boxes, own = stream_boxes(st, spec.input_hw)
        for m in models:
            if skippable_layers(m):
                reset(m)
        coords, frames = [], []
        last = int(np.flatnonzero(st.eval_mask)[-1])
        for i, img in zip(range(last + 1), st.images()):
            x = to_input(crop_image(img, boxes[i], spec.input_hw)[None])
            with torch.no_grad():
                c = models[0](x)["coords"]
                if flip:
                    c = (c + flip_coords(models[1](x.flip(-1))["coords"], spec.output_hw[1])) / 2
            if own[i]:
                coords.append(c[0].numpy())
                frames.append(st[i])
        scores.add(np.stack(coords).astype(np.float64), frames, spec, st.moving)
    return pose_metrics(scores, 0)


def _model(cfg, weights, method_params=None):
    from passbench.runner.core import load_weights

    m = build_model(cfg.model.name, **cfg.model.kwargs).eval()
    return load_weights(m, weights, cfg)[0].eval()


def test_flip_test_equals_upstreams_two_forwards_dense(syn, weights):
    cfg = _cfg(f"model.weights={weights}", "eval.flip_test=true")
    rec = run(cfg, data_root=syn, write=False)
    m = _model(cfg, weights)
    want = _by_hand(cfg, syn, [m, m], flip=True)
    assert rec["metrics"]["mpjpe_mm_all_frames"] == pytest.approx(want["mpjpe_mm_all_frames"], abs=1e-3)
    plain = run(_cfg(f"model.weights={weights}"), data_root=syn, write=False)
    assert abs(plain["metrics"]["mpjpe_mm_all_frames"] - rec["metrics"]["mpjpe_mm_all_frames"]) > 1.0
    assert rec["cost"]["views_per_frame"] == 2 and plain["cost"]["views_per_frame"] == 1
    assert rec["cost"]["gmacs_dense"] == plain["cost"]["gmacs_dense"]  # per view, one forward


def test_flip_test_runs_the_mirror_as_its_own_skip_stream(syn, weights):
    """A keyframe gate reuses every gated output of the previous frame on half of the frames: with the mirror
    in the same batch, each view must reuse *its own* previous output (two models, one per view, by hand)."""
    params = ("method.name=keyframe", "method.params={rate: 0.5, patch_size: 4, refresh_every: null, "
              "execution: reference, layers: [backbone.final_layer, 'backbone.deconv*']}")
    cfg = _cfg(f"model.weights={weights}", "eval.flip_test=true", *params)
    rec = run(cfg, data_root=syn, write=False)
    m = _model(cfg, weights)
    want = _by_hand(cfg, syn, [m, copy.deepcopy(m)], flip=True)
    assert rec["metrics"]["mpjpe_mm_all_frames"] == pytest.approx(want["mpjpe_mm_all_frames"], abs=1e-3)
    c = rec["cost"]
    assert c["views_per_frame"] == 2 and 0.3 < c["patch_skip_rate"] < 0.6 and c["gmacs_executed"] < c["gmacs_dense"]
    one = run(_cfg(f"model.weights={weights}", *params), data_root=syn, write=False)["cost"]
    assert c["gmacs_executed"] == pytest.approx(one["gmacs_executed"], rel=1e-9)  # per view: both views skip alike
    assert c["patch_skip_rate"] == pytest.approx(one["patch_skip_rate"], rel=1e-9)


def test_an_upstream_snapshot_needs_input_range_255(syn, tmp_path):
    torch.manual_seed(0)
    net = build_model("mhp_lpski_w05", input_hw=(128, 128))
    snap = tmp_path / "snapshot_24.pth.tar"  # upstream main/base.py: {'epoch', 'network' (DataParallel keys)}
    torch.save({"epoch": 24, "network": {f"module.{k}": v for k, v in net.state_dict().items()}}, snap)
    with pytest.raises(ValueError, match=r"upstream 3DMPPE / MobileHumanPose snapshot .* set model\.kwargs\.input_range: 255"):
        run(_cfg(f"model.weights={snap}"), data_root=syn, write=False)
    rec = run(_cfg(f"model.weights={snap}", "model.kwargs={input_hw: [128, 128], input_range: 255}"), data_root=syn,
              write=False)
    assert rec["kind"] == "run" and np.isfinite(rec["metrics"]["mpjpe_mm"])
