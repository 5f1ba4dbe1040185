"""PASS gate stacking: the layers of one model whose gates read the same input run them as one computation.

``make_skippable`` gives every wrapped layer of a model one ``ForwardClock`` (a forward pre-hook and
an always-called forward hook on the model): it counts the model's forwards, so that a layer tells a
second call within one forward (a shared conv, refused) from the next frame, and it holds the model's
``GateGroups``, which stack the PASS gates of layers fed by one tensor (``skip.fastgate.GateStack``;
on the light model the four heads' first convs all read the neck output).
"""

from __future__ import annotations

import torch
from torch import nn

from passbench.skip import fastgate
from passbench.skip.gates import GateOut, PassGate, decide_stacked, fit_grid

__all__ = ["ForwardClock", "GateGroups"]


class ForwardClock:
    """Counts the forwards of a model made skippable (a forward pre-hook and an always-called forward
    hook on it and on every module that holds a wrapped layer, so that a submodule called directly counts
    as a forward too), so each ``SkipConv2d`` can tell a second call within one forward (a shared conv)
    from the next frame. ``depth`` > 0 while such a forward runs; a new forward starts when ``depth`` goes
    from 0 to 1. ``groups``: the model's PASS gate stacking (``GateGroups``)."""

    def __init__(self) -> None:
        self.tick, self.depth = 0, 0
        self.groups = GateGroups()

    def enter(self, module: nn.Module, args: tuple) -> None:
        self.depth += 1
        if self.depth == 1:
            self.tick += 1
            self.groups.new_tick(self.tick)

    def leave(self, module: nn.Module, args: tuple, out: object) -> None:
        self.depth = max(0, self.depth - 1)


class GateGroups:
    """Which PASS-gated layers read the same input tensor, so that their gates run as one stacked
    computation (``skip.fastgate``) instead of one per layer (on the light model: the four heads'
    first convs all read the neck output).

    Forward t observes, per layer, the input object it was called with. In forward t + 1, layers that
    were called with one object in forward t and have not updated or replaced their state since form a
    group: their stored previous inputs are copies of that one tensor, so one X_{t-1} serves them all. When
    the first member asks for its gate, every member's gate is computed on (its X_t, X_{t-1}); a member
    takes the stored result only if it is then called with that very X_t object (else it computes alone).
    Only layers with reference "previous", mask mode "normal" and a fast-engine PASS gate take part;
    every other case runs each gate alone, so the decisions are those of the unstacked gates.
    """

    def __init__(self) -> None:
        self.tick = -1
        self.seen: dict[int, tuple] = {}  # id(x) -> (x, [(layer, grid)]) in this tick (x held: ids unique)
        self.plan: dict[nn.Module, tuple] = {}  # layer -> members, from the previous tick
        self.results: dict[nn.Module, tuple] = {}  # layer -> (x, grid, prev, GateOut) computed this tick
        self._stacks: dict[tuple, fastgate.GateStack] = {}

    def new_tick(self, tick: int) -> None:
        plan: dict[nn.Module, tuple] = {}
        if tick == self.tick + 1:
            for x, calls in self.seen.values():
                buckets: dict[tuple, list] = {}
                for layer, grid in calls:
                    buckets.setdefault((grid, fastgate.signature(layer.gate)), []).append(layer)
                for (grid, _), layers in buckets.items():
                    if len(layers) > 1 and len(set(layers)) == len(layers):
                        members = tuple(layers)
                        for m in members:
                            plan[m] = (members, grid, self.tick, id(x))
        self.plan, self.seen, self.results, self.tick = plan, {}, {}, tick

    def observe(self, layer: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> None:
        ent = self.seen.get(id(x))
        if ent is None:
            self.seen[id(x)] = (x, [(layer, grid)])
        else:
            ent[1].append((layer, grid))

    def members(self, layer: nn.Module, grid: tuple[int, int]) -> tuple | None:
        """The group of ``layer`` for this tick if stacking is exact now, else None."""
        ent = self.plan.get(layer)
        if ent is None:
            return None
        members, g, prev_tick, xid = ent
        if g != grid:
            return None
        for m in members:  # each stored (in the last tick, from that one object) and untouched since
            st = m.stored
            if (st is None or st[0] != prev_tick or st[1] is not m.state or st[2] != xid or m.state.prev_in is None
                    or not m.stackable() or m.gate.training or (m.gate.rule == "topk" and m.gate.rate is None)):
                return None
        return members

    def stack(self, members: tuple) -> fastgate.GateStack:
        key = tuple(id(m) for m in members)
        st = self._stacks.get(key)
        if st is None or any(a is not b.gate for a, b in zip(st.gates, members)):
            st = self._stacks[key] = fastgate.GateStack([m.gate for m in members])
        return st

    def decide(self, layer: nn.Module, gate: PassGate, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int],
               engine: str) -> GateOut:
        """``layer``'s gate decision, computed together with every layer that read the same input tensor
        in the previous forward, or alone when that cannot be shown to be exact."""
        hit = self.results.pop(layer, None)
        if hit is not None and hit[0] is x and hit[1] == grid and hit[2] is prev:
            return hit[3]
        members = self.members(layer, grid)
        if members is None:
            return gate.fast_decide(x, prev, grid, engine)  # alone
        p_in = gate.patch_in
        logit = self.stack(members).logits(fit_grid(x, p_in, grid), fit_grid(prev, p_in, grid), engine)
        outs = decide_stacked([m.gate for m in members], logit)
        for m, o in zip(members, outs):
            if m is not layer:
                self.results[m] = (x, grid, m.state.prev_in, o)
        return outs[members.index(layer)]
