"""Skipping methods by name: each builds the gate for one layer and says how the layer computes.

A method builder is ``fn(conv, *, patch_in, patch_out, grid, index, **params) -> LayerPlan``:
``conv`` the layer, ``patch_in`` / ``patch_out`` the input / output patch size in pixels, ``grid``
the output patch grid when ``make_skippable`` knows the resolution (else None), ``index`` the
layer's position among the wrapped layers. ``params`` are the method's own keyword arguments
(``make_skippable(**gate_params)``); an unknown one raises ``TypeError`` naming the method.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from passbench.registry import Registry
from passbench.skip.gates import FixedGate, GumbelGate, KeyframeGate, NormGate, PassGate

METHODS = Registry("methods")


@dataclass(frozen=True)
class LayerPlan:
    """How one wrapped layer runs.

    Attributes:
        gate: the gate module, or None (dense: the wrapper passes through).
        residual: Skip-Conv residual formulation (out = prev_out + conv_nobias(X_t - X_{t-1}) on
            computed patches) instead of the PASS blend (out = conv(X_t) on computed patches).
    """

    gate: nn.Module | None
    residual: bool = False


@METHODS.register("dense")
def dense(conv, *, patch_in, patch_out, grid, index) -> LayerPlan:
    """No skipping: the wrapper runs the conv and only counts MACs."""
    return LayerPlan(None)


def _pass(conv, *, patch_in, patch_out, grid, index, embed_dim=64, depth=2, kernel_size=3, hidden=None,
          rule="topk", rates=None, threshold=0.5, head="patch", min_patches=16, pool=1) -> LayerPlan:
    """PASS gate (AAAI-23); see ``PassGate`` for the parameters. ``rates``: the top-k skip fraction at
    inference, one float for every layer or a list with one per wrapped layer (module order; what
    ``passbench.train`` stores after pre-training)."""
    rate = rates[index] if isinstance(rates, (list, tuple)) else rates
    return LayerPlan(PassGate(conv.in_channels, patch_in, embed_dim=embed_dim, depth=depth,
                              kernel_size=kernel_size, hidden=hidden, rule=rule, rate=rate, threshold=threshold,
                              head=head, grid=grid, min_patches=min_patches, pool=pool))


# PASS-P (gates pre-trained, backbone frozen) and PASS-F (fine-tuned backbone) share the gate; the
# stages differ in training only (passbench.train), so all three names build the same layer.
for _name in ("pass", "pass_p", "pass_f"):
    METHODS.register(_name)(_pass)


@METHODS.register("skipconv_norm")
def skipconv_norm(conv, *, patch_in, patch_out, grid, index, threshold=0.0, variant="input",
                  residual=True) -> LayerPlan:
    """Skip-Conv with a norm gate; ``residual`` keeps the paper's residual formulation."""
    return LayerPlan(NormGate(patch_in, patch_out, threshold, variant), residual)


@METHODS.register("skipconv_gumbel")
def skipconv_gumbel(conv, *, patch_in, patch_out, grid, index, kernel_size=3, tau=2.0 / 3.0, init_bias=3.0,
                    threshold=0.5, residual=True, monotone=True) -> LayerPlan:
    """Skip-Conv with a learned Gumbel gate (``threshold``: inference skip-probability threshold;
    ``monotone``: non-negative effective weights on the residual's magnitude, see ``GumbelGate``)."""
    return LayerPlan(GumbelGate(conv.in_channels, patch_in, kernel_size, tau, init_bias, threshold, monotone),
                     residual)


@METHODS.register("skipconv")
def skipconv(conv, *, gate="norm", **kw) -> LayerPlan:
    """Skip-Conv; ``gate`` = "norm" or "gumbel" picks ``skipconv_norm`` / ``skipconv_gumbel``."""
    if gate not in ("norm", "gumbel"):
        raise ValueError(f"method 'skipconv': gate must be 'norm' or 'gumbel', got {gate!r}")
    return (skipconv_norm if gate == "norm" else skipconv_gumbel)(conv, **kw)


@METHODS.register("fixed")
def fixed(conv, *, patch_in, patch_out, grid, index, keep=0.5, seed=0) -> LayerPlan:
    """Seeded random masks at compute fraction ``keep`` (layer ``i`` uses seed ``seed + i``): the random
    floor baseline."""
    return LayerPlan(FixedGate(keep, seed + index))


@METHODS.register("keyframe")
def keyframe(conv, *, patch_in, patch_out, grid, index, rate=0.5) -> LayerPlan:
    """Keyframe floor baseline: a fraction ``rate`` of the frames reuses every gated output (``KeyframeGate``)."""
    return LayerPlan(KeyframeGate(rate))
