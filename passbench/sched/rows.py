"""A row (one config) as Ray tasks, and its record assembled on the driver.

Resources, from the resolved config: CPUs = ``speed.threads`` (the torch threads the runner sets for the
whole row), one GPU when the row's device (``--device`` where the command has it, else ``speed.device``)
is CUDA, and ``ROW_MEMORY_MB`` of memory.

Timing (``speed.enabled``) never shares a node with other work:

* an untimed row (accuracy only, ``speed.enabled=false``) is one task, run in parallel with the others;
* a timed MOT row is split: its accuracy runs in parallel with timing off (``speed.enabled=false``: the
  same tracking, scores and executed MACs; the runner's timing pass is reset before tracking), and its
  model forward is timed afterwards, in a final serial phase, by ``passbench.runner.speed.run_speed``
  (the same model preparation, frames and alternating dense / skipped rounds as ``run``) in a task
  that holds every CPU of its node (``RayExecutor.run_alone``). The record is the accuracy record with
  the row's own resolved config and that ``speed``, which says so in ``speed.scheduled``;
* a timed pose row (its streams are timed inside ``run``; ``run_speed`` times MOT rows only) runs whole
  in that final phase, alone on its node, and says so in ``speed.scheduled`` too.

Rows are not split per sequence. MOT's CLEAR and Identity counts add up over sequences (TrackEval sums
them, then forms the ratios), and so would HOTA's per-alpha counts and the skip counters, but only as the
raw per-sequence counts, which the runner does not return; merging the records' ratios (MOTA, IDF1,
MOTP, HOTA, executed GMACs per frame) would not give the serial run's numbers bit for bit. The timing
(one clip of the first sequence), the operating point (calibrated once per row) and a pose row's
MPJPE / PA-MPJPE means over all protocol frames are per row in any case.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator

from passbench.config import ExperimentCfg, to_dict
from passbench.records import validate_record
from passbench.sched.executor import Resources, Result, Task

# Peak resident memory of one light MOT row (fairmot_mbv2, 384x224, pass_p, 1 thread): 1.0 GB
# (/usr/bin/time -v passbench run configs/tradeoff/pass_p_r40.yaml, 2026-12-02), plus headroom.
ROW_MEMORY_MB = 1536


def device_of(cfg: ExperimentCfg, device: str | None = None) -> str:
    """The row's device: ``device`` (a command's ``--device``) if given, else the config's ``speed.device``."""
    return str(device or cfg.speed.device)


def resources(cfg: ExperimentCfg, device: str | None = None) -> Resources:
    """What a row's task holds: ``speed.threads`` CPUs, a GPU on a CUDA device, ``ROW_MEMORY_MB``."""
    gpus = 1.0 if device_of(cfg, device).startswith("cuda") else 0.0
    return Resources(cpus=float(max(1, cfg.speed.threads)), gpus=gpus, memory_mb=ROW_MEMORY_MB)


def untimed(cfg: ExperimentCfg) -> ExperimentCfg:
    """``cfg`` with its timing off (``speed.enabled=false``), everything else as it is."""
    return dataclasses.replace(cfg, speed=dataclasses.replace(cfg.speed, enabled=False))


# ----------------------------------------------------------------------------------------------
# what the workers run (module level: Ray pickles them by reference)


def _enter(cwd: str | None) -> None:
    """Work in the driver's folder where this node has it, so a relative ``--data-root`` means the same."""
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)


def run_row(cfg: ExperimentCfg, data_root: Any, cwd: str | None = None) -> dict[str, Any]:
    """``passbench.runner.run`` without writing: the record (or skip marker) goes back to the driver."""
    from passbench.runner import run  # noqa: PLC0415

    _enter(cwd)
    return run(cfg, data_root=data_root, write=False, progress=False)


def time_row(cfg: ExperimentCfg, data_root: Any, cwd: str | None = None) -> dict[str, Any]:
    """The ``speed`` section of ``cfg``'s record, timed as ``run`` times it (``run_speed``, nothing written)."""
    from passbench.runner.speed import run_speed  # noqa: PLC0415

    _enter(cwd)
    return run_speed(cfg, data_root=data_root, write=False)["speed"]


# ----------------------------------------------------------------------------------------------
# the driver's side


@dataclass
class RowResult:
    """A finished row: ``record`` (run record or skip marker), or ``error`` (``"TypeName: message"``)."""

    index: int
    cfg: ExperimentCfg
    record: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    node: str | None = None


def _failed(i: int, cfg: ExperimentCfg, res: Result, seconds: float) -> RowResult:
    return RowResult(i, cfg, error=res.error, error_type=res.error_type, traceback=res.traceback, seconds=seconds,
                     node=res.node)


def _alone_label(res: Result, what: str) -> str:
    return (f"ray: {what} in a final serial phase, alone on node {res.node} (all {res.cpus:g} CPUs reserved) "
            "after the parallel accuracy tasks")


def run_rows(rows: list[tuple[ExperimentCfg, Any]], ex: Any, device: str | None = None,
             cwd: str | None = None) -> Iterator[RowResult]:
    """Run ``rows`` (``(cfg, data_root)`` pairs) on ``ex`` (a ``RayExecutor``); yield each as it finishes.

    Untimed rows and the accuracy of timed MOT rows first, all in parallel; then, one after another, the
    timing of every timed MOT row whose accuracy produced a run record, and every timed pose row whole
    (module docstring). Nothing is written: the caller owns the records file.
    """
    cwd = cwd or os.getcwd()
    first: list[Task] = []
    owner: list[int] = []
    later: list[int] = []  # timed pose rows: whole, alone, at the end
    for i, (cfg, root) in enumerate(rows):
        if cfg.speed.enabled and cfg.task != "mot":
            later.append(i)
            continue
        run_cfg = untimed(cfg) if cfg.speed.enabled else cfg
        first.append(Task(cfg.name, run_row, (run_cfg, root, cwd), resources=resources(cfg, device)))
        owner.append(i)
    to_time: list[tuple[int, RowResult]] = []
    for j, res in ex.map(first):
        i = owner[j]
        cfg = rows[i][0]
        if not res.ok:
            yield _failed(i, cfg, res, res.seconds)
            continue
        rec = res.value
        if rec["kind"] == "run" and cfg.speed.enabled:
            to_time.append((i, RowResult(i, cfg, record=rec, seconds=res.seconds, node=res.node)))
            continue
        if cfg.speed.enabled:  # a skip marker of a timed row: its own config, not the untimed one
            rec = {**rec, "config": to_dict(cfg)}
        yield RowResult(i, cfg, record=rec, seconds=res.seconds, node=res.node)
    for i, acc in sorted(to_time, key=lambda t: t[0]):
        cfg, root = rows[i]
        res = ex.run_alone(Task(cfg.name, time_row, (cfg, root, cwd), resources=resources(cfg, device)))
        if not res.ok:
            yield _failed(i, cfg, res, acc.seconds + res.seconds)
            continue
        speed = {**res.value, "scheduled": _alone_label(res, "timed")}
        # env.device is the timed device's label, as new_record sets it from the speed it is given
        rec = {**acc.record, "speed": speed, "config": to_dict(cfg),
               "env": {**acc.record["env"], "device": speed.get("device", "cpu")}}
        validate_record(rec)
        yield RowResult(i, cfg, record=rec, seconds=acc.seconds + res.seconds, node=res.node)
    for i in later:
        cfg, root = rows[i]
        res = ex.run_alone(Task(cfg.name, run_row, (cfg, root, cwd), resources=resources(cfg, device)))
        if not res.ok:
            yield _failed(i, cfg, res, res.seconds)
            continue
        rec = res.value
        if rec["kind"] == "run":
            rec = {**rec, "speed": {**rec["speed"], "scheduled": _alone_label(res, "the whole row (accuracy and timing)")}}
        yield RowResult(i, cfg, record=rec, seconds=res.seconds, node=res.node)
