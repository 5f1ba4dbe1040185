"""MobileHumanPose (Choi, Choi, Kim, CVPRW 2021): the LPSKI, LPRES and LPWO backbones + soft-argmax.

Re-implemented from the facts of ``SangbumChoi/MobileHumanPose`` @ a359dd9 (MIT), files
``common/backbone/lpnet_{ski,res,wo}_concat.py`` and ``main/model.py`` (REFERENCE.md 1.1):

* MobileNetV2-style inverted residuals with **PReLU** (one slope per channel) instead of ReLU6; stem
  of 48 channels (x width, rounded to a multiple of 8); setting (t, c, n, s) =
  [1,64,1,2], [6,48,2,2], [6,48,3,2], [6,64,4,2], [6,96,3,2], [6,160,3,1], [6,320,1,1] for LPSKI
  (LPRES / LPWO: stem stride 1, first stage stride 1, the 160 stage stride 2);
* a 1x1 ``last_conv`` to 2048 channels (``cfg.embedding_size``, not scaled by the width);
* three ``DeConv`` blocks (1x1 conv, 3x3 conv to 256, ``nn.UpsamplingBilinear2d`` x2, i.e.
  ``align_corners=True``), LPSKI concatenating the skip feature *before* the main path
  (``cat([x0, z])``);
* a final 1x1 conv to J x 32 (LPSKI) or J x 64 (LPRES, LPWO) channels.

Module names follow upstream (``backbone.first_conv.0.weight`` ... ``backbone.final_layer.bias``,
LPRES's ``deonv*`` spelling included), so an upstream ``state_dict`` loads by name.

Output maps: LPSKI 32x32 at 256x256 with depth 32 (``main/config.py``). LPRES and LPWO hard-code
J x 64 channels at 64x64; upstream's config (32x32, depth 32) cannot decode them. We decode them as
what their shape says: a 64x64 map with 64 depth bins (the 3DMPPE PoseNet convention), and say so in
``baselines/mhp_lpski/README.md``.
"""

from __future__ import annotations

import torch
from torch import nn

from passbench.models.pose.common import PoseModel, soft_argmax_3d

LPSKI_SETTING = ((1, 64, 1, 2), (6, 48, 2, 2), (6, 48, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2), (6, 160, 3, 1),
                 (6, 320, 1, 1))
# LPRES / LPWO keep full resolution longer: the first stage has stride 1 and the 160 stage stride 2.
LPRES_SETTING = ((1, 64, 1, 1), (6, 48, 2, 2), (6, 48, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2), (6, 160, 3, 2),
                 (6, 320, 1, 1))
STEM = 48
EMBEDDING = 2048
VARIANTS = ("lpski", "lpres", "lpwo")


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10 % down (MobileNetV2's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    """conv (no bias) -> BN -> PReLU; keys ``0`` / ``1`` / ``2`` as upstream ``ConvBNReLU``."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.PReLU(cout))


class InvertedResidual(nn.Module):
    """MobileNetV2 block with PReLU: [1x1 expand] -> 3x3 depthwise -> 1x1 linear (+ identity)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [ConvBNAct(cin, hidden, 1)] if expand != 1 else []
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class DeConv(nn.Sequential):
    """1x1 conv (cin -> mid) -> BN -> PReLU -> 3x3 conv (mid -> cout) -> BN -> PReLU -> bilinear x2.

    Upstream ``DeConv`` (LPSKI, LPWO; cin includes the concatenated skip) and ``DoubleConv`` (LPRES,
    mid == cout) are this block; both convs keep upstream's default bias.
    """

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, mid, 1), nn.BatchNorm2d(mid), nn.PReLU(mid),
                         nn.Conv2d(mid, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.PReLU(cout),
                         nn.UpsamplingBilinear2d(scale_factor=2))  # align_corners=True, as upstream


def _stages(setting, stem: int, width: float) -> tuple[list[nn.Module], list[int]]:
    """Inverted-residual blocks of a setting (sequential wiring) and the output channels per stage."""
    blocks, outs, cin = [], [], stem
    for t, c, n, s in setting:
        cout = make_divisible(c * width)
        for i in range(n):
            blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
            cin = cout
        outs.append(cout)
    return blocks, outs


class LpNetSki(nn.Module):
    """LPSKI backbone (``LpNetSkiConcat``): stride-32 body, 2048-ch embedding, 3 DeConvs with skips.

    Forward: (B, 3, H, W) normalised -> (B, J*32, H/8, W/8).
    """

    def __init__(self, num_joints: int, width: float = 1.0, depth_dim: int = 32) -> None:
        super().__init__()
        stem = make_divisible(STEM * width)
        self.first_conv = ConvBNAct(3, stem, 3, 2)
        blocks, outs = _stages(LPSKI_SETTING, stem, width)
        self.inv_residual = nn.Sequential(*blocks)
        self.last_conv = ConvBNAct(outs[-1], EMBEDDING, 1)
        # Skip features (forward): blocks 0..5 end at 48w ch / stride 16, 6..9 at 64w / 32, 10..12 at 96w / 64.
        self.deconv0 = DeConv(EMBEDDING + outs[4], outs[4], 256)
        self.deconv1 = DeConv(256 + outs[3], outs[3], 256)
        self.deconv2 = DeConv(256 + outs[2], outs[2], 256)
        self.final_layer = nn.Conv2d(256, num_joints * depth_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)  # (B, 48w, H/2, W/2)
        x2 = self.inv_residual[0:6](x)  # (B, 48w, H/16, W/16)
        x1 = self.inv_residual[6:10](x2)  # (B, 64w, H/32, W/32)
        x0 = self.inv_residual[10:13](x1)  # (B, 96w, H/64, W/64)
        z = self.last_conv(self.inv_residual[13:](x0))  # (B, 2048, H/64, W/64)
        z = self.deconv0(torch.cat([x0, z], 1))  # (B, 256, H/32): skip first, upstream cat([x0, z])
        z = self.deconv1(torch.cat([x1, z], 1))  # (B, 256, H/16)
        z = self.deconv2(torch.cat([x2, z], 1))  # (B, 256, H/8)
        return self.final_layer(z)  # (B, J*D, H/8, W/8)


class LpNetWo(nn.Module):
    """LPWO backbone (``LpNetWoConcat``): no skip concatenations, stride-1 stem, output H/4 x W/4.

    Forward: (B, 3, H, W) normalised -> (B, J*64, H/4, W/4).
    """

    def __init__(self, num_joints: int, width: float = 1.0, depth_dim: int = 64) -> None:
        super().__init__()
        stem = make_divisible(STEM * width)
        self.first_conv = ConvBNAct(3, stem, 3, 1)
        blocks, outs = _stages(LPRES_SETTING, stem, width)
        self.inv_residual = nn.Sequential(*blocks)
        self.last_conv = ConvBNAct(outs[-1], EMBEDDING, 1)
        self.deconv0 = DeConv(EMBEDDING, outs[-2], 256)
        self.deconv1 = DeConv(256, outs[-3], 256)
        self.deconv2 = DeConv(256, outs[-4], 256)
        self.final_layer = nn.Conv2d(256, num_joints * depth_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last_conv(self.inv_residual(self.first_conv(x)))  # (B, 2048, H/32, W/32)
        return self.final_layer(self.deconv2(self.deconv1(self.deconv0(x))))


class LpNetRes(nn.Module):
    """LPRES backbone (``LpNetResConcat``): every stage sees [avg-pooled earlier stage, previous stage].

    Upstream wires the concatenations with the *unscaled* setting channels, so only width 1.0 builds.
    Forward: (B, 3, H, W) normalised -> (B, J*64, H/4, W/4).
    """

    def __init__(self, num_joints: int, width: float = 1.0, depth_dim: int = 64) -> None:
        super().__init__()
        if width != 1.0:
            raise ValueError(f"mhp_lpres: width {width} is not buildable (upstream LpNetResConcat wires its "
                             "concatenations with unscaled channels; only width 1.0 works)")
        c = [s[1] for s in LPRES_SETTING]
        # Input channels of stage i: [pooled output of stage i-2, output of stage i-1] (upstream inp_channel).
        cin = [STEM, STEM + c[0]] + [c[i - 2] + c[i - 1] for i in range(2, 7)]
        self.first_conv = ConvBNAct(3, STEM, 3, 1)
        blocks = []
        for (t, cout, n, s), ci in zip(LPRES_SETTING, cin):
            for i in range(n):
                blocks.append(InvertedResidual(ci if i == 0 else cout, cout, s if i == 0 else 1, t))
        self.inv_residual = nn.Sequential(*blocks)
        self.last_conv = ConvBNAct(c[5] + c[6], EMBEDDING, 1)
        self.deonv0 = DeConv(c[6] + EMBEDDING, 256, 256)  # upstream spells these "deonv"
        self.deonv1 = DeConv(EMBEDDING + 256, 256, 256)
        self.deonv2 = DeConv(256 + 256, 256, 256)
        self.final_layer = nn.Conv2d(256, num_joints * depth_dim, 1)
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.upsample = nn.UpsamplingBilinear2d(scale_factor=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, p, up = self.inv_residual, self.avgpool, self.upsample
        a = self.first_conv(x)  # (B, 48, H, W)
        b = r[0:1](a)  # (B, 64, H, W)
        c = r[1:3](torch.cat([a, b], 1))  # (B, 48, H/2)
        d = r[3:6](torch.cat([p(b), c], 1))  # (B, 48, H/4)
        e = r[6:10](torch.cat([p(c), d], 1))  # (B, 64, H/8)
        f = r[10:13](torch.cat([p(d), e], 1))  # (B, 96, H/16)
        g = r[13:16](torch.cat([p(e), f], 1))  # (B, 160, H/32)
        h = r[16:17](torch.cat([p(f), g], 1))  # (B, 320, H/32)
        emb = self.last_conv(torch.cat([g, h], 1))  # (B, 2048, H/32)
        u0 = self.deonv0(torch.cat([h, emb], 1))  # (B, 256, H/16)
        u1 = self.deonv1(torch.cat([up(emb), u0], 1))  # (B, 256, H/8)
        u2 = self.deonv2(torch.cat([up(u0), u1], 1))  # (B, 256, H/4)
        return self.final_layer(u2)


_BACKBONES = {"lpski": (LpNetSki, 8, 32), "lpwo": (LpNetWo, 4, 64), "lpres": (LpNetRes, 4, 64)}


class MobileHumanPose(PoseModel):
    """MHP: a LP* backbone and 3D soft-argmax (upstream ``CustomNet``; keys ``backbone.*``).

    Args:
        variant: "lpski" (default, Table 1/2's MHP), "lpres" or "lpwo".
        num_joints: J (18: Human3.6M's 17 + Thorax, as upstream on Human3.6M).
        width: width multiplier (stem and stages; the 2048 embedding and the 256-ch DeConvs stay).
        input_hw: input crop (H, W); upstream asserts 256x256. Multiples of 64 (LPSKI) / 32 build.
        normalize: ImageNet mean/std inside the model.  input_range: 1 (passbench weights) or 255 (an
            upstream MobileHumanPose snapshot; ``common.PoseModel``).

    Forward: x (B, 3, H, W) RGB in [0, 1] -> {"coords": (B, J, 3), "heatmaps": (B, J, D, Ho, Wo)}.
    """

    def __init__(self, variant: str = "lpski", num_joints: int = 18, width: float = 1.0,
                 input_hw: tuple[int, int] = (256, 256), normalize: bool = True, input_range: float = 1.0) -> None:
        if variant not in _BACKBONES:
            raise ValueError(f"MobileHumanPose: unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
        cls, stride, depth = _BACKBONES[variant]
        multiple = 64 if variant == "lpski" else 32  # LPSKI's deepest skip sits at stride 64
        if any(int(v) % multiple for v in input_hw):
            raise ValueError(f"mhp_{variant}: input {input_hw[0]}x{input_hw[1]} must be multiples of {multiple}")
        super().__init__(input_hw, (input_hw[0] // stride, input_hw[1] // stride), depth, num_joints, normalize,
                         input_range)
        self.variant = variant
        self.backbone = cls(num_joints, width, depth)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hm = self.backbone(self._prepare(x))  # (B, J*D, Ho, Wo)
        coords, vol = soft_argmax_3d(hm, self.num_joints, self.depth_dim)
        return {"coords": coords, "heatmaps": vol}
