"""The gate stages with the real ``passbench.skip`` engine on the tiny stand-in model."""

import pytest
import torch

pytest.importorskip("passbench.skip.wrapper")

from passbench.train.common import make_cfg, read_final  # noqa: E402
from passbench.train.pass_f import train_pass_f  # noqa: E402
from passbench.train.pass_p import train_pass_p  # noqa: E402
from passbench.train.skipconv import train_skipconv  # noqa: E402
from passbench.train.task import train_task  # noqa: E402
from tests.test_train_task import TINY, synthetic_store  # noqa: E402

SMALL_GATE = {"embed_dim": 8, "depth": 1, "hidden": 16, "min_patches": 2}  # 4x3 and 2x2 grids here


def cfg(stage, **kw):
    base = dict(model=TINY, pretrained=None, input_wh=[64, 48], steps=4, batch_size=2, log_every=1, ckpt_every=2,
                scale_jitter=0.0, patch_size=8)
    base.update(kw)
    return make_cfg(stage, base)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("engine")
    stores = [synthetic_store(n=8)]
    task = train_task(cfg("task", lr=1e-2), tmp / "task", stores=stores)["final"]
    pp = train_pass_p(cfg("pass_p", init=str(task), method="pass_p", skip_params=SMALL_GATE, lr=1e-2),
                      tmp / "pp", stores=stores)
    pf = train_pass_f(cfg("pass_f", init=str(pp["final"]), method="pass_f", lr=1e-2), tmp / "pf", stores=stores)
    return tmp, stores, task, pp, pf


def _m(path):
    return read_final(path)  # merged with its base chain (pass_p / pass_f store deltas)


def _wrapped(key, after):
    """A dense key ``a.b.weight`` lives at ``a.b.conv.weight`` once ``a.b`` is a SkipConv2d."""
    head, _, leaf = key.rpartition(".")
    alt = f"{head}.conv.{leaf}"
    return alt if alt in after else key


def test_pass_p_real_engine_moves_only_gates(chain):
    _, _, task, pp, _ = chain
    before, after = _m(task)["model"], _m(pp["final"])["model"]
    assert _m(pp["final"])["skip"]["method"] == "pass_p"
    gate_keys = {k for k in after if ".gate." in k}
    assert {_wrapped(k, after) for k in before} == set(after) - gate_keys
    for k, v in before.items():  # every backbone tensor (weights and BN buffers) bit-identical
        assert torch.equal(after[_wrapped(k, after)], v), k
    # the gates moved away from their initial values (rebuilt with the same seed as the run)
    from passbench.train.build import build_stage_model
    from passbench.train.common import seed_all

    c = cfg("pass_p", init=str(task), method="pass_p", skip_params=SMALL_GATE, lr=1e-2)
    seed_all(c.seed)
    init = build_stage_model(c, skippable=True)[0].state_dict()
    assert any(not torch.equal(init[k], after[k]) for k in gate_keys)
    h = pp["history"][-1]
    assert 0.0 <= h["skip_rate"] <= 1.0 and 0.0 <= h["skip_prob"] <= 1.0


def test_pass_f_real_engine_freezes_gates(chain):
    _, _, _, pp, pf = chain
    a, b = _m(pp["final"]), _m(pf["final"])
    assert b["skip"]["method"] == "pass_f" and a["model"].keys() == b["model"].keys()
    gate = [k for k in a["model"] if ".gate." in k]
    assert gate and all(torch.equal(a["model"][k], b["model"][k]) for k in gate)
    convs = [k for k in a["model"] if k.endswith("conv.weight") and ".gate." not in k]
    assert convs and any(not torch.equal(a["model"][k], b["model"][k]) for k in convs)


def test_skipconv_norm_calibration_real_engine(chain):
    tmp, stores, task, _, _ = chain
    res = train_skipconv(cfg("skipconv", init=str(task), method="skipconv", skip_params={"gate": "norm"},
                             target_rate=0.4, calib_pairs=4, calib="per_layer"), tmp / "sc", stores=stores)
    assert res["skip_rate"] == pytest.approx(0.4, abs=0.1)


def test_skipconv_gumbel_real_engine_trains_with_budget(chain):
    tmp, stores, task, _, _ = chain
    res = train_skipconv(cfg("skipconv", init=str(task), method="skipconv", skip_params={"gate": "gumbel"},
                             lr=1e-2, budget_weight=1.0, target_rate=0.5), tmp / "scg", stores=stores)
    last = res["history"][-1]
    assert {"budget", "skip_prob", "skip_rate", "hm", "id"} <= set(last)
    # fresh Gumbel gates compute ~95 % of patches (bias 3): after 4 steps every layer still fires above the
    # allowed 50 %, so the budget hinge is active and bounded by the largest excess, 1 - 0.5
    assert last["skip_prob"] < 0.5 and 0.0 < last["budget"] <= 0.5
    assert _m(res["final"])["skip"]["params"]["gate"] == "gumbel" and 0.0 <= res["skip_rate"] <= 1.0


def test_gumbel_gates_train_at_their_own_learning_rate(chain):
    tmp, stores, task, _, _ = chain
    moved = {}
    for scale in (1.0, 100.0):
        res = train_skipconv(cfg("skipconv", init=str(task), method="skipconv", skip_params={"gate": "gumbel"},
                                 lr=1e-4, steps=2, gate_lr_scale=scale), tmp / f"glr{scale}", stores=stores)
        after = _m(res["final"])["model"]
        moved[scale] = max(abs(float(after[k]) - 3.0) for k in after if k.endswith("gate.proj.bias"))  # init 3.0
    assert moved[100.0] > 20 * moved[1.0] > 0, moved
