"""Result records: one JSON line per finished run in ``results/records/*.jsonl`` (the source of truth).

Schema (``schema = "passbench.record/1"``, see STYLE.md)::

    kind: "run"
    schema, run_id, created_utc, experiment, task,
    dataset{name, split, protocol, frames, sequences, synthetic, data_root},
    model{name, tag, weights_sha256},
    method{name, params},
    metrics{...}                      # task metrics; fractions in [0, 1], units in key names
    cost{gmacs_dense, gmacs_executed, gate_gmacs, patch_skip_rate, mac_reduction},
    speed{fps, fps_dense, latency_ms_p50, latency_ms_p90, device, threads, precision, batch, timed_region},
    env{git_sha, dirty, python, torch, device},
    config{...}                       # the fully resolved config (passbench.config.to_dict)

``dataset.data_root`` is the root as the user named it (``passbench.paths.DataRoot.label``: a relative
path, ``$PASSBENCH_DATA`` or ``../shared/data``), never a machine's absolute path: ``new_record``
refuses one. (Records written before that rule may hold one; readers accept them.)

A row that cannot run here gets a *skip marker* instead (``kind: "skipped"``, with ``reason`` and
``config`` and no metrics/cost/speed), so tables can say why a row is empty. Nothing is ever filled
from the paper.

``passbench speed CONFIG`` (the model forward timed alone, e.g. on a GPU or a Jetson) appends a
*speed record* (``kind: "speed"``: ``model``, ``method``, ``speed`` with its device and precision,
``env``, ``config``; no metrics, no cost). It never stands for the experiment's row
(``latest_by_experiment`` ignores it); tables show it as an extra FPS column for its device.

Writes are atomic: the whole file is rewritten to a temp file in the same folder and renamed over
the old one under an exclusive ``fcntl`` lock, so a reader never sees a half-written line and a
crashed write leaves the previous file intact. The rewritten file keeps the old one's permission
bits (a new file gets ``0o666`` less the umask: 0644 as the repository's files), not the temp file's
0600. An append validates every line already in the file first: a file that ``table`` /
``reproduce`` would refuse (``RecordError`` naming the line) is never appended to.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from passbench.errors import UserError
from passbench.metrics.load import load_warning
from passbench.paths import REPO_ROOT, RESULTS

SCHEMA = "passbench.record/1"
KINDS = ("run", "skipped", "speed")

_REQUIRED_RUN = {
    "dataset": ("name", "split", "protocol", "frames"),
    "model": ("name", "tag", "weights_sha256"),
    "method": ("name", "params"),
    "metrics": (),
    "cost": ("gmacs_dense", "gmacs_executed", "gate_gmacs", "patch_skip_rate", "mac_reduction"),
    "speed": ("fps", "latency_ms_p50", "latency_ms_p90", "device", "threads", "precision", "batch", "timed_region"),
    "env": ("git_sha", "dirty", "python", "torch", "device"),
    "config": (),
}
_FRACTION_KEYS = ("patch_skip_rate", "mac_reduction", "mota", "idf1", "idp", "idr", "recall", "precision")
# Fractions that may be negative: MOTA = 1 - (FN + FP + IDSW) / GT, and the MAC reduction with the gate's
# MACs charged, 1 - (executed + gate) / dense, which is < 0 when a gate costs more than its layer skips.
_AT_MOST_ONE = ("mota", "mac_reduction")


class RecordError(UserError, ValueError):
    """A record is malformed; the message names the file and line when read from disk."""


def results_dir(results: str | os.PathLike[str] | None = None) -> Path:
    """The results folder: explicit argument, else ``PASSBENCH_RESULTS``, else ``<repo>/results``."""
    if results is not None:
        return Path(results)
    env = os.environ.get("PASSBENCH_RESULTS")
    return Path(env) if env else RESULTS


def records_dir(results: str | os.PathLike[str] | None = None) -> Path:
    return results_dir(results) / "records"


# ----------------------------------------------------------------------------------------------
# building


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def env_info(device: str = "cpu") -> dict[str, Any]:
    """git sha / dirty flag / python / torch versions (torch version read without importing torch)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:  # noqa: BLE001 - no torch installed: record that, do not fail
        torch_version = None
    return {"git_sha": sha, "dirty": dirty, "python": platform.python_version(), "torch": torch_version, "device": device}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes (a record's ``model.weights_sha256``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def new_record(
    *,
    experiment: str,
    task: str,
    dataset: dict[str, Any],
    model: dict[str, Any],
    method: dict[str, Any],
    metrics: dict[str, Any],
    cost: dict[str, Any],
    speed: dict[str, Any],
    config: dict[str, Any],
    env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble and validate a run record (fills schema, run_id, created_utc, env)."""
    rec = {
        **_header("run", experiment, task),
        "dataset": dataset,
        "model": model,
        "method": method,
        "metrics": metrics,
        "cost": cost,
        "speed": speed,
        "env": env if env is not None else env_info(speed.get("device", "cpu")),
        "config": config,
    }
    validate_record(rec)
    root = dataset.get("data_root")
    if isinstance(root, str) and os.path.isabs(root):
        raise RecordError(f"field 'dataset.data_root': {root!r} is this machine's absolute path; store the root as "
                          "the user named it (passbench.paths.DataRoot.label)")
    return rec


def _header(kind: str, experiment: str, task: str) -> dict[str, Any]:
    """The fields every record starts with: schema, kind, a fresh run id, the creation time, experiment, task."""
    return {"schema": SCHEMA, "kind": kind, "run_id": uuid.uuid4().hex[:12], "created_utc": utc_now(),
            "experiment": experiment, "task": task}


def skip_marker(*, experiment: str, task: str, reason: str, config: dict[str, Any]) -> dict[str, Any]:
    """A marker saying this experiment was not run here, and why (no metrics, no numbers)."""
    rec = {
        **_header("skipped", experiment, task),
        "reason": reason,
        "env": env_info(),
        "config": config,
    }
    validate_record(rec)
    return rec


def speed_record(*, experiment: str, task: str, model: dict[str, Any], method: dict[str, Any],
                 speed: dict[str, Any], config: dict[str, Any], env: dict[str, Any] | None = None) -> dict[str, Any]:
    """A speed-only record (``kind: "speed"``): the model forward of ``experiment`` timed alone on
    ``speed.device`` at ``speed.precision`` (``passbench speed``); no metrics, no cost."""
    rec = {
        **_header("speed", experiment, task),
        "model": model,
        "method": method,
        "speed": speed,
        "env": env if env is not None else env_info(speed.get("device", "cpu")),
        "config": config,
    }
    validate_record(rec)
    return rec


# ----------------------------------------------------------------------------------------------
# validation


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_numbers(d: dict[str, Any], prefix: str, depth: int) -> None:
    """Values are finite numbers (or None); nested objects allowed ``depth`` levels down."""
    for k, v in d.items():
        name = f"{prefix}.{k}"
        if v is None:
            continue
        if isinstance(v, dict) and depth > 0:
            _check_numbers(v, name, depth - 1)
            continue
        if not _is_num(v):
            raise RecordError(f"field '{name}': expected a finite number, got {v!r}")
        if k in _FRACTION_KEYS and k not in _AT_MOST_ONE and not 0.0 <= v <= 1.0:
            raise RecordError(f"field '{name}': fraction {v} outside [0, 1]")
        if k in _AT_MOST_ONE and v > 1.0:
            label = "MOTA" if k == "mota" else k
            raise RecordError(f"field '{name}': {label} {v} > 1 (store fractions, not percent)")


def validate_record(rec: Any) -> None:
    """Raise :class:`RecordError` if ``rec`` does not follow the schema (names the offending field)."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__}")
    if rec.get("schema") != SCHEMA:
        raise RecordError(f"field 'schema': expected {SCHEMA!r}, got {rec.get('schema')!r}")
    kind = rec.get("kind")
    if kind not in KINDS:
        raise RecordError(f"field 'kind': expected one of {KINDS}, got {kind!r}")
    for k in ("run_id", "created_utc", "experiment", "task"):
        if not isinstance(rec.get(k), str) or not rec[k]:
            raise RecordError(f"field '{k}': missing or not a non-empty string")
    if kind == "skipped":
        if not isinstance(rec.get("reason"), str) or not rec["reason"]:
            raise RecordError("field 'reason': a skip marker needs a reason")
        for k in ("metrics", "cost", "speed"):
            if k in rec:
                raise RecordError(f"field '{k}': a skip marker carries no numbers")
        return
    if kind == "speed":
        for k in ("metrics", "cost"):
            if k in rec:
                raise RecordError(f"field '{k}': a speed record carries no {k} (it times the forward only)")
        for section in ("model", "method", "speed", "env", "config"):
            if not isinstance(rec.get(section), dict):
                raise RecordError(f"field '{section}': missing or not an object")
        for k in _REQUIRED_RUN["speed"]:
            if k not in rec["speed"]:
                raise RecordError(f"field 'speed.{k}': missing")
        fps = rec["speed"].get("fps")
        if not _is_num(fps) or fps <= 0:
            raise RecordError(f"field 'speed.fps': expected a positive number, got {fps!r}")
        return
    for section, keys in _REQUIRED_RUN.items():
        sub = rec.get(section)
        if not isinstance(sub, dict):
            raise RecordError(f"field '{section}': missing or not an object")
        for k in keys:
            if k not in sub:
                raise RecordError(f"field '{section}.{k}': missing")
    _check_numbers(rec["metrics"], "metrics", depth=2)  # metrics.per_sequence.<seq>.<key> allowed
    _check_numbers(rec["cost"], "cost", depth=0)
    fps = rec["speed"].get("fps")
    if fps is not None and (not _is_num(fps) or fps <= 0):
        raise RecordError(f"field 'speed.fps': expected a positive number, got {fps!r}")


# ----------------------------------------------------------------------------------------------
# writing and reading


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _new_file_mode() -> int:
    """What ``open(path, "w")`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode()  # mkstemp's file is 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_record(path: str | os.PathLike[str], rec: dict[str, Any]) -> Path:
    """Validate ``rec`` and append it as one line to ``path`` atomically (rewrite-to-temp + rename, the
    file's permission bits kept).

    Returns:
        The path written.

    Raises:
        RecordError: ``rec`` is malformed, or a line already in ``path`` is (``<file>:<line>: ...``, as
            :func:`read_records` says it); nothing is written then.
    """
    validate_record(rec)
    line = json.dumps(rec, sort_keys=True, allow_nan=False)
    path = Path(path)
    with _locked(path):
        old = path.read_text() if path.exists() else ""
        _check_lines(path, old)
        if old and not old.endswith("\n"):
            old += "\n"
        _atomic_write(path, old + line + "\n")
    return path


def check_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`RecordError` (``<file>:<line>: ...``) if an existing records file holds a bad line:
    what a command that will append to it checks before any work (``append_record`` checks again)."""
    p = Path(path)
    if p.is_file():
        _check_lines(p, p.read_text())


def read_records(paths: str | os.PathLike[str] | list[Any] | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Read and validate records.

    Args:
        paths: a ``.jsonl`` file, a folder (all ``*.jsonl`` in it, sorted), a list of files, or None for
            the default records folder (:func:`records_dir`).
        kind: keep only ``"run"``, ``"skipped"`` or ``"speed"`` entries; None keeps all.

    Raises:
        RecordError: ``<file>:<line>: <what is wrong>`` for the first bad line.
    """
    if paths is None:
        paths = records_dir()
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    else:
        files = [Path(x) for x in paths]
    out: list[dict[str, Any]] = []
    for f in files:
        out += [rec for rec in _check_lines(f, f.read_text()) if kind is None or rec["kind"] == kind]
    return out


def _check_lines(path: Path, text: str) -> list[dict[str, Any]]:
    """The records of a file's ``text``, each line parsed and validated (blank lines skipped).

    Raises:
        RecordError: ``<file>:<line>: <what is wrong>`` for the first bad line.
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}:{lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
        try:
            validate_record(rec)
        except RecordError as e:
            raise RecordError(f"{path}:{lineno}: {e}") from None
        out.append(rec)
    return out


def latest_by_experiment(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``experiment`` id: the newest run record, or the newest skip marker when it never ran.

    A finished run wins over a later skip marker (a row skipped on one machine keeps the numbers
    measured on another). Ties in ``created_utc`` go to the later entry in file order. Speed records
    (``kind: "speed"``) are not rows and are ignored here.
    """
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        if rec["kind"] == "speed":
            continue
        cur = out.get(rec["experiment"])
        if cur is None:
            out[rec["experiment"]] = rec
            continue
        rank_new = (rec["kind"] == "run", rec["created_utc"])
        rank_cur = (cur["kind"] == "run", cur["created_utc"])
        if rank_new >= rank_cur:
            out[rec["experiment"]] = rec
    return out


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def timing_applies(speed_rec: dict[str, Any] | None, run_rec: dict[str, Any]) -> bool:
    """Whether a speed record (``passbench speed``) times the model of a run record: the same weights
    (``model.weights_sha256``) and the same method parameters. A speed record of gates or a backbone since
    retrained, or of another operating point, says nothing about the run's model (tables leave it out)."""
    if not speed_rec:
        return False
    a, b = speed_rec.get("model") or {}, run_rec.get("model") or {}
    pa, pb = (speed_rec.get("method") or {}).get("params"), (run_rec.get("method") or {}).get("params")
    return a.get("weights_sha256") == b.get("weights_sha256") and (pa or {}) == (pb or {})


def summary_line(rec: dict[str, Any]) -> str:
    """One line per finished row: experiment, the task's headline metrics, executed GMACs, patch skip
    rate, FPS and its ratio to the dense twin timed in the same process (or why it did not run), and a
    warning when the timing ran under a load above the cores (``passbench.metrics.load``)."""
    if rec["kind"] == "skipped":
        return f"{rec['experiment']}: not runnable here: {rec['reason']}"
    me, co, sp = rec["metrics"], rec["cost"], rec["speed"]
    if "mpjpe_mm" in me:  # pose rows
        task = f"MPJPE {me['mpjpe_mm']:.1f} mm"
    else:
        task = f"MOTA {_pct(me.get('mota'))}  IDF1 {_pct(me.get('idf1'))}  IDs {me.get('ids', '-')}"
    fps, dense = sp.get("fps"), sp.get("fps_dense")
    speed = "FPS not timed" if not fps else f"FPS {fps:.1f}" + (f" ({fps / dense:.2f}x dense)" if dense else "")
    warning = load_warning(sp) if fps else None  # a timing taken while other jobs shared the CPU
    return (f"{rec['experiment']}: {task}  GMACs {co['gmacs_executed']:.3f} executed (dense "
            f"{co['gmacs_dense']:.3f})  skip {_pct(co.get('patch_skip_rate'))}  {speed}"
            + (f"  {warning}" if warning else ""))
