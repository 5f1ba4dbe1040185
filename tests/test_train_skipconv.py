"""Skip-Conv gate fitting: norm-gate threshold calibration hits the target rate; Gumbel gates train."""

import numpy as np
import pytest
import torch

from passbench.train.skipconv import train_skipconv
from tests.test_train_gates import cfg, engine, task_final  # noqa: F401 - fixtures
from tests.test_train_task import synthetic_store


def noisy_store(n=8):
    s = synthetic_store(n=n)
    rng = np.random.default_rng(1)
    s.images = np.clip(s.images.astype(int) + rng.integers(-20, 20, s.images.shape), 0, 255).astype(np.uint8)
    return s


@pytest.mark.parametrize("target", [0.25, 0.6])
def test_norm_gate_calibration_hits_target(engine, tmp_path, task_final, target):  # noqa: F811
    res = train_skipconv(cfg("skipconv", init=str(task_final), method="skipconv", skip_params={"gate": "norm"},
                             target_rate=target, calib_pairs=4, batch_size=2, flip=False, calib="per_layer"),
                         tmp_path / f"sc{target}", stores=[noisy_store()])
    assert res["history"] == [] and len(res["thresholds"]) == 3
    # Quantile thresholds on the calibration pairs: measured rate within patch-count granularity.
    assert res["skip_rate"] == pytest.approx(target, abs=0.05)
    final = torch.load(res["final"], weights_only=False)
    assert final["skip"]["params"]["thresholds"] == res["thresholds"]


def test_gumbel_gates_train_with_task_loss(engine, tmp_path, task_final):  # noqa: F811
    res = train_skipconv(cfg("skipconv", init=str(task_final), method="skipconv", lr=5e-2, steps=4,
                             budget_weight=5.0, target_rate=0.5), tmp_path / "g", stores=[synthetic_store(n=8)])
    before = torch.load(task_final, weights_only=False)["model"]
    after = torch.load(res["final"], weights_only=False)["model"]
    gates = [k for k in after if ".gate." in k]
    assert gates and any(not torch.equal(after[k], torch.zeros_like(after[k])) for k in gates)
    # every gate learned from the task + budget loss: each bias left its constant init (GumbelGate init_bias 3.0;
    # Adam moves a parameter only where its gradient was non-zero)
    biases = [k for k in gates if k.endswith(".gate.proj.bias")]
    assert biases and all(float(after[k].flatten()[0]) != 3.0 for k in biases), {k: after[k] for k in biases}
    assert not torch.equal(after["hm.weight"], before["hm.weight"])  # backbone trained jointly
    assert {"hm", "id", "skip_prob", "skip_rate"} <= set(res["history"][-1])


def test_global_threshold_bisection(engine, tmp_path, task_final):  # noqa: F811
    from passbench.train.build import build_stage_model
    from passbench.train.skipconv import calibrate_norm_thresholds, measured_skip_rate

    model, _, _ = build_stage_model(cfg("skipconv", init=str(task_final), method="skipconv",
                                        skip_params={"gate": "norm"}), skippable=True)
    model.eval()
    x = torch.from_numpy(noisy_store().images).permute(0, 3, 1, 2).float() / 255
    pairs = [(x[0:2], x[1:3]), (x[3:5], x[4:6])]
    th = calibrate_norm_thresholds(model, pairs, 0.4, per_layer=False)
    assert len(set(th)) == 1 and measured_skip_rate(model, pairs) == pytest.approx(0.4, abs=0.05)
