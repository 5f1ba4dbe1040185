"""passbench.runner on pose rows: the real-layout path, the synthetic path with skipping, skip markers,
and bad input (another model's checkpoint, a NaN prediction, a missing subject or action: a clear error
naming file and field, nothing written)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from passbench import records as R
from passbench.cli import main
from passbench.config import load_config
from passbench.datasets import h36m as H
from passbench.datasets import synthetic_h36m as G
from passbench.paths import REPO_ROOT, DataRootError
from passbench.pose.evaluate import PredictionError
from passbench.runner import run
from passbench.runner.pose import SYNTHETIC_DEFAULT, reproduce_root
from passbench.train.common import make_cfg, save_final

FAST = ["speed.enabled=false", "speed.threads=1"]
SMALL_MODEL = ["model.input_wh=[128,128]", "model.kwargs={input_hw: [128, 128]}"]


def _weights(path: Path, name: str = "mhp_lpski_w05", input_hw=(128, 128), nan: bool = False) -> Path:
    """A passbench.train final.pt of a pose model (random init: these tests check plumbing, not accuracy)."""
    from passbench.models import build_model

    torch.manual_seed(0)
    model = build_model(name, input_hw=input_hw)
    if nan:
        with torch.no_grad():
            model.backbone.final_layer.bias.fill_(float("nan"))
    cfg = make_cfg("task", {"task": "pose", "model": name, "model_kwargs": {"input_hw": list(input_hw)}})
    save_final(path, cfg=cfg, model=model, skip=None)
    return path


def _real_layout(root: Path, actions=tuple(range(2, 17))) -> Path:
    """A tiny root in the real 3DMPPE layout: generated, then stripped of every synthetic label."""
    G.generate(root, subjects=(9,), actions=actions, frames=2, cams=(1,), size=96)
    (root / "Human36M" / G.MARKER).unlink()
    ann = root / "Human36M" / "annotations" / "Human36M_subject9_data.json"
    d = json.loads(ann.read_text())
    del d["info"]
    ann.write_text(json.dumps(d))
    return root


def _cfg(name: str, *overrides: str):
    return load_config(REPO_ROOT / "configs" / name, list(overrides))


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    return _real_layout(tmp_path_factory.mktemp("real_layout"))


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    G.generate(root, subjects=(9,), actions=(3, 14), frames=66, cams=(1,), size=128)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return _weights(tmp_path_factory.mktemp("w") / "final.pt")


def test_real_layout_runs_unchanged_and_says_real(real, weights, tmp_path):
    """--data-root on a Human3.6M-layout root: every one of the 15 actions is scored, the record says real."""
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]")
    rec = run(cfg, data_root=real, results=tmp_path)
    ds, m = rec["dataset"], rec["metrics"]
    assert ds["name"] == "Human36M" and ds["synthetic"] is False and ds["protocol"] == "mhp-p2"
    assert not os.path.isabs(ds["data_root"]) and "fixed cameras" in ds["note"]
    assert set(m["per_action"]) == set(H.ACTION_NAMES) and m["frames"] == 15  # frame 0 of 15 videos
    assert np.isfinite(m["mpjpe_mm"]) and m["mpjpe_mm"] > 0 and np.isfinite(m["pa_mpjpe_mm"])
    # (what mpjpe_mm and pa_mpjpe_mm measure is worked by hand through the same Scores in test_pose_pipeline.py)
    assert m["pa_mpjpe_mm"] <= m["mpjpe_mm"] + 1e-9  # here a sanity bound only
    assert m["mpjpe_mm_later"] is None  # only first frames are scored here
    assert rec["cost"]["gmacs_executed"] == rec["cost"]["gmacs_dense"] and rec["model"]["tag"] == "trained"
    (again,) = R.read_records(tmp_path / "records" / "table1.jsonl")
    assert again["run_id"] == rec["run_id"]


def test_real_root_missing_an_action_or_subject_is_an_error_naming_the_file(tmp_path, weights):
    root = _real_layout(tmp_path / "partial", actions=tuple(range(2, 16)))  # no WalkTogether (16)
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]")
    with pytest.raises(H.H36MFormatError, match=r"Human36M_subject9_data\.json: subject 9 has no images of "
                                                r"action_idx 16 \(WalkTogether\) \(field 'action_idx'\)"):
        run(cfg, data_root=root, results=tmp_path / "res")
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}")  # S9 and S11
    with pytest.raises(DataRootError, match=r"Human36M_subject11_data\.json"):
        run(cfg, data_root=root, results=tmp_path / "res")
    # through the CLI: exit 2 (a root the user named lacks the row's data), nothing written
    argv = ["--results-dir", str(tmp_path / "res"), "run", str(REPO_ROOT / "configs/table1/mhp.yaml"), *FAST,
            *SMALL_MODEL, f"model.weights={weights}", "--data-root", str(root)]
    assert main(argv) == 2
    assert not (tmp_path / "res").exists()


def test_synthetic_streams_skip_per_camera_and_score_later_frames(syn, weights, tmp_path):
    """A floor baseline on the synthetic path: records say synthetic, frames 0 and 64 of each video are
    scored, each video is one stream (the skip counters see every frame run), skip rate per camera kind."""
    cfg = _cfg("table2/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]",
               "method.name=fixed", "method.params={keep: 0.5, seed: 0, patch_size: 4, refresh_every: null, "
               "layers: [backbone.final_layer, backbone.first_conv.0]}")
    rec = run(cfg, data_root=syn, results=tmp_path)
    ds, m, c = rec["dataset"], rec["metrics"], rec["cost"]
    assert ds["name"] == "synthetic_h36m" and ds["synthetic"] is True and "not Human3.6M" in ds["note"]
    assert ds["frames_run"] == 2 * 65 and c["frames"] == 2 * 65  # frames 0..64 of 2 videos (65 unused)
    assert m["frames"] == 4 and m["frames_all"] == 130 and set(m["per_camera"]) == {"fixed", "moving"}
    assert set(m["per_action"]) == {"Discussion", "Walking"}
    assert m["mpjpe_mm_later"] is not None
    for cam in ("fixed", "moving"):  # 64 of 65 frames gated, half of their patches skipped
        assert m["per_camera"][cam]["patch_skip_rate"] == pytest.approx(0.5 * 64 / 65, abs=0.02)
    assert c["gmacs_executed"] < c["gmacs_dense"]
    # the dense row on the same streams scores the same frames
    dense = run(_cfg("table2/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]"),
                data_root=syn, write=False)
    assert dense["metrics"]["frames_all"] == m["frames_all"] and dense["cost"]["patch_skip_rate"] == 0.0


def test_a_frame_range_and_an_action_subset(syn, weights):
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}",
               "dataset.sequences=[S9, Walking]", "dataset.frames=[0, 10]")
    rec = run(cfg, data_root=syn, write=False)
    assert set(rec["metrics"]["per_action"]) == {"Walking"} and rec["dataset"]["frames_run"] == 1
    assert rec["metrics"]["frames"] == 1  # only frame 0 is scored in 0..10: the stream stops there


def test_another_models_checkpoint_and_a_nan_prediction_write_nothing(syn, weights, tmp_path):
    other = _weights(tmp_path / "lpski_w1.pt", name="mhp_lpski")
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={other}", "dataset.sequences=[S9]")
    with pytest.raises(ValueError, match=r"lpski_w1\.pt: weights of model 'mhp_lpski', but model.name is 'mhp_lpski_w05'"):
        run(cfg, data_root=syn, results=tmp_path / "res")
    bad = _weights(tmp_path / "nan.pt", nan=True)
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={bad}", "dataset.sequences=[S9]")
    with pytest.raises(PredictionError, match=r"s_09_act_03_subact_01_ca_01_000001\.jpg: prediction field 'coords' "
                                              r"is nan"):
        run(cfg, data_root=syn, results=tmp_path / "res")
    assert not (tmp_path / "res").exists()


def test_skip_markers_say_why(syn, tmp_path):
    posenet = run(_cfg("table1/posenet.yaml", *FAST), data_root=syn, results=tmp_path)
    assert posenet["kind"] == "skipped" and "over this CPU budget (max_cpu_gmacs=2.0)" in posenet["reason"]
    movnect = run(_cfg("table1/movnect.yaml", *FAST), data_root=syn, results=tmp_path)
    assert movnect["kind"] == "skipped" and movnect["reason"].startswith("no trained weights for movnect")


def test_reproduce_falls_back_to_the_synthetic_preset_only_without_human36m(tmp_path, monkeypatch):
    from passbench import paths

    monkeypatch.delenv("PASSBENCH_DATA", raising=False)
    monkeypatch.setattr(paths, "SAMPLE_DATA", tmp_path)
    assert reproduce_root(None) == SYNTHETIC_DEFAULT
    (tmp_path / "Human36M").mkdir()
    assert reproduce_root(None) is None  # real data under the default root wins
    assert reproduce_root("/some/root") == "/some/root"
    monkeypatch.setenv("PASSBENCH_DATA", str(tmp_path))
    assert reproduce_root(None) is None


def test_reproduce_exits_2_listing_pose_rows_with_bad_input_and_keeps_the_skip_markers(tmp_path, capsys):
    """A root the user named that lacks a file: every runnable pose row is refused as bad input (listed,
    exit 2: the user's mistake, passbench.errors), nothing is recorded for them; the rows that cannot run
    here still get their skip markers."""
    root = _real_layout(tmp_path / "partial", actions=tuple(range(2, 16)))
    res = tmp_path / "res"
    assert main(["--results-dir", str(res), "reproduce", "1", *FAST, "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    failed = err.split("BAD INPUT: ")[1].splitlines()[0]
    assert {"table1/mhp", "table1/pass_f", "table1/pass_p", "table1/skipconv"} <= set(failed.split(", "))
    recs = R.read_records(res / "records")
    assert {r["experiment"] for r in recs} == {"table1/posenet", "table1/vnect", "table1/movnect"}
    assert all(r["kind"] == "skipped" for r in recs)


def test_table2_rows_reuse_the_table1_run_of_the_same_experiment(syn, weights, tmp_path, capsys):
    """reproduce 2 after reproduce 1: each Table 2 row is Table 1's run (same config but name and table,
    same data root, same weights) and its record is copied, saying so; other weights or another root
    are not the same run."""
    from passbench.runner import reuse

    over = [*FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]", "dataset.frames=[0, 10]"]
    t1 = run(_cfg("table1/mhp.yaml", *over), data_root=syn, results=tmp_path)
    cfg2 = _cfg("table2/mhp.yaml", *over)
    rec = reuse(cfg2, [t1], syn)
    assert rec["experiment"] == "table2/mhp" and rec["config"]["table"] == "table2" and rec["run_id"] != t1["run_id"]
    assert rec["reused_from"] == {"experiment": "table1/mhp", "run_id": t1["run_id"], "created_utc": t1["created_utc"]}
    assert rec["metrics"] == t1["metrics"] and rec["cost"] == t1["cost"]
    assert reuse(cfg2, [t1], tmp_path / "elsewhere") is None  # another data root
    other = _weights(tmp_path / "other.pt", input_hw=(128, 128))
    other.write_bytes(other.read_bytes() + b"\0")  # another file: another sha256
    assert reuse(_cfg("table2/mhp.yaml", *over[:-2], f"model.weights={other}", *over[-2:]), [t1], syn) is None
    assert reuse(_cfg("table2/mhp.yaml", *over, "speed.threads=2"), [t1], syn) is None  # another config
    # through the CLI: the copy is written to table2.jsonl and listed as ran
    capsys.readouterr()
    from passbench.cli import _run_missing, build_parser

    args = build_parser().parse_args(["--results-dir", str(tmp_path), "reproduce", "2", *over, "--data-root", str(syn)])
    out = _run_missing([REPO_ROOT / "configs/table2/mhp.yaml"], args)
    assert out.ran == ["table2/mhp"] and "the same run as table1/mhp" in capsys.readouterr().out
    (copied,) = R.read_records(tmp_path / "records" / "table2.jsonl")
    assert copied["reused_from"]["run_id"] == t1["run_id"]


def test_an_image_whose_size_differs_from_its_json_stops_the_row(tmp_path, weights):
    import cv2

    G.generate(tmp_path / "r", subjects=(9,), actions=(3,), frames=3, cams=(1,), size=128)
    img = next((tmp_path / "r" / "Human36M" / "images").rglob("*_000002.jpg"))
    cv2.imwrite(str(img), np.zeros((100, 128, 3), np.uint8))  # 128x100 px, the json says 128x128
    # VideoPose3D protocol #1 scores every frame, so the stream reads frame 2 (mhp-p2 would stop at frame 0)
    cfg = _cfg("table1/mhp.yaml", *FAST, *SMALL_MODEL, f"model.weights={weights}", "dataset.sequences=[S9]",
               "dataset.protocol=vp3d-p1")
    with pytest.raises(H.H36MFormatError, match=r"_000002\.jpg: image is 128x100 px but .*subject9_data\.json: "
                                                r"images\[1\] says width=128, height=128"):
        run(cfg, data_root=tmp_path / "r", results=tmp_path / "res")
    assert not (tmp_path / "res").exists()
