"""``pretrained: imagenet`` through timm's / torchvision's own loading, tested offline: the test writes a
state dict where the library looks (a local file, the hub cache) and checks the built model holds it."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from passbench.models import build_model
from passbench.models import pretrained as P


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test here may reach the network, and no user cache is read."""
    monkeypatch.setenv("PASSBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _seeded(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in module.state_dict().items()}


def test_timm_body_from_a_local_file(tmp_path):
    import timm

    sd = _seeded(timm.create_model("resnet18"), 1)
    path = tmp_path / "resnet18_in1k.pth"
    torch.save(sd, path)
    model = build_model("timm:resnet18", pretrained=str(path))
    body = model.body.state_dict()
    assert torch.equal(body["conv1.weight"], sd["conv1.weight"])
    assert torch.equal(body["layer4.1.bn2.running_var"], sd["layer4.1.bn2.running_var"])
    fresh = build_model("timm:resnet18")  # random init: not the file
    assert not torch.equal(fresh.body.state_dict()["conv1.weight"], sd["conv1.weight"])


def test_timm_imagenet_from_the_hub_cache_without_network(tmp_path):
    import timm
    from safetensors.torch import save_file

    sd = _seeded(timm.create_model("dla34"), 2)
    repo = timm.models.get_pretrained_cfg("dla34").hf_hub_id  # timm/dla34.in1k
    base = tmp_path / "hf" / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("0123abcd")
    (base / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(sd, str(base / "snapshots" / "0123abcd" / "model.safetensors"))
    model = build_model("fairmot_dla34_conv", pretrained="imagenet")  # FairMOT's DLA-34 base, ImageNet-initialised
    got = model.base.state_dict()
    assert torch.equal(got["base_layer.0.weight"], sd["base_layer.0.weight"])
    assert torch.equal(got["level5.tree2.conv2.weight"], sd["level5.tree2.conv2.weight"])
    assert "fc.weight" not in got  # num_classes=0: the classifier is dropped by timm's loading


def test_torchvision_imagenet_from_the_torch_hub_cache(tmp_path):
    import torchvision

    sd = _seeded(torchvision.models.resnet34(weights=None), 3)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "resnet34-b627a593.pth"  # the name torchvision's URL has
    ckpt.parent.mkdir(parents=True)
    torch.save(sd, ckpt)
    model = build_model("fpn_resnet34", pretrained="imagenet")
    assert torch.equal(model.body["conv1"].weight, sd["conv1.weight"])
    assert torch.equal(model.body["layer3"][0].bn1.running_mean, sd["layer3.0.bn1.running_mean"])


def test_torchvision_local_file_for_a_pose_backbone(tmp_path):
    import torchvision

    sd = _seeded(torchvision.models.mobilenet_v2(weights=None), 4)
    path = tmp_path / "mbv2.pth"
    torch.save({"state_dict": sd}, path)
    model = build_model("movnect", pretrained=str(path))
    assert torch.equal(model.backbone[0][0].weight, sd["features.0.0.weight"])


def test_offline_without_cache_fails_at_once_naming_the_file(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(P.PretrainedUnavailable, match=r"looked for .*models--timm--resnet18\.a1_in1k.*model\.safetensors"):
        build_model("timm:resnet18", pretrained="imagenet")
    with pytest.raises(P.PretrainedUnavailable, match=r"hub/checkpoints/resnet50-\w+\.pth.*offline by environment"):
        build_model("posenet_r50", pretrained="imagenet")
    assert time.perf_counter() - t0 < 5.0
    with pytest.raises(P.PretrainedUnavailable, match="nope.pth does not exist"):
        build_model("fairmot_mbv2", pretrained=str(tmp_path / "nope.pth"))


def test_models_without_imagenet_weights_refuse_and_bad_values_are_errors():
    with pytest.raises(ValueError, match="hardnet85: pretrained='imagenet': no ImageNet weights"):
        build_model("hardnet85", pretrained="imagenet")
    with pytest.raises(ValueError, match="mhp_lpski: pretrained='imagenet': no ImageNet weights"):
        build_model("mhp_lpski", pretrained="imagenet")
    with pytest.raises(ValueError, match="expected none, imagenet or the path"):
        P.parse("imagenet21k")
    assert P.parse("none") is None and P.parse(False) is None and P.parse(True) == "imagenet"


def test_reachable_probe(monkeypatch):
    monkeypatch.delenv("PASSBENCH_OFFLINE")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    assert P.reachable("127.0.0.1", port, timeout=1.0)
    srv.close()
    assert not P.reachable("127.0.0.1", port, timeout=1.0)  # nothing listens there now
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not P.reachable("127.0.0.1", port, timeout=1.0)
