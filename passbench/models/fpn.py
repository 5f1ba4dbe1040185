"""ResNet-34 + FPN with FairMOT heads (Table 3 row "FPN", Lin et al. 2017).

Body: ``torchvision.models.resnet34(weights=None)`` with regular (trainable) BatchNorm, not the
``FrozenBatchNorm2d`` that ``resnet_fpn_backbone`` defaults to (we train from this init). Neck:
``torchvision.ops.FeaturePyramidNetwork([64, 128, 256, 512], fpn_ch)`` on layer1..layer4 (strides
4..32); the heads read the stride-4 output ``P2``.

Deviations (documented in baselines/fpn_resnet34/README.md): FairMOT's own ``resfpndcn_34`` (a
ResNet-34 with DCN-deconv FPN) is not used; ``fpn_ch`` defaults to 64 (FairMOT's neck width, so the heads
are FairMOT's Conv3x3(64 -> 256)) instead of FPN's usual 256, which would make the 3x3 heads at stride 4
cost about 4x more; the paper does not say which head it used (REFERENCE.md 6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin


class ResNetFPN(FairMOTHeadsMixin, nn.Module):
    """Args: depth: 18 or 34 (BasicBlock ResNets). fpn_ch: FPN channels (64). head_conv: 256.

    Forward: x (B, 3, H, W) in [0, 1] -> dict of (B, C, H/4, W/4) maps.
    """

    def __init__(self, depth: int = 34, fpn_ch: int = 64, head_conv: int = 256, emb_dim: int = 128,
                 pretrained: Any = None) -> None:
        super().__init__()
        from torchvision.ops import FeaturePyramidNetwork  # noqa: PLC0415

        from passbench.models.pretrained import torchvision_model  # noqa: PLC0415

        # pretrained: imagenet = torchvision's ResNet ImageNet weights (passbench.models.pretrained)
        r = torchvision_model(f"resnet{depth}", f"ResNet{depth}_Weights.IMAGENET1K_V1", pretrained)
        self.body = nn.ModuleDict({k: getattr(r, k) for k in
                                   ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")})
        self.fpn = FeaturePyramidNetwork([64, 128, 256, 512], fpn_ch)
        self._add_heads(fpn_ch, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.body
        x = b["maxpool"](b["relu"](b["bn1"](b["conv1"](x))))  # (B, 64, H/4, W/4)
        feats = {}
        for i in range(1, 5):
            x = b[f"layer{i}"](x)
            feats[str(i)] = x  # strides 4, 8, 16, 32
        p = self.fpn(feats)["1"]  # (B, fpn_ch, H/4, W/4)
        return self._run_heads(p)
