"""CLI tests: models, table on fixture records in a temp results dir, run -> skip marker only for what
this machine cannot run, a user's mistake -> exit 2 and nothing written, reproduce / figure exit codes,
one summary line per row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from passbench import paths
from passbench import records as R
from passbench.cli import main
from passbench.paths import REPO_ROOT
from passbench.records import summary_line
from test_records import fixture_run
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


@pytest.fixture
def empty_default_root(tmp_path: Path, monkeypatch) -> Path:
    """The default data root (../shared/data) replaced by an empty folder, PASSBENCH_DATA unset."""
    root = tmp_path / "default_data"
    root.mkdir()
    monkeypatch.setattr(paths, "SAMPLE_DATA", root)
    monkeypatch.delenv("PASSBENCH_DATA", raising=False)
    return root


def test_dataset_absent_from_default_root_writes_skip_marker(tmp_path: Path, empty_default_root: Path,
                                                              capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table1" / "mhp.yaml"
    assert main(["--results-dir", str(tmp_path / "res"), "run", str(cfg)]) == 0
    assert "not runnable here: no Human3.6M: Human36M/ not under the default data root ../shared/data" \
        in capsys.readouterr().out
    (marker,) = R.read_records(tmp_path / "res" / "records")
    assert marker["kind"] == "skipped" and marker["experiment"] == "table1/mhp"
    assert marker["config"]["dataset"]["name"] == "Human36M"
    assert str(tmp_path) not in marker["reason"]  # no machine path in a record


def test_sequence_absent_from_default_root_is_skipped_not_faked(tmp_path: Path, empty_default_root: Path,
                                                                capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table4" / "pass_p.yaml"
    assert main(["--results-dir", str(tmp_path), "run", str(cfg), "--no-write"]) == 0
    assert "not runnable here: sequence MOT17/train/MOT17-02-FRCNN not under the default data root" \
        in capsys.readouterr().out
    assert not (tmp_path / "records").exists()


@pytest.mark.parametrize("how", ["argument", "env"])
def test_mistyped_data_root_is_an_error_that_writes_nothing(tmp_path: Path, monkeypatch, capsys, how) -> None:
    """`passbench run CONFIG --data-root /typo` (or $PASSBENCH_DATA) is the user's error: exit 2, no skip
    marker, nothing written."""
    cfg = REPO_ROOT / "configs" / "table3" / "dense_light.yaml"
    argv = ["--results-dir", str(tmp_path / "res"), "run", str(cfg)]
    if how == "argument":
        argv += ["--data-root", str(tmp_path / "typo")]
    else:
        monkeypatch.setenv("PASSBENCH_DATA", str(tmp_path / "typo"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "typo is not a directory" in err
    assert not (tmp_path / "res").exists()


def test_data_missing_under_a_given_root_is_an_error(tmp_path: Path, capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table4" / "pass_p.yaml"
    assert main(["--results-dir", str(tmp_path / "res"), "run", str(cfg), "--data-root", str(tmp_path)]) == 2
    assert f"sequence MOT17/train/MOT17-02-FRCNN not under --data-root {tmp_path}" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


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


def test_missing_weights_file_is_an_error_not_a_skip(tmp_path: Path, capsys) -> None:
    cfg = REPO_ROOT / "configs" / "table3" / "pass_p.yaml"
    for seq in ("PETS09-S2L1", "TUD-Stadtmitte", "TUD-Campus"):  # the sample eval split's sequences
        (tmp_path / "data" / "MOT15" / "train" / seq).mkdir(parents=True)
    rc = main(["--results-dir", str(tmp_path / "res"), "run", str(cfg), "model.weights=nowhere/final.pt",
               "--data-root", str(tmp_path / "data")])
    assert rc == 2
    assert "model.weights nowhere/final.pt not found" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def _fake_runner(monkeypatch, behaviour):
    """Replace runner.run: ``behaviour(cfg)`` returns a record or raises; returns the names seen."""
    import passbench.runner as runner

    seen = []

    def fake_run(cfg, data_root=None, results=None, write=True, progress=None):
        seen.append(cfg.name)
        rec = behaviour(cfg)
        if write:
            R.append_record(runner.records_file(cfg, results), rec)
        return rec

    monkeypatch.setattr(runner, "run", fake_run)
    return seen


def _marker(cfg):
    return R.skip_marker(experiment=cfg.name, task=cfg.task, reason="over this CPU budget", config={"name": cfg.name})


def test_reproduce_skips_existing_and_fails_on_missing_code(results: Path, monkeypatch, capsys) -> None:
    def behaviour(cfg):
        raise NotImplementedError(f"no pipeline piece for {cfg.name}")

    seen = _fake_runner(monkeypatch, behaviour)
    assert main(["--results-dir", str(results), "reproduce", "3"]) == 1
    cap = capsys.readouterr()
    assert "table3/pass_p: record exists" in cap.out  # the fixture run is not redone
    assert "table3/pass_p" not in seen and "table3/hrnet_w32" in seen  # a skip marker is retried
    assert "table3/hrnet_w32: NOT IMPLEMENTED: no pipeline piece" in cap.out
    assert "NOT IMPLEMENTED: " in cap.err and "table3/hrnet_w32" in cap.err.split("NOT IMPLEMENTED: ")[-1]
    assert len(R.read_records(results / "records")) == len(_fixtures())  # nothing written for them


def test_reproduce_lists_failed_rows_goes_on_and_exits_1(results: Path, monkeypatch, capsys) -> None:
    def behaviour(cfg):
        if cfg.name == "table3/dla34":
            raise RuntimeError("the gate broke")
        return _marker(cfg)

    seen = _fake_runner(monkeypatch, behaviour)
    assert main(["--results-dir", str(results), "reproduce", "3"]) == 1
    cap = capsys.readouterr()
    assert "table3/dla34: FAILED: RuntimeError: the gate broke" in cap.out
    assert seen.index("table3/dla34") < len(seen) - 1  # the rows after the failing one still ran
    assert "1 failed" in cap.err and "FAILED: table3/dla34" in cap.err
    assert "not runnable here (skip markers): " in cap.err


def test_reproduce_with_only_skip_markers_exits_0(results: Path, monkeypatch, capsys) -> None:
    _fake_runner(monkeypatch, _marker)
    assert main(["--results-dir", str(results), "reproduce", "3"]) == 0
    cap = capsys.readouterr()
    assert "0 failed, 0 not implemented" in cap.err
    assert "table3/hrnet_w32: not runnable here: over this CPU budget" in cap.out


def test_reproduce_with_a_mistyped_data_root_runs_nothing(results: Path, monkeypatch, capsys) -> None:
    seen = _fake_runner(monkeypatch, _marker)
    assert main(["--results-dir", str(results), "reproduce", "3", "--data-root", str(results / "typo")]) == 2
    assert seen == [] and "typo is not a directory" in capsys.readouterr().err


def test_figure_run_exit_code(results: Path, monkeypatch, capsys) -> None:
    def behaviour(cfg):
        raise NotImplementedError("nope")

    _fake_runner(monkeypatch, behaviour)
    assert main(["--results-dir", str(results), "figure", "5", "--run"]) == 1
    assert (results / "figures" / "figure5.png").exists()  # the figure is still drawn from what exists
    assert "NOT IMPLEMENTED" in capsys.readouterr().err


def test_summary_line_and_verbose(tmp_path: Path, monkeypatch, capsys) -> None:
    rec = fixture_run("table3/pass_p")
    line = summary_line(rec)
    assert line == ("table3/pass_p: MOTA 50.0 %  IDF1 60.0 %  IDs 3  GMACs 1.000 executed (dense 2.000)  "
                    "skip 50.0 %  FPS 10.0 (1.25x dense)")
    _fake_runner(monkeypatch, lambda cfg: rec)
    cfg = REPO_ROOT / "configs" / "table3" / "pass_p.yaml"
    assert main(["--results-dir", str(tmp_path), "run", str(cfg), "--no-write"]) == 0
    assert capsys.readouterr().out == line + "\n"  # one line, no JSON dump
    assert main(["--results-dir", str(tmp_path), "run", str(cfg), "--no-write", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(line + "\n") and '"run_id"' in out


def test_overrides_may_follow_options(monkeypatch, capsys) -> None:
    import pytest as _pytest

    from passbench import cli

    seen = {}
    monkeypatch.setattr(cli, "_cmd_figure", lambda args: seen.update(o=args.overrides, run=args.run) or 0)
    assert main(["figure", "4", "a.b=1", "--run", "speed.threads=1"]) == 0
    assert seen == {"o": ["a.b=1", "speed.threads=1"], "run": True}

    with _pytest.raises(SystemExit) as e:
        main(["figure", "4", "--run", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err
    with _pytest.raises(SystemExit):
        main(["models", "a=b"])  # no overrides there
