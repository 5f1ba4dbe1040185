"""CLI smoke tests: models, table on fixture records in a temp results dir, run -> skip marker, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from passbench import records as R
from passbench.cli import main
from passbench.paths import REPO_ROOT
from test_report import _fixtures

PASSBENCH = Path(sys.executable).parent / "passbench"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for r in _fixtures():
        R.append_record(tmp_path / "records" / "fixtures.jsonl", r)
    return tmp_path


def test_table3_on_fixture_records(results: Path, capsys) -> None:
    assert main(["--results-dir", str(results), "table", "3"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "table3/pass_p" in ln)
    assert "50.0" in line and "84.1" in line  # measured fixture beside the paper's value
    assert "not runnable here" in out
    assert (results / "tables" / "table3.md").read_text() == out
    assert (results / "tables" / "table3.csv").exists()


def test_results_dir_from_env_and_console_script(results: Path) -> None:
    if not PASSBENCH.exists():
        pytest.skip("console script not installed in this environment")
    env = {"PASSBENCH_RESULTS": str(results), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(PASSBENCH), "table", "3", "--format", "csv", "--no-write"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].startswith("experiment,method,model,paper_row,mota,mota_paper")
    assert not (results / "tables").exists()


def test_run_pose_row_writes_skip_marker(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    data.mkdir()
    cfg = REPO_ROOT / "configs" / "table1" / "mhp.yaml"
    assert main(["--results-dir", str(tmp_path / "res"), "run", str(cfg), "--data-root", str(data)]) == 0
    assert "not runnable here: no Human3.6M" in capsys.readouterr().out
    (marker,) = R.read_records(tmp_path / "res" / "records")
    assert marker["kind"] == "skipped" and marker["experiment"] == "table1/mhp"
    assert marker["config"]["dataset"]["name"] == "Human36M"


def test_run_missing_sequence_is_skipped_not_faked(tmp_path: Path, capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table4" / "pass_p.yaml"
    assert main(["--results-dir", str(tmp_path), "run", str(cfg), "--data-root", str(tmp_path), "--no-write"]) == 0
    assert "not runnable here: sequence MOT17/train/MOT17-02-FRCNN not under data root" in capsys.readouterr().out
    assert not (tmp_path / "records").exists()


def test_config_error_exit_code(tmp_path: Path, capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table3" / "pass_p.yaml"
    assert main(["--results-dir", str(tmp_path), "run", str(cfg), "speed.itres=3"]) == 2
    assert "unknown key 'speed.itres'" in capsys.readouterr().err


def test_bad_record_file_exit_code(results: Path, capsys) -> None:
    (results / "records" / "broken.jsonl").write_text("{}\n")
    assert main(["--results-dir", str(results), "table", "3"]) == 2
    assert "broken.jsonl:1:" in capsys.readouterr().err


def test_figure_command(results: Path, capsys) -> None:
    assert main(["--results-dir", str(results), "figure", "5"]) == 0
    assert (results / "figures" / "figure5.png").exists() and (results / "figures" / "figure5.pdf").exists()


def test_models_command(capsys) -> None:
    models = pytest.importorskip("passbench.models")
    if not hasattr(models, "MODELS") and not hasattr(models, "model_table"):
        pytest.skip("passbench.models has no registry yet")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in models.MODELS.names():
        assert name in out


def test_run_without_trained_weights_is_skipped(tmp_path: Path, capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table3" / "pass_p.yaml"
    for seq in ("PETS09-S2L1", "TUD-Stadtmitte", "TUD-Campus"):  # the sample eval split's sequences
        (tmp_path / "data" / "MOT15" / "train" / seq).mkdir(parents=True)
    rc = main(["--results-dir", str(tmp_path / "res"), "run", str(cfg), "model.weights=nowhere/final.pt",
               "--data-root", str(tmp_path / "data")])
    assert rc == 0
    assert "not runnable here: weights nowhere/final.pt not found" in capsys.readouterr().out
    (m,) = R.read_records(tmp_path / "res" / "records" / "table3.jsonl")
    assert m["kind"] == "skipped" and m["config"]["model"]["weights"] == "nowhere/final.pt"


def test_reproduce_skips_existing_and_reports_missing_code(results: Path, monkeypatch, capsys) -> None:
    import passbench.runner as runner

    seen = []

    def fake_run(cfg, data_root=None, results=None, write=True):
        seen.append(cfg.name)
        raise NotImplementedError(f"no pipeline piece for {cfg.name}")

    monkeypatch.setattr(runner, "run", fake_run)
    assert main(["--results-dir", str(results), "reproduce", "3"]) == 0
    cap = capsys.readouterr()
    assert "table3/pass_p: record exists" in cap.out  # the fixture run is not redone
    assert "table3/pass_p" not in seen and "table3/hrnet_w32" in seen  # a skip marker is retried
    assert "could not run because code is missing" in cap.err
    assert len(R.read_records(results / "records")) == len(_fixtures())  # nothing written for them
