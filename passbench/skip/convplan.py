"""Which convs of a model to gate when every conv is gated (the PASS paper's scheme), and at which patch size.

The paper "equips each convolution layer with a learnable gate". Two kinds of conv are left dense
here, by rule, and listed with the reason (``every_conv``):

* **the stem**: the convs that read the image itself (``in_channels`` = the input's channels). Its
  3-channel input makes the block-sparse kernel gather thin rows (memory-bound, like a depthwise
  conv) with a wide halo (7x7 stride 2: a 21x21 input window per 8x8 output patch, 1.7x the pixels);
* **grids under ``min_patches``**: a PASS gate never decides on fewer patches (``PassGate``: per-sample
  min-max normalisation always sends one patch to 1 and one to 0), so such a layer would be wrapped but
  dense; excepting it for every method keeps the floors and Skip-Conv on the same layers as PASS.

Patch size per layer (``patch_sizes``, largest first): each conv takes the largest candidate whose
output grid holds at least ``min_patches`` patches at the given input size; a conv no candidate
reaches is excepted. With candidates ``(8,)`` a stride-16 map of 24x14 (a 3x2 grid) is excepted;
with ``(8, 4)`` it is gated at patch 4 (6x4) while the finer maps keep patch 8 (less halo per patch:
(p + 2)^2 / p^2 = 1.56 at p = 8, 2.25 at p = 4 for a 3x3 conv).

``every_conv`` returns the plan as ``make_skippable`` keyword arguments (``exclude``, ``patch_size``)
plus one ``ConvSite`` row per conv (grid, MACs, decision), the table ``scripts/everyconv_layers.py``
prints into the docs.

``block_followers`` is the one-gate-per-block variant of a plan (a passbench lever against gate cost, not the
paper's scheme): within a residual block the second conv and the shortcut conv take the first conv's mask,
within a conv chain (an ``nn.Sequential`` of convs and element-wise layers, e.g. a FairMOT head) the later
convs take the first conv's; only where both are gated on the same output grid at the same patch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from passbench.skip.geometry import conv_input_sizes, out_hw
from passbench.skip.macs import conv_dense_macs

__all__ = ["ConvSite", "ConvPlan", "block_followers", "conv_sites", "every_conv"]

# layers a conv chain may hold between its convs: they act per pixel, so the chain's output patch grid is one
_ELEMENTWISE = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Identity,
                nn.Sigmoid)


@dataclass(frozen=True)
class ConvSite:
    """One Conv2d of a model at one input size.

    Attributes:
        name: qualified module name. kernel, stride, groups, cin, cout: the conv's shape.
        in_hw, out_hw: input / output map (H, W). macs: dense MACs of one frame (batch 1).
        grids: {patch: (Hp, Wp)} output patch grid per candidate patch size.
        patch: the chosen patch size, or None when the conv stays dense. reason: why it stays dense ("").
    """

    name: str
    kernel: int
    stride: int
    groups: int
    cin: int
    cout: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int
    grids: dict[int, tuple[int, int]]
    patch: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class ConvPlan:
    """The every-conv plan of a model at one input size.

    Attributes:
        sites: every Conv2d (module order), with its decision.
        exclude: names left dense (``make_skippable(exclude=...)``).
        patch_size: one int when every gated conv has the same patch, else ``{name: p, ..., "*": p0}``
            (the exceptions by name, then the most common patch as the default).
    """

    sites: list[ConvSite]
    exclude: list[str] = field(default_factory=list)
    patch_size: int | dict[str, int] = 8

    def params(self) -> dict:
        """``make_skippable`` keyword arguments: ``{"patch_size": ..., "exclude": [...]}``."""
        return {"patch_size": self.patch_size, "exclude": list(self.exclude)}

    def gated(self) -> list[ConvSite]:
        return [s for s in self.sites if s.patch is not None]

    def gated_mac_share(self) -> float:
        """Dense MACs of the gated convs over the dense MACs of every conv."""
        total = sum(s.macs for s in self.sites)
        return sum(s.macs for s in self.gated()) / total if total else 0.0


@torch.no_grad()
def conv_sites(model: nn.Module, input_shape: tuple[int, ...], patch_sizes: tuple[int, ...] = (8,)) -> list[ConvSite]:
    """Every Conv2d of ``model`` with its maps, MACs and patch grids, from one zero input (eval mode).

    Args:
        input_shape: (C, H, W) or (B, C, H, W) of the model input. patch_sizes: candidate patch sizes.

    A conv that is called more than once per forward keeps its first call; one never called is left out.
    """
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    seen = conv_input_sizes(model, [m for _, m in convs], input_shape)
    p = next(model.parameters())
    sites = []
    for name, m in convs:
        if id(m) not in seen:
            continue
        h, w = seen[id(m)]
        pad = m.padding if isinstance(m.padding, tuple) else None
        if pad is None:  # "same" / "valid": the output size is what the conv gives
            ho, wo = m(torch.zeros(1, m.in_channels, h, w, device=p.device, dtype=p.dtype)).shape[-2:]
        else:
            ho, wo = out_hw(m, h, w)
        grids = {q: (math.ceil(ho / q), math.ceil(wo / q)) for q in patch_sizes}
        sites.append(ConvSite(name, m.kernel_size[0], m.stride[0], m.groups, m.in_channels, m.out_channels, (h, w),
                              (int(ho), int(wo)), conv_dense_macs(m, (int(ho), int(wo))), grids))
    return sites


def every_conv(model: nn.Module, input_shape: tuple[int, ...], patch_sizes: tuple[int, ...] = (8,),
               min_patches: int = 16, keep_stem: bool = False) -> ConvPlan:
    """The every-conv plan: each conv at the largest of ``patch_sizes`` giving >= ``min_patches`` patches,
    except the stem (unless ``keep_stem``) and convs no candidate reaches (see the module docstring).

    Args:
        input_shape: (C, H, W) or (B, C, H, W) of the model input (the protocol's letterboxed size).
        patch_sizes: candidate patch sizes; tried largest first.
    """
    cands = sorted({int(q) for q in patch_sizes}, reverse=True)
    if not cands or cands[-1] < 1:
        raise ValueError(f"every_conv: patch_sizes must be integers >= 1, got {patch_sizes!r}")
    cin = (tuple(input_shape) if len(input_shape) == 3 else tuple(input_shape)[1:])[0]
    out = []
    for s in conv_sites(model, input_shape, tuple(cands)):
        patch, reason = None, ""
        if s.cin == cin and not keep_stem:
            reason = f"stem (reads the {cin}-channel image)"
        else:
            patch = next((q for q in cands if s.grids[q][0] * s.grids[q][1] >= min_patches), None)
            if patch is None:
                q = cands[-1]
                reason = (f"grid {s.grids[q][1]}x{s.grids[q][0]} at patch {q} under min_patches {min_patches}")
        out.append(ConvSite(**{**s.__dict__, "patch": patch, "reason": reason}))
    gated = [s for s in out if s.patch is not None]
    if not gated:
        raise ValueError(f"every_conv: no conv of {type(model).__name__} has a grid of >= {min_patches} patches at "
                         f"input {tuple(input_shape)} with patch sizes {cands}")
    counts: dict[int, int] = {}
    for s in gated:
        counts[s.patch] = counts.get(s.patch, 0) + 1
    default = max(counts, key=lambda q: (counts[q], q))
    patch_size: int | dict[str, int] = default
    if len(counts) > 1:
        patch_size = {s.name: s.patch for s in gated if s.patch != default}
        patch_size["*"] = default
    return ConvPlan(out, [s.name for s in out if s.patch is None], patch_size)


def block_followers(model: nn.Module, plan: ConvPlan) -> dict[str, str]:
    """``{follower: leader}`` (``make_skippable(follow=...)``): one gate per residual block and per conv chain.

    A *residual block* is a module with children ``conv1`` and ``conv2`` and no ``conv3`` (a basic block: a
    bottleneck's strided middle conv changes the grid): ``conv2`` and the first conv of its ``downsample``
    follow ``conv1``. A *conv chain* is an ``nn.Sequential`` whose children are convs and per-pixel layers
    only (batch norm, activations): its later convs follow its first. A pair is kept only when both convs are
    gated in ``plan`` with the same output map and patch size (the follower needs the leader's grid).
    """
    sites = {s.name: s for s in plan.gated()}
    names = {id(m): n for n, m in model.named_modules()}
    pairs: dict[str, str] = {}

    def add(lead: nn.Module, follower: nn.Module) -> None:
        a, b = sites.get(names.get(id(lead), "")), sites.get(names.get(id(follower), ""))
        if a and b and a.out_hw == b.out_hw and a.patch == b.patch:
            pairs[b.name] = a.name

    for mod in model.modules():
        kids = dict(mod.named_children())
        if isinstance(kids.get("conv1"), nn.Conv2d) and isinstance(kids.get("conv2"), nn.Conv2d) and "conv3" not in kids:
            add(kids["conv1"], kids["conv2"])
            ds = kids.get("downsample")
            first = next((m for m in ds.modules() if isinstance(m, nn.Conv2d)), None) if ds is not None else None
            if first is not None:
                add(kids["conv1"], first)
        elif isinstance(mod, nn.Sequential) and kids and all(isinstance(m, (nn.Conv2d, *_ELEMENTWISE))
                                                             for m in kids.values()):
            convs = [m for m in kids.values() if isinstance(m, nn.Conv2d)]
            for later in convs[1:]:
                add(convs[0], later)
    return pairs
