"""Task training: loss goes down on a fixed batch, resume == uninterrupted, mismatches are clear errors."""

import numpy as np
import pytest
import torch

from passbench.train.common import CheckpointMismatchError, make_cfg, read_final
from passbench.train.data import FrameStore, MotSamples, StepBatches
from passbench.train.data import synthetic_store as _synthetic
from passbench.train.losses import FairMOTLoss
from passbench.train.task import TaskObjective, train_task
from passbench.train.tiny import tiny_fairmot

TINY = "passbench.train.tiny:tiny_fairmot"


def synthetic_store(name="SYN", n=6, wh=(64, 48), seed=0) -> FrameStore:
    return _synthetic(name, n, wh, seed)


def tiny_cfg(**kw):
    base = dict(model=TINY, pretrained=None, input_wh=[64, 48], steps=6, batch_size=2, lr=1e-2, log_every=1,
                ckpt_every=3, scale_jitter=0.0)
    base.update(kw)
    return make_cfg("task", base)


def test_steps_lower_loss_on_fixed_batch():
    torch.manual_seed(0)
    samples = MotSamples([synthetic_store()], pairs=False, flip=False, scale_jitter=0.0)
    batch = StepBatches(samples, 4, seed=0)(0)
    obj = TaskObjective(tiny_fairmot(), FairMOTLoss(samples.num_ids))
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss, _ = obj(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_resume_equals_uninterrupted(tmp_path):
    stores = [synthetic_store()]
    full = train_task(tiny_cfg(), tmp_path / "full", stores=stores)["history"]
    train_task(tiny_cfg(), tmp_path / "cut", stores=stores, stop_at=3)  # interrupted after step 3
    assert not (tmp_path / "cut" / "final.pt").exists()
    rest = train_task(tiny_cfg(), tmp_path / "cut", stores=stores)["history"]
    assert [r["step"] for r in rest] == [3, 4, 5]
    assert [r["loss"] for r in rest] == [r["loss"] for r in full[3:]]  # bit-identical
    final = read_final(tmp_path / "full" / "final.pt")
    assert final["model_name"] == TINY and final["extra"]["num_ids"] == 2


def test_mismatched_checkpoint_is_clear_error(tmp_path):
    stores = [synthetic_store()]
    train_task(tiny_cfg(steps=3), tmp_path / "run", stores=stores)
    with pytest.raises(CheckpointMismatchError, match=r"last\.pt: config differs.*lr: checkpoint 0\.01 != now 0\.005"):
        train_task(tiny_cfg(lr=5e-3), tmp_path / "run", stores=stores)
    # weights of another architecture as init -> names the file and the mismatching tensors
    with pytest.raises(CheckpointMismatchError, match=r"final\.pt: model weights does not match.*shape mismatches body\.0\.bias: file \(16,\) vs model \(8,\)"):
        train_task(tiny_cfg(model_kwargs={"width": 8}, init=str(tmp_path / "run" / "final.pt")), tmp_path / "run2", stores=stores)
    # a file that is not a checkpoint
    (tmp_path / "run3").mkdir()
    (tmp_path / "run3" / "last.pt").write_text("garbage")
    with pytest.raises(CheckpointMismatchError, match=r"run3/last\.pt: not a readable checkpoint"):
        train_task(tiny_cfg(), tmp_path / "run3", stores=stores)


def test_unknown_or_mistyped_key():
    with pytest.raises(ValueError, match="unknown training key 'stepz'"):
        make_cfg("task", ["stepz=3"])
    with pytest.raises(ValueError, match="key 'steps': expected an integer"):
        make_cfg("task", ["steps=abc"])
    assert make_cfg("task", ["input_wh=[192, 128]"]).input_wh == (192, 128)
    with pytest.raises(ValueError, match=r"^key 'margin': distance 'l2' needs a margin > 0, got 0.0$"):
        make_cfg("pass_p", ["distance=l2", "margin=0.0"])
    assert make_cfg("pass_p", ["distance=mse", "margin=0.0"]).margin == 0.0  # a hinge at 0 is fine there


def test_torchrun_two_processes(tmp_path):
    """``torchrun --nproc_per_node 2`` (gloo, CPU) runs the same CLI; rank 0 writes; resume works across it."""
    import json
    import os
    import subprocess
    import sys

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "passbench.train", "task", "--out", str(tmp_path / "ddp"),
           f"model={TINY}", "sequences=[synthetic]", "steps=4", "batch_size=4", "input_wh=[64,48]", "ckpt_every=2", "log_every=1",
           "pretrained=null"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd + ["--stop-at", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["world"] == 2 and summary["steps_run"] == 2 and summary["last"]["step"] == 3
    assert (tmp_path / "ddp" / "final.pt").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3]  # rank 0 logged every step once, across the interruption
