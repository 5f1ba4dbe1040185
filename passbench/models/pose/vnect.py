"""VNect (Mehta et al., SIGGRAPH 2017): ResNet-50 to res4f + the res5 head, heatmap + X/Y/Z location maps.

There is no official code (the authors share Caffe weights on request). Architecture from the
paper's Fig. 5 and the layer list of the released Caffe model as ``XinArkh/VNect``
``src/vnect_model.py`` (Apache-2.0, TensorFlow) reads it (REFERENCE.md 1.6):

* ResNet-50 up to res4f (stride 16, 1024 ch): ``torchvision.models.resnet50`` conv1 .. layer3;
* res5a: 1x1 512, 3x3 512, 1x1 1024 (no ReLU) + projection 1x1 1024 (no ReLU), sum, ReLU;
* res5b: 1x1 256, 3x3 128, 1x1 256, each with ReLU (no shortcut);
* res5c: a 4x4 stride-2 deconvolution to 128 (+ BN + ReLU) and one to 3J (dX, dY, dZ; no BN,
  no ReLU, no bias), bone lengths, concat [128, dX, dY, dZ, BL], 3x3 conv 128 + ReLU, 1x1 conv to
  4J (H, X, Y, Z; no bias);
* input 368x368 -> 46x46 maps (stride 8), 21 joints (MPI-INF-3DHP) upstream.

Deviations (baselines/vnect/README.md): BN after every conv instead of Caffe's folded biases
(trainable from scratch), J = 18 Human3.6M joints by default, decoding by integral soft-argmax
(``locmap.decode_maps``) instead of arg max, and an eps in the bone-length square root.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from passbench.models.pose.common import PoseModel
from passbench.models.pose.locmap import bone_lengths, decode_maps


def conv_bn(cin: int, cout: int, k: int, relu: bool = True) -> nn.Sequential:
    """k x k conv (no bias, same padding) + BN (+ ReLU)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ResNetRes4f(nn.Module):
    """torchvision ResNet-50 conv1 .. layer3 (= Caffe res4f): (B, 3, H, W) -> (B, 1024, H/16, W/16)."""

    def __init__(self, pretrained: Any = None) -> None:
        super().__init__()
        from passbench.models.pretrained import torchvision_model  # noqa: PLC0415

        tv = torchvision_model("resnet50", "ResNet50_Weights.IMAGENET1K_V1", pretrained)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            setattr(self, name, getattr(tv, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class VNect(PoseModel):
    """VNect.

    Args:
        num_joints: J (18 Human3.6M joints by default; VNect used 21).
        depth_dim: D, the unit of the location maps (2000 mm / D per unit; 64 as 3DMPPE).
        input_hw: input crop (H, W), multiples of 16 (VNect: 368x368).
        normalize: ImageNet mean/std inside the model.  input_range: 1 or 255 (``common.PoseModel``).
        pretrained: backbone init: none, ``imagenet`` (torchvision's ResNet-50) or a local file.

    Forward: x (B, 3, H, W) RGB in [0, 1] -> {"coords": (B, J, 3), "heatmaps": (B, J, H/8, W/8),
    "locmaps": (B, J, 3, H/8, W/8)}.
    """

    def __init__(self, num_joints: int = 18, depth_dim: int = 64, input_hw: tuple[int, int] = (368, 368),
                 normalize: bool = True, input_range: float = 1.0, pretrained: Any = None) -> None:
        if any(int(v) % 16 for v in input_hw):
            raise ValueError(f"vnect: input {input_hw[0]}x{input_hw[1]} must be multiples of 16")
        super().__init__(input_hw, (input_hw[0] // 8, input_hw[1] // 8), depth_dim, num_joints, normalize,
                         input_range)
        j = num_joints
        self.backbone = ResNetRes4f(pretrained)
        self.res5a_branch2 = nn.Sequential(conv_bn(1024, 512, 1), conv_bn(512, 512, 3), conv_bn(512, 1024, 1, False))
        self.res5a_branch1 = conv_bn(1024, 1024, 1, relu=False)
        self.res5b = nn.Sequential(conv_bn(1024, 256, 1), conv_bn(256, 128, 3), conv_bn(128, 256, 1))
        self.res5c_branch1a = nn.ConvTranspose2d(256, 3 * j, 4, 2, 1, bias=False)  # dX, dY, dZ
        self.res5c_branch2a = nn.Sequential(nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128),
                                            nn.ReLU(inplace=True))
        self.res5c_branch2b = conv_bn(128 + 4 * j, 128, 3)
        self.res5c_branch2c = nn.Conv2d(128, 4 * j, 1, bias=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(self._prepare(x))  # (B, 1024, H/16, W/16)
        f = torch.relu(self.res5a_branch2(f) + self.res5a_branch1(f))
        f = self.res5b(f)  # (B, 256, H/16, W/16)
        d = self.res5c_branch1a(f)  # (B, 3J, H/8, W/8)
        g = self.res5c_branch2a(f)  # (B, 128, H/8, W/8)
        g = torch.cat([g, d, bone_lengths(d, self.num_joints)], 1)  # (B, 128 + 4J, H/8, W/8)
        maps = self.res5c_branch2c(self.res5c_branch2b(g))  # (B, 4J, H/8, W/8)
        return decode_maps(maps, self.num_joints, self.depth_dim)
