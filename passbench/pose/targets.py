"""Training targets and loss of the 3DMPPE / MHP coordinate regression.

Upstream ``data/dataset.py`` (``DatasetLoader.__getitem__``) turns a frame's ``joint_img``
([u px, v px, Z - Z_root mm], ``passbench.datasets.h36m.Frame.joints_img``) into the target:

1. (u, v) through the crop affine into patch pixels;
2. z / (depth_range / 2) into [-1, 1], then (z + 1) / 2 into [0, 1];
3. a joint counts (``vis``) only if it lands inside the patch and 0 <= z < 1;
4. to output-map units: x * W_out / W_in, y * H_out / H_in, z * D.

``main/model.py`` (both repositories) then takes the L1 distance per coordinate, masked by vis
(and z by ``have_depth``, false for 2D-only data), averaged over the three coordinates:
``loss = (|dx| vis + |dy| vis + |dz| vis have_depth) / 3`` per joint; the trainer takes the mean.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from passbench.datasets.h36m import FLIP_PAIRS
from passbench.pose.crop import apply_affine, crop_affine
from passbench.pose.decode import MapSpec


def coord_targets(joints_img: np.ndarray, bbox: Sequence[float], spec: MapSpec, scale: float = 1.0,
                  rot_deg: float = 0.0, flip_width: int | None = None,
                  pairs: Sequence[tuple[int, int]] = FLIP_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """Target coords and visibility of one frame, in the model's output units.

    Args:
        joints_img: (J, 3) [u px, v px, Z - Z_root mm] in the original image.
        bbox: [x, y, w, h] processed box px.  spec: the model's :class:`MapSpec`.
        scale, rot_deg, flip_width: the crop's augmentation (:func:`passbench.pose.crop.crop_affine`);
            with a flip the left / right joints are swapped as upstream.
        pairs: the joint pairs a flip swaps.

    Returns:
        target (J, 3) float32: x, y in output-map px, z in bins.  vis (J,) float32 in {0, 1}.
    """
    j = np.array(joints_img, dtype=np.float64, copy=True)
    if j.ndim != 2 or j.shape[1] != 3:
        raise ValueError(f"coord_targets: joints_img must be (J, 3), got {j.shape}")
    if not np.all(np.isfinite(j)):
        raise ValueError("coord_targets: joints_img contains NaN or inf")
    if flip_width is not None:
        for a, b in pairs:
            j[[a, b]] = j[[b, a]]
    affine = crop_affine(bbox, spec.input_hw, scale, rot_deg, flip_width)
    xy = apply_affine(affine, j[:, :2])  # patch px
    z = (j[:, 2] / (spec.depth_range_mm / 2) + 1.0) / 2.0  # [0, 1) inside the depth range
    hi, wi = spec.input_hw
    vis = (xy[:, 0] >= 0) & (xy[:, 0] < wi) & (xy[:, 1] >= 0) & (xy[:, 1] < hi) & (z >= 0) & (z < 1)
    ho, wo = spec.output_hw
    target = np.stack([xy[:, 0] / wi * wo, xy[:, 1] / hi * ho, z * spec.depth_dim], -1)
    return target.astype(np.float32), vis.astype(np.float32)


def coord_l1_loss(pred: Any, target: Any, vis: Any, have_depth: Any = None):
    """Upstream's coordinate L1 loss, averaged over batch and joints (a scalar tensor).

    Args:
        pred: (B, J, 3) model coords (tensor, differentiable).  target: (B, J, 3) from :func:`coord_targets`.
        vis: (B, J) or (B, J, 1) in {0, 1}.  have_depth: (B,) in {0, 1}, or None (all 1: 3D data).
    """
    import torch  # noqa: PLC0415

    target = torch.as_tensor(target, dtype=pred.dtype, device=pred.device)
    vis = torch.as_tensor(vis, dtype=pred.dtype, device=pred.device).reshape(pred.shape[0], pred.shape[1])
    if pred.shape != target.shape:
        raise ValueError(f"coord_l1_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    d = (pred - target).abs() * vis[..., None]  # (B, J, 3)
    hd = torch.ones(pred.shape[0], dtype=pred.dtype, device=pred.device) if have_depth is None else \
        torch.as_tensor(have_depth, dtype=pred.dtype, device=pred.device).reshape(-1)
    return ((d[..., 0] + d[..., 1] + d[..., 2] * hd[:, None]) / 3.0).mean()
