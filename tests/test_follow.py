"""Shared gate decisions: ``make_skippable(follow={follower: leader})`` and ``convplan.block_followers``.

Oracles: the blend rule written out by hand (a follower's skipped patches keep its previous output, its
computed patches equal its plain conv, under the *leader's* mask), the leader's own gate output, and
hand-listed block / chain pairs of small modules.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from passbench import skip
from passbench.skip.control import skippable_layers
from passbench.skip.convplan import block_followers, every_conv
from passbench.skip.gates import NormGate
from passbench.train.build import make_skippable as train_make_skippable
from passbench.train.operating_point import set_operating_point
from tests.test_pass_p_rules import _pp_cfg, _store, task_ckpt  # noqa: F401  (task_ckpt: a module-scoped fixture)


def _chain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))


def _frames(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 4, 64, 64, generator=g)
    out = []
    for _ in range(n):  # a changing region on a still background, so the gates' rankings matter
        x = base.clone()
        x[..., :24, :40] += torch.randn(1, 4, 24, 40, generator=g)
        out.append(x)
    return out


def _wrapped(follow=None, method="pass", **kw) -> nn.Sequential:
    params = {"rates": 0.5, "embed_dim": 8, "hidden": 8} if method == "pass" else {}
    return skip.make_skippable(_chain(), method, patch_size=8, execution="sparse", follow=follow,
                               **{**params, **kw}).eval()


@torch.no_grad()
def test_follower_takes_the_leaders_mask_and_blends_by_it():
    net = _wrapped(follow={"2": "0", "4": "0"})
    lead, f2 = net[0], net[2]
    f2.gate.forward = lambda *a, **k: (_ for _ in ()).throw(AssertionError("a follower ran its own gate"))
    seen = {}
    f2.register_forward_hook(lambda m, i, o: seen.update(x=i[0].clone(), y=o.clone()))
    prev_y = None
    for t, x in enumerate(_frames()):
        net(x)
        if t == 0:
            assert lead.last is None and f2.last is None  # the first frame runs densely everywhere
        else:
            assert f2.last is lead.last  # the leader's decision of this forward, not a copy of an older one
            mask = lead.last.mask
            assert 0 < int(mask.sum()) < mask.numel()
            keep = F.interpolate(mask[:, None], scale_factor=8, mode="nearest") > 0.5
            want = torch.where(keep, prev_y, f2.conv(seen["x"]))  # the blend rule by hand
            torch.testing.assert_close(seen["y"], want)
        prev_y = seen["y"]
    assert f2.stats.gate_macs == 0 and net[4].stats.gate_macs == 0 and lead.stats.gate_macs > 0
    assert f2.stats.px_skipped == lead.stats.px_skipped > 0  # same grid, same mask: same skipped area


@torch.no_grad()
def test_without_follow_the_second_gate_decides_otherwise():
    # the comparison the test above relies on: the follower's own gate would have chosen another mask
    net = _wrapped()
    for x in _frames(2):
        net(x)
    assert not torch.equal(net[0].last.mask, net[2].last.mask)


@torch.no_grad()
def test_follower_keeps_no_copy_of_its_input_unless_something_reads_it():
    net = _wrapped(follow={"2": "0"})
    x = _frames(1)[0]
    net(x)
    assert net[2]._prev_is_ref and not net[0]._prev_is_ref  # a PASS follower runs no gate: no private copy
    norm = skip.make_skippable(_chain(), "skipconv_norm", patch_size=8, follow={"2": "0"}).eval()
    assert isinstance(norm[2].gate, NormGate)
    norm(x)
    assert not norm[2]._prev_is_ref  # the residual form reads X_{t-1}


@pytest.mark.parametrize("follow, msg", [
    ({"2": "9"}, "leader '9' is not a wrapped layer"),
    ({"7": "0"}, "follower '7' is not a wrapped layer"),
    ({"2": "2"}, "cannot follow itself"),
    ({"2": "0", "4": "2"}, "the leader follows '0' itself"),
    (["2", "0"], "follow must map follower names to leader names"),
])
def test_bad_follow_maps_are_refused_and_leave_the_model_untouched(follow, msg):
    net = _chain()
    with pytest.raises(ValueError, match=msg):
        skip.make_skippable(net, "pass", patch_size=8, follow=follow)
    assert not skippable_layers(net) and isinstance(net[0], nn.Conv2d)


def test_follower_with_another_patch_size_is_refused():
    with pytest.raises(ValueError, match="patch sizes differ"):
        skip.make_skippable(_chain(), "pass", patch_size={"2": 4, "*": 8}, follow={"2": "0"})


@torch.no_grad()
def test_follower_on_another_grid_or_before_its_leader_fails_naming_both():
    torch.manual_seed(0)
    strided = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    net = skip.make_skippable(strided, "pass", patch_size=4, rates=0.5, follow={"1": "0"}).eval()
    for i, x in enumerate(_frames(2)):
        if i == 0:
            net(x)
        else:
            with pytest.raises(RuntimeError, match="'1' follows '0', but their output patch grids differ"):
                net(x)

    class Reversed(nn.Module):  # the follower runs first
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.a(self.b(x))

    rev = skip.make_skippable(Reversed(), "pass", patch_size=8, rates=0.5, follow={"b": "a"}).eval()
    rev(_frames(1)[0])
    with pytest.raises(RuntimeError, match="'b' follows 'a', which has not run in this forward"):
        rev(_frames(1)[0])


@torch.no_grad()
def test_operating_point_counts_a_follower_at_its_leaders_rate():
    net = _wrapped(follow={"2": "0"})
    for m, r in zip((net[0], net[2], net[4]), (0.2, 0.9, 0.6)):
        m.gate.set_rate(r)  # trained rates; the follower's own 0.9 is never used, so it must not count
    lead, follower, other = set_operating_point(net, "pass", {}, 0.5, None)["value"]
    # its patches skip at the leader's rate: the mean over the three layers of (0.2, 0.2, 0.6) x f is 0.5
    assert (lead, follower, other) == pytest.approx((0.3, 0.3, 0.9))
    assert [net[i].gate.rate for i in (0, 4)] == pytest.approx([0.3, 0.9])


def test_training_builds_the_followers_of_its_skip_spec():
    net = train_make_skippable(_chain(), {"method": "pass", "params": {"patch_size": 8, "follow": {"2": "0"}}})
    assert net[2].leader is net[0] and net[0].leader is None and net[2].execution == "reference"


class _Basic(nn.Module):
    def __init__(self, stride: int = 1, cin: int = 8, cout: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), nn.BatchNorm2d(cout)) if stride > 1 \
            else None

    def forward(self, x):
        s = self.downsample(x) if self.downsample is not None else x
        return torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))) + s)


class _Bottleneck(_Basic):
    def __init__(self) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.conv3(super().forward(x))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.b1, self.b2, self.bot = _Basic(), _Basic(stride=2), _Bottleneck()
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
        self.mixed = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(8, 2, 1))

    def forward(self, x):
        x = self.bot(self.b2(self.b1(self.stem(x))))
        return self.head(x).sum() + self.mixed(x).sum()


def test_block_followers_pairs_basic_blocks_and_conv_chains_only():
    torch.manual_seed(0)
    net = _Net().eval()
    plan = every_conv(net, (3, 64, 64), (8, 4), min_patches=4)
    assert block_followers(net, plan) == {
        "b1.conv2": "b1.conv1", "b2.conv2": "b2.conv1", "b2.downsample.0": "b2.conv1", "head.2": "head.0"}
    # a bottleneck (conv3) is no basic block; a chain with a pooling layer is no chain; an excluded leader
    # leaves its block undecided by this rule
    fewer = every_conv(net, (3, 64, 64), (8,), min_patches=17)  # b2 and later: 32x32 -> 4x4 grid, dense
    assert block_followers(net, fewer) == {"b1.conv2": "b1.conv1"}


def test_block_followers_of_the_every_conv_model():
    from passbench.models import build_model

    torch.manual_seed(0)
    model = build_model("timm:resnet18", pretrained=False).eval()
    pairs = block_followers(model, every_conv(model, (3, 224, 384), (8, 4), 16))
    blocks = [f"body.layer{i}.{j}" for i in (1, 2, 3) for j in (0, 1)]
    want = {f"{b}.conv2": f"{b}.conv1" for b in blocks}
    want.update({"body.layer2.0.downsample.0": "body.layer2.0.conv1", "body.layer3.0.downsample.0": "body.layer3.0.conv1"})
    want.update({f"{h}.2": f"{h}.0" for h in ("hm", "wh", "reg", "id")})
    assert pairs == want  # layer4 and neck.proj.3 stay dense (grid under 16), the neck's convs are single


def _light_grads(follow):
    from passbench.models import build_model
    from tests.test_pass_p import LIGHT_LAYERS, _triplet_grads

    torch.manual_seed(0)
    model = build_model("fairmot_mbv2", pretrained=False).eval()
    skip.make_skippable(model, "pass_p", execution="reference", patch_size=8, layers=LIGHT_LAYERS, embed_dim=8,
                        hidden=16, min_patches=16, follow=follow)
    g = torch.Generator().manual_seed(1)
    x_prev = torch.rand(2, 3, 128, 192, generator=g)
    x = (x_prev + 0.3 * torch.rand(2, 3, 128, 192, generator=g)).clamp(0, 1)
    return model, _triplet_grads(model, {"prev": x_prev, "img": x}, ("hm", "wh", "reg", "id"))


def test_pre_training_with_followers_teaches_the_leader_through_every_conv_it_decides_for():
    # id.2 (1x1, 48x32 map, patch 8) follows id.0: id.0's mask now also skips id.2's patches, so the triplet's
    # gradient reaches id.0's gate through both blends; id.2's own gate runs no op and learns nothing
    _, alone = _light_grads(None)
    model, shared = _light_grads({"id.2": "id.0"})
    assert model.id[2].leader is model.id[0]
    assert shared["id.2"] == 0.0 and alone["id.2"] > 0
    assert all(v > 0 for k, v in shared.items() if k != "id.2"), shared
    assert shared["id.0"] != pytest.approx(alone["id.0"], rel=1e-3)  # the follower's blend adds to the leader's signal


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_block_gates_load_with_their_follow_map_and_refuse_another():
    # weights/everyconv/timm-resnet18/pass_p_block.pt: gates pre-trained with one decision per block; a
    # follower's own gate never learned, so running the checkpoint without the map would be untrained gating
    from passbench.config import load_config
    from passbench.models import build_model
    from passbench.models.checkpoint import CheckpointMismatchError
    from passbench.runner.core import load_weights

    path = ROOT / "configs/everyconv/pass_p_block_r40.yaml"
    cfg = load_config(path)
    model, skippable = load_weights(build_model(cfg.model.name, pretrained=False), ROOT / cfg.model.weights, cfg)
    assert skippable and model.get_submodule("body.layer1.0.conv2").leader.name == "body.layer1.0.conv1"
    assert model.get_submodule("id.2").leader.name == "id.0"
    bad = load_config(path, ["method.params.follow={}"])
    with pytest.raises(CheckpointMismatchError, match="trained with shared decisions"):
        load_weights(build_model(cfg.model.name, pretrained=False), ROOT / bad.model.weights, bad)


@pytest.mark.slow
def test_every_block_gate_of_the_every_conv_model_gets_a_triplet_gradient():
    # the pass_p_block stage: 16 leaders on timm:resnet18's every-conv plan, each learning through its followers
    from passbench.models import build_model
    from tests.test_pass_p import _triplet_grads

    torch.manual_seed(0)
    model = build_model("timm:resnet18", pretrained=False).eval()
    plan = every_conv(model, (3, 224, 384), (8, 4))
    follow = block_followers(model, plan)
    for m in model.modules():  # timm zero-initialises each block's last BN: a trained model's are not zero
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    skip.make_skippable(model, "pass_p", execution="reference", embed_dim=8, hidden=16, min_patches=16,
                        follow=follow, **plan.params())
    g = torch.Generator().manual_seed(1)
    x_prev = torch.rand(2, 3, 224, 384, generator=g)
    x = (x_prev + 0.3 * torch.rand(2, 3, 224, 384, generator=g)).clamp(0, 1)
    grads = _triplet_grads(model, {"prev": x_prev, "img": x}, ("hm", "wh", "reg", "id"))
    leaders = {n: v for n, v in grads.items() if n not in follow}
    assert len(leaders) == 16 and all(v > 0 for v in leaders.values()), leaders
    assert all(grads[f] == 0.0 for f in follow)



def test_pre_training_with_a_follow_map_stores_it_and_reports_leaders_only(tmp_path, task_ckpt):  # noqa: F811
    from passbench.train.common import read_final
    from passbench.train.pass_p import gate_signal, train_pass_p

    follow = {"body.6": "body.3"}  # both on the stride-4 map, patch 4
    gate = {"embed_dim": 8, "depth": 1, "hidden": 16, "min_patches": 4, "follow": follow}
    final = train_pass_p(_pp_cfg(task_ckpt, skip_params=gate), tmp_path / "pp", stores=[_store()])["final"]
    ck = read_final(final)
    assert ck["skip"]["params"]["follow"] == follow
    res = gate_signal(_pp_cfg(str(final)), batches=1, stores=[_store()])
    assert "body.3" in res["gates"] and "body.6" not in res["gates"]  # a follower has no signal of its own
    assert res["gates"]["body.3"]["triplet"] > 0
