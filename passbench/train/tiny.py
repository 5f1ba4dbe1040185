"""A tiny stand-in with the FairMOT output contract, for tests and smoke runs of the training code.

``model=passbench.train.tiny:tiny_fairmot`` on the CLI. Not a benchmark model (not registered).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TinyFairMOT(nn.Module):
    """Three 3x3 convs to stride 4, then 1x1 heads ``hm`` (1, bias -2.19 as FairMOT), ``wh`` (4), ``reg`` (2), ``id`` (128)."""

    def __init__(self, width: int = 16, emb_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )
        self.hm = nn.Conv2d(width, 1, 1)
        self.wh = nn.Conv2d(width, 4, 1)
        self.reg = nn.Conv2d(width, 2, 1)
        self.id = nn.Conv2d(width, emb_dim, 1)
        nn.init.constant_(self.hm.bias, -2.19)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, 3, H, W) RGB in [0, 1] -> heads at (H/4, W/4)."""
        f = self.body(x)  # (B, C, H/4, W/4)
        return {"hm": self.hm(f), "wh": self.wh(f), "reg": self.reg(f), "id": self.id(f)}


def tiny_fairmot(pretrained: Any = None, **kw: Any) -> TinyFairMOT:
    """Factory; ``pretrained`` is accepted for interface parity and ignored."""
    return TinyFairMOT(**kw)
