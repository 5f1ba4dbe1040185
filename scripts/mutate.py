"""Mutation testing of passbench's core modules with mutmut (``./dev mutate [MODULE ...]``).

Each module is mutated on its own, against the fast tests that cover it (``MODULES`` below), in a
scratch directory ``runs/mutate/<module>/`` holding a generated ``pyproject.toml`` (mutmut reads its
configuration from the working directory) and mutmut's ``mutants/`` tree. Results are cached there
per mutant: a rerun only checks mutants not yet checked, so after adding tests run with ``--fresh`` (mutmut
keeps a cached verdict while the mutated function's source is unchanged, whatever the tests). At the end the
script prints, per module, how many mutants were killed, survived, timed out or were not checked,
and writes ``runs/mutate/<module>/summary.json`` plus ``survivors.diff`` (every surviving mutant's
diff, for judging which are equivalent; ``docs/testing.md`` records that judgement).

Not part of CI: one module takes from minutes to hours on 2 CPU cores. Run it under ``nice -n 19``.

    ./dev mutate                      # every module below, one after the other
    ./dev mutate passbench/skip/macs.py passbench/records.py
    ./dev mutate --list               # the modules and their tests
    ./dev mutate --summary            # counts from the cached runs only, nothing run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRATCH = REPO / "runs" / "mutate"
TIMEOUT = -1  # _tests_in_copy's answer for a test run past its time limit
PUBLISHED = REPO / "docs" / "logs" / "mutation"  # the committed copies docs/testing.md cites

# module (or glob) -> the fast tests that pin it. Only these tests run against its mutants (mutmut runs,
# for each mutant, those of them that executed the mutated function).
MODULES: dict[str, list[str]] = {
    "passbench/skip/gates.py": ["tests/test_skip_gates.py", "tests/test_fastgate.py", "tests/test_gate_rules.py"],
    "passbench/skip/sparse.py": ["tests/test_sparse.py", "tests/test_wrapper_paths.py", "tests/test_sparse_rules.py"],
    "passbench/skip/macs.py": ["tests/test_macs.py"],
    # collect_stats (the per-layer and per-stream MAC / skip counts) lives here since it left macs.py
    "passbench/skip/stats.py": ["tests/test_macs.py"],
    "passbench/skip/wrapper.py": ["tests/test_skip_wrapper.py", "tests/test_skip_holes.py",
                                  "tests/test_wrapper_rules.py", "tests/test_wrapper_paths.py"],
    "passbench/train/pass_p.py": ["tests/test_pass_p.py", "tests/test_pass_p_rules.py"],
    "passbench/metrics/*": ["tests/test_mot_metrics.py", "tests/test_pose_metrics.py", "tests/test_speed.py",
                            "tests/test_speed_cuda_path.py", "tests/test_speed_load.py", "tests/test_macs.py",
                            "tests/test_mot_eval_rules.py"],
    "passbench/pose/evaluate.py": ["tests/test_pose_pipeline.py", "tests/test_pose_metrics.py"],
    "passbench/report/tables.py": ["tests/test_report.py", "tests/test_report_cells.py",
                                   "tests/test_report_tables_rules.py"],
    "passbench/records.py": ["tests/test_records.py", "tests/test_records_lines.py", "tests/test_records_env.py",
                            "tests/test_records_summary.py", "tests/test_records_validate.py", "tests/test_report_cells.py"],
}

# Repository folders the tests read through passbench.paths.REPO_ROOT (the mutants/ tree stands in for it).
LINKED = ("configs", "weights", "results", "scripts", "notebooks", "baselines", "docs")

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}


def slug(module: str) -> str:
    return module.removeprefix("passbench/").replace("/", "_").replace("*", "all").removesuffix(".py")


def _toml_list(items) -> str:
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


# Tests that cannot run under mutmut: a Jupyter kernel started by the test imports the mutated package in a
# process of its own, where mutmut's trampoline finds no configuration (FileNotFoundError). What they check
# (the leaderboard notebook runs) is not what the module's mutants change.
SUBPROCESS_TESTS: dict[str, list[str]] = {
    "passbench/report/tables.py": ["tests/test_report.py::test_leaderboard_notebook_executes"],
}


def _deselect(module: str) -> list[str]:
    return [arg for t in SUBPROCESS_TESTS.get(module, []) for arg in ("--deselect", t)]


def _config(module: str, tests: list[str]) -> str:
    """The scratch directory's pyproject.toml: mutmut's settings for this module and the project's pytest
    options (mutmut runs pytest with the mutants/ tree as working directory and reads them there)."""
    text = (REPO / "pyproject.toml").read_text()
    pytest_ini = text[text.index("[tool.pytest.ini_options]"):]
    pytest_ini = pytest_ini.split("\n[", 1)[0]
    return "\n".join([
        "[tool.mutmut]",
        'source_paths = ["passbench"]',
        f"only_mutate = {_toml_list([module])}",
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}",
        f"pytest_add_cli_args = {_toml_list(['-p', 'no:cacheprovider', '-q', '-x', *_deselect(module)])}",
        # torch's thread pools are not fork-safe after use: fork each mutant from a clean server process
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "timeout_multiplier = 10.0",
        "",
        pytest_ini,
        "",
    ])


def prepare(module: str, fresh: bool) -> Path:
    """Scratch directory for ``module``: links to the code and tests, the config, the linked folders."""
    tests = MODULES[module]
    missing = [t for t in tests if not (REPO / t).exists()]
    if missing:
        raise SystemExit(f"mutate: tests for {module} not found: {missing}")
    d = SCRATCH / slug(module)
    if fresh and d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    for name in ("passbench", "tests"):
        if not (d / name).exists():
            (d / name).symlink_to(REPO / name)
    (d / "pyproject.toml").write_text(_config(module, tests))
    (d / "mutants").mkdir(exist_ok=True)
    for name in LINKED:  # mutmut copies only the sources and tests into mutants/; link the rest
        if (REPO / name).exists() and not (d / "mutants" / name).exists():
            (d / "mutants" / name).symlink_to(REPO / name)
    shared = REPO.parent / "shared"  # ../shared/data beside the checkout, seen from mutants/
    if shared.exists() and not (d / "shared").exists():
        (d / "shared").symlink_to(shared)
    return d


def summary(module: str) -> dict:
    """Counts per status from mutmut's cached results of ``module`` (nothing is run)."""
    d = SCRATCH / slug(module)
    counts: dict[str, int] = {}
    survivors: list[str] = []
    untested: list[str] = []
    for meta in sorted((d / "mutants" / "passbench").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in codes.items():
            status = STATUS.get(code, "suspicious")
            counts[status] = counts.get(status, 0) + 1
            if status == "survived":
                survivors.append(name)
            elif status == "no tests":  # no test of the subset ran the function: a gap too (--recheck)
                untested.append(name)
    total = sum(counts.values())
    checked = total - counts.get("not checked", 0) - counts.get("no tests", 0)
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    return {"module": module, "tests": MODULES[module], "total": total, "counts": counts,
            "kill_rate_checked": round(killed / checked, 4) if checked else None, "survivors": survivors,
            "untested": untested}


def run(module: str, fresh: bool, max_children: int) -> dict:
    d = prepare(module, fresh)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    print(f"== mutate {module} ({', '.join(MODULES[module])}) in {d.relative_to(REPO)}", flush=True)
    rc = subprocess.call(cmd, cwd=d, env=env)
    s = summary(module)
    s.update(rc=rc, date=date.today().isoformat())
    diffs = []
    for name in s["survivors"] + s["untested"]:  # survivors.diff: every mutant no test killed
        out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=d, env=env, capture_output=True,
                             text=True)
        diffs.append(f"# {name}\n{out.stdout}")
    (d / "survivors.diff").write_text("\n".join(diffs))
    (d / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    return s


def _function_span(text: str, name: str) -> tuple[int, int] | None:
    """Character span of the function a mutmut mutant name points at (``pkg.mod.x_func__mutmut_3``,
    ``pkg.mod.xǁClassǁmethod__mutmut_3``) in the source ``text``; None when it is not found."""
    import ast

    short = name.rsplit(".", 1)[-1].split("__mutmut_")[0]
    if short.startswith("xǁ"):
        cls, fn = short[2:].split("ǁ", 1)
    elif short.startswith("x_"):
        cls, fn = None, short[2:]
    else:
        return None
    body = ast.parse(text).body
    if cls is not None:
        body = next((n.body for n in body if isinstance(n, ast.ClassDef) and n.name == cls), [])
    node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == fn), None)
    if node is None:
        return None
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return starts[first - 1], starts[node.end_lineno] if node.end_lineno < len(starts) else len(text)


def _apply(root: Path, diff: str, name: str | None = None) -> bool:
    """Apply one mutant's unified diff (``mutmut show``: hunks numbered within the function, a method shown
    dedented) by replacing the hunk's old lines with its new lines where they occur exactly once in the file.
    The whole hunk is tried first, then the changed lines with less and less context around them: mutmut shows
    a method's code dedented but its docstring's continuation lines as they are, so a hunk that spans both
    matches at no one indentation. With the mutant's ``name`` the match must lie inside its function (less
    context could otherwise match the same line in another function)."""
    lines = diff.splitlines()
    path = root / lines[0][4:].strip()
    body = [ln for ln in lines[3:] if not ln.startswith("@@")]
    changed = [i for i, ln in enumerate(body) if ln[:1] in ("-", "+")]
    if not changed:
        return False
    lo, hi = changed[0], changed[-1]
    spans = [(0, len(body))] + [(max(0, lo - before), hi + 1 + after) for total in range(7)
                                for before in range(4) for after in range(4) if before + after == total]
    text = path.read_text()
    span = _function_span(text, name) if name else (0, len(text))
    if span is None:  # the function is gone (renamed, removed): nothing to apply it to
        return False
    lo_c, hi_c = span
    region = text[lo_c:hi_c]
    for a0, a1 in spans:
        old, new = [], []
        for ln in body[a0:a1]:
            tag, line = (ln[:1], ln[1:]) if ln else (" ", "")
            if tag in (" ", "-"):
                old.append(line)
            if tag in (" ", "+"):
                new.append(line)
        # mutmut shows a method dedented to the left margin: try the lines as shown, then one and two levels in
        for pad in ("", "    ", "        "):
            a = "\n".join(pad + ln if ln else ln for ln in old) + "\n"
            b = "\n".join(pad + ln if ln else ln for ln in new) + "\n"
            if region.count(a) == 1:
                path.write_text(text[:lo_c] + region.replace(a, b) + text[hi_c:])
                return True
    return False


def _tests_in_copy(module: str, patch_text: str | None, keyword: str | None,
                   timeout: float | None = None, name: str | None = None) -> int | None:
    """pytest's exit code for the module's tests on a scratch copy of the sources with ``patch_text`` applied
    (None: unchanged); None when the diff does not apply; ``TIMEOUT`` past ``timeout`` seconds."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mutate-recheck-") as tmp:
        t = Path(tmp)
        shutil.copytree(REPO / "passbench", t / "passbench")
        shutil.copytree(REPO / "tests", t / "tests")
        shutil.copyfile(REPO / "pyproject.toml", t / "pyproject.toml")
        for link in LINKED:
            if (REPO / link).exists():
                (t / link).symlink_to(REPO / link)
        if patch_text is not None and not _apply(t, patch_text, name):
            return None
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                   PASSBENCH_DATA=str((REPO.parent / "shared" / "data").resolve()))
        try:
            return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                   *(["-k", keyword] if keyword else []), *MODULES[module]], cwd=t, env=env,
                                  capture_output=True, timeout=timeout).returncode
        except subprocess.TimeoutExpired:  # a mutant that loops for ever (iter(read, None)): mutmut's "timeout"
            return TIMEOUT


def recheck(module: str, diff_file: Path, keyword: str | None = None, jobs: int = 1) -> dict:
    """Re-check recorded survivors against the current tests, without mutmut: apply each survivor's diff
    (``survivors.diff`` of an earlier run) to a scratch copy of the sources and run the module's tests there.
    A mutant is killed when the tests fail. ``keyword`` (pytest ``-k``) may restrict the run to the tests added
    since: the recorded survivors already passed every other test. The tests run first on the unchanged copy:
    a test that fails there (one that needs the git checkout, say) would "kill" every mutant, so the recheck
    stops instead. ``jobs`` diffs are checked at once (each in its own copy and pytest process). Writes
    ``runs/mutate/<module>/recheck.json``."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.monotonic()
    rc = _tests_in_copy(module, None, keyword)
    limit = max(60.0, 10.0 * (time.monotonic() - t0))  # mutmut's rule: 10x the clean run counts as a timeout
    if rc not in (0, 5):
        raise SystemExit(f"mutate: the tests fail on the unchanged scratch copy (pytest exit {rc}); narrow them "
                         "with -k (tests that read the git checkout cannot run there)")
    blocks = [b for b in diff_file.read_text().split("\n# ") if "\n--- " in b]
    out = {"module": module, "tests": MODULES[module], "keyword": keyword, "from": str(diff_file.relative_to(REPO)),
           "date": date.today().isoformat(), "killed": [], "timeout": [], "survived": [], "not applied": []}
    def check(b: str) -> tuple[str, str]:
        name = b.lstrip("# ").split("\n", 1)[0].split(":")[0].strip()
        rc = _tests_in_copy(module, b[b.index("--- "):], keyword, timeout=limit, name=name)
        status = "not applied" if rc is None else "timeout" if rc == TIMEOUT else "killed" if rc not in (0, 5) \
            else "survived"
        print(f"{name}: {status}", flush=True)
        return name, status

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # results kept in the diff file's order
        for name, status in pool.map(check, blocks):
            out[status].append(name)
    d = SCRATCH / slug(module)
    d.mkdir(parents=True, exist_ok=True)
    (d / "recheck.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def _line(s: dict) -> str:
    c = s["counts"]
    rate = "-" if s["kill_rate_checked"] is None else f"{100 * s['kill_rate_checked']:.1f} %"
    return (f"{s['module']:32s} mutants {s['total']:4d}  killed {c.get('killed', 0):4d}  timeout "
            f"{c.get('timeout', 0):3d}  survived {c.get('survived', 0):4d}  not checked "
            f"{c.get('not checked', 0) + c.get('no tests', 0):4d}  kill rate (checked) {rate}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="modules to mutate (default: all of MODULES)")
    ap.add_argument("--fresh", action="store_true", help="forget cached results and start over")
    ap.add_argument("--list", action="store_true", help="print the modules and their tests")
    ap.add_argument("--summary", action="store_true", help="counts from the cached runs, nothing run")
    ap.add_argument("--recheck", type=Path, default=None, metavar="DIFF",
                    help="re-check the survivors recorded in DIFF (an earlier survivors.diff) with the current "
                         "tests, by applying each diff to a scratch copy (one module)")
    ap.add_argument("-k", dest="keyword", default=None, help="with --recheck: pytest -k expression (new tests)")
    ap.add_argument("--publish", action="store_true",
                    help="copy each module's summary.json and survivors.diff to docs/logs/mutation/")
    ap.add_argument("--max-children", type=int, default=1,
                    help="mutants checked in parallel, by mutmut or by --recheck (default 1)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        print(f"mutate: unknown module(s) {unknown}; known: {sorted(MODULES)}", file=sys.stderr)
        return 2
    modules = args.modules or list(MODULES)
    if args.recheck is not None:
        if len(modules) != 1:
            print("mutate: --recheck takes exactly one module", file=sys.stderr)
            return 2
        r = recheck(modules[0], args.recheck.resolve(), args.keyword, args.max_children)
        print(f"{modules[0]}: of {len(r['killed']) + len(r['timeout']) + len(r['survived'])} recorded survivors, "
              f"{len(r['killed'])} killed by the current tests, {len(r['timeout'])} timed out, "
              f"{len(r['survived'])} survive ({len(r['not applied'])} diffs not applied)")
        if args.publish:
            PUBLISHED.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SCRATCH / slug(modules[0]) / "recheck.json", PUBLISHED / f"{slug(modules[0])}.recheck.json")
        return 0
    if args.list:
        for m in modules:
            print(f"{m:32s} {' '.join(MODULES[m])}")
        return 0
    results = [summary(m) if args.summary else run(m, args.fresh, args.max_children) for m in modules]
    print()
    for s in results:
        print(_line(s))
    if args.publish:
        PUBLISHED.mkdir(parents=True, exist_ok=True)
        for m, s in zip(modules, results):
            d = SCRATCH / slug(m)
            if args.summary:  # the cached counts as they are now (a run may still be going or was stopped)
                s = {**s, "date": date.today().isoformat(),
                     "complete": s["counts"].get("not checked", 0) == 0 and s["total"] > 0}
                (PUBLISHED / f"{slug(m)}.json").write_text(json.dumps(s, indent=1) + "\n")
                continue
            for name, ext in (("summary.json", "json"), ("survivors.diff", "diff")):
                if (d / name).exists():
                    shutil.copyfile(d / name, PUBLISHED / f"{slug(m)}.{ext}")
        print(f"published to {PUBLISHED.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
