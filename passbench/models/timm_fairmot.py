"""FairMOT heads on any timm ``features_only`` backbone: the ``timm:<arch>`` model names.

``build_model("timm:resnet18")`` (and every other place a model name is accepted) builds
:class:`TimmFairMOT`: the timm body with ``features_only=True``, the light model's neck and heads
(``fairmot_mbv2``: ``heads.UpNeck`` with ``neck_ch`` 32 to stride 4, FairMOT heads with ``head_conv``
64), and the body's normalisation inside the model (input stays RGB in [0, 1], as FairMOT).

Feature levels come from the body's ``feature_info``: for each stride 4, 8, 16, 32 the *last* level at
that stride (the deepest features before the next downsampling); strides 2 and 64+ are not used. The
chosen strides must start at 4 and double (4, 8[, 16[, 32]]), which ``UpNeck`` upsamples by 2 level by
level; a body without a stride-4 level (e.g. a plain ViT) is refused with the strides it has.

Weights: random init by default; ``pretrained="imagenet"`` (or a local weights file) initialises the body
with timm's own ImageNet loading (``passbench.models.pretrained``: the hub cache, a download when the
network allows it, else a clear error). Train with ``passbench leaderboard add timm:<arch>`` or load a
checkpoint (``passbench.models.checkpoint``).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin, UpNeck

PREFIX = "timm:"
STRIDES = (4, 8, 16, 32)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def arch_of(name: str) -> str:
    """``"timm:resnet18"`` -> ``"resnet18"`` (ValueError for a name without the prefix or arch)."""
    if not name.startswith(PREFIX) or len(name) == len(PREFIX):
        raise ValueError(f"{name!r} is not a timm model name (expected '{PREFIX}<timm architecture>')")
    return name[len(PREFIX):]


def check_arch(arch: str) -> None:
    """Raise ``KeyError`` (with close matches) when timm has no architecture ``arch``."""
    import timm  # noqa: PLC0415

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
        raise KeyError(f"unknown model '{PREFIX}{arch}': timm {timm.__version__} has no architecture {arch!r}{hint}")


def select_levels(reductions: list[int], arch: str = "?") -> list[int]:
    """Indices of the feature levels to use: the last level at each of the strides 4, 8, 16, 32.

    Args:
        reductions: ``feature_info.reduction()`` of the body (stride of each level, shallow first).

    Raises:
        ValueError: no stride-4 level, or the chosen strides do not double from 4 (names the strides).
    """
    last = {r: i for i, r in enumerate(reductions) if r in STRIDES}  # later index wins: deepest per stride
    strides = sorted(last)
    if not strides or strides[0] != 4 or strides != list(STRIDES[: len(strides)]):
        raise ValueError(f"{PREFIX}{arch}: needs feature levels at strides 4, 8, ... (doubling, up to 32); "
                         f"timm's feature_info has strides {reductions}")
    return [last[s] for s in strides]


def _create(arch: str, pretrained: Any = None, **kw: Any) -> nn.Module:
    from passbench.models.pretrained import timm_model  # noqa: PLC0415

    return timm_model(arch, pretrained, features_only=True, **kw)


class TimmFairMOT(FairMOTHeadsMixin, nn.Module):
    """A timm ``features_only`` body + ``UpNeck`` to stride 4 + FairMOT heads.

    Args:
        arch: timm architecture name (without the ``timm:`` prefix).
        neck_ch: neck channels (32, as ``fairmot_mbv2``). head_conv: head hidden channels (64).
        emb_dim: re-ID embedding size (128). normalize: apply the body's mean/std inside the model
            (timm's ``pretrained_cfg``; ImageNet's when it gives none).
        pretrained: none (random init), ``"imagenet"`` or a local weights file (``passbench.models.pretrained``).

    Attributes:
        levels: timm feature indices used (shallow first); strides: their strides (4, 8, ...);
        channels: their channels.

    Forward: x (B, 3, H, W) RGB in [0, 1] -> ``{hm (B,1,H/4,W/4) logits, wh (B,4,..), reg (B,2,..),
    id (B,emb_dim,..)}`` (H/4 rounded up). H and W that are not multiples of the coarsest stride are
    padded bottom/right with the mean colour (zeros after normalisation) and the outputs cropped back,
    because bodies that downsample with floor (e.g. ConvNeXt's unpadded stems) would otherwise give
    levels that do not line up 2:1.
    """

    def __init__(self, arch: str, neck_ch: int = 32, head_conv: int = 64, emb_dim: int = 128,
                 normalize: bool = True, pretrained: Any = None) -> None:
        super().__init__()
        check_arch(arch)
        self.arch = arch
        # Read feature_info from a shapes-only probe (no arithmetic, no memory), then build the body
        # with exactly the levels used, so that no deeper stage (e.g. stride 64) is computed.
        try:
            with torch.device("meta"):
                probe = _create(arch).feature_info
        except (NotImplementedError, RuntimeError):  # a model whose init needs real tensors
            probe = _create(arch).feature_info
        self.levels = select_levels(probe.reduction(), arch)
        self.body = _create(arch, pretrained, out_indices=tuple(self.levels))
        info = self.body.feature_info
        self.strides, self.channels = list(info.reduction()), list(info.channels())
        if self.strides != list(STRIDES[: len(self.levels)]):  # timm re-indexes out_indices: check it
            raise ValueError(f"{PREFIX}{arch}: body built with levels {self.levels} has strides {self.strides}")
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.neck = UpNeck(self.channels, neck_ch)
        self._add_heads(neck_ch, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize:
            x = (x - self.mean) / self.std
        h, w = x.shape[-2:]
        m = self.strides[-1]
        ph, pw = -h % m, -w % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))  # (B, 3, H + ph, W + pw)
        feats = self.body(x)  # list of (B, C_i, H/s_i, W/s_i), s_i = 4, 8, 16, 32
        out = self._run_heads(self.neck(feats))  # (B, neck_ch, H/4, W/4) -> heads
        if ph or pw:
            ho, wo = -(-h // 4), -(-w // 4)
            out = {k: v[:, :, :ho, :wo] for k, v in out.items()}
        return out


def build_timm_fairmot(name: str, pretrained: Any = False, **kw: Any) -> TimmFairMOT:
    """Builder behind ``passbench.models.build_model("timm:<arch>", ...)``.

    Raises:
        ValueError: a bad name or ``pretrained`` value.  KeyError: timm has no such architecture (close matches).
        PretrainedUnavailable: ImageNet weights asked for, not cached and no network (names the file).
    """
    return TimmFairMOT(arch_of(name), pretrained=pretrained, **kw)
