"""Official FairMOT checkpoint layout -> passbench models (``passbench.models.checkpoint``).

The key list below is written from the structure of ``ifzhang/FairMOT`` ``pose_dla_dcn.py`` /
``pose_dla_conv.py`` (``DLA``, ``Tree``, ``BasicBlock``, ``Root``, ``DLAUp``, ``IDAUp``, ``DeformConv``,
``DCN``, ``DLASeg`` heads), independently of the model code, including the 12 ``level{3,4}.project.*``
keys the official DLA builds for level-2 trees.
"""

from __future__ import annotations

import pytest
import torch

from passbench.models import build_model
from passbench.models.checkpoint import CheckpointMismatchError, load_checkpoint, read_state_dict


def _bn(p, c):
    return {f"{p}.weight": (c,), f"{p}.bias": (c,), f"{p}.running_mean": (c,), f"{p}.running_var": (c,),
            f"{p}.num_batches_tracked": ()}


def _block(p, cin, cout):  # BasicBlock(inplanes, planes, stride): conv1, bn1, conv2, bn2
    return {f"{p}.conv1.weight": (cout, cin, 3, 3), **_bn(f"{p}.bn1", cout),
            f"{p}.conv2.weight": (cout, cout, 3, 3), **_bn(f"{p}.bn2", cout)}


def _tree(p, levels, cin, cout, level_root=False, root_dim=0):
    """FairMOT ``Tree.__init__``: root_dim defaults to 2*out (+in when level_root); project when in != out."""
    if root_dim == 0:
        root_dim = 2 * cout
    if level_root:
        root_dim += cin
    keys = {}
    if levels == 1:
        keys.update(_block(f"{p}.tree1", cin, cout))
        keys.update(_block(f"{p}.tree2", cout, cout))
        keys.update({f"{p}.root.conv.weight": (cout, root_dim, 1, 1), **_bn(f"{p}.root.bn", cout)})
    else:
        keys.update(_tree(f"{p}.tree1", levels - 1, cin, cout, root_dim=0))
        keys.update(_tree(f"{p}.tree2", levels - 1, cout, cout, root_dim=root_dim + cout))
    if cin != cout:  # official: built for every tree, used only by level-1 trees
        keys.update({f"{p}.project.0.weight": (cout, cin, 1, 1), **_bn(f"{p}.project.1", cout)})
    return keys


def official_base_keys():
    """``dla34(pretrained=False)``: DLA([1,1,1,2,2,1], [16,32,64,128,256,512], BasicBlock), prefix ``base.``."""
    k = {"base.base_layer.0.weight": (16, 3, 7, 7), **_bn("base.base_layer.1", 16),
         "base.level0.0.weight": (16, 16, 3, 3), **_bn("base.level0.1", 16),
         "base.level1.0.weight": (32, 16, 3, 3), **_bn("base.level1.1", 32)}
    k.update(_tree("base.level2", 1, 32, 64, level_root=False))
    k.update(_tree("base.level3", 2, 64, 128, level_root=True))
    k.update(_tree("base.level4", 2, 128, 256, level_root=True))
    k.update(_tree("base.level5", 1, 256, 512, level_root=True))
    return k


def _deform(p, chi, cho, dcn):
    k = {**_bn(f"{p}.actf.0", cho), f"{p}.conv.weight": (cho, chi, 3, 3)}
    if dcn:  # DCNv2 DCN: bias + conv_offset_mask (3 * 3 * 3 = 27 channels)
        k.update({f"{p}.conv.bias": (cho,), f"{p}.conv.conv_offset_mask.weight": (27, chi, 3, 3),
                  f"{p}.conv.conv_offset_mask.bias": (27,)})
    return k


def _ida(p, o, channels, up_f, dcn):
    k = {}
    for i in range(1, len(channels)):
        f = up_f[i]
        k.update(_deform(f"{p}.proj_{i}", channels[i], o, dcn))
        k[f"{p}.up_{i}.weight"] = (o, 1, 2 * f, 2 * f)
        k.update(_deform(f"{p}.node_{i}", o, o, dcn))
    return k


def official_dlaseg_keys(dcn=True):
    """Every key of FairMOT ``DLASeg('dla34', heads={hm:1, wh:4, id:128, reg:2}, head_conv=256)``."""
    k = official_base_keys()
    # DLAUp(2, [64,128,256,512], [1,2,4,8]) worked out by hand:
    k.update(_ida("dla_up.ida_0", 256, [256, 512], [1, 2], dcn))
    k.update(_ida("dla_up.ida_1", 128, [128, 256, 256], [1, 2, 2], dcn))
    k.update(_ida("dla_up.ida_2", 64, [64, 128, 128, 128], [1, 2, 2, 2], dcn))
    k.update(_ida("ida_up", 64, [64, 128, 256], [1, 2, 4], dcn))
    for head, c in {"hm": 1, "wh": 4, "id": 128, "reg": 2}.items():
        k.update({f"{head}.0.weight": (256, 64, 3, 3), f"{head}.0.bias": (256,),
                  f"{head}.2.weight": (c, 256, 1, 1), f"{head}.2.bias": (c,)})
    return k


DEAD = [k for k in official_base_keys() if k.startswith(("base.level3.project.", "base.level4.project."))]


def _random_state(keys, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 100, s, generator=g) if k.endswith("num_batches_tracked")
                else torch.randn(s, generator=g)) for k, s in keys.items()}


@pytest.fixture(scope="module")
def dla_dcn():
    return build_model("fairmot_dla34")


@pytest.mark.parametrize("name,dcn", [("fairmot_dla34", True), ("fairmot_dla34_conv", False)])
def test_official_layout_loads_exactly(tmp_path, name, dcn):
    keys = official_dlaseg_keys(dcn)
    assert len(DEAD) == 12
    sd = _random_state(keys)
    # As saved by FairMOT's save_model around a DataParallel model.
    path = tmp_path / "fairmot.pth"
    torch.save({"epoch": 30, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    model = build_model(name)
    rep = load_checkpoint(model, path)
    assert sorted(rep.unused) == sorted(DEAD)
    assert rep.missing == ()
    assert rep.loaded == len(keys) - 12
    msd = model.state_dict()
    assert set(msd) == set(keys) - set(DEAD)  # the model has exactly the official keys, minus the dead ones
    for k in msd:
        torch.testing.assert_close(msd[k], sd[k], rtol=0, atol=0)


def test_loaded_model_runs_and_uses_weights(dla_dcn):
    sd = {k: v * 0.05 if v.is_floating_point() else v for k, v in _random_state(official_dlaseg_keys(True), 1).items()}
    for k in sd:
        if k.endswith("running_var"):
            sd[k] = sd[k].abs() + 1.0
    load_checkpoint(dla_dcn, sd)
    torch.testing.assert_close(dla_dcn.hm[2].bias, sd["hm.2.bias"])
    out = dla_dcn.eval()(torch.rand(1, 3, 64, 96))
    assert out["id"].shape == (1, 128, 16, 24) and torch.isfinite(out["id"]).all()


def test_shape_mismatch_error_names_file_key_and_shapes(tmp_path, dla_dcn):
    sd = _random_state(official_dlaseg_keys(True))
    sd["hm.2.weight"] = torch.zeros(2, 256, 1, 1)  # a 2-class checkpoint
    sd["hm.2.bias"] = torch.zeros(2)
    path = tmp_path / "two_class.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(dla_dcn, path)
    msg = str(e.value)
    assert "two_class.pth" in msg and "hm.2.weight" in msg and "(2, 256, 1, 1)" in msg and "(1, 256, 1, 1)" in msg


def test_dcn_checkpoint_into_conv_model_lists_unexpected_keys():
    sd = _random_state(official_dlaseg_keys(True))
    model = build_model("fairmot_dla34_conv")
    with pytest.raises(CheckpointMismatchError, match=r"unexpected in checkpoint: .*conv_offset_mask"):
        load_checkpoint(model, sd)


def test_missing_key_is_an_error_but_num_batches_tracked_is_not(dla_dcn):
    sd = _random_state(official_dlaseg_keys(True))
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # pre-1.0 PyTorch checkpoint
    rep = load_checkpoint(dla_dcn, old)
    assert rep.missing and all(k.endswith("num_batches_tracked") for k in rep.missing)
    del old["ida_up.node_2.conv.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"1 missing in checkpoint: ida_up.node_2.conv.weight"):
        load_checkpoint(dla_dcn, old)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointMismatchError, match="x.pth: not a state dict"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.pth")


def test_dense_checkpoint_into_skippable_model():
    skip = pytest.importorskip("passbench.skip")
    keys = official_dlaseg_keys(False)
    sd = _random_state(keys)
    model = skip.make_skippable(build_model("fairmot_dla34_conv"), "dense")
    rep = load_checkpoint(model, sd)
    assert rep.loaded == len(keys) - 12
    torch.testing.assert_close(model.ida_up.node_2.conv.conv.weight, sd["ida_up.node_2.conv.weight"])
    torch.testing.assert_close(model.hm[0].conv.bias, sd["hm.0.bias"])


# Upstream DLA.load_pretrained_model (called by dla34(pretrained=True) inside get_pose_net) attaches
# fc = Conv2d(channels[-1] = 512, num_classes, 1, bias=True), num_classes = 1000 ImageNet classes.
IMAGENET_FC = {"base.fc.weight": (1000, 512, 1, 1), "base.fc.bias": (1000,)}


@pytest.mark.parametrize("name,dcn", [("fairmot_dla34", True), ("fairmot_dla34_conv", False)])
def test_official_checkpoint_with_imagenet_fc_loads(tmp_path, name, dcn):
    """fairmot_dla34.pth / all_dla34.pth carry base.fc.*: expected unused, like FairMOT's own loader."""
    keys = {**official_dlaseg_keys(dcn), **IMAGENET_FC}
    sd = _random_state(keys, seed=3)
    path = tmp_path / "fairmot_dla34.pth"
    torch.save({"epoch": 30, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    model = build_model(name)
    rep = load_checkpoint(model, path)
    assert sorted(rep.unused) == sorted(DEAD + list(IMAGENET_FC))
    assert rep.loaded == len(keys) - 12 - 2 and rep.missing == ()
    torch.testing.assert_close(model.state_dict()["base.level5.tree2.conv2.weight"], sd["base.level5.tree2.conv2.weight"])


@pytest.mark.parametrize("name,dcn", [("fairmot_dla34", True), ("fairmot_dla34_conv", False)])
@pytest.mark.parametrize("imagenet_fc", [True, False])
def test_export_has_exactly_the_official_keys_and_round_trips(tmp_path, name, dcn, imagenet_fc):
    from passbench.models.checkpoint import save_fairmot_checkpoint

    official = {**official_dlaseg_keys(dcn), **(IMAGENET_FC if imagenet_fc else {})}
    sd = _random_state(official_dlaseg_keys(dcn), seed=5)
    model = build_model(name)
    load_checkpoint(model, sd)
    path = save_fairmot_checkpoint(model, tmp_path / "out.pth", epoch=7, imagenet_fc=imagenet_fc)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    out = ck["state_dict"]
    assert ck["epoch"] == 7
    # what a strict load into the official DLASeg checks: the same keys, the same shapes
    assert {k: tuple(v.shape) for k, v in out.items()} == official
    for k, v in sd.items():
        if k not in DEAD:
            torch.testing.assert_close(out[k], v, rtol=0, atol=0, msg=k)
    # dead tensors: an identity BN and zeros, finite (the official forward computes the projections)
    assert all(torch.isfinite(out[k].float()).all() for k in DEAD)
    assert torch.equal(out["base.level3.project.1.running_var"], torch.ones(128))
    again = build_model(name)
    rep = load_checkpoint(again, path)
    assert rep.missing == ()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=0)


def test_export_undoes_skip_wrappers_and_refuses_folded_bn():
    from passbench.models.checkpoint import export_fairmot_state_dict

    skip = pytest.importorskip("passbench.skip")
    sd = _random_state(official_dlaseg_keys(False), seed=6)
    model = build_model("fairmot_dla34_conv")
    load_checkpoint(model, sd)
    want = export_fairmot_state_dict(model)
    skip.make_skippable(model, "skipconv", thresholds=0.1, layers=["ida_up.*", "hm.*"])
    assert "ida_up.node_2.conv.conv.weight" in model.state_dict()
    got = export_fairmot_state_dict(model)
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    skip.fold_batchnorm(model.eval())
    with pytest.raises(ValueError, match=r"BatchNorm folded\?.*running_mean"):
        export_fairmot_state_dict(model)
    with pytest.raises(ValueError, match="expected a FairMOT DLA-34"):
        export_fairmot_state_dict(torch.nn.Conv2d(3, 3, 1))
