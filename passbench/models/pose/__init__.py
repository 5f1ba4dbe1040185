"""passbench.models.pose: 3D pose models (Tables 1-2, Figure 4), registered in ``passbench.models.MODELS``
(``passbench.models.catalog``).

Every model maps x (B, 3, H, W) RGB in [0, 1] (ImageNet mean/std applied inside) to
``{"coords": (B, J, 3) (x px, y px in output-map pixels, z in depth bins), + raw maps}`` and carries
``input_hw``, ``output_hw``, ``depth_dim``, ``num_joints``, ``depth_range_mm``, ``joint_set``
(``passbench.models.pose.common``; the 3DMPPE pipeline in ``passbench.pose`` consumes this).

    name             family   paper row  input    maps           what
    mhp_lpski        mhp      MHP        256x256  32x32, D 32    MobileHumanPose LPSKI, width 1.0
    mhp_lpski_w075   mhp      -          256x256  32x32, D 32    LPSKI, width 0.75
    mhp_lpski_w05    mhp      -          256x256  32x32, D 32    LPSKI, width 0.5
    mhp_lpwo         mhp      -          256x256  64x64, D 64    LPWO (no skip concatenations)
    mhp_lpwo_w05     mhp      -          256x256  64x64, D 64    LPWO, width 0.5
    mhp_lpres        mhp      -          256x256  64x64, D 64    LPRES (dense concatenations; width 1 only)
    posenet_r50      posenet  PoseNet    256x256  64x64, D 64    3DMPPE ResNet-50 + 3 deconvs
    vnect            vnect    VNect      368x368  46x46 (+XYZ)   ResNet-50 to res4f + VNect head
    movnect          movnect  MoVNect    256x256  32x32 (+XYZ)   MobileNetV2 student (definition partly chosen)

Model code is imported only when a model is built (this module imports no torch).
"""

from __future__ import annotations

from typing import Any

from passbench.models.catalog import no_pretrained, register_model

POSE_MODELS = ("mhp_lpski", "mhp_lpski_w075", "mhp_lpski_w05", "mhp_lpwo", "mhp_lpwo_w05", "mhp_lpres",
               "posenet_r50", "vnect", "movnect")
POSE_INPUT = (256, 256)  # (w, h): MHP / 3DMPPE cfg.input_shape


def _mhp(name: str, variant: str, width: float, pretrained: Any, kw: dict[str, Any]):
    from passbench.models.pose.mhp import MobileHumanPose  # noqa: PLC0415

    no_pretrained(name, pretrained)
    kw.setdefault("width", width)
    return MobileHumanPose(variant, **kw)


@register_model("mhp_lpski", POSE_INPUT, "mhp", "MHP",
                "MobileHumanPose LPSKI (width 1.0): PReLU MobileNetV2-style body, 2048 embedding, 3 skip DeConvs, "
                "32x32x32 soft-argmax")
def mhp_lpski(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpski", "lpski", 1.0, pretrained, kw)


@register_model("mhp_lpski_w075", POSE_INPUT, "mhp", None, "MobileHumanPose LPSKI, width multiplier 0.75")
def mhp_lpski_w075(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpski_w075", "lpski", 0.75, pretrained, kw)


@register_model("mhp_lpski_w05", POSE_INPUT, "mhp", None, "MobileHumanPose LPSKI, width multiplier 0.5")
def mhp_lpski_w05(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpski_w05", "lpski", 0.5, pretrained, kw)


@register_model("mhp_lpwo", POSE_INPUT, "mhp", None,
                "MobileHumanPose LPWO: no skip concatenations, stride-1 stem, J*64 maps at 64x64 (decoded as D=64)")
def mhp_lpwo(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpwo", "lpwo", 1.0, pretrained, kw)


@register_model("mhp_lpwo_w05", POSE_INPUT, "mhp", None, "MobileHumanPose LPWO, width multiplier 0.5")
def mhp_lpwo_w05(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpwo_w05", "lpwo", 0.5, pretrained, kw)


@register_model("mhp_lpres", POSE_INPUT, "mhp", None,
                "MobileHumanPose LPRES: every stage concatenates a pooled earlier stage; J*64 maps at 64x64 (D=64)")
def mhp_lpres(pretrained: Any = False, **kw: Any):
    return _mhp("mhp_lpres", "lpres", 1.0, pretrained, kw)


@register_model("posenet_r50", POSE_INPUT, "posenet", "PoseNet",
                "3DMPPE PoseNet: torchvision ResNet-50 + 3 ConvTranspose2d (256) + 1x1 to J*64, 64x64x64 soft-argmax")
def posenet_r50(pretrained: Any = False, **kw: Any):
    from passbench.models.pose.posenet import PoseNet  # noqa: PLC0415

    return PoseNet(pretrained=pretrained, **kw)  # imagenet: torchvision's ResNet-50 (upstream's init)


@register_model("vnect", (368, 368), "vnect", "VNect",
                "VNect: torchvision ResNet-50 to res4f + res5a/b + deconvs, heatmap + X/Y/Z location maps (stride 8)")
def vnect(pretrained: Any = False, **kw: Any):
    from passbench.models.pose.vnect import VNect  # noqa: PLC0415

    return VNect(pretrained=pretrained, **kw)


@register_model("movnect", POSE_INPUT, "movnect", "MoVNect",
                "MoVNect: torchvision MobileNetV2 blocks 1-12 + VNect-style head with depthwise convs")
def movnect(pretrained: Any = False, **kw: Any):
    from passbench.models.pose.movnect import MoVNect  # noqa: PLC0415

    return MoVNect(pretrained=pretrained, **kw)
