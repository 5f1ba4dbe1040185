"""The one line a finished row prints (``summary_line``), speed-only records and the timing-to-row match, worked by
hand from fixture records: the line is what a user reads first and what the executor's progress shows."""

from __future__ import annotations

import pytest

from passbench import records as R
from test_records import fixture_run


def test_mot_summary_line_worked_by_hand():
    rec = fixture_run("table3/pass_p")  # MOTA .5, IDF1 .6, IDs 3, GMACs 1.0 of 2.0, skip .5, FPS 10 vs dense 8
    assert R.summary_line(rec) == ("table3/pass_p: MOTA 50.0 %  IDF1 60.0 %  IDs 3  GMACs 1.000 executed (dense "
                                   "2.000)  skip 50.0 %  FPS 10.0 (1.25x dense)")
    rec["metrics"] = {"mota": 0.12345, "idf1": None}
    rec["cost"]["patch_skip_rate"] = 0.0004
    rec["speed"].update(fps=7.25, fps_dense=None)
    assert R.summary_line(rec) == ("table3/pass_p: MOTA 12.3 %  IDF1 -  IDs -  GMACs 1.000 executed (dense 2.000)"
                                   "  skip 0.0 %  FPS 7.2")
    rec["speed"].update(fps=None)
    assert R.summary_line(rec).endswith("skip 0.0 %  FPS not timed")
    rec["speed"].update(fps=0.0, fps_dense=5.0)  # a zero FPS is no timing either
    assert R.summary_line(rec).endswith("FPS not timed")


def test_pose_summary_line_and_skip_marker_line():
    rec = fixture_run("table1/pass_f", metrics={"mpjpe_mm": 61.46, "pa_mpjpe_mm": 40.0})
    assert R.summary_line(rec).startswith("table1/pass_f: MPJPE 61.5 mm  GMACs 1.000 executed (dense 2.000)")
    m = R.skip_marker(experiment="table1/mhp", task="pose", reason="no Human3.6M", config={})
    assert R.summary_line(m) == "table1/mhp: not runnable here: no Human3.6M"


def test_percent_and_missing_values():
    assert R._pct(None) == "-" and R._pct(0.5) == "50.0 %" and R._pct(-0.404) == "-40.4 %" and R._pct(1) == "100.0 %"


def test_speed_record_carries_the_timing_alone():
    run = fixture_run()
    env = {"git_sha": "3" * 40, "dirty": False, "python": "3", "torch": "t", "device": "cpu"}
    rec = R.speed_record(experiment="table3/pass_p", task="mot", model=run["model"], method=run["method"],
                         speed=run["speed"], config={"name": "table3/pass_p"}, env=env)
    assert (rec["kind"], rec["experiment"], rec["task"], rec["schema"]) == ("speed", "table3/pass_p", "mot", R.SCHEMA)
    assert rec["model"] == run["model"] and rec["method"] == run["method"] and rec["speed"] == run["speed"]
    assert rec["config"] == {"name": "table3/pass_p"} and rec["env"] == env
    assert "metrics" not in rec and "cost" not in rec and len(rec["run_id"]) == 12
    made = R.speed_record(experiment="e", task="mot", model=run["model"], method=run["method"],
                          speed={**run["speed"], "device": "cuda:0"}, config={})
    assert made["env"]["device"] == "cuda:0" and made["env"]["python"]
    with pytest.raises(R.RecordError):
        R.speed_record(experiment="e", task="mot", model=run["model"], method=run["method"],
                       speed={k: v for k, v in run["speed"].items() if k != "fps"}, config={})


def test_timing_applies_when_weights_and_params_agree_and_empty_params_match():
    run = fixture_run()
    spd = {"model": dict(run["model"]), "method": {"name": "pass_p", "params": None}}
    assert R.timing_applies(spd, run)  # None params and {} are the same operating point
    assert not R.timing_applies({}, run) and not R.timing_applies(None, run)
    assert not R.timing_applies({**spd, "model": {**run["model"], "weights_sha256": "x"}}, run)
    assert not R.timing_applies({**spd, "method": {"params": {"rates": 0.4}}}, run)
    assert R.timing_applies({"model": {}, "method": {}}, {"model": {}, "method": {}})


def test_summary_line_ends_with_the_load_warning_of_a_loaded_timing_only():
    rec = fixture_run("table3/pass_p")
    rec["speed"].update(load_1m_before=3.1, load_1m_after=2.0, cpu_cores=2, loaded=True)
    assert R.summary_line(rec) == ("table3/pass_p: MOTA 50.0 %  IDF1 60.0 %  IDs 3  GMACs 1.000 executed (dense "
                                   "2.000)  skip 50.0 %  FPS 10.0 (1.25x dense)  WARNING: timed under load 3.1 > 2 "
                                   "cores (1-min load average): other jobs shared the CPU, FPS and ratio not "
                                   "reliable; re-time on a quiet machine")
    rec["speed"].update(fps=None)  # nothing timed: the load of an untimed row is not a warning
    assert "WARNING" not in R.summary_line(rec)


def test_file_sha256_against_hashlib_across_read_chunks(tmp_path):
    import hashlib

    f = tmp_path / "w.pt"
    data = bytes(range(256)) * (5 * 4096 + 7)  # 5 MiB and a bit: several 1 MiB chunks and a short last one
    f.write_bytes(data)
    assert R.file_sha256(f) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert R.file_sha256(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()


def test_check_file_names_the_bad_line_and_accepts_a_missing_or_good_file(tmp_path):
    import json

    f = tmp_path / "t.jsonl"
    R.check_file(f)  # not there yet: nothing to check
    R.append_record(f, fixture_run())
    R.check_file(str(f))
    f.write_text(f.read_text() + json.dumps({"kind": "run"}) + "\n")
    with pytest.raises(R.RecordError, match=f"^{f}:2: "):
        R.check_file(f)
    R.check_file(tmp_path)  # a folder is not a records file: nothing to check
