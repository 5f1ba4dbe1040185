"""Bad input never becomes a number: each bad config value, override, data file, weights file and records
file a user (or a flaky disk) could give, run through the CLI (``python -m passbench.cli``, a fresh
results folder each). Every case must exit 2 with ``error: <message naming the culprit>``, no
traceback, and leave the results folder as it was; the last cases check what a user may ask for
instead (``--on-corrupt-frame skip``, gt rows the evaluator never scores): exit 0 and a record that
says what was left out.

Data cases run the dense light model on 3 frames of a copy of MOT17-mini/MOT17-02-FRCNN with one file
broken, timing off, one thread.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from passbench.paths import REPO_ROOT, SAMPLE_DATA

SEQ = "MOT17-02-FRCNN"
SRC = SAMPLE_DATA / "MOT17-mini" / "train" / SEQ
pytestmark = pytest.mark.skipif(not SRC.is_dir(), reason="sample data (../shared/data) not present")

DENSE = "configs/table3/dense_light.yaml"
PASS_P = "configs/table3/pass_p.yaml"
FAST = ["speed.enabled=false", "speed.threads=1"]
MINI = [DENSE, "dataset.name=MOT17-mini", f"dataset.sequences=[{SEQ}]", "dataset.halves={}", "dataset.frames=[1,3]",
        *FAST, "--data-root", "{data}"]


# ----------------------------------------------------------------------------------------------
# what each case breaks (in a copy under tmp; the sample data and weights/ are never touched)


def _mini(tmp: Path) -> Path:
    """A data root holding a copy of MOT17-mini/train/MOT17-02-FRCNN; returns the sequence folder."""
    dst = tmp / "data" / "MOT17-mini" / "train" / SEQ
    shutil.copytree(SRC, dst)
    return dst


def _edit_line(path: Path, lineno: int, fn: Callable[[list[str]], list[str]]) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = ",".join(fn(lines[lineno - 1].split(",")))
    path.write_text("\n".join(lines) + "\n")


def truncated_jpeg(tmp: Path) -> None:
    f = _mini(tmp) / "img1" / "000002.jpg"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def small_frame(tmp: Path) -> None:
    import cv2
    import numpy as np

    f = _mini(tmp) / "img1" / "000002.jpg"
    cv2.imwrite(str(f), np.zeros((240, 320, 3), np.uint8))


def missing_frame(tmp: Path) -> None:
    (_mini(tmp) / "img1" / "000002.jpg").unlink()


def garbage_frame(tmp: Path) -> None:
    (_mini(tmp) / "img1" / "000002.jpg").write_bytes(b"not an image at all" * 10)


def gt_negative_width(tmp: Path) -> None:  # line 5: frame 1, consider flag 1, class 1 (scored)
    _edit_line(_mini(tmp) / "gt" / "gt.txt", 5, lambda c: c[:4] + ["-167"] + c[5:])


def gt_not_finite(tmp: Path) -> None:
    _edit_line(_mini(tmp) / "gt" / "gt.txt", 5, lambda c: c[:3] + ["nan"] + c[4:])


def gt_missing(tmp: Path) -> None:
    (_mini(tmp) / "gt" / "gt.txt").unlink()


def seqinfo_without_width(tmp: Path) -> None:
    ini = _mini(tmp) / "seqinfo.ini"
    ini.write_text("".join(ln for ln in ini.read_text().splitlines(keepends=True) if not ln.startswith("imWidth")))


def mini_root(tmp: Path) -> None:
    _mini(tmp)


def gt_unscored_zero_width(tmp: Path) -> None:  # line 1: consider flag 0, class 7 (the evaluator drops it)
    _edit_line(_mini(tmp) / "gt" / "gt.txt", 1, lambda c: c[:4] + ["0"] + c[5:])


def _weights_dir(tmp: Path, *names: str) -> Path:
    d = tmp / "w"
    d.mkdir()
    for n in names:
        shutil.copy2(REPO_ROOT / "weights" / "sample" / n, d / n)
    return d


def weights_changed_by_1e3(tmp: Path) -> None:
    """The committed task.pt with hm.2.bias + 1e-3 beside the committed SHA256SUMS."""
    import torch

    d = _weights_dir(tmp, "SHA256SUMS")
    ck = torch.load(REPO_ROOT / "weights" / "sample" / "task.pt", map_location="cpu", weights_only=False)
    ck["model"]["hm.2.bias"] = ck["model"]["hm.2.bias"] + 1e-3
    torch.save(ck, d / "task.pt")


def weights_truncated(tmp: Path) -> None:
    d = _weights_dir(tmp)
    src = REPO_ROOT / "weights" / "sample" / "task.pt"
    (d / "task.pt").write_bytes(src.read_bytes()[: src.stat().st_size // 2])


def weights_garbage(tmp: Path) -> None:
    (_weights_dir(tmp) / "task.pt").write_bytes(b"\x00garbage" * 100)


def weights_wrong_shape(tmp: Path) -> None:
    """A final.pt of fairmot_mbv2 whose hm head has 2 channels instead of 1."""
    import torch

    ck = torch.load(REPO_ROOT / "weights" / "sample" / "task.pt", map_location="cpu", weights_only=False)
    ck["model"]["hm.2.bias"] = torch.zeros(2)
    torch.save(ck, _weights_dir(tmp) / "task.pt")


def delta_on_other_base(tmp: Path) -> None:
    """pass_p.pt (a delta on task.pt) beside a task.pt that holds other weights (no SHA256SUMS there)."""
    weights_changed_by_1e3(tmp)
    (tmp / "w" / "SHA256SUMS").unlink()
    shutil.copy2(REPO_ROOT / "weights" / "sample" / "pass_p.pt", tmp / "w" / "pass_p.pt")


def bad_yaml(tmp: Path) -> None:
    (tmp / "bad.yaml").write_text("_base_: [" + str(REPO_ROOT / DENSE) + "]\nspeed: {threads: [1,\n")


def corrupted_records(tmp: Path) -> None:
    """results/records/table3.jsonl: one good record, then a line cut short."""
    from test_records import fixture_run

    from passbench import records as R

    f = tmp / "results" / "records" / "table3.jsonl"
    R.append_record(f, fixture_run("table3/pass_p"))
    with open(f, "a") as fh:
        fh.write('{"schema": "passbench.record/1", "kind": "ru\n')
    os.chmod(f, 0o644)


# ----------------------------------------------------------------------------------------------
# the matrix


@dataclass(frozen=True)
class Bad:
    """One bad input: the CLI arguments after ``--results-dir`` ({data} = tmp/data, {tmp} = tmp), what the
    message must contain, how to prepare tmp, and the expected exit code."""

    argv: tuple[str, ...]
    needles: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    rc: int = 2
    env: dict[str, str] = field(default_factory=dict)


def run_(*args: str) -> tuple[str, ...]:
    return ("run", *args)


CASES: dict[str, Bad] = {
    # config values and overrides: refused when the config is resolved (on 3 frames, so that a missing
    # check fails fast: the row would run and write a record, or end in a traceback)
    "iou_threshold_1.5": Bad(run_(*MINI, "eval.iou_threshold=1.5"), ("eval.iou_threshold", "(0, 1]", "1.5"), mini_root),
    "conf_threshold_-1": Bad(run_(*MINI, "eval.conf_threshold=-1"), ("eval.conf_threshold", "[0, 1]"), mini_root),
    "backend_typo": Bad(run_(*MINI, "eval.backend=trackevl"), ("eval.backend", "trackevl", "trackeval, motmetrics"),
                        mini_root),
    "threads_0": Bad(run_(*MINI, "speed.threads=0"), ("speed.threads", ">= 1"), mini_root),
    "iters_0": Bad(run_(*MINI, "speed.enabled=true", "speed.iters=0"), ("speed.iters", ">= 1"), mini_root),
    "device_typo": Bad(run_(*MINI, "speed.device=gpu"), ("speed.device", "'gpu'"), mini_root),
    "frames_reversed": Bad(run_(*MINI, "dataset.frames=[3,1]"), ("dataset.frames", "[3, 1]"), mini_root),
    "frames_from_0": Bad(run_(*MINI, "dataset.frames=[0,3]"), ("dataset.frames", "1-based"), mini_root),
    "frames_and_halves": Bad(run_(*MINI, f"dataset.halves={{{SEQ}: val}}"), ("dataset.frames", "dataset.halves", SEQ),
                             mini_root),
    "halves_value": Bad(run_(*MINI, "dataset.frames=null", f"dataset.halves={{{SEQ}: second}}"),
                        (f"dataset.halves.{SEQ}", "train, val"), mini_root),
    "sequence_twice": Bad(run_(*MINI, f"dataset.sequences=[{SEQ},{SEQ}]"), ("dataset.sequences", "twice"), mini_root),
    "input_wh_0": Bad(run_(*MINI, "model.input_wh=[0,0]"), ("model.input_wh", "[0, 0]"), mini_root),
    "model_typo": Bad(run_(*MINI, "model.name=fairmot_mbv3"), ("model.name", "fairmot_mbv3", "fairmot_mbv2"),
                      mini_root),
    "timm_typo": Bad(run_(*MINI, "model.name=timm:resnet1"), ("model.name", "resnet1", "resnet18"), mini_root),
    "model_kwargs": Bad(run_(*MINI, "model.kwargs={bogus: 1}"), ("model.kwargs", "bogus"), mini_root),
    "method_typo": Bad(run_(*MINI, "method.name=pass_q"), ("method.name", "pass_q", "pass_p"), mini_root),
    "param_key": Bad(run_(PASS_P, *MINI[1:], "method.params.bogus=1"), ("method.params.bogus", "rates"), mini_root),
    "param_type": Bad(run_(PASS_P, *MINI[1:], "method.params.embed_dim=abc"), ("method.params.embed_dim", "integer"),
                      mini_root),
    "param_value": Bad(run_(PASS_P, *MINI[1:], "method.params.head=lin"), ("method.params.head", "'lin'", "linear"),
                       mini_root),
    "param_range": Bad(run_(PASS_P, *MINI[1:], "method.params.rates=1.5"), ("method.params.rates", "[0, 1]"),
                       mini_root),
    "execution_typo": Bad(run_(PASS_P, *MINI[1:], "method.params.execution=fast"), ("method.params.execution",
                                                                                    "sparse"), mini_root),
    "gate_param_from_weights": Bad(run_("configs/table3/skipconv_gumbel.yaml", *MINI[1:],
                                        "method.params.threshold=1.5"),
                                   ("method.params.threshold", "[0, 1]", "'gate': 'gumbel'"), mini_root),
    "operating_point": Bad(run_(PASS_P, *MINI[1:], "method.params.operating_point={rate: 2}"),
                           ("method.params.operating_point.rate", "[0, 1]"), mini_root),
    "unknown_key": Bad(run_(DENSE, "speed.itres=3"), ("unknown key 'speed.itres'",)),
    "not_key_value": Bad(run_(DENSE, "speed.threads"), ("override 'speed.threads'", "key=value")),
    "config_missing": Bad(run_("configs/table3/nope.yaml"), ("config file not found", "nope.yaml")),
    "config_bad_yaml": Bad(run_("{tmp}/bad.yaml"), ("bad.yaml", "invalid YAML"), bad_yaml),
    "speed_threads_0": Bad(("speed", DENSE, "--threads", "0"), ("--threads", ">= 1")),
    "corrupt_option": Bad(run_(DENSE, "--on-corrupt-frame", "ignore"), ("--on-corrupt-frame", "'ignore'")),
    "corrupt_env": Bad(run_(*MINI), ("PASSBENCH_ON_CORRUPT_FRAME", "'ignore'", "error, skip"), mini_root,
                       env={"PASSBENCH_ON_CORRUPT_FRAME": "ignore"}),
    "reproduce_override": Bad(("reproduce", "3", "eval.iou_threshold=2", "dataset.sequences=[TUD-Campus]",
                               "dataset.halves={}", "dataset.frames=[1,3]", *FAST), ("eval.iou_threshold", "(0, 1]")),
    "regress_override": Bad(("regress", "--case", "dense", "speed.threads=0"), ("speed.threads", ">= 1")),
    "pose_protocol": Bad(run_("configs/table1/mhp.yaml", "dataset.protocol=mhp-p9"), ("dataset.protocol", "mhp-p9")),
    "pose_subject": Bad(run_("configs/table1/mhp.yaml", "dataset.sequences=[S9, Walkin]"), ("dataset.sequences",
                                                                                            "'Walkin'")),
    "synthetic_preset": Bad(run_("configs/table1/mhp.yaml", *FAST, "--data-root", "synthetic:nope"),
                            ("synthetic:nope", "known:")),
    # data: named with the file and the frame / line
    "data_root_typo": Bad(run_(DENSE, "--data-root", "{tmp}/typo"), ("typo is not a directory",)),
    "sequence_typo_given_root": Bad(run_(*MINI[:2], "dataset.sequences=[MOT17-02-FRCN]", *MINI[3:]),
                                    ("MOT17-02-FRCN", "did you mean 'MOT17-02-FRCNN'", "it holds: MOT17-02-FRCNN"),
                                    mini_root),
    "sequence_typo_default_root": Bad(run_(DENSE, "dataset.sequences=[TUD-Campu]", "dataset.halves={}",
                                           "dataset.frames=[1,3]", *FAST),
                                      ("dataset.sequences", "'TUD-Campu'", "default data root", "TUD-Campus")),
    "dataset_name_typo": Bad(run_(DENSE, "dataset.name=MOT51", *FAST),
                             ("dataset.name", "'MOT51'", "MOT15, MOT17-mini")),
    "split_typo": Bad(run_(DENSE, "dataset.split=trian", *FAST), ("dataset.split", "'trian'", "it has: train")),
    "halves_name_typo": Bad(run_(DENSE, "dataset.sequences=[TUD-Campus]", "dataset.halves={TUD-Campu: val}",
                                 "dataset.frames=[1,3]", *FAST), ("dataset.halves", "'TUD-Campu'", "TUD-Campus")),
    "frames_outside": Bad(run_(*MINI[:4], "dataset.frames=[1,10]", *MINI[5:]),
                          ("dataset.frames", "[1, 10]", "1..4", "seqinfo.ini"), mini_root),
    "truncated_jpeg": Bad(run_(*MINI), ("000002.jpg", "MOT frame 2", "truncated"), truncated_jpeg),
    "frame_size": Bad(run_(*MINI), ("000002.jpg", "320x240", "imWidth=1920", "seqinfo.ini"), small_frame),
    "frame_missing": Bad(run_(*MINI), ("000002.jpg", "MOT frame 2 is missing"), missing_frame),
    "frame_garbage": Bad(run_(*MINI), ("000002.jpg", "could not be decoded"), garbage_frame),
    "gt_negative_width": Bad(run_(*MINI), ("gt.txt:5", "width -167"), gt_negative_width),
    "gt_not_finite": Bad(run_(*MINI), ("gt.txt:5", "not finite"), gt_not_finite),
    "gt_missing": Bad(run_(*MINI), ("no ground truth", "gt.txt"), gt_missing),
    "seqinfo_field": Bad(run_(*MINI), ("seqinfo.ini", "imWidth"), seqinfo_without_width),
    # weights: named with the file and both hashes / its size / the first offending key
    "weights_missing": Bad(run_(*MINI, "model.weights=nowhere/task.pt"), ("model.weights nowhere/task.pt not found",),
                           mini_root),
    "weights_sha256": Bad(run_(*MINI, "model.weights={tmp}/w/task.pt"), ("w/task.pt: sha256", "SHA256SUMS says"),
                          lambda t: (mini_root(t), weights_changed_by_1e3(t))),
    "weights_truncated": Bad(run_(*MINI, "model.weights={tmp}/w/task.pt"),
                             ("w/task.pt", "not a readable PyTorch checkpoint", "bytes"),
                             lambda t: (mini_root(t), weights_truncated(t))),
    "weights_garbage": Bad(run_(*MINI, "model.weights={tmp}/w/task.pt"), ("w/task.pt", "800 bytes"),
                           lambda t: (mini_root(t), weights_garbage(t))),
    "weights_other_model": Bad(run_(*MINI, "model.weights=weights/pose/task.pt"),
                               ("weights/pose/task.pt", "'mhp_lpski_w05'", "model.name is 'fairmot_mbv2'"), mini_root),
    "weights_other_shape": Bad(run_(*MINI, "model.weights={tmp}/w/task.pt"), ("w/task.pt", "first hm.2.bias", "(2,)"),
                               lambda t: (mini_root(t), weights_wrong_shape(t))),
    "delta_base_sha": Bad(run_(*MINI, "model.weights={tmp}/w/pass_p.pt", "method.name=pass_p"),
                          ("w/pass_p.pt", "its base", "other weights"),
                          lambda t: (mini_root(t), delta_on_other_base(t))),
    # records: a corrupted file is never appended to
    "records_corrupted": Bad(run_(*MINI), ("table3.jsonl:2", "not valid JSON"),
                             lambda t: (mini_root(t), corrupted_records(t))),
}


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` with its bytes and permission bits."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(tmp: Path, argv: tuple[str, ...], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    args = [a.replace("{data}", str(tmp / "data")).replace("{tmp}", str(tmp)) for a in argv]
    e = {k: v for k, v in os.environ.items() if not k.startswith("PASSBENCH_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "passbench.cli", "--results-dir", str(tmp / "results"), *args],
                          cwd=REPO_ROOT, env=e, capture_output=True, text=True, timeout=300,
                          preexec_fn=lambda: os.umask(0o022))


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_naming_the_culprit_and_writes_nothing(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    if case.setup is not None:
        case.setup(tmp_path)
    before = _snapshot(tmp_path / "results")
    p = _cli(tmp_path, case.argv, case.env)
    err = p.stderr
    assert p.returncode == case.rc, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {err}"
    assert "Traceback" not in err, err
    for needle in case.needles:
        assert needle in err, f"{needle!r} not in: {err}"
    assert _snapshot(tmp_path / "results") == before  # no record, no marker, no table, mode unchanged


# ----------------------------------------------------------------------------------------------
# what a user may ask for instead: numbers, and the record says what was left out


def _only_record(results: Path) -> dict:
    (f,) = (results / "records").glob("*.jsonl")
    assert stat.S_IMODE(f.stat().st_mode) == 0o644  # not mkstemp's 0600
    (line,) = f.read_text().splitlines()
    return json.loads(line)


def test_corrupt_frame_skipped_on_request_is_left_out_and_recorded(tmp_path: Path) -> None:
    truncated_jpeg(tmp_path)
    p = _cli(tmp_path, run_(*MINI, "--on-corrupt-frame", "skip"))
    assert p.returncode == 0, p.stderr
    assert "skipping a bad frame" in p.stderr and "000002.jpg" in p.stderr
    rec = _only_record(tmp_path / "results")
    assert rec["dataset"]["corrupt_frames"] == {"policy": "skip", "skipped": {SEQ: [2]}}
    assert rec["metrics"]["num_frames"] == 2  # frames 1 and 3 scored, 2 left out of scoring too


def test_gt_rows_the_evaluator_never_scores_are_dropped_and_counted(tmp_path: Path) -> None:
    gt_unscored_zero_width(tmp_path)
    p = _cli(tmp_path, run_(*MINI))
    assert p.returncode == 0, p.stderr
    assert "dropped 1 gt rows of non-positive size" in p.stderr and "lines 1" in p.stderr
    rec = _only_record(tmp_path / "results")
    assert rec["dataset"]["gt_rows_dropped"] == {SEQ: 1}
    assert "corrupt_frames" not in rec["dataset"]  # the default policy records nothing extra
