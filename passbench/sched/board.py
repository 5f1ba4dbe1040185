"""``passbench leaderboard add MODEL [MODEL ...] --executor ray``: each backbone's training chain as one Ray
task, then every backbone's four rows as row tasks (``passbench.sched.rows``: timing alone at the end).

Every backbone is checked on the driver before anything trains (``passbench.leaderboard.prepare``: a
name, the CPU cap, the gated layers), so a typo costs nothing. Training runs where Ray puts it and writes
``runs/leaderboard/<backbone>/`` there: on a cluster that folder (the checkout) must be on storage every
node sees, since the row tasks load the weights from it (docs/cluster.md). Rows whose record exists
(same config, same weights) are not measured again. The driver appends the records, in backbone order
and ``METHODS`` order within a backbone, when the rows are done (the rows that finished are written
also when the command stops early); a failed training or row is listed at the end with its error.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from passbench.sched.executor import RayExecutor, Resources, Task
from passbench.sched.rows import run_rows


def add_on_ray(lb: Any, models: Sequence[str], outs: Sequence[Any], *, address: str | None = None,
               results: Any = None, force: bool = False, data_root: str | None = None,
               eval_overrides: Sequence[str] = (), **train_kw: Any) -> int:
    """Train and measure ``models`` on Ray; the exit code (0 all rows recorded, 1 a training or row failed).

    Args:
        lb: the ``passbench.leaderboard`` module (passed in: it sits above this layer and calls this function):
            ``prepare``, ``train``, ``row_config``, ``existing_record``, ``METHODS``, ``WEIGHTS_OF``.
        outs: each model's training folder (absolute: the workers' working folder may differ).
        train_kw: ``passbench.leaderboard.train``'s keywords (budget_minutes, layers, max_steps,
            train_overrides, recipe_path).

    Raises:
        LeaderboardError: a backbone fails its checks (before anything runs).
        ExecutorError: Ray cannot start.
    """
    from passbench.records import append_record  # noqa: PLC0415
    from passbench.records import summary_line  # noqa: PLC0415
    from passbench.runner import records_file  # noqa: PLC0415

    keys = ("layers", "train_overrides", "recipe_path", "pretrained")
    preps = [lb.prepare(m, out=o, eval_overrides=eval_overrides, **{k: train_kw[k] for k in keys if k in train_kw})
             for m, o in zip(models, outs)]
    threads = int(preps[0]["overrides"].get("threads", preps[0]["recipe"]["common"].get("threads", 0)) or 1)
    errors: dict[str, str] = {}
    with RayExecutor(address) as ex:
        print(f"{len(models)} backbones on {ex.describe()}: training", flush=True)
        tasks = [Task(m, lb.train, (m,), {**train_kw, "out": o, "data_root": data_root, "eval_overrides": eval_overrides},
                      Resources(cpus=float(threads))) for m, o in zip(models, outs)]
        trained: dict[str, Any] = {}
        for j, res in ex.map(tasks):
            if res.ok:
                trained[models[j]] = res.value
                print(f"{models[j]}: trained [{res.seconds / 60:.1f} min on {res.node}]", flush=True)
            else:
                errors[f"{models[j]} (training)"] = res.error
                print(f"{models[j]}: training FAILED: {res.error}", flush=True)
        rows: list[dict[str, Any]] = []  # backbone order, METHODS order: the serial command's order
        for m in (m for m in models if m in trained):
            finals, wh = trained[m]
            for method in lb.METHODS:
                weights = finals[lb.WEIGHTS_OF[method]]
                cfg = lb.row_config(method, m, weights, wh, eval_overrides)
                rec = None if force else lb.existing_record(cfg, weights, results)
                rows.append({"cfg": cfg, "rec": rec, "earlier": rec is not None, "pre": preps[models.index(m)]["pre"]})
        todo = [r for r in rows if not r["earlier"]]
        for r in rows:
            if r["earlier"]:
                print(f"{summary_line(r['rec'])}  [recorded earlier]", flush=True)
        try:
            for res in run_rows([(r["cfg"], data_root) for r in todo], ex):
                row = todo[res.index]
                if res.record is None:
                    errors[row["cfg"].name] = res.error
                    print(f"{row['cfg'].name}: FAILED: {res.error}", flush=True)
                    continue
                row["rec"] = res.record
                if res.record["kind"] == "run":
                    res.record["model"]["pretrained"] = row["pre"]  # the task stage's backbone init, as add() says
                print(f"{summary_line(res.record)}  [{res.seconds:.0f} s on {res.node}]", flush=True)
        finally:  # one writer, stable order: whatever finished, also when stopped early
            for r in todo:
                if r["rec"] is not None:
                    append_record(records_file(r["cfg"], results), r["rec"])
    if errors:
        print(f"leaderboard add: {len(errors)} failed:", file=sys.stderr)
        for name, err in errors.items():
            print(f"  {name}: {err}", file=sys.stderr)
        return 1
    return 0
