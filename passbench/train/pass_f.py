"""PASS-F: task-oriented fine-tuning of the backbone with frozen gates (paper, "Task-Oriented Fine-Tuning").

Per pair ``(X_{t-1}, X_t)``: the stream state is primed with a dense pass on ``X_{t-1}`` (as a stream's
first frame is computed densely), then ``X_t`` runs gated (mode ``normal``: the patches the gate marks
1 reuse the previous output, "the positive sample") and the task loss on that prediction (FairMOT's, or
the pose coordinate L1 with ``task=pose``) updates the backbone (``min L(Y, G)``).

Gates: frozen (no gradient) **and in eval mode**, i.e. the deterministic inference masks the engine
produces at test time, so the backbone adapts to the masks it will see when deployed (the paper does
not say whether masks are sampled here; this is our choice). BatchNorm statistics stay frozen unless
``bn_train=true`` (small batches of correlated frames would skew them). The ID classifier and
uncertainty weights start from the task stage (carried in ``final.pt``'s ``extra``) and keep training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, out_dir, stage_samples, task_loss, to_device
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, StepBatches
from passbench.train.losses import FairMOTLoss


class GatedTaskObjective(nn.Module):
    """``forward(batch)``: prime with ``prev`` densely, gated pass on ``img``, FairMOT loss (+ optional budget).

    Args:
        gates_train: gate modules in train mode (sampled masks; Skip-Conv's Gumbel gates) or eval.
        budget: ``(weight, target_rate)``: when weight > 0 adds ``weight * budget_loss(model, 1 - target_rate)``,
            the engine's Skip-Conv sparsity budget (``passbench.skip.budget_loss``: a MAC-weighted hinge on
            the compute fraction above the allowed ``1 - target_rate``).
    """

    def __init__(self, model: nn.Module, loss: FairMOTLoss, *, bn_train: bool, gates_train: bool,
                 budget: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self.model, self.loss = model, loss
        self.bn_train, self.gates_train, self.budget = bn_train, gates_train, budget

    def train(self, mode: bool = True) -> "GatedTaskObjective":
        super().train(mode)
        if not self.bn_train:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        for m in sk.gate_modules(self.model):
            m.train(mode and self.gates_train)
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        sk.prime(self.model, batch["prev"])
        sk.set_mask_mode(self.model, "normal")
        loss, logs = self.loss(self.model(batch["img"]), batch)
        logs["skip_rate"] = sk.skip_rate(self.model)
        weight, target = self.budget
        if weight > 0:
            budget = sk.budget_loss(self.model, 1.0 - target)
            loss = loss + weight * budget
            logs["budget"] = float(budget.detach())
            logs["skip_prob"] = float(sk.skip_probability(self.model).detach())
        return loss, logs


def task_loss_from(extra: dict[str, Any], samples: Any) -> nn.Module:
    """The task loss (``passbench.train.build.task_loss``): FairMOT's with the classifier / uncertainty
    weights carried from the task stage when they fit, or the pose coordinate L1."""
    return task_loss(samples, extra)


def train_pass_f(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
                 env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Fine-tune the backbone of ``cfg.init`` (a PASS-P ``final.pt``) under its frozen gates."""
    env = env or init_distributed()
    seed_all(cfg.seed)
    out = out_dir(out)
    samples = stage_samples(cfg, stores, pairs=True)
    model, skip, extra = build_stage_model(cfg, skippable=True)
    # Same gates and wrapping as the PASS-P init; recorded under this stage's method name (runner checks it).
    skip = {"method": cfg.method, "params": dict(skip["params"])}
    sk.freeze(sk.gate_parameters(model))
    backbone = sk.backbone_parameters(model)
    sk.freeze(backbone, False)
    loss = task_loss_from(extra, samples)
    objective = GatedTaskObjective(model, loss, bn_train=cfg.bn_train, gates_train=False).to(env.device)
    objective.train()
    params = backbone + list(loss.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = StepBatches(samples, cfg.batch_size, cfg.seed, env.rank, env.world)
    history = run_loop(cfg, out, env, objective, optimizer, lambda s: to_device(batches(s), env), params=params,
                       stop_at=stop_at)
    final = out / FINAL
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        save_final(final, cfg=cfg, model=model, skip=skip,
                   extra={"num_ids": samples.num_ids, "classifier": loss.state_dict()},
                   delta_from=cfg.init, half=cfg.save_half)
    return {"history": history, "final": final}
