"""Records -> paper tables, measured value beside the paper's, one row per experiment.

Reads only records (``passbench.records``) and the transcribed paper CSVs; imports no torch. Rows:
every experiment of the table that has a record (a run, or a skip marker saying why not), then every
paper row no experiment measured (status ``not run``). Measured cells stay empty when there is no
run; nothing is filled from the paper.

Two renderings of the same frame: :func:`build_table` gives machine columns (fractions, units in
names, ``_paper`` suffix for the paper's value) written to CSV; :func:`render` formats for markdown /
LaTeX (percent with one decimal, the paper's value in its own column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from passbench.datasets.h36m import PAPER_TABLE2
from passbench.records import latest_by_experiment, read_records, records_dir, results_dir, timing_applies
from passbench.report.claimfile import claim_links
from passbench.report.paper import load_paper


def _get(path: str) -> Callable[[dict], Any]:
    def get(rec: dict) -> Any:
        node: Any = rec
        for p in path.split("."):
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return node

    return get


def _first(*paths: str) -> Callable[[dict], Any]:
    getters = [_get(p) for p in paths]

    def get(rec: dict) -> Any:
        for g in getters:
            v = g(rec)
            if v is not None:
                return v
        return None

    return get


def _fps_ratio(rec: dict) -> float | None:
    fps, dense = _get("speed.fps")(rec), _get("speed.fps_dense")(rec)
    if fps is None or not dense:
        return None
    return fps / dense


def device_label(rec: dict) -> str:
    """Which timing setup a speed section describes: ``<device>, <precision>`` (CPUs add the thread count),
    e.g. ``cuda: NVIDIA Jetson Orin Nano, fp16 (autocast)`` or ``cpu: x86_64, fp32, 2 threads``."""
    sp = rec.get("speed") or {}
    dev, prec = str(sp.get("device") or "?"), str(sp.get("precision") or "fp32")
    return f"{dev}, {prec}" + (f", {sp.get('threads')} threads" if dev.startswith("cpu") else "")


def _device_columns(speeds: list[dict]) -> tuple[list[str], dict[tuple[str, str], dict]]:
    """Speed records (``passbench speed``) -> the device labels in order of appearance, and the newest
    record per (experiment, label)."""
    labels: list[str] = []
    newest: dict[tuple[str, str], dict] = {}
    for rec in speeds:
        lab = device_label(rec)
        if lab not in labels:
            labels.append(lab)
        key = (rec["experiment"], lab)
        if key not in newest or rec["created_utc"] >= newest[key]["created_utc"]:
            newest[key] = rec
    return labels, newest


def _per_seq(seq_key: str, metric: str) -> Callable[[dict], Any]:
    def get(rec: dict) -> Any:
        per = _get("metrics.per_sequence")(rec) or {}
        for name, vals in per.items():
            if seq_key_of(name) == seq_key:
                return vals.get(metric)
        return None

    return get


def seq_key_of(name: str) -> str:
    """``MOT17-02-FRCNN`` -> ``mot17_02``; other names lower-cased with ``-`` -> ``_``."""
    m = re.match(r"(MOT\d\d)-(\d\d)", name)
    if m:
        return f"{m.group(1).lower()}_{m.group(2)}"
    return name.lower().replace("-", "_")


@dataclass(frozen=True)
class Column:
    """One measured quantity: ``key`` (CSV name), getter on a record, paper CSV column, display style."""

    key: str
    label: str
    get: Callable[[dict], Any]
    paper: str | None = None
    fmt: str = "float2"  # pct | pct2 | int | float2 | float1 | ratio | fps_twin | hidden


# Speed: the ratio to the dense twin timed in the same process first; an absolute FPS only beside its
# dense twin's ("12.9 (dense 17.4)"): rows timed in different processes (or, in the paper, on another
# device) are not comparable by their absolute FPS. The paper's ratio is its own PASS row over the row
# it accelerates (PAPER_DENSE_TWIN).
_FPS = [
    Column("fps_ratio_to_dense", "FPS / dense", _fps_ratio, "fps_ratio_to_dense", "ratio"),
    Column("fps", "FPS (dense twin)", _get("speed.fps"), "fps", "fps_twin"),
    Column("fps_dense", "dense twin FPS", _get("speed.fps_dense"), "fps_dense", "hidden"),
]
# The paper's PASS rows are PASS applied to one of its dense rows: "outperforming the state-of-the-art
# MobileHumanPose (MHP) in 3D pose estimation and FairMOT in multiple object tracking" (abstract); the
# Skip-CONV row's backbone is not stated, so it has no twin. {paper table: (dense row, rows on it)}
PAPER_DENSE_TWIN = {"table1": ("mhp", ("mhp", "pass_p", "pass_f")),
                    "table3": ("fairmot_dla34", ("fairmot_dla34", "pass_p", "pass_f"))}

_MOT_SOTA = [
    Column("mota", "MOTA %", _get("metrics.mota"), "mota", "pct"),
    Column("idf1", "IDF1 %", _get("metrics.idf1"), "idf1", "pct"),
    Column("idp", "IDP %", _get("metrics.idp"), "idp", "pct"),
    Column("ids", "IDs", _first("metrics.ids", "metrics.num_switches"), "ids", "int"),
    Column("gmacs_executed", "GMACs", _get("cost.gmacs_executed"), "gmacs", "float2"),
    Column("patch_skip_rate", "skip %", _get("cost.patch_skip_rate"), "patch_skip_rate", "pct"),
    *_FPS,
]
_TABLE4_SEQS = ["mot17_02", "mot17_04", "mot17_13", "mot17_11"]
_MOT_ENV = [Column(f"mota_{s}", f"MOTA {s[-2:]} %", _per_seq(s, "mota"), f"mota_{s}", "pct2") for s in _TABLE4_SEQS] + [
    Column("mota", "MOTA all %", _get("metrics.mota"), None, "pct2"),
    Column("patch_skip_rate", "skip %", _get("cost.patch_skip_rate"), "patch_skip_rate", "pct2"),
]
_POSE_SOTA = [
    Column("mpjpe_mm", "MPJPE mm", _get("metrics.mpjpe_mm"), "mpjpe_mm", "float2"),
    # the protocol's frames that are not their video's first (which runs dense in every method), and every
    # frame of the streams (passbench.runner.pose.pose_metrics)
    Column("mpjpe_mm_later", "MPJPE later frames mm", _get("metrics.mpjpe_mm_later"), None, "float2"),
    Column("mpjpe_mm_all_frames", "MPJPE all frames mm", _get("metrics.mpjpe_mm_all_frames"), None, "float2"),
    Column("gmacs_executed", "GMACs", _get("cost.gmacs_executed"), "gmacs", "float2"),
    Column("patch_skip_rate", "skip %", _get("cost.patch_skip_rate"), "patch_skip_rate", "pct"),
    *_FPS,
]
# PASS Table 2's columns and the Human3.6M action each stands for ("talking" is Discussion); records key
# per-action metrics by the Human3.6M action name (passbench.datasets.h36m.PAPER_TABLE2).
_ACTIONS = {p.column: p.action for p in PAPER_TABLE2}
_POSE_ENV = [
    Column(f"mpjpe_mm_{c}", f"{c} mm", _get(f"metrics.per_action.{a}.mpjpe_mm"), f"mpjpe_mm_{c}", "float2")
    for c, a in _ACTIONS.items()
] + [
    Column(f"mpjpe_mm_all_frames_{cam}", f"all frames, {cam} camera mm",
           _get(f"metrics.per_camera.{cam}.mpjpe_mm_all_frames"), None, "float2") for cam in ("fixed", "moving")
] + [Column("patch_skip_rate", "skip %", _get("cost.patch_skip_rate"), "patch_skip_rate", "pct")] + [
    Column(f"patch_skip_rate_{cam}", f"skip % {cam}", _get(f"metrics.per_camera.{cam}.patch_skip_rate"), None, "pct")
    for cam in ("fixed", "moving")
]

TABLES: dict[int, tuple[str, list[Column]]] = {
    1: ("table1", _POSE_SOTA),
    2: ("table2", _POSE_ENV),
    3: ("table3", _MOT_SOTA),
    4: ("table4", _MOT_ENV),
}


def _dataset_label(rec: dict) -> str:
    ds = rec.get("dataset") or (rec.get("config") or {}).get("dataset") or {}
    seqs = ds.get("sequences") or []
    frames = ds.get("frames")
    s = str(ds.get("name", "?"))
    used = ds.get("frames_used") or {}
    if seqs:
        # frames actually tracked and scored per sequence (e.g. the second half of a training sequence)
        s += ":" + "+".join(f"{q}[{used[q][0]}-{used[q][1]}]" if used.get(q) else q for q in seqs)
    if frames:
        s += f"[{frames[0]}-{frames[1]}]"
    if ds.get("synthetic"):
        s += " (synthetic)"
    return s


def _table_of(rec: dict) -> str:
    return (rec.get("config") or {}).get("table") or ""


def smoke_reason(rec: dict) -> str | None:
    """Why a run is a smoke run (a few frames, a cut dataset), or None. Smoke runs show their numbers
    with status ``smoke: ...`` and never beside the paper's values: a cut sequence (``*-mini``, e.g. the
    4 + 8 frames of MOT17-mini) or ``dataset.protocol: smoke`` proves the pipeline runs, not accuracy."""
    ds = rec.get("dataset") or {}
    name = str(ds.get("name", ""))
    if name.endswith("-mini") or ds.get("protocol") == "smoke":
        return f"smoke ({name}, protocol {ds.get('protocol')}): pipeline check, not comparable to the paper"
    return None


def build_table(n: int, records: list[dict] | None = None, paper_dir: str | Path | None = None) -> pd.DataFrame:
    """Table ``n`` (1-4) as machine columns: measured ``<key>``, paper ``<key>_paper``, provenance.

    Args:
        n: paper table number.
        records: run records and skip markers (default: all under the records folder).
        paper_dir: override of ``results/paper`` (tests).

    Returns:
        One row per experiment of that table (latest run, else latest skip marker), then one per paper
        row nobody measured. Columns: experiment, method, model, paper_row, <key>, <key>_paper...,
        then, when speed records (``passbench speed``) exist for the table, ``fps@<device label>`` and
        ``fps_ratio_to_dense@<device label>`` per timing setup (``device_label``; the newest speed record
        of each experiment there), then dataset, device, status. The run's own ``fps`` stays in ``fps``.
    """
    if n not in TABLES:
        raise KeyError(f"no table {n} (known: {sorted(TABLES)})")
    name, cols = TABLES[n]
    if records is None:
        records = read_records(records_dir()) if records_dir().is_dir() else []
    paper = paper_with_twins(name, load_paper(name, paper_dir))
    mine = [r for r in records if _table_of(r) == name]
    labels, timed = _device_columns([r for r in mine if r["kind"] == "speed"])
    rows: list[dict[str, Any]] = []
    used_paper: set[str] = set()
    for exp, rec in sorted(latest_by_experiment(mine).items()):
        cfg = rec.get("config") or {}
        prow = cfg.get("paper_row")
        row: dict[str, Any] = {
            "experiment": exp,
            "method": (rec.get("method") or cfg.get("method") or {}).get("name"),
            "model": (rec.get("model") or cfg.get("model") or {}).get("name"),
            "paper_row": prow,
        }
        smoke = smoke_reason(rec) if rec["kind"] == "run" else None
        if rec["kind"] == "run":
            for c in cols:
                row[c.key] = c.get(rec)
            row["dataset"] = _dataset_label(rec)
            row["device"] = (rec.get("speed") or {}).get("device") or (rec.get("env") or {}).get("device")
            row["status"] = smoke or ("measured on SYNTHETIC data (not Human3.6M)"
                                      if (rec.get("dataset") or {}).get("synthetic") else "measured")
        else:
            for c in cols:
                row[c.key] = None
            row["dataset"] = _dataset_label(rec)
            row["device"] = None
            row["status"] = f"not runnable here: {rec['reason']}"
        _add_paper(row, cols, paper, None if smoke else prow)  # a smoke row sits beside no paper value
        for lab in labels:
            sp = timed.get((exp, lab))
            sp = sp if rec["kind"] != "run" or timing_applies(sp, rec) else None  # timed another model
            row[f"fps@{lab}"] = _get("speed.fps")(sp) if sp else None
            row[f"fps_ratio_to_dense@{lab}"] = _fps_ratio(sp) if sp else None
            row[f"fps_dense@{lab}"] = _get("speed.fps_dense")(sp) if sp else None
        if prow in paper.index and not smoke:
            used_paper.add(prow)
        rows.append(row)
    for prow in paper.index:
        if prow in used_paper:
            continue
        row = {"experiment": None, "method": paper.loc[prow, "method"], "model": None, "paper_row": prow}
        for c in cols:
            row[c.key] = None
        row.update(dataset=None, device=None, status="not run")
        _add_paper(row, cols, paper, prow)
        rows.append(row)
    order = ["experiment", "method", "model", "paper_row"]
    for c in cols:
        order.append(c.key)
        if c.paper:
            order.append(c.key + "_paper")
    for lab in labels:
        order += [f"fps@{lab}", f"fps_ratio_to_dense@{lab}", f"fps_dense@{lab}"]
    order += ["dataset", "device", "status"]
    return pd.DataFrame(rows, columns=order)


def paper_with_twins(name: str, paper: pd.DataFrame) -> pd.DataFrame:
    """``paper`` plus, for the rows of :data:`PAPER_DENSE_TWIN`, ``fps_dense`` (the FPS the paper gives its
    dense twin) and ``fps_ratio_to_dense`` (its FPS over that): the paper's own same-table ratio."""
    if name not in PAPER_DENSE_TWIN or "fps" not in paper.columns:
        return paper
    twin, rows = PAPER_DENSE_TWIN[name]
    out = paper.copy()
    on = out.index.isin(rows)
    out["fps_dense"] = None
    out.loc[on, "fps_dense"] = float(out.loc[twin, "fps"])
    out["fps_dense"] = out["fps_dense"].astype(float)
    out["fps_ratio_to_dense"] = out["fps"] / out["fps_dense"]
    return out


def _add_paper(row: dict, cols: list[Column], paper: pd.DataFrame, prow: str | None) -> None:
    for c in cols:
        if not c.paper:
            continue
        v = None
        if prow is not None and prow in paper.index and c.paper in paper.columns:
            v = paper.loc[prow, c.paper]
            v = None if pd.isna(v) else v.item() if hasattr(v, "item") else v
        row[c.key + "_paper"] = v


def _fmt(v: Any, style: str) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    if style == "pct":
        return f"{100 * v:.1f}"
    if style == "pct2":
        return f"{100 * v:.2f}"
    if style == "int":
        return f"{int(round(v))}"
    if style == "float1":
        return f"{v:.1f}"
    if style == "ratio":
        return f"{v:.2f}x"
    return f"{v:.2f}"


def _fps_twin(fps: Any, dense: Any) -> str:
    """An absolute FPS with its dense twin's: ``"12.9 (dense 17.4)"``."""
    if _fmt(fps, "float1") == "–":
        return "–"
    twin = _fmt(dense, "float1")
    return f"{fps:.1f} " + (f"(dense {twin})" if twin != "–" else "(no dense twin timed)")


def display_frame(n: int, df: pd.DataFrame) -> pd.DataFrame:
    """Human-readable version of :func:`build_table`'s frame (strings, ``(paper)`` columns)."""
    _, cols = TABLES[n]
    out = pd.DataFrame()
    out["row"] = [e if isinstance(e, str) else f"paper:{p}" for e, p in zip(df["experiment"], df["paper_row"])]
    out["method"] = df["method"].fillna("–")
    out["model"] = df["model"].fillna("–")
    for c in cols:
        if c.fmt == "hidden":  # shown inside another column (the dense twin's FPS beside the FPS)
            continue
        if c.fmt == "fps_twin":
            out[c.label] = [_fps_twin(v, d) for v, d in zip(df[c.key], df["fps_dense"])]
            out[f"{c.label} (paper)"] = [_fps_twin(v, d) if pd.notna(d) else _fmt(v, "float1")
                                         for v, d in zip(df["fps_paper"], df["fps_dense_paper"])]
            continue
        out[c.label] = [_fmt(v, c.fmt) for v in df[c.key]]
        if c.paper:
            out[f"{c.label} (paper)"] = [_fmt(v, c.fmt) for v in df[c.key + "_paper"]]
    for key in df.columns:  # extra timing setups (passbench speed): FPS / dense, then FPS with its twin's
        if key.startswith("fps@"):
            lab = key[len("fps@"):]
            out[f"FPS / dense [{lab}]"] = [_fmt(v, "ratio") for v in df[f"fps_ratio_to_dense@{lab}"]]
            out[f"FPS (dense twin) [{lab}]"] = [_fps_twin(v, d) for v, d in zip(df[key], df[f"fps_dense@{lab}"])]
    out["dataset"] = df["dataset"].fillna("–")
    out["device"] = df["device"].fillna("–")
    out["status"] = df["status"]
    return out


def render(n: int, df: pd.DataFrame, fmt: str = "md") -> str:
    """Format table ``n`` as ``md`` (GitHub markdown), ``csv`` (machine columns) or ``latex``."""
    if fmt == "csv":
        return df.to_csv(index=False)
    disp = display_frame(n, df)
    if fmt == "md":  # the table, then the paper claims its rows are tested in (results/claims.md)
        links = claim_links([e for e in df["experiment"] if isinstance(e, str)])
        return disp.to_markdown(index=False, disable_numparse=True) + "\n" + (f"\n{links}" if links else "")
    if fmt == "latex":
        body = disp.to_latex(index=False, escape=True)
        return body
    raise ValueError(f"unknown format {fmt!r} (md, csv, latex)")


def write_table(n: int, results: str | Path | None = None, formats: tuple[str, ...] = ("md", "csv")) -> list[Path]:
    """Derive table ``n`` from the records under ``results`` and write ``results/tables/table<n>.<ext>``."""
    root = results_dir(results)
    rdir = root / "records"
    records = read_records(rdir) if rdir.is_dir() else []
    df = build_table(n, records)
    out_dir = root / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    ext = {"md": "md", "csv": "csv", "latex": "tex"}
    for f in formats:
        p = out_dir / f"table{n}.{ext[f]}"
        p.write_text(render(n, df, f))
        written.append(p)
    return written
