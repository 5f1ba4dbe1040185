"""Operating points: every method's knob moves it to the target skip rate (matched-rate comparisons)."""

import math

import pytest
import torch
from torch import nn

from passbench import skip
from passbench.train import skiputil as sk
from passbench.train.operating_point import knob_kind, set_operating_point
from passbench.train.skipconv import measured_skip_rate


def _model(method, **params):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                      nn.Conv2d(8, 4, 3, padding=1))
    skip.make_skippable(m, method, patch_size=4, **params)
    if method == "skipconv_gumbel":  # spread the untrained gates' probabilities so that a threshold can split them
        for g in skip.gate_parameters(m):
            nn.init.normal_(g, std=1.0)
    return m.eval()


def _pairs(n=3):
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(n):
        a = torch.rand(2, 3, 32, 32, generator=g)
        amount = torch.linspace(0.0, 1.0, 32).view(1, 1, 32, 1) * torch.linspace(0.1, 1.0, 32).view(1, 1, 1, 32)
        b = a + amount * torch.rand(2, 3, 32, 32, generator=g)  # every patch changes, each by its own amount
        out.append((a, b))
    return out


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_pass_rate_is_exact_per_layer(rate):
    m = _model("pass_p", embed_dim=8, hidden=8, rates=0.5)
    knob = set_operating_point(m, "pass_p", {}, rate, None)
    assert knob["knob"] == "rates" and knob["value"] == pytest.approx([rate] * 3)  # equal trained rates: uniform
    x0, x1 = _pairs(1)[0]
    with torch.no_grad():
        sk.prime(m, x0)
        sk.set_mask_mode(m, "normal")
        m(x1)
    for layer in sk.pass_layers(m):  # 8x8 grid, 64 patches
        assert float(layer.last.mask.mean()) == pytest.approx(round(rate * 64) / 64)


@pytest.mark.parametrize("method,params,kind", [
    ("skipconv", {"gate": "norm"}, "norm"),
    ("skipconv_gumbel", {}, "gumbel"),
])
@pytest.mark.parametrize("rate", [0.25, 0.6])
def test_calibrated_knobs_hit_the_rate_on_their_pairs(method, params, kind, rate):
    m = _model(method, **params)
    pairs = _pairs()
    knob = set_operating_point(m, method, params, rate, pairs)
    assert knob_kind(method, params) == kind and knob["knob"] in ("thresholds", "threshold")
    assert measured_skip_rate(m, pairs) == pytest.approx(rate, abs=0.05)


def test_random_and_keyframe_knobs():
    m = _model("fixed", keep=0.5)
    assert set_operating_point(m, "fixed", {}, 0.7, None) == {"knob": "keep", "value": pytest.approx(0.3)}
    assert all(layer.gate.keep == pytest.approx(0.3) for _, layer in skip.skippable_layers(m))
    m = _model("keyframe")
    set_operating_point(m, "keyframe", {}, 0.75, None)
    x0, x1 = _pairs(1)[0]
    rates = []
    with torch.no_grad(), skip.skip_session(m):
        m(x0)
        for _ in range(8):
            m(x1)
            rates.append(float(skip.skippable_layers(m)[0][1].last.mask.mean()))
    assert rates == [1.0, 1.0, 1.0, 0.0] * 2


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no skip-rate knob"):
        knob_kind("dense", {})
    m = _model("skipconv", gate="norm")
    with pytest.raises(ValueError, match="training pairs"):
        set_operating_point(m, "skipconv", {"gate": "norm"}, 0.5, None)
    with pytest.raises(ValueError, match="rate must be in"):
        set_operating_point(m, "skipconv", {}, 1.5, _pairs(1))


def test_skipconv_knob_follows_the_model_gates():
    # a Skip-Conv checkpoint may carry gate: gumbel in its own spec while the config's params say nothing
    m = _model("skipconv_gumbel")
    assert knob_kind("skipconv", {}, m) == "gumbel" and knob_kind("skipconv", {}) == "norm"
    knob = set_operating_point(m, "skipconv", {}, 0.4, _pairs())
    assert knob["knob"] == "threshold"


def test_pass_knob_keeps_the_learned_allocation():
    from passbench.train.operating_point import scaled_rates

    r = scaled_rates([0.2, 0.4, 0.0, 0.6], 0.2)
    assert r[2] == 0.0 and r[1] == pytest.approx(2 * r[0]) and r[3] == pytest.approx(3 * r[0])
    assert sum(r) / 3 == pytest.approx(0.2)
    hi = scaled_rates([0.2, 0.4, 0.6], 0.8)  # the largest caps at 1, the others take up the rest
    assert max(hi) == pytest.approx(1.0) and sum(hi) / 3 == pytest.approx(0.8, abs=1e-6) and hi[0] < hi[1]


def test_pass_logit_allocation_keeps_the_order_and_never_saturates():
    from passbench.train.operating_point import logit_shifted_rates

    trained = [0.47, 0.21, 0.0, 0.68, 0.41]  # the zero layer (a grid the gate never decides on) stays 0
    for target in (0.2, 0.64, 0.9):
        r = logit_shifted_rates(trained, target)
        live = [x for x in r if x > 0]
        assert r[2] == 0.0 and sum(live) / 4 == pytest.approx(target, abs=1e-6)
        assert r[3] > r[0] > r[4] > r[1] and max(r) < 1.0  # learned order kept, none skips every patch
        # one shift in logit space: the logit differences between layers are those of the trained rates
        lg = [math.log(x / (1 - x)) for x in (r[0], r[3])]
        assert lg[1] - lg[0] == pytest.approx(math.log(0.68 / 0.32) - math.log(0.47 / 0.53), abs=1e-6)
    m = _model("pass_p", embed_dim=8, hidden=8, rates=[0.1, 0.3, 0.8])
    knob = set_operating_point(m, "pass_p", {}, 0.6, None, allocation="logit")
    assert knob["allocation"] == "logit" and max(knob["value"]) < 1.0


def test_pass_uniform_allocation_overrides_the_trained_rates():
    m = _model("pass_p", embed_dim=8, hidden=8, rates=[0.1, 0.3, 0.8])
    learned = set_operating_point(m, "pass_p", {}, 0.4, None)
    assert learned["allocation"] == "learned" and learned["value"][2] > learned["value"][0]
    uniform = set_operating_point(m, "pass_p", {}, 0.4, None, allocation="uniform")
    assert uniform["value"] == pytest.approx([0.4] * 3) and uniform["allocation"] == "uniform"
    assert [float(l.gate.rate) for l in sk.pass_layers(m)] == pytest.approx([0.4] * 3)
    with pytest.raises(ValueError, match="allocation"):
        set_operating_point(m, "pass_p", {}, 0.4, None, allocation="greedy")
    with pytest.raises(ValueError, match="PASS gates only"):
        set_operating_point(_model("fixed"), "fixed", {}, 0.4, None, allocation="uniform")
