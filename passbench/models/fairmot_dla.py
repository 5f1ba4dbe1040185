"""FairMOT's DLA-34 network (``DLASeg``), re-implemented with the official state-dict keys.

Upstream: ``ifzhang/FairMOT`` @ 4aa62976 (MIT), ``src/lib/models/networks/pose_dla_dcn.py`` (``dla_34``)
and ``pose_dla_conv.py`` (``dlaconv_34``). Structure (read from upstream, not copied):

* ``base``: DLA-34, ``DLA([1,1,1,2,2,1], [16,32,64,128,256,512], BasicBlock)``; here timm's ``dla34``
  body, whose keys equal FairMOT's (REFERENCE.md section 2) except the 12 ``level{3,4}.project.*`` keys
  that the original DLA builds for level-2 trees and computes but never uses (timm omits them; the
  checkpoint loader drops them as documented unused keys). Outputs of levels 0..5 at strides 1..32.
* ``dla_up`` (``DLAUp``, startp 2, channels [64,128,256,512], scales [1,2,4,8]): ``ida_0..2`` are
  ``IDAUp`` blocks that project (``proj_i``), upsample (``up_i``: depthwise ConvTranspose2d, bilinear
  init) and fuse with the finer level (``node_i``).
* ``ida_up`` (``IDAUp(64, [64,128,256], [1,2,4])``): fuses the three finest DLAUp outputs at stride 4.
* heads ``hm``/``wh``/``reg``/``id`` on the 64-channel stride-4 map (``heads.py``).

``DeformConv`` = DCN 3x3 (``dcn.py``) + BN + ReLU (keys ``conv.*``, ``actf.0.*``); with ``dcn=False``
(``dlaconv_34``) ``conv`` is a plain ``nn.Conv2d(3x3, bias=False)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from passbench.models.dcn import DCN
from passbench.models.heads import FairMOTHeadsMixin, bilinear_up

DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)


def check_multiple(x: torch.Tensor, m: int, what: str) -> None:
    """DLA's trees add a max-pooled and a strided-conv branch, whose sizes differ unless H, W are
    multiples of 32 (FairMOT always letterboxes to 1088x608): fail with a clear message instead."""
    h, w = x.shape[-2:]
    if h % m or w % m:
        raise ValueError(f"{what}: input height and width must be multiples of {m}, got {h}x{w} (h x w); "
                         "letterbox to e.g. 1088x608 or 576x320 (w x h)")


class DeformConv(nn.Module):
    """FairMOT ``DeformConv``: (DCN | Conv2d) 3x3 -> BN -> ReLU; keys ``conv.*``, ``actf.0.*``."""

    def __init__(self, chi: int, cho: int, dcn: bool = True) -> None:
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(cho, momentum=0.1), nn.ReLU(inplace=True))
        self.conv = DCN(chi, cho, 3, 1, 1) if dcn else nn.Conv2d(chi, cho, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actf(self.conv(x))


class IDAUp(nn.Module):
    """FairMOT ``IDAUp(o, channels, up_f)``: for i >= 1, ``layers[i] = node_i(up_i(proj_i(layers[i])) + layers[i-1])``."""

    def __init__(self, o: int, channels: Sequence[int], up_f: Sequence[int], dcn: bool = True) -> None:
        super().__init__()
        for i in range(1, len(channels)):
            f = int(up_f[i])
            setattr(self, f"proj_{i}", DeformConv(channels[i], o, dcn))
            setattr(self, f"up_{i}", bilinear_up(o, f))
            setattr(self, f"node_{i}", DeformConv(o, o, dcn))

    def forward(self, layers: list[torch.Tensor], startp: int, endp: int) -> None:
        """In place on ``layers`` (as upstream): levels startp+1..endp-1 become fused stride-``layers[startp]`` maps."""
        for i in range(startp + 1, endp):
            j = i - startp
            up = getattr(self, f"up_{j}")(getattr(self, f"proj_{j}")(layers[i]))
            # Deviation: crop to the finer level (upstream assumes sizes divisible by 32 and does not crop).
            up = up[:, :, : layers[i - 1].shape[2], : layers[i - 1].shape[3]]
            layers[i] = getattr(self, f"node_{j}")(up + layers[i - 1])


class DLAUp(nn.Module):
    """FairMOT ``DLAUp(startp, channels, scales)``; returns the fused maps finest first."""

    def __init__(self, startp: int, channels: Sequence[int], scales: Sequence[int], dcn: bool = True) -> None:
        super().__init__()
        self.startp = startp
        channels = list(channels)
        in_channels = list(channels)
        scales = list(scales)
        for i in range(len(channels) - 1):
            j = -i - 2
            setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:], [s // scales[j] for s in scales[j:]], dcn))
            n = len(scales[j + 1:])
            scales[j + 1:] = [scales[j]] * n
            in_channels[j + 1:] = [channels[j]] * n

    def forward(self, layers: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [layers[-1]]
        for i in range(len(layers) - self.startp - 1):
            getattr(self, f"ida_{i}")(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class FairMOTDLA(FairMOTHeadsMixin, nn.Module):
    """FairMOT DLASeg (``dla_34`` with DCN, or ``dlaconv_34`` with ``dcn=False``).

    Args:
        dcn: deformable convs in the neck (official ``dla_34``) or plain 3x3 convs (``dlaconv_34``).
        head_conv: hidden channels of each head (FairMOT: 256).
        emb_dim: re-ID embedding channels (FairMOT ``--reid_dim``: 128).

    Forward: x (B, 3, H, W) RGB in [0, 1] (no mean/std, as FairMOT) -> dict of (B, C, H/4, W/4) maps.
    """

    first_level, last_level = 2, 5  # down_ratio 4 -> first_level log2(4); get_pose_net last_level=5

    def __init__(self, dcn: bool = True, head_conv: int = 256, emb_dim: int = 128, pretrained: Any = None) -> None:
        super().__init__()
        from passbench.models.pretrained import timm_model  # noqa: PLC0415 - imports timm only when built

        # pretrained: imagenet = timm's dla34.in1k, the DLA-34 ImageNet weights upstream's dla34(pretrained=True)
        # loads (passbench.models.pretrained; random init by default)
        self.base = timm_model("dla34", pretrained, num_classes=0)
        ch = list(DLA34_CHANNELS[self.first_level:])  # [64, 128, 256, 512]
        self.dla_up = DLAUp(self.first_level, ch, [2**i for i in range(len(ch))], dcn)
        nl = self.last_level - self.first_level
        self.ida_up = IDAUp(ch[0], ch[:nl], [2**i for i in range(nl)], dcn)
        self._add_heads(ch[0], head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def _base_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = self.base
        x = b.base_layer(x)
        out = []
        for i in range(6):
            x = getattr(b, f"level{i}")(x)
            out.append(x)  # level i at stride 2**i
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_multiple(x, 32, "FairMOT DLA-34")
        x = self.dla_up(self._base_levels(x))  # [s4 (64), s8 (128), s16 (256), s32 (512)]
        y = [t.clone() for t in x[: self.last_level - self.first_level]]
        self.ida_up(y, 0, len(y))
        return self._run_heads(y[-1])  # (B, 64, H/4, W/4) -> heads
