"""``make_skippable``: swap a model's ``nn.Conv2d`` layers for ``SkipConv2d`` wrappers, in place.

Works on any model (timm, torchvision, ``passbench.models``): the method (``skip.methods``) builds
each layer's gate, every wrapper shares the model's ``ForwardClock`` (``skip.stacking``), and the
swap is all or nothing.
"""

from __future__ import annotations

import fnmatch
import math

from torch import nn

from passbench.skip.control import set_thresholds, skippable_layers
from passbench.skip.geometry import conv_input_sizes, out_hw
from passbench.skip.methods import METHODS
from passbench.skip.stacking import ForwardClock
from passbench.skip.wrapper import SkipConv2d

__all__ = ["make_skippable", "patch_for"]


def make_skippable(model: nn.Module, method: str, *, patch_size: int | dict[str, int] = 8,
                   layers: list[str] | str | None = None,
                   exclude: list[str] | str | None = None, execution: str = "auto", refresh_every: int | None = None,
                   reference: str = "previous",
                   input_shape: tuple[int, ...] | None = None, thresholds: float | list[float] | None = None,
                   follow: dict[str, str] | None = None, **gate_params) -> nn.Module:
    """Swap the model's Conv2d layers for ``SkipConv2d`` wrappers, in place; returns the model.

    Args:
        model: any nn.Module holding nn.Conv2d layers (timm, torchvision, passbench.models).
        method: a name in ``METHODS`` (dense, pass, pass_p, pass_f, skipconv, skipconv_norm,
            skipconv_gumbel, fixed).
        patch_size: output patch size p in output pixels (the gate's input patch is p * stride input
            pixels); one int for every layer, or a mapping ``{glob: p}`` over qualified layer names
            (first matching glob wins; every wrapped layer must match one), e.g. a smaller patch on
            the coarse maps whose grid is too small at the fine maps' patch. Maps smaller than p are
            one (partial) patch.
        layers: glob(s) over qualified module names to wrap (default: every Conv2d).
        exclude: glob(s) of names not to wrap.
        execution: "reference", "sparse" or "auto" (see ``skip.wrapper``).
        refresh_every: dense refresh every N frames (None: only the first frame of a stream).
        reference: "previous" (gates compare with X_{t-1}, the papers) or "computed" (with the input
            each patch was last computed from); see ``SkipConv2d``.
        input_shape: (C, H, W) or (B, C, H, W) of the model input; when given, a dry run records each
            layer's map size (needed by the paper's fixed-resolution PASS head, ``head="linear"``).
        thresholds: norm gates: one threshold, or one per wrapped layer (module order).
        follow: ``{follower: leader}`` qualified names of wrapped layers: the follower runs no gate and takes
            the mask its leader decided in the same forward (``SkipConv2d.follow``; a passbench variant: one
            gate per residual block or conv chain, ``skip.convplan.block_followers``). The leader must run
            before the follower on the same output grid and patch size, and follow no layer itself.
        **gate_params: the method's own parameters (see ``skip.methods``).

    A layer that cannot be wrapped (non-zero padding mode, a non-square stride, asymmetric
    ``padding="same"``, a Conv2d subclass with its own forward) raises naming it; the model is then
    unchanged (all or nothing), so ``exclude=[name]`` can be retried. ``padding="valid"`` and
    symmetric ``"same"`` are taken as their integer padding. Each wrapped layer must run at most once
    per forward of ``model`` (one stream state per layer): a shared conv called twice raises
    ``RuntimeError`` naming it (a forward pre-hook and hook on ``model`` and on each module holding a
    wrapped layer count the forwards, so a submodule called on its own counts as a forward too).

    Raises:
        ValueError: the model has no Conv2d, the globs match none, it is already skippable, a layer
            cannot be wrapped, or ``thresholds`` has the wrong length.
        TypeError: a parameter the method does not take.
    """
    builder = METHODS.get(method)
    _check_patch_sizes(patch_size)
    if skippable_layers(model):
        raise ValueError(f"make_skippable: {type(model).__name__} already has SkipConv2d layers")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"make_skippable: {type(model).__name__} has no nn.Conv2d layer to make skippable")
    inc = [layers] if isinstance(layers, str) else layers
    exc = [exclude] if isinstance(exclude, str) else (exclude or [])
    chosen = [(n, m) for n, m in convs
              if (inc is None or any(fnmatch.fnmatch(n, g) for g in inc)) and not any(fnmatch.fnmatch(n, g) for g in exc)]
    if not chosen:
        raise ValueError(f"make_skippable: layers={layers!r} / exclude={exclude!r} match no Conv2d "
                         f"(names look like: {', '.join(n for n, _ in convs[:5])}, ...)")
    _check_no_shadowed_glob(patch_size, [n for n, _ in chosen])
    in_hw = conv_input_sizes(model, [m for _, m in chosen], input_shape) if input_shape is not None else {}
    # Atomic: build and check every wrapper first, then swap them all in; any error above or here
    # leaves the model exactly as it was (modules, state-dict keys, hooks), so a retry can follow.
    wrappers = []
    for i, (name, conv) in enumerate(chosen):
        patch = patch_for(name, patch_size)
        sh, sw = conv.stride
        if sh != sw:
            raise ValueError(f"make_skippable: layer '{name}' has a non-square stride {conv.stride}; leave it "
                             f"dense with exclude=['{name}']")
        try:
            probe = SkipConv2d(conv, None, patch, False, execution, refresh_every, name, reference=reference)
        except ValueError as e:
            raise ValueError(f"make_skippable: layer '{name}' cannot be made skippable: {e}; leave it dense with "
                             f"make_skippable(..., exclude=['{name}'])") from None
        grid = None
        if id(conv) in in_hw:
            ho, wo = out_hw(probe.conv, *in_hw[id(conv)])  # probe.conv: integer padding
            grid = (math.ceil(ho / patch), math.ceil(wo / patch))
        try:
            plan = builder(conv, patch_in=patch * sh, patch_out=patch, grid=grid, index=i, **gate_params)
        except TypeError as e:
            raise TypeError(f"make_skippable(method={method!r}): {e}") from None
        wrapped = SkipConv2d(conv, plan.gate, patch, plan.residual, execution, refresh_every, name,
                             reference=reference)
        wrapped.to(device=conv.weight.device).train(conv.training)  # a new gate follows the model's mode
        wrappers.append((name, wrapped))
    _apply_follow(follow, dict(wrappers))
    if thresholds is not None:
        set_thresholds(nn.ModuleList([w for _, w in wrappers]), thresholds)  # checks the count, before the swap
    clock = ForwardClock()
    for name, wrapped in wrappers:
        wrapped.clock = clock
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, wrapped)
    # The clock counts the forwards of the model and of every module holding a wrapped layer: a submodule
    # called directly (outside a forward of the model) is a forward too, so a conv it calls twice is caught.
    hooked: set[int] = set()
    for mod in [model] + [model.get_submodule(a) for a in _ancestors([n for n, _ in wrappers])]:
        if id(mod) not in hooked:
            hooked.add(id(mod))
            mod.register_forward_pre_hook(clock.enter)
            mod.register_forward_hook(clock.leave, always_call=True)  # also after an exception in the forward
    return model


def _apply_follow(follow: dict[str, str] | None, wrapped: dict[str, SkipConv2d]) -> None:
    """Point each follower at its leader (``make_skippable``'s ``follow``); ValueError naming the entry."""
    if follow is None:
        return
    if not isinstance(follow, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in follow.items()):
        raise ValueError(f"make_skippable: follow must map follower names to leader names, got {follow!r}")
    for f, lead in follow.items():
        for role, n in (("follower", f), ("leader", lead)):
            if n not in wrapped:
                raise ValueError(f"make_skippable: follow {{{f!r}: {lead!r}}}: {role} {n!r} is not a wrapped layer "
                                 f"(wrapped: {', '.join(list(wrapped)[:5])}, ...)")
        if f == lead:
            raise ValueError(f"make_skippable: follow {{{f!r}: {lead!r}}}: a layer cannot follow itself")
        if lead in follow:
            raise ValueError(f"make_skippable: follow {{{f!r}: {lead!r}}}: the leader follows {follow[lead]!r} "
                             "itself; name the deciding layer")
        if wrapped[f].patch_size != wrapped[lead].patch_size:
            raise ValueError(f"make_skippable: follow {{{f!r}: {lead!r}}}: patch sizes differ ({wrapped[f].patch_size} "
                             f"against {wrapped[lead].patch_size}); a follower needs its leader's patch grid")
    for f, lead in follow.items():
        wrapped[f].follow(wrapped[lead])


def _ancestors(names: list[str]) -> list[str]:
    """The qualified names of the modules that contain the named layers (the model itself excluded)."""
    out: dict[str, None] = {}
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            out[".".join(parts[:i])] = None
    return list(out)


def _check_patch_sizes(patch_size) -> None:
    sizes = patch_size.values() if isinstance(patch_size, dict) else [patch_size]
    if isinstance(patch_size, dict) and not patch_size:
        raise ValueError("make_skippable: patch_size mapping is empty")
    for p in sizes:
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ValueError(f"make_skippable: patch_size must be an integer >= 1 (or a mapping glob -> such "
                             f"an integer), got {patch_size!r}")


def _check_no_shadowed_glob(patch_size: int | dict[str, int], names: list[str]) -> None:
    """A glob of a ``patch_size`` mapping that matches wrapped layers, every one of which an earlier glob
    already takes (first match wins), can never apply: e.g. ``{"*": 8, "layer3.*": 4}`` (a mapping whose keys
    were sorted, ``"*"`` first) gives layer3 patch 8. Raise naming both globs instead of silently ignoring it."""
    if not isinstance(patch_size, dict):
        return
    first = {n: next((g for g in patch_size if fnmatch.fnmatch(n, g)), None) for n in names}  # as patch_for
    taken = set(first.values())
    for glob in patch_size:
        hit = [n for n in names if fnmatch.fnmatch(n, glob)]
        if hit and glob not in taken:
            raise ValueError(f"make_skippable: patch_size glob {glob!r} never applies: every layer it matches "
                             f"({', '.join(hit[:3])}{', ...' if len(hit) > 3 else ''}) takes the earlier glob "
                             f"{first[hit[0]]!r} (the first matching glob wins); put the specific globs before "
                             f"{first[hit[0]]!r}")


def patch_for(name: str, patch_size: int | dict[str, int]) -> int:
    """The output patch size of layer ``name``: ``patch_size`` itself, or the value of the first glob of
    the mapping that matches ``name`` (ValueError naming the layer when none does)."""
    if not isinstance(patch_size, dict):
        return int(patch_size)
    for glob, p in patch_size.items():
        if fnmatch.fnmatch(name, glob):
            return int(p)
    raise ValueError(f"make_skippable: layer '{name}' matches no glob of patch_size {patch_size!r}; add one "
                     "(e.g. '*': 8 last) or exclude the layer")
