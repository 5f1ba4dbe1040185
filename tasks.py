"""invoke tasks: thin wrappers over the ``passbench`` CLI (nothing here produces a number).

    invoke reproduce --table 3 [--data-root DIR] [--force]
    invoke figure -n 5   (invoke spells one-letter options with one dash)
    invoke test [--slow]
    invoke regress [--update --reason "why"] [--case pass_f]   # accuracy vs results/golden/
    invoke bench
    invoke demo          # the README's main job: Table 3 on the sample data (without MOT data: Table 2's
                         # pose rows on the synthetic preset)
    invoke leaderboard-add timm:resnet18 [--budget-minutes 30]   # a backbone's four leaderboard rows
    invoke claims [--check]   # the paper-claims ledger: results/claims.yaml on the records -> results/claims.md
"""

from __future__ import annotations

import shlex
import sys

from invoke import Exit, task

PY = shlex.quote(sys.executable)
CLI = f"{PY} -m passbench.cli"


def _opt(flag: str, value: object) -> str:
    return f" {flag} {shlex.quote(str(value))}" if value not in (None, "") else ""


EXECUTOR_HELP = "local (one row after the other, default) or ray (each row a Ray task, docs/cluster.md)"


@task(help={"table": "paper table number (1-4) or a config folder (paper/table3)", "data_root": "data root",
            "force": "re-run rows that have records",
            "results_dir": "results folder", "fmt": "md | csv | latex", "executor": EXECUTOR_HELP,
            "ray_address": "with --executor ray: a running cluster (default $RAY_ADDRESS, else a local one)"})
def reproduce(c, table, data_root=None, force=False, results_dir=None, fmt="md", executor=None, ray_address=None):
    """Run the table's configs whose records are missing, then derive results/tables/table<N>."""
    c.run(_reproduce_cmd(table, data_root, force, results_dir, fmt, executor, ray_address), pty=False)


def _reproduce_cmd(table, data_root=None, force=False, results_dir=None, fmt="md", executor=None,
                   ray_address=None) -> str:
    cmd = CLI + _opt("--results-dir", results_dir) + f" reproduce {shlex.quote(str(table))}" + _opt("--data-root", data_root)
    return (cmd + " --force" * bool(force) + _opt("--format", fmt) + _opt("--executor", executor)
            + _opt("--ray-address", ray_address))


@task(help={"table": "paper table number (1-4)", "fmt": "md | csv | latex"})
def table(c, table, fmt="md", results_dir=None):
    """Derive a table from the existing records only."""
    c.run(CLI + _opt("--results-dir", results_dir) + f" table {int(table)} --format {fmt}")


@task(help={"n": "figure: 4, 5, tradeoff or everyconv", "metric": "y metric, e.g. idf1",
            "run": "first run the figure's configs (configs/figure<N>/) that have no record",
            "data_root": "data root", "force": "with --run: re-run configs that have records",
            "executor": EXECUTOR_HELP, "ray_address": "with --executor ray: a running cluster"})
def figure(c, n="5", metric=None, results_dir=None, run=True, data_root=None, force=False, executor=None,
           ray_address=None):
    """Run the figure's missing points, then draw Figure N (4, 5) or the matched-rate trade-off
    (``-n tradeoff``: figure + table; ``-n everyconv``: the same on every conv of a plain-conv FairMOT) into
    results/figures/ (PNG + PDF)."""
    c.run(CLI + _opt("--results-dir", results_dir) + f" figure {shlex.quote(str(n))}" + _opt("--metric", metric)
          + " --run" * bool(run) + _opt("--data-root", data_root) + " --force" * bool(force)
          + (_opt("--executor", executor) + _opt("--ray-address", ray_address)) * bool(run))


@task(help={"slow": "include tests marked slow"})
def test(c, slow=False):
    """Run the test suite (the default run excludes slow/gpu/data tests)."""
    c.run(f"{PY} -m pytest" + (" -m 'not gpu and not data'" if slow else ""))


@task(help={"update": "re-bless: write the measured values as the goldens",
            "reason": "with --update: why the goldens change (recorded with them)",
            "case": "run only this case (dense, skipconv, pass_f)", "data_root": "data root"})
def regress(c, update=False, reason=None, case=None, data_root=None):
    """Accuracy regression check of the committed weights against results/golden/ (exit 1 on drift)."""
    c.run(CLI + " regress" + " --update" * bool(update) + _opt("--reason", reason) + _opt("--case", case)
          + _opt("--data-root", data_root))


@task
def bench(c):
    """Engine benchmark (sparse vs dense), as ./dev bench."""
    c.run(f"{PY} -m passbench.bench")


DEMO_SEQUENCES = ("PETS09-S2L1", "TUD-Stadtmitte", "TUD-Campus")  # Table 3's sample split (configs/_base_/mot_sample.yaml)


def _mot_demo_root(data_root=None):
    """``(has the MOT15 sequences of Table 3's sample split, where it looked)``; no data root at all is False."""
    from passbench.paths import DataRootError, find_data_root

    try:
        root = find_data_root(data_root)
    except DataRootError as e:
        return False, str(e)
    return all((root.path / "MOT15" / "train" / s).is_dir() for s in DEMO_SEQUENCES), root.describe()


@task(help={"data_root": "data root (default: the built-in sample data)",
            "results_dir": "where the demo's records/tables/figures go (default runs/demo)"})
def demo(c, data_root=None, results_dir="runs/demo"):
    """Measure Table 3 afresh on the sample data (every runnable row, ~10 min on 2 CPU cores) into
    ``runs/demo/`` (not the committed ``results/``), then draw Figure 5 from those records. Without the
    MOT data (a fresh machine without ``../shared/data``): Table 2's pose rows on the SYNTHETIC preset
    instead, and one line on how to fetch MOT data. A row that fails leaves the others, the table and the
    figure in place; the task then exits with reproduce's code (1, the rows listed above)."""
    have, where = _mot_demo_root(data_root)
    if not have:
        print(f"demo: no MOT data for Table 3 (MOT15/train/{{{','.join(DEMO_SEQUENCES)}}} under {where}): measuring "
              "Table 2's pose rows on the SYNTHETIC Human3.6M preset instead; for Table 3 run `passbench data "
              "fetch MOT15 --to data` then `./dev demo --data-root data`", flush=True)
        from pathlib import Path

        pose_root = data_root if data_root and (Path(data_root) / "Human36M").is_dir() else "synthetic:table2"
        res = c.run(_reproduce_cmd(2, pose_root, results_dir=results_dir), pty=False, warn=True)
        if res.exited:
            raise Exit(f"invoke demo: passbench reproduce 2 exited {res.exited} (see above)", code=res.exited)
        return
    res = c.run(_reproduce_cmd(3, data_root, results_dir=results_dir), pty=False, warn=True)
    figure(c, 5, results_dir=results_dir, run=False)
    if res.exited:
        raise Exit(f"invoke demo: passbench reproduce 3 exited {res.exited} (see above)", code=res.exited)


@task(help={"model": "timm:<arch> (any timm features_only body) or a registered model name",
            "budget_minutes": "training time for all stages (evaluation comes on top)",
            "data_root": "data root (default: the built-in sample data)", "out": "training folder",
            "results_dir": "results folder (default results/)"})
def leaderboard_add(c, model, budget_minutes=30, data_root=None, out=None, results_dir=None):
    """Train MODEL and its PASS / Skip-Conv gates within the budget, then append its dense, Skip-Conv,
    PASS-P and PASS-F rows to results/records/leaderboard.jsonl (re-running resumes)."""
    c.run(CLI + _opt("--results-dir", results_dir) + " leaderboard add " + shlex.quote(model)
          + _opt("--budget-minutes", budget_minutes) + _opt("--data-root", data_root) + _opt("--out", out), pty=False)


@task(help={"check": "write nothing; fail when results/claims.md differs from its regeneration",
            "results_dir": "results folder (default results/)"})
def claims(c, check=False, results_dir=None):
    """Evaluate the paper's claims (results/claims.yaml) on the records and write results/claims.md."""
    c.run(CLI + _opt("--results-dir", results_dir) + " claims" + " --check" * bool(check))
