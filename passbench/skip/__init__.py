"""passbench.skip: which output patches of each convolution to skip, and how to skip them.

Public API (stable names; ``models/``, ``train/`` and ``runner/`` code against these)::

    make_skippable(model, method, *, patch_size=8, layers=None, exclude=None, execution="auto",
                   refresh_every=None, input_shape=None, **gate_params) -> model
        Swap every nn.Conv2d (or those whose qualified name matches a glob in ``layers``, minus
        ``exclude``) for a ``SkipConv2d`` wrapper, in place; returns the model. ``method`` is a name in
        ``METHODS``: ``dense``, ``pass`` (= ``pass_p`` = ``pass_f``: the PASS gate), ``skipconv``
        (``gate="norm"|"gumbel"``), ``skipconv_norm``, ``skipconv_gumbel``, ``fixed`` (seeded random
        mask at ``keep`` fraction), ``keyframe`` (every gated output reused on a fraction ``rate`` of
        frames). ``execution``: ``reference`` (dense conv + blend; the oracle and the differentiable
        training path), ``sparse`` (``skip.sparse.sparse_conv2d``), ``auto``
        (``skip.dispatch.choose_path`` per layer and frame). Training mode always uses ``reference``.
    reset(model)                  forget every stream's state (call at a new sequence)
    skip_session(model)           context manager: reset on entry and on exit
    set_mask_mode(model, mode)    "normal" (mask 1 = skip), "complement" (1 - the last normal mask),
                                  "inverted" (gate re-run, mask 0 = skip), "off" (dense)
    set_thresholds(model, th)     norm gates: one float, or one per skippable layer (module order)
    set_rates(model, rates)       PASS gates: top-k inference skip fraction, one float or one per layer
    set_gate_engine(model, name)  PASS gates' inference ops: "fast" (default), "compiled", "eager" (skip.fastgate)
    stream_states / set_stream_states   snapshot and restore every layer's stream state
    gate_parameters(model)        list of the gates' parameters
    skip_probability(model)       differentiable mean skip probability of the last forward (scalar)
    residual_norms(model)         norm gates: per-patch residual norms of the last forward, per layer
    budget_loss(model, target)    Skip-Conv sparsity budget term (MAC-weighted hinge), differentiable
    skippable_layers(model)       [(qualified name, SkipConv2d), ...] in module order
    ungate(model, names)          drop the named layers' gates after loading (dense, uncounted as gated; a plan variant)
    dense_twin(model)             a copy with every SkipConv2d replaced by its own Conv2d (the timing reference)
    collect_stats(model) -> dict  per-layer rows + totals: dense_macs, executed_macs, gate_macs,
                                  patch_skip_rate, mac_reduction (since the last reset)
    GATES, METHODS                registries (passbench.registry.Registry)
    SkipConv2d                    the wrapper (original conv kept as child ``.conv``)

Mask convention everywhere (the paper's): 1 = skip (take the previous output), 0 = compute; masks
are (B, Hp, Wp) over the *output* patch grid of each layer. ``skip.sparse.sparse_conv2d`` takes the
opposite polarity (True = compute); the wrapper converts.

MAC accounting (``skip.macs``): the paper's Eq. 1-3 (``eq1_vanilla_macs``, ``eq2_patch_skip_rate``,
``eq3_mac_reduction``) and per-layer dense / executed / gate MACs.

Files, lowest first (each imports only those above it)::

    native/      C++ gather / scatter rows for the channels-last path (built on first use; PyTorch fallback)
    nhwc.py      channels-last row tables: the sparse path's gather / scatter, the dense path's blends
    sparse.py    sparse_conv2d: gather - convolve - scatter of the active output patches (generic path)
    dispatch.py  choose_path: sparse or dense per layer shape and keep fraction (cached micro-benchmark)
    fastgate.py  the PASS gates' fast inference ops and their stacking (GateStack)
    gates.py     the gates (PASS, Skip-Conv norm / Gumbel, fixed, keyframe) and the GATES registry
    methods.py   METHODS: a method name -> each layer's gate and formulation
    macs.py      Eq. 1-3 and per-layer dense / executed MACs
    state.py     StreamState (what a layer remembers between frames), LayerStats (its counters), check_same_stream
    geometry.py  output size, integer padding, patch areas, mask upsampling
    stacking.py  ForwardClock (forwards of the model), GateGroups (PASS gates stacked on a shared input)
    ste.py       SelectSTE: the reference path's blend with the mask's straight-through gradient
    wrapper.py   SkipConv2d: one layer's forward (gate, dispatch, state, counters)
    control.py   model-wide controls (reset, masks, thresholds, rates, stream states, dense_twin, ungate)
    budget.py    skip_probability, budget_loss (training reads of the last forward)
    stats.py     collect_stats
    make.py      make_skippable
    fold.py      fold_batchnorm
    aliasing.py  set_output_aliasing: which layers hand the model their kept output without a copy (probe)
"""

from passbench.skip.budget import budget_loss, skip_probability
from passbench.skip.control import (
    dense_twin,
    gate_parameters,
    reset,
    residual_norms,
    set_gate_engine,
    set_mask_mode,
    set_rates,
    set_stream_states,
    set_thresholds,
    skip_session,
    skippable_layers,
    stream_states,
    ungate,
)
from passbench.skip.fold import fold_batchnorm
from passbench.skip.gates import GATES, FixedGate, GumbelGate, KeyframeGate, NormGate, PassGate, gumbel_normalization
from passbench.skip.macs import eq1_vanilla_macs, eq2_patch_skip_rate, eq3_mac_reduction
from passbench.skip.make import make_skippable
from passbench.skip.methods import METHODS
from passbench.skip.stats import collect_stats
from passbench.skip.wrapper import SkipConv2d

__all__ = [
    "GATES",
    "METHODS",
    "FixedGate",
    "GumbelGate",
    "KeyframeGate",
    "NormGate",
    "PassGate",
    "SkipConv2d",
    "budget_loss",
    "collect_stats",
    "dense_twin",
    "fold_batchnorm",
    "eq1_vanilla_macs",
    "eq2_patch_skip_rate",
    "eq3_mac_reduction",
    "gate_parameters",
    "gumbel_normalization",
    "make_skippable",
    "reset",
    "residual_norms",
    "set_mask_mode",
    "set_gate_engine",
    "set_rates",
    "set_stream_states",
    "set_thresholds",
    "skip_probability",
    "skip_session",
    "skippable_layers",
    "stream_states",
    "ungate",
]
