"""FairMOT-style HRNet-W32 (Table 3 row "HRNet-W32"): timm ``hrnet_w32`` body + HRNetV2 concat + FairMOT heads.

Upstream: ``ifzhang/FairMOT`` ``src/lib/models/networks/pose_hrnet.py`` (``hrnet_32``): the four branch
outputs of stage 4 (strides 4/8/16/32, 32/64/128/256 channels) are bilinearly upsampled to stride 4 and
concatenated (480 channels); every head is Conv3x3(480 -> head_conv) + ReLU + Conv1x1.
The body is timm's ``hrnet_w32`` (module names as the official ``cls_hrnet.py``, REFERENCE.md 1.4) with
``features_only=True, feature_location=''`` (the raw branches, no ``incre`` modules).

Deviation: ``F.interpolate(..., align_corners=False)`` as upstream's ``F.upsample`` default; upstream's
checkpoint keys (``conv1``, ``stage2``... at the top level) are not remapped (no FairMOT HRNet weights
are used by passbench).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin


class HRNetFairMOT(FairMOTHeadsMixin, nn.Module):
    """Args: width: HRNet width (32 -> ``hrnet_w32``); head_conv: hidden channels of each head (256).

    Forward: x (B, 3, H, W) in [0, 1] -> dict of (B, C, H/4, W/4) maps.
    """

    def __init__(self, width: int = 32, head_conv: int = 256, emb_dim: int = 128, pretrained: Any = None) -> None:
        super().__init__()
        from passbench.models.pretrained import timm_model  # noqa: PLC0415

        # pretrained: imagenet = timm's hrnet_w32 ImageNet weights (passbench.models.pretrained)
        self.body = timm_model(f"hrnet_w{width}", pretrained, features_only=True, feature_location="",
                               out_indices=(1, 2, 3, 4))
        cin = sum(self.body.feature_info.channels())  # 32+64+128+256 = 480 for W32
        self._add_heads(cin, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(x)  # [(B,32,H/4,W/4), (B,64,H/8,..), (B,128,H/16,..), (B,256,H/32,..)]
        size = f[0].shape[-2:]
        up = [f[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in f[1:]]
        return self._run_heads(torch.cat(up, 1))  # (B, 480, H/4, W/4) -> heads
