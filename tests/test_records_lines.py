"""The records file format itself: one JSON object per line, keys sorted (stable diffs of committed records),
a line appended after a last line that lacks its newline, the records folder under a given results folder."""

from __future__ import annotations

import json
from pathlib import Path

from passbench import records as R
from test_records import fixture_run


def test_each_record_is_one_line_with_sorted_keys(tmp_path: Path):
    f = tmp_path / "t.jsonl"
    R.append_record(f, fixture_run())
    (line,) = f.read_text().splitlines()
    keys = list(json.loads(line))
    assert keys == sorted(keys) and line == line.strip()
    nested = json.loads(line)["metrics"]
    assert list(nested) == sorted(nested)  # sorted at every depth


def test_appending_after_a_last_line_without_its_newline_keeps_both_records(tmp_path: Path):
    f = tmp_path / "t.jsonl"
    R.append_record(f, fixture_run())
    f.write_text(f.read_text().rstrip("\n"))  # e.g. edited by hand, saved without the final newline
    second = fixture_run()
    second["run_id"] = "second"
    R.append_record(f, second)
    assert f.read_text().endswith("\n") and f.read_text().count("\n") == 2
    assert [r["run_id"] for r in R.read_records(f)][1] == "second"


def test_records_folder_is_under_the_results_folder_given(tmp_path: Path):
    assert R.records_dir(tmp_path) == tmp_path / "records"
    assert R.records_dir(str(tmp_path / "x")) == tmp_path / "x" / "records"


def test_created_utc_is_fixed_width_utc_so_that_string_order_is_time_order(monkeypatch):
    # latest_by_experiment compares created_utc as strings: that is time order only for one fixed-width UTC
    # format. On a machine whose local zone is not UTC the stamp must still be UTC.
    import datetime as dt
    import re
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9, no daylight saving
    time.tzset()
    try:
        stamp = R.utc_now()
        now = dt.datetime.now(dt.timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), stamp
    got = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs((now - got).total_seconds()) < 5
