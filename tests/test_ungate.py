"""``skip.ungate`` and ``method.params.ungated``: layers whose gates are dropped after loading run their dense
conv, are no longer gated layers, and leave the other layers' decisions as they were."""

from __future__ import annotations

import pytest
import torch

from passbench import skip
from passbench.skip import collect_stats
from tests.test_follow import ROOT, _frames, _wrapped


def _run(net, frames):
    """The first layer's masks, frame by frame (None on the dense first frame)."""
    masks = []
    with skip.skip_session(net), torch.no_grad():
        for x in frames:
            net(x)
            masks.append(None if net[0].last is None else net[0].last.mask.clone())
    return masks


def test_an_ungated_layer_computes_densely_and_leaves_the_others_deciding():
    frames = _frames(4)
    full, cut = _wrapped(), _wrapped()
    cut.load_state_dict(full.state_dict())  # the same gates, loaded, then one dropped
    assert skip.ungate(cut, ["2"]) == ["2"]
    assert cut[2].gate is None and full[2].gate is not None
    seen = {}
    cut[2].register_forward_hook(lambda m, i, o: seen.setdefault("io", []).append((i[0].clone(), o.clone())))
    m_full, m_cut = _run(full, frames), _run(cut, frames)
    for x, y in seen["io"]:  # every frame: the layer's own dense conv, nothing reused
        torch.testing.assert_close(y, cut[2].conv(x))
    # layer 0 sees the same input in both models: the same decisions, frame by frame
    assert m_cut[0] is None and all(0 < int(m.sum()) < m.numel() for m in m_cut[1:])
    for a, b in zip(m_cut[1:], m_full[1:]):
        torch.testing.assert_close(a, b)
    s_full, s_cut = collect_stats(full), collect_stats(cut)
    rows = {r["name"]: r for r in s_cut["layers"]}
    assert rows["2"]["executed_macs"] == rows["2"]["dense_macs"] and rows["2"]["gate_macs"] == 0
    assert s_cut["gate_macs"] < s_full["gate_macs"]
    assert s_cut["gate_macs"] == s_full["gate_macs"] - {r["name"]: r for r in s_full["layers"]}["2"]["gate_macs"]
    # the skip rate is over the layers still gated: layer 2's computed patches do not dilute it
    assert rows["2"]["px_gated"] == 0 and rows["2"]["gated_frames"] == 0
    assert s_cut["patch_skip_rate"] == pytest.approx(
        (rows["0"]["px_skipped"] + rows["4"]["px_skipped"]) / (rows["0"]["px_gated"] + rows["4"]["px_gated"]))


def test_the_operating_point_sets_rates_on_the_gated_layers_only():
    from passbench.train.operating_point import set_operating_point
    net = _wrapped()
    skip.ungate(net, "4")
    knob = set_operating_point(net, "pass", {}, 0.3, None, allocation="uniform")
    assert len(knob["value"]) == 2  # layers 0 and 2; the ungated layer has no rate to set


@pytest.mark.parametrize("names, msg", [(["9*"], "matches no wrapped layer"), ([], "one or more globs"),
                                        ([3], "one or more globs")])
def test_bad_names_are_refused(names, msg):
    with pytest.raises(ValueError, match=msg):
        skip.ungate(_wrapped(), names)


def test_a_leader_cannot_be_ungated_under_its_follower():
    net = _wrapped(follow={"2": "0"})
    with pytest.raises(ValueError, match="'0' decides for '2'"):
        skip.ungate(net, ["0"])
    skip.ungate(net, ["0", "2"])  # both: fine
    assert net[2].leader is None and net[2].gate is None
    net = _wrapped(follow={"2": "0"})
    skip.ungate(net, ["2"])  # a follower alone: it stops following
    assert net[2].leader is None and net[0].gate is not None
    _run(net, _frames(3))


def test_the_runner_drops_the_configured_gates_after_loading_the_checkpoint():
    from passbench.config import load_config
    from passbench.config.schema import ConfigError
    from passbench.models import build_model
    from passbench.runner.core import load_weights

    path = ROOT / "configs/everyconv/pass_p_r40.yaml"
    cfg = load_config(path, ['method.params.ungated=["neck.*", "hm.2"]'])
    model, skippable = load_weights(build_model(cfg.model.name, pretrained=False), ROOT / cfg.model.weights, cfg)
    assert skippable
    gated = {n for n, m in skip.skippable_layers(model) if m.gate is not None}
    assert not any(n.startswith("neck.") for n in gated) and "hm.2" not in gated and "hm.0" in gated
    assert len(gated) == 28 - 6 - 1
    bad = load_config(path, ['method.params.ungated=["nope.*"]'])
    with pytest.raises(ConfigError, match="ungated.*matches no wrapped layer"):
        load_weights(build_model(cfg.model.name, pretrained=False), ROOT / bad.model.weights, bad)


def test_the_committed_trimmed_rows_load_with_their_followers_ungated():
    # configs/everyconv/*_trim_*: the dense-path convs of the every-conv plan ungated; in the shared-gate row
    # the ungated downsamples and heads' 1x1 convs were followers: they stop following, their leaders decide on
    from passbench.config import load_config
    from passbench.models import build_model
    from passbench.runner.core import load_weights

    cfg = load_config(ROOT / "configs/everyconv/pass_p_half_shared_trim_r40.yaml")
    model, _ = load_weights(build_model(cfg.model.name, pretrained=False), ROOT / cfg.model.weights, cfg)
    layers = dict(skip.skippable_layers(model))
    ungated = {n for n, m in layers.items() if m.gate is None}
    assert ungated == {"body.layer2.0.downsample.0", "body.layer3.0.downsample.0", "hm.2", "wh.2", "reg.2", "id.2",
                       *(n for n in layers if n.startswith("neck."))}
    assert all(layers[n].leader is None for n in ungated)
    assert layers["body.layer1.0.conv2"].leader is layers["body.layer1.0.conv1"]  # the body's sharing stays
    assert layers["hm.0"].gate.pool == 2
