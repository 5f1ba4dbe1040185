"""passbench.models: MOT backbones with FairMOT heads and 3D pose models, registered by name.

Every MOT model (family ``fairmot_dla``, ``mobilenet``, ...) maps x (B, 3, H, W) RGB in [0, 1] (no
mean/std, as FairMOT) to ``{hm (B,1,H/4,W/4) logits, wh (B,4,..) ltrb, reg (B,2,..), id (B,128,..)}``.
Every pose model (``passbench.models.pose``: ``mhp_*``, ``posenet_r50``, ``vnect``, ``movnect``) maps
x (B, 3, H, W) RGB in [0, 1] (ImageNet mean/std applied inside) to ``{coords (B,J,3) (x, y output-map
px, z depth bins), + its raw maps}`` and carries ``input_hw``, ``output_hw``, ``depth_dim``, ...
(``passbench.models.pose.common``).

    MODELS                      Registry name -> builder(**kw) (``passbench.registry.Registry``)
    MODEL_SPECS                 name -> ModelSpec (input size, family, paper row, description)
    build_model(name, **kw)     -> nn.Module (``pretrained``: none (default), "imagenet" or a local weights
                                   file (``passbench.models.pretrained``), "deepsort" for fairmot_mbv2)
    model_spec(name)            -> ModelSpec of a registered or ``timm:<arch>`` name
    measure_model(name, input_wh=None, device="meta") -> (params_m, gmacs)
    model_table(names=None, measure=True) -> pandas.DataFrame [name, params_m, gmacs, input_wh, ...]

Besides the registered names, ``timm:<arch>`` is any timm ``features_only`` backbone with the light
model's neck and FairMOT heads (``passbench.models.timm_fairmot``), accepted by every function here.

Family modules (and timm) are imported only when a model is built, so importing this package is cheap.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

from passbench.models.catalog import MODEL_SPECS, MODELS, ModelSpec, no_pretrained, register_model

__all__ = ["MODELS", "MODEL_SPECS", "ModelSpec", "build_model", "count_params", "measure_model", "model_spec",
           "model_table"]

FAIRMOT_WH = (1088, 608)  # FairMOT opt.img_size (w, h)
LIGHT_WH = (576, 320)
TIMM_PREFIX = "timm:"  # timm:<arch>: any timm features_only backbone (passbench.models.timm_fairmot)


@register_model("fairmot_dla34", FAIRMOT_WH, "fairmot_dla", "FairMOT",
                "FairMOT DLASeg dla_34: DLA-34 + DLAUp/IDAUp with DCNv2 (torchvision deform_conv2d) + heads")
def fairmot_dla34(pretrained: Any = False, **kw: Any):
    from passbench.models.fairmot_dla import FairMOTDLA

    return FairMOTDLA(dcn=True, pretrained=pretrained, **kw)


@register_model("fairmot_dla34_conv", FAIRMOT_WH, "fairmot_dla", None,
                "FairMOT dlaconv_34: the same DLASeg with plain 3x3 convs instead of DCN (fully skippable)")
def fairmot_dla34_conv(pretrained: Any = False, **kw: Any):
    from passbench.models.fairmot_dla import FairMOTDLA

    return FairMOTDLA(dcn=False, pretrained=pretrained, **kw)


@register_model("dla34", FAIRMOT_WH, "dla", "DLA-34",
                "timm dla34 body (strides 4-32) + plain IDA-style UpNeck (64 ch) + FairMOT heads")
def dla34(pretrained: Any = False, **kw: Any):
    from passbench.models.regnet import TimmUpNet

    return TimmUpNet("dla34", out_indices=(2, 3, 4, 5), size_multiple=32, pretrained=pretrained, **kw)


@register_model("hrnet_w32", FAIRMOT_WH, "hrnet", "HRNet-W32",
                "timm hrnet_w32 raw branches, upsampled + concatenated (480 ch) at stride 4 + FairMOT heads")
def hrnet_w32(pretrained: Any = False, **kw: Any):
    from passbench.models.hrnet import HRNetFairMOT

    return HRNetFairMOT(width=32, pretrained=pretrained, **kw)


@register_model("regnety_040", FAIRMOT_WH, "regnet", "RegNetY-4.0GF",
                "timm regnety_040 (strides 4-32) + UpNeck (64 ch) + FairMOT heads")
def regnety_040(pretrained: Any = False, **kw: Any):
    from passbench.models.regnet import TimmUpNet

    return TimmUpNet("regnety_040", pretrained=pretrained, **kw)


@register_model("fpn_resnet34", FAIRMOT_WH, "fpn", "FPN",
                "torchvision ResNet-34 (BatchNorm) + torchvision FeaturePyramidNetwork (64 ch), P2 -> FairMOT heads")
def fpn_resnet34(pretrained: Any = False, **kw: Any):
    from passbench.models.fpn import ResNetFPN

    return ResNetFPN(depth=34, pretrained=pretrained, **kw)


@register_model("hardnet85", FAIRMOT_WH, "hardnet", "HarDNet-85",
                "HarDNet-85 (ported from PingoLH/Pytorch-HarDNet) + UpNeck (64 ch) + FairMOT heads")
def hardnet85(pretrained: Any = False, **kw: Any):
    from passbench.models.hardnet import HarDNetFairMOT

    no_pretrained("hardnet85", pretrained)
    return HarDNetFairMOT(**kw)


@register_model("fairmot_mbv2", LIGHT_WH, "mobilenet", None,
                "light FairMOT: torchvision MobileNetV2 + UpNeck (32 ch) + heads (head_conv 64); CPU demo / PASS base")
def fairmot_mbv2(pretrained: Any = False, **kw: Any):
    from passbench.models.mobilenet import MobileNetV2FairMOT

    return MobileNetV2FairMOT(pretrained=pretrained, **kw)


# 3D pose models (Tables 1-2, Figure 4) register themselves in the catalog; the module imports no torch.
import passbench.models.pose  # noqa: E402,F401


def build_model(name: str, /, **kw: Any):
    """Build a registered model (``pretrained=False`` by default: nothing is read or downloaded).

    ``pretrained="imagenet"`` initialises the backbone with timm's / torchvision's ImageNet weights (their
    cache, or their download when the network allows it), a path with a local copy of them
    (``passbench.models.pretrained``); models without such weights refuse it.

    Raises:
        KeyError: unknown name (with close matches).
        PretrainedUnavailable: ImageNet weights asked for, not cached and no network (names the file).
    """
    if name.startswith(TIMM_PREFIX):
        from passbench.models.timm_fairmot import build_timm_fairmot  # noqa: PLC0415

        return build_timm_fairmot(name, **kw)
    return MODELS.build(name, **kw)


def model_spec(name: str) -> ModelSpec:
    """Metadata of a registered model, or of a ``timm:<arch>`` model (made up on the fly, not stored).

    Raises:
        KeyError: unknown name (with close matches; for ``timm:`` names, timm's architectures).
    """
    if name.startswith(TIMM_PREFIX):
        from passbench.models.timm_fairmot import arch_of, check_arch  # noqa: PLC0415

        check_arch(arch_of(name))
        return ModelSpec(name, LIGHT_WH, "timm_fairmot", None,
                         f"timm {arch_of(name)} features_only (strides 4-32) + UpNeck (32 ch) + FairMOT heads (head_conv 64)")
    MODELS.get(name)  # KeyError with close matches
    return MODEL_SPECS[name]


def count_params(model) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def _select(names: str | Iterable[str] | None) -> list[str]:
    if names is None:
        return MODELS.names()
    pats = [names] if isinstance(names, str) else list(names)
    out = [n for n in MODELS.names() if any(fnmatch.fnmatch(n, p) for p in pats)]
    out += [p for p in pats if p.startswith(TIMM_PREFIX)]  # timm:<arch> names are taken as given
    if not out:
        raise KeyError(f"model_table: {names!r} matches no registered model (known: {', '.join(MODELS.names())})")
    return out


def measure_model(name: str, input_wh: tuple[int, int] | None = None, device: str = "meta") -> tuple[float, float]:
    """``(params_m, gmacs)`` of a registered model (random init) for one (1, 3, H, W) input.

    Args:
        name: registry name. input_wh: (width, height); default the model's benchmark input.
        device: "meta" (default: shapes only, no arithmetic, ~0.1-3 s per model even at 1088x608) or
            "cpu" (real forward). MACs come from ``passbench.metrics.cost.count_macs`` either way
            (FlopCounterMode FLOPs / 2, which counts from shapes); a model with an op lacking a meta
            kernel falls back to CPU.
    """
    import torch  # noqa: PLC0415

    from passbench.metrics.cost import count_macs  # noqa: PLC0415

    w, h = tuple(input_wh) if input_wh else model_spec(name).input_wh
    try:
        with torch.device(device):
            model = build_model(name, pretrained=False).eval()
        macs = count_macs(model, torch.zeros(1, 3, h, w, device=device))
    except NotImplementedError:
        if device == "cpu":
            raise
        return measure_model(name, (w, h), "cpu")
    return count_params(model) / 1e6, macs / 1e9


def model_table(names: str | Iterable[str] | None = None, measure: bool = True, input_wh: tuple[int, int] | None = None,
                device: str = "meta"):
    """Params and MACs of registered models, one row each.

    Args:
        names: glob(s) over registry names (None: all).
        measure: build each model (random init) and count params, and MACs of one forward at the
            model's benchmark input (or ``input_wh``), batch 1, with ``passbench.metrics.cost.count_macs``
            (FlopCounterMode FLOPs / 2). False: metadata only (params_m / gmacs are NaN).
        input_wh: override the input (width, height) for every row (e.g. a small size in tests).
        device: see ``measure_model`` ("meta": no arithmetic, the whole table in seconds).

    Returns:
        pandas.DataFrame with columns name, params_m, gmacs, input_wh, family, paper_row.
    """
    import pandas as pd  # noqa: PLC0415

    rows = []
    for name in _select(names):
        spec = model_spec(name)
        wh = tuple(input_wh) if input_wh else spec.input_wh
        params_m = gmacs = float("nan")
        if measure:
            params_m, gmacs = measure_model(name, wh, device)
        rows.append({"name": name, "params_m": params_m, "gmacs": gmacs, "input_wh": f"{wh[0]}x{wh[1]}",
                     "family": spec.family, "paper_row": spec.paper_row})
    return pd.DataFrame(rows, columns=["name", "params_m", "gmacs", "input_wh", "family", "paper_row"])
