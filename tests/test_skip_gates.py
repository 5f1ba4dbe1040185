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
    assert set(GATES.names()) >= {"pass", "norm", "gumbel", "fixed"}
    assert set(METHODS.names()) >= {"dense", "pass", "pass_p", "pass_f", "skipconv", "skipconv_norm",
                                    "skipconv_gumbel", "fixed"}
    with pytest.raises(KeyError, match="did you mean"):
        METHODS.get("skipcon")


@pytest.mark.parametrize("head", ["patch", "linear"])
@pytest.mark.parametrize("hw,grid", [((16, 16), (4, 4)), ((14, 10), (4, 3))])
def test_pass_gate_shapes_and_ranges(head, hw, grid):
    x, prev = _pair(h=hw[0], w=hw[1])
    gate = PassGate(3, patch_in=4, embed_dim=16, depth=2, hidden=32, head=head,
                    grid=grid if head == "linear" else None)
    for training in (True, False):
        gate.train(training)
        out = gate(x, prev, grid)
        assert out.mask.shape == out.prob.shape == (2, *grid)
        assert set(out.mask.detach().unique().tolist()) <= {0.0, 1.0}
        assert out.prob.min() >= 0 and out.prob.max() <= 1


def test_pass_gate_deterministic_at_inference():
    x, prev = _pair()
    gate = PassGate(3, 4, embed_dim=16, hidden=32).eval()
    a, b = gate(x, prev, (4, 4)), gate(x, prev, (4, 4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.prob, b.prob)
    # inference = threshold on the normalised value, no noise
    logit = gate.logits(x, prev, (4, 4))
    ref = gumbel_normalization(logit, gate.tau, noise=False)
    assert torch.equal(a.prob, ref)
    assert torch.equal(a.mask, (ref > 0.5).float())
    gate.threshold = 1.1  # nothing exceeds it: nothing skipped
    assert gate(x, prev, (4, 4)).mask.sum() == 0


def test_paper_linear_head_is_tied_to_one_resolution():
    x, prev = _pair(h=16, w=16)
    gate = PassGate(3, 4, embed_dim=8, hidden=16, head="linear", grid=(4, 4)).eval()
    gate(x, prev, (4, 4))
    x2, prev2 = _pair(h=24, w=16)
    with pytest.raises(ValueError, match="built for a 4x4 patch grid"):
        gate(x2, prev2, (6, 4))
    with pytest.raises(ValueError, match="needs grid"):
        PassGate(3, 4, head="linear")
    # the paper's classifier: two Linear layers, 4096 hidden by default, on C * Hp * Wp
    lin = [m for m in PassGate(3, 4, embed_dim=8, head="linear", grid=(2, 3)).modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(8 * 6, 4096), (4096, 6)]


def test_gumbel_normalization_formula():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5)
    out = gumbel_normalization(x, tau=0.6, noise=False)
    xh = (x / 0.6).numpy().reshape(3, -1)
    ref = (xh - xh.min(1, keepdims=True)) / (xh.max(1, keepdims=True) - xh.min(1, keepdims=True))  # Eq. 4
    np.testing.assert_allclose(out.numpy().reshape(3, -1), ref, rtol=1e-6, atol=1e-7)
    noisy = gumbel_normalization(x, tau=0.6, noise=True)
    assert noisy.amin((1, 2)).eq(0).all() and noisy.amax((1, 2)).eq(1).all()
    assert not torch.equal(noisy, out)
    assert torch.equal(gumbel_normalization(torch.ones(1, 2, 2), noise=False), torch.full((1, 2, 2), 0.5))
    with pytest.raises(ValueError):
        gumbel_normalization(x, tau=0.0)


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


def test_gradients_reach_pass_and_gumbel_gate_parameters():
    x, prev = _pair()
    for gate in (PassGate(3, 4, embed_dim=8, hidden=16).train(), GumbelGate(3, 4).train()):
        out = gate(x, prev, (4, 4))
        (out.mask * torch.randn(out.mask.shape)).sum().backward()
        grads = [q.grad for q in gate.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


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
