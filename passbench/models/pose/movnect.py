"""MoVNect (Hwang et al., WACV 2020, arXiv 2001.05097): a MobileNetV2 student of VNect.

No official code. The definition follows the MoVNect architecture figure (reproduced in the
``ocean-joo/MoVNect`` README, ``data/MoVNect.png``; that repository has no licence, nothing is
copied from it), and what it leaves open is chosen to land on the 1.03 M parameters MHP's table gives
for MoVNect (REFERENCE.md 1.1, 1.6):

* ``torchvision.models.mobilenet_v2(weights=None).features[:13]``: the stem and bottleneck blocks
  1-12 of the MobileNetV2 paper's numbering ("MobileNetV2 (till Block12)"), 96 ch at stride 16.
  The ocean-joo port takes ``features[:15]`` (160 ch, stride 32) and a x3 depthwise channel
  multiplier, and lands at 2.12 M (REFERENCE.md 1.6): not the paper's model;
* Block13_a: 1x1 368 + ReLU, 3x3 depthwise 368 + ReLU, 1x1 256 (no ReLU), plus a 1x1 256
  projection of the input, summed, ReLU;
* Block13_b: 1x1 192, 3x3 depthwise 192, 1x1 192, each + ReLU;
* Block14: bilinear x2 upsampling, then a 3x3 conv to 128 (+ ReLU) and a 3x3 conv to 3J
  (dX, dY, dZ; no ReLU), bone lengths (VNect's Euclidean BL), concat as VNect;
* Block15: 1x1 128 + ReLU, 3x3 depthwise 128 + ReLU, 1x1 to 4J (H, X, Y, Z; with bias).

Choices the figure does not fix (baselines/movnect/README.md): input 256x256 (so 32x32 maps at
stride 8), BN after every conv but the last two, ``nn.UpsamplingBilinear2d`` (align_corners=True, as
MHP), J = 18 Human3.6M joints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from passbench.models.pose.common import PoseModel
from passbench.models.pose.locmap import bone_lengths, decode_maps

BACKBONE_BLOCKS = 13  # features[0] (stem) .. features[12] (bottleneck block 12, 96 ch, stride 16)


def cbr(cin: int, cout: int, k: int = 1, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """k x k conv (no bias) + BN (+ ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class MoVNect(PoseModel):
    """MoVNect.

    Args:
        num_joints: J (18 Human3.6M joints).  depth_dim: D, unit of the location maps (as VNect).
        input_hw: input crop (H, W), multiples of 16 (256x256, unverified).
        normalize: ImageNet mean/std inside the model.  input_range: 1 or 255 (``common.PoseModel``).
        pretrained: MobileNetV2 init: none, ``imagenet`` (torchvision's) or a local file.

    Forward: x (B, 3, H, W) RGB in [0, 1] -> {"coords": (B, J, 3), "heatmaps": (B, J, H/8, W/8),
    "locmaps": (B, J, 3, H/8, W/8)}.
    """

    def __init__(self, num_joints: int = 18, depth_dim: int = 64, input_hw: tuple[int, int] = (256, 256),
                 normalize: bool = True, input_range: float = 1.0, pretrained: Any = None) -> None:
        if any(int(v) % 16 for v in input_hw):
            raise ValueError(f"movnect: input {input_hw[0]}x{input_hw[1]} must be multiples of 16")
        super().__init__(input_hw, (input_hw[0] // 8, input_hw[1] // 8), depth_dim, num_joints, normalize,
                         input_range)
        from passbench.models.pretrained import torchvision_model  # noqa: PLC0415

        j = num_joints
        tv = torchvision_model("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1", pretrained)
        self.backbone = tv.features[:BACKBONE_BLOCKS]
        self.block13_a = nn.Sequential(cbr(96, 368), cbr(368, 368, 3, groups=368), cbr(368, 256, relu=False))
        self.block13_a_proj = cbr(96, 256, relu=False)
        self.block13_b = nn.Sequential(cbr(256, 192), cbr(192, 192, 3, groups=192), cbr(192, 192))
        self.up = nn.UpsamplingBilinear2d(scale_factor=2)
        self.block14_a = cbr(192, 128, 3)
        self.block14_b = nn.Conv2d(192, 3 * j, 3, padding=1)  # dX, dY, dZ
        self.block15 = nn.Sequential(cbr(128 + 4 * j, 128), cbr(128, 128, 3, groups=128), nn.Conv2d(128, 4 * j, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(self._prepare(x))  # (B, 96, H/16, W/16)
        f = torch.relu(self.block13_a(f) + self.block13_a_proj(f))  # (B, 256, H/16, W/16)
        f = self.up(self.block13_b(f))  # (B, 192, H/8, W/8)
        d = self.block14_b(f)  # (B, 3J, H/8, W/8)
        g = torch.cat([self.block14_a(f), d, bone_lengths(d, self.num_joints)], 1)  # (B, 128 + 4J, H/8, W/8)
        return decode_maps(self.block15(g), self.num_joints, self.depth_dim)
