"""``passbench speed``: speed-only records, one FPS column per device in the tables, the CLI on the CPU.

Fixture records here are synthetic (``FIXTURE`` dataset / invented numbers), never results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from passbench import records as R
from passbench.report.tables import build_table, device_label, display_frame
from test_records import fixture_run


def _speed(experiment: str, fps: float, dense: float, device: str, precision: str = "fp32", threads: int = 1,
           created: str | None = None) -> dict:
    rec = R.speed_record(
        experiment=experiment, task="mot", model={"name": "fixture_net", "tag": "fixture", "weights_sha256": None},
        method={"name": "pass_p", "params": {}},
        speed={"fps": fps, "fps_dense": dense, "speedup": fps / dense, "latency_ms_p50": 1000.0 / fps,
               "latency_ms_p90": 1100.0 / fps, "device": device, "threads": threads, "precision": precision,
               "batch": 1, "timed_region": "model forward"},
        config={"name": experiment, "table": experiment.split("/")[0], "paper_row": "pass_p"},
        env={"git_sha": "0" * 40, "dirty": False, "python": "3.11", "torch": "x", "device": device})
    if created:
        rec["created_utc"] = created
    return rec


def test_speed_record_validates_and_never_stands_for_the_row(tmp_path: Path):
    f = tmp_path / "records" / "table3.jsonl"
    run = fixture_run("table3/pass_p")
    sp = _speed("table3/pass_p", 90.0, 60.0, "cuda: Fixture GPU", "fp16 (autocast)", created="2999-01-01T00:00:00Z")
    R.append_record(f, run)
    R.append_record(f, sp)
    assert R.read_records(f, kind="speed") == [sp]
    assert R.latest_by_experiment(R.read_records(f))["table3/pass_p"] == run  # newer, but not a row
    assert R.latest_by_experiment([sp]) == {}
    for bad, needle in [({"metrics": {}}, "carries no metrics"), ({"cost": {}}, "carries no cost"),
                        ({"speed": {"fps": 1.0}}, "speed.latency_ms_p50"), ({"model": None}, "field 'model'")]:
        rec = dict(sp, **bad)
        with pytest.raises(R.RecordError, match=needle):
            R.validate_record(rec)
    rec = json.loads(json.dumps(sp))
    rec["speed"]["fps"] = 0.0
    with pytest.raises(R.RecordError, match="speed.fps"):
        R.validate_record(rec)


def test_tables_show_one_fps_column_per_device():
    runs = [fixture_run("table3/pass_p"), fixture_run("table3/dense_light", config__paper_row=None)]
    plain = build_table(3, runs)
    assert not [c for c in plain.columns if c.startswith("fps@")]  # no speed records: the table as before
    gpu = "cuda: Fixture GPU, fp16 (autocast)"
    speeds = [
        _speed("table3/pass_p", 50.0, 40.0, "cuda: Fixture GPU", "fp16 (autocast)", created="2030-01-01T00:00:00Z"),
        _speed("table3/pass_p", 90.0, 60.0, "cuda: Fixture GPU", "fp16 (autocast)", created="2030-01-02T00:00:00Z"),
        _speed("table3/pass_p", 12.0, 10.0, "cpu: x86_64", threads=2),
    ]
    df = build_table(3, runs + speeds).set_index("experiment")
    assert list(plain.columns) == [c for c in df.reset_index().columns if "@" not in c]  # existing columns kept
    assert df.loc["table3/pass_p", "fps"] == 10.0  # the run's own timing is unchanged
    assert df.loc["table3/pass_p", f"fps@{gpu}"] == 90.0  # the newest speed record of that device
    assert df.loc["table3/pass_p", f"fps_ratio_to_dense@{gpu}"] == pytest.approx(1.5)
    assert df.loc["table3/pass_p", "fps@cpu: x86_64, fp32, 2 threads"] == 12.0
    assert pd.isna(df.loc["table3/dense_light", f"fps@{gpu}"])  # not timed there: empty, not borrowed
    disp = display_frame(3, df.reset_index())
    cols = list(disp.columns)  # the same-process ratio first, the absolute FPS only beside its dense twin's
    assert cols.index(f"FPS / dense [{gpu}]") + 1 == cols.index(f"FPS (dense twin) [{gpu}]")
    row = disp[disp["row"] == "table3/pass_p"].iloc[0]
    assert row[f"FPS / dense [{gpu}]"] == "1.50x" and row[f"FPS (dense twin) [{gpu}]"] == "90.0 (dense 60.0)"
    assert device_label(speeds[2]) == "cpu: x86_64, fp32, 2 threads"


def test_passbench_speed_on_the_cpu_appends_a_speed_record(tmp_path: Path, capsys):
    from passbench import cli
    from passbench.paths import resolve_data_root

    try:
        root = resolve_data_root(None)
    except FileNotFoundError:
        pytest.skip("sample data not present")
    if not (root / "MOT15" / "train" / "TUD-Stadtmitte").is_dir():
        pytest.skip("sample data not present")
    rc = cli.main(["--results-dir", str(tmp_path), "speed", "configs/table3/random_skip.yaml", "speed.warmup=1",
                   "speed.iters=3", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "table3/random_skip [cpu" in out and "FPS (dense twin" in out
    recs = R.read_records(tmp_path / "records")
    assert len(recs) == 1 and recs[0]["kind"] == "speed"
    sp = recs[0]["speed"]
    assert sp["device"].startswith("cpu") and sp["threads"] == 1 and sp["precision"] == "fp32"
    assert sp["fps"] > 0 and sp["fps_dense"] > 0 and sp["speedup"] == pytest.approx(sp["fps"] / sp["fps_dense"])
    assert recs[0]["method"]["name"] == "fixed" and recs[0]["config"]["speed"]["device"] == "cpu"
    df = build_table(3, recs)  # a speed record alone makes no row: there is no run to show
    assert "table3/random_skip" not in set(df["experiment"].dropna())


def test_passbench_speed_refuses_cuda_without_a_gpu_and_pose_rows(tmp_path: Path, capsys):
    torch = pytest.importorskip("torch")
    from passbench import cli

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    rc = cli.main(["--results-dir", str(tmp_path), "speed", "configs/table3/dense_light.yaml", "--device", "cuda"])
    assert rc == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()  # nothing written


@pytest.mark.gpu
def test_passbench_speed_on_cuda_fp16(tmp_path: Path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA")
    from passbench import cli

    rc = cli.main(["--results-dir", str(tmp_path), "speed", "configs/table3/random_skip.yaml", "speed.iters=6",
                   "--device", "cuda", "--precision", "fp16"])
    assert rc == 0
    (rec,) = R.read_records(tmp_path / "records")
    assert rec["speed"]["device"].startswith("cuda") and rec["speed"]["precision"] == "fp16 (autocast)"
    assert rec["speed"]["fps"] > 0
