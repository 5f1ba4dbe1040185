"""PASS gate inference engine (``skip.fastgate``) against the reference ops of ``PassGate``.

Oracles: the eager gate itself (its ``logits`` and its ``forward`` with ``engine="eager"``), and the light
model run with ``set_gate_engine(model, "eager")`` on real frames.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench.skip import collect_stats, make_skippable, reset, set_gate_engine, skippable_layers
from passbench.skip import fastgate
from passbench.skip.gates import PassGate, decide_stacked, gumbel_normalization, topk_ste

CL = torch.channels_last


def _gate(cin=6, p=4, seed=0, **kw) -> PassGate:
    """An eval-mode gate with non-trivial BatchNorm statistics (so that folding them matters)."""
    torch.manual_seed(seed)
    g = PassGate(cin, p, embed_dim=8, hidden=16, min_patches=4, **{"rate": 0.5, **kw})
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return g.eval()


def _pair(cin=6, h=24, w=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, cin, h, w, generator=g).contiguous(memory_format=CL),
            torch.randn(2, cin, h, w, generator=g).contiguous(memory_format=CL))


@pytest.mark.parametrize("hw,grid", [((24, 32), (6, 8)), ((23, 30), (6, 8))], ids=["whole", "partial-edge"])
@torch.no_grad()
def test_stacked_logits_equal_each_gates_logits(hw, grid):
    gates = [_gate(seed=s) for s in range(3)]
    x, prev = _pair(h=hw[0], w=hw[1])
    want = torch.stack([g.logits(x, prev, grid) for g in gates], 1)  # (B, 3, Hp, Wp)
    from passbench.skip.gates import fit_grid

    xs, ps = fit_grid(x, 4, grid), fit_grid(prev, 4, grid)
    got = fastgate.GateStack(gates).logits(xs, ps, "fast")
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # each gate alone gives its own channel of the stack (the stack couples nothing)
    for i, g in enumerate(gates):
        torch.testing.assert_close(fastgate.GateStack([g]).logits(xs, ps, "fast")[:, 0], want[:, i], rtol=1e-5,
                                   atol=1e-5)


@torch.no_grad()
def test_decide_stacked_is_the_forward_rule_bit_for_bit():
    gates = [_gate(seed=0, rate=0.25), _gate(seed=1, rate=0.5), _gate(seed=2, rule="threshold", threshold=0.4)]
    g = torch.Generator().manual_seed(3)
    logit = torch.randn(2, 3, 5, 6, generator=g)
    logit[1, 0] = 0.7  # a constant map: every score tied (min-max gives 0.5 everywhere)
    logit[0, 1, :2] = logit[0, 1, 2:4]  # exact ties between rows
    outs = decide_stacked(gates, logit)
    for i, gate in enumerate(gates):
        prob = gumbel_normalization(logit[:, i], noise=False)
        mask = topk_ste(prob, gate.rate) if gate.rule == "topk" else (prob > gate.threshold).float()
        assert torch.equal(outs[i].prob, prob)
        assert torch.equal(outs[i].mask, mask), i
    # one k for all gates (the single-topk-call branch) gives the same as gate by gate
    same = [_gate(seed=s, rate=0.5) for s in range(3)]
    for i, o in enumerate(decide_stacked(same, logit)):
        assert torch.equal(o.mask, topk_ste(gumbel_normalization(logit[:, i], noise=False), 0.5))
    # NaN / inf logits: whatever the reference rule makes of them, the same
    bad = torch.randn(2, 1, 4, 4, generator=g)
    bad[0, 0, 0, 0], bad[1, 0] = float("nan"), float("inf")
    ref_prob = gumbel_normalization(bad[:, 0], noise=False)
    got = decide_stacked([same[0]], bad)[0]
    assert torch.equal(got.prob.isnan(), ref_prob.isnan())
    assert torch.equal(got.mask.nan_to_num(7.0), topk_ste(ref_prob, 0.5).nan_to_num(7.0))


@torch.no_grad()
def test_gate_forward_fast_equals_eager_and_follows_weight_changes():
    gate = _gate()
    x, prev = _pair()
    ref = gate(x, prev, (6, 8), engine="eager")
    for eng in ("fast", None):  # None: the default engine (fast unless PASSBENCH_GATE_ENGINE says otherwise)
        out = gate(x, prev, (6, 8), engine=eng)
        assert torch.equal(out.mask, ref.mask)
        torch.testing.assert_close(out.prob, ref.prob, rtol=1e-5, atol=1e-5)
    gate.head[2].bias.add_(1.0)  # in place: the folded parameters must be rebuilt
    gate.embed[2].running_mean.mul_(0.5)
    torch.testing.assert_close(gate.fast_decide(x, prev, (6, 8), "fast").prob, gate(x, prev, (6, 8), engine="eager").prob,
                               rtol=1e-5, atol=1e-5)
    gate.head[0].weight = nn.Parameter(torch.randn_like(gate.head[0].weight))  # replaced
    torch.testing.assert_close(gate.fast_decide(x, prev, (6, 8), "fast").prob, gate(x, prev, (6, 8), engine="eager").prob,
                               rtol=1e-5, atol=1e-5)


def test_training_and_gradients_use_the_reference_ops():
    gate = _gate()
    x, prev = _pair()
    assert gate.inference_engine(x, prev) is None  # eval, grad enabled, parameters require grad
    with torch.no_grad():
        assert gate.inference_engine(x, prev) == fastgate.default_engine()
        assert gate.inference_engine(x, prev, "eager") is None
        gate.train()
        assert gate.inference_engine(x, prev) is None
    lin = PassGate(6, 4, embed_dim=8, head="linear", grid=(6, 8), rate=0.5).eval()
    with torch.no_grad():
        assert lin.inference_engine(x, prev) is None  # the paper's linear head: reference ops only


def test_engine_names_are_checked(monkeypatch):
    monkeypatch.setenv(fastgate.ENV, "turbo")
    with pytest.raises(ValueError, match="PASSBENCH_GATE_ENGINE"):
        fastgate.default_engine()
    model = make_skippable(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)), "pass_p", patch_size=4, embed_dim=8,
                           hidden=8, rates=0.5)
    with pytest.raises(ValueError, match="engine must be one of"):
        set_gate_engine(model, "turbo")
    with pytest.raises(ValueError, match="no PASS-gated layer"):
        set_gate_engine(make_skippable(nn.Sequential(nn.Conv2d(3, 4, 3)), "fixed"), "fast")


class _Heads(nn.Module):
    """A trunk conv and three heads reading its output (the light model's head pattern)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b, self.c = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 6, 1)

    def forward(self, x):
        f = torch.relu(self.trunk(x))
        return self.a(f) + self.b(f), self.c(f)


def _run(model, frames, engine):
    set_gate_engine(model, engine)
    reset(model)
    outs, masks = [], []
    with torch.inference_mode():
        for x in frames:
            y = model(x)
            outs.append([o.clone() for o in (y.values() if isinstance(y, dict) else y)])
            masks.append({n: (m.last.mask.clone() if m.last is not None else None) for n, m in skippable_layers(model)})
    return outs, masks


def _same_masks(masks, ref_masks) -> int:
    """Assert equal masks per frame and layer; returns how many were compared."""
    n = 0
    for m1, m2 in zip(masks, ref_masks, strict=True):
        for name in m2:
            assert (m1[name] is None) == (m2[name] is None), name
            if m1[name] is not None:
                assert torch.equal(m1[name], m2[name]), name
                n += 1
    return n


def test_stacked_heads_in_a_model_equal_the_reference_and_stack():
    torch.manual_seed(0)
    model = make_skippable(_Heads(), "pass_p", patch_size=4, embed_dim=8, hidden=8, rates=0.5, min_patches=4,
                           execution="sparse").eval()
    g = torch.Generator().manual_seed(0)
    frames = [torch.randn(1, 3, 16, 20, generator=g) for _ in range(5)]
    ref_out, ref_masks = _run(model, frames, "eager")
    stacked = []
    groups = skippable_layers(model)[0][1].clock.groups
    orig = groups.members
    groups.members = lambda layer, grid: stacked.append((layer.name, orig(layer, grid))) or stacked[-1][1]
    out, masks = _run(model, frames, "fast")
    assert _same_masks(masks, ref_masks) >= 3 * 4
    for o1, o2 in zip(out, ref_out):
        for a, b in zip(o1, o2):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # heads a, b, c read one tensor: from the 3rd frame on (the 2nd is counted eagerly) they run as one stack
    hits = [(n, m) for n, m in stacked if m is not None]
    assert hits and {m.name for m in hits[0][1]} == {"a", "b", "c"}
    assert all(n == "a" for n, _ in hits)  # computed once per frame, at the first head; b and c take the result
    # gate MACs are counted on the reference ops: identical records whichever engine ran
    set_gate_engine(model, "eager")
    reset(model)
    with torch.inference_mode():
        for x in frames:
            model(x)
    eager_gate_macs = collect_stats(model)["gate_macs"]
    set_gate_engine(model, "fast")
    reset(model)
    with torch.inference_mode():
        for x in frames:
            model(x)
    assert collect_stats(model)["gate_macs"] == eager_gate_macs > 0


def test_stacking_is_not_used_when_a_members_state_was_replaced():
    from passbench.skip import set_stream_states, stream_states
    from passbench.skip.state import StreamState

    torch.manual_seed(0)
    model = make_skippable(_Heads(), "pass_p", patch_size=4, embed_dim=8, hidden=8, rates=0.5, min_patches=4,
                           layers=["a", "b"], execution="sparse").eval()
    g = torch.Generator().manual_seed(1)
    frames = [torch.randn(1, 3, 16, 20, generator=g) for _ in range(4)]
    layers = [m for _, m in skippable_layers(model)]
    groups = layers[0].clock.groups
    asked = []
    orig = groups.members
    groups.members = lambda layer, grid: asked.append(orig(layer, grid)) or asked[-1]

    def primed(shift: float) -> list:
        """Fresh copies of the primed states, b's previous input shifted (no longer a copy of a's)."""
        return [StreamState(st.prev_in.clone() + (shift if i == 1 else 0.0), st.prev_out.clone(), st.t)
                for i, st in enumerate(saved)]

    with torch.inference_mode():
        reset(model)
        for x in frames[:3]:
            model(x)
        saved = [StreamState(st.prev_in.clone(), st.prev_out.clone(), st.t) for st in stream_states(model)]
        masks = {}
        for eng in ("fast", "eager"):
            set_gate_engine(model, eng)
            set_stream_states(model, primed(1.0))
            asked.clear()
            model(frames[3])
            masks[eng] = [m.last.mask.clone() for m in layers]
            if eng == "fast":
                asked_fast = list(asked)
    assert len(asked_fast) == 2 and all(a is None for a in asked_fast)  # replaced states: each gate alone
    assert all(torch.equal(a, b) for a, b in zip(masks["fast"], masks["eager"]))


def _light_frames(n: int):
    from passbench.paths import resolve_data_root
    from passbench.tracking.letterbox import letterbox

    try:
        root = resolve_data_root(None)
    except FileNotFoundError:
        pytest.skip("sample data (../shared/data) not present")
    seq_dir = root / "MOT15" / "train" / "PETS09-S2L1"
    if not seq_dir.is_dir():
        pytest.skip(f"{seq_dir} not present")
    from passbench.datasets.mot import load_sequence

    seq = load_sequence(str(seq_dir))
    return [letterbox(rgb, (384, 224))[0].unsqueeze(0).contiguous(memory_format=CL) for _, rgb in seq.frames(1, n + 1)]


@pytest.mark.parametrize("rule", ["topk", "threshold"])
def test_light_model_masks_identical_on_real_frames(rule):
    """The light model (sample backbone weights) with PASS gates on the sample's gated layers: every mask of
    every layer and frame is identical between the reference ops and the fast engine (stacked heads)."""
    from pathlib import Path

    from passbench.models import build_model
    from passbench.skip import fold_batchnorm

    weights = Path(__file__).resolve().parent.parent / "weights" / "sample" / "task.pt"
    if not weights.is_file():
        pytest.skip(f"{weights} not present")
    frames = _light_frames(6)
    torch.set_num_threads(2)
    model = build_model("fairmot_mbv2", pretrained=False).eval()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["model"])
    torch.manual_seed(0)
    params = dict(rates=0.5) if rule == "topk" else dict(rule="threshold", threshold=0.5)
    model = make_skippable(model, "pass_p", patch_size=8, layers=["neck.*", "hm.0", "wh.0", "reg.0", "id.0", "id.2"],
                           embed_dim=16, hidden=64, execution="sparse", **params).eval()
    fold_batchnorm(model)
    model = model.to(memory_format=CL)
    ref_out, ref_masks = _run(model, frames, "eager")
    out, masks = _run(model, frames, "fast")
    assert _same_masks(masks, ref_masks) >= 9 * 4  # nine layers gate on these grids (the others are under min_patches), frames 1..5
    for o1, o2 in zip(out, ref_out):
        for a, b in zip(o1, o2):
            assert torch.equal(a, b)


@pytest.mark.slow
@torch.no_grad()
def test_compiled_engine_equals_fast():
    """torch.compile (inductor) of the stacked gate: ~30-60 s to compile on 2 cores (cached on disk after)."""
    gates = [_gate(seed=s) for s in range(2)]
    x, prev = _pair()
    from passbench.skip.gates import fit_grid

    xs, ps = fit_grid(x, 4, (6, 8)), fit_grid(prev, 4, (6, 8))
    st = fastgate.GateStack(gates)
    torch.testing.assert_close(st.logits(xs, ps, "compiled"), st.logits(xs, ps, "fast"), rtol=1e-5, atol=1e-5)
    assert not fastgate._COMPILE_FAILED


@pytest.mark.slow
@torch.no_grad()
def test_compiled_engine_compiles_past_dynamos_recompile_limit(monkeypatch):
    """A model gated on every conv has more gate shapes than Dynamo's recompile limit (8 by default): with the
    limit at 1 here, a second shape must still compile (not fall back to eager with a warning)."""
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    monkeypatch.setattr(fastgate, "_COMPILE_FAILED", [])
    torch._dynamo.reset()
    from passbench.skip.gates import fit_grid

    for cin in (5, 7):
        x, prev = _pair(cin=cin)
        xs, ps = fit_grid(x, 4, (6, 8)), fit_grid(prev, 4, (6, 8))
        st = fastgate.GateStack([_gate(cin=cin)])
        torch.testing.assert_close(st.logits(xs, ps, "compiled"), st.logits(xs, ps, "fast"), rtol=1e-5, atol=1e-5)
    assert not fastgate._COMPILE_FAILED, fastgate._COMPILE_FAILED
