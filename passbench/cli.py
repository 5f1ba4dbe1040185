"""``passbench`` command line (argparse).

    passbench models [--glob PATTERN]
    passbench run CONFIG [key=value ...] [--data-root DIR] [--no-write] [--on-corrupt-frame error|skip]
    passbench reproduce N|FOLDER [--data-root DIR] [--force] [--format md|csv|latex] [--executor local|ray]
                     [--on-corrupt-frame error|skip]                      (FOLDER: e.g. paper/table3)
    passbench table N [--format md|csv|latex] [--no-write]
    passbench figure N [--metric idf1] [--run] [--executor local|ray]
    passbench regress [--case NAME ...] [key=value ...] [--update --reason TEXT] [--executor local|ray]
    passbench speed CONFIG [key=value ...] [--device cuda] [--precision fp16] [--threads N] [--no-write]
    passbench leaderboard add MODEL [MODEL ...] [key=value ...] [--budget-minutes N] [--data-root DIR] [--out DIR]
    passbench leaderboard show [--format md|csv]
    passbench claims [--check]
    passbench data fetch MOT15|MOT16|MOT17|MOT20 [--to DIR] [--mirror URL]
    passbench data check mot|h36m DIR

``--executor ray [--ray-address HEAD:PORT]`` runs the rows as Ray tasks (``passbench/sched``,
docs/cluster.md); the records are those of the default serial run, written in the same order.

``--device cpu|cuda|cuda:N`` (or ``PASSBENCH_DEVICE``) and ``--precision fp32|fp16|bf16`` on ``run``,
``reproduce``, ``figure``, ``regress``, ``speed`` and ``leaderboard add`` set the rows' ``speed.device`` /
``speed.precision`` (``passbench.device``).

``--results-dir DIR`` (or ``PASSBENCH_RESULTS``) moves ``results/`` (records, tables, figures);
the paper's transcribed values always come from the repository's ``results/paper``.

Output: a tqdm bar per row while it tracks (only when stderr is a terminal; ``--progress`` /
``--no-progress`` force it), then one summary line per finished row; the full record with
``--verbose`` (it is always in the records file).

Exit codes: 0 success (skip markers, "not runnable here", are fine); 1 a row failed or is not
implemented (``run``, ``reproduce``, ``figure --run``, listing them), or ``regress`` found drift;
2 bad input: any ``passbench.errors.UserError`` (a bad config value or override, a data root,
sequence, frame, gt row, weights file or records file the checks refuse), with nothing written and
``error: <message naming the file and the key, field or line>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from passbench.records import summary_line  # the one line per finished row


def _cmd_models(args: argparse.Namespace) -> int:
    from passbench import models

    table = getattr(models, "model_table", None)
    if table is not None:
        df = table(args.glob) if args.glob else table()
        print(df.to_markdown(index=False) if hasattr(df, "to_markdown") else df)
        return 0
    reg = getattr(models, "MODELS", None)
    if reg is None:
        print("passbench.models has no MODELS registry yet", file=sys.stderr)
        return 1
    for name in reg.names(args.glob or "*"):
        print(name)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from passbench.config import load_config
    from passbench.records import check_file
    from passbench.runner import records_file, run

    cfg = load_config(args.config, args.overrides)
    if not args.no_write:
        check_file(records_file(cfg, args.results_dir))  # a corrupted records file: refused before the run
    try:
        rec = run(cfg, data_root=args.data_root, results=args.results_dir, write=not args.no_write,
                  progress=args.progress)
    except NotImplementedError as e:
        print(f"{cfg.name}: NOT IMPLEMENTED: {e}", file=sys.stderr)
        return 1
    _print_outcome(rec, args.verbose)
    return 0


def _print_outcome(rec: dict, verbose: bool = False) -> None:
    print(summary_line(rec), flush=True)
    if verbose:
        print(json.dumps(rec, indent=1, sort_keys=True), flush=True)


@dataclass
class _Outcome:
    """What ``_run_missing`` saw, per experiment name (skip markers are fine; the others fail CI)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_implemented: list[str] = field(default_factory=list)
    bad_input: list[str] = field(default_factory=list)  # stopped by a passbench.errors.UserError (nothing written)

    def report(self, what: str) -> int:
        """Print the tally to stderr; 2 when a row stopped on bad input (data, weights), else 1 when a row
        failed or is not implemented, else 0."""
        print(f"{what}: {len(self.ran)} ran, {len(self.skipped)} not runnable here, {len(self.failed)} failed, "
              f"{len(self.not_implemented)} not implemented, {len(self.bad_input)} bad input", file=sys.stderr)
        for label, names in (("not runnable here (skip markers)", self.skipped), ("FAILED", self.failed),
                             ("NOT IMPLEMENTED", self.not_implemented), ("BAD INPUT", self.bad_input)):
            if names:
                print(f"  {label}: {', '.join(names)}", file=sys.stderr)
        return 2 if self.bad_input else 1 if self.failed or self.not_implemented else 0


def _check_data_root(args: argparse.Namespace) -> None:
    """A data root the user named must exist before any row runs (raises ``DataRootError``);
    ``synthetic:<preset>`` (pose rows) is generated on demand."""
    from passbench.paths import DataRootError, find_data_root
    from passbench.pose.data import is_synthetic_root

    if is_synthetic_root(args.data_root):
        return
    try:
        find_data_root(args.data_root)
    except DataRootError as e:
        if e.given:
            raise


def _run_missing(paths: list, args: argparse.Namespace) -> _Outcome:
    """Run every config in ``paths`` without a run record (all with ``--force``), going on after a
    failing row; returns what happened to each."""
    from passbench.config import load_config
    from passbench.errors import UserError
    from passbench.records import read_records, records_dir
    from passbench.records import append_record
    from passbench.runner import records_file, reuse, run
    from passbench.runner.pose import reproduce_root

    _check_data_root(args)
    rdir = records_dir(args.results_dir)
    runs = read_records(rdir, kind="run") if rdir.is_dir() else []
    done = {r["experiment"] for r in runs}
    out = _Outcome()
    cfgs = [load_config(path, args.overrides) for path in paths]  # a bad config / override: exit 2 before any row
    for cfg in cfgs:
        if cfg.name in done and not args.force:
            print(f"{cfg.name}: record exists (use --force to re-run)")
            continue
        root = args.data_root
        if cfg.task == "pose" and (root := reproduce_root(args.data_root)) != args.data_root:
            print(f"{cfg.name}: no Human3.6M under the default data root: running on the SYNTHETIC preset "
                  f"(--data-root {root}); its numbers are not Human3.6M numbers", flush=True)
        try:
            rec = None if args.force else reuse(cfg, runs, root)  # e.g. Table 2 = Table 1's runs per action
            if rec is not None:
                append_record(records_file(cfg, args.results_dir), rec)
                print(f"{cfg.name}: the same run as {rec['reused_from']['experiment']} (run "
                      f"{rec['reused_from']['run_id']}): its record copied", flush=True)
            else:
                rec = run(cfg, data_root=root, results=args.results_dir, write=True, progress=args.progress)
        except NotImplementedError as e:  # a pipeline piece is missing: say so, write nothing, go on
            print(f"{cfg.name}: NOT IMPLEMENTED: {e}", flush=True)
            out.not_implemented.append(cfg.name)
            continue
        except UserError as e:  # bad data or weights for this row: named, nothing written, the others go on
            print(f"{cfg.name}: error: {e}", flush=True)
            out.bad_input.append(cfg.name)
            continue
        except Exception as e:  # noqa: BLE001 - one failing row must not hide the others; listed and exit 1
            print(f"{cfg.name}: FAILED: {type(e).__name__}: {e}", flush=True)
            if args.verbose:
                traceback.print_exc()
            out.failed.append(cfg.name)
            continue
        (out.skipped if rec["kind"] == "skipped" else out.ran).append(cfg.name)
        if rec["kind"] == "run":
            runs.append(rec)
        _print_outcome(rec, args.verbose)
    return out


def _run_rows(paths: list, args: argparse.Namespace):
    """The rows of ``paths`` without a record: one after the other here (``--executor local``), or as Ray
    tasks with the records written here in the same order (``--executor ray``, passbench/sched/sweep.py)."""
    if getattr(args, "executor", "local") == "local":
        return _run_missing(paths, args)
    from passbench.sched import RayExecutor
    from passbench.sched.sweep import run_missing

    _check_data_root(args)
    with RayExecutor(args.ray_address) as ex:
        return run_missing(paths, ex, overrides=args.overrides, data_root=args.data_root, results=args.results_dir,
                           force=args.force, verbose=args.verbose, progress=args.progress,
                           device=getattr(args, "device", None))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    import re

    from passbench.config import find_configs, load_config

    paths = find_configs(args.n)  # 3 -> configs/table3/; paper/table3 -> configs/paper/table3/
    what = f"reproduce {args.n}"
    outcome = _run_rows(paths, args)
    tables = {load_config(p).table for p in paths}
    m = re.fullmatch(r"table([1-4])", tables.pop()) if len(tables) == 1 else None
    rc = 0
    if m:
        args.n, args.no_write = int(m.group(1)), False
        rc = _cmd_table(args)
    else:
        print(f"{what}: rows of {', '.join(sorted(tables)) or 'no table'}: draw them with passbench figure N",
              file=sys.stderr)
    return outcome.report(what) or rc


def _cmd_table(args: argparse.Namespace) -> int:
    from passbench.records import read_records, records_dir
    from passbench.report.tables import build_table, render, write_table

    rdir = records_dir(args.results_dir)
    records = read_records(rdir) if rdir.is_dir() else []
    df = build_table(args.n, records)
    print(render(args.n, df, args.format), end="")
    if not args.no_write:
        for p in write_table(args.n, args.results_dir, formats=tuple(dict.fromkeys(("md", "csv", args.format)))):
            print(f"wrote {p}", file=sys.stderr)
    return 0


def _cmd_figure(args: argparse.Namespace) -> int:
    from passbench.config import find_configs
    from passbench.report.figures import write_figure

    outcome = None
    folders = {"tradeoff": ["tradeoff", "refresh"], "everyconv": ["everyconv"]}.get(args.n, [f"figure{args.n}"])
    if args.run:  # the figure's own points (configs/figure<N>/, configs/tradeoff/ + refresh/) without a record yet
        outcome = _run_rows([p for f in folders for p in find_configs(f)], args)
    if args.n in ("tradeoff", "everyconv"):
        from passbench.report import tradeoff

        paths = tradeoff.write(args.results_dir, y=args.metric or "mota", table=args.n)
    else:
        paths = write_figure(int(args.n), args.results_dir, y=args.metric)
    for p in paths:
        print(f"wrote {p}")
    return outcome.report(f"figure {args.n} --run") if outcome is not None else 0


def _cmd_speed(args: argparse.Namespace) -> int:
    from passbench.config import load_config
    from passbench.records import check_file
    from passbench.runner import records_file
    from passbench.runner.speed import SkipRow, run_speed

    cfg = load_config(args.config, args.overrides)
    if not args.no_write:
        check_file(records_file(cfg, args.results_dir))
    try:
        from passbench.device import requested  # noqa: PLC0415

        rec = run_speed(cfg, device=requested(args.device), precision=args.precision, threads=args.threads,
                        data_root=args.data_root, results=args.results_dir, write=not args.no_write)
    except NotImplementedError as e:
        print(f"{cfg.name}: NOT IMPLEMENTED: {e}", file=sys.stderr)
        return 1
    except SkipRow as e:
        print(f"{cfg.name}: not runnable here: {e}", file=sys.stderr)
        return 0
    sp = rec["speed"]
    print(f"{cfg.name} [{sp['device']}, {sp['precision']}, {sp['threads']} threads]: {sp['fps']:.1f} FPS "
          f"(dense twin {sp['fps_dense']:.1f}, {sp['speedup']:.2f}x), p50 {sp['latency_ms_p50']:.2f} ms, "
          f"p90 {sp['latency_ms_p90']:.2f} ms" + _rounds_and_load(sp))
    if args.verbose:
        print(json.dumps(rec, indent=2, sort_keys=True))
    return 0


def _rounds_and_load(sp: dict) -> str:
    """``passbench speed``'s tail: the per-round ratios' spread and the load warning (metrics/load.py)."""
    from passbench.metrics.load import load_warning

    rounds = sp.get("speedup_rounds") or []
    tail = f", {len(rounds)} rounds {min(rounds):.2f}-{max(rounds):.2f}x" if rounds else ""
    warning = load_warning(sp)
    return tail + (f"\n  {warning}" if warning else "")


def _cmd_regress(args: argparse.Namespace) -> int:
    from passbench import regress

    return regress.main(cases=args.case, overrides=args.overrides, update=args.update, reason=args.reason,
                        golden=args.golden, data_root=args.data_root, progress=args.progress, verbose=args.verbose,
                        executor=args.executor, ray_address=args.ray_address)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--threads 0`` is a usage error, not "the config's value")."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from passbench.sched.executor import add_executor_options  # --executor local|ray, --ray-address

    p = argparse.ArgumentParser(prog="passbench", description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default=None, type=Path,
                   help="results folder (default: $PASSBENCH_RESULTS or <repo>/results)")
    sub = p.add_subparsers(dest="cmd", required=True)

    out = argparse.ArgumentParser(add_help=False)  # output options of the commands that run rows
    out.add_argument("-v", "--verbose", action="store_true", help="also print each full record (and tracebacks)")
    out.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar per row on stderr (default: only when stderr is a terminal)")
    from passbench.device import add_device_options  # --device / --precision

    add_device_options(out)
    data = argparse.ArgumentParser(add_help=False)  # data options of the commands that evaluate rows
    data.add_argument("--on-corrupt-frame", choices=("error", "skip"), default=None,
                      help="a missing, truncated, undecodable or wrongly sized img1/ frame: an error (default), or "
                           "left out of tracking and scoring, counted in the record (skip)")

    m = sub.add_parser("models", help="list registered models (params, GMACs when available)")
    m.add_argument("--glob", default=None, help="name pattern, e.g. 'hrnet*'")
    m.set_defaults(fn=_cmd_models)

    r = sub.add_parser("run", parents=[out, data], help="run one config and append its record")
    r.add_argument("config", type=Path)
    r.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. dataset.frames=[1,10]")
    r.add_argument("--data-root", default=None, help="data root (default: $PASSBENCH_DATA or the sample data)")
    r.add_argument("--no-write", action="store_true", help="do not append the record")
    r.set_defaults(fn=_cmd_run)

    rp = sub.add_parser("reproduce", parents=[out, data],
                        help="run a table's configs whose records are missing, then derive it")
    rp.add_argument("n", help="paper table 1-4 (configs/table<N>/) or a config folder, e.g. paper/table3")
    rp.add_argument("overrides", nargs="*", help="overrides applied to every config of the table")
    rp.add_argument("--data-root", default=None)
    rp.add_argument("--force", action="store_true", help="re-run configs that already have a record")
    rp.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    add_executor_options(rp)
    rp.set_defaults(fn=_cmd_reproduce)

    t = sub.add_parser("table", help="derive a paper table from the records")
    t.add_argument("n", type=int, choices=(1, 2, 3, 4))
    t.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    t.add_argument("--no-write", action="store_true", help="print only; do not write results/tables/")
    t.set_defaults(fn=_cmd_table)

    f = sub.add_parser("figure", parents=[out, data], help="draw a paper figure from the records (PNG + PDF)")
    f.add_argument("n", choices=("4", "5", "tradeoff", "everyconv"),
                   help="4, 5 (the paper's figures), tradeoff (every method at matched skip rates, configs/tradeoff/) "
                        "or everyconv (the same on every conv of a plain-conv FairMOT, configs/everyconv/)")
    f.add_argument("--metric", default=None, help="y metric (default: mpjpe_mm for 4, mota for 5), e.g. idf1")
    f.add_argument("--run", action="store_true", help="first run the figure's configs that have no record")
    f.add_argument("overrides", nargs="*", help="overrides applied to every config run (with --run)")
    f.add_argument("--data-root", default=None)
    f.add_argument("--force", action="store_true", help="with --run: re-run configs that already have a record")
    add_executor_options(f)
    f.set_defaults(fn=_cmd_figure)

    g = sub.add_parser("regress", parents=[out],
                       help="accuracy regression check: small fixed evaluations vs results/golden/")
    g.add_argument("overrides", nargs="*", help="overrides applied to every case (to test the check itself)")
    g.add_argument("--case", action="append", default=None, help="run only this case (repeatable)")
    g.add_argument("--update", action="store_true", help="re-bless: write the measured values as the goldens")
    g.add_argument("--reason", default=None, help="with --update: why the goldens change (recorded)")
    g.add_argument("--golden", default=None, type=Path, help="golden file (default results/golden/regress.json)")
    g.add_argument("--data-root", default=None, help="data root (default: $PASSBENCH_DATA or the sample data)")
    add_executor_options(g)
    g.set_defaults(fn=_cmd_regress)

    sp = sub.add_parser("speed", parents=[out],
                        help="time one MOT config's forward alone (dense twin vs method) on a device; append a "
                             "speed record (tables: an FPS column per device)")
    sp.add_argument("config", type=Path)
    sp.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. speed.iters=60")
    sp.add_argument("--threads", type=_positive_int, default=None,
                    help="torch threads (default: the config's speed.threads)")
    sp.add_argument("--data-root", default=None, help="data root (default: $PASSBENCH_DATA or the sample data)")
    sp.add_argument("--no-write", action="store_true", help="do not append the speed record")
    sp.set_defaults(fn=_cmd_speed)

    from passbench.leaderboard import register_cli  # passbench leaderboard add|show (passbench/leaderboard.py)

    register_cli(sub)
    from passbench.report.claims import register_cli as register_claims  # passbench claims (report/claims.py)

    register_claims(sub)
    from passbench.datafetch.cli import register_cli as register_data  # passbench data fetch|check

    register_data(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``passbench`` console script."""
    from passbench.datasets import CORRUPT_FRAME_ENV
    from passbench.errors import UserError

    parser = build_parser()
    # key=value overrides may follow options (`figure 4 --run speed.threads=1`): argparse has already
    # filled the positional `overrides` list before it sees the option, so the rest comes back unknown
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    if args.results_dir is not None:
        os.environ["PASSBENCH_RESULTS"] = str(args.results_dir)
    policy = getattr(args, "on_corrupt_frame", None)
    saved = os.environ.get(CORRUPT_FRAME_ENV)
    if policy:  # read where frames are loaded (passbench.runner.mot), also by rows run in other processes
        os.environ[CORRUPT_FRAME_ENV] = policy
    try:
        if args.cmd != "speed" and hasattr(args, "device"):  # --device / --precision as config overrides
            from passbench.device import overrides  # noqa: PLC0415

            args.overrides = list(args.overrides or []) + overrides(args.device, args.precision)
        return args.fn(args)
    except UserError as e:  # every input check derives from it (passbench.errors): exit 2, nothing written
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if policy:
            os.environ.pop(CORRUPT_FRAME_ENV, None) if saved is None else os.environ.update({CORRUPT_FRAME_ENV: saved})


if __name__ == "__main__":
    sys.exit(main())
