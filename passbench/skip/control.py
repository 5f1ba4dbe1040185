"""Model-wide controls of a skippable model: find its layers, reset streams, set masks, thresholds, rates.

Every function takes a model made skippable by ``make_skippable`` (``skip.make``) and acts on all of
its ``SkipConv2d`` layers in module order.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
from typing import Iterator

import torch
from torch import nn

from passbench.skip import fastgate
from passbench.skip.gates import NormGate, PassGate
from passbench.skip.wrapper import MASK_MODES, SkipConv2d

__all__ = ["dense_twin", "gate_parameters", "reset", "residual_norms", "set_gate_engine", "set_mask_mode",
           "set_rates", "set_stream_states", "set_thresholds", "skip_session", "skippable_layers", "stream_states",
           "ungate", "wrapped_layers"]


def skippable_layers(model: nn.Module) -> list[tuple[str, SkipConv2d]]:
    """``[(qualified name, SkipConv2d), ...]`` in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SkipConv2d)]


def wrapped_layers(model: nn.Module) -> list[SkipConv2d]:
    """The ``SkipConv2d`` layers of ``model`` in module order; raises when there is none."""
    layers = [m for _, m in skippable_layers(model)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no SkipConv2d layer: call passbench.skip.make_skippable first")
    return layers


def ungate(model: nn.Module, names: list[str] | str) -> list[str]:
    """Drop the gates of the wrapped layers matching ``names`` (globs over qualified names): each then runs its
    dense conv, counts dense MACs, keeps no state and is no longer a gated layer (skip rates, operating
    points and stacking see only the others). Call it after the gates' weights were loaded, before the first
    forward. A passbench plan variant (the paper gates every conv): gates only where the engine can skip,
    ``docs/everyconv.md``. Returns the names ungated, in module order.

    Raises:
        ValueError: a glob matches no wrapped layer, or a layer that stays gated follows an ungated one.
    """
    pats = [names] if isinstance(names, str) else list(names)
    layers = skippable_layers(model)
    if not pats or not all(isinstance(g, str) for g in pats):
        raise ValueError(f"ungate: names must be one or more globs over layer names, got {names!r}")
    for g in pats:
        if not any(fnmatch.fnmatch(n, g) for n, _ in layers):
            raise ValueError(f"ungate: {g!r} matches no wrapped layer (names look like: "
                             f"{', '.join(n for n, _ in layers[:4])}, ...)")
    chosen = [n for n, _ in layers if any(fnmatch.fnmatch(n, g) for g in pats)]
    for n, m in layers:
        if n not in chosen and m.leader is not None and m.leader.name in chosen:
            raise ValueError(f"ungate: '{m.leader.name}' decides for '{n}' (follow): ungate both, or drop "
                             f"'{n}' from the follow map")
    for n, m in layers:
        if n in chosen:
            m.follow(None)
            m.gate = None
            m.reset(stats=False)
    return chosen


def dense_twin(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every ``SkipConv2d`` replaced by its own ``Conv2d`` (same weights, no
    gates, no state): the dense reference a skipping model is timed against. Other modules (and their
    memory format, BN folding) are copied as they are, so the two differ only in the wrapped convs."""
    twin = copy.deepcopy(model)
    for m in list(twin.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, SkipConv2d):
                setattr(m, child_name, child.conv)
    return twin.eval()


def reset(model: nn.Module, stats: bool = True) -> None:
    """Forget every layer's stream state (call at a new sequence); also zero the MAC / skip counters
    unless ``stats=False`` (to aggregate ``collect_stats`` over several sequences)."""
    for m in wrapped_layers(model):
        m.reset(stats)


@contextlib.contextmanager
def skip_session(model: nn.Module) -> Iterator[nn.Module]:
    """``with skip_session(model): ...``: a fresh stream (state and counters reset) on entry; the
    stream state is dropped on exit, the counters are kept for ``collect_stats``."""
    reset(model)
    try:
        yield model
    finally:
        reset(model, stats=False)


def set_mask_mode(model: nn.Module, mode: str) -> None:
    """PASS-P training samples: "normal" (positive: mask-1 patches take the previous output),
    "complement" (negative: each layer skips the complement of its own mask from the last "normal"
    forward, the gate is not run again), "inverted" (each layer's gate runs again on its own input and
    its mask-0 patches take the previous output: the authors' code, whose deeper gates then see other
    inputs than in the positive pass), "off" (anchor: dense). A layer whose gate makes no decision (a PASS
    grid under ``min_patches``) computes every patch in all three gated modes."""
    if mode not in MASK_MODES:
        raise ValueError(f"set_mask_mode: mode must be one of {MASK_MODES}, got {mode!r}")
    for m in wrapped_layers(model):
        m.mask_mode = mode


def _norm_layers(model: nn.Module) -> list[SkipConv2d]:
    return [m for m in wrapped_layers(model) if isinstance(m.gate, NormGate)]


def set_thresholds(model: nn.Module, thresholds: float | list[float]) -> None:
    """Norm gates: one threshold for all, or one per norm-gated layer (module order)."""
    layers = _norm_layers(model)
    if not layers:
        raise ValueError("set_thresholds: the model has no norm-gated layer (method skipconv / skipconv_norm)")
    ths = [float(thresholds)] * len(layers) if isinstance(thresholds, (int, float)) else list(thresholds)
    if len(ths) != len(layers):
        raise ValueError(f"set_thresholds: {len(ths)} thresholds for {len(layers)} norm-gated layers")
    for m, t in zip(layers, ths):
        m.gate.threshold = float(t)


def set_rates(model: nn.Module, rates: float | list[float]) -> None:
    """PASS gates (``rule="topk"``): one inference skip fraction for all, or one per PASS-gated layer (module order)."""
    layers = [m for m in wrapped_layers(model) if isinstance(m.gate, PassGate)]
    if not layers:
        raise ValueError("set_rates: the model has no PASS-gated layer (method pass / pass_p / pass_f)")
    rs = [float(rates)] * len(layers) if isinstance(rates, (int, float)) else list(rates)
    if len(rs) != len(layers):
        raise ValueError(f"set_rates: {len(rs)} rates for {len(layers)} PASS-gated layers")
    for m, r in zip(layers, rs):
        m.gate.set_rate(r)


def set_gate_engine(model: nn.Module, engine: str) -> None:
    """PASS gates' inference engine (``skip.fastgate``): ``"fast"`` (default; also the value of
    ``PASSBENCH_GATE_ENGINE``), ``"compiled"`` (``torch.compile``, cached on disk, eager fallback) or
    ``"eager"`` (the reference ops). Training and gradient-carrying calls always use the reference ops."""
    if engine not in fastgate.ENGINES:
        raise ValueError(f"set_gate_engine: engine must be one of {fastgate.ENGINES}, got {engine!r}")
    layers = [m for m in wrapped_layers(model) if isinstance(m.gate, PassGate)]
    if not layers:
        raise ValueError("set_gate_engine: the model has no PASS-gated layer (method pass / pass_p / pass_f)")
    for m in layers:
        m.gate.engine = engine


def stream_states(model: nn.Module) -> list:
    """Every layer's stream state (previous input / output, frame count), to restore with
    ``set_stream_states``: run several passes from the same primed state (PASS-P's positive and negative).
    The snapshot shares the layers' tensors; the layers then no longer write into them (with autograd off
    they would otherwise update them in place: ``SkipConv2d.share_state``)."""
    return [m.share_state() for m in wrapped_layers(model)]


def set_stream_states(model: nn.Module, states: list) -> None:
    """Restore ``stream_states``; the stored tensors are shared, not copied, and never written into
    (``SkipConv2d.set_state``)."""
    layers = wrapped_layers(model)
    if len(states) != len(layers):
        raise ValueError(f"set_stream_states: {len(states)} states for {len(layers)} skippable layers")
    for m, st in zip(layers, states):
        m.set_state(st)


def residual_norms(model: nn.Module) -> list[torch.Tensor]:
    """Norm gates: (B, Hp, Wp) residual norms of the last forward, one per norm-gated layer."""
    out = []
    for m in _norm_layers(model):
        if m.last_norm is None:
            raise RuntimeError(f"residual_norms: layer '{m.name}' has no previous frame (run two frames first)")
        out.append(m.last_norm)
    return out


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of every gate (empty for parameter-free gates)."""
    return [q for m in wrapped_layers(model) if m.gate is not None for q in m.gate.parameters()]
