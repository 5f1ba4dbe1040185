"""PASS-P: task-independent gate pre-training (paper, "Task-Independent Pre-training for Gate").

For a pair ``(X_{t-1}, X_t)`` with the backbone frozen (weights and BatchNorm statistics):

1. anchor: dense pass on ``X_t`` (mask mode ``off``) -> ``H_a``;
2. positive: state primed with a dense pass on ``X_{t-1}``, gated pass on ``X_t`` where the patches
   each gate marks 1 reuse the previous output (mode ``normal``) -> ``H_p``;
3. negative: the same primed state restored, gated pass on ``X_t`` where every layer skips the
   *complement of its own positive mask* (mode ``complement``: the patches marked 0 reuse the
   previous output, the gate is not run again) -> ``H_n``. The paper builds both samples from one
   binary mask ("replacing the patches with index 1 and 0"); the authors' code instead re-runs every
   gate in the negative pass, so deeper gates, seeing other inputs, draw other masks
   (``cfg.negative="inverted"`` reproduces that).

**The "heatmap" carries every gated layer's effect**: the model's output heads named in
``cfg.heads`` (default all of FairMOT's: ``hm`` as sigmoid probabilities, ``id`` L2-normalised per
pixel as the tracker reads it, ``wh`` and ``reg`` raw; pose, ``task=pose``: ``heatmaps`` as each joint's
softmax distribution, which the soft-argmax integrates, and ``coords`` raw), each compared on its own scale. A gate on
``wh.0`` can only change ``wh``: a loss on ``hm`` alone gives it exactly zero triplet gradient
(measured on the first sample weights: four of twelve gates learned nothing but the rate term).

Loss (Eq. 6, "we employ the Triplet-Margin-Loss"):

* ``distance="mse"`` (default): per head ``d_h = MSE(H_h, A_h) / mean(A_h^2)`` (the anchor's scale,
  so that each head weighs alike whatever its units), ``d = mean_h d_h``, then
  ``mean_b max(d_p - d_n + margin, 0)``: Eq. 6's ``min L_p + max L_n`` while the hinge is active.
* ``distance="l2"``: ``torch.nn.TripletMarginLoss(margin)`` (p=2) on the concatenated heads, each
  divided by its anchor RMS: the authors' pre-training example (``TripletMarginLoss(margin=200)`` on
  the model outputs; margin 200 suits their raw output scale, not these normalised ones).

Deviation (the paper is silent on it): the triplet loss alone is minimised by skipping nothing (then
``H_p = H_a`` exactly and ``H_n`` is farthest), so a target-rate term
``rate_weight * (mean skip probability - target_rate)^2`` holds the skip rate in range.
``rate_weight=0`` removes it; ``docs/training.md`` shows the ablation on ``PassGate``.

After training, each layer's rate is measured on training pairs (its mean skip probability in
training mode, i.e. the Bernoulli rate Eq. 5 samples) and stored in the skip spec (``rates``): at
inference every gate skips that fraction of its patches, its highest-scoring ones (``PassGate``
``rule="topk"``), so inference runs at the operating point training targeted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, out_dir, stage_samples, to_device
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, StepBatches

NEGATIVES = ("complement", "inverted")


def head_maps(out: dict[str, torch.Tensor], heads: Sequence[str]) -> dict[str, torch.Tensor]:
    """Model heads -> ``{head: (B, D) per sample}``: ``hm`` through a sigmoid, ``id`` L2-normalised over
    channels (as FairMOT's tracker reads them), pose ``heatmaps`` ((B, J, D, H, W) or (B, J, H, W) logits)
    as each joint's softmax over its map (the distribution the soft-argmax integrates; logits are only
    defined up to a per-joint constant), others raw (``coords``, ``locmaps``)."""
    maps = {}
    for h in heads:
        if h not in out:
            raise KeyError(f"head {h!r} not in the model output (has {sorted(out)})")
        t = out[h]
        if h == "hm":
            t = torch.sigmoid(t)
        elif h == "id":
            t = F.normalize(t, dim=1)
        elif h == "heatmaps":
            t = F.softmax(t.flatten(2), dim=2)
        maps[h] = t.flatten(1)
    return maps


def _scales(anchor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per head and sample, the anchor's mean square (B, 1): each head's distances are relative to it."""
    return {h: a.detach().pow(2).mean(1, keepdim=True).clamp_min(1e-12) for h, a in anchor.items()}


def triplet_loss(a: dict[str, torch.Tensor], p: dict[str, torch.Tensor], n: dict[str, torch.Tensor], margin: float,
                 distance: str) -> tuple[torch.Tensor, float, float]:
    """Eq. 6 as a triplet margin loss over per-head maps (``head_maps``).

    Returns:
        ``(loss, L_p, L_n)`` with ``L_p`` / ``L_n`` the mean anchor-positive / anchor-negative distances.
    """
    scale = _scales(a)
    if distance == "mse":
        dp = torch.stack([((p[h] - a[h]) ** 2).mean(1) / scale[h][:, 0] for h in a]).mean(0)  # (B,)
        dn = torch.stack([((n[h] - a[h]) ** 2).mean(1) / scale[h][:, 0] for h in a]).mean(0)
        loss = F.relu(dp - dn + margin).mean()
    elif distance == "l2":
        cat = lambda d: torch.cat([d[h] / scale[h].sqrt() for h in a], 1)  # noqa: E731
        ca, cp, cn = cat(a), cat(p), cat(n)
        dp = F.pairwise_distance(ca, cp, p=2.0, eps=1e-6)
        dn = F.pairwise_distance(ca, cn, p=2.0, eps=1e-6)
        loss = F.triplet_margin_loss(ca, cp, cn, margin=margin, p=2.0)
    else:
        raise ValueError(f"distance must be 'mse' or 'l2', got {distance!r}")
    return loss, float(dp.mean().detach()), float(dn.mean().detach())


class PassPObjective(nn.Module):
    """``forward(batch) -> (loss, logs)`` for one PASS-P step; only gate parameters get gradients."""

    def __init__(self, model: nn.Module, cfg: StageCfg) -> None:
        super().__init__()
        if cfg.negative not in NEGATIVES:
            raise ValueError(f"negative must be one of {NEGATIVES}, got {cfg.negative!r}")
        self.model, self.cfg = model, cfg

    def train(self, mode: bool = True) -> "PassPObjective":
        # Backbone frozen: eval mode (BatchNorm uses running statistics and does not update them).
        super().train(False)
        for m in sk.gate_modules(self.model):
            m.train(mode)  # gates sample (Gumbel + Bernoulli, STE) while training
        self.training = mode
        return self

    def triplet(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
        """Anchor, positive and negative head maps of one batch (positive first; see the module doc)."""
        cfg, model = self.cfg, self.model
        x_prev, x = batch["prev"], batch["img"]
        with torch.no_grad():
            sk.reset(model)
            sk.set_mask_mode(model, "off")
            h_a = head_maps(model(x), cfg.heads)  # anchor: dense X_t
        sk.prime(model, x_prev)
        primed = sk.stream_states(model)
        sk.set_mask_mode(model, "normal")
        h_p = head_maps(model(x), cfg.heads)
        self._rate = sk.skip_probability(model)
        self._hard_rate = sk.skip_rate(model)
        sk.set_stream_states(model, primed)
        sk.set_mask_mode(model, "complement" if cfg.negative == "complement" else "inverted")
        h_n = head_maps(model(x), cfg.heads)
        sk.set_mask_mode(model, "normal")
        return h_a, h_p, h_n

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        h_a, h_p, h_n = self.triplet(batch)
        trip, lp, ln = triplet_loss(h_a, h_p, h_n, cfg.margin, cfg.distance)
        rate_term = (self._rate - cfg.target_rate) ** 2
        loss = trip + cfg.rate_weight * rate_term
        return loss, {"triplet": float(trip.detach()), "L_p": lp, "L_n": ln, "skip_prob": float(self._rate.detach()),
                      "skip_rate": self._hard_rate}


@torch.no_grad()
def measure_layer_rates(model: nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Each PASS-gated layer's training-mode skip rate on ``pairs``: the mean skip probability its gate
    samples from (Eq. 4-5, gates in train mode, backbone in eval mode), in module order. A layer whose
    gate never decides (grid under ``min_patches``) gets 0.

    Returns:
        One rate per PASS-gated layer, for ``passbench.skip.set_rates`` / the skip spec's ``rates``.
    """
    layers = sk.pass_layers(model)
    gates = [m.gate for m in layers]
    was = [g.training for g in gates]
    model.eval()
    for g in gates:
        g.train(True)
    sums, counts = [0.0] * len(layers), [0] * len(layers)
    try:
        for x_prev, x in pairs:
            sk.prime(model, x_prev)
            sk.set_mask_mode(model, "normal")
            model(x)
            for i, m in enumerate(layers):
                if m.last is not None and m.last.active:
                    sums[i] += float(m.last.prob.sum())
                    counts[i] += m.last.prob.numel()
    finally:
        for g, w in zip(gates, was):
            g.train(w)
    return [s / c if c else 0.0 for s, c in zip(sums, counts)]


def calibration_pairs(samples: Any, cfg: StageCfg, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``cfg.calib_pairs`` training pairs (a fixed seed apart from the training batches)."""
    calib = StepBatches(samples, max(1, min(cfg.batch_size, cfg.calib_pairs)), cfg.seed + 1)
    n = max(1, cfg.calib_pairs // calib.per_rank)
    return [(b["prev"].to(device), b["img"].to(device)) for b in (calib(s) for s in range(n))]


def train_pass_p(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
                 env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Pre-train the gates of ``cfg.init`` (a task ``final.pt``) with the triplet loss; backbone frozen.

    Returns:
        ``{"history", "final", "skip_rate", "rates"}`` (``skip_rate``: hard-mask rate of the last step;
        ``rates``: per-layer inference rates stored in the final skip spec, None while unfinished).
    """
    env = env or init_distributed()
    seed_all(cfg.seed)
    out = out_dir(out)
    samples = stage_samples(cfg, stores, pairs=True)
    model, skip, extra = build_stage_model(cfg, skippable=True)
    gates = sk.gate_parameters(model)
    if not gates:
        raise ValueError(f"method {cfg.method!r} has no trainable gate parameters; PASS-P needs learnable gates")
    sk.freeze(sk.backbone_parameters(model))
    sk.freeze(gates, False)
    objective = PassPObjective(model, cfg).to(env.device)
    objective.train()
    optimizer = torch.optim.Adam(gates, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = StepBatches(samples, cfg.batch_size, cfg.seed, env.rank, env.world)
    history = run_loop(cfg, out, env, objective, optimizer, lambda s: to_device(batches(s), env), params=gates,
                       stop_at=stop_at)
    final, rates = out / FINAL, None
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        rates = measure_layer_rates(model, calibration_pairs(samples, cfg, env.device))
        skip = {**skip, "params": {**skip["params"], "rates": rates}}
        save_final(final, cfg=cfg, model=model, skip=skip, extra={**extra, "layer_rates": rates},
                   delta_from=cfg.init, half=cfg.save_half)
    return {"history": history, "final": final, "skip_rate": history[-1]["skip_rate"] if history else None,
            "rates": rates}
