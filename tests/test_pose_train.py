"""passbench.train with task=pose: the stage config, the training samples (crops as the stream sees
them), the coordinate L1, and the MOT stages' code running a pose model end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from passbench.datasets import h36m as H
from passbench.datasets import synthetic_h36m as G
from passbench.pose.crop import crop_image
from passbench.pose.decode import MapSpec
from passbench.pose.samples import CoordL1Loss, PoseSamples
from passbench.train.common import TASK_DEFAULTS, StageCfg, cfg_dict, config_diff, make_cfg, read_final

SPEC = MapSpec((128, 128), (16, 16), 32)  # mhp_lpski_w05 at 128x128
SMALL = {"model": "mhp_lpski_w05", "model_kwargs": {"input_hw": [128, 128]}, "input_wh": [128, 128],
         "sequences": ["S1"], "steps": 3, "batch_size": 2, "log_every": 1, "ckpt_every": 3, "threads": 1}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # Discussion (fixed camera) and Walking (moving camera): training frames 0, 5, 10 of 12 (stride 5).
    r = tmp_path_factory.mktemp("pose_train")
    G.generate(r, subjects=(1,), actions=(3, 14), frames=12, cams=(1,), size=128)
    return r


def test_stage_config_task_defaults_and_errors():
    c = make_cfg("task", {"task": "pose"})
    assert c.task == "pose" and c.model == "mhp_lpski" and c.pretrained is None and c.input_wh == (256, 256)
    assert c.sequences == ("S1", "S5", "S6", "S7", "S8") and c.heads == ("heatmaps", "coords")
    assert c.data_root == TASK_DEFAULTS["pose"]["data_root"]
    # the MOT defaults are untouched, overrides win over the task defaults
    assert make_cfg("task") == make_cfg("task", {"task": "mot"}) and make_cfg("task").heads == ("hm", "wh", "reg", "id")
    assert make_cfg("pass_p", ["task=pose", "heads=[coords]"]).heads == ("coords",)
    with pytest.raises(ValueError, match="'task'"):
        make_cfg("task", {"task": "detection"})


def test_checkpoints_written_before_the_task_field_still_resume():
    cfg = make_cfg("pass_p", {"steps": 5})
    saved = cfg_dict(cfg)
    del saved["task"]  # a last.pt from before the field existed
    assert config_diff(saved, cfg) == []
    assert config_diff(saved, make_cfg("pass_p", {"steps": 5, "task": "pose"}))  # a real change is still one


def test_training_subjects_exclude_the_test_subjects(root):
    cfg = make_cfg("task", {**SMALL, "task": "pose", "data_root": str(root), "sequences": ["S1", "S9"]})
    with pytest.raises(ValueError, match="test subjects"):
        PoseSamples.from_stage(cfg, SPEC, pairs=False, flip=False, scale_jitter=0.0)
    cfg = make_cfg("task", {**SMALL, "task": "pose", "data_root": str(root), "sequences": ["9"]})
    with pytest.raises(ValueError, match="sequences"):
        PoseSamples.from_stage(cfg, SPEC, pairs=False, flip=False, scale_jitter=0.0)


def test_samples_are_the_protocol_training_frames_and_pairs_are_cropped_as_the_stream_sees_them(root):
    data = H.Human36M(root, "mhp-p2", "train", subjects=(1,), input_hw=(128, 128))
    frames = PoseSamples(data, SPEC, pairs=False, flip=False)
    assert [(s, j) for s, j in frames.items] == [(0, 0), (0, 5), (0, 10), (1, 0), (1, 5), (1, 10)]
    pairs = PoseSamples(data, SPEC, pairs=True, flip=False)
    assert pairs.items == [(0, 5), (0, 10), (1, 5), (1, 10)]  # frame 0 has no previous frame
    walking = list(data)[1]
    assert walking.moving  # moving camera: the person's box moves between frames
    item = pairs.get(3, np.random.default_rng(0))
    prev, cur = walking[9], walking[10]
    assert not np.allclose(prev.bbox_processed, cur.bbox_processed)
    want_prev = crop_image(prev.image(), prev.bbox_processed, (128, 128))  # its own box, not frame 10's
    got = (item["prev"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, want_prev)
    np.testing.assert_array_equal((item["img"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                                  crop_image(cur.image(), cur.bbox_processed, (128, 128)))
    assert item["target"].shape == (18, 3) and item["vis"].shape == (18,)
    # a flip mirrors both frames of the pair and swaps the joints' sides (x_patch -> W_in - x_patch exactly:
    # crop_affine mirrors the box centre with the image, so in output units x -> W_out - x)
    flipped = PoseSamples(data, SPEC, pairs=True, flip=True)
    seed = next(k for k in range(50) if np.random.default_rng(k).random() < 0.5)
    f = flipped.get(3, np.random.default_rng(seed))
    for key, fr in (("prev", prev), ("img", cur)):
        want = crop_image(fr.image(), fr.bbox_processed, (128, 128), flip=True)
        np.testing.assert_array_equal((f[key].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), want)
    r_hip, l_hip = H.JOINT_NAMES.index("R_Hip"), H.JOINT_NAMES.index("L_Hip")
    torch.testing.assert_close(f["target"][r_hip, 0], SPEC.output_hw[1] - item["target"][l_hip, 0])
    torch.testing.assert_close(f["target"][r_hip, 1:], item["target"][l_hip, 1:])


def test_coord_l1_loss_module_is_upstreams_l1():
    out = {"coords": torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])}
    batch = {"target": torch.tensor([[[2.0, 2.0, 1.0], [9.0, 9.0, 9.0]]]), "vis": torch.tensor([[1.0, 0.0]])}
    loss, logs = CoordL1Loss()(out, batch)
    # joint 0: (1 + 0 + 2) / 3 = 1; joint 1 invisible: 0; mean over joints = 0.5
    assert float(loss) == pytest.approx(0.5) and logs["coord_l1"] == pytest.approx(0.5)


def test_task_pass_p_pass_f_skipconv_run_a_pose_model(root, tmp_path):
    """The MOT stages' code trains MHP: the task loss falls, PASS-P stores per-layer rates, PASS-F keeps the
    gates, Skip-Conv calibrates thresholds; every final.pt names the pose model."""
    from passbench.train.pass_f import train_pass_f
    from passbench.train.pass_p import train_pass_p
    from passbench.train.skipconv import train_skipconv
    from passbench.train.task import train_task

    base = {**SMALL, "task": "pose", "data_root": str(root), "patch_size": 4}
    torch.manual_seed(0)
    task = train_task(make_cfg("task", {**base, "steps": 12, "lr": 3e-3, "flip": False, "scale_jitter": 0.0}),
                      tmp_path / "task")
    losses = [h["coord_l1"] for h in task["history"]]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses
    layers = ["backbone.first_conv.0", "backbone.final_layer"]
    pp = train_pass_p(make_cfg("pass_p", {**base, "init": str(task["final"]), "calib_pairs": 2,
                                          "skip_params": {"embed_dim": 8, "hidden": 16, "layers": layers}}),
                      tmp_path / "pp")
    assert len(pp["rates"]) == 2 and all(0.0 < r < 1.0 for r in pp["rates"])
    pf = train_pass_f(make_cfg("pass_f", {**base, "init": str(pp["final"]), "steps": 2, "method": "pass_f"}), tmp_path / "pf")
    sc = train_skipconv(make_cfg("skipconv", {**base, "init": str(task["final"]), "calib_pairs": 2, "method": "skipconv",
                                              "skip_params": {"gate": "norm", "layers": layers}}), tmp_path / "sc")
    assert len(sc["thresholds"]) == 2
    for f in (task["final"], pp["final"], pf["final"], sc["final"]):
        ck = read_final(f)
        assert ck["model_name"] == "mhp_lpski_w05" and ck["config"]["task"] == "pose"
    assert read_final(pf["final"])["skip"]["params"]["rates"] == pp["rates"]


def test_stage_cfg_default_task_is_mot():
    assert StageCfg().task == "mot"
