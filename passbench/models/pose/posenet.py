"""3DMPPE PoseNet (Moon, Chang, Lee, ICCV 2019): ResNet-50 + 3 deconvolutions + integral regression.

Facts from ``mks0601/3DMPPE_POSENET_RELEASE`` @ dd025c5 (MIT; REFERENCE.md 1.2): ``main/model.py``
``ResPoseNet`` = ``common/nets/resnet.py`` ``ResNetBackbone`` (torchvision's ResNet without avgpool /
fc) + ``HeadNet`` (three ConvTranspose2d k4 s2 p1, 256 channels, no bias, each + BN + ReLU; then a
1x1 conv to J x depth_dim), ``soft_argmax`` over a 64x64x64 volume at 256x256 input
(``main/config.py``: output_shape = input / 4, depth_dim 64).

The backbone is ``torchvision.models.resnet50`` (random init, or ``pretrained="imagenet"``: torchvision's
ImageNet weights, upstream's init, ``passbench.models.pretrained``) with its modules kept
under upstream's names (``backbone.conv1`` ... ``backbone.layer4``, ``head.deconv_layers.*``,
``head.final_layer``), so an upstream checkpoint loads by name. The three ConvTranspose2d layers are
not patch-skippable (``passbench.skip`` wraps nn.Conv2d only); tests/test_pose_models.py states
their share of the MACs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from passbench.models.pose.common import PoseModel, soft_argmax_3d


class ResNetBackbone(nn.Module):
    """torchvision ResNet-50 trunk (stride 32, 2048 channels), keys as upstream ``ResNetBackbone``."""

    def __init__(self, pretrained: Any = None) -> None:
        super().__init__()
        from passbench.models.pretrained import torchvision_model  # noqa: PLC0415

        tv = torchvision_model("resnet50", "ResNet50_Weights.IMAGENET1K_V1", pretrained)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(tv, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 2048, H/32, W/32)


class HeadNet(nn.Module):
    """Three ConvTranspose2d(k4, s2, p1, 256, no bias) + BN + ReLU, then 1x1 conv to J*D (upstream)."""

    def __init__(self, num_joints: int, depth_dim: int, cin: int = 2048, width: int = 256) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.ConvTranspose2d(cin if i == 0 else width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(width, num_joints * depth_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))  # (B, J*D, 8 H_in, 8 W_in)


class PoseNet(PoseModel):
    """3DMPPE ResPoseNet with a ResNet-50 backbone.

    Args:
        num_joints: J (18 on Human3.6M, as upstream).  depth_dim: D (64, upstream config).
        input_hw: input crop (H, W), multiples of 32 (upstream 256x256).
        normalize: ImageNet mean/std inside the model.  input_range: 1 or 255 (``common.PoseModel``).
        pretrained: backbone init: none, ``imagenet`` (torchvision's ResNet-50, upstream's init) or a file.

    Forward: x (B, 3, H, W) RGB in [0, 1] -> {"coords": (B, J, 3), "heatmaps": (B, J, D, H/4, W/4)}.
    """

    def __init__(self, num_joints: int = 18, depth_dim: int = 64, input_hw: tuple[int, int] = (256, 256),
                 normalize: bool = True, input_range: float = 1.0, pretrained: Any = None) -> None:
        if any(int(v) % 32 for v in input_hw):
            raise ValueError(f"posenet_r50: input {input_hw[0]}x{input_hw[1]} must be multiples of 32")
        super().__init__(input_hw, (input_hw[0] // 4, input_hw[1] // 4), depth_dim, num_joints, normalize,
                         input_range)
        self.backbone = ResNetBackbone(pretrained)
        self.head = HeadNet(num_joints, depth_dim)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hm = self.head(self.backbone(self._prepare(x)))  # (B, J*D, H/4, W/4)
        coords, vol = soft_argmax_3d(hm, self.num_joints, self.depth_dim)
        return {"coords": coords, "heatmaps": vol}
