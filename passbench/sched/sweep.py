"""``passbench reproduce N`` / ``figure N --run`` with ``--executor ray``: the rows without a record as Ray
tasks, the records written by the driver alone.

What a serial run (``--executor local``, ``passbench.cli``) does, in the same order and with the same
rules: rows whose record exists are not run again (unless ``force``); a pose row without Human3.6M under
the default root runs on the synthetic preset; a row that is the same run as a finished one filed under
another name (Table 2 = Table 1 per action, ``passbench.runner.reuse``) copies its record, checked in
config order against the records written so far, exactly as the serial loop checks it.

One writer: workers return records; the driver appends each (``passbench.records.append_record``: atomic)
as soon as every row before it in config order is written, so the file holds the serial run's records
in the serial run's order and every table derived from it is the serial run's. If the sweep stops early
(an interrupt), the rows that finished are still written, in config order. A failed row (its exception,
a crashed worker) writes nothing, is listed at the end with its error, and the others go on; running
the command again runs only the rows still without a record.

Output: one line per finished row (as the serial run, with its wall time and node), and a bar over rows
done / total on stderr.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passbench.sched.rows import RowResult, run_rows


@dataclass
class Outcome:
    """Per experiment name: what happened; ``errors`` holds each failed row's error."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_implemented: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def report(self, what: str) -> int:
        """Print the tally and every failed row's error to stderr; 1 when a row failed or is not implemented."""
        print(f"{what}: {len(self.ran)} ran, {len(self.skipped)} not runnable here, {len(self.failed)} failed, "
              f"{len(self.not_implemented)} not implemented", file=sys.stderr)
        for label, names in (("not runnable here (skip markers)", self.skipped), ("FAILED", self.failed),
                             ("NOT IMPLEMENTED", self.not_implemented)):
            if names:
                print(f"  {label}: {', '.join(names)}", file=sys.stderr)
        for name, err in self.errors.items():
            print(f"  {name}: {err}", file=sys.stderr)
        return 1 if self.failed or self.not_implemented else 0


def _bar(show: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="row", disable=not show, file=sys.stderr, dynamic_ncols=True)


@dataclass
class _Row:
    cfg: Any
    root: Any
    result: RowResult | None = None  # None: still running (or reused: never submitted)
    written: bool = False


def run_missing(paths: list[Path], ex: Any, *, overrides: list[str] = (), data_root: Any = None,
                results: Any = None, force: bool = False, verbose: bool = False, progress: bool | None = None,
                device: str | None = None) -> Outcome:
    """Run every config of ``paths`` without a run record (all with ``force``) on ``ex``; append the
    records in config order (module docstring).

    Args:
        ex: a ``passbench.sched.RayExecutor``.
        overrides, data_root, results, force: as ``passbench reproduce``.
        device: the command's ``--device`` (declares a GPU for CUDA rows), else each config's ``speed.device``.
    """
    import json  # noqa: PLC0415

    from passbench.config import load_config  # noqa: PLC0415
    from passbench.records import append_record, read_records, records_dir, summary_line  # noqa: PLC0415
    from passbench.runner import records_file, reuse  # noqa: PLC0415
    from passbench.runner.pose import reproduce_root  # noqa: PLC0415

    rdir = records_dir(results)
    runs = read_records(rdir, kind="run") if rdir.is_dir() else []
    done = {r["experiment"] for r in runs}
    out = Outcome()
    rows: list[_Row] = []
    for path in paths:
        cfg = load_config(path, overrides)
        if cfg.name in done and not force:
            print(f"{cfg.name}: record exists (use --force to re-run)")
            continue
        root = data_root
        if cfg.task == "pose" and (root := reproduce_root(data_root)) != data_root:
            print(f"{cfg.name}: no Human3.6M under the default data root: running on the SYNTHETIC preset "
                  f"(--data-root {root}); its numbers are not Human3.6M numbers", flush=True)
        rows.append(_Row(cfg, root))

    def fail(name: str, msg: str, kind: str | None, tb: str | None, say: bool = True) -> None:
        if kind == "NotImplementedError":
            out.not_implemented.append(name)
        else:
            out.failed.append(name)
            out.errors[name] = msg
        if say:
            tell(name, msg, kind, tb)

    def tell(name: str, msg: str, kind: str | None, tb: str | None) -> None:
        if kind == "NotImplementedError":
            print(f"{name}: NOT IMPLEMENTED: {msg.split(': ', 1)[-1]}", flush=True)
        else:
            print(f"{name}: FAILED: {msg}", flush=True)
        if verbose and tb:
            print(tb, file=sys.stderr)

    def write(row: _Row) -> None:
        """Append ``row``'s record as the serial loop would at this point (its reuse check included)."""
        row.written = True
        res = row.result
        try:
            copy = None if force else reuse(row.cfg, runs, row.root)
        except Exception as e:  # noqa: BLE001 - the serial loop fails the row on the same error
            return fail(row.cfg.name, f"{type(e).__name__}: {e}", type(e).__name__, traceback.format_exc())
        if copy is not None:
            append_record(records_file(row.cfg, results), copy)
            print(f"{row.cfg.name}: the same run as {copy['reused_from']['experiment']} (run "
                  f"{copy['reused_from']['run_id']}): its record copied", flush=True)
            rec = copy
        elif res is None:  # cannot happen: a row not run was reusable when planned, and records only grow
            return None
        elif res.error is not None:  # said when it finished
            return fail(row.cfg.name, res.error, res.error_type, res.traceback, say=False)
        else:
            rec = res.record
            append_record(records_file(row.cfg, results), rec)
        (out.skipped if rec["kind"] == "skipped" else out.ran).append(row.cfg.name)
        if rec["kind"] == "run":
            runs.append(rec)
        if verbose:
            print(json.dumps(rec, indent=1, sort_keys=True), flush=True)

    # rows the serial loop would copy from an existing record run nowhere; the others go to Ray
    todo = [i for i, row in enumerate(rows) if force or _reusable(reuse, row, runs) is False]
    submitted = set(todo)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if todo:  # connects (or starts the cluster) only when a row has to run
        print(f"{len(todo)} rows on {ex.describe()}", flush=True)
    nxt = 0
    with _bar(show, len(rows), "rows") as bar:
        bar.update(len(rows) - len(todo))
        try:
            for res in run_rows([(rows[i].cfg, rows[i].root) for i in todo], ex, device=device,
                                cwd=os.getcwd()):
                row = rows[todo[res.index]]
                row.result = res
                bar.update(1)
                where = f"  [{res.seconds:.0f} s" + (f" on {res.node}]" if res.node else "]")
                if res.record is not None:
                    bar.write(summary_line(res.record) + where, file=sys.stdout)
                else:
                    tell(row.cfg.name, f"{res.error}{where}", res.error_type, res.traceback)
                while nxt < len(rows) and (rows[nxt].result is not None or nxt not in submitted):
                    write(rows[nxt])
                    nxt += 1
        finally:  # every finished row is written, in config order, even when the sweep stops early
            for i in range(nxt, len(rows)):
                if not rows[i].written and (rows[i].result is not None or i not in submitted):
                    write(rows[i])
    return out


def _reusable(reuse: Any, row: _Row, runs: list[dict[str, Any]]) -> bool | None:
    """True: the serial loop would copy an existing record for ``row``; False: it has to run; None: the
    check itself failed (the row is written, and fails, in config order)."""
    try:
        return reuse(row.cfg, runs, row.root) is not None
    except Exception:  # noqa: BLE001
        return None
