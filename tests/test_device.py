"""``--device`` / ``$PASSBENCH_DEVICE`` / ``--precision``: config overrides, checks, records, the CPU cap on the CPU
only, and a whole skipping row under autocast (bf16 on the CPU: the code path fp16 takes on a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from passbench import cli
from passbench import device as D
from passbench.config import load_config
from passbench.paths import REPO_ROOT
from passbench.runner import run

NO_CUDA = not torch.cuda.is_available()
MOT = ["dataset.sequences=[TUD-Stadtmitte]", "dataset.frames=[1,6]", "dataset.halves={}", "speed.enabled=false",
       "speed.threads=1"]


def test_overrides_precedence_and_errors(monkeypatch):
    monkeypatch.delenv(D.DEVICE_ENV, raising=False)
    assert D.overrides() == [] and D.overrides("cpu", "bf16") == ["speed.device=cpu", "speed.precision=bf16"]
    monkeypatch.setenv(D.DEVICE_ENV, "cpu")
    assert D.overrides() == ["speed.device=cpu"]
    with pytest.raises(D.DeviceError, match=r"--device: device 'gpu' is not cpu, cuda or cuda:N"):
        D.overrides("gpu")
    monkeypatch.setenv(D.DEVICE_ENV, "cuda:x")
    with pytest.raises(D.DeviceError, match=r"\$PASSBENCH_DEVICE: device 'cuda:x'"):
        D.overrides()
    with pytest.raises(D.DeviceError, match="precision 'fp8' is not one of fp32, fp16, bf16"):
        D.check_precision("fp8", "--precision")
    cfg = load_config(REPO_ROOT / "configs/table3/dense_light.yaml", ["speed.precision=fp64"])
    with pytest.raises(D.DeviceError, match=r"table3/dense_light: speed.precision: precision 'fp64'"):
        run(cfg, write=False)


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")
@pytest.mark.parametrize("argv", [
    ["run", "configs/table3/dense_light.yaml", "--device", "cuda"],
    ["reproduce", "3", "--device", "cuda:0"],
    ["figure", "5", "--run", "--device", "cuda"],
    ["regress", "--case", "dense", "--device", "cuda"],
    ["leaderboard", "add", "timm:resnet18", "--device", "cuda"],
])
def test_every_command_refuses_cuda_without_a_gpu(argv, tmp_path, capsys):
    assert cli.main(["--results-dir", str(tmp_path), *argv]) == 2
    assert "no CUDA device is available here" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is present")
def test_environment_variable_and_train_refuse_cuda_without_a_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(D.DEVICE_ENV, "cuda")
    assert cli.main(["--results-dir", str(tmp_path), "run", "configs/table3/dense_light.yaml"]) == 2
    assert "$PASSBENCH_DEVICE: device 'cuda': no CUDA device" in capsys.readouterr().err
    from passbench.train.__main__ import main as train_main

    with pytest.raises(SystemExit) as e:
        train_main(["task", "--out", str(tmp_path / "t"), "--device", "cuda", "steps=1"])
    assert e.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_train_env_on_the_cpu():
    from passbench.train.loop import train_env

    env = train_env("cpu")
    assert env.device == torch.device("cpu") and env.world == 1 and train_env(None) is None


def test_cpu_cap_applies_on_the_cpu_only():
    from passbench.runner.core import SkipRow, dense_gmacs

    cfg = load_config(REPO_ROOT / "configs/table3/dense_light.yaml", ["max_cpu_gmacs=0.0001"])
    net = torch.nn.Conv2d(3, 8, 3, padding=1)
    with pytest.raises(SkipRow, match="over this CPU budget"):
        dense_gmacs(cfg, net, torch.zeros(1, 3, 64, 64))
    gpu = load_config(REPO_ROOT / "configs/table3/dense_light.yaml", ["max_cpu_gmacs=0.0001", "speed.device=cuda"])
    assert dense_gmacs(gpu, net, torch.zeros(1, 3, 64, 64)) > 0.0001  # counted, not refused


def test_a_skipping_row_under_bf16_autocast_records_device_and_precision(tmp_path):
    """PASS-F with its gates on the block-sparse kernel, every forward under autocast: the row runs, the gates
    still decide (in float32), and the record says where and how it ran."""
    base = [*MOT, "method.params.execution=sparse"]
    fp32 = run(load_config(REPO_ROOT / "configs/table3/pass_f.yaml", base), write=False)
    rec = run(load_config(REPO_ROOT / "configs/table3/pass_f.yaml", [*base, "speed.precision=bf16"]), write=False)
    assert rec["kind"] == "run" and rec["config"]["speed"]["precision"] == "bf16"
    assert rec["speed"]["precision"] == "bf16 (autocast)" and rec["env"]["precision"] == "bf16 (autocast)"
    assert rec["env"]["device"].startswith("cpu") and "cuda" in rec["env"] and rec["env"]["torch"]
    assert 0.2 < rec["cost"]["patch_skip_rate"] < 0.5  # top-k rates: the same count of patches skipped
    assert rec["cost"]["patch_skip_rate"] == pytest.approx(fp32["cost"]["patch_skip_rate"], abs=1e-9)
    assert abs(rec["metrics"]["mota"] - fp32["metrics"]["mota"]) < 0.2


def test_prepared_model_lives_on_the_configured_device():
    from passbench.paths import find_data_root
    from passbench.runner.mot import prepare_model
    from passbench.runner.core import weights_path

    cfg = load_config(REPO_ROOT / "configs/table3/skipconv.yaml", [*MOT, "speed.device=cpu"])
    model, skippable, _, _ = prepare_model(cfg, find_data_root(None), weights_path(cfg))
    devs = {p.device for p in model.parameters()} | {b.device for b in model.buffers()}
    assert skippable and devs == {torch.device("cpu")}


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_a_skipping_row_on_cuda_fp16_matches_the_cpu(tmp_path):
    base = [*MOT, "method.params.execution=sparse"]
    cpu = run(load_config(REPO_ROOT / "configs/table3/pass_f.yaml", base), write=False)
    gpu = run(load_config(REPO_ROOT / "configs/table3/pass_f.yaml", [*base, "speed.device=cuda"]), write=False)
    half = run(load_config(REPO_ROOT / "configs/table3/pass_f.yaml", [*base, "speed.device=cuda",
                                                                       "speed.precision=fp16"]), write=False)
    assert gpu["env"]["device"].startswith("cuda") and gpu["env"]["cuda"]
    assert gpu["cost"]["patch_skip_rate"] == pytest.approx(cpu["cost"]["patch_skip_rate"], abs=1e-9)
    assert abs(gpu["metrics"]["mota"] - cpu["metrics"]["mota"]) < 0.02
    assert half["speed"]["precision"] == "fp16 (autocast)" and abs(half["metrics"]["mota"] - cpu["metrics"]["mota"]) < 0.1


def test_train_on_the_device_asked_for(tmp_path, capsys):
    from passbench.train.__main__ import main as train_main

    argv = ["task", "--out", str(tmp_path / "t"), "--device", "cpu", "model=passbench.train.tiny:tiny_fairmot",
            "sequences=[synthetic]", "steps=1", "batch_size=2", "input_wh=[64,48]", "pretrained=null"]
    assert train_main(argv) == 0
    assert (tmp_path / "t" / "final.pt").exists() and '"world": 1' in capsys.readouterr().out


def test_set_threads_holds_every_blas_pool_the_tracker_uses():
    # A fresh process: NumPy's and SciPy's own OpenBLAS (the tracker's Kalman filter) must both be held to
    # the row's threads, else a row declared as 1 CPU busy-waits on every core (docs/logs/executor/threads.log).
    code = (
        "import json, threadpoolctl\n"
        "from passbench.device import set_threads\n"
        "set_threads(1)\n"
        "import scipy.linalg, numpy\n"
        "print(json.dumps([(i['internal_api'], i['filepath'], i['num_threads']) for i in threadpoolctl.threadpool_info()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    pools = json.loads(out.splitlines()[-1])
    blas = [p for p in pools if p[0] in ("openblas", "mkl", "blis")]
    assert blas, pools
    assert all(p[2] == 1 for p in pools), pools
