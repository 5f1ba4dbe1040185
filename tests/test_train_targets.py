"""FairMOT targets and loss against hand-worked values (CenterNet formulas)."""

import math

import numpy as np
import pytest
import torch

from passbench.train.losses import FairMOTLoss, focal_loss, reg_l1_loss
from passbench.train.targets import build_targets, gaussian_radius


def test_gaussian_radius_hand_worked():
    # h = w = 10, min_overlap 0.7. Hand: case 1: b=20, c=100*0.3/1.7=17.647, r1=(20+sqrt(400-70.588))/2=19.0738;
    # case 2: b=40, c=30, r2=(40+sqrt(1600-480))/2=36.7332; case 3: a=2.8, b=-28, c=-30,
    # r3=(-28+sqrt(784+336))/2=2.7332 -> min = 2.7332 (upstream's root halving kept).
    assert gaussian_radius((10, 10)) == pytest.approx(2.733200530681511, rel=1e-9)


def test_heatmap_target_peak_and_spread():
    # Box 10x10 output px centred at (20.5, 12.5) on a 32x48 map.
    t = build_targets(np.array([[15.5, 7.5, 25.5, 17.5]]), np.array([3]), (32, 48), max_objs=4)
    hm = t["hm"][0]
    assert hm.max() == 1.0 and np.unravel_index(hm.argmax(), hm.shape) == (12, 20)  # (y, x) = int centre
    r = int(gaussian_radius((10, 10)))  # 2
    sigma = (2 * r + 1) / 6
    assert hm[12, 21] == pytest.approx(math.exp(-1 / (2 * sigma**2)), rel=1e-6)
    assert hm[14, 22] == pytest.approx(math.exp(-8 / (2 * sigma**2)), rel=1e-6)
    assert hm[12, 20 + r + 1] == 0.0  # outside the radius
    assert t["ind"][0] == 12 * 48 + 20 and t["reg_mask"].tolist() == [1, 0, 0, 0]
    np.testing.assert_allclose(t["reg"][0], [0.5, 0.5])
    np.testing.assert_allclose(t["wh"][0], [5, 5, 5, 5])  # ltrb from the unrounded centre
    assert t["ids"].tolist() == [3, -1, -1, -1]


def test_focal_loss_hand_example():
    # 1x1x1x2 map: a positive pixel with p=0.8 and a negative (gt=0.5) with p=0.3.
    pred = torch.tensor([[[[0.8, 0.3]]]])
    gt = torch.tensor([[[[1.0, 0.5]]]])
    pos = math.log(0.8) * 0.2**2
    neg = math.log(0.7) * 0.3**2 * 0.5**4
    assert float(focal_loss(pred, gt)) == pytest.approx(-(pos + neg), rel=1e-6)
    # no positive: -neg only
    assert float(focal_loss(pred[..., 1:], gt[..., 1:])) == pytest.approx(-neg, rel=1e-6)


def test_reg_l1_and_fairmot_loss_weights():
    out = torch.zeros(1, 2, 2, 2)
    out[0, :, 1, 0] = torch.tensor([1.0, 3.0])  # cell index 2
    target = torch.tensor([[[2.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 0]])
    ind = torch.tensor([[2, 0]])
    assert float(reg_l1_loss(out, mask, ind, target)) == pytest.approx(3.0 / (2 + 1e-4))
    # With id off, loss = 0.5 * (exp(1.85) * det + s_det + s_id) for the initial s values.
    crit = FairMOTLoss(num_ids=3, id_weight=0.0)
    t = {k: torch.from_numpy(v)[None] for k, v in build_targets(np.array([[1, 1, 5, 5]]), np.array([0]), (8, 8), 4).items()}
    heads = {"hm": torch.zeros(1, 1, 8, 8), "wh": torch.zeros(1, 4, 8, 8), "reg": torch.zeros(1, 2, 8, 8), "id": torch.zeros(1, 128, 8, 8)}
    loss, logs = crit(heads, t)
    det = logs["hm"] + 0.1 * logs["wh"] + logs["off"]
    assert float(loss.detach()) == pytest.approx(0.5 * (math.exp(1.85) * det - 1.85 - 1.05), rel=1e-5)
