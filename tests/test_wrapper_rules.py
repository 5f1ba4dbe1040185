"""``SkipConv2d``'s documented rules, each against an oracle outside the wrapper: the dense conv
(``F.conv2d``), masks and patch grids written out by hand, the FLOPs of the PASS gate's reference ops
worked out by hand, the rules stated in ``skip.wrapper``'s docstrings and comments.

Pinned here: ``reset`` (counters unless ``stats=False``, the gate's own reset, the next frame gated
again), ``set_state`` (the next frame decides from the adopted state), ``extra_repr``, the mid-stream
checks and their messages, the ``complement`` mask mode, the residual ``X_t - X_{t-1}`` computed once
and handed to the norm gate, the layer's conv handed to the gate, the gate's MACs (reference ops,
once per shape, whole ints, nothing printed), PASS gate stacking (one computation, each gate's own
decisions), reference ``"computed"`` (the input each patch was last computed from, rows and columns
beyond the patch grid always fresh), the reference path whenever gradients are wanted, the state's
buffers (reused without autograd; the caller's tensors never written into), the counters of every
path (``LayerStats`` against sums worked out by hand), ``SelectSTE`` (the ``mask < 0.5`` rule, the
blend's gradients), the constructor's checks and defaults, and the loading of dense checkpoints.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from devices import DEVICES
from torch import nn

from passbench import skip
from passbench.skip import SkipConv2d, fastgate
from passbench.skip.gates import FixedGate, GumbelGate, NormGate, PassGate
from passbench.skip.state import LayerStats, StreamState
from passbench.skip.wrapper import SelectSTE


def _frames(n, c=4, h=16, w=16, b=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, h, w, generator=g, dtype=dtype) for _ in range(n)]


def _conv(cin=4, cout=6, k=3, seed=0, **kw):
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, **{"padding": k // 2, **kw})


def _layer(gate, conv=None, **kw):
    """One wrapped conv used on its own (no model, no forward clock), in eval mode."""
    return SkipConv2d(conv if conv is not None else _conv(), gate, **{"patch_size": 4, **kw}).eval()


def _pixel_mask(patch_mask, p, h, w):
    """(B, Hp, Wp) patch mask -> (B, 1, h, w): patch (i, j) covers rows [i p, (i + 1) p), cols [j p, (j + 1) p)."""
    b, hp, wp = patch_mask.shape
    out = torch.zeros(b, 1, h, w, dtype=patch_mask.dtype)
    for i in range(hp):
        for j in range(wp):
            out[:, 0, i * p:(i + 1) * p, j * p:(j + 1) * p] = patch_mask[:, i, j, None, None]
    return out


# ------------------------------------------------------------------------------------------------
# reset, set_state, extra_repr


@torch.no_grad()
def test_layer_reset_zeroes_counters_by_default_and_keeps_them_when_stats_false():
    layer = _layer(FixedGate(keep=0.5, seed=1), execution="reference")
    for x in _frames(3):
        layer(x)
    assert layer.stats.frames == 3 and layer.stats.gated_frames == 2
    layer.reset(stats=False)
    assert layer.state.prev_in is None and layer.stats.frames == 3
    layer.reset()  # "Forget the stream state (and the counters unless stats=False)"
    assert layer.stats == LayerStats()


@torch.no_grad()
def test_reset_restarts_a_seeded_gate_so_a_new_stream_repeats_its_masks():
    # FixedGate draws the next mask of its generator per call; reset() resets stateful gates, so the
    # second stream sees the first stream's masks again.
    layer = _layer(FixedGate(keep=0.5, seed=3), execution="reference")
    masks = []
    for _ in range(2):
        layer.reset()
        run = []
        for x in _frames(4):
            layer(x)
            if layer.last is not None:
                run.append(layer.last.mask.clone())
        masks.append(run)
    assert not torch.equal(masks[0][0], masks[0][1])  # the gate does draw new masks per call
    for a, b in zip(*masks):
        assert torch.equal(a, b)


@pytest.mark.parametrize("execution", ["sparse", "auto"])
@torch.no_grad()
def test_frame_after_reset_is_gated_from_the_new_stream(execution):
    # keep = 0: every gated patch skips, so a gated frame returns the previous output exactly.
    conv = _conv()
    layer = _layer(FixedGate(keep=0.0), conv, execution=execution)
    for x in _frames(2, seed=1):
        layer(x)
    layer.reset()
    x0, x1 = _frames(2, seed=2)
    y0 = layer(x0)
    torch.testing.assert_close(y0, F.conv2d(x0, conv.weight, conv.bias, padding=1))
    y1 = layer(x1)
    assert torch.equal(y1, y0) and layer.last is not None and layer.last_path != "dense"
    assert layer.stats.gated_frames == 1


@torch.no_grad()
def test_set_state_makes_the_next_frame_decide_from_the_adopted_state():
    conv = _conv()
    layer = _layer(FixedGate(keep=0.0), conv, execution="sparse")
    for x in _frames(2, seed=1):
        layer(x)
    p, x = _frames(2, seed=5)
    q = F.conv2d(p, conv.weight, conv.bias, padding=1)
    want = q.clone()
    layer.set_state(StreamState(p, q, 1))
    y = layer(x)  # every patch skipped: the adopted previous output
    assert torch.equal(y, want) and layer.last_path == "sparse"
    assert layer.state.t == 2


@torch.no_grad()
def test_set_state_never_writes_into_the_adopted_tensors():
    conv = _conv()
    layer = _layer(NormGate(4, 4, threshold=0.5), conv, execution="reference")
    p, x = _frames(2, seed=5)
    q = F.conv2d(p, conv.weight, conv.bias, padding=1)
    p0, q0 = p.clone(), q.clone()
    layer.set_state(StreamState(p, q, 1))
    layer(x)
    assert torch.equal(p, p0) and torch.equal(q, q0)


def test_extra_repr_names_the_gate_class_and_settings():
    a = SkipConv2d(_conv(), FixedGate(), patch_size=4, execution="sparse", refresh_every=3, reference="computed")
    assert a.extra_repr() == ("patch=4, gate=FixedGate, residual=False, execution=sparse, refresh_every=3, "
                              "reference=computed")
    b = SkipConv2d(_conv(), None, residual=True)
    assert b.extra_repr() == ("patch=8, gate=None, residual=True, execution=auto, refresh_every=None, "
                              "reference=previous")


def test_bare_layer_takes_the_documented_defaults():
    layer = SkipConv2d(_conv(), FixedGate())
    assert layer.extra_repr() == ("patch=8, gate=FixedGate, residual=False, execution=auto, refresh_every=None, "
                                  "reference=previous")
    assert layer.name == "" and layer.mask_mode == "normal"


class _OwnForward(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) * 2.0


@pytest.mark.parametrize("make,msg", [
    (lambda: SkipConv2d(_conv(), None, execution="fast", name="head"),
     r"SkipConv2d\(head\): execution must be one of \('reference', 'sparse', 'auto'\), got 'fast'"),
    (lambda: SkipConv2d(_conv(padding_mode="reflect"), None, name="head"),
     r"SkipConv2d\(head\): only zero padding is supported, got padding_mode='reflect'"),
    (lambda: SkipConv2d(_OwnForward(4, 6, 3), None, name="head"),
     r"SkipConv2d\(head\): _OwnForward is a Conv2d subclass with its own forward; the sparse path would compute a "
     r"plain conv with its weights instead"),
    (lambda: SkipConv2d(nn.Conv2d(4, 6, 4, padding="same"), None, name="head"),
     r"SkipConv2d\(head\): padding='same' with kernel \(4, 4\)"),
    (lambda: SkipConv2d(_conv(), None, refresh_every=0, name="head"),
     r"SkipConv2d\(head\): refresh_every must be >= 1 or None, got 0"),
    (lambda: SkipConv2d(_conv(), None, reference="last", name="head"),
     r"SkipConv2d\(head\): reference must be 'previous' or 'computed', got 'last'"),
], ids=["execution", "padding_mode", "own_forward", "same_asymmetric", "refresh_every", "reference"])
def test_constructor_refusals_name_the_layer_and_the_value(make, msg):
    with pytest.raises(ValueError, match=msg):
        make()


@torch.no_grad()
def test_refresh_every_one_runs_every_frame_densely():
    conv = _conv()
    layer = _layer(FixedGate(keep=0.0), conv, refresh_every=1, execution="sparse")
    for x in _frames(3, seed=4):
        torch.testing.assert_close(layer(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert layer.stats.frames == 3 and layer.stats.gated_frames == 0


def test_fresh_layer_has_no_gate_output_and_reports_the_dense_path():
    model = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), "skipconv", thresholds=0.1)
    layer = model[0]
    assert layer.last is None and layer.last_norm is None and layer.positive is None
    assert layer.last_path == "dense"  # nothing ran sparse yet
    with pytest.raises(RuntimeError, match="run two frames first"):
        skip.residual_norms(model)
    with pytest.raises(RuntimeError, match="no layer was gated in the last forward"):
        skip.skip_probability(model)


# ------------------------------------------------------------------------------------------------
# mid-stream checks


@torch.no_grad()
def test_mid_stream_message_lists_every_change():
    layer = _layer(FixedGate(keep=0.5))
    layer(torch.rand(2, 4, 16, 16))
    with pytest.raises(ValueError, match=r"\(batch 2 -> 3, channels 4 -> 5; shape \(2, 4, 16, 16\) -> \(3, 5, 16, 16\)\)"):
        layer(torch.rand(3, 5, 16, 16))


@torch.no_grad()
def test_dtype_change_mid_stream_is_refused_naming_both():
    layer = _layer(FixedGate(keep=0.5))
    layer(torch.rand(2, 4, 16, 16))
    with pytest.raises(ValueError, match=r"'': input moved from cpu/torch\.float32 to cpu/torch\.float64 mid-stream; "
                                         r"call passbench\.skip\.reset\(model\)"):
        layer(torch.rand(2, 4, 16, 16, dtype=torch.float64))


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


@torch.no_grad()
def test_shared_conv_message_says_why_and_what_to_do():
    net = skip.make_skippable(_Twice(), "fixed", keep=1.0).eval()
    with pytest.raises(RuntimeError, match=r"SkipConv2d 'conv' was called twice in one forward of the model: a shared "
                       r"conv module has one stream state, so its second call would be compared with \(and skip to\) "
                       r"the first\. Give each call its own conv \(copy\.deepcopy\), or leave it dense: "
                       r"make_skippable\(\.\.\., exclude=\['conv'\]\)"):
        net(torch.rand(1, 4, 8, 8))


# ------------------------------------------------------------------------------------------------
# mask mode "complement"


def _two_region_frames():
    """x1 differs from x0 by 1 in the top half only: a norm gate (threshold 0.1) computes the top
    patch rows and skips the bottom ones."""
    x0 = _frames(1, seed=7)[0]
    x1 = x0.clone()
    x1[..., :8, :] += 1.0
    x2 = _frames(1, seed=8)[0]
    return x0, x1, x2


@torch.no_grad()
def test_complement_mode_skips_the_complement_of_the_positive_mask():
    conv = _conv()
    layer = _layer(NormGate(4, 4, threshold=0.1), conv, execution="reference")
    x0, x1, x2 = _two_region_frames()
    layer(x0)
    y1 = layer(x1)
    pos = torch.zeros(2, 4, 4)
    pos[:, 2:] = 1.0  # bottom rows unchanged: skipped in the positive pass
    assert torch.equal(layer.last.mask, pos)
    norm1 = layer.last_norm.clone()
    gate_macs = layer.stats.gate_macs
    layer.mask_mode = "complement"
    y2 = layer(x2)
    assert torch.equal(layer.last.mask, 1.0 - pos) and torch.equal(layer.last.prob, 1.0 - pos)
    assert torch.equal(layer.last_norm, norm1)  # the positive pass's norms: the gate is not run again
    assert layer.stats.gate_macs == gate_macs
    skip_px = _pixel_mask(1.0 - pos, 4, 16, 16) > 0.5
    want = torch.where(skip_px, y1, F.conv2d(x2, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(y2, want, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_complement_of_an_undecided_gate_computes_every_patch():
    # a 4x4 grid under min_patches: the PASS gate does not decide, so both passes compute everything
    conv = _conv()
    gate = PassGate(4, 4, embed_dim=4, depth=1, hidden=4, rate=0.5, min_patches=100)
    layer = _layer(gate, conv, execution="reference")
    x0, x1, x2 = _frames(3, seed=4)
    layer(x0)
    layer(x1)
    assert not layer.positive.active
    layer.mask_mode = "complement"
    y2 = layer(x2)
    torch.testing.assert_close(y2, F.conv2d(x2, conv.weight, conv.bias, padding=1))


@torch.no_grad()
def test_complement_needs_a_positive_pass_of_the_same_grid():
    msg = r"mask mode 'complement' needs a positive \(mode 'normal'\) gated forward of the same shape first"
    conv = _conv()
    layer = _layer(NormGate(4, 4, threshold=0.1), conv, execution="reference")
    x0, x1, _ = _two_region_frames()
    layer.mask_mode = "complement"
    layer(x0)
    with pytest.raises(RuntimeError, match=msg):  # no positive pass yet
        layer(x1)
    layer.reset()
    layer.mask_mode = "normal"
    layer(x0)
    layer(x1)
    layer.reset()  # forgets the positive mask with the stream
    layer.mask_mode = "complement"
    layer(x0)
    with pytest.raises(RuntimeError, match=msg):
        layer(x1)
    layer.reset()
    layer.mask_mode = "normal"
    layer(x0)
    layer(x1)  # positive on a 4x4 grid
    big0, big1 = torch.rand(2, 4, 24, 16), torch.rand(2, 4, 24, 16)
    layer.set_state(StreamState(big0, F.conv2d(big0, conv.weight, conv.bias, padding=1), 1))
    layer.mask_mode = "complement"
    with pytest.raises(RuntimeError, match=msg):  # a 6x4 grid now
        layer(big1)


# ------------------------------------------------------------------------------------------------
# what the gate is handed, and what it costs


class _RecordingNormGate(NormGate):
    """A norm gate that records the ``diff`` it was handed on each call."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.diffs = []

    def forward(self, x, prev, grid, conv=None, diff=None, **kw):
        self.diffs.append(diff)
        return super().forward(x, prev, grid, conv=conv, diff=diff, **kw)


@pytest.mark.parametrize("residual", [False, True])
@torch.no_grad()
def test_norm_gate_is_handed_the_residual_computed_once(residual):
    # "X_t - X_{t-1}, computed once per forward and shared by the norm gate and Skip-Conv"
    gate = _RecordingNormGate(4, 4, threshold=0.5)
    layer = _layer(gate, residual=residual, execution="reference")
    xs = _frames(3, seed=2)
    for x in xs:
        layer(x)
    assert len(gate.diffs) == 2  # frames 1 (the counted call) and 2
    for d, (a, b) in zip(gate.diffs, [(xs[1], xs[0]), (xs[2], xs[1])]):
        assert d is not None and torch.equal(d, a - b)


@torch.no_grad()
def test_output_norm_gate_measures_the_layers_conv_of_the_residual():
    # NormGate(variant="output") needs the layer's conv on every call: |W * (X_t - X_{t-1})| per output patch
    conv = _conv(stride=2)
    layer = _layer(NormGate(8, 4, threshold=0.3, variant="output"), conv, execution="reference")
    xs = _frames(5, h=32, w=32, seed=6)
    for t, x in enumerate(xs):
        if t == 3:
            layer.mask_mode = "off"  # dense passes read the norms too (threshold calibration)
        layer(x)
        if t:
            r = F.conv2d(x - xs[t - 1], conv.weight, None, stride=2, padding=1).abs()  # (2, 6, 16, 16)
            want = r.mean(1).view(2, 4, 4, 4, 4).mean((2, 4))
            torch.testing.assert_close(layer.last_norm, want)
    assert layer.stats.gated_frames == 2


def _pass_gate(cin=4, p_in=4, **kw):
    torch.manual_seed(11)
    return PassGate(cin, p_in, **{"embed_dim": 8, "depth": 2, "kernel_size": 3, "hidden": 16, "rate": 0.5,
                                  "min_patches": 4, **kw})


@torch.no_grad()
def test_pass_gate_macs_are_its_reference_ops_counted_once_per_shape():
    # PASS gate on (2, 4, 16, 16), patch 4 -> grid 4x4 (16 patches per sample), embed C = 8, hidden 16:
    # embedding conv 2Cin -> C, kernel = stride = 4: 8 * 8 * 4 * 4 MACs per patch; each of 2 mixer blocks
    # a depthwise 3x3 (8 * 9) and a pointwise 8 x 8; head 8 -> 16 -> 1. Biases, GELU and BN are not MACs.
    per_patch = 8 * 8 * 16 + 2 * (8 * 9 + 8 * 8) + 16 * 8 + 16
    layer = _layer(_pass_gate(), execution="sparse")
    for x in _frames(4, seed=3):
        layer(x)
    assert type(layer.stats.gate_macs) is int
    assert layer.stats.gate_macs == 3 * 2 * 16 * per_patch  # three gated frames, batch 2


@torch.no_grad()
def test_counting_the_gate_prints_nothing(capsys):
    layer = _layer(_pass_gate(), execution="sparse")
    for x in _frames(3, seed=3):
        layer(x)
    assert layer.stats.gate_macs > 0
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------
# PASS gate stacking


class _TwoHeads(nn.Module):
    """Two convs that read the same input tensor (as the light model's heads read the neck output)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.a = nn.Conv2d(4, 3, 3, padding=1)
        self.b = nn.Conv2d(4, 5, 1)

    def forward(self, x, heads="ab"):
        return tuple(getattr(self, h)(x) for h in heads) or (x,)


def _two_heads(execution, engine="fast"):
    torch.manual_seed(3)
    model = skip.make_skippable(_TwoHeads(), "pass", patch_size=4, embed_dim=8, hidden=8, min_patches=4,
                                rates=0.5, execution=execution).eval()
    skip.set_gate_engine(model, engine)
    return model


def _count_stack_calls(monkeypatch):
    calls = []
    real = fastgate.GateStack.logits

    def spy(self, x, prev, engine):
        calls.append(len(self.gates))
        return real(self, x, prev, engine)

    monkeypatch.setattr(fastgate.GateStack, "logits", spy)
    return calls


@pytest.mark.parametrize("execution", ["sparse", "reference"])
@torch.no_grad()
def test_pass_gates_reading_one_input_run_stacked_with_their_own_decisions(execution, monkeypatch):
    model = _two_heads(execution)
    twin = copy.deepcopy(model)
    skip.set_gate_engine(twin, "eager")  # the reference ops, each gate alone: the oracle decisions
    calls = _count_stack_calls(monkeypatch)
    per_frame = []
    for x in _frames(4, seed=9):
        calls.clear()
        outs, want = model(x), twin(x)
        per_frame.append(list(calls))
        for o, w in zip(outs, want):
            torch.testing.assert_close(o, w)
        for m, n in zip((model.a, model.b), (twin.a, twin.b)):
            assert (m.last is None) == (n.last is None)
            if m.last is not None:
                assert torch.equal(m.last.mask, n.last.mask)
    # frame 0 dense, frame 1 counts each gate's MACs on the reference ops, then one stacked computation
    assert per_frame == [[], [], [2], [2]]


@torch.no_grad()
def test_layer_called_alone_between_forwards_is_not_stacked_at_the_next_forward():
    # The caller reuses its input buffer: after forward t it writes new values into x and runs head a
    # alone on it (allowed outside a model forward). Head b's X_{t-1} is still forward t's x; a stacked
    # computation in forward t + 1 would decide b against a's X_{t-1} instead.
    model = _two_heads("sparse")
    twin = copy.deepcopy(model)
    skip.set_gate_engine(twin, "eager")
    xs = _frames(5, seed=12)
    x = xs[0].clone()
    for t in range(3):
        x.copy_(xs[t])
        model(x)
        twin(x)
    x.copy_(xs[3] * 3.0)
    model.a(x)
    twin.a(x.clone())
    model(xs[4])
    twin(xs[4])
    assert torch.equal(model.b.last.mask, twin.b.last.mask)
    assert torch.equal(model.a.last.mask, twin.a.last.mask)


@torch.no_grad()
def test_layer_called_outside_a_forward_runs_its_gate_alone():
    # Stacking groups the layers of one model forward. Forward 3 skips the heads, so the group planned
    # from forward 2 is still intact when head a is then called on its own: that call is no part of a
    # model forward and gets its gate's own decision (PassGate.fast_decide, "this gate alone"), not a
    # row of a stacked computation (which rounds differently in the last bits).
    model = _two_heads("sparse")
    xs = _frames(4, seed=14)
    for x in xs[:3]:
        model(x)
    model(xs[3], heads="")
    z = xs[3] * 2.0
    prev = model.a.state.prev_in.clone()
    model.a(z)
    alone = model.a.gate.fast_decide(z, prev, (4, 4), "fast")
    assert torch.equal(model.a.last.prob, alone.prob) and torch.equal(model.a.last.mask, alone.mask)


@torch.no_grad()
def test_layer_that_does_not_decide_still_joins_its_inputs_group(monkeypatch):
    # "layers that were called with one object in forward t and have not updated or replaced their state
    # since form a group": head b's gate does not decide (4x4 grid under its min_patches) but stored
    # forward t's input like head a, so a's gate is computed in the group of both
    model = _two_heads("sparse")
    model.b.gate.min_patches = 64
    calls = _count_stack_calls(monkeypatch)
    per_frame = []
    for x in _frames(4, seed=9):
        calls.clear()
        model(x)
        per_frame.append(list(calls))
        assert model.b.last is None or not model.b.last.active
    assert per_frame == [[], [], [2], [2]]


@torch.no_grad()
def test_forward_that_failed_in_a_layers_first_frame_leaves_the_next_forwards_working():
    # Head b's very first call raises inside its conv (say, out of memory) after head a ran: the group
    # planned from that forward must not break the next ones.
    model = _two_heads("sparse")
    fail = [True]

    def boom(module, args):
        if fail[0]:
            fail[0] = False
            raise RuntimeError("out of memory")

    model.b.conv.register_forward_pre_hook(boom)
    xs = _frames(5, seed=16)
    model(xs[0], heads="a")
    model(xs[1], heads="a")  # a's gate counted: its next call may be stacked
    with pytest.raises(RuntimeError, match="out of memory"):
        model(xs[2])
    _, yb = model(xs[3])
    torch.testing.assert_close(yb, F.conv2d(xs[3], model.b.conv.weight, model.b.conv.bias))  # b's first frame
    model(xs[4])
    assert model.a.last.active and model.b.last.active


@torch.no_grad()
def test_compiled_engine_reaches_the_stacked_computation(monkeypatch):
    # engine "compiled": the stacked logits go through compiled_logits (replaced here by a recorder that
    # computes the eager fast engine's logits, so no compile runs)
    seen = []

    def recorder(P, x, prev):
        seen.append(x.shape[0])
        return fastgate.stacked_logits(P, x, prev)

    monkeypatch.setattr(fastgate, "compiled_logits", recorder)
    model = _two_heads("sparse", engine="compiled")
    calls = _count_stack_calls(monkeypatch)
    for x in _frames(3, seed=9):
        model(x)
    assert calls == [2] and len(seen) == 1


# ------------------------------------------------------------------------------------------------
# reference "computed"


@pytest.mark.parametrize("padding,h,w", [
    ((0, 1), 10, 12),  # output 8x12: input rows 8, 9 lie beyond the patch grid
    ((1, 0), 16, 10),  # output 16x8: input cols 8, 9 lie beyond it
    (0, 14, 10),  # output 12x8: rows 12, 13 and cols 8, 9 beyond it
])
@torch.no_grad()
def test_reference_computed_keeps_rows_and_cols_beyond_the_patch_grid_fresh(padding, h, w):
    # reference "computed": input patch (i, j) (p * stride = 4 pixels) keeps the input it was last computed
    # from; input pixels that no output patch's gate window covers are always refreshed.
    conv = _conv(padding=padding)
    layer = _layer(FixedGate(keep=0.5, seed=1), conv, execution="reference", reference="computed")
    x0, x1 = _frames(2, h=h, w=w, seed=13)
    layer(x0)
    layer(x1)
    compute = layer.last.mask < 0.5  # (B, Hp, Wp)
    assert compute.any() and not compute.all()
    want = x1.clone()
    for i in range(compute.shape[1]):
        for j in range(compute.shape[2]):
            for bi in range(2):
                if not compute[bi, i, j]:
                    want[bi, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4] = x0[bi, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4]
    assert torch.equal(layer.state.prev_in, want)


# ------------------------------------------------------------------------------------------------
# execution path


@pytest.mark.parametrize("wants", ["weights", "input", "mask"])
def test_reference_path_whenever_gradients_are_wanted(wants):
    # "The reference path is used whenever gradients are wanted (module in training mode, or autograd
    # enabled and the mask, the input or the weights require grad)": here the module is in eval mode.
    conv = _conv()
    conv.requires_grad_(wants == "weights")
    if wants == "mask":
        torch.manual_seed(0)
        gate = GumbelGate(4, 4, init_bias=0.0, threshold=0.5)  # learned: its mask carries the STE gradient
    else:
        gate = FixedGate(keep=0.5, seed=1)
    layer = _layer(gate, conv, execution="sparse")
    x0, x1 = _frames(2, seed=3)
    with torch.no_grad():
        layer(x0)
    if wants == "input":
        x1.requires_grad_()
    y = layer(x1)
    assert layer.last_path == "reference" and y.requires_grad
    y.sum().backward()
    with torch.no_grad():  # without autograd the same layer takes the path it was given
        layer(x0)
    assert layer.last_path == "sparse"


# ------------------------------------------------------------------------------------------------
# the state's buffers and the caller's tensors


@pytest.mark.parametrize("execution", ["reference", "sparse"])
@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_state_buffers_are_reused_across_frames_without_autograd(execution, mode):
    # "a private copy of src, written into buf when possible: reusing the buffer avoids a fresh
    # allocation per layer and frame"; the caller gets its own copy of the output
    layer = _layer(NormGate(4, 4, threshold=0.5), execution=execution)
    ctx = torch.inference_mode() if mode == "inference_mode" else torch.no_grad()
    ptrs = []
    with ctx:
        for x in _frames(4, seed=5):
            y = layer(x)
            st = layer.state
            assert torch.equal(st.prev_in, x) and torch.equal(st.prev_out, y)
            assert st.prev_in.data_ptr() != x.data_ptr() and st.prev_out.data_ptr() != y.data_ptr()
            ptrs.append((st.prev_in.data_ptr(), st.prev_out.data_ptr()))
    assert layer.last_path == execution
    assert len(set(ptrs)) == 1, ptrs


def test_state_is_replaced_not_written_into_with_autograd_on():
    # what set_stream_states relies on (PASS-P restores one primed state for two passes)
    layer = _layer(NormGate(4, 4, threshold=0.5), execution="reference")
    x0, x1, x2 = _frames(3, seed=5)
    layer(x0)
    layer(x1)
    st = layer.state
    kept = st.prev_in.clone(), st.prev_out.clone()
    layer(x2)
    assert torch.equal(st.prev_in, kept[0]) and torch.equal(st.prev_out, kept[1])


def _undecided_with_refresh(execution):
    """A layer whose PASS gate does not decide (3x3 grid under min_patches), with a dense refresh every
    second frame, and its conv."""
    conv = _conv()
    layer = _layer(PassGate(4, 4, embed_dim=4, depth=1, hidden=4, rate=0.5, min_patches=64), conv,
                   execution=execution, refresh_every=2)
    return conv, layer


@pytest.mark.parametrize("execution", ["sparse", "auto"])
@torch.no_grad()
def test_refresh_after_an_undecided_gate_leaves_the_callers_input_alone(execution):
    # An undecided PASS gate keeps the caller's tensors as its state; the dense refresh frame that follows
    # must copy into buffers of its own, not into the caller's input.
    conv, layer = _undecided_with_refresh(execution)
    xs = _frames(4, h=12, w=12, seed=6)
    kept = [x.clone() for x in xs]
    for x in xs:
        y = layer(x)
        torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))
    for x, k in zip(xs, kept):
        assert torch.equal(x, k)


@pytest.mark.parametrize("execution", ["sparse", "auto"])
@torch.no_grad()
def test_refresh_after_an_undecided_gate_leaves_the_callers_output_alone(execution):
    # ... nor into the output returned for the undecided frame before it
    conv, layer = _undecided_with_refresh(execution)
    xs = _frames(3, h=12, w=12, seed=6)
    ys = [layer(x) for x in xs]
    for x, y in zip(xs, ys):
        torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))


@torch.no_grad()
def test_input_kept_by_reference_is_never_written_once_a_gate_reads_it():
    # A random-mask gate does not read X_{t-1}: the state keeps the caller's input itself. Swapped for a
    # norm gate mid-stream, the next frame copies into a buffer of its own (then reused), never into the
    # caller's earlier input.
    layer = _layer(FixedGate(keep=0.5, seed=1), execution="reference")
    xs = _frames(5, seed=8)
    kept = [x.clone() for x in xs]
    layer(xs[0])
    layer(xs[1])
    assert layer.state.prev_in.data_ptr() == xs[1].data_ptr()
    layer.gate = NormGate(4, 4, threshold=0.5)
    ptrs = []
    for x in xs[2:]:
        layer(x)
        assert layer.state.prev_in.data_ptr() != x.data_ptr()
        ptrs.append(layer.state.prev_in.data_ptr())
    for x, k in zip(xs, kept):
        assert torch.equal(x, k)
    assert ptrs[1] == ptrs[2]


@torch.no_grad()
def test_residual_form_keeps_a_private_copy_of_the_previous_input():
    # Skip-Conv's residual form reads X_{t-1} even under a gate that does not: y = prev_out + W * (X_t - X_{t-1})
    # on computed patches. A caller that overwrites its input after each frame must change nothing.
    conv = _conv()
    layer = _layer(FixedGate(keep=0.5, seed=2), conv, residual=True, execution="sparse")
    xs = _frames(3, seed=9)
    prev_x, prev_y = None, None
    for t, x in enumerate(xs):
        y = layer(x.clone() if t == 0 else x)
        if t:
            d = F.conv2d(xs[t] - prev_x, conv.weight, None, padding=1)
            skip_px = _pixel_mask(layer.last.mask, 4, 16, 16) > 0.5
            torch.testing.assert_close(y, torch.where(skip_px, prev_y, prev_y + d), rtol=1e-5, atol=1e-5)
        prev_x, prev_y = x.clone(), y.clone()
        x.mul_(0.0)  # the caller reuses its input buffer


# ------------------------------------------------------------------------------------------------
# mask mode "inverted"


@pytest.mark.parametrize("execution", ["reference", "sparse"])
@torch.no_grad()
def test_inverted_mode_computes_the_patches_the_gate_skips(execution):
    conv = _conv()
    layer = _layer(FixedGate(keep=0.5, seed=5), conv, execution=execution)
    x0, x1 = _frames(2, seed=17)
    y0 = layer(x0)
    layer.mask_mode = "inverted"
    y1 = layer(x1)
    g = layer.last.mask  # the gate's own mask (1 = skip); inverted, its 0-patches take the previous output
    assert g.min() == 0 and g.max() == 1
    skip_px = _pixel_mask(g, 4, 16, 16) < 0.5
    torch.testing.assert_close(y1, torch.where(skip_px, y0, F.conv2d(x1, conv.weight, conv.bias, padding=1)))


def _undecided_inverted(execution):
    conv = _conv()
    layer = _layer(PassGate(4, 4, embed_dim=4, depth=1, hidden=4, rate=0.5, min_patches=64), conv,
                   execution=execution)
    xs = _frames(3, h=12, w=12, seed=18)
    with torch.no_grad():
        layer(xs[0])
        layer(xs[1])
        layer.mask_mode = "inverted"
        y = layer(xs[2])
        dense = F.conv2d(xs[2], conv.weight, conv.bias, padding=1)
    return layer, y, dense


def test_inverted_mode_counts_an_undecided_layer_alike_on_every_path():
    # the counters follow the (inverted) mask whichever path ran: skipped pixels, mask MACs, gated pixels
    ref, _, _ = _undecided_inverted("reference")
    assert ref.stats.px_skipped == 0  # nothing skipped: the layer computed every patch
    for execution in ("sparse", "auto"):
        layer, _, _ = _undecided_inverted(execution)
        for f in ("frames", "gated_frames", "dense_macs", "gate_macs", "px_gated", "px_skipped", "px_total",
                  "mask_macs"):
            assert getattr(layer.stats, f) == getattr(ref.stats, f), (execution, f)


@pytest.mark.parametrize("execution", ["reference", "sparse", "auto"])
def test_inverted_mode_computes_every_patch_of_an_undecided_layer(execution):
    # A gate that makes no decision (grid under min_patches) has no mask to invert: the inverted pass computes
    # every patch, as the complement pass does, on every path (the reference path once skipped them all).
    _, y, dense = _undecided_inverted(execution)
    torch.testing.assert_close(y, dense)


# ------------------------------------------------------------------------------------------------
# counters (LayerStats), worked out by hand


def _sparse_macs(n_act, n_tot, p, dense, per_px):
    """The block-sparse kernel's MACs (skip.macs, sparse_conv2d): nothing active 0, all active the dense
    conv, else every active patch at full p x p size; ``per_px`` = Cout * Cin / groups * kh * kw."""
    return 0 if n_act == 0 else dense if n_act == n_tot else n_act * p * p * per_px


@torch.no_grad()
def test_counters_of_an_empty_batch():
    layer = _layer(FixedGate(keep=0.5), execution="sparse")
    y = layer(torch.rand(0, 4, 16, 16))
    assert y.shape == (0, 6, 16, 16)
    assert layer.stats == LayerStats(frames=1)
    assert layer.last is None and layer.last_path == "dense" and layer.state.prev_in is None


@torch.no_grad()
def test_counters_of_a_layer_without_gate():
    # stride 2 on 19x13: output 10x7
    conv = _conv(stride=2)
    layer = _layer(None, conv)
    dense = 2 * 6 * 10 * 7 * 4 * 9
    for x in _frames(2, h=19, w=13, seed=3):
        assert torch.equal(layer(x), conv(x))
        assert layer.last_path == "dense"
    assert layer.stats == LayerStats(frames=2, dense_macs=2 * dense, executed_macs=2 * dense, px_total=2 * 2 * 70,
                                     mask_macs=2 * dense)


@torch.no_grad()
def test_counters_of_dense_gated_refresh_and_off_frames():
    # refresh every 3: frames 0, 3, 6 dense; frame 5 dense in mask mode "off"; 1, 2, 4 gated (sparse path)
    conv = _conv()
    layer = _layer(FixedGate(keep=0.5, seed=6), conv, execution="sparse", refresh_every=3)
    dense, per_px, px = 2 * 6 * 256 * 4 * 9, 6 * 4 * 9, 2 * 256
    executed = skipped = 0
    for t, x in enumerate(_frames(7, seed=19)):
        layer.mask_mode = "off" if t == 5 else "normal"
        y = layer(x)
        if t in (1, 2, 4):
            skip_patches = int((layer.last.mask >= 0.5).sum())
            executed += _sparse_macs(32 - skip_patches, 32, 4, dense, per_px)
            skipped += skip_patches * 16
            assert layer.last_path == "sparse"
        else:
            executed += dense
            torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))
            assert layer.last is None and layer.last_path == "dense"
        assert layer.state.t == t + 1
    assert 0 < skipped < 3 * px
    assert layer.stats == LayerStats(frames=7, gated_frames=3, dense_macs=7 * dense, executed_macs=executed,
                                     gate_macs=0, px_gated=3 * px, px_skipped=skipped, px_total=7 * px,
                                     mask_macs=executed)


@pytest.mark.parametrize("execution", ["sparse", "auto"])
@torch.no_grad()
def test_counters_and_frame_count_of_an_undecided_gate(execution):
    # 12x12, patch 4: a 3x3 grid, under min_patches 64 (the gate does not decide, the layer runs dense,
    # booked as gated); refresh every 3. min_patches lowered to 4 before frame 5: that frame runs dense
    # (the state held references) and is booked as a dense frame, frame 6 is a refresh, frame 7 decides.
    conv = _conv()
    gate = PassGate(4, 4, embed_dim=4, depth=1, hidden=4, rate=0.5, min_patches=64)
    layer = _layer(gate, conv, execution=execution, refresh_every=3)
    dense, px = 2 * 6 * 144 * 4 * 9, 2 * 144
    xs = _frames(8, h=12, w=12, seed=20)
    gate_macs = None
    for t, x in enumerate(xs):
        if t == 5:
            gate.min_patches = 4
            gate_macs = layer.stats.gate_macs
        y = layer(x)
        assert layer.state.t == t + 1
        if t < 7:
            torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))
            assert layer.last_path == "dense"
        if t == 5:
            assert layer.last is None and layer.stats.gate_macs == gate_macs  # booked as a dense frame
    skip_patches = int((layer.last.mask >= 0.5).sum())
    assert layer.last.active and skip_patches == 2 * 4  # top-k: round(0.5 * 9) = 4 per sample
    executed = 7 * dense + _sparse_macs(18 - skip_patches, 18, 4, dense, 6 * 4 * 9)
    st = layer.stats
    assert (st.frames, st.gated_frames, st.dense_macs, st.px_gated, st.px_skipped, st.px_total, st.mask_macs) == (
        8, 4, 8 * dense, 4 * px, skip_patches * 16, 8 * px, executed)
    assert st.executed_macs == (executed if execution == "sparse" else st.executed_macs)


@torch.no_grad()
def test_gate_macs_once_a_gate_starts_deciding():
    per_patch = 8 * 8 * 16 + 2 * (8 * 9 + 8 * 8) + 16 * 8 + 16  # as in the PASS gate MAC test above
    gate = _pass_gate(min_patches=64)
    layer = _layer(gate, execution="sparse")
    xs = _frames(5, h=12, w=12, seed=21)
    for x in xs[:3]:
        layer(x)
    gate.min_patches = 4
    layer(xs[3])  # dense: the state held references
    before = layer.stats.gate_macs
    layer(xs[4])
    assert layer.last.active
    assert layer.stats.gate_macs - before == 2 * 9 * per_patch


@pytest.mark.parametrize("execution", ["reference", "sparse"])
@torch.no_grad()
def test_reference_path_decides_as_soon_as_the_gate_does(execution):
    # the reference path keeps private copies even while the gate does not decide, so the first frame the
    # gate decides on is gated there; the other paths held references and run that frame dense
    gate = PassGate(4, 4, embed_dim=4, depth=1, hidden=4, rate=0.5, min_patches=64)
    layer = _layer(gate, execution=execution)
    xs = _frames(4, h=12, w=12, seed=22)
    layer(xs[0])
    for x in xs[1:3]:
        layer(x)
        assert layer.last_path == ("reference" if execution == "reference" else "dense")
    gate.min_patches = 4
    layer(xs[3])
    assert (layer.last is not None) == (execution == "reference")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("h,w", [(9, 16), (16, 9), (9, 9)])
@torch.no_grad()
def test_skipped_pixels_and_mask_macs_of_partial_edge_patches(h, w, device):
    # output h x w, patch 4: edge patches of h % 4 / w % 4 pixels. Every patch skipped: every output pixel
    # is skipped. Every patch computed: the kernel runs the dense conv, so mask MACs = dense MACs.
    px = 2 * h * w
    dense = px * 6 * 4 * 9
    for keep, skipped, mask_macs in ((0.0, px, 0), (1.0, 0, dense)):
        layer = _layer(FixedGate(keep=keep), execution="sparse").to(device)
        for x in _frames(2, h=h, w=w, seed=23):
            layer(x.to(device))
        assert layer.stats.px_skipped == skipped and layer.stats.px_gated == px
        assert layer.stats.mask_macs == dense + mask_macs and layer.stats.executed_macs == dense + mask_macs


CL = torch.channels_last


@pytest.mark.parametrize("reference", ["previous", "computed"])
def test_dense_dispatch_channels_last_blends_and_counts_the_mask(reference, monkeypatch):
    # the dispatcher runs the dense conv and blends into the state in place (channels-last): the output is the
    # PASS blend, executed MACs are dense, the mask counters are the block-sparse kernel's
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "dense")
    conv = _conv()
    w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
    layer = _layer(FixedGate(keep=0.5, seed=4), conv, execution="auto", reference=reference).to(memory_format=CL)
    dense, per_px, px = 2 * 6 * 256 * 4 * 9, 6 * 4 * 9, 2 * 256
    mask_macs, skipped, prev = dense, 0, None
    with torch.inference_mode():
        for t, x in enumerate(_frames(4, seed=24)):
            y = layer(x.contiguous(memory_format=CL))
            full = F.conv2d(x, w, b, padding=1)
            if t:
                g = layer.last.mask
                n_skip = int((g >= 0.5).sum())
                mask_macs += _sparse_macs(32 - n_skip, 32, 4, dense, per_px)
                skipped += 16 * n_skip
                full = torch.where(_pixel_mask(g, 4, 16, 16) > 0.5, prev, full)
                assert layer.last_path == "dense"
            torch.testing.assert_close(y, full, rtol=1e-5, atol=1e-5)
            prev = full
    assert layer.stats == LayerStats(frames=4, gated_frames=3, dense_macs=4 * dense, executed_macs=4 * dense,
                                     gate_macs=0, px_gated=3 * px, px_skipped=skipped, px_total=4 * px,
                                     mask_macs=mask_macs)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CL], ids=["nchw", "channels_last"])
def test_dense_dispatch_residual_form_with_dilation_and_groups(memory_format, monkeypatch):
    # Skip-Conv residual form on the dispatcher's dense path: y_t = y_{t-1} + W * (X_t - X_{t-1}) (no bias) on
    # computed patches, y_{t-1} elsewhere; W dilated 2 and grouped 2
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "dense")
    conv = _conv(padding=2, dilation=2, groups=2)
    w, b = conv.weight.detach().clone(), conv.bias.detach().clone()
    layer = _layer(FixedGate(keep=0.5, seed=2), conv, residual=True, execution="auto").to(memory_format=memory_format)
    xs = _frames(4, seed=25)
    with torch.inference_mode():
        prev = F.conv2d(xs[0], w, b, padding=2, dilation=2, groups=2)
        torch.testing.assert_close(layer(xs[0].contiguous(memory_format=memory_format)), prev, rtol=1e-5, atol=1e-5)
        for t in range(1, 4):
            y = layer(xs[t].contiguous(memory_format=memory_format))
            d = F.conv2d(xs[t] - xs[t - 1], w, None, padding=2, dilation=2, groups=2)
            want = torch.where(_pixel_mask(layer.last.mask, 4, 16, 16) > 0.5, prev, prev + d)
            torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
            assert layer.last_path == "dense"
            prev = want


# ------------------------------------------------------------------------------------------------
# SelectSTE


def test_select_skips_where_mask_is_not_below_one_half():
    # "A pixel skips where mu < 0.5 is false ... (a NaN mask entry skips)"
    mu = torch.tensor([0.0, 0.49, 0.5, 1.0, float("nan")]).view(1, 1, 1, 5)
    prev, new = torch.full((1, 2, 1, 5), 7.0), torch.full((1, 2, 1, 5), -3.0)
    y = SelectSTE.apply(mu, prev, new)
    assert y[0, 0, 0].tolist() == [-3.0, -3.0, 7.0, 7.0, 7.0]


@pytest.mark.parametrize("which", ["prev", "new"])
def test_select_gradient_reaches_the_one_operand_that_wants_it(which):
    # backward of the blend mu * prev + (1 - mu) * new: d/dprev = mu, d/dnew = 1 - mu
    g = torch.Generator().manual_seed(1)
    mu = (torch.rand(2, 1, 3, 4, generator=g) > 0.5).double()
    prev, new, w = (torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    t = prev if which == "prev" else new
    t.requires_grad_()
    (SelectSTE.apply(mu, prev, new) * w).sum().backward()
    want = w * mu if which == "prev" else w * (1.0 - mu)
    torch.testing.assert_close(t.grad, want, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------
# dense checkpoints


def test_state_dict_of_a_bias_free_layer_loads_back_strictly():
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Conv2d(4, 2, 1))

    dense = net()
    model = skip.make_skippable(net(), "fixed")
    model.load_state_dict(dense.state_dict(), strict=True)  # "0.weight" -> "0.conv.weight", no bias key
    assert torch.equal(model[0].conv.weight, dense[0].weight)
    again = skip.make_skippable(net(), "fixed")
    again.load_state_dict(model.state_dict(), strict=True)


def test_dense_key_is_not_remapped_over_a_wrapped_key():
    # the pre-hook maps "<layer>.weight" only where "<layer>.conv.weight" is missing (a dense checkpoint)
    model = skip.make_skippable(nn.Sequential(nn.Conv2d(3, 4, 1)), "fixed")
    sd = model.state_dict()
    new_w = torch.full_like(sd["0.conv.weight"], 2.0)
    sd = {"0.conv.weight": new_w, "0.conv.bias": sd["0.conv.bias"], "0.weight": torch.zeros_like(new_w)}
    res = model.load_state_dict(sd, strict=False)
    assert torch.equal(model[0].conv.weight, new_w)
    assert res.unexpected_keys == ["0.weight"] and not res.missing_keys
