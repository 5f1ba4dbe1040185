"""The every-conv layer plan (``passbench.skip.convplan``) and per-layer patch sizes in ``make_skippable``.

Oracles: a hand-worked small network (maps, grids and MACs computed by hand below), the ResNet-18 grids
at 384x224 (stride 16 / 32 maps of 24x14 / 12x7: 3x2 / 2x1 patches at patch 8), and the wrapper's
dense-masked reference path for the mixed-patch model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench import skip
from passbench.skip.convplan import conv_sites, every_conv
from passbench.skip.make import patch_for


class Tiny(nn.Module):
    """Input 3x64x64: stem -> 32x32, a/a2 at 32x32, b -> 16x16, c -> 8x8, d (1x1) at 8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.c = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.d = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a2(torch.relu(self.a(x))))
        return self.d(torch.relu(self.c(torch.relu(self.b(x)))))


def test_tiny_plan_by_hand():
    torch.manual_seed(0)
    plan = every_conv(Tiny(), (3, 64, 64), (8, 4), min_patches=16)
    by = {s.name: s for s in plan.sites}
    assert [s.name for s in plan.sites] == ["stem", "a", "a2", "b", "c", "d"]
    # maps and MACs by hand: Cout * Hout * Wout * Cin * k^2
    assert by["stem"].out_hw == (32, 32) and by["stem"].macs == 8 * 32 * 32 * 3 * 9
    assert by["a"].in_hw == (32, 32) and by["a"].macs == 8 * 32 * 32 * 8 * 9
    assert by["b"].out_hw == (16, 16) and by["b"].macs == 16 * 16 * 16 * 8 * 9
    assert by["d"].macs == 4 * 8 * 8 * 16
    # grids: 32/8 = 4 -> 16 patches; 16/8 = 2 -> 4, 16/4 = 4 -> 16; 8/4 = 2 -> 4
    assert by["a"].grids == {8: (4, 4), 4: (8, 8)} and by["b"].grids == {8: (2, 2), 4: (4, 4)}
    assert [by[n].patch for n in ("stem", "a", "a2", "b", "c", "d")] == [None, 8, 8, 4, None, None]
    assert "stem" in by["stem"].reason and "under min_patches 16" in by["c"].reason
    assert plan.exclude == ["stem", "c", "d"]
    assert plan.patch_size == {"b": 4, "*": 8}  # the exception by name, then the most common patch
    gated = 2 * 8 * 32 * 32 * 8 * 9 + 16 * 16 * 16 * 8 * 9
    total = gated + 8 * 32 * 32 * 3 * 9 + 16 * 8 * 8 * 16 * 9 + 4 * 8 * 8 * 16
    assert plan.gated_mac_share() == pytest.approx(gated / total)
    # one candidate only: b's 2x2 grid is under 16 too; one patch for all -> an int
    only8 = every_conv(Tiny(), (3, 64, 64), (8,), min_patches=16)
    assert only8.exclude == ["stem", "b", "c", "d"] and only8.patch_size == 8
    assert every_conv(Tiny(), (1, 3, 64, 64), (8, 4), keep_stem=True).sites[0].patch == 8  # 32x32 at p8: 16
    with pytest.raises(ValueError, match="no conv of Tiny"):
        every_conv(Tiny(), (3, 64, 64), (8,), min_patches=1000)


def test_patch_for_first_glob_wins_and_unmatched_is_named():
    assert patch_for("x.conv", 4) == 4
    assert patch_for("layer3.0.conv1", {"layer3.*": 4, "*": 8}) == 4
    assert patch_for("layer2.0.conv1", {"layer3.*": 4, "*": 8}) == 8
    with pytest.raises(ValueError, match="layer 'hm.0' matches no glob"):
        patch_for("hm.0", {"body.*": 8})
    for bad in (0, 2.5, True, {}, {"*": 0}):
        with pytest.raises(ValueError, match="patch_size"):
            skip.make_skippable(Tiny(), "fixed", patch_size=bad)


def test_a_glob_shadowed_by_an_earlier_catch_all_is_refused_naming_both():
    # first match wins: {"*": 8, "b": 4} would give b patch 8 silently (a mapping with sorted keys puts "*"
    # first); make_skippable refuses it and names the glob that never applies and the one that takes it
    with pytest.raises(ValueError, match=r"glob 'b' never applies.*\(b\).*earlier glob '\*'"):
        skip.make_skippable(Tiny(), "fixed", keep=0.5, patch_size={"*": 8, "b": 4})
    model = skip.make_skippable(Tiny(), "fixed", keep=0.5, patch_size={"b": 4, "*": 8, "nothing.*": 2})
    assert dict(skip.skippable_layers(model))["b"].patch_size == 4  # a glob matching no layer is no error


def test_train_everyconv_script_keeps_the_plans_catch_all_glob_last():
    # scripts/train_everyconv.sh turns the plan into the stages' patch_size argument (a YAML flow mapping):
    # its keys must keep the plan's order ("*" last), not come out sorted ("*" first)
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent
    line = next(ln for ln in (root / "scripts" / "train_everyconv.sh").read_text().splitlines()
                if ln.startswith("PATCH="))
    plan = yaml.safe_dump({"patch_size": {"body.layer3.0.conv1": 4, "neck.node.2.0": 4, "*": 8}, "exclude": []},
                          sort_keys=False, default_flow_style=True)
    out = subprocess.run(["bash", "-c", f'{line}\nprintf "%s" "$PATCH"'], capture_output=True, text=True, check=True,
                         env={"PY": sys.executable, "PLAN": plan, "PATH": "/usr/bin:/bin"})
    assert list(yaml.safe_load(out.stdout)) == ["body.layer3.0.conv1", "neck.node.2.0", "*"], out.stdout
    assert re.search(r"\$PY", line)


@pytest.mark.parametrize("method,kw", [("fixed", {"keep": 0.5}), ("pass_p", {"embed_dim": 4, "hidden": 8,
                                                                              "rates": 0.5})])
def test_plan_wraps_the_planned_layers_at_their_patch_and_matches_the_reference(method, kw):
    torch.manual_seed(0)
    plan = every_conv(Tiny(), (3, 64, 64), (8, 4))
    torch.manual_seed(1)
    frames = [torch.rand(2, 3, 64, 64) for _ in range(3)]
    outs = {}
    for execution in ("reference", "sparse"):
        torch.manual_seed(2)
        model = skip.make_skippable(Tiny(), method, execution=execution, input_shape=(2, 3, 64, 64),
                                    **plan.params(), **kw).eval()
        layers = dict(skip.skippable_layers(model))
        assert {n: m.patch_size for n, m in layers.items()} == {"a": 8, "a2": 8, "b": 4}
        if method == "pass_p":  # the gate reads p * stride input pixels per patch
            assert [layers[n].gate.patch_in for n in ("a", "a2", "b")] == [8, 8, 8]
        with torch.no_grad():
            outs[execution] = [model(x) for x in frames]
        st = skip.collect_stats(model)
        assert 0.3 < st["patch_skip_rate"] < 0.7
    for r, s in zip(outs["reference"], outs["sparse"]):
        torch.testing.assert_close(s, r, rtol=1e-4, atol=1e-5)


def test_resnet18_fairmot_plan_at_the_sample_input():
    from passbench.models import build_model

    torch.manual_seed(0)
    model = build_model("timm:resnet18", pretrained=False).eval()
    sites = {s.name: s for s in conv_sites(model, (3, 224, 384), (8, 4))}
    assert sites["body.layer3.0.conv2"].grids[8] == (2, 3) and sites["body.layer4.0.conv2"].grids[8] == (1, 2)
    plan = every_conv(model, (3, 224, 384), (8, 4))
    assert set(plan.exclude) == {"body.conv1", "neck.proj.3.0"} | {n for n in sites if n.startswith("body.layer4.")}
    for s in plan.gated():  # stride-4 / 8 maps at patch 8, stride-16 maps at patch 4
        assert s.patch == (4 if s.in_hw[0] // s.stride <= 14 else 8), s.name
    assert 0.7 < plan.gated_mac_share() < 0.8


def test_engine_hooks_take_named_convs_and_per_layer_patches():
    from passbench.bench import attach_engine_hooks

    torch.manual_seed(0)
    net = Tiny().eval()
    x0, x1 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        dense = net(x1)
        counters = attach_engine_hooks(net, 1.0, {"b": 4, "*": 8}, names=["a", "b"])
        net(x0)
        out = net(x1)
    assert len(counters) == 2  # only the named convs
    assert [c["patches"] for c in counters] == [4 * 4, 4 * 4]  # a: 32x32 at patch 8, b: 16x16 at patch 4
    torch.testing.assert_close(out, dense)  # keep 1: every patch computed
