"""PASS gates at a lower resolution (``PassGate(pool=s)``, a passbench variant): the function computed, the fast
engine, stacking, MAC counting and bad input.

Oracle: the paper's full-resolution gate (``pool=1``, its reference ops) with the embedding weight made constant
over each s x s block of a patch; that gate and the pooled one compute the same function by construction of
average pooling, so any other pooling (max, a shifted window, pooling after the embedding) differs from it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench.skip import collect_stats, make_skippable, reset, skippable_layers
from passbench.skip import fastgate
from passbench.skip.gates import PassGate, fit_grid
from tests.test_fastgate import _gate as fastgate_gate, _pair as fastgate_pair
from tests.test_pass_p import _HAVE_DATA


def _gate(cin=6, p=8, pool=2, seed=0, **kw) -> PassGate:
    """test_fastgate's eval-mode gate (non-trivial BatchNorm statistics), pooled by ``pool``."""
    return fastgate_gate(cin, p, seed, pool=pool, **kw)


def _pair(cin=6, h=37, w=46, seed=1):
    return fastgate_pair(cin, h, w, seed)


@pytest.mark.parametrize("pool", [2, 4, 8])
@torch.no_grad()
def test_pooled_gate_is_the_full_resolution_gate_with_block_constant_embedding(pool):
    low = _gate(pool=pool)
    full = PassGate(6, 8, embed_dim=8, hidden=16, min_patches=4, rate=0.5).eval()
    sd = low.state_dict()
    w = sd["embed.0.weight"]  # (C, 2Cin, 8 / pool, 8 / pool)
    sd["embed.0.weight"] = w.repeat_interleave(pool, 2).repeat_interleave(pool, 3) / pool ** 2
    full.load_state_dict(sd)
    x, prev = _pair()  # 37 x 46: a partial edge patch, zero-padded by fit_grid before pooling
    grid = (5, 6)
    torch.testing.assert_close(low.logits(x, prev, grid), full.logits(x, prev, grid), rtol=1e-5, atol=1e-5)
    # a weight that varies inside a block is what the pooled gate cannot represent: the functions differ
    sd["embed.0.weight"] = torch.randn_like(sd["embed.0.weight"])
    full.load_state_dict(sd)
    assert (low.logits(x, prev, grid) - full.logits(x, prev, grid)).abs().max() > 1e-2


@torch.no_grad()
def test_pooled_gates_fast_engine_equals_reference_alone_and_stacked():
    gates = [_gate(seed=s) for s in range(3)]
    x, prev = _pair()
    grid = (5, 6)
    want = torch.stack([g.logits(x, prev, grid) for g in gates], 1)
    got = fastgate.GateStack(gates).logits(fit_grid(x, 8, grid), fit_grid(prev, 8, grid), "fast")
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g in gates:
        ref = g(x, prev, grid, engine="eager")
        out = g(x, prev, grid, engine="fast")
        assert torch.equal(out.mask, ref.mask)
    # a pooled gate and a full-resolution one of the same patch size are different architectures: never stacked
    assert fastgate.signature(gates[0]) != fastgate.signature(_gate(pool=1))


class _Heads(nn.Module):
    """A trunk conv and two heads reading its output (stacked gates), at stride 1."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x):
        f = torch.relu(self.trunk(x))
        return self.a(f) + self.b(f)


def _masks(model, frames, engine_env, monkeypatch):
    monkeypatch.setenv(fastgate.ENV, engine_env)
    reset(model)
    out = []
    with torch.inference_mode():
        for x in frames:
            model(x)
            out.append({n: m.last.mask.clone() for n, m in skippable_layers(model) if m.last is not None})
    return out


def test_pooled_gates_in_a_model_decide_as_the_reference_and_book_fewer_macs(monkeypatch):
    torch.manual_seed(0)
    net = _Heads().eval()
    kw = dict(patch_size=8, embed_dim=8, hidden=16, min_patches=4, rates=0.4)
    pooled = make_skippable(net, "pass_p", pool=2, **kw).eval()
    g = torch.Generator().manual_seed(2)
    base = torch.rand(1, 3, 40, 48, generator=g)
    frames = [base + 0.3 * torch.rand(1, 3, 40, 48, generator=g) * (torch.rand(1, 1, 40, 48, generator=g) > 0.7)
              for _ in range(4)]
    ref = _masks(pooled, frames, "eager", monkeypatch)
    fast = _masks(pooled, frames, "fast", monkeypatch)
    assert len(ref) == 4 and all(ref[t].keys() == fast[t].keys() for t in range(4))
    for t in range(1, 4):
        assert all(torch.equal(ref[t][n], fast[t][n]) for n in ref[t]), t
    # gate MACs: the embedding (2 Cin x 8 x 8 inputs -> C per patch, 5 x 6 patches) costs a quarter at pool 2;
    # the mixer and head are the same on the same grid
    full = make_skippable(_Heads().eval(), "pass_p", **kw).eval()
    _masks(full, frames, "fast", monkeypatch)
    n_gates, patches, cin, c = 3, 5 * 6, 8, 8
    gates_full, gates_pooled = collect_stats(full)["gate_macs"], collect_stats(pooled)["gate_macs"]
    frames_gated = 3  # the first frame of a stream runs dense, no gate
    trunk_cin = 3
    emb = lambda ci: patches * 2 * ci * 8 * 8 * c  # noqa: E731 - full-resolution embedding MACs of one call
    saved = frames_gated * (emb(trunk_cin) + (n_gates - 1) * emb(cin)) * 3 // 4
    assert gates_full - gates_pooled == saved, (gates_full, gates_pooled, saved)


def test_pool_must_divide_the_patch():
    with pytest.raises(ValueError, match="pool must be a positive integer dividing the input patch size 8"):
        PassGate(6, 8, pool=3)
    with pytest.raises(ValueError, match="pool"):
        PassGate(6, 8, pool=0)


@pytest.mark.parametrize("pool", [2, 4])
def test_pooled_gates_gradient_is_the_full_resolution_gradient_summed_over_each_block(pool):
    # Training runs the reference ops; the embedding weight w of the pooled gate stands for the full-resolution
    # weight W = repeat(w) / s^2, so dL/dw is dL/dW summed over each s x s block, over s^2 (BatchNorm in training
    # mode: the same batch statistics, the features being equal).
    low = _gate(pool=pool).train()
    full = PassGate(6, 8, embed_dim=8, hidden=16, min_patches=4, rate=0.5).train()
    sd = low.state_dict()
    sd["embed.0.weight"] = sd["embed.0.weight"].repeat_interleave(pool, 2).repeat_interleave(pool, 3) / pool ** 2
    full.load_state_dict(sd)
    x, prev = _pair()
    t = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(5))
    (low.logits(x, prev, (5, 6)) * t).sum().backward()
    (full.logits(x, prev, (5, 6)) * t).sum().backward()
    gw = full.embed[0].weight.grad
    want = gw.view(*gw.shape[:2], 8 // pool, pool, 8 // pool, pool).sum((3, 5)) / pool ** 2
    torch.testing.assert_close(low.embed[0].weight.grad, want, rtol=1e-4, atol=1e-5)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(low.head[2].weight.grad, full.head[2].weight.grad, rtol=1e-4, atol=1e-6)


def test_every_pooled_gate_of_the_light_model_gets_a_triplet_gradient():
    from tests.test_pass_p import LIGHT_LAYERS, _gated_model, _triplet_grads

    model, batch = _gated_model("fairmot_mbv2", LIGHT_LAYERS, (192, 128), pool=2)
    assert all(m.gate.pool == 2 for _, m in skippable_layers(model))
    grads = _triplet_grads(model, batch, ("hm", "wh", "reg", "id"))
    assert len(grads) == 7 and all(v > 0 for v in grads.values()), grads


@pytest.mark.slow
@pytest.mark.skipif(not _HAVE_DATA, reason="sample data (../shared/data) not present")
def test_every_committed_half_resolution_gate_learns_from_the_triplet():
    # weights/everyconv/timm-resnet18/pass_p_half.pt with its own objective on 8 calibration batches: every one of
    # the 28 gates gets a triplet gradient of the rate term's size or larger (measured 1.13-22.3; the
    # full-resolution pass_p.pt 0.94-11, docs/logs/everyconv/gate_signal_half.txt), and every head's negative is
    # farther than its positive (gaps 0.70-0.85): pooling the gate's input did not cut a head off its signal.
    from passbench.train.common import make_cfg, read_final
    from passbench.train.pass_p import gate_signal

    w = "weights/everyconv/timm-resnet18/pass_p_half.pt"
    fin = read_final(w)
    assert fin["config"]["skip_params"]["pool"] == 2
    c = make_cfg("pass_p", {**{k: v for k, v in fin["config"].items() if k not in ("stage", "init")},
                            "init": w, "threads": 1})
    torch.manual_seed(0)
    res = gate_signal(c, batches=8)
    assert len(res["gates"]) == 28, sorted(res["gates"])
    weak = {n: round(g["ratio"], 2) for n, g in res["gates"].items() if not g["ratio"] >= 0.6}
    assert not weak, weak
    gaps = {h: d["d_n"] - d["d_p"] for h, d in res["heads"].items()}
    assert all(g > 0.5 for g in gaps.values()), gaps
