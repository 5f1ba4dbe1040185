"""The paper's own setting (configs/paper/, docs/paper-scale.md) on the CPU with the same code: configs, an
official-layout FairMOT checkpoint named by ``${FAIRMOT_DLA34}``, importing official checkpoints as the
first ``final.pt`` of a training chain, and the training script's recipe against the time estimates."""

from __future__ import annotations

import re

import pytest
import torch

from passbench.cli import main
from passbench.config import find_configs, load_config, to_dict
from passbench.paths import REPO_ROOT
from passbench.runner import reuse, run

PAPER = REPO_ROOT / "configs" / "paper"
MINI = ["dataset.name=MOT17-mini", "dataset.sequences=[MOT17-02-FRCNN]", "dataset.halves={}",
        "model.input_wh=[256,160]", "max_cpu_gmacs=null", "speed.enabled=false", "speed.threads=1"]


def test_paper_configs_are_the_papers_setting():
    t3 = find_configs("paper/table3")
    assert {p.stem for p in t3} == {"fairmot_dla34", "pass_p", "pass_f", "skipconv", "skipconv_gumbel", "keyframe",
                                   "random_skip", "dla34", "hrnet_w32", "regnety_040", "fpn_resnet34", "hardnet85"}
    for p in t3:
        cfg = load_config(p)
        assert cfg.table == "table3" and cfg.dataset.name == "MOT17" and tuple(cfg.model.input_wh) == (1088, 608)
        assert len(cfg.dataset.sequences) == 7 and set(cfg.dataset.halves.values()) == {"val"}
        assert cfg.eval.conf_threshold == 0.4 and cfg.max_cpu_gmacs == 10.0
        four = load_config(PAPER / "table4" / p.name)  # Table 4 = the same runs per scene
        drop = lambda d: {k: v for k, v in d.items() if k not in ("name", "table")}  # noqa: E731
        assert four.table == "table4" and drop(to_dict(four)) == drop(to_dict(cfg))
    assert load_config(PAPER / "table3/fairmot_dla34.yaml").model.weights == "${FAIRMOT_DLA34}"
    for p in find_configs("paper/table1"):
        cfg = load_config(p)
        assert cfg.eval.flip_test and cfg.model.kwargs["input_range"] == 255 and cfg.dataset.protocol == "mhp-p2"
    assert {tuple(load_config(p).model.input_wh) for p in find_configs("paper/figure5")} == {(576, 320), (864, 480)}


def test_official_fairmot_checkpoint_by_environment_variable(tmp_path, monkeypatch, capsys):
    from passbench.models import build_model
    from passbench.models.checkpoint import save_fairmot_checkpoint

    torch.manual_seed(0)
    ckpt = save_fairmot_checkpoint(build_model("fairmot_dla34"), tmp_path / "fairmot_dla34.pth", epoch=30)
    cfg_path = PAPER / "table3/fairmot_dla34.yaml"
    monkeypatch.delenv("FAIRMOT_DLA34", raising=False)
    assert main(["--results-dir", str(tmp_path / "r"), "run", str(cfg_path), *MINI]) == 2
    assert "environment variable FAIRMOT_DLA34 is not set" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv("FAIRMOT_DLA34", str(ckpt))
    rec = run(load_config(cfg_path, MINI), write=False)
    import hashlib

    assert rec["kind"] == "run" and rec["config"]["model"]["weights"] == "${FAIRMOT_DLA34}"  # no machine path
    assert rec["model"]["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert rec["dataset"]["name"] == "MOT17-mini" and rec["env"]["precision"] == "fp32"
    # Table 4's row is this run reported per scene: reproduce copies it instead of running again
    four = load_config(PAPER / "table4/fairmot_dla34.yaml", MINI)
    copied = reuse(four, [rec])
    assert copied is not None and copied["reused_from"]["run_id"] == rec["run_id"]


def test_import_official_checkpoints_as_the_first_final_pt(tmp_path):
    from passbench.models import build_model
    from passbench.models.checkpoint import save_fairmot_checkpoint
    from passbench.runner.pose import check_input_range
    from passbench.train.common import read_final
    from passbench.train.official import import_checkpoint
    from passbench.train.official import main as official_main

    torch.manual_seed(1)
    net = build_model("fairmot_dla34_conv")
    src = save_fairmot_checkpoint(net, tmp_path / "all_dla34.pth")
    final = import_checkpoint(src, "fairmot_dla34_conv", tmp_path / "task", input_wh=(1088, 608))
    ck = read_final(final)
    want = net.state_dict()
    assert ck["model_name"] == "fairmot_dla34_conv" and ck["skip"] is None and ck["input_wh"] == [1088, 608]
    assert set(ck["model"]) == set(want) and all(torch.equal(ck["model"][k], want[k]) for k in want)
    assert ck["extra"]["source"]["kind"] == "fairmot" and len(ck["extra"]["source"]["dropped_unused"]) == 14
    # an upstream MobileHumanPose snapshot: its input arithmetic travels with the imported weights
    pose = build_model("mhp_lpski_w05")
    snap = tmp_path / "snapshot_24.pth.tar"
    torch.save({"epoch": 24, "network": {f"module.{k}": v for k, v in pose.state_dict().items()}}, snap)
    assert official_main([str(snap), "--model", "mhp_lpski_w05", "--out", str(tmp_path / "pose")]) == 0
    pf = read_final(tmp_path / "pose" / "final.pt")
    assert pf["model_kwargs"] == {"input_range": 255} and pf["config"]["task"] == "pose"
    cfg = load_config(PAPER / "table1/mhp.yaml", ["model.name=mhp_lpski_w05"])
    check_input_range(cfg, tmp_path / "pose" / "final.pt")  # 255 and 255: fine
    with pytest.raises(ValueError, match="trained with input_range 255, but model.kwargs.input_range is 1"):
        check_input_range(load_config(REPO_ROOT / "configs/table1/mhp.yaml"), tmp_path / "pose" / "final.pt")
    assert official_main([str(tmp_path / "missing.pth"), "--model", "mhp_lpski", "--out", str(tmp_path / "x")]) == 2


def test_training_script_matches_the_time_estimates():
    """docs/paper-scale.md's estimated times come from scripts/paper_estimates.py, whose steps and batch sizes
    must be those scripts/train_paper.sh trains with."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("paper_estimates", REPO_ROOT / "scripts/paper_estimates.py")
    est = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(est)
    sh = (REPO_ROOT / "scripts/train_paper.sh").read_text()

    def arm(stage: str) -> str:  # the case arm (up to ';;') whose label lists the stage
        for chunk in sh.split(";;"):
            m = re.search(r"^\s*([\w|]+)\)", chunk, re.M)
            if m and stage in m.group(1).split("|"):
                return chunk
        raise AssertionError(f"no stage {stage} in scripts/train_paper.sh")

    for stage, _, steps, batch, _ in est.TRAIN:
        assert f"steps={steps}" in arm(stage) and f"batch_size={batch}" in arm(stage), stage
