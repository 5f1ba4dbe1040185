"""Report cells against the record fields they claim to show, the newest-record rule, and the committed tables
against their regeneration from the committed records.

The column -> record field map and the formatting below are written out by hand from the table headers (what a
reader of the table believes a cell shows), not read from ``passbench.report.tables``: a column that reads the
wrong metric, or a changed rounding, fails here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from passbench import records as R
from passbench.paths import REPO_ROOT
from passbench.report.tables import build_table, display_frame, render

# table -> (display label, record field path, format), format: pct = 100x one decimal, pct2 = 100x two
# decimals, f1 / f2 = one / two decimals, int, ratio = speed.fps / speed.fps_dense, two decimals and "x".
MOT_SOTA = [("MOTA %", "metrics.mota", "pct"), ("IDF1 %", "metrics.idf1", "pct"), ("IDP %", "metrics.idp", "pct"),
            ("IDs", "metrics.ids", "int"), ("GMACs", "cost.gmacs_executed", "f2"),
            ("skip %", "cost.patch_skip_rate", "pct"), ("FPS (dense twin)", "speed.fps", "twin"), ("FPS / dense", None, "ratio")]
POSE_SOTA = [("MPJPE mm", "metrics.mpjpe_mm", "f2"), ("MPJPE later frames mm", "metrics.mpjpe_mm_later", "f2"),
             ("MPJPE all frames mm", "metrics.mpjpe_mm_all_frames", "f2"), ("GMACs", "cost.gmacs_executed", "f2"),
             ("skip %", "cost.patch_skip_rate", "pct"), ("FPS (dense twin)", "speed.fps", "twin"), ("FPS / dense", None, "ratio")]
MOT_ENV = [("MOTA 02 %", "metrics.per_sequence.MOT17-02-FRCNN.mota", "pct2"),
           ("MOTA 04 %", "metrics.per_sequence.MOT17-04-FRCNN.mota", "pct2"),
           ("MOTA 13 %", "metrics.per_sequence.MOT17-13-FRCNN.mota", "pct2"),
           ("MOTA 11 %", "metrics.per_sequence.MOT17-11-FRCNN.mota", "pct2"),
           ("MOTA all %", "metrics.mota", "pct2"), ("skip %", "cost.patch_skip_rate", "pct2")]
# PASS Table 2's columns and the Human3.6M action each one is measured on ("talking" has no Human3.6M action of
# that name: Discussion; README and passbench.datasets.h36m say so)
POSE_ENV = [(f"{col} mm", f"metrics.per_action.{act}.mpjpe_mm", "f2") for col, act in [
    ("talking", "Discussion"), ("eating", "Eating"), ("greeting", "Greeting"), ("phoning", "Phoning"),
    ("photo", "Photo"), ("walk", "Walking"), ("walkdog", "WalkDog")]] + [
    ("all frames, fixed camera mm", "metrics.per_camera.fixed.mpjpe_mm_all_frames", "f2"),
    ("all frames, moving camera mm", "metrics.per_camera.moving.mpjpe_mm_all_frames", "f2"),
    ("skip %", "cost.patch_skip_rate", "pct"),
    ("skip % fixed", "metrics.per_camera.fixed.patch_skip_rate", "pct"),
    ("skip % moving", "metrics.per_camera.moving.patch_skip_rate", "pct")]
COLUMNS = {1: POSE_SOTA, 2: POSE_ENV, 3: MOT_SOTA, 4: MOT_ENV}


def _field(rec: dict, path: str | None):
    if path is None:  # FPS / dense
        sp = rec.get("speed") or {}
        return None if not sp.get("fps") or not sp.get("fps_dense") else sp["fps"] / sp["fps_dense"]
    node = rec
    for key in _split(path):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _split(path: str) -> list[str]:
    # sequence names hold no dots, so a plain split works; "per_sequence.MOT17-02-FRCNN.mota" stays three keys
    return path.split(".")


def _show(v, fmt: str) -> str:
    if v is None:
        return "–"
    return {"pct": f"{100 * v:.1f}", "pct2": f"{100 * v:.2f}", "f1": f"{v:.1f}", "f2": f"{v:.2f}",
            "int": f"{int(round(v))}", "ratio": f"{v:.2f}x",
            "twin": f"{v:.1f} (dense 8.0)"}[fmt]  # the run's FPS beside its dense twin's (fps_dense 8.0 below)


def _set(rec: dict, path: str, value) -> None:
    node = rec
    keys = _split(path)
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _synthetic_run(table: int, exp: str = "probe") -> dict:
    """A run record whose every shown field holds its own value, chosen so that rounding matters
    (x.xx5-style values round differently at one and two decimals)."""
    rec = {"kind": "run", "experiment": f"table{table}/{exp}", "created_utc": "2026-01-01T00:00:00Z",
           "run_id": exp, "config": {"table": f"table{table}"}, "method": {"name": "pass_p"},
           "model": {"name": "m"}, "dataset": {"name": "MOT17"}, "env": {"device": "cpu"}}
    for k, (_, path, fmt) in enumerate(COLUMNS[table]):
        if path is None:
            continue
        value = 0.31237 + 0.0411 * k if fmt in ("pct", "pct2") else 12.3456 + 7.131 * k
        _set(rec, path, value)
    rec.setdefault("speed", {})["fps_dense"] = 8.0
    return rec


@pytest.mark.parametrize("table", [1, 2, 3, 4])
def test_every_measured_cell_shows_the_record_field_its_column_names(table):
    rec = _synthetic_run(table)
    shown = display_frame(table, build_table(table, [rec]))
    row = shown[shown["row"] == rec["experiment"]].iloc[0]
    labels = [label for label, _, _ in COLUMNS[table]]
    values = [_show(_field(rec, path), fmt) for _, path, fmt in COLUMNS[table]]
    assert [row[lab] for lab in labels] == values
    assert len(set(values)) == len(values)  # every field distinct: a column reading another's field shows up
    # the CSV keeps the record's value unrounded
    machine = build_table(table, [rec]).iloc[0]
    for (_, path, fmt), key in zip(COLUMNS[table], _csv_keys(table)):
        want = _field(rec, path)
        assert machine[key] == pytest.approx(want), key


def _csv_keys(table: int) -> list[str]:
    return {1: ["mpjpe_mm", "mpjpe_mm_later", "mpjpe_mm_all_frames", "gmacs_executed", "patch_skip_rate", "fps",
                "fps_ratio_to_dense"],
            2: ["mpjpe_mm_talking", "mpjpe_mm_eating", "mpjpe_mm_greeting", "mpjpe_mm_phoning", "mpjpe_mm_photo",
                "mpjpe_mm_walk", "mpjpe_mm_walkdog", "mpjpe_mm_all_frames_fixed", "mpjpe_mm_all_frames_moving",
                "patch_skip_rate", "patch_skip_rate_fixed", "patch_skip_rate_moving"],
            3: ["mota", "idf1", "idp", "ids", "gmacs_executed", "patch_skip_rate", "fps", "fps_ratio_to_dense"],
            4: ["mota_mot17_02", "mota_mot17_04", "mota_mot17_13", "mota_mot17_11", "mota",
                "patch_skip_rate"]}[table]


def _run(exp: str, run_id: str, t: str, mota: float, kind: str = "run") -> dict:
    rec = {"kind": kind, "experiment": exp, "run_id": run_id, "created_utc": t, "config": {"table": "table3"},
           "method": {"name": "dense"}, "model": {"name": "m"}, "dataset": {"name": "MOT15"}}
    if kind == "run":
        rec.update(metrics={"mota": mota}, cost={"gmacs_executed": 1.0}, speed={})
    else:
        rec["reason"] = "over the CPU budget"
    return rec


def test_newest_record_rule_on_equal_timestamps():
    # created_utc has one-second resolution: two runs of one experiment can share it. The later entry in file
    # order (the one appended last) is the newer one; a skip marker never replaces a finished run.
    t = "2026-03-01T12:00:00Z"
    a, b = _run("table3/x", "a", t, 0.1), _run("table3/x", "b", t, 0.2)
    assert R.latest_by_experiment([a, b])["table3/x"]["run_id"] == "b"
    assert R.latest_by_experiment([b, a])["table3/x"]["run_id"] == "a"
    marker = _run("table3/x", "m", t, 0.0, kind="skipped")
    assert R.latest_by_experiment([a, marker])["table3/x"]["run_id"] == "a"
    assert R.latest_by_experiment([marker, a])["table3/x"]["run_id"] == "a"
    # a strictly older entry later in the file does not win
    old = _run("table3/x", "old", "2026-03-01T11:59:59Z", 0.3)
    assert R.latest_by_experiment([b, old])["table3/x"]["run_id"] == "b"
    # and the table shows the winner's numbers
    assert build_table(3, [a, b]).set_index("experiment").loc["table3/x", "mota"] == 0.2


def test_speed_records_are_never_a_row_and_do_not_hide_later_records():
    # passbench speed writes speed-only records into the same files: they never become an experiment's row,
    # even when newer than its run or its skip marker, and the records after them still count
    speed = {"kind": "speed", "experiment": "table3/x", "run_id": "s", "created_utc": "2026-03-02T00:00:00Z"}
    marker = _run("table3/y", "m", "2026-03-01T00:00:00Z", 0.0, kind="skipped")
    speed_y = dict(speed, experiment="table3/y", run_id="sy")
    got = R.latest_by_experiment([speed, marker, speed_y, _run("table3/x", "x", "2026-03-01T00:00:00Z", 0.4),
                                  _run("table3/z", "z", "2026-03-01T00:00:00Z", 0.5)])
    assert {k: v["run_id"] for k, v in got.items()} == {"table3/x": "x", "table3/y": "m", "table3/z": "z"}
    assert R.latest_by_experiment([speed]) == {}


def test_newest_record_rule_through_a_records_file(tmp_path: Path):
    # the same rule when the two runs come back from one .jsonl file (append order = file order)
    from test_records import fixture_run

    first = fixture_run()
    second = json.loads(json.dumps(first))
    second["run_id"], second["metrics"]["mota"] = "second", 0.123
    first["created_utc"] = second["created_utc"] = "2026-03-01T12:00:00Z"
    f = tmp_path / "t.jsonl"
    R.append_record(f, first)
    R.append_record(f, second)
    got = R.latest_by_experiment(R.read_records(f))[first["experiment"]]
    assert got["run_id"] == "second" and got["metrics"]["mota"] == 0.123


def _newest_runs(path: Path) -> dict[str, dict]:
    """Newest finished run per experiment of one records file, by hand: max created_utc, file order on ties."""
    out: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line) if line.strip() else None
        if rec and rec["kind"] == "run" and (rec["experiment"] not in out
                                              or rec["created_utc"] >= out[rec["experiment"]]["created_utc"]):
            out[rec["experiment"]] = rec
    return out


@pytest.mark.parametrize("table", [1, 2, 3, 4])
def test_committed_table_cells_equal_their_records(table):
    # results/tables/table<n>.csv, cell by cell, against the newest run of each experiment in the committed
    # records (their fields read by the hand map above), for every measured row
    csv_path = REPO_ROOT / "results" / "tables" / f"table{table}.csv"
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    runs = _newest_runs(REPO_ROOT / "results" / "records" / f"table{table}.jsonl")
    measured = [r for r in rows if r["experiment"] in runs]
    assert measured, f"no measured row in {csv_path}"
    for r in measured:
        rec = runs[r["experiment"]]
        for (_, path, _), key in zip(COLUMNS[table], _csv_keys(table)):
            want, cell = _field(rec, path), r[key]
            if want is None:
                assert cell == "", (r["experiment"], key, cell)
            else:
                assert float(cell) == pytest.approx(want, rel=1e-12), (r["experiment"], key)


@pytest.mark.parametrize("table", [1, 2, 3, 4])
def test_committed_tables_equal_their_regeneration_from_the_records(table):
    recs = R.read_records(REPO_ROOT / "results" / "records")
    df = build_table(table, recs)
    for ext in ("md", "csv"):
        committed = (REPO_ROOT / "results" / "tables" / f"table{table}.{ext}").read_text()
        assert render(table, df, ext) == committed, f"results/tables/table{table}.{ext} is not the regeneration"


def test_tradeoff_cells_show_the_record_fields_their_headers_name():
    # one trade-off point, every shown field distinct; expected cells written out by hand from the headers
    from passbench.report import tradeoff

    rec = {"kind": "run", "experiment": "tradeoff/pass_p_r40", "created_utc": "2026-01-01T00:00:00Z", "run_id": "p",
           "config": {"table": "tradeoff"}, "method": {"name": "pass_p", "params": {}},
           "metrics": {"mota": 0.50249, "idf1": 0.58123, "ids": 61},
           "cost": {"patch_skip_rate": 0.39237, "gmacs_executed": 0.8631, "gate_gmacs": 0.0347},
           "speed": {"fps": 10.0, "fps_dense": 12.0}}
    md = tradeoff.render(tradeoff.points([rec]), "md")
    head, _, row = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in md.splitlines()[:3]]
    got = dict(zip(head, row))
    assert got == {"method": "PASS-P", "target skip %": "40", "measured skip % (all frames)": "39.2",
                   "MOTA %": "50.2", "IDF1 %": "58.1", "IDs": "61",
                   "GMACs (executed + gate)": "0.898",  # 0.8631 + 0.0347: the gate's MACs are charged
                   "of which gate": "0.035", "FPS / dense": "0.83x"}
