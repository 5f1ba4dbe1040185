"""CLI: ``python -m passbench.train {task,pass_p,pass_f,skipconv} --out DIR [key=value ...]``.

Runs unchanged under ``torchrun --nproc_per_node N`` (gloo on CPU, nccl on GPU; rank 0 writes).
``--device cpu|cuda|cuda:N`` (or ``$PASSBENCH_DEVICE``) picks a single process's device (default: CUDA
when available, else the CPU); under torchrun each rank takes its ``LOCAL_RANK`` GPU, and ``--device``
may only confirm that kind.
Re-running with the same ``--out`` resumes from ``DIR/last.pt``; a different config there is an error.
Keys are the fields of :class:`passbench.train.common.StageCfg`; stage defaults are in ``STAGE_DEFAULTS``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from passbench.train.common import init_distributed, make_cfg

# Per-stage defaults for the ~15-25 min/stage CPU budget, from steps timed here on 2 *shared* cores at
# 576x320 with fairmot_mbv2 (docs/training.md): task ~25 s/step at batch 8 (so batch 4), PASS-P
# ~80 s/step at batch 4 (PASS gates on every conv; so batch 2). Scale ``steps`` to the machine.
STAGE_DEFAULTS: dict[str, dict] = {
    "task": {"steps": 150, "batch_size": 4, "lr": 2e-4, "pretrained": "deepsort"},
    "pass_p": {"steps": 30, "batch_size": 2, "lr": 1e-3, "pretrained": None, "scale_jitter": 0.0,
               "method": "pass_p"},
    "pass_f": {"steps": 60, "batch_size": 2, "lr": 5e-5, "pretrained": None, "method": "pass_f"},
    "skipconv": {"steps": 60, "batch_size": 2, "lr": 5e-5, "pretrained": None, "method": "skipconv",
                 "calib_pairs": 8},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m passbench.train", description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=sorted(STAGE_DEFAULTS))
    ap.add_argument("--out", required=True, help="run directory (checkpoints, log.jsonl, final.pt)")
    ap.add_argument("--stop-at", type=int, default=None, help="leave after this many steps (resumable)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: $PASSBENCH_DEVICE, else cuda when "
                                                   "available, else cpu)")
    ap.add_argument("overrides", nargs="*", help="key=value, e.g. steps=20 input_wh=[320,192] init=runs/task/final.pt")
    args = ap.parse_intermixed_args(argv)
    try:
        cfg = make_cfg(args.stage, args.overrides, STAGE_DEFAULTS[args.stage])
    except ValueError as e:
        ap.error(str(e))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    env = init_distributed()
    try:
        env = _with_device(env, args.device)
    except ValueError as e:
        ap.error(str(e))
    t0 = time.perf_counter()
    if args.stage == "task":
        from passbench.train.task import train_task as fn
    elif args.stage == "pass_p":
        from passbench.train.pass_p import train_pass_p as fn
    elif args.stage == "pass_f":
        from passbench.train.pass_f import train_pass_f as fn
    else:
        from passbench.train.skipconv import train_skipconv as fn
    res = fn(cfg, args.out, env=env, stop_at=args.stop_at)
    if env.is_main:
        last = res["history"][-1] if res["history"] else {}
        print(json.dumps({"stage": args.stage, "out": args.out, "steps_run": len(res["history"]), "last": last,
                          "wall_s": round(time.perf_counter() - t0, 1), "world": env.world}))
    if env.world > 1:
        torch.distributed.destroy_process_group()
    return 0


def _with_device(env, device: str | None):
    """``env`` on the ``--device`` asked for (single process), or unchanged (ValueError: not available, or a
    different kind than torchrun's ranks use)."""
    import dataclasses  # noqa: PLC0415

    from passbench.train.loop import train_env  # noqa: PLC0415

    want = train_env(device)
    if want is None:
        return env
    if env.world > 1:
        if want.device.type != env.device.type:
            raise ValueError(f"--device {want.device}: under torchrun every rank uses {env.device.type} "
                             "(one GPU per LOCAL_RANK when CUDA is available)")
        return env
    if want.device.type == "cuda":
        torch.cuda.set_device(want.device)
    return dataclasses.replace(env, device=want.device)


if __name__ == "__main__":
    sys.exit(main())
