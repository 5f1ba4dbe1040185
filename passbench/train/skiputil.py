"""The few engine calls the gate stages need, in one place (``passbench.skip`` contract).

Everything the training code asks of the skip engine goes through here, so the stages read the same
whatever the engine's internals are: ``reset``, ``set_mask_mode`` (``normal`` = patches marked 1 take
the previous output, ``complement`` = the patches the last ``normal`` pass computed do, ``inverted`` =
each gate re-runs and its patches marked 0 do, ``off`` = dense), ``stream_states`` /
``set_stream_states`` (run several passes from one primed state), ``gate_parameters``,
``collect_stats``, and ``skip_probability`` (the differentiable mean skip probability of the last
forward, for the target-rate / budget terms).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

ENGINE = "passbench.skip"


def _engine():
    return importlib.import_module(ENGINE)


def _fn(name: str):
    fn = getattr(_engine(), name, None)
    if fn is None:
        raise RuntimeError(f"{ENGINE} has no '{name}', which passbench.train needs (see passbench/train/skiputil.py)")
    return fn


def make_skippable(model: nn.Module, method: str, **params: Any) -> nn.Module:
    """``passbench.skip.make_skippable``; returns the model (wrapped in place or a new module)."""
    res = _fn("make_skippable")(model, method, **params)
    return res if isinstance(res, nn.Module) else model


def reset(model: nn.Module) -> None:
    """Forget the per-stream state (previous inputs/outputs) of every skippable layer."""
    _fn("reset")(model)


def set_mask_mode(model: nn.Module, mode: str) -> None:
    """``normal`` (positive), ``complement`` or ``inverted`` (negative) or ``off`` (anchor / dense)."""
    if mode not in ("normal", "complement", "inverted", "off"):
        raise ValueError(f"mask mode must be normal/complement/inverted/off, got {mode!r}")
    _fn("set_mask_mode")(model, mode)


def stream_states(model: nn.Module) -> list:
    """Snapshot of every skippable layer's stream state (restore with ``set_stream_states``)."""
    return _fn("stream_states")(model)


def set_stream_states(model: nn.Module, states: list) -> None:
    _fn("set_stream_states")(model, states)


def layers_with_gate(model: nn.Module, gate_class: str) -> list[nn.Module]:
    """The skippable layers whose gate is a ``passbench.skip.<gate_class>``, in module order."""
    gate_cls = _fn(gate_class)
    return [m for _, m in _fn("skippable_layers")(model) if isinstance(m.gate, gate_cls)]


def named_pass_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, layer)`` of every skippable layer whose gate is a PASS gate, in module order."""
    gate_cls = _fn("PassGate")
    return [(n, m) for n, m in _fn("skippable_layers")(model) if isinstance(m.gate, gate_cls)]


def pass_layers(model: nn.Module) -> list[nn.Module]:
    """The skippable layers whose gate is a PASS gate, in module order."""
    return layers_with_gate(model, "PassGate")


def set_rates(model: nn.Module, rates: float | list[float]) -> None:
    """PASS gates: the top-k inference skip fraction, one for all or one per PASS-gated layer."""
    _fn("set_rates")(model, rates)


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The gates' parameters (a list; empty for parameter-free gates such as the norm gate)."""
    return list(_fn("gate_parameters")(model))


def skip_probability(model: nn.Module) -> torch.Tensor:
    """Differentiable mean skip probability over all gated patches of the last forward (scalar tensor)."""
    return _fn("skip_probability")(model)


def residual_norms(model: nn.Module) -> list[torch.Tensor]:
    """Skip-Conv norm gates: per-patch residual norms of each skippable layer in the last forward."""
    return list(_fn("residual_norms")(model))


def set_thresholds(model: nn.Module, thresholds: float | list[float]) -> None:
    """Skip-Conv norm gates: set one threshold for all layers or one per skippable layer."""
    _fn("set_thresholds")(model, thresholds)


def budget_loss(model: nn.Module, compute_target: float) -> torch.Tensor:
    """Skip-Conv sparsity budget of the last forward; ``compute_target`` = allowed compute fraction."""
    return _fn("budget_loss")(model, compute_target)


def collect_stats(model: nn.Module) -> Any:
    return _fn("collect_stats")(model)


def skip_rate(model: nn.Module) -> float:
    """Measured (hard-mask) patch skip rate of the last forward(s), read from ``collect_stats``."""
    st = collect_stats(model)
    if isinstance(st, dict):
        for k in ("patch_skip_rate", "skip_rate"):
            if k in st:
                return float(st[k])
    for k in ("patch_skip_rate", "skip_rate"):
        if hasattr(st, k):
            return float(getattr(st, k))
    raise RuntimeError(f"{ENGINE}.collect_stats returned no patch_skip_rate: {type(st).__name__}")


def gate_modules(model: nn.Module) -> list[nn.Module]:
    """Largest submodules made only of gate parameters (to switch gates between train and eval;
    ``.train()`` recurses into their parameter-free children such as a Gumbel layer)."""
    ids = {id(p) for p in gate_parameters(model)}
    pure = {id(m) for m in model.modules() if (ps := list(m.parameters())) and all(id(p) in ids for p in ps)}
    out = []

    def walk(m: nn.Module) -> None:
        for c in m.children():
            if id(c) in pure:
                out.append(c)
            else:
                walk(c)

    walk(model)
    return out


def freeze(params, frozen: bool = True) -> None:
    for p in params:
        p.requires_grad_(not frozen)


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that is not a gate parameter."""
    ids = {id(p) for p in gate_parameters(model)}
    return [p for p in model.parameters() if id(p) not in ids]


def prime(model: nn.Module, x_prev: torch.Tensor) -> None:
    """Reset the stream and run ``x_prev`` densely (mode off, no grad): the state now holds frame t-1."""
    reset(model)
    set_mask_mode(model, "off")
    with torch.no_grad():
        model(x_prev)
