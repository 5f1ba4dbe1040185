"""HarDNet-85 (Chao et al., ICCV 2019) and a U-shaped FairMOT detector on it (Table 3 row "HarDNet-85").

Not in timm or torchvision (REFERENCE.md 1.5), so written from the definition in
``PingoLH/Pytorch-HarDNet`` @ de9662f (MIT) ``hardnet.py`` (read, not copied):
arch 85: stem Conv3x3(3->48, s2) + Conv3x3(48->96) + MaxPool(3, s2); six HarD blocks with
ch_list [192, 256, 320, 480, 720, 1280], growth [24, 24, 28, 36, 48, 256], n_layers [8, 16, 16, 16, 16, 4],
grmul 1.7, each followed by a Conv1x1 transition to ch_list[i] and, where downSamp = [1,0,1,0,1,0],
MaxPool(2, s2); dropout 0.1 before the last transition; classifier AvgPool + Dropout(0.2) + Linear(1280, 1000).
``ConvLayer`` = Conv(bias=False) + BN + ReLU6.

HarD block link rule (paper Sec. 3.1): layer l (1-based) takes the outputs of layers l - 2^i for every
i with 2^i | l; its width is growth * grmul^(#links - 1), rounded to an even number; the block outputs
the concat of its odd layers, its last layer (and the base when keepBase).

Detector (``HarDNetFairMOT``): the stride-4/8/16/32 transition outputs (192, 320, 720, 1280 channels)
feed ``heads.UpNeck`` (64 channels, stride 4) and FairMOT heads. Deviation: CenterNet-HarDNet
(PingoLH/CenterNet-HarDNet, MIT) uses HarD blocks in its decoder with bilinear upsampling and skip
concatenation; a plain IDA-style neck is used here so every Table 3 row shares the same neck design.
"""

from __future__ import annotations

import torch
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin, UpNeck

HARDNET85 = dict(first_ch=(48, 96), ch_list=(192, 256, 320, 480, 720, 1280), gr=(24, 24, 28, 36, 48, 256),
                 n_layers=(8, 16, 16, 16, 16, 4), down=(1, 0, 1, 0, 1, 0), grmul=1.7, drop=0.2)


class ConvLayer(nn.Sequential):
    """Conv(k, stride, bias=False) + BN + ReLU6 (keys ``conv``, ``norm``)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(cin, cout, k, stride, k // 2, bias=False))
        self.add_module("norm", nn.BatchNorm2d(cout))
        self.add_module("relu", nn.ReLU6(inplace=True))


def hard_link(layer: int, base_ch: int, growth: float, grmul: float) -> tuple[int, int, list[int]]:
    """(out_channels, in_channels, links) of HarD block layer ``layer`` (0 = the block input)."""
    if layer == 0:
        return base_ch, 0, []
    out = growth
    links = []
    for i in range(10):
        dv = 2**i
        if layer % dv == 0:
            links.append(layer - dv)
            if i > 0:
                out *= grmul
    out = int(int(out + 1) / 2) * 2
    cin = sum(hard_link(k, base_ch, growth, grmul)[0] for k in links)
    return out, cin, links


class HarDBlock(nn.Module):
    """Harmonic dense block; forward (B, in, H, W) -> (B, out_channels, H, W)."""

    def __init__(self, cin: int, growth: int, grmul: float, n_layers: int, keep_base: bool = False) -> None:
        super().__init__()
        self.keep_base = keep_base
        self.links: list[list[int]] = []
        layers, self.out_channels = [], 0
        for i in range(n_layers):
            out, inch, link = hard_link(i + 1, cin, growth, grmul)
            self.links.append(link)
            layers.append(ConvLayer(inch, out))
            if i % 2 == 0 or i == n_layers - 1:
                self.out_channels += out
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for layer, link in zip(self.layers, self.links):
            tin = [outs[i] for i in link]
            outs.append(layer(torch.cat(tin, 1) if len(tin) > 1 else tin[0]))
        t = len(outs)
        keep = [o for i, o in enumerate(outs) if (i == 0 and self.keep_base) or i == t - 1 or i % 2 == 1]
        return torch.cat(keep, 1)


class HarDNet(nn.Module):
    """HarDNet-85 body (``base`` ModuleList as upstream) with an optional ImageNet classifier.

    Args:
        num_classes: classifier outputs (1000 for the ImageNet variant), 0 for none.

    ``forward(x)`` -> logits (B, num_classes); ``features(x)`` -> the transition outputs at strides
    4, 8, 16, 32 (the last of each stride).
    """

    def __init__(self, num_classes: int = 1000, cfg: dict | None = None) -> None:
        super().__init__()
        c = cfg or HARDNET85
        f0, f1 = c["first_ch"]
        base: list[nn.Module] = [ConvLayer(3, f0, 3, 2), ConvLayer(f0, f1, 3), nn.MaxPool2d(3, 2, 1)]
        ch, stride, taps = f1, 4, {}
        n = len(c["n_layers"])
        for i in range(n):
            blk = HarDBlock(ch, c["gr"][i], c["grmul"], c["n_layers"][i])
            base.append(blk)
            if i == n - 1:
                base.append(nn.Dropout(0.1))
            base.append(ConvLayer(blk.out_channels, c["ch_list"][i], 1))
            ch = c["ch_list"][i]
            taps[stride] = (len(base) - 1, ch)  # last transition at this stride wins
            if c["down"][i]:
                base.append(nn.MaxPool2d(2, 2))
                stride *= 2
        self.taps = [taps[s][0] for s in sorted(taps)]
        self.tap_channels = [taps[s][1] for s in sorted(taps)]
        self.base = nn.ModuleList(base)
        self.num_classes = num_classes
        if num_classes:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(c["drop"]),
                                      nn.Linear(ch, num_classes))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, m in enumerate(self.base):
            x = m(x)
            if i in self.taps:
                out.append(x)
        return out  # [(B,192,H/4,..), (B,320,H/8,..), (B,720,H/16,..), (B,1280,H/32,..)] for HarDNet-85

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.num_classes:
            raise ValueError("HarDNet built with num_classes=0 has no classifier; call .features(x)")
        for m in self.base:
            x = m(x)
        return self.head(x)


class HarDNetFairMOT(FairMOTHeadsMixin, nn.Module):
    """HarDNet-85 body + ``UpNeck`` (64 ch, stride 4) + FairMOT heads; x (B,3,H,W) in [0,1] -> head dict."""

    def __init__(self, neck_ch: int = 64, head_conv: int = 256, emb_dim: int = 128) -> None:
        super().__init__()
        self.body = HarDNet(num_classes=0)
        self.neck = UpNeck(self.body.tap_channels, neck_ch)
        self._add_heads(neck_ch, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._run_heads(self.neck(self.body.features(x)))
