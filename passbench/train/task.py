"""Task training of a dense FairMOT-style detector + re-ID model with the FairMOT loss (``task=mot``), or of a
pose model with upstream 3DMPPE's coordinate L1 (``task=pose``, ``passbench.pose.samples``).

Adam, FairMOT's step schedule (lr, then lr/10), light augmentation (flip, scale jitter). The ID
classifier and the uncertainty weights ``s_det, s_id`` train with the model, as upstream adds the loss
parameters to the optimizer (``src/lib/trains/base_trainer.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from passbench.train.build import build_stage_model, out_dir, stage_samples, task_loss, to_device
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, StepBatches
from passbench.train.losses import FairMOTLoss


class TaskObjective(nn.Module):
    """``forward(batch) -> (loss, logs)``: dense forward of ``batch["img"]`` and the FairMOT loss."""

    def __init__(self, model: nn.Module, loss: FairMOTLoss) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.loss(self.model(batch["img"]), batch)


def train_task(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
               env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Train the dense model; writes ``out/last.pt`` (resumable), ``log.jsonl`` and ``final.pt``.

    Returns:
        ``{"history": per-step logs, "final": path, "num_ids": int}``.
    """
    env = env or init_distributed()
    seed_all(cfg.seed)  # model init and anything before the first step
    out = out_dir(out)
    samples = stage_samples(cfg, stores, pairs=False)
    model, _, _ = build_stage_model(cfg, skippable=False)
    objective = TaskObjective(model, task_loss(samples)).to(env.device)
    objective.train()
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = StepBatches(samples, cfg.batch_size, cfg.seed, env.rank, env.world)
    history = run_loop(cfg, out, env, objective, optimizer, lambda s: to_device(batches(s), env), params=params,
                       stop_at=stop_at)
    final = out / FINAL
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        save_final(final, cfg=cfg, model=objective.model, skip=None,
                   extra={"num_ids": samples.num_ids, "classifier": objective.loss.state_dict()})
    return {"history": history, "final": final, "num_ids": samples.num_ids}
