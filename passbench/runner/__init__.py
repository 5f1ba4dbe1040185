"""The one place that wires model + data + metrics: ``run(config) -> record``, per task over one core.

    core.py   data root, weights + method, dense MACs and the CPU cap, operating point, speed (dense
              twin vs skipped in one process), cost (executed / dense / gate MACs, patch skip rate)
    mot.py    MOT rows (Tables 3-4, Figure 5): track sequences, TrackEval / motmetrics scores (run_mot)
    pose.py   3D pose rows (Tables 1-2, Figure 4): Human3.6M-layout video streams, MPJPE / PA-MPJPE (run_pose)
    speed.py  speed-only records (``passbench speed``): run_speed

Public names: this package's ``__all__``, and in the modules the helpers scripts and tests use:
``core.load_weights`` / ``core.weights_path`` (a row's model as ``run`` builds it), ``core.measure_speed``,
``core.cost_from_stats`` (a record's ``cost``), ``mot.frames_for`` (the frames a MOT row scores),
``mot.prepare_model`` / ``mot.timing_inputs`` (``passbench speed``).

``run`` dispatches on ``cfg.task`` and appends the record (or a skip marker saying why the row cannot
run here) only once the row finished: a failing row writes nothing. A user's mistake (a given data
root that does not exist or lacks the row's data, a missing weights file) raises and writes nothing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from passbench.config import ExperimentCfg, normalized, to_dict
from passbench.records import append_record, file_sha256, skip_marker
from passbench.runner.core import SkipRow, WeightsNotFoundError, records_file, weights_path
from passbench.runner.mot import run_mot
from passbench.runner.pose import run_pose

__all__ = ["SkipRow", "WeightsNotFoundError", "records_file", "reuse", "run", "run_mot", "run_pose"]


def run(
    cfg: ExperimentCfg,
    data_root: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] | None = None,
    write: bool = True,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run one experiment and return its record (or a skip marker saying why it cannot run here).

    Args:
        cfg: resolved experiment config (``passbench.config.load_config``).
        data_root: overrides ``cfg.dataset.data_root``; resolved by ``passbench.paths.find_data_root``
            (pose rows also accept ``synthetic:<preset>``, ``passbench.pose.data``).
        results: results folder (default ``$PASSBENCH_RESULTS`` or ``<repo>/results``).
        write: append the record / marker to ``results/records/<table>.jsonl``.
        progress: a tqdm bar on stderr over the frames; None = only when stderr is a terminal.

    Raises:
        DataRootError: a given data root does not exist or lacks the row's data (nothing written).
        WeightsNotFoundError: ``model.weights`` names a file that does not exist (nothing written).
        NotImplementedError: a pipeline piece (module or function) this row needs does not exist.
        Any error of the run itself: nothing is written then.
    """
    resolved = to_dict(cfg)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    try:
        if cfg.task == "mot":
            rec = run_mot(cfg, data_root, resolved, show)
        elif cfg.task == "pose":
            rec = run_pose(cfg, data_root, resolved, show)
        else:
            raise ValueError(f"{cfg.name}: unknown task {cfg.task!r} (mot, pose)")
    except SkipRow as why:
        rec = skip_marker(experiment=cfg.name, task=cfg.task, reason=str(why), config=resolved)
    if write:
        append_record(records_file(cfg, results), rec)
    return rec


def _root_label(cfg: ExperimentCfg, data_root: Any) -> str | None:
    """How a run of ``cfg`` on ``data_root`` would name its data root in the record (None: unresolvable)."""
    from passbench.paths import DataRootError, find_data_root  # noqa: PLC0415
    from passbench.pose.data import is_synthetic_root  # noqa: PLC0415

    given = data_root if data_root is not None else cfg.dataset.data_root
    if is_synthetic_root(given):
        return str(given)
    try:
        return find_data_root(given).label
    except DataRootError:
        return None


def reuse(cfg: ExperimentCfg, records: list[dict[str, Any]], data_root: Any = None) -> dict[str, Any] | None:
    """A record for ``cfg`` copied from a finished run of the *same* experiment filed under another name.

    Table 2's rows are Table 1's runs reported per action (``configs/table2/*.yaml`` only change ``table``):
    when a run record's resolved config equals ``cfg``'s apart from ``name`` and ``table``, on the same data
    root with the same weights file (sha256), its numbers are this row's. The copy gets a new ``run_id``,
    this row's ``experiment`` and ``config``, and ``reused_from{experiment, run_id, created_utc}``; the
    newest such run is taken. None when there is none (the row has to run).
    """
    from passbench.records import new_record  # noqa: PLC0415

    mine = {k: v for k, v in to_dict(cfg).items() if k not in ("name", "table")}
    label = _root_label(cfg, data_root)
    weights = weights_path(cfg)
    sha = file_sha256(weights) if weights is not None else None
    found = None
    for rec in records:
        if rec.get("kind") != "run" or rec.get("experiment") == cfg.name:
            continue
        theirs = {k: v for k, v in (normalized(rec.get("config") or {}) or {}).items() if k not in ("name", "table")}
        if theirs != mine or (rec.get("dataset") or {}).get("data_root") != label:
            continue
        if (rec.get("model") or {}).get("weights_sha256") != sha:
            continue
        if found is None or rec["created_utc"] >= found["created_utc"]:
            found = rec
    if found is None:
        return None
    out = new_record(experiment=cfg.name, task=found["task"], dataset=found["dataset"], model=found["model"],
                     method=found["method"], metrics=found["metrics"], cost=found["cost"], speed=found["speed"],
                     config=to_dict(cfg), env=found["env"])
    out["reused_from"] = {"experiment": found["experiment"], "run_id": found["run_id"],
                          "created_utc": found["created_utc"]}
    return out

