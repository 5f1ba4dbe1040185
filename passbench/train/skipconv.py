"""Skip-Convolutions (Habibian et al., CVPR-21) gate fitting on the task model.

Two gate kinds, chosen by the engine's ``skip_params`` (e.g. ``skip_params={gate: norm}``):

* **Norm gates** (no parameters): a patch is skipped when the norm of its residual
  ``x_t - x_{t-1}`` is below the layer threshold. :func:`calibrate_norm_thresholds` runs
  ``calib_pairs`` training pairs and sets per-layer thresholds (sequential quantiles in gated
  passes) or one global threshold (bisection) so that the skip rate on those pairs hits
  ``target_rate``. No gradient steps.
* **Gumbel gates** (learned): trained with the FairMOT task loss on gated passes of pairs plus the
  sparsity budget ``budget_weight * passbench.skip.budget_loss(model, 1 - target_rate)``; the backbone trains
  jointly (``train_backbone=true``, as Skip-Conv trains gates with the convolution kernels) or stays
  frozen.

Engine calls beyond ``skiputil``'s basic set: ``passbench.skip.residual_norms(model)`` (per-patch
residual norms per norm-gated layer, last forward), ``set_thresholds(model, thresholds)`` and
``budget_loss``. The thresholds travel in ``final.pt``'s skip spec (``make_skippable(thresholds=...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, out_dir, stage_samples, to_device
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, StepBatches
from passbench.train.pass_f import GatedTaskObjective, task_loss_from


@torch.no_grad()
def calibrate_norm_thresholds(model: torch.nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
                              target_rate: float, per_layer: bool = True, iters: int = 20) -> list[float]:
    """Thresholds so that a ``target_rate`` fraction of training patches is skipped in gated passes.

    ``per_layer=True``: layer by layer, front to back, with the layers before already gated (their
    skipped patches leave exactly zero residual downstream, which a calibration on dense passes would
    miss and overshoot): layer ``l``'s threshold is the ``target_rate`` quantile of its patch residual
    norms, nudged up by one ulp so that ties (e.g. exact zeros) at the quantile are skipped too.
    ``per_layer=False``: one global threshold found by bisection (in log space) on the measured rate.

    Args:
        pairs: ``(x_prev, x)`` batches, (B, 3, H, W) each.
        target_rate: fraction in [0, 1] of patches to skip.

    Returns:
        The thresholds set, one per skippable layer (equal values when global).
    """
    if not 0.0 <= target_rate <= 1.0:
        raise ValueError(f"target_rate must be in [0, 1], got {target_rate}")
    if not pairs:
        raise ValueError("calibration needs at least one pair")

    def layer_norms() -> list[torch.Tensor]:
        return sk.residual_norms(model)

    sk.prime(model, pairs[0][0])
    sk.set_mask_mode(model, "off")
    model(pairs[0][1])
    n_layers = len(layer_norms())
    if n_layers == 0:
        raise ValueError("the model has no skippable layer to calibrate")
    if per_layer:
        th = [0.0] * n_layers  # residual norm < 0 never holds: nothing skipped yet
        for layer in range(n_layers):
            sk.set_thresholds(model, th)
            vals = []
            for x_prev, x in pairs:
                sk.prime(model, x_prev)
                sk.set_mask_mode(model, "normal")
                model(x)
                vals.append(layer_norms()[layer].detach().float().flatten().cpu().numpy())
            q = float(np.quantile(np.concatenate(vals), target_rate))
            th[layer] = float(np.nextafter(q, np.inf))
    else:
        lo, hi = 1e-8, 1.0
        sk.set_thresholds(model, hi)
        while measured_skip_rate(model, pairs) < target_rate and hi < 1e8:
            hi *= 10.0
            sk.set_thresholds(model, hi)
        for _ in range(iters):
            mid = float(np.sqrt(lo * hi))
            sk.set_thresholds(model, mid)
            lo, hi = (mid, hi) if measured_skip_rate(model, pairs) < target_rate else (lo, mid)
        th = [hi] * n_layers
    sk.set_thresholds(model, th)
    sk.set_mask_mode(model, "normal")
    return th


def measured_skip_rate(model: torch.nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean hard skip rate of gated passes over ``pairs`` (each primed densely with its previous frame)."""
    rates = []
    with torch.no_grad():
        for x_prev, x in pairs:
            sk.prime(model, x_prev)
            sk.set_mask_mode(model, "normal")
            model(x)
            rates.append(sk.skip_rate(model))
    return float(np.mean(rates))


def train_skipconv(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
                   env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Fit Skip-Conv gates on ``cfg.init`` (a task ``final.pt``): calibrate norm gates or train Gumbel gates.

    Returns:
        ``{"history", "final", "thresholds" (norm gates) or None, "skip_rate"}``.
    """
    env = env or init_distributed()
    seed_all(cfg.seed)
    out = out_dir(out)
    samples = stage_samples(cfg, stores, pairs=True, augment=False)
    model, skip, extra = build_stage_model(cfg, skippable=True)
    model.to(env.device)
    gates = sk.gate_parameters(model)
    calib = StepBatches(samples, max(1, min(cfg.batch_size, cfg.calib_pairs)), cfg.seed + 1)
    n_calib = max(1, cfg.calib_pairs // calib.per_rank)
    pairs = [(b["prev"].to(env.device), b["img"].to(env.device)) for b in (calib(s) for s in range(n_calib))]
    history: list[dict[str, float]] = []
    thresholds = None
    if not gates:  # norm gates: calibration only (identical on every rank: same seed, same pairs)
        model.eval()
        if cfg.calib not in ("global", "per_layer"):
            raise ValueError(f"calib must be 'global' or 'per_layer', got {cfg.calib!r}")
        thresholds = calibrate_norm_thresholds(model, pairs, cfg.target_rate, per_layer=cfg.calib == "per_layer")
        # NormGate.threshold is a plain attribute (not in the state_dict): carry the thresholds in the
        # make_skippable spec (its ``thresholds`` argument) so the runner rebuilds the same gates.
        skip = {**skip, "params": {**skip["params"], "thresholds": thresholds}}
    else:
        backbone = sk.backbone_parameters(model)
        sk.freeze(backbone, not cfg.train_backbone)
        sk.freeze(gates, False)
        loss = task_loss_from(extra, samples)
        objective = GatedTaskObjective(model, loss, bn_train=cfg.bn_train, gates_train=True,
                                       budget=(cfg.budget_weight, cfg.target_rate)).to(env.device)
        objective.train()
        rest = (backbone if cfg.train_backbone else []) + list(loss.parameters())
        params = gates + rest
        optimizer = torch.optim.Adam([{"params": gates, "lr_scale": cfg.gate_lr_scale}, {"params": rest}],
                                     lr=cfg.lr, weight_decay=cfg.weight_decay)
        batches = StepBatches(stage_samples(cfg, pairs=True, like=samples), cfg.batch_size, cfg.seed, env.rank,
                              env.world)
        history = run_loop(cfg, out, env, objective, optimizer, lambda s: to_device(batches(s), env), params=params,
                           stop_at=stop_at)
        extra = {"num_ids": samples.num_ids, "classifier": loss.state_dict()}
        model.eval()
    rate = measured_skip_rate(model, pairs)
    final = out / FINAL
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        save_final(final, cfg=cfg, model=model, skip=skip, extra={**extra, "calib_skip_rate": rate,
                                                                  "thresholds": thresholds},
                   delta_from=cfg.init, half=cfg.save_half)
    return {"history": history, "final": final, "thresholds": thresholds, "skip_rate": rate}
