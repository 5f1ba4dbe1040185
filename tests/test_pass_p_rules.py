"""PASS-P rules pinned against independent oracles.

* ``gate_signal``'s per-gate numbers against torch.autograd run on ONE gate's parameters at a time (the
  L2 norm of the gradient of the triplet loss and of ``rate_weight * rate term``, ``PassPObjective.terms``
  giving the two parts), averaged over the batches; its per-head distances against the objective's own
  per-batch logs and the documented unit relation ``d = MSE / head_scales[h]`` (``balanced``); its pair
  count, batch count (default 8, else ``batches``), stores and the absence of augmentation against the
  docstring; a gate whose head the triplet does not compare reports exactly zero triplet gradient.
* ``gate_signal``'s hinge count: one hinge per head and sample for ``balanced``, one per sample over the heads'
  mean for ``mse`` (recomputed from ``triplet_terms`` on the same draws); ``l2`` has no per-head distances
  and no hinge count, and its per-head MSEs are those of any other distance (same draws).
* the ``mse`` distance's unit (``_scales``) against hand-worked numbers: each sample's own anchor mean
  square over the channel dim, clamped from below at 1e-12.

* ``hinge_active`` against autograd (a hinge is active where ``max(0, x)`` passes gradient: ``x > 0``),
  per head for ``balanced``, per sample on the heads' mean for ``mse``; ``PassPObjective.terms``' returned
  loss and logs against ``triplet_loss`` / ``triplet_terms`` on the same draws, per distance, and its error
  for ``balanced`` without units.
* ``gate_signal``'s edge cases: the units stored with a checkpoint's gates are used, a zero rate gradient
  gives an infinite ratio, one pair per batch.
* ``train_pass_p``'s wiring: the configured learning rate (0: no gate moves) and weight decay, ``stop_at``
  (history, no final before the last step, final at ``stop_at = steps``), what ``final.pt`` holds (layer
  rates, units only for ``balanced``, half precision when asked), the error for a method without
  learnable gates.

A tiny FairMOT stand-in with freshly built gates (no checkpoint) keeps every ``gate_signal`` call < 2 s.
"""

import math

import pytest
import torch

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, stage_samples
from passbench.train.pass_p import (PassPObjective, calibration_pairs, gate_signal, triplet_loss, triplet_terms)
from passbench.train.stage_config import make_cfg
from tests.test_train_task import TINY, synthetic_store

SMALL_GATE = {"embed_dim": 8, "depth": 1, "hidden": 16, "min_patches": 4}
SCALES = {"hm": 1e-3, "wh": 1e-2, "reg": 1e-3, "id": 1e-3}


def _cfg(**kw):
    # sequences=["synthetic"]: a run that ignored the given stores would read 16 other synthetic frames;
    # flip and scale jitter on, so that calibration pairs drawn with augmentation would differ;
    # calib_pairs=6 (3 batches of 2), so that the default batch count differs from ``batches``.
    base = dict(model=TINY, pretrained=None, input_wh=[64, 48], batch_size=2, patch_size=4, skip_params=SMALL_GATE,
                sequences=["synthetic"], flip=True, scale_jitter=0.3, rate_weight=3.0, target_rate=0.3,
                calib_pairs=6, threads=1)
    base.update(kw)
    return make_cfg("pass_p", base)


def _store():
    return synthetic_store(n=8, seed=3)


def _norm(grads):
    """L2 norm of the concatenated gradients (None: the parameter is not reached, a zero gradient)."""
    flat = [g.flatten() for g in grads if g is not None]
    return float(torch.linalg.vector_norm(torch.cat(flat))) if flat else 0.0


def _oracle(c, stores, batches, scales, seed):
    """What gate_signal documents, recomputed: the same model and calibration batches (no augmentation,
    ``batches`` of them), the same random draws, and per gate a separate autograd call on its own
    parameters."""
    torch.manual_seed(seed)
    samples = stage_samples(c, stores, pairs=True, augment=False)
    model, _, _ = build_stage_model(c, skippable=True)
    sk.freeze(sk.backbone_parameters(model))
    obj = PassPObjective(model, c)
    obj.train()
    pairs = calibration_pairs(samples, c, torch.device("cpu"), batches)
    obj.set_scales(scales)
    named = sk.named_pass_layers(model)
    trip_n, rate_n, logs, sizes = {}, {}, [], {}
    for x_prev, x in pairs:
        trip, rate_term, lg = obj.terms({"prev": x_prev, "img": x})
        logs.append(lg)
        for name, m in named:
            if m.positive is None or not m.positive.active:
                continue
            ps = list(m.gate.parameters())
            gt = torch.autograd.grad(trip, ps, retain_graph=True, allow_unused=True)
            gr = torch.autograd.grad(c.rate_weight * rate_term, ps, retain_graph=True, allow_unused=True)
            trip_n.setdefault(name, []).append(_norm(gt))
            rate_n.setdefault(name, []).append(_norm(gr))
            sizes[name] = m.positive.prob.numel()
    mean = lambda d: {n: sum(v) / len(v) for n, v in d.items()}  # noqa: E731
    return {"pairs": pairs, "logs": logs, "triplet": mean(trip_n), "rate": mean(rate_n), "sizes": sizes}


def _signal(c, seed, **kw):
    torch.manual_seed(seed)
    return gate_signal(c, stores=[_store()], **kw)


def test_each_gates_gradient_norms_are_those_of_its_own_parameters():
    c = _cfg()
    res = _signal(c, 5, batches=2, scales=SCALES)
    o = _oracle(c, [_store()], 2, SCALES, 5)
    trip, rate = o["triplet"], o["rate"]
    assert sorted(res["gates"]) == sorted(trip) and len(trip) == 7
    # the gates' norms differ from one another, so a gate reading another gate's slice shows
    assert len({round(v, 12) for v in trip.values()}) == len(trip)
    for n, g in res["gates"].items():
        assert g["triplet"] == pytest.approx(trip[n], rel=1e-5, abs=1e-12), n
        assert g["rate"] == pytest.approx(rate[n], rel=1e-5, abs=1e-12), n
        assert g["rate"] > 0 and g["triplet"] > 0, n
        assert g["ratio"] == pytest.approx(trip[n] / rate[n], rel=1e-4), n


def test_rate_gradient_is_of_rate_weight_times_the_squared_rate_gap():
    # rate_weight * (p - t)^2 has gradient 2 rate_weight (p - t) dp/dtheta: doubling the weight doubles every
    # gate's rate-gradient norm, and the triplet's is unchanged (same seed, same draws).
    one = _signal(_cfg(rate_weight=1.0), 2, batches=2, scales=SCALES)
    two = _signal(_cfg(rate_weight=2.0), 2, batches=2, scales=SCALES)
    for n in one["gates"]:
        assert two["gates"][n]["rate"] == pytest.approx(2 * one["gates"][n]["rate"], rel=1e-5), n
        assert two["gates"][n]["triplet"] == pytest.approx(one["gates"][n]["triplet"], rel=1e-5), n


def test_per_head_distances_are_means_over_pairs_in_the_heads_unit():
    c = _cfg()
    res = _signal(c, 7, batches=2, scales=SCALES)
    o = _oracle(c, [_store()], 2, SCALES, 7)
    logs = o["logs"]
    assert res["pairs"] == 4 == sum(x.shape[0] for _, x in o["pairs"])
    assert res["scales"] == SCALES
    for h, d in res["heads"].items():
        # equal batches: the mean over pairs is the mean of the per-batch means
        d_p = sum(lg[f"L_p.{h}"] for lg in logs) / len(logs)
        d_n = sum(lg[f"L_n.{h}"] for lg in logs) / len(logs)
        assert d["d_p"] == pytest.approx(d_p, rel=1e-5) and d["d_n"] == pytest.approx(d_n, rel=1e-5), h
        # balanced: a distance is the head's MSE over its unit
        assert d["mse_p"] == pytest.approx(d_p * SCALES[h], rel=1e-5), h
        assert d["mse_n"] == pytest.approx(d_n * SCALES[h], rel=1e-5), h
        assert 0 < d["mse_p"] < 1e-3 and 0 < d["mse_n"] < 1e-3, (h, d)  # the tiny model's changes are small
    assert res["active_fraction"] == pytest.approx(sum(lg["active"] for lg in logs) / len(logs))


def test_per_gate_skip_probabilities_average_to_the_objectives_skip_probability():
    # The objective's skip_prob is the mean over every gated patch; the gates' means weighted by their
    # patch counts must give it back, and each is a probability.
    c = _cfg()
    res = _signal(c, 4, batches=2, scales=SCALES)
    o = _oracle(c, [_store()], 2, SCALES, 4)
    logs, sizes = o["logs"], o["sizes"]
    assert all(0.0 < g["skip_prob"] < 1.0 for g in res["gates"].values())
    weighted = sum(res["gates"][n]["skip_prob"] * k for n, k in sizes.items()) / sum(sizes.values())
    assert weighted == pytest.approx(sum(lg["skip_prob"] for lg in logs) / len(logs), rel=1e-5)


def test_gate_signal_runs_8_batches_by_default_and_measures_scales_when_none_given():
    c = _cfg()
    res = _signal(c, 0)  # no batches, no scales, no head_scales in a checkpoint
    assert res["pairs"] == 8 * c.batch_size
    assert set(res["scales"]) == set(c.heads) and all(0 < v < math.inf for v in res["scales"].values())
    for h, d in res["heads"].items():  # the measured units are the ones the distances are in
        assert d["mse_p"] == pytest.approx(d["d_p"] * res["scales"][h], rel=1e-5), h


def test_gate_signal_reads_the_given_stores_without_augmentation():
    # Calibration pairs come without augmentation: the cfg's flip / scale jitter change nothing. Other
    # frames give other distances: the run reads the stores it is given (the cfg's own sequence,
    # "synthetic", would give 16 other frames).
    c = _cfg()
    a = _signal(c, 1, batches=2, scales=SCALES)
    b = _signal(_cfg(flip=False, scale_jitter=0.0), 1, batches=2, scales=SCALES)
    assert a["heads"] == b["heads"]  # augmentation settings have no effect on the calibration pairs
    torch.manual_seed(1)
    other = gate_signal(c, batches=2, stores=[synthetic_store(n=8, seed=11)], scales=SCALES)
    assert other["heads"]["wh"]["mse_p"] != a["heads"]["wh"]["mse_p"]


def test_a_gate_the_compared_heads_do_not_reach_reports_zero_triplet_gradient():
    # heads=("hm",): the gates on the wh / reg / id convs cannot change hm, their triplet gradient is
    # exactly zero (no gradient at all reaches them), while the rate term still reaches them.
    c = _cfg(heads=["hm"])
    res = _signal(c, 3, batches=2, scales={"hm": 1e-3})
    o = _oracle(c, [_store()], 2, {"hm": 1e-3}, 3)
    trip, rate = o["triplet"], o["rate"]
    for n in ("wh", "reg", "id"):
        assert res["gates"][n]["triplet"] == 0.0 and res["gates"][n]["rate"] > 0, n
    for n in ("body.0", "body.3", "body.6", "hm"):
        assert res["gates"][n]["triplet"] == pytest.approx(trip[n], rel=1e-5) and trip[n] > 0, n
    for n, g in res["gates"].items():
        assert g["rate"] == pytest.approx(rate[n], rel=1e-5), n


def _hinges(c, seed, batches, scales):
    """Per batch, (heads x samples) anchor-positive minus anchor-negative distance from ``triplet_terms`` on the
    draws gate_signal makes (same seed, one triplet per batch)."""
    torch.manual_seed(seed)
    samples = stage_samples(c, [_store()], pairs=True, augment=False)
    model, _, _ = build_stage_model(c, skippable=True)
    sk.freeze(sk.backbone_parameters(model))
    obj = PassPObjective(model, c)
    obj.train()
    out = []
    for x_prev, x in calibration_pairs(samples, c, torch.device("cpu"), batches):
        a, p, q = obj.triplet({"prev": x_prev, "img": x})
        with torch.no_grad():
            tp, tn = triplet_terms(a, p, q, c.distance, scales)
        out.append(torch.stack([tp[h] for h in c.heads]) - torch.stack([tn[h] for h in c.heads]))
    return out


@pytest.mark.parametrize("distance", ["balanced", "mse"])
def test_active_fraction_counts_the_hinges_of_the_distance(distance):
    # margin 0: a hinge passes gradient where the positive is farther than the negative. With random gates
    # some heads' hinges pass and others do not, so counting per head (balanced) and over the heads' mean
    # (mse) give different fractions: 0.375 and 0.5 on these draws.
    c = _cfg(margin=0.0, distance=distance)
    scales = SCALES if distance == "balanced" else None
    res = _signal(c, 7, batches=2, scales=scales)
    diffs = _hinges(c, 7, 2, scales)
    per_head = float(torch.cat([(d > 0).float().flatten() for d in diffs]).mean())
    over_mean = float(torch.cat([(d.mean(0) > 0).float() for d in diffs]).mean())
    assert per_head != over_mean  # the case separates the two rules
    assert res["active_fraction"] == pytest.approx(per_head if distance == "balanced" else over_mean)


def test_l2_distance_reports_no_per_head_distances_and_the_same_head_mses():
    # l2 compares the concatenated heads: no per-head distance and no hinge count to report; the raw per-head
    # MSEs do not depend on the distance (same seed, same draws), and the triplet still reaches every gate.
    bal = _signal(_cfg(), 7, batches=2, scales=SCALES)
    res = _signal(_cfg(distance="l2"), 7, batches=2)
    assert math.isnan(res["active_fraction"]) and res["scales"] is None
    for h, d in res["heads"].items():
        assert d["d_p"] == 0.0 and d["d_n"] == 0.0, h
        assert d["mse_p"] == pytest.approx(bal["heads"][h]["mse_p"], rel=1e-6), h
        assert d["mse_n"] == pytest.approx(bal["heads"][h]["mse_n"], rel=1e-6), h
    assert sorted(res["gates"]) == sorted(bal["gates"])
    assert all(g["triplet"] > 0 and g["rate"] > 0 for g in res["gates"].values())


def test_mse_distance_unit_is_each_samples_own_anchor_mean_square():
    # anchor rows: mean squares 1 and 9; positive 1 away (MSE 1), negative 2 away (MSE 4) on every channel
    a = {"x": torch.tensor([[1.0, 1.0], [3.0, 3.0]])}
    p = {"x": a["x"] + 1.0}
    n = {"x": a["x"] + 2.0}
    tp, tn = triplet_terms(a, p, n, "mse")
    torch.testing.assert_close(tp["x"], torch.tensor([1.0, 1.0 / 9.0]))
    torch.testing.assert_close(tn["x"], torch.tensor([4.0, 4.0 / 9.0]))
    _, lp, ln = triplet_loss(a, p, n, 1.0, "mse")
    assert lp == pytest.approx((1 + 1 / 9) / 2) and ln == pytest.approx((4 + 4 / 9) / 2)


def test_mse_distance_unit_is_clamped_only_at_1e_12():
    # an anchor of mean square 0.01 (below 1) is its own unit: a change of 0.01 on every channel is 0.01
    a = {"x": torch.full((1, 4), 0.1)}
    tp, tn = triplet_terms(a, {"x": a["x"] + 0.01}, {"x": a["x"] + 0.1}, "mse")
    assert float(tp["x"][0]) == pytest.approx(1e-4 / 1e-2) and float(tn["x"][0]) == pytest.approx(1e-2 / 1e-2)
    # a zero anchor: the unit is 1e-12, so an MSE of 1e-12 is one unit
    z = {"x": torch.zeros(1, 4, dtype=torch.float64)}
    tp, _ = triplet_terms(z, {"x": z["x"] + 1e-6}, {"x": z["x"] + 2e-6}, "mse")
    assert float(tp["x"][0]) == pytest.approx(1.0, rel=1e-6)
    # l2 divides every head by the square root of the same unit: the zero anchor's positive is 1 away per channel
    _, lp, _ = triplet_loss(z, {"x": z["x"] + 1e-6}, {"x": z["x"] + 2e-6}, 10.0, "l2")
    assert lp == pytest.approx(2.0, rel=1e-4)  # sqrt(4 channels * 1^2)


def test_the_negative_pass_starts_from_the_primed_state_with_autograd_off():
    # measure_head_scales runs the triplet under no_grad, where layers update their stream state in place: the
    # positive pass must not write into the primed snapshot that the negative pass restores (set_state). The
    # oracle is the same triplet with autograd on, where no state is written in place: same draws (same
    # seed), same head maps up to the float error of the other execution path.
    c = _cfg()
    obj, batch = _objective(c)
    torch.manual_seed(1)
    _, p_grad, n_grad = obj.triplet(batch)
    torch.manual_seed(1)
    with torch.no_grad():
        _, p_off, n_off = obj.triplet(batch)
    for h in c.heads:
        assert torch.allclose(p_off[h], p_grad[h].detach(), rtol=1e-4, atol=1e-5), h
        assert torch.allclose(n_off[h], n_grad[h].detach(), rtol=1e-4, atol=1e-5), h


# ------------------------------------------------------------------------------------------------
# hinge_active against autograd: a hinge is active where max(0, x) passes gradient (x > 0, not x = 0)


def _relu_passes(x):
    x = x.detach().clone().requires_grad_(True)
    torch.relu(x).sum().backward()
    return x.grad > 0


def test_hinge_active_is_where_each_hinge_passes_gradient():
    from passbench.train.pass_p import hinge_active

    # balanced: one hinge per (head, sample); head a, sample 0 sits exactly at the hinge (0.5 - 1.5 + 1 = 0)
    tp = {"a": torch.tensor([0.5, 2.0, 0.1]), "b": torch.tensor([0.2, 0.2, 3.0])}
    tn = {"a": torch.tensor([1.5, 1.0, 5.0]), "b": torch.tensor([0.3, 0.1, 0.2])}
    want = _relu_passes(torch.stack([tp["a"], tp["b"]]) - torch.stack([tn["a"], tn["b"]]) + 1.0)
    got = hinge_active(tp, tn, 1.0, "balanced")
    assert got.shape == (2, 3) and torch.equal(got, want) and not bool(got[0, 0])
    # mse: one hinge per sample on the heads' means; the per-sample means (not the batch's) decide
    tp = {"x": torch.tensor([3.0, 0.0, 0.0, 0.0])}
    tn = {"x": torch.tensor([2.5, 0.8, 1.2, 0.1])}
    got = hinge_active(tp, tn, 0.5, "mse")
    assert got.shape == (1, 4)
    assert torch.equal(got, _relu_passes(tp["x"] - tn["x"] + 0.5).view(1, 4))
    assert got.tolist() == [[True, False, False, True]]


# ------------------------------------------------------------------------------------------------
# PassPObjective.terms: what it returns and logs, per distance


def _objective(c):
    torch.manual_seed(0)
    model, _, _ = build_stage_model(c, skippable=True)
    sk.freeze(sk.backbone_parameters(model))
    obj = PassPObjective(model, c)
    obj.train()
    x_prev, x = calibration_pairs(stage_samples(c, [_store()], pairs=True, augment=False), c, torch.device("cpu"),
                                  1)[0]
    return obj, {"prev": x_prev, "img": x}


def test_terms_needs_the_units_for_balanced_only():
    obj, batch = _objective(_cfg())
    with pytest.raises(RuntimeError) as e:
        obj.terms(batch)
    assert str(e.value) == ("PassPObjective(distance='balanced'): head scales not measured "
                            "(measure_head_scales before the first step)")
    for distance in ("mse", "l2"):  # no units to measure: runs as built
        obj, batch = _objective(_cfg(distance=distance))
        trip, rate_term, logs = obj.terms(batch)
        assert torch.isfinite(trip) and logs["triplet"] == float(trip.detach())


@pytest.mark.parametrize("distance", ["balanced", "mse", "l2"])
def test_terms_logs_the_loss_it_returns_and_the_hinges_of_its_distance(distance):
    margin = 1.0 if distance == "l2" else 0.0  # l2: torch's triplet_margin_loss needs a margin > 0
    c = _cfg(margin=margin, distance=distance)
    obj, batch = _objective(c)
    scales = SCALES if distance == "balanced" else None
    if scales:
        obj.set_scales(scales)
    torch.manual_seed(2)
    a, p, q = obj.triplet(batch)
    torch.manual_seed(2)
    trip, rate_term, logs = obj.terms(batch)  # the same draws
    want, lp, ln = triplet_loss(a, p, q, margin, distance, scales)
    assert float(trip.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert logs["triplet"] == float(trip.detach())
    assert logs["L_p"] == pytest.approx(lp, rel=1e-6) and logs["L_n"] == pytest.approx(ln, rel=1e-6)
    assert float(rate_term.detach()) == pytest.approx((logs["skip_prob"] - c.target_rate) ** 2, rel=1e-5)
    if distance == "l2":  # no per-head distance, no hinge count
        assert "active" not in logs and not any(k.startswith("L_p.") for k in logs)
        return
    with torch.no_grad():
        tp, tn = triplet_terms(a, p, q, distance, scales)
    d = torch.stack([tp[h] for h in c.heads]) - torch.stack([tn[h] for h in c.heads])
    per_head, over_mean = float((d > 0).float().mean()), float((d.mean(0) > 0).float().mean())
    assert per_head != over_mean  # these draws separate the two rules
    assert logs["active"] == pytest.approx(per_head if distance == "balanced" else over_mean)
    for h in c.heads:
        assert logs[f"L_p.{h}"] == pytest.approx(float(tp[h].mean()), rel=1e-6), h


# ------------------------------------------------------------------------------------------------
# gate_signal's edge cases: the checkpoint's units, a zero rate gradient, one pair


def test_gate_signal_reads_the_units_stored_with_the_gates(pp_final):
    from passbench.train.common import read_final

    stored = read_final(pp_final)["extra"]["head_scales"]
    torch.manual_seed(0)
    res = gate_signal(_pp_cfg(pp_final), batches=1, stores=[_store()])
    assert res["scales"] == stored  # not measured again on the trained gates


def test_gate_signal_ratio_is_infinite_where_the_rate_term_gives_no_gradient():
    res = _signal(_cfg(rate_weight=0.0), 1, batches=1, scales=SCALES)
    assert res["gates"] and all(g["rate"] == 0.0 and g["ratio"] == math.inf and g["triplet"] > 0
                                for g in res["gates"].values())


def test_gate_signal_and_calibration_pairs_with_one_pair_per_batch():
    c = _cfg(batch_size=1)
    res = _signal(c, 7, batches=1, scales=SCALES)
    o = _oracle(c, [_store()], 1, SCALES, 7)
    assert [x.shape[0] for _, x in o["pairs"]] == [1] and res["pairs"] == 1
    for h, d in res["heads"].items():  # the mean over one pair is that pair's distance
        assert d["d_p"] == pytest.approx(o["logs"][0][f"L_p.{h}"], rel=1e-5), h


# ------------------------------------------------------------------------------------------------
# train_pass_p's wiring: optimiser settings, interruption, what final.pt holds


@pytest.fixture(scope="module")
def task_ckpt(tmp_path_factory):
    from passbench.train.task import train_task

    c = make_cfg("task", dict(model=TINY, pretrained=None, input_wh=[64, 48], steps=2, batch_size=2, log_every=1,
                              ckpt_every=2, scale_jitter=0.0, patch_size=4, method="pass_p", lr=1e-2))
    return str(train_task(c, tmp_path_factory.mktemp("task") / "task", stores=[_store()])["final"])


def _pp_cfg(init, **kw):
    base = dict(model=TINY, pretrained=None, input_wh=[64, 48], steps=2, batch_size=2, log_every=1, ckpt_every=2,
                scale_jitter=0.0, patch_size=4, method="pass_p", init=init, skip_params=SMALL_GATE, calib_pairs=2,
                lr=1e-2, threads=1)
    base.update(kw)
    return make_cfg("pass_p", base)


@pytest.fixture(scope="module")
def pp_final(tmp_path_factory, task_ckpt):
    from passbench.train.pass_p import train_pass_p

    return str(train_pass_p(_pp_cfg(task_ckpt), tmp_path_factory.mktemp("pp") / "pp", stores=[_store()])["final"])


def _trained_gates(c, tmp_path, name):
    from passbench.train.common import read_final
    from passbench.train.pass_p import train_pass_p

    res = train_pass_p(c, tmp_path / name, stores=[_store()])
    model, _, _ = build_stage_model(c, skippable=True)  # names of the gates' parameters (not their buffers)
    names = [n for n, _ in sk.named_pass_layers(model)]
    params = {f"{n}.gate.{k}" for n in names for k, _ in dict(model.named_modules())[n].gate.named_parameters()}
    final = read_final(res["final"])["model"]
    return res, {k: final[k] for k in sorted(params)}


def _initial_gates(c, keys):
    from passbench.train.common import seed_all

    seed_all(c.seed)  # train_pass_p's draws: seed, samples, model
    stage_samples(c, [_store()], pairs=True)
    model, _, _ = build_stage_model(c, skippable=True)
    state = model.state_dict()
    return {k: state[k] for k in keys}


def test_train_pass_p_uses_the_configured_learning_rate_and_weight_decay(task_ckpt, tmp_path):
    c0 = _pp_cfg(task_ckpt, lr=0.0)
    _, still = _trained_gates(c0, tmp_path, "lr0")
    init = _initial_gates(c0, still)
    assert still and all(torch.equal(still[k], init[k]) for k in still)  # lr 0: no step moves a gate
    _, plain = _trained_gates(_pp_cfg(task_ckpt), tmp_path, "wd0")
    _, decayed = _trained_gates(_pp_cfg(task_ckpt, weight_decay=1e3), tmp_path, "wd")
    assert any(not torch.equal(plain[k], init[k]) for k in plain)
    assert any(not torch.allclose(plain[k], decayed[k]) for k in plain)  # the decay changes the steps


def test_train_pass_p_stops_where_told_and_writes_final_only_at_the_end(task_ckpt, tmp_path):
    from passbench.train.pass_p import train_pass_p

    stores = [_store()]
    c = _pp_cfg(task_ckpt, steps=3)
    cut = train_pass_p(c, tmp_path / "cut", stores=stores, stop_at=1)
    assert len(cut["history"]) == 1 and cut["rates"] is None and not cut["final"].exists()
    assert cut["skip_rate"] == cut["history"][-1]["skip_rate"]
    none = train_pass_p(c, tmp_path / "none", stores=stores, stop_at=0)
    assert none["history"] == [] and none["skip_rate"] is None and not none["final"].exists()
    full = train_pass_p(c, tmp_path / "full", stores=stores, stop_at=3)  # stop_at = steps: the run is complete
    assert len(full["history"]) == 3 and full["final"].exists() and full["rates"]
    assert full["skip_rate"] == full["history"][-1]["skip_rate"]


def test_train_pass_p_final_holds_rates_units_and_the_precision_asked(task_ckpt, pp_final, tmp_path):
    from passbench.train.common import read_final
    from passbench.train.pass_p import train_pass_p

    extra = read_final(pp_final)["extra"]
    assert extra["layer_rates"] == read_final(pp_final)["skip"]["params"]["rates"]
    assert set(extra["head_scales"]) == set(_pp_cfg(task_ckpt).heads) and all(v > 0 for v in extra["head_scales"].values())
    mse = train_pass_p(_pp_cfg(task_ckpt, distance="mse", save_half=True), tmp_path / "mse", stores=[_store()])
    assert "head_scales" not in read_final(mse["final"])["extra"]  # no units for the mse distance
    raw = torch.load(mse["final"], weights_only=False)
    assert raw["half"] and all(v.dtype == torch.float16 for v in raw["model"].values() if v.is_floating_point())


def test_train_pass_p_refuses_a_method_without_learnable_gates(task_ckpt, tmp_path):
    from passbench.train.pass_p import train_pass_p

    with pytest.raises(ValueError) as e:
        train_pass_p(_pp_cfg(task_ckpt, method="skipconv", skip_params={}), tmp_path / "sc", stores=[_store()])
    assert str(e.value) == "method 'skipconv' has no trainable gate parameters; PASS-P needs learnable gates"


# ------------------------------------------------------------------------------------------------
# the distances' arithmetic worked by hand, the objective's settings and errors


def test_mse_loss_is_one_hinge_per_sample_on_the_heads_means():
    # two heads, three samples (unit 1: anchors of mean square 1); per sample the heads' mean distances
    # dp = (0.5, 1.5, 0.0), dn = (1.0, 0.5, 3.0): hinges relu(dp - dn + 1) = (0.5, 2.0, 0) -> loss 0.833. The
    # batch's mean on either side (dp 0.667 or dn 1.5) gives 0.611 or 0.333.
    one = torch.ones(3, 1)
    a = {"u": one.clone(), "v": one.clone()}
    p = {"u": one + torch.tensor([[1.0], [1.0], [0.0]]), "v": one + torch.tensor([[0.0], [2.0 ** 0.5 * 1.0], [0.0]])}
    n = {"u": one + torch.tensor([[2.0 ** 0.5], [1.0], [6.0 ** 0.5]]), "v": one}
    tp, tn = triplet_terms(a, p, n, "mse")
    dp = (tp["u"] + tp["v"]) / 2
    dn = (tn["u"] + tn["v"]) / 2
    torch.testing.assert_close(dp, torch.tensor([0.5, 1.5, 0.0]))
    torch.testing.assert_close(dn, torch.tensor([1.0, 0.5, 3.0]))
    loss, lp, ln = triplet_loss(a, p, n, 1.0, "mse")
    assert float(loss) == pytest.approx((0.5 + 2.0 + 0.0) / 3)
    assert lp == pytest.approx(2.0 / 3) and ln == pytest.approx(1.5)


def test_l2_distance_and_loss_worked_by_hand():
    # one head of 2 channels, anchor mean square 4 (unit 2 per channel): positive 2 away on one channel (1
    # unit), negative 6 and 8 away (3 and 4 units: Euclidean 5); margin 2: loss relu(1 - 5 + 2) = 0, margin 5: 1
    a = {"x": torch.tensor([[2.0, 2.0]])}
    p = {"x": a["x"] + torch.tensor([[2.0, 0.0]])}
    n = {"x": a["x"] + torch.tensor([[6.0, 8.0]])}
    loss, lp, ln = triplet_loss(a, p, n, 2.0, "l2")
    assert lp == pytest.approx(1.0, abs=1e-5) and ln == pytest.approx(5.0, abs=1e-5)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    loss, _, _ = triplet_loss(a, p, n, 5.0, "l2")
    assert float(loss) == pytest.approx(1.0, abs=1e-5)


def test_balanced_without_units_names_the_heads_and_what_it_got():
    a = {"x": torch.ones(1, 2), "y": torch.ones(1, 2)}
    with pytest.raises(ValueError) as e:
        triplet_terms(a, a, a, "balanced", None)
    assert str(e.value) == "distance 'balanced' needs one scale per head ['x', 'y'], got None"
    with pytest.raises(ValueError) as e:
        triplet_terms(a, a, a, "balanced", {"x": 1.0, "z": 1.0})
    assert str(e.value) == "distance 'balanced' needs one scale per head ['x', 'y'], got ['x', 'z']"


def test_objective_settings_are_checked_and_units_kept_in_float64():
    model, _, _ = build_stage_model(_cfg(), skippable=True)
    for field, bad in (("negative", "opposite"), ("distance", "cosine")):
        with pytest.raises(ValueError) as e:
            PassPObjective(model, _cfg(**{field: bad}))
        assert str(e.value).startswith(f"{field} must be one of (") and str(e.value).endswith(f"got '{bad}'")
    obj = PassPObjective(model, _cfg())
    assert obj.scales() is None  # not measured yet
    third = {h: 1.0 / 3.0 for h in obj.cfg.heads}
    obj.set_scales(third)
    assert obj.scales() == third  # float64 round trip (float32 would give 0.3333333432674408)
    assert obj.train() is obj and obj.training is True and obj.eval().training is False
    assert not obj.model.training  # the backbone stays in eval mode


@pytest.mark.parametrize("negative", ["complement", "inverted"])
def test_the_negative_pass_uses_the_configured_negative(negative):
    # At a gated layer whose input is the same in the positive and the negative pass (the first one), the
    # complement negative skips exactly what the positive computed; the inverted negative re-runs the gate
    # (a fresh draw of the sampling gate), whose mask differs from the positive's somewhere.
    c = _cfg(negative=negative)
    obj, batch = _objective(c)
    torch.manual_seed(4)
    obj.triplet(batch)
    first = next(m for _, m in sk.named_pass_layers(obj.model) if m.positive is not None and m.positive.active)
    same = torch.equal(first.last.mask.detach(), 1.0 - first.positive.mask.detach())
    assert same == (negative == "complement")


def test_calibration_pairs_of_one_pair():
    c = _cfg(calib_pairs=1)
    pairs = calibration_pairs(stage_samples(c, [_store()], pairs=True, augment=False), c, torch.device("cpu"))
    assert len(pairs) == 1 and pairs[0][0].shape[0] == 1 and pairs[0][1].shape[0] == 1
