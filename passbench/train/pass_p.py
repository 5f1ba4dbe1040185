"""PASS-P: task-independent gate pre-training (paper, "Task-Independent Pre-training for Gate").

For a pair ``(X_{t-1}, X_t)`` with the backbone frozen (weights and BatchNorm statistics):

1. anchor: dense pass on ``X_t`` (mask mode ``off``) -> ``H_a``;
2. positive: state primed with ``X_{t-1}``, gated pass on ``X_t`` where patches marked 1 reuse the
   previous output (mode ``normal``) -> ``H_p``;
3. negative: primed again, same gate noise (the RNG state is replayed), patches marked 0 reuse the
   previous output (mode ``inverted``) -> ``H_n``.

The "heatmap" is the model's output heads named in ``cfg.heads`` (default ``("hm",)``: the centre
heatmap as sigmoid probabilities; ``wh``/``reg``/``id`` are used raw), flattened and concatenated
per sample. Loss, Eq. 6 in triplet-margin form (Balntas et al. 2016, as the paper says):

* ``distance="mse"``: ``mean_b max(MSE(H_p, H_a) - MSE(H_n, H_a) + margin, 0)``. With hm
  probabilities the MSE is < 1, so the default margin 1 keeps the hinge always active and this is
  Eq. 6 literally (``min L_p + max L_n``).
* ``distance="l2"``: ``torch.nn.TripletMarginLoss(margin)`` on the flattened heads (p=2 distance).

Deviation (the paper is silent on it): the triplet loss alone is minimised by skipping nothing (then
``H_p = H_a`` exactly and ``H_n`` is farthest), so a target-rate term
``rate_weight * (mean skip probability - target_rate)^2`` holds the skip rate in range.
``rate_weight=0`` removes it; ``docs/training.md`` shows the ablation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, out_dir, to_device, training_stores
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, MotSamples, StepBatches


def heatmap(out: dict[str, torch.Tensor], heads: Sequence[str]) -> torch.Tensor:
    """Model heads -> (B, D) vector per sample (``hm`` through a sigmoid, others raw)."""
    parts = []
    for h in heads:
        if h not in out:
            raise KeyError(f"head {h!r} not in the model output (has {sorted(out)})")
        t = torch.sigmoid(out[h]) if h == "hm" else out[h]
        parts.append(t.flatten(1))
    return torch.cat(parts, 1)


def triplet_loss(a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float, distance: str) -> tuple[torch.Tensor, float, float]:
    """Eq. 6 as a triplet margin loss. Returns ``(loss, L_p, L_n)`` with L_p / L_n the mean distances."""
    if distance == "mse":
        dp = ((p - a) ** 2).mean(1)  # (B,)
        dn = ((n - a) ** 2).mean(1)
        loss = F.relu(dp - dn + margin).mean()
    elif distance == "l2":
        dp = F.pairwise_distance(a, p, p=2.0, eps=1e-6)
        dn = F.pairwise_distance(a, n, p=2.0, eps=1e-6)
        loss = F.triplet_margin_loss(a, p, n, margin=margin, p=2.0)
    else:
        raise ValueError(f"distance must be 'mse' or 'l2', got {distance!r}")
    return loss, float(dp.mean().detach()), float(dn.mean().detach())


class PassPObjective(nn.Module):
    """``forward(batch) -> (loss, logs)`` for one PASS-P step; only gate parameters get gradients."""

    def __init__(self, model: nn.Module, cfg: StageCfg) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def train(self, mode: bool = True) -> "PassPObjective":
        # Backbone frozen: eval mode (BatchNorm uses running statistics and does not update them).
        super().train(False)
        for m in sk.gate_modules(self.model):
            m.train(mode)  # gates sample (Gumbel + Bernoulli, STE) while training
        self.training = mode
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, model = self.cfg, self.model
        x_prev, x = batch["prev"], batch["img"]
        with torch.no_grad():
            sk.reset(model)
            sk.set_mask_mode(model, "off")
            h_a = heatmap(model(x), cfg.heads)  # anchor: dense X_t
        rng = torch.get_rng_state()
        sk.prime(model, x_prev)
        sk.set_mask_mode(model, "normal")
        torch.set_rng_state(rng)  # same gate noise for the positive and the negative pass
        h_p = heatmap(model(x), cfg.heads)
        rate = sk.skip_probability(model)
        hard_rate = sk.skip_rate(model)
        sk.prime(model, x_prev)
        sk.set_mask_mode(model, "inverted")
        torch.set_rng_state(rng)
        h_n = heatmap(model(x), cfg.heads)
        sk.set_mask_mode(model, "normal")
        trip, lp, ln = triplet_loss(h_a, h_p, h_n, cfg.margin, cfg.distance)
        rate_term = (rate - cfg.target_rate) ** 2
        loss = trip + cfg.rate_weight * rate_term
        return loss, {"triplet": float(trip.detach()), "L_p": lp, "L_n": ln, "skip_prob": float(rate.detach()),
                      "skip_rate": hard_rate}


def train_pass_p(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
                 env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Pre-train the gates of ``cfg.init`` (a task ``final.pt``) with the triplet loss; backbone frozen.

    Returns:
        ``{"history", "final", "skip_rate"}`` (``skip_rate``: hard-mask rate of the last step).
    """
    env = env or init_distributed()
    seed_all(cfg.seed)
    out = out_dir(out)
    samples = MotSamples(training_stores(cfg, stores), pairs=True, max_objs=cfg.max_objs, flip=cfg.flip,
                         scale_jitter=cfg.scale_jitter)
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
    final = out / FINAL
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        save_final(final, cfg=cfg, model=model, skip=skip, extra=extra)
    return {"history": history, "final": final, "skip_rate": history[-1]["skip_rate"] if history else None}
