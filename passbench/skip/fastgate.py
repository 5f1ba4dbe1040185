"""Inference engine of PASS gates: the decisions of ``PassGate``'s forward with far fewer ops.

At inference a PASS gate (``skip.gates.PassGate``, head ``"patch"``) is ~30 small ops on a patch grid of
a few dozen cells (12x7 on the light model's stride-4 maps), so its time is per-op overhead (and, on a
loaded machine, thread wake-ups of oneDNN's small convs), not MACs (``scripts/profile_gates.py``,
``docs/engine-benchmark.md``). This module computes the same function as matrix products on the
(patches x channels) matrix of the grid:

* **Patch embedding as one GEMM per input.** The embedding conv (kernel = stride = p_in) of
  concat(X_t, X_{t-1}) is ``unfold(X_t) @ W_x + unfold(X_{t-1}) @ W_prev + b``: the concatenation is
  never built (its weight is split along the input channels instead).
* **BatchNorm as affine, folded where exact.** In eval mode each BN is ``y * a + b`` with
  ``a = w / sqrt(var + eps)``, ``b = bias - mean * a``. The mixer block's depthwise-BN shift moves into
  the pointwise conv's bias (a 1x1 conv has no padding: ``W (f + a g + b) + c = W (f + a g) + (c + W b)``
  exactly in real arithmetic), the last block's BN into the head's first 1x1 conv
  (``W1 (a g + b) + c1 = (W1 diag a) g + (c1 + W1 b)``); the BNs before a zero-padded depthwise conv
  (whose border taps would see ``b`` instead of 0) stay one ``addcmul`` each.
* **Stacking.** G gates of the same architecture that read the same input tensor (on the light model
  the four heads' gates all read the neck output) run as one computation: embedding weights
  concatenated along their outputs, one depthwise conv over all G*C channels, pointwise and head
  layers as one product with a block-diagonal weight (exact zeros off the diagonal blocks: each gate's
  outputs are sums over its own channels only, plus exact zeros, for finite features). Each gate's
  logits remain exactly its own function of (X_t, X_{t-1}): nothing is shared or retrained.
* **Compile** (optional, engine ``"compiled"``): ``stacked_logits`` through ``torch.compile`` (inductor,
  static shapes), which fuses the elementwise ops; its code is cached on disk (``.cache/inductor``
  unless ``TORCHINDUCTOR_CACHE_DIR`` is set) and any compile or run error falls back to the eager
  engine (warned once).

Float caveat: these ops round differently from the reference ops (other summation orders), so logits
differ from the eager gate's in the last bits (~1e-7 absolute on the light model's gates). A top-k or
threshold decision can only differ where two patch scores (or a score and the threshold) are that
close; exact ties (identical patches, e.g. zero padding) stay exact ties. ``tests/test_fastgate.py``
checks identical masks on the sample frames through the light model;
``set_gate_engine(model, "eager")`` or ``PASSBENCH_GATE_ENGINE=eager`` restores the reference ops.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ENGINES = ("eager", "fast", "compiled")
ENV = "PASSBENCH_GATE_ENGINE"


def default_engine() -> str:
    """The engine named by ``PASSBENCH_GATE_ENGINE`` (default ``"fast"``)."""
    eng = os.environ.get(ENV, "") or "fast"
    if eng not in ENGINES:
        raise ValueError(f"{ENV}={eng!r}: expected one of {ENGINES}")
    return eng


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) with ``bn(y) == y * a + b`` in eval mode; each (C,)."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return a, bn.bias - bn.running_mean * a


def signature(gate: nn.Module) -> tuple:
    """Architecture key: gates with equal keys can be stacked."""
    e = gate.embed[0]
    return (e.in_channels, e.out_channels, gate.patch_in, getattr(gate, "pool", 1), len(gate.blocks),
            gate.blocks[0].dw[0].kernel_size, gate.head[0].out_channels, e.weight.dtype, e.weight.device)


def _slots(gates) -> list[tuple[dict, str]]:
    """(dict, key) of every parameter and buffer of the gates, to re-read them without module walks."""
    return [(d, k) for g in gates for m in g.modules() for d in (m._parameters, m._buffers)
            for k, t in d.items() if t is not None]


def _param_version(slots: list[tuple[dict, str]]) -> tuple:
    """Changes whenever a parameter or buffer is replaced (id), written in place (``_version``: a
    ``load_state_dict``, an optimizer step) or given new storage (``data_ptr``: ``.data = ...``)."""
    return tuple((id(t), t._version, t.data_ptr()) for d, k in slots for t in (d[k],))


def _bias(c: nn.Conv2d) -> torch.Tensor:
    return c.bias.detach() if c.bias is not None else c.weight.new_zeros(c.out_channels)


def _block_diag(ws: list[torch.Tensor]) -> torch.Tensor:
    """Right-multiplied matrix of G 1x1 convs: weights (Cout_g, Cin_g, 1, 1) -> (sum Cin_g, sum Cout_g)."""
    return torch.block_diag(*[w.detach()[:, :, 0, 0].t() for w in ws]).contiguous()


@torch.no_grad()
def stack_params(gates: list[nn.Module]) -> dict:
    """Folded, stacked inference parameters of ``gates`` (``PassGate``, head "patch", one ``signature``).

    Returns a dict: ``wx``/``wp`` (p*p*Cin, G*C) embedding weights for X_t / X_{t-1}, rows in (row, col,
    channel) order of a channels-last patch; ``be``, ``ae``, ``ce`` (G*C,) embedding bias and BN affine;
    per block i: ``wd{i}`` (G*C, 1, k, k), ``bd{i}``, ``ad{i}`` (G*C,), ``wpw{i}`` (G*C, G*C) block-diagonal,
    ``bpw{i}`` (G*C,) (depthwise-BN shift folded in), ``ap{i}``/``cp{i}`` (all blocks but the last);
    ``w1`` (G*C, G*H), ``b1`` (last BN folded in), ``w2`` (G*H, G), ``b2`` (G,); ints ``G``, ``depth``,
    ``p`` (the embedding's kernel = stride), ``k``, ``pool`` (the gates' resolution divisor, ``PassGate``).
    """
    G = len(gates)
    cat = lambda ts: torch.cat([t.detach() for t in ts], 0)  # noqa: E731
    emb = [g.embed[0] for g in gates]
    cin = emb[0].in_channels // 2
    p = emb[0].kernel_size[0]
    we = cat([c.weight for c in emb])  # (G*C, 2Cin, p, p)
    out: dict = {"G": G, "depth": len(gates[0].blocks), "p": p, "k": gates[0].blocks[0].dw[0].kernel_size[0],
                 "pool": getattr(gates[0], "pool", 1)}
    out["wx"] = we[:, :cin].permute(2, 3, 1, 0).reshape(p * p * cin, -1).contiguous()
    out["wp"] = we[:, cin:].permute(2, 3, 1, 0).reshape(p * p * cin, -1).contiguous()
    out["be"] = cat([_bias(c) for c in emb])
    ae, ce = zip(*[_bn_affine(g.embed[2]) for g in gates])
    out["ae"], out["ce"] = cat(ae), cat(ce)
    depth = out["depth"]
    last = None
    for i in range(depth):
        dws = [g.blocks[i].dw[0] for g in gates]
        pws = [g.blocks[i].pw[0] for g in gates]
        ad, cd = zip(*[_bn_affine(g.blocks[i].dw[2]) for g in gates])
        ap, cp = zip(*[_bn_affine(g.blocks[i].pw[2]) for g in gates])
        out[f"wd{i}"], out[f"bd{i}"], out[f"ad{i}"] = cat([c.weight for c in dws]), cat([_bias(c) for c in dws]), cat(ad)
        out[f"wpw{i}"] = _block_diag([c.weight for c in pws])
        out[f"bpw{i}"] = cat([_bias(c) + c.weight.detach()[:, :, 0, 0] @ b.detach() for c, b in zip(pws, cd)])
        if i < depth - 1:
            out[f"ap{i}"], out[f"cp{i}"] = cat(ap), cat(cp)
        else:
            last = (ap, cp)
    h1 = [g.head[0] for g in gates]
    out["w1"] = _block_diag([c.weight.detach() * a.detach().view(1, -1, 1, 1) for c, a in zip(h1, last[0])])
    out["b1"] = cat([_bias(c) + c.weight.detach()[:, :, 0, 0] @ b.detach() for c, b in zip(h1, last[1])])
    h2 = [g.head[2] for g in gates]
    out["w2"], out["b2"] = _block_diag([c.weight for c in h2]), cat([_bias(c) for c in h2])
    return out


def unfold_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, Hp * p, Wp * p) -> (B * Hp * Wp, p * p * C): one row per patch, (row, col, channel) order."""
    B, C, H, W = x.shape
    t = x.permute(0, 2, 3, 1).reshape(B, H // p, p, W // p, p, C)
    return t.permute(0, 1, 3, 2, 4, 5).reshape(B * (H // p) * (W // p), p * p * C)


def stacked_logits(P: dict, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Logits of the G stacked gates.

    Args:
        P: ``stack_params`` output.
        x, prev: (B, Cin, Hp * p_in, Wp * p_in) current and previous input, already fitted to the grid
            (p_in = ``p * pool``; average-pooled by ``pool`` here, as ``PassGate.logits``).

    Returns:
        (B, G, Hp, Wp); channel g equals gate g's ``PassGate.logits`` up to float rounding.
    """
    p, G, k = P["p"], P["G"], P["k"]
    if P.get("pool", 1) > 1:
        x, prev = F.avg_pool2d(x, P["pool"]), F.avg_pool2d(prev, P["pool"])
    B, Hp, Wp = x.shape[0], x.shape[2] // p, x.shape[3] // p
    f = torch.addmm(P["be"], unfold_patches(x, p), P["wx"]).addmm_(unfold_patches(prev, p), P["wp"])
    f = torch.addcmul(P["ce"], F.gelu(f), P["ae"])  # (N, G*C): GELU, then the embedding BN
    gc = f.shape[1]
    for i in range(P["depth"]):
        d = F.conv2d(f.view(B, Hp, Wp, gc).permute(0, 3, 1, 2), P[f"wd{i}"], P[f"bd{i}"], 1, k // 2, 1, gc)
        u = torch.addcmul(f, F.gelu(d).permute(0, 2, 3, 1).reshape(-1, gc), P[f"ad{i}"])  # f + BN(act(dw f))
        f = F.gelu(torch.addmm(P[f"bpw{i}"], u, P[f"wpw{i}"]))
        if i < P["depth"] - 1:
            f = torch.addcmul(P[f"cp{i}"], f, P[f"ap{i}"])
    h = F.gelu(torch.addmm(P["b1"], f, P["w1"]))
    logit = torch.addmm(P["b2"], h, P["w2"])  # (N, G)
    return logit.view(B, Hp, Wp, G).permute(0, 3, 1, 2)


_COMPILED: dict = {}
RECOMPILE_LIMIT = 128  # distinct (stack, grid) shapes compiled per gate architecture before falling back
_COMPILE_FAILED: list[str] = []


def _cache_dir() -> None:
    """Inductor's on-disk cache under the checkout's ``.cache/inductor`` unless the user chose one."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        root = Path(__file__).resolve().parents[2] / ".cache" / "inductor"
        root.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root)


def compiled_logits(P: dict, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """``stacked_logits`` through ``torch.compile`` (inductor, static shapes); eager on any error."""
    if _COMPILE_FAILED:
        return stacked_logits(P, x, prev)
    ints = (P["G"], P["depth"], P["p"], P["k"], P.get("pool", 1))
    hit = _COMPILED.get(ints)
    if hit is None:
        _cache_dir()
        keys = sorted(k for k, v in P.items() if isinstance(v, torch.Tensor))

        def run(x, prev, *ts):
            return stacked_logits({**dict(zip(keys, ts)), "G": ints[0], "depth": ints[1], "p": ints[2],
                                   "k": ints[3], "pool": ints[4]}, x, prev)

        hit = _COMPILED[ints] = (torch.compile(run, dynamic=False, fullgraph=True), keys)
    fn, keys = hit
    try:
        # One graph per input shape (static shapes): a model gated on every conv has a dozen gate shapes, past
        # Dynamo's default recompile limit of 8 per function (every gate then fell back to eager, warned).
        with torch._dynamo.config.patch(recompile_limit=max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)):
            return fn(x, prev, *[P[k] for k in keys])
    except Exception as e:  # noqa: BLE001 - any backend failure: fall back, and say so once
        _COMPILE_FAILED.append(f"{type(e).__name__}: {e}")
        warnings.warn(f"passbench.skip.fastgate: torch.compile of the PASS gate failed ({type(e).__name__}: "
                      f"{str(e)[:300]}); using the eager fast engine", RuntimeWarning, stacklevel=2)
        return stacked_logits(P, x, prev)


class GateStack:
    """Folded, stacked parameters of a fixed list of PASS gates, rebuilt whenever a weight changes."""

    def __init__(self, gates: list[nn.Module]) -> None:
        self.gates = list(gates)
        self._slots = _slots(self.gates)
        self._version: tuple | None = None
        self._P: dict | None = None

    def params(self) -> dict:
        v = _param_version(self._slots)
        if v != self._version:
            self._P, self._version = stack_params(self.gates), v
        return self._P

    def logits(self, x: torch.Tensor, prev: torch.Tensor, engine: str) -> torch.Tensor:
        """(B, G, Hp, Wp) logits for grid-fitted inputs (see ``stacked_logits``), in the gates' own dtype:
        under ``torch.autocast`` (``--precision fp16|bf16``) the inputs are cast to it and autocast is off
        here, so a gate decides in float32 whatever the precision of the layers it gates."""
        P = self.params()
        dt = P["wx"].dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, prev = x.to(dt), prev.to(dt)
            return compiled_logits(P, x, prev) if engine == "compiled" else stacked_logits(P, x, prev)
