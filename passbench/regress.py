"""``passbench regress``: does the committed pipeline still give the committed accuracy?

Re-runs a small fixed evaluation of the committed weights (``CASES``) through the same runner as
the tables and compares each metric (``TASK_METRICS``) with the golden values committed in
``results/golden/regress.json``. Prints one table row per metric (case, metric, golden, now,
tolerance, verdict) and returns 1 when any metric drifts, a case fails or cannot run, or a case has
no golden; CI (``.ci/run``) runs it after the tests.

Cases: the Table 3 light-model rows ``dense``, ``skipconv`` and ``pass_f`` with ``weights/sample/``,
on the second half of TUD-Stadtmitte only (frames 90-179, the ``dataset.halves`` split of
``configs/_base_/mot_sample.yaml``; the weights were trained on the first half). Fixed conditions,
so that every compared number is deterministic:

* speed is not timed (``speed.enabled=false``): wall-clock noise is not an accuracy regression, and
  the timing rounds would triple the run time;
* the skipping rows run ``method.params.execution=sparse``. With the default ``auto`` the
  dispatcher (``passbench.skip.dispatch.choose_path``) picks sparse or dense per layer from a timing
  calibration on the machine at hand, so executed GMACs (and, in the last float bits, the outputs)
  would depend on the machine's load. Forcing the block-sparse kernel makes executed GMACs the
  MACs the gates' masks determine (``cost.gmacs_if_all_sparse``) and tests the kernel itself;
* one torch thread (``speed.threads=1``; the runner sets it for the whole row): a fixed count, and
  on a shared or loaded CI machine two OpenMP threads spin-wait for each other (on the project's
  2-core machine under load the ``pass_f`` case ran several times faster at 1 thread, same metrics).

Tolerances: all zero. A CPU run of this pipeline is deterministic for a given machine, torch build
and thread count: the skip decisions, detections and tracker are pure functions of the float
outputs, and MOTA / IDF1 / skip rate are ratios of integer counts. Checked when the goldens were
first blessed (2-core AMD EPYC, torch 2.14.1): every metric identical at 1 and 2 threads, with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (outputs bit-identical to AVX-512) and with
``ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41`` (outputs differ in the 6th decimal, no
metric moved). A different CPU or torch version may still move a borderline
detection by float noise; the table then names the metrics and the golden's blessing environment is
printed beside this one, so that a re-bless (``--update --reason``) is a decision, not a default.

``--data-root DIR`` applies to the cases of its task only (``tasks_of_root``): a MOT root to the MOT
cases, ``synthetic:<preset>`` or a root holding ``Human36M/`` to the pose cases; the other cases keep
their own data (the MOT cases the default root, the pose cases ``synthetic:table2``).

Re-blessing (e.g. after retraining the weights): ``passbench regress --update --reason "why"``
rewrites the goldens of the cases run and appends the reason, date, git sha and the changed values
to the file's ``history``.

Pose cases (``task="pose"``): the Table 1 MHP dense and PASS-F rows with ``weights/pose/`` on a small
fixed slice of the SYNTHETIC preset ``synthetic:table2`` (generated into the cache on first use): subject
S9, Discussion (fixed camera) and Walking (moving camera), both subactions and cameras, frames 0-64 of
each video (8 streams, 520 frames; the protocol scores frames 0 and 64). Same fixed conditions as the MOT
cases (no timing, one thread, PASS-F on the block-sparse kernel). Tolerances: patch skip rate and
executed GMACs zero (top-k masks keep an exact patch count per layer); MPJPE 0.01 mm, far below any
effect a change of the method or weights has, above float noise of other CPUs (a mean of float32
network outputs through float64 geometry). PA-MPJPE (3DMPPE ``rigid_align``, no scale) is compared beside
MPJPE at the same tolerance: a change of the alignment (a fitted scale, a lost root-centring) moves it.

Further cases, each for a path the cases above cannot see:

* ``skipconv_gumbel``: the Table 3 Skip-Conv row with the learned Gumbel gates (``weights/sample/
  skipconv_gumbel.pt``), same conditions as ``skipconv``;
* ``mot17_mini_smoke``: a SMOKE case, the Table 4 PASS-F row on the 4 + 8 frames of MOT17-mini at
  detection threshold 0.1; it compares counts (GT boxes kept by the MOT17 rules, TP, FP after the
  distractor deletion, FN, IDs) and the skip rate / GMACs, not an accuracy;
* ``tables``: Table 3, the trade-off table and Table 2 regenerated from the committed records
  (``passbench.report.golden``) and compared cell by cell with the golden cells (text equality; the drifted
  cells are printed). Its "weights" fingerprint is a digest of the records: after a re-measurement,
  re-bless it with ``--case tables --update --reason``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from passbench.errors import UserError
from passbench.paths import REPO_ROOT

GOLDEN = REPO_ROOT / "results" / "golden" / "regress.json"
SCHEMA = "passbench.golden/1"


@dataclass(frozen=True)
class Case:
    """One fixed evaluation: a committed config plus overrides (``passbench.config`` syntax)."""

    name: str
    config: str  # relative to the repository root
    overrides: tuple[str, ...]
    task: str = "mot"


@dataclass(frozen=True)
class Metric:
    """A compared number: ``key`` in the table and the golden file, ``path`` in the record,
    ``tol`` the allowed absolute difference (see the module docstring for why zero)."""

    key: str
    path: str
    tol: float = 0.0


_MOT = ("dataset.sequences=[TUD-Stadtmitte]", "speed.enabled=false", "speed.threads=1")
_SPARSE = ("method.params.execution=sparse",)  # deterministic executed MACs (module docstring)
_POSE = ("dataset.data_root=synthetic:table2", "dataset.sequences=[S9, Discussion, Walking]", "dataset.frames=[0, 64]",
         "speed.enabled=false", "speed.threads=1")

CASES: tuple[Case, ...] = (
    Case("dense", "configs/table3/dense_light.yaml", _MOT),
    Case("skipconv", "configs/table3/skipconv.yaml", _MOT + _SPARSE),
    Case("pass_f", "configs/table3/pass_f.yaml", _MOT + _SPARSE),
    Case("pose_dense", "configs/table1/mhp.yaml", _POSE, task="pose"),
    Case("pose_pass_f", "configs/table1/pass_f.yaml", _POSE + _SPARSE, task="pose"),
    Case("skipconv_gumbel", "configs/table3/skipconv_gumbel.yaml", _MOT + _SPARSE),
    # A smoke case (4 + 8 frames of MOT17-mini): the MOT17 path (distractor deletion, consider flags and classes,
    # the MOT17 benchmark rules) runs end to end and gives the same counts; not an accuracy measurement. Detection
    # threshold 0.1: the light model (trained on MOT15 halves at 384x224) outputs no box on these 1080p frames at
    # the default 0.4, and a case without tracker boxes would not exercise the distractor deletion.
    Case("mot17_mini_smoke", "configs/table4/pass_f.yaml",
         ("dataset.name=MOT17-mini", "dataset.sequences=[MOT17-02-FRCNN, MOT17-04-FRCNN]", "eval.conf_threshold=0.1",
          "speed.enabled=false", "speed.threads=1") + _SPARSE, task="mot_smoke"),
    # The generated tables regenerated from the committed records, cell by cell (passbench.report.golden).
    Case("tables", "results/records", (), task="tables"),
)

TASK_METRICS: dict[str, tuple[Metric, ...]] = {
    "mot": (
        Metric("mota", "metrics.mota"),
        Metric("idf1", "metrics.idf1"),
        Metric("ids", "metrics.ids"),
        Metric("patch_skip_rate", "cost.patch_skip_rate"),
        Metric("gmacs_executed", "cost.gmacs_executed"),
    ),
    "pose": (
        Metric("mpjpe_mm", "metrics.mpjpe_mm", 0.01),
        Metric("mpjpe_mm_all_frames", "metrics.mpjpe_mm_all_frames", 0.01),
        Metric("pa_mpjpe_mm", "metrics.pa_mpjpe_mm", 0.01),
        Metric("patch_skip_rate", "cost.patch_skip_rate"),
        Metric("gmacs_executed", "cost.gmacs_executed"),
    ),
    "mot_smoke": tuple(Metric(k, f"metrics.{k}") for k in ("num_gt", "tp", "fp", "fn", "ids")) + (
        Metric("patch_skip_rate", "cost.patch_skip_rate"),
        Metric("gmacs_executed", "cost.gmacs_executed"),
    ),
    # one compared value per table: its cells ({key: text}); equal or not, the drifted cells are printed
    "tables": tuple(Metric(name, f"values.{name}") for name in ("table3", "tradeoff", "table2")),
}


class RegressError(UserError, ValueError):
    """Bad use of ``regress`` (unknown case, missing reason, unreadable golden file)."""


# ----------------------------------------------------------------------------------------------
# measuring


def _get(rec: dict[str, Any], path: str) -> Any:
    node: Any = rec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def measure(case: Case, overrides: list[str] | tuple[str, ...] = (), data_root: Any = None,
            progress: bool | None = None) -> dict[str, Any]:
    """Run one case (nothing written to the records) and return its record (or skip marker)."""
    if case.task == "tables":
        from passbench.report import golden as tg  # noqa: PLC0415

        return {"kind": "run", "experiment": "regress/tables", "values": tg.table_cells(REPO_ROOT / case.config),
                "model": {"weights_sha256": tg.records_digest(REPO_ROOT / case.config)}, "config": {}}
    from passbench.runner import run  # noqa: PLC0415

    return run(case_config(case, overrides), data_root=data_root, write=False, progress=progress)


def case_config(case: Case, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The case's resolved config (``ConfigError`` for a bad override: the user's, exit 2)."""
    from passbench.config import load_config  # noqa: PLC0415

    return load_config(REPO_ROOT / case.config, list(case.overrides) + list(overrides))


def tasks_of_root(data_root: Any) -> set[str]:
    """The tasks a data root given to ``regress --data-root`` serves: ``pose`` for ``synthetic:<preset>`` or a
    folder holding ``Human36M/``; ``mot`` for a folder holding a MOT benchmark (``MOT15`` ... ``MOT17-mini``),
    or for any other folder (the MOT cases then say what is missing in it). Cases of another task keep their
    own data (the pose cases' ``synthetic:table2``)."""
    from pathlib import Path  # noqa: PLC0415

    from passbench.datasets.mot import BENCHMARK_DIRS  # noqa: PLC0415
    from passbench.pose.data import is_synthetic_root  # noqa: PLC0415

    if data_root is None:
        return set()
    if is_synthetic_root(data_root):
        return {"pose"}
    root = Path(data_root).expanduser()
    tasks = {"pose"} if (root / "Human36M").is_dir() else set()
    if any((root / b).is_dir() for b in BENCHMARK_DIRS) or not tasks:
        tasks.add("mot")
    return tasks


def values_of(rec: dict[str, Any], task: str) -> dict[str, float | int | None]:
    """``{metric key: value}`` of a run record for the task's compared metrics."""
    return {m.key: _get(rec, m.path) for m in TASK_METRICS[task]}


# ----------------------------------------------------------------------------------------------
# comparing


@dataclass(frozen=True)
class Row:
    case: str
    metric: str
    golden: Any
    now: Any
    tol: float

    @property
    def verdict(self) -> str:
        if self.golden is None:
            return "NO GOLDEN"
        if self.now is None:
            return "MISSING"
        if isinstance(self.golden, dict) or isinstance(self.now, dict):  # table cells: equal text
            return "ok" if self.now == self.golden else "DRIFT"
        return "ok" if abs(float(self.now) - float(self.golden)) <= self.tol else "DRIFT"


def compare(case: Case, now: dict[str, Any], golden: dict[str, Any] | None) -> list[Row]:
    """One row per metric of the case's task (``golden`` None: the case was never blessed)."""
    vals = (golden or {}).get("values", {})
    return [Row(case.name, m.key, vals.get(m.key), now.get(m.key), m.tol) for m in TASK_METRICS[case.task]]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return f"{len(v)} cells"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return f"{v:.6f}"


def render(rows: list[Row]) -> str:
    """The table: case, metric, golden, now, tolerance, verdict (fixed width, one line per metric)."""
    head = ("case", "metric", "golden", "now", "tolerance", "verdict")
    body = [(r.case, r.metric, _fmt(r.golden), _fmt(r.now), f"{r.tol:g}", r.verdict) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)]) + "\n"


# ----------------------------------------------------------------------------------------------
# the golden file


def load_golden(path: str | Path = GOLDEN) -> dict[str, Any]:
    """The golden file (an empty one when it does not exist yet).

    Raises:
        RegressError: not JSON, or not this schema (names the file).
    """
    path = Path(path)
    if not path.exists():
        return {"schema": SCHEMA, "cases": {}, "history": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RegressError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("cases"), dict):
        raise RegressError(f"{path}: not a golden file (expected schema {SCHEMA!r} with a 'cases' object)")
    data.setdefault("history", [])
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic write (temp file in the same folder + rename): a crash leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def environment(threads: int | None = None) -> dict[str, Any]:
    """Where a blessing / check ran: git sha and dirty flag, python, torch, CPU, threads."""
    from passbench.records import env_info  # noqa: PLC0415

    env = env_info()
    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), platform.processor())
    return {"git_sha": env["git_sha"], "dirty": env["dirty"], "python": env["python"], "torch": env["torch"],
            "cpu": cpu or None, "threads": threads}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def bless(golden: dict[str, Any], measured: dict[str, tuple[Case, dict[str, Any]]], reason: str) -> dict[str, Any]:
    """Write the measured values as the goldens of their cases and log why in ``history``."""
    from passbench.records import utc_now  # noqa: PLC0415

    now = utc_now()
    changed: dict[str, dict[str, list[Any]]] = {}
    for name, (case, rec) in measured.items():
        vals = values_of(rec, case.task)
        old = golden["cases"].get(name, {}).get("values", {})
        diff = {k: [old.get(k), v] for k, v in vals.items() if old.get(k) != v}
        if diff:
            changed[name] = diff
        golden["cases"][name] = {
            "config": case.config, "overrides": list(case.overrides), "task": case.task, "values": vals,
            "weights_sha256": rec["model"]["weights_sha256"],
            "blessed": {"utc": now, "reason": reason, **environment(_get(rec, "config.speed.threads"))},
        }
    golden["history"].append({"utc": now, "reason": reason, "git_sha": environment()["git_sha"],
                              "cases": sorted(measured), "changed": changed})
    return golden


# ----------------------------------------------------------------------------------------------
# the command


def select(names: list[str] | None) -> list[Case]:
    """The named cases (all by default); an unknown name raises ``RegressError`` listing the known ones."""
    if not names:
        return list(CASES)
    known = {c.name: c for c in CASES}
    bad = [n for n in names if n not in known]
    if bad:
        raise RegressError(f"unknown regress case(s) {', '.join(bad)}; known: {', '.join(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def measure_on_ray(cases: list[Case], overrides: list[str], data_root: Any = None,
                   address: str | None = None) -> dict[str, Any]:
    """Every case as a Ray task (``passbench.sched``, nothing written): ``{case name: RowResult}``."""
    from passbench.config import load_config  # noqa: PLC0415
    from passbench.sched import RayExecutor  # noqa: PLC0415
    from passbench.sched.rows import run_rows  # noqa: PLC0415

    cfgs = [(load_config(REPO_ROOT / c.config, list(c.overrides) + list(overrides)), data_root) for c in cases]
    with RayExecutor(address) as ex:
        print(f"{len(cases)} cases on {ex.describe()}", flush=True)
        return {cases[r.index].name: r for r in run_rows(cfgs, ex)}


def main(cases: list[str] | None = None, overrides: list[str] | None = None, update: bool = False,
         reason: str | None = None, golden: str | Path | None = None, data_root: Any = None,
         progress: bool | None = None, verbose: bool = False, executor: str = "local",
         ray_address: str | None = None) -> int:
    """Run the cases, print the comparison table, bless with ``update``; the exit code.

    ``executor="ray"`` runs every case as a Ray task first (``measure_on_ray``; ``ray_address`` or
    ``$RAY_ADDRESS``, else a local cluster), then compares as the serial run does.

    Returns:
        0 every metric within tolerance (or goldens written with ``update``); 1 drift, a case that
        failed / could not run, or a case without golden; 2 bad use (see ``RegressError``).
    """
    from passbench.records import summary_line  # noqa: PLC0415

    overrides = list(overrides or [])
    path = Path(golden) if golden is not None else GOLDEN
    try:
        chosen = select(cases)
        if update and not (reason or "").strip():
            raise RegressError("--update needs --reason \"why the goldens change\" (it is recorded with them)")
        if update and overrides:
            raise RegressError("--update with overrides would bless an evaluation other than the cases' own")
        gold = load_golden(path)
    except RegressError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for case in chosen:  # a bad override fails here (ConfigError, exit 2), before any case runs
        if case.task != "tables":  # the tables case reads records, no config
            case_config(case, overrides)
    rows: list[Row] = []
    problems: list[str] = []
    measured: dict[str, tuple[Case, dict[str, Any]]] = {}
    served = tasks_of_root(data_root)
    on_ray = measure_on_ray(chosen, overrides, data_root, ray_address) if executor == "ray" else None
    for case in chosen:
        t0 = time.perf_counter()
        try:  # a given root applies to the cases of its task; the others keep their own data
            root = data_root if case.task in served else None
            rec = measure(case, overrides, root, progress) if on_ray is None else on_ray[case.name].record
        except Exception as e:  # noqa: BLE001 - a failing case is a regression to report, not a crash
            print(f"{case.name}: FAILED: {type(e).__name__}: {e}", flush=True)
            problems.append(f"{case.name} failed")
            continue
        if rec is None:  # its Ray task failed
            print(f"{case.name}: FAILED: {on_ray[case.name].error}", flush=True)
            problems.append(f"{case.name} failed")
            continue
        line = summary_line(rec) if case.task != "tables" else f"{len(rec['values'])} tables from {case.config}"
        took = time.perf_counter() - t0 if on_ray is None else on_ray[case.name].seconds
        print(f"[{case.name}, {took:.0f} s] {line}", flush=True)
        if verbose:
            print(json.dumps(rec, indent=1, sort_keys=True))
        if rec["kind"] != "run":
            problems.append(f"{case.name} not runnable here")
            continue
        measured[case.name] = (case, rec)
        g = gold["cases"].get(case.name)
        rows.extend(compare(case, values_of(rec, case.task), g))
        if case.task == "tables" and g:
            from passbench.report.golden import cell_changes  # noqa: PLC0415

            for key, cells in values_of(rec, case.task).items():
                for ln in cell_changes(g["values"].get(key), cells):
                    print(f"  {case.name}: {key}: {ln}", flush=True)
        if g and (g.get("config"), g.get("overrides")) != (case.config, list(case.overrides)):
            print(f"  note: {case.name}: the case definition changed since the golden was blessed "
                  f"({g.get('config')} {g.get('overrides')}); re-bless with --update --reason if intended", flush=True)
        if g and g.get("weights_sha256") != rec["model"]["weights_sha256"]:
            what = "records" if case.task == "tables" else "weights"
            print(f"  note: {case.name}: the {what} changed since the golden was blessed "
                  f"({g['blessed']['utc']}, {g['blessed']['reason']!r}); if that is intended, re-bless with "
                  "--update --reason", flush=True)
    print()
    print(render(rows), end="")
    if update:
        if problems:
            print(f"regress: not blessed: {'; '.join(problems)}", file=sys.stderr)
            return 1
        _write_json(path, bless(gold, measured, reason.strip()))
        print(f"regress: blessed {', '.join(measured)} into {path} ({reason.strip()!r})")
        return 0
    drift: dict[str, list[str]] = {}
    for r in rows:
        if r.verdict != "ok":
            drift.setdefault(r.case, []).append(r.metric if r.verdict == "DRIFT" else f"{r.metric} ({r.verdict})")
    if drift:
        here = environment()
        print(f"  this run: {str(here['git_sha'])[:10]}{' (dirty)' if here['dirty'] else ''} on {here['cpu']}, "
              f"torch {here['torch']}")
    for name in drift:
        b = gold["cases"].get(name, {}).get("blessed")
        if b:
            print(f"  {name}: golden blessed {b['utc']} at {str(b.get('git_sha'))[:10]} on {b.get('cpu')}, "
                  f"torch {b.get('torch')}, {b.get('threads')} threads: {b['reason']!r}")
    problems += [f"{name}: {', '.join(ms)}" for name, ms in drift.items()]
    if problems:
        print(f"regress: FAILED: {'; '.join(problems)} (golden file {path})", file=sys.stderr)
        return 1
    print(f"regress: ok ({len(rows)} metrics of {len(measured)} cases within tolerance)")
    return 0
