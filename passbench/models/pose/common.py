"""The output contract every pose model shares, and the two integral decoders behind it.

Contract (what ``passbench.pose`` consumes)::

    forward(x: (B, 3, H_in, W_in) RGB in [0, 1]) -> dict with
        coords   (B, J, 3)  x_px, y_px in output-map pixels (0 .. W_out-1, 0 .. H_out-1, pixel centres
                            at integers), z in depth bins (0 .. D-1; bin D/2 is the root depth)
        + the raw maps: "heatmaps" (B, J, D, H_out, W_out) logits for volumetric models (MHP, PoseNet),
          or "heatmaps" (B, J, H_out, W_out) logits + "locmaps" (B, J, 3, H_out, W_out) for the
          location-map models (VNect, MoVNect).

    attributes: input_hw (H_in, W_in) px, output_hw (H_out, W_out), depth_dim D, num_joints J,
                depth_range_mm (the 3D box depth the D bins span: 2000 mm, upstream
                ``cfg.bbox_3d_shape[0]``), joint_set (names of the J joints).

Input: RGB in [0, 1], as the MOT models; with ``normalize=True`` (default) the ImageNet mean/std that
upstream applies in its data transform (``cfg.pixel_mean``/``pixel_std``) is applied inside the model,
an elementwise op before the first conv: ``(x * input_range - mean) / std``.

``input_range`` is set by where the weights come from (config ``model.kwargs.input_range``):

* ``1`` (default): ``(pixel / 255 - mean) / std``, what every passbench-trained pose checkpoint saw;
* ``255``: ``(pixel - mean) / std`` on the 0-255 crop, what upstream 3DMPPE and MobileHumanPose feed.
  Their ``data/dataset.py`` reads the image as float32 (``load_img``: ``img.astype(np.float32)``) and
  ``transforms.ToTensor()`` scales only uint8 input, so ``Normalize(pixel_mean, pixel_std)`` sees values
  of 0-255 and the network about -2 to 1110; the maintainer confirms the released snapshots expect this
  (https://github.com/mks0601/3DMPPE_POSENET_RELEASE/issues/69). An upstream snapshot needs ``input_range: 255``.

z is mapped back as upstream 3DMPPE ``Human36M.evaluate``:
``Z_mm = (z / D * 2 - 1) * depth_range_mm / 2 + Z_root_mm``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # upstream cfg.pixel_mean (RGB)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTH_RANGE_MM = 2000.0  # upstream cfg.bbox_3d_shape[0]
# The 17 Human3.6M joints plus the loader-derived Thorax (passbench.datasets.h36m.JOINT_NAMES_18);
# repeated here because models/ does not import datasets/.
H36M_JOINTS_18 = ("Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Nose",
                  "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist", "Thorax")


def soft_argmax_3d(heatmaps: torch.Tensor, num_joints: int, depth_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integral regression over a volumetric heatmap (3DMPPE / MHP ``main/model.py`` ``soft_argmax``).

    Softmax over D*H*W per joint, then the expectation of each axis index. Upstream 3DMPPE weights by
    ``arange(0..N-1)``, MHP by ``arange(1..N) - 1``: the same numbers up to float rounding.

    Args:
        heatmaps: (B, J*D, H, W) logits; channel ``j*D + d`` is joint j, depth bin d (upstream reshape).
        num_joints: J.  depth_dim: D.

    Returns:
        coords (B, J, 3) = (x px, y px, z bin) and the logits viewed as (B, J, D, H, W).
    """
    b, c, h, w = heatmaps.shape
    if c != num_joints * depth_dim:
        raise ValueError(f"soft_argmax_3d: {c} channels, expected J*D = {num_joints}*{depth_dim}")
    vol = heatmaps.reshape(b, num_joints, depth_dim, h, w)
    p = F.softmax(vol.reshape(b, num_joints, -1), dim=2).reshape(b, num_joints, depth_dim, h, w)
    ix = torch.arange(w, dtype=p.dtype, device=p.device)
    iy = torch.arange(h, dtype=p.dtype, device=p.device)
    iz = torch.arange(depth_dim, dtype=p.dtype, device=p.device)
    x = (p.sum(dim=(2, 3)) * ix).sum(-1)  # (B, J)
    y = (p.sum(dim=(2, 4)) * iy).sum(-1)
    z = (p.sum(dim=(3, 4)) * iz).sum(-1)
    return torch.stack([x, y, z], dim=-1), vol


def soft_argmax_locmap(heatmaps: torch.Tensor, zmap: torch.Tensor) -> torch.Tensor:
    """Integral 2D soft-argmax of a heatmap, and the Z location map read under the same weights.

    VNect (Mehta 2017, Sec. 4.1) takes the heatmap's arg max and reads X, Y, Z at that pixel; here the
    read is the softmax-weighted expectation so that coords are differentiable and can be trained
    with the 3DMPPE L1 coordinate loss (a documented deviation, baselines/vnect/README.md).

    Args:
        heatmaps: (B, J, H, W) logits.  zmap: (B, J, H, W) depth in bins.

    Returns:
        (B, J, 3) = (x px, y px, z bin).
    """
    b, j, h, w = heatmaps.shape
    p = F.softmax(heatmaps.reshape(b, j, -1), dim=2).reshape(b, j, h, w)
    ix = torch.arange(w, dtype=p.dtype, device=p.device)
    iy = torch.arange(h, dtype=p.dtype, device=p.device)
    x = (p.sum(2) * ix).sum(-1)
    y = (p.sum(3) * iy).sum(-1)
    z = (p * zmap).sum(dim=(2, 3))
    return torch.stack([x, y, z], dim=-1)


class PoseModel(nn.Module):
    """Base of the pose models: the contract attributes and the input normalisation.

    Args:
        input_hw, output_hw: (H, W) px of the input crop and of the output maps.
        depth_dim: depth bins D.  num_joints: J.  normalize: ImageNet mean/std inside the model.
        input_range: the scale of the pixels the mean/std is taken from: 1 (passbench weights) or 255
            (upstream 3DMPPE / MobileHumanPose snapshots; module docstring).
    """

    def __init__(self, input_hw: tuple[int, int], output_hw: tuple[int, int], depth_dim: int, num_joints: int,
                 normalize: bool = True, input_range: float = 1.0) -> None:
        super().__init__()
        if not float(input_range) > 0:
            raise ValueError(f"{type(self).__name__}: input_range must be > 0 (1 or 255), got {input_range!r}")
        self.input_range = float(input_range)
        self.input_hw = tuple(int(v) for v in input_hw)
        self.output_hw = tuple(int(v) for v in output_hw)
        self.depth_dim = int(depth_dim)
        self.num_joints = int(num_joints)
        self.depth_range_mm = DEPTH_RANGE_MM
        self.joint_set = H36M_JOINTS_18 if num_joints == 18 else tuple(f"joint{i}" for i in range(num_joints))
        self.normalize = normalize
        # Not persistent: state dicts keep upstream's key set (tests/test_pose_models.py).
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__}: expected x of shape (B, 3, H, W), got {tuple(x.shape)}")
        if tuple(x.shape[2:]) != self.input_hw:
            raise ValueError(f"{type(self).__name__}: input must be {self.input_hw[0]}x{self.input_hw[1]} (H x W), "
                             f"got {x.shape[2]}x{x.shape[3]}")
        if self.input_range != 1.0:
            x = x * self.input_range  # (B, 3, H, W) in [0, input_range]: upstream's 0-255 crop
        return (x - self.pixel_mean) / self.pixel_std if self.normalize else x
