"""What every training stage shares: the stage config, the step loop, checkpoints (the stages' one import).

    stage_config.py  StageCfg, make_cfg (defaults < per-task defaults < key=value overrides), cfg_dict, config_diff
    loop.py          step_seed / seed_all, DistEnv / init_distributed / wrap_ddp (torchrun), lr_at, run_loop
    checkpoints.py   last.pt (save_checkpoint / load_checkpoint, RNG state), final.pt (save_final, read_final:
                     deltas on a base, float16), rebase_final, publish_final (into a committed weights folder)

Determinism: every step re-seeds from ``(seed, step, rank)``, so a resumed run replays exactly the steps
an uninterrupted one would (``loop.py``).
"""

from passbench.records import file_sha256
from passbench.train.checkpoints import (CKPT_VERSION, FINAL, LAST, CheckpointMismatchError, load_checkpoint,
                                         load_state_strict, publish_final, read_final, rebase_final, rng_state,
                                         save_checkpoint, save_final, set_rng_state, weights_sha256)
from passbench.train.loop import DistEnv, init_distributed, lr_at, progress, run_loop, seed_all, step_seed, wrap_ddp
from passbench.train.stage_config import (RESUMABLE_CHANGES, TASK_DEFAULTS, TASKS, StageCfg, cfg_dict, config_diff,
                                          make_cfg)

__all__ = ["CKPT_VERSION", "FINAL", "LAST", "RESUMABLE_CHANGES", "TASKS", "TASK_DEFAULTS", "CheckpointMismatchError",
           "DistEnv", "StageCfg", "cfg_dict", "config_diff", "file_sha256", "init_distributed", "load_checkpoint",
           "load_state_strict", "lr_at", "make_cfg", "progress", "publish_final", "read_final", "rebase_final",
           "rng_state", "run_loop", "save_checkpoint", "save_final", "seed_all", "set_rng_state", "step_seed",
           "weights_sha256", "wrap_ddp"]
