"""What a record says about where it was made (``env``) and what it carries, checked against sources the records
module does not use: git run here, ``sys.version_info``, ``torch.__version__``. These pin the fields a reader
trusts when two records disagree (which commit, which torch, which device), and a record's sections as given."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from passbench import records as R
from test_records import fixture_run


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=R.REPO_ROOT, capture_output=True, text=True, check=True).stdout


def test_env_info_names_this_commit_python_torch_and_device():
    env = R.env_info("cuda: fixture")
    assert env["git_sha"] == _git("rev-parse", "HEAD").strip() and len(env["git_sha"]) == 40
    assert env["dirty"] is bool(_git("status", "--porcelain", "--untracked-files=no").strip())
    assert env["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert env["torch"] in (torch.__version__, torch.__version__.split("+")[0])  # the distribution, local tag aside
    assert env["device"] == "cuda: fixture"
    assert set(env) == {"git_sha", "dirty", "python", "torch", "device"}
    assert R.env_info()["device"] == "cpu"


def test_env_info_sees_a_modified_tracked_file_but_not_an_untracked_one(tmp_path: Path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("1\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a"],
                   check=True)
    monkeypatch.setattr(R, "REPO_ROOT", tmp_path)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    clean = R.env_info()
    assert clean["git_sha"] == head.strip() and clean["dirty"] is False
    (tmp_path / "untracked.txt").write_text("x\n")
    assert R.env_info()["dirty"] is False  # a stray file is not a change to the code that ran
    (tmp_path / "a.txt").write_text("2\n")
    assert R.env_info()["dirty"] is True


def test_env_info_without_git_or_torch_records_none_and_does_not_fail(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(R, "REPO_ROOT", tmp_path)  # not a git work tree: git prints nothing on stdout
    env = R.env_info()
    assert env["git_sha"] is None and env["dirty"] is False

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(R.subprocess, "run", no_git)
    env = R.env_info()
    assert env["git_sha"] is None and env["dirty"] is None

    import importlib.metadata as md

    def no_dist(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "version", no_dist)
    assert R.env_info()["torch"] is None


def test_git_is_asked_in_the_repository_with_a_time_limit(monkeypatch):
    calls = []

    def spy(cmd, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(R.subprocess, "run", spy)
    R.env_info()
    assert [c[0] for c in calls] == [["git", "rev-parse", "HEAD"], ["git", "status", "--porcelain", "--untracked-files=no"]]
    for _, kw in calls:
        assert kw["cwd"] == R.REPO_ROOT and kw["capture_output"] is True and kw["text"] is True
        assert 0 < kw["timeout"] <= 60


def test_new_record_keeps_every_section_as_given_and_fills_env_from_the_speed_device(monkeypatch):
    monkeypatch.setattr(R, "env_info", lambda device="cpu": {"git_sha": None, "dirty": None, "python": "3",
                                                               "torch": None, "device": f"made for {device}"})
    base = fixture_run()
    sections = {k: base[k] for k in ("dataset", "model", "method", "metrics", "cost", "speed", "config")}
    speed = {**sections["speed"], "device": "cuda:1"}
    rec = R.new_record(experiment="table3/x", task="mot", **{**sections, "speed": speed})
    for k, v in {**sections, "speed": speed}.items():
        assert rec[k] == v, k
    assert rec["env"]["device"] == "made for cuda:1"
    assert (rec["experiment"], rec["task"], rec["kind"], rec["schema"]) == ("table3/x", "mot", "run", R.SCHEMA)
    given = {"git_sha": "1" * 40, "dirty": True, "python": "3.11.0", "torch": "t", "device": "cpu"}
    assert R.new_record(experiment="e", task="mot", env=given, **sections)["env"] == given
    speed_no_device = {k: v for k, v in speed.items() if k != "device"}
    with pytest.raises(R.RecordError):  # validation still asks for speed.device
        R.new_record(experiment="e", task="mot", **{**sections, "speed": speed_no_device})


def test_skip_marker_carries_its_reason_config_and_this_machine(monkeypatch):
    monkeypatch.setattr(R, "env_info", lambda device="cpu": {"git_sha": "2" * 40, "dirty": False, "python": "3",
                                                               "torch": "t", "device": device})
    m = R.skip_marker(experiment="table1/mhp", task="pose", reason="no Human3.6M here", config={"name": "table1/mhp"})
    assert (m["experiment"], m["task"], m["reason"]) == ("table1/mhp", "pose", "no Human3.6M here")
    assert m["config"] == {"name": "table1/mhp"} and m["env"]["git_sha"] == "2" * 40 and m["env"]["device"] == "cpu"
    assert len(m["run_id"]) == 12 and m["run_id"] != R.skip_marker(experiment="e", task="pose", reason="r",
                                                                     config={})["run_id"]


def test_a_nan_anywhere_in_a_record_is_refused_and_nothing_is_written(tmp_path: Path):
    f = tmp_path / "r.jsonl"
    R.append_record(f, fixture_run())
    before = f.read_bytes()
    rec = fixture_run()
    rec["config"]["note"] = math.nan  # not a metric: only the JSON writer can catch it
    with pytest.raises(ValueError):
        R.append_record(f, rec)
    assert f.read_bytes() == before
    assert all(json.loads(line) for line in f.read_text().splitlines())


def test_a_new_records_file_gets_the_umask_mode_and_an_existing_one_keeps_its_mode(tmp_path: Path):
    import os

    f = tmp_path / "r.jsonl"
    old = os.umask(0o022)
    try:
        R.append_record(f, fixture_run())
        assert f.stat().st_mode & 0o777 == 0o644
        f.chmod(0o604)
        R.append_record(f, fixture_run())
        assert f.stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.lock"]  # no temporary file left


def test_latest_of_two_records_with_the_same_stamp_is_the_later_line_for_runs_and_markers():
    a, b = fixture_run(), fixture_run()
    a["run_id"], b["run_id"] = "a", "b"
    a["created_utc"] = b["created_utc"] = "2026-01-01T00:00:00Z"
    assert R.latest_by_experiment([a, b])["table3/pass_p"]["run_id"] == "b"
    assert R.latest_by_experiment([b, a])["table3/pass_p"]["run_id"] == "a"
    older, newer = dict(a, created_utc="2026-01-01T00:00:00Z"), dict(b, created_utc="2026-01-02T00:00:00Z")
    assert R.latest_by_experiment([newer, older])["table3/pass_p"]["run_id"] == "b"
    m1 = R.skip_marker(experiment="t/x", task="mot", reason="r1", config={})
    m2 = R.skip_marker(experiment="t/x", task="mot", reason="r2", config={})
    m1["created_utc"] = m2["created_utc"] = "2026-01-01T00:00:00Z"
    assert R.latest_by_experiment([m1, m2])["t/x"]["reason"] == "r2"
    run = dict(fixture_run("t/x"), created_utc="2025-01-01T00:00:00Z")
    assert R.latest_by_experiment([run, m1])["t/x"]["kind"] == "run"  # a finished run beats a later marker
    assert R.latest_by_experiment([m1, run])["t/x"]["kind"] == "run"


def test_the_temporary_file_sits_beside_the_records_file_hidden_from_the_records_glob(tmp_path: Path, monkeypatch):
    # os.replace is atomic only within one filesystem: the temporary file must be in the target's folder; and
    # read_records globs records/*.jsonl, so a temporary file left by a crash must not look like a records file.
    import os

    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        return real(src, dst)

    monkeypatch.setattr(R.os, "replace", spy)
    f = tmp_path / "records" / "t.jsonl"
    R.append_record(f, fixture_run())
    ((src, dst),) = seen
    assert dst == f and src.parent == f.parent
    assert src.name.startswith(".") and not src.name.endswith(".jsonl") and f.name in src.name


def test_an_absolute_data_root_is_refused_with_the_field_and_the_fix():
    base = fixture_run()
    sections = {k: base[k] for k in ("model", "method", "metrics", "cost", "speed", "config", "env")}
    with pytest.raises(R.RecordError) as e:
        R.new_record(experiment="e", task="mot", dataset={**base["dataset"], "data_root": "/data/MOT17"}, **sections)
    assert str(e.value) == ("field 'dataset.data_root': '/data/MOT17' is this machine's absolute path; store the root "
                            "as the user named it (passbench.paths.DataRoot.label)")
