"""Records: schema validation, atomic append, file:line errors, failing runs write nothing."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from passbench import records as R
from passbench.config import load_config


def fixture_run(experiment: str = "table3/pass_p", **over) -> dict:
    """A synthetic, clearly-fixture run record (numbers invented for tests, never results)."""
    cfg = {"name": experiment, "table": experiment.split("/")[0], "paper_row": "pass_p", "model": {"input_wh": [64, 32]}}
    rec = R.new_record(
        experiment=experiment,
        task="mot",
        dataset={"name": "FIXTURE", "split": "train", "protocol": "full", "frames": None, "sequences": ["fx"]},
        model={"name": "fixture_net", "tag": "fixture", "weights_sha256": None},
        method={"name": "pass_p", "params": {}},
        metrics={"mota": 0.5, "idf1": 0.6, "idp": 0.7, "ids": 3},
        cost={"gmacs_dense": 2.0, "gmacs_executed": 1.0, "gate_gmacs": 0.1, "patch_skip_rate": 0.5, "mac_reduction": 0.5},
        speed={"fps": 10.0, "fps_dense": 8.0, "latency_ms_p50": 100.0, "latency_ms_p90": 120.0, "device": "cpu",
               "threads": 1, "precision": "fp32", "batch": 1, "timed_region": "model forward"},
        config=cfg,
        env={"git_sha": "0" * 40, "dirty": False, "python": "3.11", "torch": "x", "device": "cpu"},
    )
    for k, v in over.items():
        section, _, key = k.partition("__")
        if key:
            rec[section][key] = v
        else:
            rec[section] = v
    return rec


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "records" / "t.jsonl"
    a, b = fixture_run("table3/a"), fixture_run("table3/b")
    R.append_record(f, a)
    R.append_record(f, b)
    lines = f.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1]) == b
    assert R.read_records(tmp_path / "records") == [a, b]
    assert not list(f.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"schema": "v0"}, "field 'schema'"),
        ({"kind": "done"}, "field 'kind'"),
        ({"metrics__mota": 84.1}, "MOTA 84.1 > 1"),
        ({"cost__mac_reduction": 1.5}, "mac_reduction 1.5 > 1"),
        ({"cost__patch_skip_rate": 54.25}, "field 'cost.patch_skip_rate': fraction 54.25 outside [0, 1]"),
        ({"metrics__idf1": "high"}, "field 'metrics.idf1': expected a finite number"),
        ({"metrics__idf1": float("nan")}, "field 'metrics.idf1': expected a finite number"),
        ({"speed__fps": 0}, "field 'speed.fps'"),
        ({"cost": {"gmacs_dense": 1.0}}, "field 'cost.gmacs_executed': missing"),
        ({"env": None}, "field 'env'"),
    ],
)
def test_validation_names_the_field(over: dict, needle: str) -> None:
    rec = fixture_run()
    with pytest.raises(R.RecordError) as e:
        rec2 = dict(rec)
        for k, v in over.items():
            section, _, key = k.partition("__")
            if key:
                rec2[section] = {**rec2[section], key: v}
            else:
                rec2[section] = v
        R.validate_record(rec2)
    assert needle in str(e.value)


def test_nested_per_sequence_metrics_are_checked() -> None:
    rec = fixture_run()
    rec["metrics"]["per_sequence"] = {"MOT17-02": {"mota": 0.3}}
    R.validate_record(rec)
    rec["metrics"]["per_sequence"] = {"MOT17-02": {"mota": 30.0}}
    with pytest.raises(R.RecordError, match="metrics.per_sequence.MOT17-02.mota"):
        R.validate_record(rec)


def test_reader_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    good = json.dumps(fixture_run())
    bad = fixture_run()
    del bad["speed"]["device"]
    f.write_text(good + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(R.RecordError, match=rf"{f}:3: field 'speed.device': missing"):
        R.read_records(f)
    f.write_text(good + "\n{not json\n")
    with pytest.raises(R.RecordError, match=rf"{f}:2: not valid JSON"):
        R.read_records(f)


def test_skip_marker_carries_no_numbers() -> None:
    m = R.skip_marker(experiment="table1/mhp", task="pose", reason="no Human3.6M", config={})
    assert m["kind"] == "skipped" and "metrics" not in m
    with pytest.raises(R.RecordError, match="carries no numbers"):
        R.validate_record({**m, "metrics": {"mpjpe_mm": 50.0}})
    with pytest.raises(R.RecordError, match="needs a reason"):
        R.validate_record({**m, "reason": ""})


def test_interrupted_write_keeps_old_file_and_leaves_no_record(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "t.jsonl"
    R.append_record(f, fixture_run("table3/a"))
    before = f.read_bytes()

    def boom(src, dst):
        raise OSError("disk pulled")

    monkeypatch.setattr(R.os, "replace", boom)
    with pytest.raises(OSError):
        R.append_record(f, fixture_run("table3/b"))
    monkeypatch.undo()
    assert f.read_bytes() == before  # the half-done append never became a record
    assert not list(tmp_path.glob(".*.tmp"))  # and its temp file is gone
    # a stray temp file (e.g. from a killed process) is not a records file
    (tmp_path / ".t.jsonl.abc.tmp").write_text('{"partial": ')
    assert [r["experiment"] for r in R.read_records(tmp_path)] == ["table3/a"]


def test_invalid_record_is_never_written(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    rec = fixture_run()
    rec["metrics"]["mota"] = 12.0
    with pytest.raises(R.RecordError):
        R.append_record(f, rec)
    assert not f.exists()


def test_failing_run_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    from passbench import runner
    from passbench.paths import REPO_ROOT

    cfg = load_config(REPO_ROOT / "configs" / "table3" / "pass_p.yaml")

    def crash(*a, **k):
        raise RuntimeError("tracker exploded mid-sequence")

    monkeypatch.setattr(runner, "run_mot", crash)
    with pytest.raises(RuntimeError):
        runner.run(cfg, results=tmp_path)
    assert not (tmp_path / "records").exists() or not list((tmp_path / "records").glob("*.jsonl"))


def _append_many(path: str, tag: str, n: int) -> None:
    for i in range(n):
        R.append_record(path, fixture_run(f"table3/{tag}{i}"))


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    f = str(tmp_path / "t.jsonl")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(f, t, 15)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    recs = R.read_records(f)
    assert sorted(r["experiment"] for r in recs) == sorted(f"table3/{t}{i}" for t in "ab" for i in range(15))


def test_latest_by_experiment_prefers_a_finished_run() -> None:
    run = fixture_run("table3/x")
    run["created_utc"] = "2026-01-01T00:00:00Z"
    newer_run = dict(run, run_id="n", created_utc="2026-01-02T00:00:00Z")
    marker = R.skip_marker(experiment="table3/x", task="mot", reason="no data here", config={})
    marker["created_utc"] = "2026-02-01T00:00:00Z"
    only_marker = R.skip_marker(experiment="table3/y", task="mot", reason="too slow", config={})
    got = R.latest_by_experiment([run, marker, newer_run, only_marker])
    assert got["table3/x"]["run_id"] == "n"
    assert got["table3/y"]["kind"] == "skipped"


def test_results_dir_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PASSBENCH_RESULTS", str(tmp_path))
    assert R.records_dir() == tmp_path / "records"
    assert R.results_dir("elsewhere") == Path("elsewhere")
    monkeypatch.delenv("PASSBENCH_RESULTS")
    assert R.results_dir() == R.RESULTS and os.fspath(R.RESULTS).endswith("results")


def test_new_record_refuses_an_absolute_data_root() -> None:
    """Records store the data root as the user named it, never this machine's absolute path."""
    rec = fixture_run(dataset={"name": "MOT15", "split": "train", "protocol": "full", "frames": None,
                               "data_root": "../shared/data"})
    assert rec["dataset"]["data_root"] == "../shared/data"
    with pytest.raises(R.RecordError, match="dataset.data_root.*absolute"):
        R.new_record(**{k: rec[k] for k in ("experiment", "task", "model", "method", "metrics", "cost", "speed",
                                            "config", "env")},
                     dataset={**rec["dataset"], "data_root": "/work/shared/data"})
    R.validate_record({**rec, "dataset": {**rec["dataset"], "data_root": "/old/record"}})  # readers still accept


def test_a_gate_that_costs_more_than_it_saves_gives_a_negative_mac_reduction() -> None:
    # 1 - (executed + gate) / dense < 0: a legitimate measurement, not a schema error
    R.validate_record(fixture_run(cost__mac_reduction=-0.3))
