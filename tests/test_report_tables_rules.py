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
