"""Gates: per-patch skip decisions for one convolution (mask 1 = skip, 0 = compute; the PASS paper's
convention). Every gate maps the layer's current and previous input to a ``GateOut``.

* ``PassGate``: PASS (Zhou et al., AAAI-23, "Construction of Binary Mask Gate", Fig. 2): patch
  embedding of concat(X_t, X_{t-1}), stacked ConvMixer blocks, patch classifier, Gumbel
  Normalization (Eq. 4), Bernoulli sampling (Eq. 5) with a straight-through estimator.
* ``NormGate``: Skip-Convolutions (Habibian et al., CVPR-21) magnitude gate on the residual.
* ``GumbelGate``: Skip-Convolutions' learned gate (small conv on the residual's magnitude, block max,
  Gumbel sigmoid, STE).
* ``FixedGate``: a seeded random mask at a fixed keep fraction (benchmarks, the random floor baseline).
* ``KeyframeGate``: whole key frames computed, everything else reused (the keyframe floor baseline).

Geometry: a gate is built for one layer; the layer's output patch of ``p`` output pixels covers
``p_in = p * stride`` input pixels, so every gate works on input patches of ``p_in`` (the PASS
patch embedding has kernel = stride = ``p_in``). Frames whose size is not a multiple of ``p_in``
get partial edge patches: the input is zero-padded (both X_t and X_{t-1}, so the residual there is
0) up to the grid the wrapper asks for, ``(ceil(Ho / p), ceil(Wo / p))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from passbench.registry import Registry
from passbench.skip import fastgate as _fastgate

GATES = Registry("gates")

__all__ = [
    "GATES",
    "GateOut",
    "PassGate",
    "NormGate",
    "GumbelGate",
    "FixedGate",
    "KeyframeGate",
    "PASS_PAPER_GATE",
    "gumbel_noise",
    "gumbel_normalization",
    "topk_ste",
    "bernoulli_ste",
    "fit_grid",
    "decide_stacked",
]


@dataclass
class GateOut:
    """What a gate returns for one forward.

    Attributes:
        mask: (B, Hp, Wp) float in {0, 1}, 1 = skip. In training it carries the straight-through
            gradient of ``prob`` (forward value: the hard 0/1 sample; backward: d prob).
        prob: (B, Hp, Wp) skip probability in [0, 1] (differentiable where the gate is learned).
        norm: (B, Hp, Wp) per-patch residual magnitude (norm gates only), else None.
        active: False when the gate made no decision (a PASS grid under ``min_patches``: all zeros).
    """

    mask: torch.Tensor
    prob: torch.Tensor
    norm: torch.Tensor | None = None
    active: bool = True


def fit_grid(x: torch.Tensor, p_in: int, grid: tuple[int, int]) -> torch.Tensor:
    """Zero-pad (or crop) ``x`` (B, C, H, W) to exactly ``grid`` patches of ``p_in`` pixels.

    Returns:
        (B, C, grid[0] * p_in, grid[1] * p_in).
    """
    th, tw = grid[0] * p_in, grid[1] * p_in
    h, w = x.shape[-2:]
    x = x[..., : min(h, th), : min(w, tw)]
    if h < th or w < tw:
        x = F.pad(x, (0, max(0, tw - w), 0, max(0, th - h)))
    return x


def patch_mean(x: torch.Tensor, p_in: int, grid: tuple[int, int]) -> torch.Tensor:
    """Mean of ``x`` (B, C, H, W) over channels and each input patch -> (B, Hp, Wp).

    Partial edge patches are averaged over their real pixels only (zero padding is divided out).
    """
    s = F.avg_pool2d(fit_grid(x.mean(1, keepdim=True), p_in, grid), p_in)  # (B, 1, Hp, Wp)
    if x.shape[-2] >= grid[0] * p_in and x.shape[-1] >= grid[1] * p_in:
        return s[:, 0]  # no zero padding: every patch is whole
    ones = fit_grid(torch.ones_like(x[:, :1]), p_in, grid)  # (B, 1, Hg, Wg)
    frac = F.avg_pool2d(ones, p_in).clamp_min(1e-12)
    return (s / frac)[:, 0]


def gumbel_noise(shape, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """eps = -ln(-ln u), u ~ Uniform(0, 1) (PASS, text before Eq. 4; Jang et al. 2017)."""
    # Drawn and clamped in float32 (float64 stays float64), then cast: in float16 / bfloat16 the lower bound
    # 1e-10 underflows to 0, and a draw of exactly 0 (about 1 in 2048 in float16) gave -inf noise and a NaN
    # Gumbel Normalization. float32 and float64 draws are unchanged by this.
    work = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    u = torch.rand(shape, generator=generator, device=like.device, dtype=work)
    u = u.clamp(1e-10, 1.0 - 1e-7)  # keep both logs finite
    return (-torch.log(-torch.log(u))).to(like.dtype)


def gumbel_normalization(x: torch.Tensor, noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """PASS Gumbel Normalization (Eq. 4): X^ = X + eps, then per-sample min-max to [0, 1].

    Eq. 4 also divides by a temperature tau (X^ = (X + eps) / tau). Under the min-max that follows,
    tau cancels exactly ((a / tau - b / tau) / (c / tau - b / tau) = (a - b) / (c - b)), so it is not a
    parameter here (tests/test_skip_gates.py checks the cancellation). The authors' code
    (kimihe/MaskGate, ``GumbelSigmoid.normalize_to_one``) takes min and max over the whole batch tensor;
    here per sample, because batch rows are independent streams.

    Args:
        x: (B, ...) logits; min and max are taken per sample over all other dims (the patch grid).
        noise: add Gumbel noise (training); False at inference (deterministic).

    Returns:
        Same shape as ``x``, values in [0, 1]. A sample whose values are all equal maps to 0.5
        (the paper leaves 0/0 undefined; 0.5 is the uninformative value).
    """
    xh = x + gumbel_noise(x.shape, x, generator) if noise else x
    flat = xh.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    rng = hi - lo
    out = torch.where(rng > 0, (flat - lo) / rng.clamp_min(1e-12), torch.full_like(flat, 0.5))
    return out.view_as(x)


def bernoulli_ste(prob: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PASS Eq. 5 with a straight-through estimator: forward Bernoulli(prob), backward d prob."""
    hard = torch.bernoulli(prob.detach(), generator=generator)
    return hard + (prob - prob.detach())  # exactly 0/1 forward (x - x == 0)


def threshold_ste(prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """Deterministic hard decision (prob > threshold -> 1) with a straight-through gradient."""
    hard = (prob.detach() > threshold).to(prob.dtype)
    return hard + (prob - prob.detach())  # exactly 0/1 forward (x - x == 0)


def topk_ste(score: torch.Tensor, rate: float) -> torch.Tensor:
    """Skip exactly ``round(rate * n)`` of the ``n`` patches of each sample: those with the highest score.

    Args:
        score: (B, Hp, Wp) skip scores (any monotone transform of the logits gives the same mask).
        rate: fraction in [0, 1] of patches to skip.

    Returns:
        (B, Hp, Wp) hard 0/1 mask (1 = skip) carrying the straight-through gradient of ``score``.
        Ties are broken by ``torch.topk`` (deterministic on CPU for a given input).
    """
    flat = score.detach().flatten(1)  # (B, n)
    k = int(round(float(rate) * flat.shape[1]))
    hard = torch.zeros_like(flat)
    if k > 0:
        hard.scatter_(1, flat.topk(k, dim=1).indices, 1.0)
    hard = hard.view_as(score)
    return hard + (score - score.detach())


class _MixerBlock(nn.Module):
    """ConvMixer block (Trockman & Kolter 2022), as PASS Fig. 2 describes it: depthwise conv + act +
    BN with a residual around the depthwise part, then pointwise 1x1 + act + BN."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim),
                                nn.GELU(), nn.BatchNorm2d(dim))
        self.pw = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, Hp, Wp)
        return self.pw(x + self.dw(x))


PASS_HEADS = ("patch", "linear")
PASS_RULES = ("topk", "threshold")


@GATES.register("pass")
class PassGate(nn.Module):
    """The PASS binary-mask gate (Zhou et al., AAAI-23, Fig. 2).

    Trunk (as the paper and the authors' ``MaskGate``): patch embedding Conv(2 Cin -> C, kernel = stride
    = p_in) + GELU + BN of concat(X_t, X_{t-1}), then ``depth`` ConvMixer blocks. Two classifier heads:

    * ``head="patch"`` (passbench default, resolution-agnostic): a per-patch classifier, 1x1 convs
      C -> hidden -> 1 on the patch grid. Deviation from the paper, so that one gate serves videos of
      any size and keeps the patch's position in its own features.
    * ``head="linear"`` (the paper's "two linear layers for affine transformation", as the authors'
      code builds it): global average pooling, Linear(C, hidden=4096), Linear(hidden, Hp * Wp), no
      activation between them. Tied to the patch grid ``grid`` it was built for.

    The paper's sizes are C = 64-256, 2-16 blocks; the authors' code defaults to C = 256, 4 blocks,
    depthwise kernel 9, hidden 4096 (``PASS_PAPER_GATE``).

    Decisions (1 = skip):

    * training: Gumbel Normalization (Eq. 4, min-max per sample) then Bernoulli sampling (Eq. 5) with a
      straight-through estimator, as the paper;
    * inference, ``rule="topk"`` (passbench default): skip the ``round(rate * n)`` highest-scoring patches,
      ``rate`` = the layer's mean skip probability in training (``passbench.train`` measures it on the
      training split after pre-training and stores it). Deviation: the paper thresholds the noise-free
      min-max scores at 0.5, which skips a different fraction than training sampled (measured per layer:
      0.13 vs 0.39, 0.99 vs 0.59); top-k makes each layer skip at inference what it skipped in training;
    * inference, ``rule="threshold"``: the paper's rule, normalised score > ``threshold``.

    Gate resolution (``pool``, a passbench variant, not the paper's gate): with ``pool = s > 1`` the gate
    average-pools concat(X_t, X_{t-1}) by s before the patch embedding, whose kernel = stride becomes
    p_in / s: the embedding (nearly all of a gate's MACs) costs s^2 times less, the mixer and head are
    unchanged (same patch grid, one decision per patch as before). It equals a full-resolution gate whose
    embedding weight is constant over each s x s block of a patch. ``pool = 1`` is the paper's gate.

    Grids of fewer than ``min_patches`` patches are never gated (the gate does not run, nothing is
    skipped): per-sample min-max always maps one patch to 1 and one to 0, so on a 1x2 grid the paper's
    rule skips exactly one patch whatever the content.

    Args:
        in_channels: Cin of the gated layer's input (the gate sees 2 * Cin channels).
        patch_in: input patch size p_in = output patch * stride (kernel = stride of the embedding).
        embed_dim: C. depth: ConvMixer blocks. kernel_size: depthwise kernel (odd).
        hidden: hidden units of the classifier (64 for the patch head, 4096 for the linear head).
        rule: "topk" or "threshold" (inference only).
        rate: skip fraction for ``rule="topk"``; None = not calibrated yet (inference raises).
        threshold: normalised-score threshold for ``rule="threshold"``.
        head: "patch" or "linear". grid: (Hp, Wp), required for ``head="linear"``.
        min_patches: smaller grids are never gated.
        pool: gate resolution divisor s (must divide ``patch_in``); 1 = the paper's full-resolution gate.
    """

    def __init__(self, in_channels: int, patch_in: int, embed_dim: int = 64, depth: int = 2,
                 kernel_size: int = 3, hidden: int | None = None, rule: str = "topk", rate: float | None = None,
                 threshold: float = 0.5, head: str = "patch", grid: tuple[int, int] | None = None,
                 min_patches: int = 16, pool: int = 1) -> None:
        super().__init__()
        if int(pool) != pool or pool < 1 or int(patch_in) % int(pool):
            raise ValueError(f"PassGate: pool must be a positive integer dividing the input patch size "
                             f"{patch_in}, got {pool!r}")
        if head not in PASS_HEADS:
            raise ValueError(f"PassGate: head must be one of {PASS_HEADS}, got {head!r}")
        if rule not in PASS_RULES:
            raise ValueError(f"PassGate: rule must be one of {PASS_RULES}, got {rule!r}")
        if depth < 1 or kernel_size % 2 == 0:
            raise ValueError(f"PassGate: need depth >= 1 and an odd kernel_size, got {depth}, {kernel_size}")
        self.patch_in, self.head_kind, self.rule, self.pool = int(patch_in), head, rule, int(pool)
        self.threshold, self.min_patches = float(threshold), int(min_patches)
        self.engine: str | None = None  # inference engine (skip.fastgate.ENGINES); None: PASSBENCH_GATE_ENGINE
        self._stack = None  # skip.fastgate.GateStack of this gate alone (built on first fast use)
        self.rate = None
        if rate is not None:
            self.set_rate(rate)
        k_emb = self.patch_in // self.pool  # patch embedding, K = S = P (at the gate's resolution)
        self.embed = nn.Sequential(nn.Conv2d(2 * in_channels, embed_dim, k_emb, stride=k_emb),
                                   nn.GELU(), nn.BatchNorm2d(embed_dim))
        self.blocks = nn.Sequential(*[_MixerBlock(embed_dim, kernel_size) for _ in range(depth)])
        if head == "linear":
            if grid is None:
                raise ValueError("PassGate(head='linear') needs grid=(Hp, Wp): the paper's classifier is "
                                 "built for one input resolution (pass input_shape to make_skippable)")
            self.grid = (int(grid[0]), int(grid[1]))
            hidden = 4096 if hidden is None else hidden
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(embed_dim, hidden),
                                      nn.Linear(hidden, self.grid[0] * self.grid[1]))
            for m in self.head:  # the authors' init (MaskGate.init_weights): N(0, 1e-3), zero bias
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=1e-3)
                    nn.init.zeros_(m.bias)
        else:
            self.grid = None
            hidden = 64 if hidden is None else hidden
            self.head = nn.Sequential(nn.Conv2d(embed_dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, 1, 1))

    def set_rate(self, rate: float) -> None:
        """The top-k skip fraction used at inference (``rule="topk"``)."""
        if not 0.0 <= float(rate) <= 1.0:
            raise ValueError(f"PassGate: rate must be in [0, 1], got {rate}")
        self.rate = float(rate)

    def gated(self, grid: tuple[int, int]) -> bool:
        """Whether this gate decides on a grid of this size (see ``min_patches``)."""
        return grid[0] * grid[1] >= self.min_patches

    def logits(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, Hp, Wp) patch logits for current / previous input (B, Cin, H, W)."""
        if self.grid is not None and tuple(grid) != self.grid:
            raise ValueError(
                f"PassGate(head='linear') was built for a {self.grid[0]}x{self.grid[1]} patch grid "
                f"(the paper's fixed-resolution classifier), got {grid[0]}x{grid[1]}; rebuild the gate "
                "for this resolution or use head='patch'")
        z = fit_grid(torch.cat([x, prev], 1), self.patch_in, grid)  # (B, 2Cin, Hp*p_in, Wp*p_in)
        if self.pool > 1:
            z = F.avg_pool2d(z, self.pool)  # the gate's resolution (see ``pool``)
        f = self.blocks(self.embed(z))  # (B, C, Hp, Wp)
        out = self.head(f)
        return out.view(x.shape[0], grid[0], grid[1])

    def inference_engine(self, x: torch.Tensor, prev: torch.Tensor, engine: str | None = None) -> str | None:
        """The ``skip.fastgate`` engine this call may use, or None for the reference ops (training,
        gradients wanted, the paper's linear head, or engine ``"eager"``)."""
        if self.training or self.head_kind != "patch":
            return None
        eng = engine or self.engine or _fastgate.default_engine()
        if eng == "eager":
            return None
        if torch.is_grad_enabled() and (x.requires_grad or prev.requires_grad
                                        or any(q.requires_grad for q in self.parameters())):
            return None
        return eng

    def fast_decide(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int], engine: str) -> GateOut:
        """The inference decision through ``skip.fastgate`` (this gate alone; see ``inference_engine``)."""
        if self._stack is None:
            self._stack = _fastgate.GateStack([self])
        logit = self._stack.logits(fit_grid(x, self.patch_in, grid), fit_grid(prev, self.patch_in, grid), engine)
        return decide_stacked([self], logit)[0]

    def forward(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int], group=None,
                engine: str | None = None, **_) -> GateOut:
        """Decide for one layer. ``group``: a callable ``(gate, x, prev, grid, engine) -> GateOut`` that
        may compute this gate stacked with others reading the same input (``SkipConv2d`` passes one);
        ``engine``: override ``self.engine`` for this call ("eager" = the reference ops)."""
        if not self.gated(grid):  # never skip; the gate costs nothing here
            zero = x.new_zeros((x.shape[0], *grid))
            return GateOut(zero, zero, active=False)
        eng = self.inference_engine(x, prev, engine)
        if eng is not None:  # same decisions as below, fewer ops (skip.fastgate; float caveat there)
            if self.rule == "topk" and self.rate is None:
                raise RuntimeError("PassGate(rule='topk') has no calibrated rate: pre-train it with passbench.train "
                                   "pass_p (which stores each layer's rate) or pass rates=... / rule='threshold'")
            if group is not None:
                return group(self, x, prev, grid, eng)
            return self.fast_decide(x, prev, grid, eng)
        logit = self.logits(x, prev, grid)
        if self.training:  # Eq. 4 with Gumbel noise, then Eq. 5 Bernoulli sampling + STE
            prob = gumbel_normalization(logit, noise=True)
            return GateOut(bernoulli_ste(prob), prob)
        prob = gumbel_normalization(logit, noise=False)
        if self.rule == "threshold":
            return GateOut(threshold_ste(prob, self.threshold), prob)
        if self.rate is None:
            raise RuntimeError("PassGate(rule='topk') has no calibrated rate: pre-train it with passbench.train "
                               "pass_p (which stores each layer's rate) or pass rates=... / rule='threshold'")
        return GateOut(topk_ste(prob, self.rate), prob)


def _minmax_normalization(flat: torch.Tensor) -> torch.Tensor:
    """``gumbel_normalization(x, noise=False)`` of (N, n) rows, bit for bit, in fewer ops (inference only:
    one ``aminmax`` instead of ``min`` + ``max``, a scalar ``where`` branch instead of ``full_like``)."""
    lo, hi = torch.aminmax(flat, dim=1, keepdim=True)
    rng = hi - lo
    return torch.where(rng > 0, (flat - lo) / rng.clamp_min(1e-12), 0.5)


def decide_stacked(gates: list[PassGate], logit: torch.Tensor) -> list[GateOut]:
    """Inference decisions of G PASS gates from their stacked logits (B, G, Hp, Wp), with the same ops
    per gate as ``PassGate.forward`` (noise-free Gumbel Normalization per sample and gate, then top-k or
    threshold), batched over the gates. Returns one ``GateOut`` per gate (mask / prob (B, Hp, Wp) views)."""
    B, G, hp, wp = logit.shape
    prob = _minmax_normalization(logit.reshape(B * G, hp * wp)).view(B, G, hp * wp)
    hard = torch.zeros_like(prob)
    n = hp * wp
    ks = [int(round(float(g.rate) * n)) if g.rule == "topk" else None for g in gates]
    if ks[0] is not None and len(set(ks)) == 1:  # every gate top-k with one k: one topk call
        if ks[0] > 0:
            flat, hflat = prob.view(B * G, n), hard.view(B * G, n)
            hflat.scatter_(1, flat.topk(ks[0], dim=1).indices, 1.0)
    else:
        for i, (g, k) in enumerate(zip(gates, ks)):
            if k is None:
                hard[:, i] = (prob[:, i] > g.threshold).to(prob.dtype)
            elif k > 0:
                hard[:, i].scatter_(1, prob[:, i].topk(k, dim=1).indices, 1.0)
    mask = (hard + (prob - prob)).view(B, G, hp, wp)  # the STE forward value, NaN where prob is NaN
    prob = prob.view(B, G, hp, wp)
    return [GateOut(mask[:, i], prob[:, i]) for i in range(G)]


# The authors' gate sizes (kimihe/MaskGate ``MaskGate`` defaults): embedding 256, 4 mixer blocks,
# depthwise kernel 9, linear head with 4096 hidden units.
PASS_PAPER_GATE = {"embed_dim": 256, "depth": 4, "kernel_size": 9, "hidden": 4096, "head": "linear"}


@GATES.register("norm")
class NormGate(nn.Module):
    """Skip-Convolutions norm gate (Habibian et al., CVPR-21, "norm gates"): skip a patch where the
    residual magnitude is below ``threshold``.

    The magnitude is the mean absolute value over channels and the patch (an L1 mean; Skip-Conv
    uses an Lp norm of the residual, any monotone norm calibrated by threshold works alike):

    * ``variant="input"``: |X_t - X_{t-1}| on the input patch (p_in pixels);
    * ``variant="output"``: |W * (X_t - X_{t-1})| on the output patch (costs a dense conv of the
      residual, counted in the gate MACs).
    """

    def __init__(self, patch_in: int, patch_out: int, threshold: float = 0.0, variant: str = "input") -> None:
        super().__init__()
        if variant not in ("input", "output"):
            raise ValueError(f"NormGate: variant must be 'input' or 'output', got {variant!r}")
        self.patch_in, self.patch_out, self.variant = int(patch_in), int(patch_out), variant
        self.threshold = float(threshold)

    def residual_norm(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int],
                      conv: nn.Conv2d | None = None, diff: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Hp, Wp) mean |residual| per patch (``diff`` = x - prev when the caller has it)."""
        r = x - prev if diff is None else diff
        if self.variant == "output":
            if conv is None:
                raise ValueError("NormGate(variant='output') needs the layer's conv")
            r = F.conv2d(r, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
            return patch_mean(r.abs(), self.patch_out, grid)
        return patch_mean(r.abs(), self.patch_in, grid)

    def forward(self, x, prev, grid, conv=None, diff=None, **_) -> GateOut:
        norm = self.residual_norm(x, prev, grid, conv, diff)
        # Compare in float64: a threshold such as nextafter(0, inf) would round to 0 in float32.
        mask = (norm.double() < self.threshold).to(x.dtype)
        return GateOut(mask, mask, norm)


@GATES.register("gumbel")
class GumbelGate(nn.Module):
    """Skip-Convolutions learned gate (Habibian et al., CVPR-21, "gating functions", Eq. 8), as the authors'
    code builds it (``Qualcomm-AI-research/Skip-Conv`` ``lib/gates.py`` / ``lib/skip_conv.py``): a conv to
    one channel on the residual's **magnitude** ``|X_t - X_{t-1}|``, its logits **max-pooled** over each block
    (block = patch), a Gumbel sigmoid in training with a straight-through hard decision, and
    sigmoid > 0.5 at inference.

    On the magnitude, a change and its opposite get the same decision (a gate on the signed residual is
    linear in it, so swapping the two frames would flip its probabilities to their complements); the max
    over the block computes a patch as soon as any of its pixels asks for it.

    Skip-Conv's gate outputs the probability to *compute*; here ``prob`` is the skip probability
    ``1 - sigmoid(logit)`` to keep one convention. Deviations from the authors' code, each for a reason:

    * the conv is k x k at stride 1 on the input grid and the block is the layer's input patch (``p_in``
      pixels), where the authors run it with the layer's own kernel / stride / padding on the output grid
      and pool ``structure`` output pixels: the same block, and the gate costs no more on a strided layer;
    * training noise is logistic (the difference of two Gumbel samples, the binary Concrete of Maddison et
      al. 2017), where the authors add one Gumbel sample (a biased logistic);
    * the bias starts at ``init_bias`` = 3 (a fresh gate computes ~95 % of patches) where the authors start at
      0.6 (~65 %); the weight is Xavier-uniform as theirs;
    * ``monotone=True`` (default): the conv's effective weights are ``|w|``, so a larger change never lowers
      a patch's compute logit. The authors train on clips whose skipped residuals accumulate (their
      ``cumsum`` over time), which penalises skipping large changes; passbench trains the gates on
      one-step pairs, where the budget term's gradient on a weight is proportional to ``|r|`` and drives
      the weights negative: unconstrained gates trained so (``monotone=False``, the authors' free conv)
      ended with all 576 weights of ``wh.0`` and 99 % of ``neck.proj.3``'s negative, i.e. they skipped
      where the input changed most, and without a dense refresh they scored -42.8 MOTA at 38.5 % skip
      (``configs/ablation/skipconv_gumbel_free_*``);
    * ``threshold``: inference skips where prob > threshold (0.5 = the paper's rule; other values move the
      operating point without retraining).
    """

    def __init__(self, in_channels: int, patch_in: int, kernel_size: int = 3, tau: float = 2.0 / 3.0,
                 init_bias: float = 3.0, threshold: float = 0.5, monotone: bool = True) -> None:
        super().__init__()
        self.patch_in, self.tau, self.threshold = int(patch_in), float(tau), float(threshold)
        self.monotone = bool(monotone)
        self.proj = nn.Conv2d(in_channels, 1, kernel_size, padding=kernel_size // 2)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.constant_(self.proj.bias, init_bias)

    def logits(self, x: torch.Tensor, prev: torch.Tensor, grid: tuple[int, int],
               diff: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Hp, Wp) compute logits: the conv of ``|x - prev|``, max over each patch."""
        r = fit_grid((x - prev if diff is None else diff).abs(), self.patch_in, grid)
        w = self.proj.weight.abs() if self.monotone else self.proj.weight
        z = F.conv2d(r, w, self.proj.bias, padding=self.proj.padding)  # (B, 1, Hp * p_in, Wp * p_in)
        return F.max_pool2d(z, self.patch_in)[:, 0]

    def forward(self, x, prev, grid, diff=None, **_) -> GateOut:
        logit = self.logits(x, prev, grid, diff)
        if self.training:
            g = gumbel_noise(logit.shape, logit) - gumbel_noise(logit.shape, logit)  # logistic noise
            p_compute = torch.sigmoid((logit + g) / self.tau)
        else:
            p_compute = torch.sigmoid(logit)
        prob = 1.0 - p_compute
        # Skip-Conv skips where sigmoid(logit) < 0.5, i.e. skip prob > 0.5; ``threshold`` moves that point
        # at inference (passbench's operating-point knob; training always samples).
        return GateOut(threshold_ste(prob, 0.5 if self.training else self.threshold), prob)


@GATES.register("fixed")
class FixedGate(nn.Module):
    """Random mask at a fixed keep (compute) fraction, reproducible from ``seed``: each call draws
    the next mask of one torch.Generator stream. For benchmarks and tests, not a method."""

    reads_prev = False  # the mask ignores X_{t-1}: the wrapper need not copy it (SkipConv2d._keep_input)

    def __init__(self, keep: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"FixedGate: keep must be in [0, 1], got {keep}")
        self.keep, self.seed = float(keep), int(seed)
        self.gen = torch.Generator().manual_seed(self.seed)

    def reset(self) -> None:
        self.gen.manual_seed(self.seed)

    def forward(self, x, prev, grid, **_) -> GateOut:
        u = torch.rand((x.shape[0], *grid), generator=self.gen)  # CPU generator: same masks on any device
        mask = (u >= self.keep).to(device=x.device, dtype=x.dtype)
        return GateOut(mask, mask)


@GATES.register("keyframe")
class KeyframeGate(nn.Module):
    """Floor baseline: compute whole frames at evenly spaced key frames and skip every patch of the
    others (each layer reuses its key-frame output), so a fraction ``rate`` of the gated frames is
    skipped. Gated call t (1, 2, ... after a reset; the stream's frame 0 is dense in the wrapper) is a
    key frame iff floor(t (1 - rate)) > floor((t - 1) (1 - rate)): rate 0.5 keys every 2nd frame,
    0.75 every 4th, 0.2 four frames in five. Every layer sees the same call sequence, so all layers
    key on the same frames. Not a learned method: the floor a skipping method must beat."""

    reads_prev = False  # decides from the frame count alone

    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"KeyframeGate: rate must be in [0, 1], got {rate}")
        self.rate, self.t = float(rate), 0

    def reset(self) -> None:
        self.t = 0

    def is_key(self, t: int) -> bool:
        keep = 1.0 - self.rate
        return math.floor(t * keep + 1e-9) > math.floor((t - 1) * keep + 1e-9)

    def forward(self, x, prev, grid, **_) -> GateOut:
        self.t += 1
        value = 0.0 if self.is_key(self.t) else 1.0
        mask = x.new_full((x.shape[0], *grid), value)
        return GateOut(mask, mask)
