"""Record validation at its edges, one field at a time, with the exact message a user reads: what each kind of
record (run, speed, skip marker) may and must carry, the bounds of fractions and FPS, how deep nested metrics go.
Every case below is a record a bug or a hand edit could produce; each must be refused, naming its field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from passbench import records as R
from test_records import fixture_run


def _refused(rec, message: str) -> None:
    with pytest.raises(R.RecordError, match="^" + re.escape(message) + "$"):
        R.validate_record(rec)


def _speed():
    run = fixture_run()
    return R.speed_record(experiment="table3/pass_p", task="mot", model=run["model"], method=run["method"],
                          speed=run["speed"], config={}, env=run["env"])


def test_header_fields_named_with_what_was_found():
    _refused(["not", "a", "dict"], "a record must be a JSON object, got list")
    _refused({**fixture_run(), "schema": "passbench.record/0"},
             f"field 'schema': expected {R.SCHEMA!r}, got 'passbench.record/0'")
    for k in ("run_id", "created_utc", "experiment", "task"):
        _refused({**fixture_run(), k: ""}, f"field '{k}': missing or not a non-empty string")
        _refused({**fixture_run(), k: 7}, f"field '{k}': missing or not a non-empty string")


def test_a_skip_marker_needs_a_reason_and_carries_no_numbers():
    m = R.skip_marker(experiment="table1/mhp", task="pose", reason="no Human3.6M", config={})
    _refused({**m, "reason": None}, "field 'reason': a skip marker needs a reason")
    for k in ("metrics", "cost", "speed"):
        _refused({**m, k: {}}, f"field '{k}': a skip marker carries no numbers")


def test_a_speed_record_carries_the_timing_only():
    s = _speed()
    R.validate_record(s)
    for k in ("metrics", "cost"):
        _refused({**s, k: {}}, f"field '{k}': a speed record carries no {k} (it times the forward only)")
    for section in ("model", "method", "speed", "env", "config"):
        _refused({**s, section: None}, f"field '{section}': missing or not an object")
    for k in ("fps", "device", "timed_region"):
        bad = copy.deepcopy(s)
        del bad["speed"][k]
        _refused(bad, f"field 'speed.{k}': missing")
    for fps in (0, 0.0, -1.0, None, "12", float("inf")):
        bad = copy.deepcopy(s)
        bad["speed"]["fps"] = fps
        _refused(bad, f"field 'speed.fps': expected a positive number, got {fps!r}")
    slow = copy.deepcopy(s)
    slow["speed"]["fps"] = 0.5  # a heavy model on the CPU: below one frame a second is still a timing
    R.validate_record(slow)


def test_a_run_record_needs_every_section_and_its_keys():
    for section in ("dataset", "model", "method", "metrics", "cost", "speed", "env", "config"):
        _refused({**fixture_run(), section: "x"}, f"field '{section}': missing or not an object")
    bad = fixture_run()
    del bad["cost"]["gate_gmacs"]
    _refused(bad, "field 'cost.gate_gmacs': missing")
    for fps in (0, -2.0, "fast"):
        _refused(fixture_run(speed__fps=fps), f"field 'speed.fps': expected a positive number, got {fps!r}")
    R.validate_record(fixture_run(speed__fps=0.5))
    R.validate_record(fixture_run(speed__fps=None))  # an accuracy row, not timed


def test_fraction_bounds_are_inclusive_and_mota_may_be_negative():
    R.validate_record(fixture_run(metrics={"idf1": 1.0, "recall": 0.0, "mota": 1.0}))
    R.validate_record(fixture_run(metrics={"mota": -0.43}))
    _refused(fixture_run(metrics={"idf1": 1.5}), "field 'metrics.idf1': fraction 1.5 outside [0, 1]")
    _refused(fixture_run(metrics={"recall": -0.01}), "field 'metrics.recall': fraction -0.01 outside [0, 1]")
    _refused(fixture_run(metrics={"mota": 51.6}), "field 'metrics.mota': MOTA 51.6 > 1 (store fractions, not percent)")
    _refused(fixture_run(cost__mac_reduction=1.2), "field 'cost.mac_reduction': mac_reduction 1.2 > 1 "
                                                  "(store fractions, not percent)")
    R.validate_record(fixture_run(cost__mac_reduction=-0.3))  # a gate dearer than what it skips


def test_every_value_is_checked_after_a_missing_or_nested_one():
    # a None or a nested object earlier in the section must not end the check of the values after it
    _refused(fixture_run(metrics={"ids": None, "idf1": "x"}), "field 'metrics.idf1': expected a finite number, got 'x'")
    _refused(fixture_run(metrics={"per_sequence": {"A": {"mota": 0.5}}, "idf1": float("nan")}),
             "field 'metrics.idf1': expected a finite number, got nan")


def test_nesting_depth_of_metrics_and_cost():
    R.validate_record(fixture_run(metrics={"per_sequence": {"TUD-Campus": {"mota": 0.5, "ids": 3}}}))
    _refused(fixture_run(metrics={"per_sequence": {"TUD-Campus": {"mota": {"x": 0.5}}}}),
             "field 'metrics.per_sequence.TUD-Campus.mota': expected a finite number, got {'x': 0.5}")
    _refused(fixture_run(metrics={"per_sequence": {"A": {"mota": 1.5}}}),
             "field 'metrics.per_sequence.A.mota': MOTA 1.5 > 1 (store fractions, not percent)")
    _refused(fixture_run(cost__layers={"a": 1.0}), "field 'cost.layers': expected a finite number, got {'a': 1.0}")


def test_read_records_filters_by_kind_and_reads_the_default_folder(tmp_path: Path, monkeypatch):
    f = tmp_path / "records" / "t.jsonl"
    R.append_record(f, fixture_run())
    R.append_record(f, _speed())
    R.append_record(f, R.skip_marker(experiment="t/x", task="mot", reason="r", config={}))
    assert [r["kind"] for r in R.read_records(f)] == ["run", "speed", "skipped"]
    assert [r["kind"] for r in R.read_records(f, kind="speed")] == ["speed"]
    assert [r["kind"] for r in R.read_records([str(f)], kind="run")] == ["run"]
    monkeypatch.setenv("PASSBENCH_RESULTS", str(tmp_path))
    assert [r["kind"] for r in R.read_records(kind="skipped")] == ["skipped"]


def test_a_bad_line_already_in_the_file_stops_an_append_naming_the_file(tmp_path: Path):
    f = tmp_path / "t.jsonl"
    f.write_text(json.dumps({"schema": "nope"}) + "\n")
    with pytest.raises(R.RecordError, match=re.escape(f"{f}:1: ")):
        R.append_record(f, fixture_run())
