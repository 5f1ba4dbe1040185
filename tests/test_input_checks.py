"""The input checks one by one, in process (the CLI matrix is tests/test_bad_inputs.py): the exit-2
mapping, config value rules the matrix does not cover, complete image decoding, frame size against
seqinfo.ini, the skip policy, weights integrity helpers, and records appends."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from passbench import records as R
from passbench.config import CONFIGS, ConfigError, load_config
from passbench.errors import UserError
from passbench.paths import REPO_ROOT, SAMPLE_DATA
from test_records import fixture_run

DENSE = CONFIGS / "table3" / "dense_light.yaml"
needs_data = pytest.mark.skipif(not (SAMPLE_DATA / "MOT15").is_dir(), reason="sample data (../shared/data) not present")


# ----------------------------------------------------------------------------------------------
# the CLI maps every UserError, and only UserError, to exit 2


def test_cli_maps_every_user_error_subclass_to_exit_2_and_nothing_else(monkeypatch, capsys) -> None:
    from passbench import cli

    class SomeNewCheck(UserError, KeyError):
        pass

    monkeypatch.setattr(cli, "_cmd_table", lambda args: (_ for _ in ()).throw(SomeNewCheck("file x, field y")))
    assert cli.main(["table", "3"]) == 2
    assert "error: 'file x, field y'" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_cmd_table", lambda args: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):  # not the user's: a traceback, not a usage message
        cli.main(["table", "3"])


@pytest.mark.parametrize("cls", ["passbench.config.ConfigError", "passbench.records.RecordError",
                                 "passbench.paths.DataRootError", "passbench.datasets.mot.SequenceError",
                                 "passbench.datasets.motio.MOTFormatError", "passbench.datasets.video.FrameDecodeError",
                                 "passbench.models.checkpoint.CheckpointMismatchError",
                                 "passbench.models.integrity.WeightsFileError", "passbench.runner.WeightsNotFoundError",
                                 "passbench.regress.RegressError", "passbench.leaderboard.LeaderboardError"])
def test_every_input_error_is_a_user_error(cls: str) -> None:
    import importlib

    mod, _, name = cls.rpartition(".")
    assert issubclass(getattr(importlib.import_module(mod), name), UserError)


# ----------------------------------------------------------------------------------------------
# config values beyond the CLI matrix


@pytest.mark.parametrize("config, override, needle", [
    ("table3/dense_light.yaml", "method.params.operating_point={rate: 0.4}", "'dense' skips nothing"),
    ("table3/skipconv.yaml", "method.params.operating_point={rate: 0.4, allocation: uniform}", "PASS gates only"),
    ("table3/skipconv.yaml", "method.params={gate: gumbel, threshold: 1.5}", "'method.params.threshold': must be a "
                                                                             "finite number in [0, 1]"),
    ("table3/skipconv.yaml", "method.params={gate: norm, threshold: -0.1}", "(norm of the residual)"),
    ("table3/skipconv.yaml", "method.params.gate=normal", "gate must be 'norm' or 'gumbel'"),
    ("table3/pass_p.yaml", "method.params.layers=3", "'method.params.layers': expected a glob"),
    ("table3/pass_p.yaml", "method.params.rates=[]", "empty list"),
    ("table3/pass_p.yaml", "method.params.rates=[0.5, 1.2]", "'method.params.rates[1]'"),
    ("table3/pass_p.yaml", "method.params.depth=0", "depth >= 1"),
    ("table3/skipconv.yaml", "method.params.thresholds=[0.1, -1]", "'method.params.thresholds[1]'"),
    ("table3/skipconv.yaml", "method.params.input_shape=[3, 0, 4]", "'method.params.input_shape'"),
    ("table3/dense_light.yaml", "task=track", "'task': 'track' is not one of: mot, pose"),
    ("table3/dense_light.yaml", "max_cpu_gmacs=0", "'max_cpu_gmacs'"),
    ("table3/dense_light.yaml", "train.lr=0", "'train.lr'"),
    ("table3/dense_light.yaml", "dataset.sequences=[../TUD-Campus]", "not a sequence name"),
    ("table3/dense_light.yaml", "dataset.sequences=[]", "names no sequence"),
    ("table1/mhp.yaml", "dataset.frames=[-1, 10]", "0 <= first"),
])
def test_config_values_are_refused_naming_key_and_override(config: str, override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / config, [override])
    assert needle in str(e.value) and f"override {override!r}" in str(e.value)


@pytest.mark.parametrize("config, override", [
    ("table3/skipconv.yaml", "method.params.threshold=5.0"),  # a norm gate's threshold is a norm, not a fraction
    ("table3/skipconv_gumbel.yaml", "method.params.tau=0.5"),  # skipconv forwards to the gumbel builder's tau
    ("table1/mhp.yaml", "dataset.frames=[0, 10]"),  # Human3.6M frame_idx is 0-based
    ("table3/dense_light.yaml", "method.params.execution=sparse"),  # wrapper params are fine on any row
    ("table3/pass_p.yaml", "method.params.operating_point={rate: 0.4, pairs: 8, allocation: uniform}"),
])
def test_valid_values_pass(config: str, override: str) -> None:
    load_config(CONFIGS / config, [override])


def test_value_error_in_a_file_names_that_file(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(f"_base_: {DENSE}\neval: {{iou_threshold: 2.0}}\n")
    top = tmp_path / "top.yaml"
    top.write_text("_base_: base.yaml\ntable: t\n")
    with pytest.raises(ConfigError, match=rf"{base}: key 'eval.iou_threshold'"):
        load_config(top)


# ----------------------------------------------------------------------------------------------
# frames: decoded completely, seqinfo.ini's size, the skip policy


def _image(tmp: Path, ext: str) -> tuple[Path, np.ndarray]:
    import cv2

    rgb = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    p = tmp / f"000001{ext}"
    cv2.imwrite(str(p), np.ascontiguousarray(rgb[:, :, ::-1]))
    return p, rgb


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_a_cut_image_is_refused_where_opencv_returns_a_partial_one(tmp_path: Path, ext: str) -> None:
    import cv2

    from passbench.datasets.video import FrameDecodeError, read_image

    p, rgb = _image(tmp_path, ext)
    whole = read_image(p, 1, (64, 48))
    assert np.array_equal(whole, np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1]))  # what OpenCV reads
    if ext == ".png":
        assert np.array_equal(whole, rgb)
    p.write_bytes(p.read_bytes()[:-20])
    if ext == ".jpg":  # OpenCV: no error, a partial image (its PNG reader fails on the cut file itself)
        partial = cv2.imread(str(p))
        assert partial is not None and partial.shape == (48, 64, 3)
    with pytest.raises(FrameDecodeError, match=rf"{p.name}: MOT frame 1 is truncated or corrupt"):
        read_image(p, 1, (64, 48))


def test_a_complete_jpeg_with_trailing_padding_is_read(tmp_path: Path) -> None:
    from passbench.datasets.video import FrameDecodeError, read_image

    p, _ = _image(tmp_path, ".jpg")
    want = read_image(p, 1)
    p.write_bytes(p.read_bytes() + b"\x00" * 7)
    assert np.array_equal(read_image(p, 1), want)
    with pytest.raises(FrameDecodeError, match=r"is 64x48 px but seqinfo.ini says imWidth=32, imHeight=48"):
        read_image(p, 1, (32, 48))


@needs_data
def test_a_video_frame_of_another_size_than_seqinfo_is_refused(tmp_path: Path) -> None:
    from passbench.datasets.mot import load_sequence
    from passbench.datasets.video import FrameDecodeError

    seq = tmp_path / "TUD-Campus"
    shutil.copytree(SAMPLE_DATA / "MOT15" / "train" / "TUD-Campus", seq)
    ini = seq / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("imWidth=640", "imWidth=641"))
    with pytest.raises(FrameDecodeError, match=r"TUD-Campus.mp4: MOT frame 1 is 640x480 px but .*seqinfo.ini says "
                                               r"imWidth=641"):
        next(load_sequence(str(seq)).frames(1, 3))


@needs_data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_skip_policy_leaves_the_bad_frame_out_and_lists_it(tmp_path: Path) -> None:
    from passbench.datasets.mot import load_sequence
    from passbench.datasets.video import FrameDecodeError

    seq = tmp_path / "MOT17-02-FRCNN"
    shutil.copytree(SAMPLE_DATA / "MOT17-mini" / "train" / "MOT17-02-FRCNN", seq)
    bad = seq / "img1" / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:5000])
    with pytest.raises(FrameDecodeError, match="000002.jpg"):
        list(load_sequence(str(seq)).frames(1, 4))
    s = load_sequence(str(seq), on_corrupt_frame="skip")
    assert [f for f, _ in s.frames(1, 4)] == [1, 3] and s.skipped_frames == [2]


# ----------------------------------------------------------------------------------------------
# weights integrity


def test_sha256sums_lines_binary_marker_and_malformed(tmp_path: Path) -> None:
    from passbench.models.integrity import WeightsFileError, check_sha256sums, file_sha256, listed_sha256

    f = tmp_path / "a.pt"
    f.write_bytes(b"weights")
    assert listed_sha256(f) is None and check_sha256sums(f) == file_sha256(f)  # no SHA256SUMS: not checked
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  other.pt\n{file_sha256(f)} *a.pt\n")
    assert check_sha256sums(f) == file_sha256(f)
    f.write_bytes(b"weightz")
    with pytest.raises(WeightsFileError, match=rf"a.pt: sha256 {file_sha256(f)} but .*SHA256SUMS says"):
        check_sha256sums(f)
    (tmp_path / "SHA256SUMS").write_text("xyz a.pt\n")
    with pytest.raises(WeightsFileError, match=r"SHA256SUMS:1: not a '<sha256>  <file>' line"):
        check_sha256sums(f)


def test_committed_weights_match_their_sha256sums() -> None:
    from passbench.models.integrity import check_sha256sums, listed_sha256

    files = sorted((REPO_ROOT / "weights").rglob("*.pt"))  # sample/, pose/, everyconv/<model>/
    assert {f.parent.name for f in files} >= {"sample", "pose"}
    for f in files:
        assert listed_sha256(f) is not None, f"{f} is not in its SHA256SUMS"
        check_sha256sums(f)


def test_delta_with_a_missing_base_names_it(tmp_path: Path) -> None:
    from passbench.models.integrity import WeightsFileError, load_checked

    shutil.copy2(REPO_ROOT / "weights" / "sample" / "pass_f.pt", tmp_path / "pass_f.pt")
    with pytest.raises(WeightsFileError, match=r"pass_f.pt: stores only what differs from its base pass_p.pt, which "
                                               r"is missing"):
        load_checked(tmp_path / "pass_f.pt")


def test_first_mismatch_names_the_first_offending_key() -> None:
    import torch

    from passbench.models.integrity import first_mismatch

    model = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(2)}
    assert first_mismatch(model, dict(model)) is None
    msg = first_mismatch(model, {"a.weight": torch.zeros(3, 3), "c": torch.zeros(1)})
    assert msg == ("1 shape mismatches, first a.weight: file (3, 3) vs model (2, 3); 1 model keys missing from the "
                   "file, first b.bias; 1 keys the model does not have, first c")


# ----------------------------------------------------------------------------------------------
# records: never appended after a bad line; the file's mode kept


def test_append_refuses_a_file_with_a_corrupted_line_and_leaves_it(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    R.append_record(f, fixture_run())
    f.write_text(f.read_text() + '{"schema": "passbench.reco\n')
    before = f.read_bytes()
    with pytest.raises(R.RecordError, match=r"t.jsonl:2: not valid JSON"):
        R.append_record(f, fixture_run())
    with pytest.raises(R.RecordError, match=r"t.jsonl:2"):
        R.check_file(f)
    assert f.read_bytes() == before


def test_append_keeps_the_files_mode_and_a_new_file_gets_the_umasks(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        new = R.append_record(tmp_path / "new.jsonl", fixture_run())
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        os.chmod(new, 0o640)
        R.append_record(new, fixture_run())
        assert stat.S_IMODE(new.stat().st_mode) == 0o640 and len(R.read_records(new)) == 2
    finally:
        os.umask(old)
