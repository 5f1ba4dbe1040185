"""The VNect-style output stage shared by VNect and MoVNect: bone lengths, concat, H/X/Y/Z maps.

VNect (Mehta et al., SIGGRAPH 2017, Fig. 5; layer names of the released Caffe model as read by
``XinArkh/VNect`` ``src/vnect_model.py``): a branch predicts per-joint deltas dX, dY, dZ (3J maps), the
bone length BL_j = sqrt(dX_j^2 + dY_j^2 + dZ_j^2) is computed from them, and
[features, dX, dY, dZ, BL] are concatenated before the last two convs, which output 4J maps
(heatmap H, location maps X, Y, Z). MoVNect (Hwang et al., WACV 2020) keeps this stage.

Units here: X, Y, Z are root-relative, in depth bins of ``depth_range_mm / depth_dim`` mm, so
Z + D/2 is the contract's z (bin D/2 = root depth). The 3DMPPE pipeline decodes x, y from H and z
from Z (``soft_argmax_locmap``); X and Y are returned as raw maps only.
"""

from __future__ import annotations

import torch

from passbench.models.pose.common import soft_argmax_locmap

BL_EPS = 1e-8  # inside the square root: d sqrt / dx is infinite at 0 (VNect has no eps; training needs one)


def bone_lengths(deltas: torch.Tensor, num_joints: int) -> torch.Tensor:
    """(B, 3J, H, W) = [dX (J), dY (J), dZ (J)] -> (B, J, H, W) Euclidean lengths."""
    dx, dy, dz = deltas.split(num_joints, dim=1)
    return torch.sqrt(dx * dx + dy * dy + dz * dz + BL_EPS)


def decode_maps(maps: torch.Tensor, num_joints: int, depth_dim: int) -> dict[str, torch.Tensor]:
    """Split the final (B, 4J, H, W) output into the contract's dict.

    Returns:
        {"coords": (B, J, 3) (x px, y px, z bin), "heatmaps": (B, J, H, W) logits,
         "locmaps": (B, J, 3, H, W) root-relative X, Y, Z in bins}.
    """
    b, c, h, w = maps.shape
    if c != 4 * num_joints:
        raise ValueError(f"location-map head: {c} channels, expected 4J = {4 * num_joints}")
    hm, x, y, z = maps.split(num_joints, dim=1)  # VNect order: H, X, Y, Z
    coords = soft_argmax_locmap(hm, z + depth_dim / 2)
    return {"coords": coords, "heatmaps": hm, "locmaps": torch.stack([x, y, z], dim=2)}
