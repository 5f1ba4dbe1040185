"""``passbench`` command line (argparse).

    passbench models [--glob PATTERN]
    passbench run CONFIG [key=value ...] [--data-root DIR] [--no-write]
    passbench reproduce N [--data-root DIR] [--force] [--format md|csv|latex]
    passbench table N [--format md|csv|latex] [--no-write]
    passbench figure N [--metric idf1]
    passbench leaderboard add MODEL [key=value ...] [--budget-minutes N] [--data-root DIR] [--out DIR]
    passbench leaderboard show [--format md|csv]

``--results-dir DIR`` (or ``PASSBENCH_RESULTS``) moves ``results/`` (records, tables, figures);
the paper's transcribed values always come from the repository's ``results/paper``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


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
    from passbench.runner import run

    cfg = load_config(args.config, args.overrides)
    rec = run(cfg, data_root=args.data_root, results=args.results_dir, write=not args.no_write)
    _print_outcome(rec)
    return 0


def _print_outcome(rec: dict) -> None:
    if rec["kind"] == "skipped":
        print(f"{rec['experiment']}: not runnable here: {rec['reason']}")
        return
    keep = {k: rec[k] for k in ("experiment", "metrics", "cost", "speed")}
    keep["metrics"] = {k: v for k, v in rec["metrics"].items() if not isinstance(v, dict)}
    print(json.dumps(keep, indent=1, sort_keys=True))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from passbench.config import find_configs, load_config
    from passbench.records import read_records, records_dir
    from passbench.runner import run

    missing_code = _run_missing(find_configs(args.n), args)
    args.no_write = False
    rc = _cmd_table(args)
    if missing_code:
        print(f"{len(missing_code)} row(s) could not run because code is missing: {', '.join(missing_code)}",
              file=sys.stderr)
    return rc


def _run_missing(paths: list, args: argparse.Namespace) -> list[str]:
    """Run every config in ``paths`` without a run record (all with ``--force``); returns the names
    that could not run because a pipeline piece is missing."""
    from passbench.config import load_config
    from passbench.records import read_records, records_dir
    from passbench.runner import run

    rdir = records_dir(args.results_dir)
    done = {r["experiment"] for r in read_records(rdir, kind="run")} if rdir.is_dir() else set()
    missing_code: list[str] = []
    for path in paths:
        cfg = load_config(path, args.overrides)
        if cfg.name in done and not args.force:
            print(f"{cfg.name}: record exists (use --force to re-run)")
            continue
        print(f"{cfg.name}: running", flush=True)
        try:
            rec = run(cfg, data_root=args.data_root, results=args.results_dir, write=True)
        except NotImplementedError as e:  # a pipeline piece is missing: say so, write nothing, go on
            print(f"{cfg.name}: NOT IMPLEMENTED: {e}", flush=True)
            missing_code.append(cfg.name)
            continue
        _print_outcome(rec)
    return missing_code


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

    if args.run:  # the figure's own points (configs/figure<N>/) that have no record yet
        missing = _run_missing(find_configs(f"figure{args.n}"), args)
        if missing:
            print(f"{len(missing)} point(s) could not run because code is missing: {', '.join(missing)}",
                  file=sys.stderr)
    for p in write_figure(args.n, args.results_dir, y=args.metric):
        print(f"wrote {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="passbench", description=__doc__.split("\n")[0])
    p.add_argument("--results-dir", default=None, type=Path,
                   help="results folder (default: $PASSBENCH_RESULTS or <repo>/results)")
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("models", help="list registered models (params, GMACs when available)")
    m.add_argument("--glob", default=None, help="name pattern, e.g. 'hrnet*'")
    m.set_defaults(fn=_cmd_models)

    r = sub.add_parser("run", help="run one config and append its record")
    r.add_argument("config", type=Path)
    r.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. dataset.frames=[1,10]")
    r.add_argument("--data-root", default=None, help="data root (default: $PASSBENCH_DATA or the sample data)")
    r.add_argument("--no-write", action="store_true", help="do not append the record")
    r.set_defaults(fn=_cmd_run)

    rp = sub.add_parser("reproduce", help="run a table's configs whose records are missing, then derive it")
    rp.add_argument("n", type=int)
    rp.add_argument("overrides", nargs="*", help="overrides applied to every config of the table")
    rp.add_argument("--data-root", default=None)
    rp.add_argument("--force", action="store_true", help="re-run configs that already have a record")
    rp.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    rp.set_defaults(fn=_cmd_reproduce)

    t = sub.add_parser("table", help="derive a paper table from the records")
    t.add_argument("n", type=int, choices=(1, 2, 3, 4))
    t.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    t.add_argument("--no-write", action="store_true", help="print only; do not write results/tables/")
    t.set_defaults(fn=_cmd_table)

    f = sub.add_parser("figure", help="draw a paper figure from the records (PNG + PDF)")
    f.add_argument("n", type=int, choices=(4, 5))
    f.add_argument("--metric", default=None, help="y metric (default: mpjpe_mm for 4, mota for 5), e.g. idf1")
    f.add_argument("--run", action="store_true", help="first run the figure's configs that have no record")
    f.add_argument("overrides", nargs="*", help="overrides applied to every config run (with --run)")
    f.add_argument("--data-root", default=None)
    f.add_argument("--force", action="store_true", help="with --run: re-run configs that already have a record")
    f.set_defaults(fn=_cmd_figure)

    from passbench.leaderboard import register_cli  # passbench leaderboard add|show (passbench/leaderboard.py)

    register_cli(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``passbench`` console script."""
    from passbench.config import ConfigError
    from passbench.records import RecordError

    args = build_parser().parse_args(argv)
    if args.results_dir is not None:
        os.environ["PASSBENCH_RESULTS"] = str(args.results_dir)
    try:
        return args.fn(args)
    except (ConfigError, RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
