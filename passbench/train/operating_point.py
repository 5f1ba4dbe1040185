"""Operating points: move each skipping method to a target patch-skip rate by its own knob.

Matched-rate comparisons (``configs/tradeoff/``) need every method at the same skip rate. Each method
has one knob, set here from a target ``rate`` (fraction of gated patches to skip):

* PASS (``pass_p`` / ``pass_f``): the top-k inference fractions of the PASS-gated layers (``rates``): the
  per-layer rates training measured, scaled by one factor so that their mean is the target (the learned
  allocation across layers is kept, ``scaled_rates``); exact per layer, no data needed. With
  ``allocation="uniform"`` every deciding layer gets the target rate instead (the control that tells
  whether the learned allocation helps); with ``allocation="logit"`` the trained rates are shifted by one
  constant in logit space (``logit_shifted_rates``): the layers keep their order and no layer reaches 1
  below a target of 1, where the linear scaling sends the most-skipping layer to 1 (never recomputed).
* Skip-Conv norm gates (``skipconv`` with ``gate: norm``, ``skipconv_norm``): per-layer thresholds
  calibrated front to back on training pairs (``skipconv.calibrate_norm_thresholds``).
* Skip-Conv Gumbel gates (``skipconv`` with ``gate: gumbel``, ``skipconv_gumbel``): one inference
  threshold on the skip probability for every layer, found by bisection on training pairs (the gates
  learned *which* patches to skip under their budget; the threshold moves how many).
* random (``fixed``): compute fraction ``keep = 1 - rate`` per layer.
* keyframe (``keyframe``): the fraction ``rate`` of gated frames that reuse every output.

The rate on the training pairs is what the knob is calibrated to; the rate on evaluation video differs
for content-adaptive gates (norm, Gumbel) and is what records report (``cost.patch_skip_rate``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from passbench.train import skiputil as sk

Pairs = Sequence[tuple[torch.Tensor, torch.Tensor]]


def _gates(model: nn.Module, gate_class: str) -> list[nn.Module]:
    return [m.gate for m in sk.layers_with_gate(model, gate_class)]


def knob_kind(method: str, params: dict[str, Any], model: nn.Module | None = None) -> str:
    """Which knob a method has: ``pass``, ``norm``, ``gumbel``, ``random`` or ``keyframe``. For Skip-Conv
    the gate kind is read off ``model`` when given (a checkpoint's skip spec may say ``gate: gumbel`` where
    the config's params do not)."""
    if method in ("pass", "pass_p", "pass_f"):
        return "pass"
    if method.startswith("skipconv") and model is not None:
        if sk.layers_with_gate(model, "GumbelGate"):
            return "gumbel"
        if sk.layers_with_gate(model, "NormGate"):
            return "norm"
    if method == "skipconv_norm" or (method == "skipconv" and params.get("gate", "norm") == "norm"):
        return "norm"
    if method == "skipconv_gumbel" or (method == "skipconv" and params.get("gate") == "gumbel"):
        return "gumbel"
    if method == "fixed":
        return "random"
    if method == "keyframe":
        return "keyframe"
    raise ValueError(f"operating_point: method {method!r} has no skip-rate knob (dense?)")


def scaled_rates(trained: list[float], rate: float, iters: int = 60) -> list[float]:
    """PASS's per-layer top-k rates scaled by one factor so that their mean over the deciding layers is
    ``rate`` (each capped at 1): the allocation the gates learned (e.g. ``wh.0`` skipping twice what
    ``hm.0`` skips) is kept, only the operating point moves. Layers whose trained rate is 0 (grids the
    gate never decides on) stay 0. Bisection on the factor.
    """
    live = [r for r in trained if r > 0]
    if not live:
        return [rate if r > 0 else 0.0 for r in trained]
    lo, hi = 0.0, 1.0 / min(live)  # at hi every live layer is capped at 1
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        mean = sum(min(1.0, r * mid) for r in live) / len(live)
        lo, hi = (mid, hi) if mean < rate else (lo, mid)
    f = 0.5 * (lo + hi)
    return [min(1.0, r * f) for r in trained]


def logit_shifted_rates(trained: list[float], rate: float, iters: int = 60) -> list[float]:
    """PASS's per-layer top-k rates moved to mean ``rate`` over the deciding layers by one shift ``c`` in
    logit space, ``sigmoid(logit(r) + c)``: the learned order of the layers is kept and, unlike
    ``scaled_rates``, no layer is pushed to 1 (a layer skipping every patch is never recomputed) while the
    target is below 1. Layers whose trained rate is 0 stay 0. Bisection on ``c``.
    """
    live = [min(max(r, 1e-4), 1 - 1e-4) for r in trained if r > 0]
    if not live or rate <= 0.0 or rate >= 1.0:
        return [(rate if r > 0 else 0.0) for r in trained]
    logits = [float(np.log(r / (1 - r))) for r in live]

    def shifted(c: float) -> list[float]:
        return [float(1.0 / (1.0 + np.exp(-(z + c)))) for z in logits]

    lo, hi = -40.0, 40.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sum(shifted(mid)) / len(live) < rate else (lo, mid)
    it = iter(shifted(0.5 * (lo + hi)))
    return [next(it) if r > 0 else 0.0 for r in trained]


@torch.no_grad()
def gumbel_threshold(model: nn.Module, pairs: Pairs, rate: float, iters: int = 30) -> float:
    """One Gumbel-gate inference threshold (skip where skip probability > t, every layer) such that a
    ``rate`` fraction of the training pairs' gated patches is skipped; bisection on t in (0, 1)."""
    from passbench.train.skipconv import measured_skip_rate

    gates = _gates(model, "GumbelGate")
    if not gates:
        raise ValueError("gumbel_threshold: the model has no Gumbel-gated layer")
    model.eval()
    lo, hi = 0.0, 1.0  # skip rate falls as t rises
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        for g in gates:
            g.threshold = mid
        lo, hi = (mid, hi) if measured_skip_rate(model, pairs) > rate else (lo, mid)
    t = 0.5 * (lo + hi)
    for g in gates:
        g.threshold = t
    return t


ALLOCATIONS = ("learned", "uniform", "logit")  # PASS: trained rates scaled / one rate / trained rates logit-shifted


def set_operating_point(model: nn.Module, method: str, params: dict[str, Any], rate: float,
                        pairs: Pairs | None, allocation: str = "learned") -> dict[str, Any]:
    """Set the method's knob so that it skips a ``rate`` fraction of gated patches; returns the knob
    values set (JSON-able, for the record).

    Args:
        model: a skippable model (``make_skippable`` applied, weights loaded), in eval mode.
        method, params: the method name and its ``make_skippable`` parameters (to tell gate kinds apart).
        rate: target patch-skip fraction in [0, 1].
        pairs: ``(x_prev, x)`` training batches; needed for the norm and Gumbel knobs.
        allocation: PASS only: ``"learned"`` (the trained per-layer rates scaled to the target),
            ``"uniform"`` (the target rate on every deciding layer) or ``"logit"`` (the trained rates shifted
            in logit space, ``logit_shifted_rates``).
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"operating_point: rate must be in [0, 1], got {rate}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"operating_point: allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    kind = knob_kind(method, params, model)
    model.eval()
    if kind == "pass":
        layers = sk.pass_layers(model)
        # a follower (make_skippable's ``follow``) runs no gate: its patches skip at its leader's rate, so it enters
        # the mean with its leader's rate (one factor or shift for all keeps the copies equal) and gets it set
        lead = [m.leader if m.leader is not None else m for m in layers]
        trained = [float(m.gate.rate) if m.gate.rate is not None else rate for m in lead]
        if allocation == "uniform":
            rates = [float(rate)] * len(layers)
        elif allocation == "logit":
            rates = logit_shifted_rates(trained, rate)
        else:
            rates = scaled_rates(trained, rate)
        sk.set_rates(model, rates)
        return {"knob": "rates", "value": rates, "allocation": allocation}
    if allocation != "learned":
        raise ValueError(f"operating_point: allocation applies to PASS gates only, not to {kind} gates")
    if kind == "random":
        for g in _gates(model, "FixedGate"):
            g.keep = 1.0 - rate
        return {"knob": "keep", "value": 1.0 - rate}
    if kind == "keyframe":
        for g in _gates(model, "KeyframeGate"):
            g.rate = rate
        return {"knob": "rate", "value": rate}
    if not pairs:
        raise ValueError(f"operating_point: the {kind} knob is calibrated on training pairs; none given")
    if kind == "norm":
        from passbench.train.skipconv import calibrate_norm_thresholds

        th = calibrate_norm_thresholds(model, pairs, rate, per_layer=True)
        return {"knob": "thresholds", "value": [float(t) for t in th]}
    return {"knob": "threshold", "value": gumbel_threshold(model, pairs, rate)}


def training_pairs(input_wh: tuple[int, int], data_root: str | None = None, n: int = 16, batch: int = 4,
                   seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` consecutive-frame pairs from the sample training split (first halves), letterboxed to
    ``input_wh``, in batches of ``batch``, without augmentation; deterministic in ``seed``."""
    from passbench.train.data import TRAIN_SEQUENCES, MotSamples, StepBatches, load_store

    stores = [load_store(name, tuple(input_wh), data_root) for name in TRAIN_SEQUENCES]
    samples = MotSamples(stores, pairs=True, flip=False, scale_jitter=0.0)
    batches = StepBatches(samples, batch, seed)
    out = []
    for s in range(max(1, int(np.ceil(n / batch)))):
        b = batches(s)
        out.append((b["prev"], b["img"]))
    return out
