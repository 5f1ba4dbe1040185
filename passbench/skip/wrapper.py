"""``SkipConv2d``: a Conv2d that skips output patches between consecutive frames, and
``make_skippable`` which swaps it into any model (timm, torchvision, passbench.models).

Per layer and frame t (B independent streams, one per batch row):

1. frame 0 after a reset (and every ``refresh_every``-th frame, and mask mode ``off``) runs densely;
2. otherwise the gate sees the layer's input X_t and X_{t-1} and returns a (B, Hp, Wp) mask over
   the *output* patch grid, 1 = skip, with Hp = ceil(Ho / p), Wp = ceil(Wo / p) (partial edge
   patches where p does not divide the map; a map smaller than p is one patch, i.e. p is clamped
   to the map);
3. computed patches get ``conv(X_t)`` (PASS blend) or, in the Skip-Conv residual formulation,
   ``prev_out + conv_nobias(X_t - X_{t-1})`` (Habibian et al., CVPR-21, Eq. 2-3: exact for a linear
   conv where prev_out = conv(X_{t-1})); skipped patches keep ``prev_out``.

Execution paths: ``reference`` (dense conv, then ``where(mask, prev_out, dense)`` with the gradient of
the blend ``mask * prev_out + (1 - mask) * dense``; the oracle and the differentiable path: the mask's
straight-through gradient reaches the gate),
``sparse`` (``skip.sparse.sparse_conv2d``), ``auto`` (``skip.dispatch.choose_path`` per layer and
frame: sparse, or dense conv + hard blend). All three give the same output, NaN included (one
behaviour): a computed patch is ``conv(X_t)`` (NaN where its receptive field holds NaN, as the dense
conv), a skipped patch is ``prev_out`` exactly, a NaN mask entry skips (``compute = mask < 0.5``), and
every path stores the same state, so all recover at the same frame (when the patch is next computed
from finite input, at a refresh or a reset; in the Skip-Conv residual form only a dense frame clears
a NaN ``prev_out``). An empty batch (B = 0) runs the conv and leaves the stream untouched.
The reference path is used whenever gradients are wanted (module in training mode, or autograd enabled and the mask, the
input or the weights require grad): run benchmarks under ``torch.no_grad()`` /
``torch.inference_mode()`` to get the sparse path.

Deviation from the paper (documented): PASS's positive sample replaces *input* patches of X_t by
X_{t-1}; here the *output* patches are skipped (they take the previous output). The two differ only
at patch borders, where an output patch's receptive field (the halo of (k - 1) * dilation input
pixels) reaches into neighbouring input patches. Skipping outputs is what saves the layer's MACs
(Eq. 1-3) and what block-sparse execution computes, so it is the one implemented.

Shared decisions (``make_skippable(follow=...)``, a passbench variant): a *follower* runs no gate; it takes
the mask its *leader* decided in the same forward on the same grid (one gate per residual block or conv
chain), books no gate MACs and keeps no copy of its previous input unless something else reads it.

Gate geometry (an approximation, documented): the gate scores input patch (i, j) of ``p * stride``
pixels, i.e. input pixels ``[i p s, (i + 1) p s)``, for output patch (i, j). The output patch's true
receptive field is that window shifted by ``-padding`` and widened by the halo; the gate does not
see the halo (neither does the paper's patch embedding, kernel = stride = P).

State-dict keys: the wrapper keeps the original conv as child ``conv`` and the gate as ``gate``, so
a wrapped layer ``backbone.conv1`` has ``backbone.conv1.conv.weight`` and ``backbone.conv1.gate.*``.
A dense checkpoint (``backbone.conv1.weight``) still loads: a load pre-hook maps the old keys (use
``strict=False``, since the gate keys are then missing, or load before ``make_skippable``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from passbench.skip import dispatch
from passbench.skip.gates import GateOut, NormGate, PassGate
from passbench.skip.geometry import int_padding, out_hw, patch_area, upsample
from passbench.skip.macs import conv_dense_macs, sparse_equivalent_macs
from passbench.skip.nhwc import blend_and_update, blend_skipped, blend_update_ok
from passbench.skip.sparse import sparse_conv2d
from passbench.skip.stacking import ForwardClock
from passbench.skip.state import LayerStats, StreamState, check_same_stream
from passbench.skip.ste import SelectSTE

__all__ = ["EXECUTIONS", "MASK_MODES", "SelectSTE", "SkipConv2d"]

MASK_MODES = ("normal", "inverted", "complement", "off")
EXECUTIONS = ("reference", "sparse", "auto")


class SkipConv2d(nn.Module):
    """A skippable wrapper around one ``nn.Conv2d`` (see the module docstring).

    Args:
        conv: the original layer, kept as child ``conv`` (any stride / padding / dilation / groups /
            bias; integer zero padding).
        gate: a gate from ``skip.gates`` (called ``gate(x, prev, grid, conv=conv) -> GateOut``) or
            None (dense pass-through that only counts MACs).
        patch_size: output patch size p in output pixels.
        residual: Skip-Conv residual formulation instead of the PASS blend.
        execution: "reference", "sparse" or "auto".
        refresh_every: run densely every N frames (frames 0, N, 2N, ... after a reset); None: never.
        name: qualified name in the model, for error messages.
        reference: what the gate compares X_t with. ``"previous"`` (the papers): the previous frame's
            input X_{t-1}. ``"computed"`` (passbench option, DeltaCNN-style): for each input patch
            (p * stride pixels) the input it was last *computed* from, so a slowly changing patch
            accumulates its change until the gate recomputes it instead of drifting forever. With the
            Skip-Conv residual form the halo of a patch may mix references of different ages: an
            approximation there.
    """

    def __init__(self, conv: nn.Conv2d, gate: nn.Module | None, patch_size: int = 8, residual: bool = False,
                 execution: str = "auto", refresh_every: int | None = None, name: str = "",
                 reference: str = "previous") -> None:
        super().__init__()
        if reference not in ("previous", "computed"):
            raise ValueError(f"SkipConv2d({name}): reference must be 'previous' or 'computed', got {reference!r}")
        self.reference = reference
        if execution not in EXECUTIONS:
            raise ValueError(f"SkipConv2d({name}): execution must be one of {EXECUTIONS}, got {execution!r}")
        if conv.padding_mode != "zeros":
            raise ValueError(f"SkipConv2d({name}): only zero padding is supported, got padding_mode="
                             f"{conv.padding_mode!r}")
        if type(conv).forward is not nn.Conv2d.forward:
            raise ValueError(f"SkipConv2d({name}): {type(conv).__name__} is a Conv2d subclass with its own forward; "
                             "the sparse path would compute a plain conv with its weights instead")
        conv = int_padding(conv, name)
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"SkipConv2d({name}): refresh_every must be >= 1 or None, got {refresh_every}")
        self.conv = conv
        self.gate = gate
        self.patch_size = int(patch_size)
        self.residual = bool(residual)
        self.execution = execution
        self.refresh_every = refresh_every
        self.name = name
        self.mask_mode = "normal"
        self.state = StreamState()
        self.stats = LayerStats()
        self.last: GateOut | None = None  # gate output of the last forward (None when it ran densely)
        self.last_norm: torch.Tensor | None = None  # norm gates: residual norms of the last forward
        self.last_path = "dense"
        self.positive: GateOut | None = None  # gate output of the last mode-"normal" gated forward
        self._gate_macs: dict[tuple, int] = {}
        self.clock: ForwardClock | None = None  # set by make_skippable (skip.stacking)
        self._tick = -1  # the clock's tick of this layer's last call
        self.stored: tuple | None = None  # (clock tick, state, id(input)) of the last state update (stacking)
        self._prev_is_ref = False  # state.prev_in is the caller's tensor, not a copy (_keep_input)
        self._state_is_ref = False  # state.prev_in / prev_out are the caller's tensors (an undecided gate)
        # state.prev_out is not this layer's to write into: the caller's output (an undecided gate) or a tensor
        # adopted by set_state (a stream_states snapshot, restored for another pass from the same state)
        self._out_is_ref = False
        # the sparse path may hand the caller its kept output itself (no copy): set by
        # skip.aliasing.set_output_aliasing where what the model does to the output cannot change the next frame
        self.alias_out = False
        # the layer whose decision this one takes (make_skippable's ``follow``); a list, so that the leader is
        # not registered as a child module (its parameters and state-dict keys stay under its own name)
        self._leader: list[SkipConv2d] = []
        self.register_load_state_dict_pre_hook(_remap_dense_keys)

    # Read-only views of the wrapped conv, for code that inspects layers (e.g. weight init loops).
    weight = property(lambda self: self.conv.weight)
    bias = property(lambda self: self.conv.bias)
    in_channels = property(lambda self: self.conv.in_channels)
    out_channels = property(lambda self: self.conv.out_channels)
    kernel_size = property(lambda self: self.conv.kernel_size)
    stride = property(lambda self: self.conv.stride)
    padding = property(lambda self: self.conv.padding)
    dilation = property(lambda self: self.conv.dilation)
    groups = property(lambda self: self.conv.groups)

    @property
    def leader(self) -> SkipConv2d | None:
        """The layer whose mask this layer takes instead of running its own gate (None: its own gate decides)."""
        return self._leader[0] if self._leader else None

    def follow(self, leader: SkipConv2d | None) -> None:
        """Take ``leader``'s mask of the same forward instead of running this layer's gate (None: undo). The
        leader must run before this layer in every forward, on the same output patch grid (checked per call)."""
        if leader is self:
            raise ValueError(f"SkipConv2d '{self.name}' cannot follow itself")
        if leader is not None and leader.leader is not None:
            raise ValueError(f"SkipConv2d '{self.name}' cannot follow '{leader.name}', which follows "
                             f"'{leader.leader.name}' itself: name the deciding layer")
        if self.state.prev_in is not None:  # a stream under the old rule: its stored input may be a reference
            self.reset(stats=False)
        self._leader = [leader] if leader is not None else []

    def extra_repr(self) -> str:
        gate = type(self.gate).__name__ if self.gate is not None else "None"
        lead = f", follows={self.leader.name}" if self.leader is not None else ""
        return (f"patch={self.patch_size}, gate={gate}, residual={self.residual}, execution={self.execution}, "
                f"refresh_every={self.refresh_every}, reference={self.reference}{lead}")

    def reset(self, stats: bool = True) -> None:
        """Forget the stream state (and the counters unless ``stats=False``)."""
        self.state = StreamState()
        self._prev_is_ref = self._state_is_ref = self._out_is_ref = False
        self.last, self.last_norm = None, None
        if stats:
            self.stats = LayerStats()
        self.positive = None
        if hasattr(self.gate, "reset"):  # stateful gates (FixedGate's generator, KeyframeGate's counter)
            self.gate.reset()

    def share_state(self) -> StreamState:
        """This layer's stream state for a snapshot (``skip.control.stream_states``): from now on the layer
        copies into new tensors instead of writing into the state's, so the snapshot keeps its values."""
        self._prev_is_ref = self._out_is_ref = True
        return self.state

    def set_state(self, state: StreamState) -> None:
        """Adopt ``state`` (``skip.control.set_stream_states``); its tensors are shared, never written into."""
        self.state = state
        self._state_is_ref = False  # its values are valid
        self._prev_is_ref = self._out_is_ref = True  # but not this layer's: the next frame copies, never writes in

    def _gate_key(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple:
        """What a gate's MAC count depends on: input shape, dtype, train / eval, and whether a PASS gate
        decides on this grid (an undecided call runs no op and books 0; ``min_patches`` may change
        mid-stream, and the same shape is then counted again)."""
        decides = self.gate.gated(grid) if isinstance(self.gate, PassGate) else True
        return tuple(x.shape), str(x.dtype), self.gate.training, decides

    def _run_gate(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int],
                  diff: torch.Tensor | None = None) -> tuple[GateOut, int]:
        """The gate's decision and its MACs for this call."""
        key = self._gate_key(x, grid)
        kw = {"diff": diff} if diff is not None else {}
        if key in self._gate_macs:
            if self.stackable():
                kw["group"] = self._stacked_gate
            return self.gate(x, prev, grid, conv=self.conv, **kw), self._gate_macs[key]
        # Count the gate once per input shape, on the real call (no extra run): FLOPs / 2 = MACs. The
        # reference ops are counted (a PASS gate's fast engine computes the same function, see fastgate).
        with FlopCounterMode(display=False) as fc:
            out = self.gate(x, prev, grid, conv=self.conv, engine="eager", **kw)
        self._gate_macs[key] = int(fc.get_total_flops()) // 2
        return out, self._gate_macs[key]

    def stackable(self) -> bool:
        """Whether this layer's PASS gate may be computed stacked with others on the same input."""
        return (isinstance(self.gate, PassGate) and self.gate.head_kind == "patch" and self.reference == "previous"
                and self.mask_mode == "normal" and not self._leader and self.clock is not None and self.clock.depth > 0)

    def _stacked_gate(self, gate: PassGate, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int],
                      engine: str) -> GateOut:
        """This layer's gate decision, stacked with the layers that read the same input (``skip.stacking``)."""
        return self.clock.groups.decide(self, gate, x, prev, grid, engine)

    def _check_once_per_forward(self) -> None:
        """Raise when this layer runs a second time inside one forward of the model (a shared conv):
        its one stream state would compare the second input with the first."""
        clk = self.clock
        if clk is None or clk.depth == 0:  # called outside a forward of the wrapped model: no check
            return
        if self._tick == clk.tick:
            raise RuntimeError(
                f"SkipConv2d '{self.name}' was called twice in one forward of the model: a shared conv module "
                "has one stream state, so its second call would be compared with (and skip to) the first. Give "
                f"each call its own conv (copy.deepcopy), or leave it dense: make_skippable(..., exclude=['{self.name}'])")
        self._tick = clk.tick

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_same_stream(self.state.prev_in, x, self.name)
        self._check_once_per_forward()
        if x.shape[0] == 0:  # an empty batch: nothing to skip, nothing to remember, 0 MACs
            self._count(0, 0, 0, gated=False, px_all=0)
            self.last, self.last_norm, self.last_path = None, None, "dense"
            return self.conv(x)
        st, conv = self.state, self.conv
        B, _, H, W = x.shape
        Ho, Wo = out_hw(conv, H, W)
        dense_macs = conv_dense_macs(conv, (Ho, Wo), B)
        p = self.patch_size
        grid = (math.ceil(Ho / p), math.ceil(Wo / p))
        have_prev = st.prev_in is not None
        refresh = self.refresh_every is not None and st.t % self.refresh_every == 0
        if self.stackable():
            self.clock.groups.observe(self, x, grid)
        self.last, self.last_norm = None, None
        diff = None  # X_t - X_{t-1}, computed once per forward and shared by the norm gate and Skip-Conv
        if have_prev and isinstance(self.gate, NormGate) and (self.mask_mode == "off" or refresh):
            with torch.no_grad():  # calibration reads norms even on dense passes
                self.last_norm = self.gate.residual_norm(x, st.prev_in, grid, conv)

        if self.gate is None:  # method "dense": count only, keep no state
            self._count(dense_macs, dense_macs, 0, gated=False, px_all=B * Ho * Wo)
            self.last_path = "dense"
            return conv(x)
        if not have_prev or refresh or self.mask_mode == "off":
            y = conv(x)
            self._count(dense_macs, dense_macs, 0, gated=False, px_all=B * Ho * Wo)
            self.last_path = "dense"
            return self._remember(x, y)

        if self.residual or (isinstance(self.gate, NormGate) and self.gate.variant == "input"):
            diff = x - st.prev_in
        if self.mask_mode == "complement":  # PASS-P negative: the complement of this layer's positive mask
            g, gate_macs = self._complement(grid), 0
        else:
            g, gate_macs = self._leader_decision(x, grid) if self._leader else self._run_gate(x, st.prev_in, grid, diff)
            if self.mask_mode == "normal":
                self.positive = g
        self.last, self.last_norm = g, g.norm
        # (B, Hp, Wp), 1 = skip. A gate that made no decision (GateOut.active False) has nothing to invert: its
        # layer computes everything in the inverted pass too, as in the complement pass (``_complement``).
        mask = 1.0 - g.mask if self.mask_mode == "inverted" and g.active else g.mask
        compute = mask.detach() < 0.5  # (B, Hp, Wp) bool, True = compute (sparse_conv2d's polarity)
        n_act, n_tot = int(compute.sum()), compute.numel()
        # Skipped output pixels: each patch's area (edge patches partial), without upsampling the mask.
        if Ho % p == 0 and Wo % p == 0:  # every patch whole: no tensor op, no second host sync
            px_skip = (n_tot - n_act) * p * p
        else:
            px_skip = int((~compute * patch_area(p, Ho, Wo, x.device)).sum())  # int64: exact in any dtype

        path = self._choose(x, mask, n_act / n_tot)
        self.last_path = path
        # what the block-sparse kernel computes for this mask, whichever path runs (Eq. 3 with halo/edges)
        mask_macs = sparse_equivalent_macs(conv, (Ho, Wo), B, n_act, n_tot, p)
        undecided = not g.active and not self.residual
        if path != "reference" and (undecided or self._state_is_ref):
            if undecided:
                # The gate does not decide on this grid (a PASS grid under min_patches, fixed per stream): a
                # dense layer whose state values are never read (the gate does not run, every patch is
                # computed), so the state keeps references instead of two full-map copies. Same counts.
                y = conv(x)
                self.last_path = "dense"
                self._count(dense_macs, dense_macs, gate_macs, gated=True, px=B * Ho * Wo, px_skip=px_skip,
                            mask_macs=mask_macs)
                self.state = StreamState(x.detach(), y.detach(), st.t + 1)
                self._prev_is_ref = self._state_is_ref = self._out_is_ref = True
                self._mark_stored(x)
                return y
            # the gate decides now, but the state holds references (it did not decide before, e.g. its
            # min_patches changed mid-stream): their values may be stale, so this frame runs dense
            y = conv(x)
            self.last, self.last_norm, self.last_path = None, None, "dense"
            self._count(dense_macs, dense_macs, 0, gated=False, px_all=B * Ho * Wo)
            self.state = StreamState(None, None, st.t)
            self._prev_is_ref = self._state_is_ref = False
            return self._remember(x, y)
        xin = diff if self.residual else x  # Skip-Conv: the conv runs on the residual
        if path == "reference":
            mu = upsample(mask.unsqueeze(1), p, Ho, Wo)  # (B, 1, Ho, Wo), keeps the STE gradient
            if self.residual:
                d = F.conv2d(xin, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
                y = SelectSTE.apply(mu, st.prev_out, st.prev_out + d)
            else:
                y = SelectSTE.apply(mu, st.prev_out, conv(x))
            exe = mask_macs
        elif path == "sparse":
            # The stored output is this layer's private copy: update it in place (no clone of the
            # whole map), then hand the caller its own copy (it may modify it in place, e.g. ReLU), or
            # the map itself where the model only reads it or applies one idempotent activation
            # (alias_out: skip.aliasing; never for the residual form, which needs the raw map).
            own, exe = sparse_conv2d(xin, conv, st.prev_out, compute, p, residual=self.residual,
                                             inplace=self._owns_out())
            self._count(dense_macs, exe, gate_macs, gated=True, px=B * Ho * Wo, px_skip=px_skip, mask_macs=mask_macs)
            self._store(self._next_input(x, compute), own)
            return own if self.alias_out and not self.residual else own.clone()
        else:  # dense conv, hard blend: same output as sparse, dense cost
            if self.residual:
                d = F.conv2d(xin, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
                y = st.prev_out + d
            else:
                y = conv(x)
            exe = dense_macs  # the dense conv ran, whatever the mask (sparse books 0 when nothing is active)
            if self._owns_out() and blend_update_ok(y, st.prev_out):
                # skipped patches of y take prev_out, computed patches of prev_out take y: both then hold
                # the output, for one map copy in all (instead of a blend and a full copy into the state)
                y = blend_and_update(y, st.prev_out, compute, p)
                self._count(dense_macs, exe, gate_macs, gated=True, px=B * Ho * Wo, px_skip=px_skip,
                            mask_macs=mask_macs)
                self._store(self._next_input(x, compute), st.prev_out)
                return y
            # skipped patches take prev_out exactly (channels-last: copies only those pixels, instead of
            # upsampling the mask and a three-map where)
            y = blend_skipped(y, st.prev_out, compute, p)
        self._count(dense_macs, exe, gate_macs, gated=True, px=B * Ho * Wo, px_skip=px_skip, mask_macs=mask_macs)
        return self._remember(self._next_input(x, compute), y)

    def _leader_decision(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[GateOut, int]:
        """The mask the leader decided in this forward (``follow``), and 0 gate MACs. A leader that ran densely
        this frame (its first frame, a refresh, mask mode off) decided nothing: every patch is computed."""
        lead = self.leader
        clk = self.clock
        if clk is not None and clk.depth > 0 and lead._tick != clk.tick:
            raise RuntimeError(f"SkipConv2d '{self.name}' follows '{lead.name}', which has not run in this forward "
                               "before it: a leader must run before its followers")
        g = lead.last
        if g is None:
            z = x.new_zeros((x.shape[0], *grid))
            return GateOut(z, z), 0
        if tuple(g.mask.shape) != (x.shape[0], *grid):
            raise RuntimeError(f"SkipConv2d '{self.name}' follows '{lead.name}', but their output patch grids differ "
                               f"({tuple(grid)} against {tuple(g.mask.shape[1:])}, batch {x.shape[0]} against "
                               f"{g.mask.shape[0]}): a follower needs its leader's grid")
        return g, 0

    def _complement(self, grid: tuple[int, int]) -> GateOut:
        """1 - the mask of this layer's last ``normal`` (positive) gated forward, gradient included; a
        layer whose gate did not decide (``GateOut.active`` False) computes everything in both passes."""
        pos = self.positive
        if pos is None or tuple(pos.mask.shape[-2:]) != tuple(grid):
            raise RuntimeError(f"SkipConv2d '{self.name}': mask mode 'complement' needs a positive (mode 'normal') "
                               "gated forward of the same shape first")
        if not pos.active:
            return pos
        return GateOut(1.0 - pos.mask, 1.0 - pos.prob, pos.norm)

    def _next_input(self, x: torch.Tensor, compute: torch.Tensor) -> torch.Tensor:
        """The input to remember after a gated forward: ``x`` (reference "previous"), or ``x`` on the
        computed patches and the old reference elsewhere (reference "computed")."""
        if self.reference == "previous" or bool(compute.all()):
            return x
        sh, sw = self.conv.stride
        H, W = x.shape[-2:]
        m = upsample(compute.unsqueeze(1), (self.patch_size * sh, self.patch_size * sw), H, W)
        if m.shape[-2] < H or m.shape[-1] < W:  # input rows/cols beyond the patch grid: always refreshed
            m = F.pad(m, (0, W - m.shape[-1], 0, H - m.shape[-2]), value=True)
        return torch.where(m, x.detach(), self.state.prev_in)

    def _choose(self, x: torch.Tensor, mask: torch.Tensor, keep: float) -> str:
        wants_grad = torch.is_grad_enabled() and (
            mask.requires_grad or x.requires_grad or any(q.requires_grad for q in self.conv.parameters()))
        if self.execution == "reference" or self.training or wants_grad:
            return "reference"
        if self.execution == "sparse":
            return "sparse"
        return dispatch.choose_path(self.conv, tuple(x.shape), keep, self.patch_size)

    def _count(self, dense: int, exe: int, gate: int, gated: bool, px: int = 0, px_skip: int = 0,
               px_all: int | None = None, mask_macs: int | None = None) -> None:
        s = self.stats
        s.px_total += px if px_all is None else px_all
        s.mask_macs += exe if mask_macs is None else mask_macs
        s.frames += 1
        s.gated_frames += int(gated)
        s.dense_macs += dense
        s.executed_macs += exe
        s.gate_macs += gate
        s.px_gated += px
        s.px_skipped += px_skip

    def _remember(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Private copies: later layers may modify activations in place (ReLU(inplace=True), +=).
        st = self.state
        out = self._copy_into(None if self._out_is_ref else st.prev_out, y)
        self.state = StreamState(self._keep_input(st.prev_in, x), out, st.t + 1)
        self._out_is_ref = False
        self._mark_stored(x)
        return y

    def _store(self, x: torch.Tensor, own_out: torch.Tensor) -> None:
        """Keep ``own_out`` (already private to this layer) and a copy of ``x`` as the new state."""
        st = self.state
        self.state = StreamState(self._keep_input(st.prev_in, x), own_out.detach(), st.t + 1)
        self._out_is_ref = False
        self._mark_stored(x)

    def _reads_prev_input(self) -> bool:
        """Whether anything reads the *values* of ``state.prev_in``: the gate (PASS, norm and Gumbel gates
        compare X_t with it; a gate says otherwise with ``reads_prev = False``), the Skip-Conv residual
        form, reference "computed", the norm-gate calibration."""
        if self._leader and not isinstance(self.gate, NormGate):  # a follower runs no gate (a norm gate calibrates)
            return self.residual or self.reference != "previous"
        return self.residual or self.reference != "previous" or getattr(self.gate, "reads_prev", True)

    def _keep_input(self, buf: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """The new ``prev_in``: a private copy of ``x`` (into ``buf`` when possible), or, when nothing reads
        its values (``_reads_prev_input``: e.g. the random-mask baseline), ``x`` itself: then it only marks
        that a previous frame exists and its shape, and the full-map copy per layer and frame is saved."""
        if not self._reads_prev_input():
            self._prev_is_ref = True
            return x.detach()
        if getattr(self, "_prev_is_ref", False):  # buf is someone else's tensor: never write into it
            self._prev_is_ref, buf = False, None
        return self._copy_into(buf, x)

    def _mark_stored(self, x: torch.Tensor) -> None:
        """Record which input object this forward stored as ``prev_in`` (gate stacking needs to know that
        several layers hold copies of one tensor)."""
        clk = self.clock
        self.stored = (clk.tick, self.state, id(x)) if clk is not None and clk.depth > 0 else None

    def _owns_out(self) -> bool:
        """Whether this frame may update ``state.prev_out`` in place (it is this layer's own copy)."""
        return not self._out_is_ref and self._can_reuse(self.state.prev_out)

    @staticmethod
    def _can_reuse(buf: torch.Tensor | None) -> bool:
        # Writing into a kept buffer is only allowed where autograd is off and the buffer's
        # inference-mode flag matches the current mode (PyTorch refuses other in-place writes).
        return (buf is not None and not torch.is_grad_enabled()
                and buf.is_inference() == torch.is_inference_mode_enabled())

    def _copy_into(self, buf: torch.Tensor | None, src: torch.Tensor) -> torch.Tensor:
        """A private copy of ``src``, written into ``buf`` when possible: reusing the buffer avoids a
        fresh allocation (and its page faults) per layer and frame, a large part of the wrapper's
        cost on CPU."""
        if (self._can_reuse(buf) and buf.shape == src.shape and buf.dtype == src.dtype
                and buf.device == src.device and buf.stride() == src.stride()):
            return buf.copy_(src)
        return src.detach().clone()


def _remap_dense_keys(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
    """Let a dense checkpoint's ``<layer>.weight`` / ``<layer>.bias`` load into ``<layer>.conv.*``."""
    for k in ("weight", "bias"):
        old = prefix + k
        if old in state_dict and prefix + "conv." + k not in state_dict:
            state_dict[prefix + "conv." + k] = state_dict.pop(old)
