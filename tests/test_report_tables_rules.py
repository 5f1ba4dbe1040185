"""Report-layer rules worked by hand on small records: the getters that read a metric from one of two fields
or from a per-sequence map, sequence keys, the timing-setup label, the FPS cell with its dense twin's, the
rendered formats, and ``write_table``'s files (folder created, records read from the results folder given)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from passbench import records as R
from passbench.report import tables as T
from tests.test_records import fixture_run


def test_ids_falls_back_to_num_switches_and_per_sequence_cells_match_by_sequence_key():
    ids = T._first("metrics.ids", "metrics.num_switches")
    assert ids({"metrics": {"ids": 7, "num_switches": 9}}) == 7  # the first field that is there wins
    assert ids({"metrics": {"num_switches": 9}}) == 9
    assert ids({"metrics": {"ids": None, "num_switches": 0}}) == 0  # None is "absent"; 0 is a value
    assert ids({"metrics": {}}) is None
    per = {"MOT17-02-FRCNN": {"mota": 0.5}, "MOT17-13-SDP": {"mota": 0.25, "idf1": 0.4},
           "TUD-Campus": {"mota": 0.75}}
    rec = {"metrics": {"per_sequence": per}}
    assert T._per_seq("mot17_02", "mota")(rec) == 0.5
    assert T._per_seq("mot17_13", "idf1")(rec) == 0.4
    assert T._per_seq("tud_campus", "mota")(rec) == 0.75
    assert T._per_seq("mot17_04", "mota")(rec) is None  # a sequence the run did not track
    assert T._per_seq("mot17_02", "mota")({"metrics": {}}) is None
    assert T.seq_key_of("MOT17-04-DPM") == "mot17_04" and T.seq_key_of("TUD-Stadtmitte") == "tud_stadtmitte"
    assert T.seq_key_of("PETS09-S2L1") == "pets09_s2l1"


def test_device_label_and_fps_cells_worked_by_hand():
    assert T.device_label({}) == "?, fp32"
    assert T.device_label({"speed": {"device": "cpu: x86_64", "threads": 2}}) == "cpu: x86_64, fp32, 2 threads"
    assert T.device_label({"speed": {"device": "cuda: H200", "precision": "fp16 (autocast)", "threads": 16}}) == \
        "cuda: H200, fp16 (autocast)"  # a GPU timing names no CPU thread count
    assert T._fps_ratio({"speed": {"fps": 10.0, "fps_dense": 8.0}}) == 1.25
    assert T._fps_ratio({"speed": {"fps": 10.0}}) is None and T._fps_ratio({"speed": {"fps": 10.0, "fps_dense": 0}}) \
        is None
    assert T._fps_twin(12.94, 17.36) == "12.9 (dense 17.4)"
    assert T._fps_twin(12.94, None) == "12.9 (no dense twin timed)"
    assert T._fps_twin(None, 17.36) == "–"


def test_rendered_csv_has_no_index_and_markdown_ends_once(tmp_path: Path):
    rec = fixture_run("table3/probe")
    df = T.build_table(3, [rec])
    rows = list(csv.reader(io.StringIO(T.render(3, df, "csv"))))
    assert rows[0][:4] == ["experiment", "method", "model", "paper_row"]  # no unnamed index column first
    assert rows[1][0] == "table3/probe"
    md = T.render(3, df, "md")  # no paper claim reads a "probe" row: the table and one newline, no link block
    assert md.startswith("| row") and md.endswith("|\n") and not md.endswith("\n\n")


def test_write_table_reads_the_given_results_folder_and_creates_its_tables_folder(tmp_path: Path):
    results = tmp_path / "a" / "b" / "results"  # nothing of it exists yet
    written = T.write_table(3, results)
    assert sorted(p.name for p in written) == ["table3.csv", "table3.md"]
    assert {p.parent for p in written} == {results / "tables"}
    # no records folder: only the paper's rows, every one "not run" (not the repository's own records)
    rows = list(csv.DictReader(io.StringIO((results / "tables" / "table3.csv").read_text())))
    assert rows and {r["status"] for r in rows} == {"not run"}
    # one record there: its row and values come out of that folder; writing again replaces the files
    R.append_record(results / "records" / "runs.jsonl", fixture_run("table3/probe", metrics__mota=0.4321))
    T.write_table(3, results)
    rows = list(csv.DictReader(io.StringIO((results / "tables" / "table3.csv").read_text())))
    mine = [r for r in rows if r["experiment"] == "table3/probe"]
    assert len(mine) == 1 and float(mine[0]["mota"]) == 0.4321
    assert all(r["experiment"] in ("", "table3/probe") for r in rows)
    md = (results / "tables" / "table3.md").read_text()
    assert md.startswith("| row") and "| 43.2 " in md  # markdown, MOTA in percent with one decimal


def _marker(exp: str, dataset: dict | None = None) -> dict:
    return {"kind": "skipped", "experiment": exp, "run_id": "m", "created_utc": "2026-01-01T00:00:00Z",
            "config": {"table": exp.split("/")[0], "paper_row": "pass_p"}, "reason": "needs a GPU",
            "dataset": dataset or {"name": "MOT17"}}


def _speed(exp: str, t: str, fps: float, device: str = "cpu: x86_64", **over) -> dict:
    run = fixture_run(exp)
    rec = {"kind": "speed", "experiment": exp, "run_id": f"s{fps}", "created_utc": t, "config": run["config"],
           "model": run["model"], "method": run["method"],
           "speed": {"fps": fps, "fps_dense": 10.0, "device": device, "threads": 1, "precision": "fp32"}}
    rec.update(over)
    return rec


def test_row_provenance_fields_and_dataset_label_worked_by_hand():
    run = fixture_run("table3/probe", dataset={"name": "MOT17", "sequences": ["MOT17-02-FRCNN", "MOT17-04-FRCNN"],
                                               "frames_used": {"MOT17-02-FRCNN": [301, 600]}, "frames": [1, 50]})
    run["env"]["device"] = "cpu: env"
    row = T.build_table(3, [run]).set_index("experiment").loc["table3/probe"]
    assert (row["method"], row["model"]) == ("pass_p", "fixture_net")  # the record's own, not the config's
    # the frames scored per sequence where given, then the dataset's frame range
    assert row["dataset"] == "MOT17:MOT17-02-FRCNN[301-600]+MOT17-04-FRCNN[1-50]"
    assert row["device"] == "cpu"  # the speed section's device first
    run2 = fixture_run("table3/probe2", speed={})
    run2["env"]["device"] = "cpu: env"
    row2 = T.build_table(3, [run2]).set_index("experiment").loc["table3/probe2"]
    assert row2["device"] == "cpu: env"  # else the environment's
    assert T._dataset_label({"dataset": {"sequences": ["a"], "frames": [3, 9], "synthetic": True}}) == \
        "?:a[3-9] (synthetic)"
    assert T._dataset_label({"config": {"dataset": {"name": "H36M"}}}) == "H36M"  # from the config when absent


def test_smoke_rows_skip_markers_and_paper_only_rows():
    smoke = fixture_run("table3/mini", dataset={"name": "X", "protocol": "smoke"})
    df = T.build_table(3, [smoke, _marker("table3/gpu", {"name": "MOT17-mini"})]).set_index("experiment")
    assert df.loc["table3/mini", "status"].startswith("smoke (X, protocol smoke)")
    assert df.loc["table3/mini", "mota_paper"] is None or T.pd.isna(df.loc["table3/mini", "mota_paper"])
    # a skip marker is never a smoke run: it says why it did not run, beside the paper's value for its row
    assert df.loc["table3/gpu", "status"] == "not runnable here: needs a GPU"
    assert df.loc["table3/gpu", "mota_paper"] == 0.841 and T.pd.isna(df.loc["table3/gpu", "device"])
    assert T.smoke_reason({"dataset": {"name": "MOT17-mini"}}) == \
        "smoke (MOT17-mini, protocol None): pipeline check, not comparable to the paper"
    assert T.smoke_reason({"dataset": {"protocol": "full"}}) is None and T.smoke_reason({}) is None
    # paper rows nobody measured: no experiment, no model, no dataset or device, status "not run"
    paper_only = T.build_table(3, []).set_index("paper_row").loc["dla34"]
    assert T.pd.isna(paper_only["experiment"]) and T.pd.isna(paper_only["model"])
    assert T.pd.isna(paper_only["dataset"]) and T.pd.isna(paper_only["device"]) and paper_only["status"] == "not run"
    assert paper_only["mota_paper"] == 0.723 and type(paper_only["ids_paper"]) is not str
    # a record of another table, or of none, is not a row
    other = fixture_run("table3/x")
    other["config"] = {}
    assert "table3/x" not in set(T.build_table(3, [other])["experiment"])


def test_speed_records_newest_per_setup_and_only_for_what_they_timed():
    run = fixture_run("table3/probe")
    t = "2026-01-02T00:00:00Z"
    a, b = _speed("table3/probe", t, 11.0), _speed("table3/probe", t, 12.0)  # equal stamps: the later entry wins
    gpu = _speed("table3/probe", t, 90.0, device="cuda: H200")
    df = T.build_table(3, [run, a, b, gpu]).set_index("experiment")
    assert df.loc["table3/probe", "fps@cpu: x86_64, fp32, 1 threads"] == 12.0
    assert df.loc["table3/probe", "fps_ratio_to_dense@cpu: x86_64, fp32, 1 threads"] == 1.2
    assert df.loc["table3/probe", "fps@cuda: H200, fp32"] == 90.0
    assert df.loc["table3/probe", "fps_dense@cuda: H200, fp32"] == 10.0
    # a timing of other weights does not stand beside this run (timing_applies); the cells stay empty
    stale = _speed("table3/probe", t, 13.0, model={**run["model"], "weights_sha256": "f" * 64})
    df = T.build_table(3, [run, stale]).set_index("experiment")
    col = "fps@cpu: x86_64, fp32, 1 threads"
    assert T.pd.isna(df.loc["table3/probe", col])
    assert T.pd.isna(df.loc["table3/probe", "fps_dense@cpu: x86_64, fp32, 1 threads"])
    # a skip marker's row shows what was timed (there is no run to disagree with)
    df = T.build_table(3, [_marker("table3/probe"), stale]).set_index("experiment")
    assert df.loc["table3/probe", col] == 13.0


def test_default_records_folder_paper_folder_and_bad_table(tmp_path: Path, monkeypatch):
    results = tmp_path / "results"
    monkeypatch.setenv("PASSBENCH_RESULTS", str(results))
    assert set(T.build_table(3)["status"]) == {"not run"}  # no records folder there: the paper's rows only
    R.append_record(results / "records" / "r.jsonl", fixture_run("table3/probe"))
    assert "table3/probe" in set(T.build_table(3)["experiment"])
    paper = tmp_path / "paper"
    paper.mkdir()
    for f in (Path(T.__file__).parents[2] / "results" / "paper").glob("*.csv"):
        (paper / f.name).write_text(f.read_text().replace("0.841,0.835", "0.111,0.835"))
    assert T.build_table(3, [], paper_dir=paper).set_index("paper_row").loc["pass_p", "mota_paper"] == 0.111
    try:
        T.build_table(5, [])
    except KeyError as e:
        assert e.args[0] == "no table 5 (known: [1, 2, 3, 4])"
    else:
        raise AssertionError("table 5 accepted")


def test_paper_twins_only_where_the_paper_has_them():
    t3 = T.paper_with_twins("table3", T.load_paper("table3"))
    assert t3.loc["pass_p", "fps_dense"] == 31.0 and t3.loc["pass_p", "fps_ratio_to_dense"] == 37 / 31
    assert T.pd.isna(t3.loc["dla34", "fps_dense"]) and t3["fps_dense"].dtype == float
    t4 = T.paper_with_twins("table4", T.load_paper("table4"))
    assert "fps_dense" not in t4.columns  # Table 4 has no FPS column


def test_display_and_formats_worked_by_hand():
    run = fixture_run("table3/probe", method={"name": None, "params": {}}, speed={"fps": 10.0, "fps_dense": 8.0})
    df = T.build_table(3, [run])
    shown = T.display_frame(3, df).set_index("row")
    assert shown.loc["table3/probe", "method"] == "–"
    # the hidden dense-FPS column is skipped, and the columns after it are still shown
    assert "dense twin FPS" not in shown.columns and shown.loc["table3/probe", "FPS (dense twin)"] == "10.0 (dense 8.0)"
    assert list(shown.columns)[-3:] == ["dataset", "device", "status"]
    assert T.render(3, df) == T.render(3, df, "md")  # markdown by default
    tex = T.render(3, df, "latex")
    assert tex.lstrip().startswith(r"\begin{tabular}") and "FPS / dense" in tex
    # no index column before the row name; LaTeX specials escaped (_ and %)
    assert any(ln.startswith(r"table3/probe & – & fixture\_net & ") for ln in tex.splitlines())
    assert r"skip \%" in tex
    try:
        T.render(3, df, "html")
    except ValueError as e:
        assert str(e) == "unknown format 'html' (md, csv, latex)"
    else:
        raise AssertionError("html accepted")
