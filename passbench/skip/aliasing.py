"""Which wrapped layers may hand their caller the kept output itself instead of a private copy.

On the sparse path a ``SkipConv2d`` updates its kept output (``state.prev_out``) in place and hands the
caller a copy, because the model may modify the returned tensor in place (a folded conv is followed
directly by ``ReLU(inplace=True)``; a residual block adds its shortcut with ``+=``): without the copy the
next frame's skipped patches would reuse the modified values. The copy is one full output map per layer
and frame (on the plain-conv DLA-34 FairMOT 60 a frame, about 10 % of a skipped frame:
``scripts/profile_wrapper_overhead.py``, ``docs/engine-benchmark.md``).

It is not needed where what the model does to the output cannot change the next frame's result:

* nothing writes into the output (its readers are convs, pools, concatenations, out-of-place
  arithmetic), or
* the only write is one *idempotent elementwise* activation (``relu_``, ``hardtanh_`` / ReLU6,
  ``clamp_``: f(f(x)) = f(x)) that comes before any other read of the output in the frame. Then the kept
  map holds f(y) on the skipped patches; the next frame's computed patches are overwritten with fresh
  conv outputs, and the same activation applied again gives f(f(y_prev)) = f(y_prev) on the reused
  ones: the output is the same, bit for bit.

The Skip-Conv residual form (``prev_out + W (X_t - X_{t-1})``) needs the raw previous output: never
aliased. A returned tensor that leaves the model (a head output the caller may keep) is never aliased.

How it is decided (``probe_output_aliasing``): one forward of a *copy* of the model on an example input
under a ``TorchDispatchMode`` that sees every ATen op: each wrapped layer's returned tensor is tracked by
its storage (views included), every op that reads or writes it is classified by its schema (an argument
``alias_info.is_write``: a write; a view op: neither), and the model's outputs are checked for the
storage. The ops a model applies to a conv's output do not depend on the pixel values for the CNNs here
(no data-dependent control flow after a conv); a model whose graph does depend on them is outside what
the probe can promise, so aliasing is opt-in per model (``set_output_aliasing``), on in the runner
(``model.alias_outputs``) and the engine benchmarks, and ``tests/test_aliasing.py`` checks bit-identical
outputs over a stream with and without it on the FairMOT models.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from passbench.skip.control import reset, skippable_layers
from passbench.skip.state import StreamState

aten = torch.ops.aten
# elementwise, idempotent for any fixed arguments: f(f(x)) == f(x) bit for bit
IDEMPOTENT = {aten.relu_.default, aten.hardtanh_.default, aten.clamp_.default, aten.clamp_.Tensor,
              aten.clamp_min_.default, aten.clamp_max_.default}


def _storage(t: Any) -> int | None:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        return None
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some subclasses)
        return None


class _Watch(TorchDispatchMode):
    """Classifies every op touching a tracked storage: ``verdict[name]`` stays "ok" or becomes a reason."""

    def __init__(self) -> None:
        super().__init__()
        self.owner: dict[int, str] = {}  # storage -> layer name
        self.read: set[int] = set()  # storages read since they were returned
        self.written: dict[int, Any] = {}  # storage -> the idempotent op that wrote it
        self.verdict: dict[str, str] = {}

    def track(self, name: str, out: torch.Tensor) -> None:
        s = _storage(out)
        if s is not None:
            self.owner[s] = name
            self.verdict.setdefault(name, "ok")
            self.read.discard(s)
            self.written.pop(s, None)

    def _bad(self, s: int, why: str) -> None:
        name = self.owner[s]
        if self.verdict.get(name) == "ok":
            self.verdict[name] = why

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - the mode's protocol
        kwargs = kwargs or {}
        schema = func._schema
        is_view = any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
        named = dict(zip([a.name for a in schema.arguments], args))
        named.update(kwargs)
        for a in schema.arguments:
            flat, _ = tree_flatten(named.get(a.name))
            for t in flat:
                s = _storage(t)
                if s is None or s not in self.owner:
                    continue
                if a.alias_info is not None and a.alias_info.is_write:
                    if func not in IDEMPOTENT:
                        self._bad(s, f"written in place by {func} (not an idempotent activation)")
                    elif s in self.read:
                        self._bad(s, f"read before {func} wrote it (that reader would see reused activated values)")
                    elif s in self.written and self.written[s] is not func:
                        self._bad(s, f"written by {self.written[s]} and {func}")
                    else:
                        self.written[s] = func
                elif not is_view:
                    self.read.add(s)
        return func(*args, **kwargs)


def probe_output_aliasing(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """``{layer name: "ok" | why not}`` for every ``SkipConv2d`` of ``model`` (see the module docstring).

    Runs one forward of a deep copy of ``model`` on ``example`` under ``torch.no_grad``; ``model`` and its
    stream states are untouched. A layer the forward did not call, or whose output is a Skip-Conv residual
    layer's, gets its reason; so does any layer whose returned tensor is part of the model's output.
    """
    names = {m: n for n, m in skippable_layers(model)}
    # a fresh stream in the copy (each layer's first frame: the ops around the convs are those of every
    # frame); the original's stream tensors are not copied (they may be inference tensors, or large)
    memo: dict[int, Any] = {}
    for m in names:
        memo.update({id(m.state): StreamState(), id(m.last): None, id(m.positive): None, id(m.last_norm): None,
                     id(m.stored): None})
    twin = copy.deepcopy(model, memo)
    reset(twin)
    watch = _Watch()
    held: list[torch.Tensor] = []  # keep every tracked output alive: a freed storage could be reused
    hooks = []
    for n, m in skippable_layers(twin):
        def hook(mod, _inp, out, n=n):  # noqa: ANN001
            if isinstance(out, torch.Tensor):
                held.append(out)
                watch.track(n, out)
        hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad(), watch:
            out = twin(example)
    finally:
        for h in hooks:
            h.remove()
    for t in tree_flatten(out)[0]:
        s = _storage(t)
        if s is not None and s in watch.owner:
            watch._bad(s, "part of the model's output (the caller may keep it past the next frame)")
    result = {}
    for m, n in names.items():
        if m.residual:
            result[n] = "Skip-Conv residual form (needs the raw previous output)"
        else:
            result[n] = watch.verdict.get(n, "not called by the probe forward")
    return result


def set_output_aliasing(model: nn.Module, example: torch.Tensor | None = None, enabled: bool = True) -> dict[str, str]:
    """Let each wrapped layer the probe clears hand its kept output to the caller without a copy
    (``enabled``), or turn that off everywhere (``enabled=False``, ``example`` unused). Returns the probe's
    verdicts (``{}`` when turning off). Re-run it after anything that changes the graph around the convs
    (``fold_batchnorm`` replaces a BN, which reads the output, by the activation after it)."""
    layers = dict(skippable_layers(model))
    if not enabled:
        for m in layers.values():
            m.alias_out = False
        return {}
    if example is None:
        raise ValueError("set_output_aliasing: an example input is needed to probe the model")
    verdict = probe_output_aliasing(model, example)
    for n, m in layers.items():
        m.alias_out = verdict.get(n) == "ok"
    return verdict
