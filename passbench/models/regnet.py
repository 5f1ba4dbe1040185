"""RegNetY-4.0GF with FairMOT heads (Table 3 row "RegNetY-4.0GF", Radosavovic et al. 2020).

Body: timm ``regnety_040`` (torchvision has no 4.0GF; REFERENCE.md 2), ``features_only`` at strides
4/8/16/32 (128/192/512/1088 channels). Neck: ``heads.UpNeck`` (IDA-style, plain convs) to stride 4 with
64 channels, then FairMOT heads Conv3x3(64 -> 256). The paper does not describe its RegNet MOT head
(REFERENCE.md 6); this neck mirrors FairMOT's 64-channel stride-4 design so only the backbone differs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin, UpNeck


class TimmUpNet(FairMOTHeadsMixin, nn.Module):
    """Any timm backbone (``features_only``, strides 4..32) + ``UpNeck`` + FairMOT heads.

    Args:
        arch: timm model name. neck_ch: neck channels (64). head_conv: head hidden channels (256).
        out_indices: timm feature indices at strides 4, 8, 16, 32.
        size_multiple: required divisor of H and W (32 for DLA, whose trees need it), checked in forward.

    Forward: x (B, 3, H, W) in [0, 1] -> dict of (B, C, H/4, W/4) maps.
    """

    def __init__(self, arch: str, neck_ch: int = 64, head_conv: int = 256, emb_dim: int = 128,
                 out_indices: tuple[int, ...] = (1, 2, 3, 4), size_multiple: int = 1, pretrained: Any = None) -> None:
        super().__init__()
        from passbench.models.pretrained import timm_model  # noqa: PLC0415

        self.size_multiple = size_multiple
        # pretrained: imagenet = timm's ImageNet weights for the body (passbench.models.pretrained)
        self.body = timm_model(arch, pretrained, features_only=True, out_indices=out_indices)
        red = self.body.feature_info.reduction()
        if red[0] != 4:
            raise ValueError(f"TimmUpNet({arch}): first feature must be at stride 4, got reductions {red}")
        self.neck = UpNeck(self.body.feature_info.channels(), neck_ch)
        self._add_heads(neck_ch, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.size_multiple > 1:
            from passbench.models.fairmot_dla import check_multiple  # noqa: PLC0415

            check_multiple(x, self.size_multiple, self.body.__class__.__name__)
        return self._run_heads(self.neck(self.body(x)))  # (B, neck_ch, H/4, W/4) -> heads
