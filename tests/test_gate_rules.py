"""Gate rules pinned against hand-worked values, documented defaults and the papers' rules (PASS, Skip-Conv).

Complements tests/test_skip_gates.py and tests/test_fastgate.py: edge patches on unusual shapes, seeded
sampling, exact 0 / 1 rates, boundaries of the hard decisions, conv geometry of the norm gate's output
variant, the Skip-Conv gumbel gate's documented defaults and training noise, and the two floor baselines.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from passbench.skip import fastgate
from passbench.skip.gates import (
    FixedGate,
    GumbelGate,
    KeyframeGate,
    NormGate,
    PassGate,
    bernoulli_ste,
    decide_stacked,
    fit_grid,
    gumbel_noise,
    gumbel_normalization,
    threshold_ste,
    topk_ste,
)


def _pass(rate=None, rule="topk", **kw) -> PassGate:
    """A tiny PASS gate (eval); only its rule / rate / threshold matter for ``decide_stacked``."""
    torch.manual_seed(0)
    return PassGate(3, 4, embed_dim=8, hidden=8, depth=1, min_patches=4, rate=rate, rule=rule, **kw).eval()


def _pair(b=2, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g), torch.rand(b, c, h, w, generator=g)


# ---------------------------------------------------------------- patch_mean (through NormGate "input")


@pytest.mark.parametrize("hw", [(3, 4), (4, 3), (3, 3)], ids=["partial-bottom", "partial-right", "both"])
def test_partial_edge_patches_average_their_real_pixels_even_with_many_channels(hw):
    # A constant residual of 1 on every real pixel: each patch's mean |r| over its real pixels is 1, whole or
    # partial (the zero padding up to the 2x2 grid of 2-pixel patches is divided out). 8 channels, more than
    # the 4 pixel rows / columns of the grid: a channel count must not be read as a frame size (a padded
    # patch averaged with its zeros would give 2 real pixels of 4 -> 0.5).
    x = torch.ones(1, 8, *hw)
    prev = torch.zeros_like(x)
    out = NormGate(patch_in=2, patch_out=2, threshold=0.0)(x, prev, (2, 2))
    assert out.norm.tolist() == [[[1.0, 1.0], [1.0, 1.0]]]


# ---------------------------------------------------------------- gumbel_noise


def test_gumbel_noise_is_reproducible_from_its_generator():
    # A seeded generator makes the noise reproducible however the global RNG moved; another seed changes it.
    like = torch.zeros(1)
    torch.manual_seed(0)
    a = gumbel_noise((64,), like, torch.Generator().manual_seed(5))
    torch.rand(100)  # move the global stream
    b = gumbel_noise((64,), like, torch.Generator().manual_seed(5))
    c = gumbel_noise((64,), like, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_gumbel_noise_follows_the_dtype_of_like(dtype):
    eps = gumbel_noise((4, 5), torch.zeros(2, dtype=dtype), torch.Generator().manual_seed(0))
    assert eps.dtype == dtype and eps.shape == (4, 5)


def test_gumbel_noise_follows_the_device_of_like():
    # the meta device: no data, but the noise must be created where ``like`` lives
    eps = gumbel_noise((3, 2), torch.empty(0, device="meta"))
    assert eps.device.type == "meta" and eps.shape == (3, 2)


@pytest.mark.parametrize("dtype, n", [(torch.bfloat16, 4096), (torch.float16, 8192)])
def test_gumbel_noise_is_finite_where_a_draw_in_the_dtype_holds_exact_zeros(dtype, n):
    # "keep both logs finite": u = 0 gives -ln(-ln 0) = -ln(inf) = -inf without the lower clamp. Draws in these
    # dtypes are coarse (bfloat16 8 bits, float16 11: ~1 in 2048 is exactly 0), and a clamp bound of 1e-10 is 0
    # in float16 (the noise was -inf there before it was drawn in float32). The precondition shows that a draw
    # in the dtype, from this seed, holds exact zeros.
    like = torch.zeros(1, dtype=dtype)
    u = torch.rand((n,), generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert int((u == 0).sum()) > 0  # precondition: the draw holds exact zeros
    eps = gumbel_noise((n,), like, torch.Generator().manual_seed(0))
    assert eps.dtype == dtype
    assert bool(eps.isfinite().all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_noise_of_float32_and_float64_is_the_formula_on_a_draw_in_that_dtype(dtype):
    # Only float16 / bfloat16 are drawn in float32; a float64 ``like`` keeps a float64 draw (53-bit u, not
    # float32's 24), and both keep the stream of torch.rand in their dtype: eps = -ln(-ln u) on it.
    u = torch.rand((256,), generator=torch.Generator().manual_seed(3), dtype=dtype)
    eps = gumbel_noise((256,), torch.zeros(1, dtype=dtype), torch.Generator().manual_seed(3))
    assert eps.dtype == dtype
    assert torch.equal(eps, -torch.log(-torch.log(u)))


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_gumbel_noise_is_finite_at_both_ends_of_the_uniform_draw(monkeypatch, value):
    # "keep both logs finite": u = 0 gives -ln(inf) = -inf and u = 1 gives -ln(0) = +inf without the clamp;
    # a bound above 1 gives the log of a negative number (NaN). torch.rand's [0, 1) makes both ends rare, so
    # the draw is replaced by a constant one here.
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.full(shape, value, dtype=kw.get("dtype")))
    eps = gumbel_noise((4,), torch.zeros(1))
    monkeypatch.setattr(torch, "rand", real_rand)
    assert bool(eps.isfinite().all()), eps
    # the clamp bounds are just inside (0, 1): -ln(-ln 1e-10) = -3.1, -ln(-ln(1 - 1e-7)) = 16.1 (float32 rounds
    # 1 - 1e-7 to 1 - 2**-23: 15.9)
    assert (-3.2 < eps).all() and (eps < 16.2).all(), eps


# ---------------------------------------------------------------- gumbel_normalization


def test_gumbel_normalization_adds_noise_by_default_reproducibly_from_its_generator():
    # noise=True is the default (training, Eq. 4); a seeded generator makes the noisy scores reproducible
    # however the global RNG moved, another seed changes them, and noise=False is the plain min-max
    x = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = gumbel_normalization(x, generator=torch.Generator().manual_seed(1))
    torch.rand(100)  # move the global stream
    b = gumbel_normalization(x, generator=torch.Generator().manual_seed(1))
    c = gumbel_normalization(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, gumbel_normalization(x, noise=False))


def test_gumbel_normalization_adds_the_gumbel_noise_not_subtracts_it():
    # Eq. 4: X^ = X + eps, eps standard Gumbel: right-skewed (mode 0, mean 0.577, a long right tail). On a
    # constant input X^ = eps + c, and min-max puts the bulk low: over n = 65536 samples min ~ -ln ln n = -2.4,
    # max ~ ln n = 11.1, so the mean maps to ~ (0.58 + 2.4) / 13.5 = 0.22. Subtracting eps mirrors it (~0.78).
    out = gumbel_normalization(torch.zeros(1, 65536), generator=torch.Generator().manual_seed(0))
    assert 0.1 < float(out.mean()) < 0.4


# ---------------------------------------------------------------- bernoulli_ste / threshold_ste / topk_ste


def test_bernoulli_ste_is_reproducible_from_its_generator():
    p = torch.full((256,), 0.5)
    torch.manual_seed(0)
    a = bernoulli_ste(p, torch.Generator().manual_seed(1))
    torch.rand(100)  # move the global stream
    b = bernoulli_ste(p, torch.Generator().manual_seed(1))
    c = bernoulli_ste(p, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # 256 fair coins: equal draws have probability 2^-256


def test_threshold_ste_is_strict_and_keeps_the_dtype():
    # prob > threshold skips (PASS: normalised score > 0.5; Skip-Conv: sigmoid < 0.5 computes, so a skip
    # probability of exactly 0.5 is computed): 0.25 -> 0, 0.5 -> 0 (equal: not above), 0.75 -> 1.
    prob = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    m = threshold_ste(prob, 0.5)
    assert m.dtype == torch.float64
    assert m.tolist() == [0.0, 0.0, 1.0]


def test_topk_ste_skips_the_single_highest_patch_when_k_is_one():
    # n = 6 patches per sample, rate 1/6: round(1/6 * 6) = 1 patch skipped, the highest-scoring one
    s = torch.tensor([[[0.1, 0.7, 0.3], [0.2, 0.0, 0.4]],
                      [[0.9, 0.1, 0.2], [0.3, 0.5, 0.6]]])
    m = topk_ste(s, 1 / 6)
    assert m.tolist() == [[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
                          [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]


# ---------------------------------------------------------------- fit_grid


@pytest.mark.parametrize("hw", [(5, 7), (3, 5), (5, 5), (3, 7)],
                         ids=["crop-both", "pad-both", "crop-h-pad-w", "pad-h-crop-w"])
def test_fit_grid_crops_and_zero_pads_each_side_to_the_grid(hw):
    # grid 2x3 of 2-pixel patches = 4x6 pixels: the top-left min(h, 4) x min(w, 6) of the input is kept,
    # the rest of the 4x6 is zeros (hand-built expectation)
    h, w = hw
    x = torch.arange(1.0, 1.0 + 2 * h * w).view(1, 2, h, w)
    want = torch.zeros(1, 2, 4, 6)
    want[..., : min(h, 4), : min(w, 6)] = x[..., : min(h, 4), : min(w, 6)]
    got = fit_grid(x, 2, (2, 3))
    assert got.shape == (1, 2, 4, 6)
    assert torch.equal(got, want)


# ---------------------------------------------------------------- PassGate: gated / linear-head grid check


def test_pass_gate_is_gated_from_min_patches_on_the_grid_area():
    # the number of patches Hp * Wp is compared with min_patches (12 here): 3x4 = 12 and 1x12 gate,
    # 2x5 = 10 and 11x1 do not
    gate = _pass(rate=0.5)
    gate.min_patches = 12
    assert [gate.gated(g) for g in [(3, 4), (1, 12), (12, 1), (2, 5), (11, 1)]] == [True, True, True, False, False]


def test_pass_gate_under_min_patches_returns_zeros_per_sample():
    # not gated: nothing skipped, one (Hp, Wp) zero map per sample of the batch (3 samples, 5 channels)
    torch.manual_seed(0)
    gate = PassGate(5, 4, embed_dim=8, hidden=8, depth=1, rate=0.5, min_patches=16).eval()
    x, prev = _pair(3, 5, 4, 8)
    out = gate(x, prev, (1, 2))
    assert out.active is False
    assert out.mask.shape == out.prob.shape == (3, 1, 2)
    assert out.mask.eq(0).all() and out.prob.eq(0).all()


@pytest.mark.parametrize("kernel_size", [5, 9])
def test_pass_gate_mixer_blocks_keep_the_patch_grid_for_larger_kernels(kernel_size):
    # ConvMixer's depthwise conv is 'same' (padding k // 2) so that its residual x + dw(x) adds maps of one
    # size; 9 is the authors' kernel (PASS_PAPER_GATE). A 6x6 grid gives 6x6 logits.
    torch.manual_seed(0)
    gate = PassGate(3, 2, embed_dim=4, hidden=4, depth=2, kernel_size=kernel_size, rate=0.5, min_patches=4).eval()
    x, prev = _pair(1, 3, 12, 12)
    assert gate.logits(x, prev, (6, 6)).shape == (1, 6, 6)


def test_pass_gate_inference_engine_rules(monkeypatch):
    # The fast engine only where no gradient is wanted: gradients wanted through x or through prev (each
    # alone) mean the reference ops (None); the per-call ``engine`` overrides ``gate.engine``, which overrides
    # the environment default; "eager" means the reference ops.
    monkeypatch.delenv(fastgate.ENV, raising=False)
    gate = _pass(rate=0.5).requires_grad_(False)  # frozen: only the inputs can want gradients
    x, prev = _pair()
    assert gate.inference_engine(x, prev) == "fast"
    assert gate.inference_engine(x.clone().requires_grad_(), prev) is None
    assert gate.inference_engine(x, prev.clone().requires_grad_()) is None
    gate.engine = "eager"
    assert gate.inference_engine(x, prev) is None
    assert gate.inference_engine(x, prev, "fast") == "fast"
    gate.engine = "compiled"
    assert gate.inference_engine(x, prev) == "compiled"


def test_pass_gate_defaults_as_documented():
    # PassGate(Cin, p_in) with every default: the passbench defaults the docstring names -- per-patch head
    # ("passbench default") with 64 hidden units ("64 for the patch head"), top-k rule ("passbench
    # default") with no calibrated rate yet, threshold 0.5 (the paper's rule), C = 64 and 2 ConvMixer blocks
    # (the low end of the paper's C = 64-256, 2-16 blocks), depthwise kernel 3, patch embedding
    # Conv(2 Cin -> C, kernel = stride = p_in); grids under 16 patches not gated; engine None (environment).
    g = PassGate(3, 4)
    emb = g.embed[0]
    assert (emb.in_channels, emb.out_channels, emb.kernel_size, emb.stride) == (6, 64, (4, 4), (4, 4))
    assert len(g.blocks) == 2
    assert all(b.dw[0].kernel_size == (3, 3) for b in g.blocks)
    assert g.head_kind == "patch" and g.grid is None
    assert (g.head[0].in_channels, g.head[0].out_channels, g.head[2].out_channels) == (64, 64, 1)
    assert (g.rule, g.rate, g.threshold) == ("topk", None, 0.5)
    assert g.min_patches == 16 and g.gated((4, 4)) and not g.gated((3, 5))
    assert g.engine is None


@pytest.mark.parametrize("kw,msg", [
    (dict(head="conv"), r"^PassGate: head must be one of \('patch', 'linear'\), got 'conv'$"),
    (dict(rule="argmax"), r"^PassGate: rule must be one of \('topk', 'threshold'\), got 'argmax'$"),
    (dict(depth=0), r"^PassGate: need depth >= 1 and an odd kernel_size, got 0, 3$"),
    (dict(kernel_size=4), r"^PassGate: need depth >= 1 and an odd kernel_size, got 2, 4$"),
    (dict(head="linear"), r"^PassGate\(head='linear'\) needs grid=\(Hp, Wp\): the paper's classifier is built "
                          r"for one input resolution \(pass input_shape to make_skippable\)$"),
], ids=["head", "rule", "depth", "even-kernel", "linear-without-grid"])
def test_pass_gate_constructor_errors_with_their_messages(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PassGate(3, 4, **kw)


def test_pass_gate_hidden_sets_the_classifier_width_of_either_head():
    # ``hidden``: hidden units of the classifier; 64 / 4096 only when not given
    lin = PassGate(3, 4, embed_dim=8, hidden=32, head="linear", grid=(2, 3))
    assert [(m.in_features, m.out_features) for m in lin.head if isinstance(m, nn.Linear)] == [(8, 32), (32, 6)]
    patch = PassGate(3, 4, embed_dim=8, hidden=24)
    assert (patch.head[0].out_channels, patch.head[2].in_channels) == (24, 24)


def test_pass_gate_linear_head_uses_the_authors_init():
    # kimihe/MaskGate init_weights (cited in gates.py): Linear weights N(0, 1e-3), biases zero. 8 * 4096 and
    # 4096 * 6 samples: the sample std is 1e-3 within ~1 %.
    torch.manual_seed(0)
    g = PassGate(3, 4, embed_dim=8, head="linear", grid=(2, 3))
    lin = [m for m in g.head if isinstance(m, nn.Linear)]
    assert len(lin) == 2
    for m in lin:
        w = m.weight.detach()
        assert 0.95e-3 < float(w.std()) < 1.05e-3
        assert abs(float(w.mean())) < 1e-4
        assert m.bias.detach().eq(0).all()


def test_pass_gate_without_a_rate_refuses_topk_with_its_message_on_both_paths():
    # rule="topk" needs a calibrated rate, whichever path runs: the reference ops (gradients enabled, trainable
    # parameters) and the fast engine (no_grad); rule="threshold" needs none.
    msg = (r"^PassGate\(rule='topk'\) has no calibrated rate: pre-train it with passbench\.train pass_p \(which "
           r"stores each layer's rate\) or pass rates=\.\.\. / rule='threshold'$")
    gate = _pass()
    x, prev = _pair()
    with pytest.raises(RuntimeError, match=msg):
        gate(x, prev, (4, 4))
    with torch.no_grad(), pytest.raises(RuntimeError, match=msg):
        gate(x, prev, (4, 4), engine="fast")
    thr = _pass(rule="threshold")
    eager = thr(x, prev, (4, 4))  # gradients enabled: the reference ops
    with torch.no_grad():
        fast = thr(x, prev, (4, 4), engine="fast")
    for out in (eager, fast):  # the paper's rule on the noise-free per-sample min-max scores
        p = out.prob.detach()
        assert out.mask.shape == p.shape == (2, 4, 4)
        assert p.amin((1, 2)).eq(0).all() and p.amax((1, 2)).eq(1).all()
        assert torch.equal(out.mask.detach(), (p > 0.5).float())


@torch.no_grad()
def test_pass_gate_forward_runs_the_engine_it_is_asked_for(monkeypatch):
    # engine: "eager" = the reference ops (no stacked fast ops), "fast" = skip.fastgate's stacked ops,
    # "compiled" = their torch.compile (a recording stand-in here, no inductor); all decide alike
    real = fastgate.stacked_logits
    ran = []
    monkeypatch.setattr(fastgate, "stacked_logits", lambda P, x, prev: ran.append("fast") or real(P, x, prev))
    monkeypatch.setattr(fastgate, "compiled_logits", lambda P, x, prev: ran.append("compiled") or real(P, x, prev))
    monkeypatch.delenv(fastgate.ENV, raising=False)
    gate = _pass(rate=0.5)
    x, prev = _pair()
    ref = gate(x, prev, (4, 4), engine="eager")
    assert ran == []
    for eng in ("fast", "compiled"):
        ran.clear()
        out = gate(x, prev, (4, 4), engine=eng)
        assert ran == [eng]
        assert torch.equal(out.mask, ref.mask)


@torch.no_grad()
def test_pass_gate_forward_hands_the_decision_to_its_group():
    # ``group``: a callable (gate, x, prev, grid, engine) -> GateOut that may stack this gate with others; the
    # gate hands it exactly its own arguments and the engine it chose, and returns its answer
    gate = _pass(rate=0.5)
    x, prev = _pair()
    seen, answer = [], object()

    def group(*args):
        seen.append(args)
        return answer

    assert gate(x, prev, (4, 4), group=group, engine="fast") is answer
    assert len(seen) == 1
    g, gx, gp, grid, eng = seen[0]
    assert g is gate and gx is x and gp is prev and tuple(grid) == (4, 4) and eng == "fast"
    # the reference ops decide alone: the group is not asked
    seen.clear()
    gate(x, prev, (4, 4), group=group, engine="eager")
    assert seen == []


def test_pass_gate_training_adds_noise_per_forward():
    # Training: Eq. 4 with Gumbel noise, so two forwards of the same frames draw different scores (and
    # per-sample min-max still spans exactly [0, 1])
    gate = _pass(rate=0.5).train()
    x, prev = _pair()
    torch.manual_seed(1)
    a = gate(x, prev, (4, 4)).prob.detach()
    torch.manual_seed(2)
    b = gate(x, prev, (4, 4)).prob.detach()
    assert not torch.equal(a, b)
    for p in (a, b):
        assert p.amin((1, 2)).eq(0).all() and p.amax((1, 2)).eq(1).all()


def test_pass_gate_linear_head_grid_mismatch_message():
    gate = PassGate(3, 4, embed_dim=8, hidden=8, head="linear", grid=(2, 3), rate=0.5, min_patches=4).eval()
    x, prev = _pair(1, 3, 12, 16)
    with pytest.raises(ValueError, match=r"^PassGate\(head='linear'\) was built for a 2x3 patch grid \(the paper's "
                                         r"fixed-resolution classifier\), got 3x4; rebuild the gate for this "
                                         r"resolution or use head='patch'$"):
        gate(x, prev, (3, 4))


# ---------------------------------------------------------------- PassGate.set_rate / fast_decide


@pytest.mark.parametrize("rate,skipped", [(0.0, 0.0), (1.0, 1.0)])
def test_pass_gate_rates_zero_and_one_are_valid_and_skip_nothing_or_everything(rate, skipped):
    # "rate: fraction in [0, 1] of patches to skip": both ends are valid, round(0 * 16) = 0 and
    # round(1 * 16) = 16 patches skipped, on the reference ops and on the fast engine alike
    gate = _pass(rate=rate)
    assert gate.rate == rate
    x, prev = _pair()
    eager = gate(x, prev, (4, 4), engine="eager")
    with torch.no_grad():
        fast = gate(x, prev, (4, 4), engine="fast")
    for out in (eager, fast):
        assert out.mask.detach().eq(skipped).all()
    gate.set_rate(1.0 - rate)  # and through set_rate
    assert gate.rate == 1.0 - rate


def test_pass_gate_rate_outside_zero_one_is_refused_with_its_message():
    with pytest.raises(ValueError, match=r"^PassGate: rate must be in \[0, 1\], got 1\.5$"):
        PassGate(3, 4, rate=1.5)
    with pytest.raises(ValueError, match=r"^PassGate: rate must be in \[0, 1\], got -0\.1$"):
        _pass(rate=0.5).set_rate(-0.1)


@torch.no_grad()
def test_fast_decide_runs_the_engine_it_is_given(monkeypatch):
    # fast_decide(..., engine) must run that engine: "compiled" goes through fastgate.compiled_logits. A
    # recording stand-in (the eager stacked ops, no inductor) shows which path ran; the decision equals the
    # reference ops'.
    calls = []

    def recording(P, x, prev):
        calls.append(x.shape)
        return fastgate.stacked_logits(P, x, prev)

    monkeypatch.setattr(fastgate, "compiled_logits", recording)
    gate = _pass(rate=0.5)
    x, prev = _pair()
    out = gate.fast_decide(x, prev, (4, 4), "compiled")
    assert len(calls) == 1
    assert torch.equal(out.mask, gate(x, prev, (4, 4), engine="eager").mask)
    gate.fast_decide(x, prev, (4, 4), "fast")
    assert len(calls) == 1  # "fast" does not compile


# ---------------------------------------------------------------- decide_stacked


# logits of one sample on a 2x2 grid: min-max gives [[0, 1], [1/3, 2/3]], ranking (0,1) > (1,1) > (1,0) > (0,0)
_LOGIT = torch.tensor([[0.0, 3.0], [1.0, 2.0]])


@torch.no_grad()
def test_decide_stacked_gates_with_different_rates_each_skip_their_own_count():
    # gate A rate 0.25 -> round(0.25 * 4) = 1 patch: (0,1); gate B rate 0.75 -> 3 patches: all but (0,0)
    logit = torch.stack([_LOGIT, _LOGIT]).unsqueeze(0)  # (1, 2, 2, 2)
    a, b = decide_stacked([_pass(rate=0.25), _pass(rate=0.75)], logit)
    assert a.mask.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]
    assert b.mask.tolist() == [[[0.0, 1.0], [1.0, 1.0]]]


@torch.no_grad()
@pytest.mark.parametrize("rate,want", [
    (0.25, [[0.0, 1.0], [0.0, 0.0]]),  # one k = 1 for every gate: the single highest patch, (0,1)
    (0.0, [[0.0, 0.0], [0.0, 0.0]]),  # k = 0: nothing skipped
])
def test_decide_stacked_one_k_for_all_gates(rate, want):
    logit = torch.stack([_LOGIT, _LOGIT.flip(1)]).unsqueeze(0)  # gate 2: (0,0) is its highest
    a, b = decide_stacked([_pass(rate=rate), _pass(rate=rate)], logit)
    assert a.mask.tolist() == [want]
    assert b.mask.tolist() == [[row[::-1] for row in want]]


@torch.no_grad()
def test_decide_stacked_threshold_gate_is_strict_next_to_a_topk_gate():
    # The paper's rule, normalised score > threshold. Logits [[0, 4], [1, 2]] min-max to exact binary
    # fractions [[0, 1], [0.25, 0.5]]: at threshold 0.5 only the 1 is skipped (0.5 is not above 0.5). Next
    # to it a top-k gate with k = round(0.25 * 4) = 1 skips its single highest patch, (0, 1).
    logit = torch.tensor([[0.0, 4.0], [1.0, 2.0]])
    t, k = decide_stacked([_pass(rule="threshold", threshold=0.5), _pass(rate=0.25)],
                          torch.stack([logit, logit]).unsqueeze(0))
    assert t.prob.tolist() == [[[0.0, 1.0], [0.25, 0.5]]]
    assert t.mask.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]
    assert k.mask.tolist() == [[[0.0, 1.0], [0.0, 0.0]]]


# ---------------------------------------------------------------- NormGate


def test_norm_gate_variant_is_checked_with_its_message():
    with pytest.raises(ValueError, match=r"^NormGate: variant must be 'input' or 'output', got 'both'$"):
        NormGate(4, 4, variant="both")


def test_norm_gate_output_variant_needs_the_conv_with_its_message():
    x, prev = _pair(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"^NormGate\(variant='output'\) needs the layer's conv$"):
        NormGate(4, 4, variant="output")(x, prev, (2, 2))


def test_norm_gate_default_threshold_skips_nothing():
    # threshold defaults to 0.0 and the rule is norm < threshold: a mean |r| is never below 0, so a fresh
    # gate computes every patch, even of two identical frames (residual exactly 0)
    gate = NormGate(4, 4)
    assert gate.threshold == 0.0
    x = torch.rand(1, 2, 8, 8)
    out = gate(x, x.clone(), (2, 2))
    assert out.norm.tolist() == [[[0.0, 0.0], [0.0, 0.0]]]
    assert out.mask.tolist() == [[[0.0, 0.0], [0.0, 0.0]]]


def test_norm_gate_output_variant_uses_the_convs_stride_padding_dilation_and_groups():
    # Oracle: the residual through torch.nn.functional.conv2d with the hand-built conv's geometry (stride 2,
    # padding 2, dilation 2, groups 2; no bias: a bias is not a change), |.| averaged over channels and each
    # 4x4 output patch. 16x16 input -> (16 + 2*2 - 2*(3-1) - 1) // 2 + 1 = 8x8 output -> 2x2 patches.
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=True)
    nn.init.constant_(conv.bias, 0.7)
    x, prev = _pair(1, 4, 16, 16)
    r = F.conv2d(x - prev, conv.weight, None, stride=2, padding=2, dilation=2, groups=2).abs()
    assert r.shape == (1, 6, 8, 8)
    want = r.view(1, 6, 2, 4, 2, 4).mean((1, 3, 5))
    out = NormGate(patch_in=8, patch_out=4, threshold=0.0, variant="output")(x, prev, (2, 2), conv=conv)
    torch.testing.assert_close(out.norm, want)


@pytest.mark.parametrize("variant", ["input", "output"])
def test_norm_gate_reads_the_residual_the_caller_passes(variant):
    # ``diff``: the residual X_t - X_{t-1} the wrapper computes once per forward and shares; the gate reads
    # it instead of recomputing x - prev. Here x == prev (their difference is 0) and diff is 0.5 on the
    # top-left 4x4 patch: the norm is the diff's, [[0.5, 0], [0, 0]] (output variant: a 1x1 identity conv).
    x = torch.rand(1, 2, 8, 8)
    diff = torch.zeros_like(x)
    diff[..., :4, :4] = 0.5
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
    gate = NormGate(patch_in=4, patch_out=4, threshold=0.25, variant=variant)
    want = [[[0.5, 0.0], [0.0, 0.0]]]
    assert gate.residual_norm(x, x.clone(), (2, 2), conv=conv, diff=diff).tolist() == want
    out = gate(x, x.clone(), (2, 2), conv=conv, diff=diff)
    assert out.norm.tolist() == want
    assert out.mask.tolist() == [[[0.0, 1.0], [1.0, 1.0]]]  # 0.5 is not below 0.25; 0 is


# ---------------------------------------------------------------- GumbelGate


def test_gumbel_gate_defaults_hand_worked():
    # Defaults as documented: one output channel ("a conv to one channel"), k x k = 3x3 at stride 1 with
    # 'same' padding 1 on the input grid, bias init_bias = 3, monotone (effective weights |w|).
    g = GumbelGate(1, 4).eval()
    assert g.proj.weight.shape == (1, 1, 3, 3)
    assert g.proj.bias.tolist() == [3.0]
    assert g.monotone is True
    with torch.no_grad():
        g.proj.weight.fill_(-1.0)  # negative weights: under monotone the gate uses |w| = 1
    x, prev = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 2] = 1.0  # |r| = 1 at pixel (2, 2), inside patch (0, 0) (pixels 0..3)
    # the 3x3 window reaches pixels 1..3 around (2, 2): compute logit 3 + 1 * 1 = 4 there, all in patch (0, 0);
    # every other pixel sees no change: 3
    assert g.logits(x, prev, (2, 2)).tolist() == [[[4.0, 3.0], [3.0, 3.0]]]


def test_fresh_gumbel_gate_computes_about_95_percent():
    # "the bias starts at init_bias = 3 (a fresh gate computes ~95 % of patches)": with no change the compute
    # logit is the bias, skip prob = 1 - sigmoid(3) = 1 - 1 / (1 + e^-3) = 1 - 1 / 1.049787 = 0.047426
    g = GumbelGate(3, 4).eval()
    x = torch.rand(2, 3, 8, 8)
    out = g(x, x.clone(), (2, 2))
    torch.testing.assert_close(out.prob, torch.full((2, 2, 2), 0.047426), atol=1e-6, rtol=0)
    assert out.mask.sum() == 0


def test_gumbel_gate_conv_is_same_size_for_larger_kernels():
    # kernel 5 -> padding 5 // 2 = 2: the conv keeps the 8x8 input grid. |r| = 1 at pixel (6, 6) with weights 1
    # reaches pixels 4..8 (cropped at 7): compute logit 3 + 1 in patch (1, 1) only, 3 elsewhere
    g = GumbelGate(1, 4, kernel_size=5).eval()
    with torch.no_grad():
        g.proj.weight.fill_(1.0)
    x, prev = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    x[0, 0, 6, 6] = 1.0
    assert g.logits(x, prev, (2, 2)).tolist() == [[[3.0, 3.0], [3.0, 4.0]]]


def test_gumbel_gate_reads_the_residual_the_caller_passes():
    # as for the norm gate: x == prev, the shared diff carries the change (|r| = 1 at pixel (2, 2))
    g = GumbelGate(1, 4).eval()
    with torch.no_grad():
        g.proj.weight.fill_(1.0)
    x = torch.rand(1, 1, 8, 8)
    diff = torch.zeros_like(x)
    diff[0, 0, 2, 2] = 1.0
    assert g.logits(x, x.clone(), (2, 2), diff=diff).tolist() == [[[4.0, 3.0], [3.0, 3.0]]]
    out = g(x, x.clone(), (2, 2), diff=diff)
    torch.testing.assert_close(out.prob, 1 - torch.sigmoid(torch.tensor([[[4.0, 3.0], [3.0, 3.0]]])))


def test_gumbel_gate_inference_threshold_moves_the_operating_point():
    # inference skips where prob > threshold. A 1x1 conv with weight 1 and bias -2 on 1-pixel patches: the
    # compute logit is |r| - 2; |r| = [[0, 2], [3, 1.5]] gives z = [[-2, 0], [1, -0.5]] and skip prob
    # 1 - sigmoid(z) = [[1 - 0.119203, 0.5], [1 - 0.731059, 1 - 0.377541]] = [[0.880797, 0.5], [0.268941, 0.622459]]
    g = GumbelGate(1, 1, kernel_size=1, init_bias=-2.0, threshold=0.7).eval()
    with torch.no_grad():
        g.proj.weight.fill_(1.0)
    r = torch.tensor([[[[0.0, 2.0], [3.0, 1.5]]]])
    out = g(r, torch.zeros_like(r), (2, 2))
    torch.testing.assert_close(out.prob[0], torch.tensor([[0.880797, 0.5], [0.268941, 0.622459]]))
    assert out.mask.tolist() == [[[1.0, 0.0], [0.0, 0.0]]]  # only 0.8808 > 0.7
    g.threshold = 0.5
    assert g(r, torch.zeros_like(r), (2, 2)).mask.tolist() == [[[1.0, 0.0], [0.0, 1.0]]]  # 0.5 is not > 0.5


def test_gumbel_gate_training_samples_the_binary_concrete():
    # Training: p_compute = sigmoid((z + g) / tau) with logistic noise g (the difference of two Gumbels, the
    # binary Concrete), hard skip where skip prob > 0.5 whatever the inference threshold. For a constant
    # compute logit z = 1 and tau = 2/3 (default), over 65536 patches:
    #   P(skip) = P(sigmoid((z + g) / tau) < 0.5) = P(g < -1) = 1 / (1 + e^1) = 0.268941
    #   P(skip prob > 0.9) = P((z + g) / tau < -ln 9) = P(g < -1 - (2/3) ln 9) = P(g < -2.464816) = 0.078362
    # (standard errors ~0.0017 and ~0.0011; tolerances 0.01 and 0.008)
    torch.manual_seed(0)
    g = GumbelGate(1, 1, kernel_size=1, init_bias=1.0, threshold=0.99).train()
    with torch.no_grad():
        g.proj.weight.zero_()
    x = torch.zeros(1, 1, 256, 256)
    out = g(x, x, (256, 256))
    skip = out.mask.detach()
    assert set(skip.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(skip, (out.prob.detach() > 0.5).to(skip.dtype))  # training decides at 0.5
    assert abs(float(skip.mean()) - 0.268941) < 0.01
    assert abs(float((out.prob.detach() > 0.9).float().mean()) - 0.078362) < 0.008


# ---------------------------------------------------------------- FixedGate


def test_fixed_gate_defaults_are_keep_half_seed_zero():
    x = torch.zeros(2, 3, 8, 8)
    a, b = FixedGate(), FixedGate(keep=0.5, seed=0)
    assert (a.keep, a.seed) == (0.5, 0)
    for _ in range(3):  # the same stream, call after call
        assert torch.equal(a(x, x, (4, 4)).mask, b(x, x, (4, 4)).mask)


@pytest.mark.parametrize("keep", [1.5, -0.5])
def test_fixed_gate_keep_outside_zero_one_is_refused_with_its_message(keep):
    with pytest.raises(ValueError, match=rf"^FixedGate: keep must be in \[0, 1\], got {keep}$"):
        FixedGate(keep=keep)


def test_fixed_gate_output_follows_the_input_batch_dtype_and_device():
    x = torch.zeros(3, 5, 8, 8, dtype=torch.float64)  # batch 3, 5 channels
    out = FixedGate(keep=0.5)(x, x, (2, 4))
    assert out.mask.shape == out.prob.shape == (3, 2, 4)
    assert out.mask.dtype == torch.float64
    assert torch.equal(out.prob, out.mask)  # a fixed gate's skip probability is its 0/1 decision
    meta = torch.empty(3, 5, 8, 8, device="meta")
    assert FixedGate(keep=0.5)(meta, meta, (2, 4)).mask.device.type == "meta"


def test_fixed_gate_keep_zero_skips_every_patch_even_a_zero_draw():
    # keep = 0: compute fraction 0, every patch skipped (u >= 0 for every u in [0, 1)). Seed 3 draws an exact
    # u = 0 among these 2 x 1024 x 1024 patches (precondition below): it too must be skipped.
    u = torch.rand((2, 1024, 1024), generator=torch.Generator().manual_seed(3))
    assert bool((u == 0).any())  # precondition
    x = torch.zeros(2, 1, 1, 1)
    assert bool(FixedGate(keep=0.0, seed=3)(x, x, (1024, 1024)).mask.eq(1).all())


# ---------------------------------------------------------------- KeyframeGate


def test_keyframe_gate_default_rate_keys_every_second_frame():
    # default rate 0.5: gated call t is a key frame iff floor(t / 2) > floor((t - 1) / 2), i.e. t even
    g = KeyframeGate()
    assert g.rate == 0.5
    x = torch.zeros(1, 1, 4, 4)
    assert [float(g(x, x, (1, 1)).mask) for _ in range(4)] == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("rate,skipped", [(0.0, 0.0), (1.0, 1.0)])
def test_keyframe_gate_rates_zero_and_one(rate, skipped):
    # rate 0: keep 1, floor(t) > floor(t - 1) for every t: every frame a key frame, nothing skipped;
    # rate 1: keep 0, floor(0) > floor(0) never: no key frame, everything skipped
    g = KeyframeGate(rate)
    x = torch.zeros(1, 1, 4, 4)
    assert [float(g(x, x, (2, 2)).mask.mean()) for _ in range(5)] == [skipped] * 5


@pytest.mark.parametrize("rate", [1.5, -0.5])
def test_keyframe_gate_rate_outside_zero_one_is_refused_with_its_message(rate):
    with pytest.raises(ValueError, match=rf"^KeyframeGate: rate must be in \[0, 1\], got {rate}$"):
        KeyframeGate(rate)


def test_keyframe_gate_output_follows_the_input_batch_and_dtype():
    x = torch.zeros(3, 5, 8, 8, dtype=torch.float64)  # batch 3, 5 channels
    out = KeyframeGate(0.5)(x, x, (2, 4))  # t = 1: not a key frame, every patch skipped
    assert out.mask.shape == out.prob.shape == (3, 2, 4)
    assert out.mask.dtype == torch.float64
    assert out.mask.eq(1).all() and torch.equal(out.prob, out.mask)
