"""Gates: shapes, value ranges, STE gradients, determinism, Gumbel Normalization (PASS Eq. 4-5)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from passbench.skip import GATES, METHODS
from passbench.skip.gates import (
    FixedGate,
    GumbelGate,
    NormGate,
    PassGate,
    bernoulli_ste,
    gumbel_normalization,
)


def _pair(b=2, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g), torch.rand(b, c, h, w, generator=g)


def test_registries_list_the_methods():
    assert set(GATES.names()) >= {"pass", "norm", "gumbel", "fixed", "keyframe"}
    assert set(METHODS.names()) >= {"dense", "pass", "pass_p", "pass_f", "skipconv", "skipconv_norm",
                                    "skipconv_gumbel", "fixed", "keyframe"}
    with pytest.raises(KeyError, match="did you mean"):
        METHODS.get("skipcon")


@pytest.mark.parametrize("head", ["patch", "linear"])
@pytest.mark.parametrize("hw,grid", [((16, 16), (4, 4)), ((14, 10), (4, 3))])
def test_pass_gate_shapes_and_ranges(head, hw, grid):
    x, prev = _pair(h=hw[0], w=hw[1])
    gate = PassGate(3, patch_in=4, embed_dim=16, depth=2, hidden=32, head=head, rate=0.5, min_patches=4,
                    grid=grid if head == "linear" else None)
    for training in (True, False):
        gate.train(training)
        out = gate(x, prev, grid)
        assert out.mask.shape == out.prob.shape == (2, *grid)
        assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}
        assert out.prob.min() >= 0 and out.prob.max() <= 1


def test_pass_gate_deterministic_at_inference_topk_and_threshold():
    x, prev = _pair()
    gate = PassGate(3, 4, embed_dim=16, hidden=32, rate=0.25, min_patches=4).eval()
    a, b = gate(x, prev, (4, 4)), gate(x, prev, (4, 4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.prob, b.prob)
    logit = gate.logits(x, prev, (4, 4))
    ref = gumbel_normalization(logit, noise=False)  # no noise at inference
    assert torch.equal(a.prob, ref)
    # top-k: exactly round(0.25 * 16) = 4 patches per sample, the highest-scoring ones
    assert a.mask.sum((1, 2)).tolist() == [4.0, 4.0]
    for i in range(2):
        kth = ref[i].flatten().sort(descending=True).values[3]
        assert torch.equal(a.mask[i], (ref[i] >= kth).float())
    # the paper's rule: normalised value > threshold
    gate.rule = "threshold"
    assert torch.equal(gate(x, prev, (4, 4)).mask, (ref > 0.5).float())
    gate.threshold = 1.1  # nothing exceeds it: nothing skipped
    assert gate(x, prev, (4, 4)).mask.sum() == 0


def test_pass_gate_topk_needs_a_rate_and_checks_it():
    x, prev = _pair()
    with pytest.raises(RuntimeError, match="no calibrated rate"):
        PassGate(3, 4, embed_dim=8, hidden=8, min_patches=4).eval()(x, prev, (4, 4))
    with pytest.raises(ValueError, match="rate must be in"):
        PassGate(3, 4, rate=1.5)


def test_pass_gate_never_skips_small_grids():
    # min-max over a 1x2 grid maps one patch to 0 and one to 1 whatever the input: the paper's rule would
    # always skip one. Under min_patches the gate does not decide (and does not run).
    x, prev = _pair(h=4, w=8)
    gate = PassGate(3, 4, embed_dim=8, hidden=8, rule="threshold", min_patches=16)
    for training in (True, False):
        out = gate.train(training)(x, prev, (1, 2))
        assert out.mask.sum() == 0 and not out.active
    gate.min_patches = 2
    out = gate.eval()(x, prev, (1, 2))
    assert out.active and out.mask.sum((1, 2)).tolist() == [1.0, 1.0]  # the forced skip min_patches prevents


def test_paper_linear_head_is_tied_to_one_resolution():
    x, prev = _pair(h=16, w=16)
    gate = PassGate(3, 4, embed_dim=8, hidden=16, head="linear", grid=(4, 4), rate=0.5, min_patches=4).eval()
    gate(x, prev, (4, 4))
    x2, prev2 = _pair(h=24, w=16)
    with pytest.raises(ValueError, match="built for a 4x4 patch grid"):
        gate(x2, prev2, (6, 4))
    with pytest.raises(ValueError, match="needs grid"):
        PassGate(3, 4, head="linear")
    # the paper's classifier as the authors build it: pooled features, two Linear layers (4096 hidden by
    # default) with no activation between them (affine), one logit per patch
    g = PassGate(3, 4, embed_dim=8, head="linear", grid=(2, 3))
    lin = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(8, 4096), (4096, 6)]
    assert [type(m).__name__ for m in g.head] == ["AdaptiveAvgPool2d", "Flatten", "Linear", "Linear"]


def test_paper_sized_gate_parameters_match_the_authors_sizes():
    # kimihe/MaskGate defaults: dim 256, depth 4, kernel 9, fc 4096; for a 32-channel conv and patch 8
    # on a 12x7 grid the authors' MaskGate(patch_size=8, patch_num=84, input_channel=32) has
    # 64*256*64 + 256 (embed) + 2*256 (BN) + 4 * (256*81 + 256 + 2*256 + 256*256 + 256 + 2*256)
    # + 256*4096 + 4096 + 4096*84 + 84 parameters.
    from passbench.skip.gates import PASS_PAPER_GATE

    g = PassGate(32, 8, grid=(7, 12), **PASS_PAPER_GATE)
    embed = 64 * 256 * 64 + 256 + 2 * 256
    blocks = 4 * (256 * 81 + 256 + 2 * 256 + 256 * 256 + 256 + 2 * 256)
    head = 256 * 4096 + 4096 + 4096 * 84 + 84
    assert sum(p.numel() for p in g.parameters()) == embed + blocks + head


def test_gumbel_normalization_formula_and_tau_cancels():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5)
    out = gumbel_normalization(x, noise=False)
    xh = x.numpy().reshape(3, -1)
    ref = (xh - xh.min(1, keepdims=True)) / (xh.max(1, keepdims=True) - xh.min(1, keepdims=True))  # Eq. 4
    np.testing.assert_allclose(out.numpy().reshape(3, -1), ref, rtol=1e-6, atol=1e-7)
    # Eq. 4's 1/tau cancels under the min-max: why tau is not a parameter
    for tau in (0.5, 0.7, 5.0):
        np.testing.assert_allclose(gumbel_normalization(x / tau, noise=False).numpy(), out.numpy(), atol=1e-6)
    noisy = gumbel_normalization(x, noise=True)
    assert noisy.amin((1, 2)).eq(0).all() and noisy.amax((1, 2)).eq(1).all()
    assert not torch.equal(noisy, out)
    assert torch.equal(gumbel_normalization(torch.ones(1, 2, 2), noise=False), torch.full((1, 2, 2), 0.5))


def test_keyframe_gate_keys_evenly_and_resets():
    from passbench.skip.gates import KeyframeGate

    x = torch.zeros(1, 2, 8, 8)
    for rate, pattern in [(0.5, [1, 0, 1, 0, 1, 0]), (0.75, [1, 1, 1, 0, 1, 1, 1, 0]), (0.2, [1, 0, 0, 0, 0, 1])]:
        g = KeyframeGate(rate)
        got = [float(g(x, x, (2, 2)).mask.mean()) for _ in pattern]
        assert got == pattern, (rate, got)
        g.reset()
        assert float(g(x, x, (2, 2)).mask.mean()) == pattern[0]
    with pytest.raises(ValueError):
        KeyframeGate(1.5)


def test_topk_ste_gradient_and_counts():
    from passbench.skip.gates import topk_ste

    s = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]], requires_grad=True)
    m = topk_ste(s, 0.5)
    assert m.detach().tolist() == [[[0.0, 1.0], [1.0, 0.0]]]
    (m * torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])).sum().backward()
    assert s.grad.tolist() == [[[1.0, 2.0], [3.0, 4.0]]]  # straight through
    assert topk_ste(s.detach(), 0.0).sum() == 0 and topk_ste(s.detach(), 1.0).sum() == 4


def test_gumbel_noise_distribution():
    # eps = -ln(-ln u) is standard Gumbel: mean = Euler-Mascheroni, var = pi^2 / 6
    from passbench.skip.gates import gumbel_noise

    eps = gumbel_noise((200_000,), torch.zeros(1), torch.Generator().manual_seed(0))
    assert abs(eps.mean().item() - 0.5772) < 0.01
    assert abs(eps.var().item() - math.pi ** 2 / 6) < 0.03


def test_bernoulli_ste_forward_sample_backward_identity():
    p = torch.full((10_000,), 0.3, requires_grad=True)
    m = bernoulli_ste(p)
    assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    assert abs(m.detach().mean().item() - 0.3) < 0.02  # Eq. 5: 1 with probability x
    (m * torch.arange(10_000.0)).sum().backward()
    assert torch.equal(p.grad, torch.arange(10_000.0))  # straight through


@pytest.mark.parametrize("make,param", [
    (lambda: PassGate(3, 4, embed_dim=8, hidden=16, min_patches=4), lambda g: g.head[0].weight),
    (lambda: PassGate(3, 4, embed_dim=8, hidden=16, min_patches=4), lambda g: g.embed[0].weight),
    (lambda: GumbelGate(3, 4, init_bias=0.0), lambda g: g.proj.bias),
    (lambda: GumbelGate(3, 4, init_bias=0.0), lambda g: g.proj.weight),
], ids=["pass-head", "pass-embed", "gumbel-bias", "gumbel-weight"])
def test_training_mask_gradient_is_the_finite_difference_of_the_skip_probability(make, param):
    # The straight-through estimator: the hard training mask's gradient is that of its probability. Oracle: a
    # central finite difference of sum(w * prob) in float64 with the same noise (same seed) on each side, for
    # a few entries of a parameter. A zeroed or reversed STE, or one built on the wrong tensor, fails.
    torch.manual_seed(0)
    gate = make().double().train()
    x, prev = (t.double() for t in _pair())
    w = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def forward():
        torch.manual_seed(7)  # the same Gumbel / logistic noise and Bernoulli draws on every call
        return gate(x, prev, (4, 4))

    out = forward()
    assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}  # forward: a hard decision
    (out.mask * w).sum().backward()
    q = param(gate)
    ste = q.grad.detach().flatten().clone()
    h, fd, n = 1e-6, [], min(3, q.numel())
    for i in range(n):
        with torch.no_grad():
            q.view(-1)[i] += h
            up = float((forward().prob * w).sum())
            q.view(-1)[i] -= 2 * h
            down = float((forward().prob * w).sum())
            q.view(-1)[i] += h
        fd.append((up - down) / (2 * h))
    assert max(abs(v) for v in fd) > 1e-4, fd  # the probability does depend on these entries
    np.testing.assert_allclose(ste[:n].numpy(), fd, rtol=1e-4, atol=1e-8)


def test_norm_gate_input_variant_hand_worked():
    # residual 0.2 on the top-left 4x4 patch only (all channels), 0 elsewhere; partial edge patches
    x = torch.zeros(1, 2, 10, 8)
    prev = x.clone()
    x[:, :, :4, :4] = 0.2
    x[:, 0, 8:, :] = 1.0  # bottom partial patch row (2 real rows): channel 0 only -> mean 0.5
    gate = NormGate(patch_in=4, patch_out=4, threshold=0.1)
    out = gate(x, prev, (3, 2))
    expect = torch.tensor([[[0.2, 0.0], [0.0, 0.0], [0.5, 0.5]]])
    torch.testing.assert_close(out.norm, expect)
    assert torch.equal(out.mask, (expect < 0.1).float())


def test_norm_gate_output_variant_uses_the_conv():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=True)
    x, prev = _pair(1, 2, 8, 8)
    gate = NormGate(patch_in=4, patch_out=4, threshold=0.0, variant="output")
    norm = gate(x, prev, (2, 2), conv=conv).norm
    r = torch.nn.functional.conv2d(x - prev, conv.weight, None, 1, 1).abs()  # W * residual, no bias
    torch.testing.assert_close(norm, r.view(1, 3, 2, 4, 2, 4).mean((1, 3, 5)))


def test_fixed_gate_keep_fraction_and_seed():
    x, prev = _pair(4, 1, 64, 64)
    a = FixedGate(keep=0.25, seed=3)
    m1 = a(x, prev, (16, 16)).mask
    assert abs((1 - m1).mean().item() - 0.25) < 0.05
    a.reset()
    assert torch.equal(a(x, prev, (16, 16)).mask, m1)
    assert FixedGate(keep=1.0)(x, prev, (16, 16)).mask.sum() == 0
    assert FixedGate(keep=0.0)(x, prev, (16, 16)).mask.mean() == 1


def test_gumbel_gate_reads_the_residual_magnitude_so_swapping_frames_changes_nothing():
    # The authors' gate sees |X_t - X_{t-1}|: a change and its opposite must get the same decision. On the
    # signed residual (the earlier gate) prob(x, p) + prob(p, x) == 1 everywhere: every decision flipped.
    torch.manual_seed(0)
    g = GumbelGate(8, 8, init_bias=0.0).eval()
    nn.init.normal_(g.proj.weight, std=0.5)
    x, p = torch.rand(1, 8, 32, 32), torch.rand(1, 8, 32, 32)
    with torch.no_grad():  # centre the logits: half the patches either way
        g.proj.bias -= g.logits(x, p, (4, 4)).median()
        a, b = g(x, p, (4, 4)), g(p, x, (4, 4))
    assert torch.equal(a.prob, b.prob) and torch.equal(a.mask, b.mask)
    assert 0 < float(a.mask.mean()) < 1  # a real mix of decisions, not a constant gate
    assert not torch.allclose(a.prob + b.prob, torch.ones_like(a.prob))
    with torch.no_grad():  # and so does the shared residual the wrapper passes (x - prev or its negative)
        assert torch.equal(g(x, p, (4, 4), diff=p - x).prob, a.prob)


def test_gumbel_gate_max_pools_its_logits_over_the_block():
    # One strongly changed pixel makes its whole patch computed (the authors' MaxPool2d over `structure`
    # blocks); under an average over the 8x8 block the same pixel would be diluted 64-fold.
    g = GumbelGate(1, 8, kernel_size=1, init_bias=-1.0).eval()
    with torch.no_grad():
        g.proj.weight.fill_(1.0)
    x, p = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    x[0, 0, 3, 12] = 4.0  # inside patch (0, 1)
    out = g(x, p, (2, 2))
    # compute logit: max(-1 + |r|) = 3 in patch (0, 1) (skip prob 1 - sigmoid(3)), -1 elsewhere
    torch.testing.assert_close(out.prob[0], 1 - torch.sigmoid(torch.tensor([[-1.0, 3.0], [-1.0, -1.0]])))
    assert out.mask[0].tolist() == [[1.0, 0.0], [1.0, 1.0]]


def test_norm_gate_computes_a_patch_whose_residual_equals_the_threshold():
    # Skip-Conv's norm gate fires (computes) where the norm is not below eps: (sign(norm - eps) + 1) / 2 is
    # 0 only for norm < eps (lib/gates.py); at exact equality it is 0.5, i.e. the patch is partly computed,
    # so a hard rule must compute it. passbench skips strictly below the threshold.
    x = torch.zeros(1, 1, 8, 8)
    prev = x.clone()
    x[..., :4, :4] = 0.25  # patch (0, 0): mean |r| = 0.25 exactly (a binary fraction: no rounding)
    x[..., :4, 4:] = 0.125  # patch (0, 1): below
    x[..., 4:, :4] = 0.5  # patch (1, 0): above
    out = NormGate(patch_in=4, patch_out=4, threshold=0.25)(x, prev, (2, 2))
    assert out.norm[0].tolist() == [[0.25, 0.125], [0.5, 0.0]]
    assert out.mask[0].tolist() == [[0.0, 1.0], [0.0, 1.0]]


@pytest.mark.parametrize("make", [
    lambda: PassGate(3, 4, embed_dim=8, hidden=16, min_patches=4, rate=0.4),
    lambda: PassGate(3, 4, embed_dim=8, hidden=16, min_patches=4, rule="threshold"),
    lambda: GumbelGate(3, 4),
    lambda: NormGate(patch_in=4, patch_out=4, threshold=0.3),
], ids=["pass-topk", "pass-threshold", "gumbel", "norm"])
def test_every_gate_is_deterministic_at_evaluation(make):
    # Noise belongs to training only: two evaluations of the same frames give the same decisions, however
    # the global RNG moved in between (a gate that kept its Gumbel noise at evaluation fails here).
    torch.manual_seed(1)
    gate = make()
    for q in gate.parameters():  # spread the logits so that noise, if any, would reorder them
        nn.init.normal_(q, std=0.5)
    gate.eval()
    x, prev = _pair()
    if isinstance(gate, GumbelGate):  # centre its logits: half the patches either way
        with torch.no_grad():
            gate.proj.bias -= gate.logits(x, prev, (4, 4)).median()
    with torch.no_grad():
        torch.manual_seed(2)
        a = gate(x, prev, (4, 4))
        torch.manual_seed(3)
        torch.rand(100)
        b = gate(x, prev, (4, 4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.prob, b.prob)
    assert 0.0 < float(a.mask.mean()) < 1.0


def test_monotone_gumbel_gate_never_computes_less_where_the_change_grows():
    # monotone=True (default): effective weights |w|, so raising the residual anywhere never lowers a compute
    # logit; the authors' free conv (monotone=False) can (and, trained on one-step pairs, learned to skip
    # where the input changed most: docs in GumbelGate).
    torch.manual_seed(0)
    x, p = torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16)
    bigger = x + (x - p).sign() * torch.rand(1, 4, 16, 16)  # |x' - p| >= |x - p| everywhere
    for monotone in (True, False):
        g = GumbelGate(4, 4, monotone=monotone).eval()
        with torch.no_grad():
            g.proj.weight.normal_(std=0.5)
            a, b = g.logits(x, p, (4, 4)), g.logits(bigger, p, (4, 4))
            assert bool((b >= a).all()) if monotone else True
            g.proj.weight.copy_(-g.proj.weight.abs())  # every weight negative, as wh.0 ended up when trained free
            a, b = g.logits(x, p, (4, 4)), g.logits(bigger, p, (4, 4))
        assert bool((b >= a).all()) if monotone else bool((b < a).all())


@pytest.mark.parametrize("variant", ["input", "output"])
def test_norm_gate_decides_the_same_when_the_two_frames_swap(variant):
    # |X_t - X_{t-1}| (input) and |W * (X_t - X_{t-1})| (output, no bias) are symmetric in the two frames: a
    # change and its opposite are skipped or computed alike. A signed residual, or a bias in the output
    # variant, breaks the symmetry.
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    nn.init.constant_(conv.bias, 0.7)
    x, prev = _pair()
    gate = NormGate(patch_in=4, patch_out=4, threshold=0.0, variant=variant)
    a = gate(x, prev, (4, 4), conv=conv)
    gate.threshold = float(a.norm.detach().median())  # half the patches either way
    a, b = gate(x, prev, (4, 4), conv=conv), gate(prev, x, (4, 4), conv=conv)
    assert torch.equal(a.norm, b.norm) and torch.equal(a.mask, b.mask)
    assert 0.0 < float(a.mask.mean()) < 1.0
