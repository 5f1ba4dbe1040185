"""The training step loop, with its seeds and the torchrun / DDP set-up.

Determinism: every step re-seeds torch / numpy / random from ``(seed, step, rank)`` and the data
order comes from ``DistributedSampler(seed=seed)`` indexed by step, so a resumed run replays exactly
the steps an uninterrupted run would (same batches, same augmentation, same Gumbel noise). The RNG
states are still stored in every checkpoint for provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from passbench.train.checkpoints import LAST, load_checkpoint, save_checkpoint
from passbench.train.stage_config import StageCfg, cfg_dict


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed derived from ``(seed, step, rank)`` (sha256, so nearby inputs decorrelate)."""
    h = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU + CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)



@dataclass(frozen=True)
class DistEnv:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the torchrun process group when launched by torchrun (``WORLD_SIZE`` > 1), else single-process.

    Backend: nccl with one GPU per local rank when CUDA is available, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return DistEnv(0, 1, dev)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistEnv(rank, dist.get_world_size(), dev)


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel`` around the stage objective when ``world > 1`` (identity otherwise)."""
    if env.world <= 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def progress(total: int, initial: int, env: DistEnv, desc: str):
    """tqdm bar on rank 0 when stderr is a TTY; a no-op object otherwise."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not (env.is_main and sys.stderr.isatty()))



def lr_at(cfg: StageCfg, step: int) -> float:
    """FairMOT-style step schedule: ``lr`` until ``lr_drop_at * steps``, then ``lr / 10``."""
    return cfg.lr if step < int(cfg.lr_drop_at * cfg.steps) else cfg.lr * 0.1


def run_loop(
    cfg: StageCfg,
    out: Path,
    env: DistEnv,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_fn: Callable[[int], dict[str, Any]],
    *,
    params: list[nn.Parameter],
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    stop_at: int | None = None,
) -> list[dict[str, float]]:
    """Run steps ``[start, cfg.steps)`` resuming from ``out/last.pt`` if present.

    Args:
        objective: module whose ``forward(batch) -> (loss, logs)``; wrapped in DDP when distributed.
        batch_fn: ``step -> batch`` for this rank (deterministic in ``step``).
        params: the trainable parameters (gradient clipping / bookkeeping).
        stop_at: leave after this many steps (checkpoint written), as if interrupted; the schedule
            still follows ``cfg.steps`` and a later call resumes.

    Returns:
        The per-step logs of the steps run in this call (``loss`` first), for every rank.
    """
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    last = out / LAST
    if last.exists():
        start = load_checkpoint(last, cfg=cfg, objective=objective, optimizer=optimizer)
    if env.is_main:
        (out / "config.json").write_text(json.dumps(cfg_dict(cfg), indent=1))
    model = wrap_ddp(objective, env)
    history: list[dict[str, float]] = []
    bar = progress(cfg.steps, start, env, cfg.stage)
    log_f = open(out / "log.jsonl", "a") if env.is_main else None
    t0 = time.perf_counter()
    try:
        for step in range(start, min(cfg.steps, stop_at if stop_at is not None else cfg.steps)):
            seed_all(step_seed(cfg.seed, step, env.rank))
            for g in optimizer.param_groups:
                g["lr"] = lr_at(cfg, step) * g.get("lr_scale", 1.0)
            batch = batch_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss, logs = model(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{cfg.stage}: loss is {float(loss)} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 35.0)  # FairMOT uses none; guards early Adam steps
            optimizer.step()
            rec = {"step": step, "loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}, "lr": lr_at(cfg, step)}
            history.append(rec)
            if on_step:
                on_step(step, rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            done = step + 1
            if log_f and (done % cfg.log_every == 0 or done == cfg.steps):
                rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                if not sys.stderr.isatty():
                    print(f"[{cfg.stage}] step {done}/{cfg.steps} " + " ".join(
                        f"{k}={v:.4g}" for k, v in rec.items() if k not in ("step",)), file=sys.stderr, flush=True)
            if env.is_main and (done % cfg.ckpt_every == 0 or done in (cfg.steps, stop_at)):
                save_checkpoint(last, cfg=cfg, step=done, objective=objective, optimizer=optimizer)
            if env.world > 1:
                dist.barrier()
    finally:
        bar.close()
        if log_f:
            log_f.close()
    return history


def train_env(device: str | None) -> DistEnv | None:
    """A single-process environment on ``device`` (``--device``, else ``$PASSBENCH_DEVICE``), or None (the
    default: CUDA when available, else the CPU)."""
    from passbench.device import DEVICE_ENV, check_device, requested  # noqa: PLC0415

    dev = requested(device)
    if dev is None:
        return None
    return DistEnv(0, 1, torch.device(check_device(dev, "--device" if device else f"${DEVICE_ENV}")))
