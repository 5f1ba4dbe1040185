"""FairMOT heads and the small upsampling neck shared by the Table 3 backbones.

Heads follow ``ifzhang/FairMOT`` ``src/lib/models/networks/pose_dla_dcn.py`` (``DLASeg.__init__``) and
``src/lib/opts.py`` (``update_dataset_info_and_set_heads``): ``hm`` 1 channel (bias -2.19), ``wh`` 4 (ltrb),
``reg`` 2 (centre offset), ``id`` 128 (re-ID embedding), each Conv3x3(C -> head_conv) + ReLU + Conv1x1.
They are set as attributes of the model itself so the state-dict keys are FairMOT's (``hm.0.weight``,
``hm.2.bias``, ...).

The neck (``UpNeck``) is an IDA-style top-down upsampler in the spirit of FairMOT's ``IDAUp`` with plain
convs: project each level to ``out_ch`` (Conv3x3-BN-ReLU), upsample the coarser running map by 2 with a
depthwise ConvTranspose2d initialised to bilinear (``fill_up_weights``), add, and fuse (Conv3x3-BN-ReLU).
Every conv is an ``nn.Conv2d`` so ``passbench.skip.make_skippable`` can wrap each one.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

# Output channels of each FairMOT head (``--ltrb True``: wh has 4 channels; ``--reid_dim 128``).
HEADS: dict[str, int] = {"hm": 1, "wh": 4, "reg": 2, "id": 128}
HM_BIAS = -2.19  # FairMOT: fc[-1].bias.data.fill_(-2.19), i.e. sigmoid ~ 0.1 prior


def fill_up_weights(up: nn.ConvTranspose2d) -> None:
    """Bilinear-interpolation init of a depthwise ConvTranspose2d (FairMOT ``pose_dla_dcn.py``
    ``fill_up_weights``): every channel gets the separable kernel (1 - |i/f - c|)(1 - |j/f - c|)."""
    w = up.weight.data  # (C, 1, k, k)
    k = w.size(2)
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = torch.tensor([1 - abs(i / f - c) for i in range(k)], dtype=w.dtype)
    w.copy_((ramp[:, None] * ramp[None, :]).expand_as(w))


def bilinear_up(ch: int, f: int) -> nn.ConvTranspose2d:
    """Depthwise ConvTranspose2d(k=2f, s=f, p=f//2, groups=ch, no bias) upsampling by ``f``, bilinear init."""
    up = nn.ConvTranspose2d(ch, ch, 2 * f, stride=f, padding=f // 2, output_padding=0, groups=ch, bias=False)
    fill_up_weights(up)
    return up


class ConvBNReLU(nn.Sequential):
    """Conv(k, bias=False) + BatchNorm + ReLU; keys ``0.weight``, ``1.*``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def make_head(cin: int, cout: int, head_conv: int, hm: bool) -> nn.Sequential:
    """One FairMOT head: Conv3x3(cin -> head_conv, bias) + ReLU + Conv1x1(head_conv -> cout, bias).

    ``hm``: last bias -2.19; other heads: conv biases 0 (FairMOT ``fill_fc_weights``).
    """
    fc = nn.Sequential(nn.Conv2d(cin, head_conv, 3, padding=1, bias=True), nn.ReLU(inplace=True),
                       nn.Conv2d(head_conv, cout, 1, bias=True))
    if hm:
        nn.init.constant_(fc[-1].bias, HM_BIAS)
    else:
        for m in fc.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.constant_(m.bias, 0.0)
    return fc


class FairMOTHeadsMixin:
    """Adds ``hm``/``wh``/``reg``/``id`` heads as attributes of an ``nn.Module`` and runs them."""

    def _add_heads(self, cin: int, head_conv: int = 256, heads: dict[str, int] | None = None) -> None:
        self.head_names = tuple((heads or HEADS).keys())
        for name, cout in (heads or HEADS).items():
            setattr(self, name, make_head(cin, cout, head_conv, hm=name == "hm"))

    def _run_heads(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """feat: (B, C, H/4, W/4) -> {hm (B,1,..) logits, wh (B,4,..), reg (B,2,..), id (B,128,..)}."""
        return {name: getattr(self, name)(feat) for name in self.head_names}


class UpNeck(nn.Module):
    """Top-down IDA-style neck: features at strides (s, 2s, 4s, ...) -> one map at stride s, ``out_ch`` channels.

    Args:
        in_channels: channels of each input level, finest first (e.g. strides 4, 8, 16, 32).
        out_ch: channels of every projection / fusion conv and of the output.

    Forward: ``feats`` list of (B, C_i, H/s_i, W/s_i), finest first -> (B, out_ch, H/s_0, W/s_0).
    Upsampled maps are cropped to the finer level's size (odd sizes: ConvTranspose gives 2x).
    """

    def __init__(self, in_channels: Sequence[int], out_ch: int = 64) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_ch = out_ch
        self.proj = nn.ModuleList(ConvBNReLU(c, out_ch) for c in self.in_channels)
        self.up = nn.ModuleList(bilinear_up(out_ch, 2) for _ in self.in_channels[1:])
        self.node = nn.ModuleList(ConvBNReLU(out_ch, out_ch) for _ in self.in_channels[1:])

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.in_channels):
            raise ValueError(f"UpNeck: expected {len(self.in_channels)} levels, got {len(feats)}")
        y = self.proj[-1](feats[-1])  # (B, out, H/s_n, W/s_n), coarsest
        for i in range(len(feats) - 2, -1, -1):
            p = self.proj[i](feats[i])  # (B, out, h_i, w_i)
            u = self.up[i](y)[:, :, : p.shape[2], : p.shape[3]]  # 2x, cropped to level i
            y = self.node[i](u + p)
        return y
