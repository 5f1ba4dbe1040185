"""Upstream 3DMPPE / MobileHumanPose training snapshots load into the pose models; another model's does not."""

from __future__ import annotations

import pytest
import torch

from passbench.models import build_model
from passbench.models.checkpoint import CheckpointMismatchError, load_checkpoint


def _snapshot(model: torch.nn.Module, path) -> None:
    """What upstream ``Trainer.save_model`` writes: {'epoch', 'network', 'optimizer'}, DataParallel keys."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.save({"epoch": 24, "network": {"module." + k: v for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict()}, path)


def test_upstream_mhp_snapshot_loads_and_predicts_the_same(tmp_path):
    torch.manual_seed(0)
    src = build_model("mhp_lpski_w05").eval()
    for m in src.modules():  # non-trivial BatchNorm statistics, so that a missed buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "snapshot_24.pth.tar"
    _snapshot(src, path)
    dst = build_model("mhp_lpski_w05").eval()
    report = load_checkpoint(dst, path)
    assert report.loaded == len(src.state_dict()) and not report.unused
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(dst(x)["coords"], src(x)["coords"])


def test_a_snapshot_of_another_model_names_the_file_and_keys(tmp_path):
    path = tmp_path / "lpski_w1.pth.tar"
    _snapshot(build_model("mhp_lpski"), path)  # width 1.0 into width 0.5: same keys, other shapes
    with pytest.raises(CheckpointMismatchError, match=r"lpski_w1\.pth\.tar.*shape mismatches.*backbone\."):
        load_checkpoint(build_model("mhp_lpski_w05"), path)
    path = tmp_path / "lpwo.pth.tar"
    _snapshot(build_model("mhp_lpwo_w05"), path)  # another architecture: keys missing / unexpected
    with pytest.raises(CheckpointMismatchError, match=r"lpwo\.pth\.tar.*(missing in checkpoint|unexpected)"):
        load_checkpoint(build_model("mhp_lpski_w05"), path)
