"""MAC accounting: PASS Eq. 1-3 on hand-worked numbers; dense / executed / gate MACs against
torch.utils.flop_counter; count_macs against a hand count."""

import pytest
import torch
import torchvision
from torch import nn

from passbench import skip
from passbench.metrics.cost import count_macs, macs_by_module
from passbench.skip.macs import eq1_vanilla_macs, eq2_patch_skip_rate, eq3_mac_reduction


def test_eq1_vanilla_macs_hand_worked():
    # 3x3 kernel, stride 1, 6x6 input -> 4x4 outputs of 9 MACs = 144
    assert eq1_vanilla_macs(6, 6, 3, 1) == 144
    # K = S = P (patch embedding): MAC = Xw * Xh (the paper's simplification)
    assert eq1_vanilla_macs(8, 12, 4, 4) == 96
    # 3x3, stride 2, 7x5 input -> 3x2 outputs of 9 MACs = 54
    assert eq1_vanilla_macs(7, 5, 3, 2) == 54


def test_eq2_eq3_hand_worked():
    # 8x8 input, 2x2 patches (K = S = 2): 16 patches; skipping 4 covers 16 of 64 pixels
    assert eq2_patch_skip_rate(4, 2, 8, 8) == 0.25
    # Eq. 3 with K = S: 1 - 4 * (64 - 16) / (4 * 8 * 8) = 0.25 = R_p
    assert eq3_mac_reduction(4, 2, 2, 8, 8) == 0.25
    assert eq3_mac_reduction(0, 2, 2, 8, 8) == 0.0
    assert eq3_mac_reduction(16, 2, 2, 8, 8) == 1.0
    # K = 3, S = 1 on 6x6, N = 2: 1 - 1 * (36 - 18) / (9 * 4 * 4) = 1 - 18 / 144 = 0.875
    assert eq3_mac_reduction(2, 3, 1, 6, 6) == pytest.approx(0.875)


def test_count_macs_hand_count():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    x = torch.rand(2, 3, 16, 12)
    conv1 = 2 * 8 * 16 * 12 * 3 * 9  # B Cout Ho Wo Cin k^2
    conv2 = 2 * 8 * 8 * 6 * 2 * 9  # groups 4: Cin / g = 2, stride 2 -> 8x6
    fc = 2 * 8 * 5
    assert count_macs(model, x) == conv1 + conv2 + fc
    per = macs_by_module(model, x)
    assert per["0"] == conv1 and per["2"] == conv2 and per["5"] == fc and per[""] == conv1 + conv2 + fc


def test_mac_counts_are_ints_keyed_by_every_module_and_print_nothing(capsys):
    # FlopCounterMode's keys ("Global", the root "Sequential", "Sequential.1.0", ...) become qualified module
    # names: every module that ran, the root as "" once, no other key; counts are whole MACs (ints), and the
    # counter prints no table (it is used inside runs whose stdout is the result).
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Conv2d(4, 2, 1)))
    x = torch.zeros(1, 3, 5, 5)
    per = macs_by_module(model, x)
    # conv 0: 4 * 3x3 out * 3 * 9 = 972; conv 1.0: 2 * 3x3 * 4 = 72
    assert per == {"": 1044, "0": 972, "1": 72, "1.0": 72}
    assert all(type(v) is int for v in per.values()) and type(count_macs(model, x)) is int
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match=r"^count_macs: pass the model's input tensor\(s\)$"):
        count_macs(model)
    with pytest.raises(ValueError, match=r"^macs_by_module: pass the model's input tensor\(s\)$"):
        macs_by_module(model)


@torch.no_grad()
def test_dense_macs_match_flop_counter_on_resnet18():
    model = torchvision.models.resnet18().eval()
    x = torch.rand(2, 3, 64, 80)
    per = macs_by_module(model, x)
    conv_macs = sum(per[n] for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert conv_macs == count_macs(model, x) - per["fc"]
    skip.make_skippable(model, "fixed", keep=0.5, patch_size=4)
    with skip.skip_session(model):
        for _ in range(3):
            model(x)
    st = skip.collect_stats(model)
    assert st["dense_macs"] == 3 * conv_macs
    rows = {r["name"]: r for r in st["layers"]}
    assert rows["layer1.0.conv1"]["dense_macs"] == 3 * per["layer1.0.conv1"]


@pytest.mark.parametrize("execution", ["sparse", "reference"])
@torch.no_grad()
def test_executed_macs_match_what_the_sparse_kernel_runs(execution):
    # The sparse path's own convolution (gathered windows) counted by FlopCounterMode is the oracle.
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6))
    x0, x1 = torch.rand(2, 4, 30, 22), torch.rand(2, 4, 30, 22)
    counted = {}
    for ex in ("sparse", execution):
        m = skip.make_skippable(nn.Sequential(*[nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride,
                                                          c.padding, groups=c.groups) for c in model]),
                                "fixed", keep=0.4, seed=1, execution=ex, patch_size=4).eval()
        m(x0)
        fc = FlopCounterMode(display=False)
        with fc:
            m(x1)
        st = skip.collect_stats(m)
        counted[ex] = (fc.get_total_flops() // 2, st)
    flops_sparse, st_sparse = counted["sparse"]
    frame0 = count_macs(model, x0)  # first frame dense
    assert st_sparse["executed_macs"] - frame0 == flops_sparse
    assert counted[execution][1]["executed_macs"] == st_sparse["executed_macs"]
    assert st_sparse["gate_macs"] == 0  # the fixed gate runs no MAC
    assert 0 < st_sparse["patch_skip_rate"] < 1


@torch.no_grad()
def test_pass_gate_macs_hand_count():
    # one 3x3 conv 4 -> 6 on 16x16, patch 4 -> grid 4x4; gate: embed (2*4 -> C=8, k=s=4), 2 mixer
    # blocks (dw 3x3 + pw 1x1), head 1x1 8 -> 16 -> 1; all on the 4x4 grid, B = 1
    model = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), "pass", patch_size=4,
                                embed_dim=8, depth=2, hidden=16, rates=0.5).eval()
    model(torch.rand(1, 4, 16, 16))
    model(torch.rand(1, 4, 16, 16))
    n = 4 * 4
    expect = n * 8 * 8 * 4 * 4 + 2 * (n * 8 * 9 + n * 8 * 8) + n * 16 * 8 + n * 1 * 16
    st = skip.collect_stats(model)
    assert st["gate_macs"] == expect
    assert st["mac_reduction"] == pytest.approx(1 - (st["executed_macs"] + expect) / st["dense_macs"])


@torch.no_grad()
def test_gate_counting_does_not_double_count_under_an_outer_counter():
    model = skip.make_skippable(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), "pass", patch_size=4,
                                embed_dim=8, hidden=16, rates=0.5, execution="reference").eval()
    x = torch.rand(1, 4, 16, 16)
    model(x)
    outer = count_macs(model, x)  # the gate is counted by its own inner FlopCounterMode as well
    st = skip.collect_stats(model)
    assert outer == 6 * 16 * 16 * 4 * 9 + st["gate_macs"]


def test_dense_and_block_sparse_macs_hand_worked():
    from passbench.skip.macs import conv_dense_macs, sparse_equivalent_macs

    conv = nn.Conv2d(4, 6, 3, padding=1)
    # dense: B Cout Hout Wout Cin kh kw = 6 * 8 * 8 * 4 * 9 = 13824 per sample (batch 1 by default)
    assert conv_dense_macs(conv, (8, 8)) == 13824 and conv_dense_macs(conv, (8, 8), 2) == 27648
    # block-sparse, patch 4 on an 8x8 map, batch 2 (8 patches): one active patch = 4 * 4 * 6 * 4 * 9 = 3456;
    # none: 0; all: the dense conv of the whole batch
    assert [sparse_equivalent_macs(conv, (8, 8), 2, n, 8, 4) for n in (0, 1, 3, 8)] == [0, 3456, 3 * 3456, 27648]


@torch.no_grad()
def test_collect_stats_rows_hand_worked():
    # Two convs skipping every patch (fixed gate, keep 0) on the sparse path, batch 2 of 16x16 frames, 3 frames:
    # frame 0 runs dense (no previous frame), frames 1-2 skip all 16 patches of each sample.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1))
    skip.make_skippable(model, "fixed", keep=0.0, patch_size=4, execution="sparse")
    for t in range(3):
        model(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(t)))
    st = skip.collect_stats(model)
    d0, d1 = 2 * 16 * 16 * 4 * 3 * 9, 2 * 16 * 16 * 2 * 4  # dense MACs per frame of each layer (batch 2)
    want = [("0", d0), ("1", d1)]
    for row, (name, d) in zip(st["layers"], want):
        assert (row["name"], row["patch"], row["frames"], row["gated_frames"]) == (name, 4, 3, 2)
        assert (row["dense_macs"], row["executed_macs"], row["gate_macs"]) == (3 * d, d, 0)
        assert (row["px_gated"], row["px_skipped"], row["px_total"]) == (2 * 512, 2 * 512, 3 * 512)
        assert row["patch_skip_rate"] == 1.0 and row["mac_reduction"] == pytest.approx(2 / 3)
        assert row["mask_macs"] == d  # what the kernel computes for the masks: the dense frame, then nothing
    assert st["frames"] == 3 and (st["dense_macs"], st["executed_macs"]) == (3 * (d0 + d1), d0 + d1)
    assert st["patch_skip_rate"] == 1.0 and st["patch_skip_rate_all_frames"] == pytest.approx(2 / 3)
    assert st["mac_reduction"] == pytest.approx(2 / 3) and st["mac_reduction_convs"] == pytest.approx(2 / 3)
    assert st["mask_macs"] == d0 + d1
    # before any gated frame: no rate, no reduction (not a division by zero); a model with no wrapped conv: zeros
    skip.reset(model)
    model(torch.rand(2, 3, 16, 16))
    st = skip.collect_stats(model)
    assert [(r["gated_frames"], r["patch_skip_rate"], r["mac_reduction"]) for r in st["layers"]] == [(0, 0.0, 0.0)] * 2
    assert (st["frames"], st["patch_skip_rate"], st["patch_skip_rate_all_frames"], st["mac_reduction"]) == (1, 0, 0, 0)
    # wrapped convs that have not run a frame yet (after reset): every row and total zero, no division by zero
    skip.reset(model)
    st = skip.collect_stats(model)
    assert [(r["frames"], r["patch_skip_rate"], r["mac_reduction"]) for r in st["layers"]] == [(0, 0.0, 0.0)] * 2
    assert (st["frames"], st["patch_skip_rate"], st["patch_skip_rate_all_frames"], st["mac_reduction"],
            st["mac_reduction_convs"]) == (0, 0.0, 0.0, 0.0, 0.0)
    empty = skip.collect_stats(nn.Sequential(nn.ReLU()))
    assert empty["layers"] == [] and (empty["frames"], empty["dense_macs"], empty["mask_macs"]) == (0, 0, 0)
    assert (empty["patch_skip_rate"], empty["mac_reduction"], empty["mac_reduction_convs"]) == (0.0, 0.0, 0.0)


@torch.no_grad()
def test_collect_stats_charges_the_gate_cost():
    # A PASS gate costs MACs; mac_reduction charges them (1 - (executed + gate) / dense), mac_reduction_convs
    # does not (1 - executed / dense). With every patch computed (threshold 1.1: nothing exceeds it) executed =
    # dense, so mac_reduction = -gate / dense exactly and mac_reduction_convs = 0.
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    skip.make_skippable(model, "pass", patch_size=4, execution="sparse", rule="threshold", threshold=1.1,
                        embed_dim=8, hidden=16, min_patches=4)
    model.eval()
    for t in range(2):
        model(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(t)))
    st = skip.collect_stats(model)
    row = st["layers"][0]
    d = 2 * 16 * 16 * 4 * 3 * 9
    assert (row["dense_macs"], row["executed_macs"]) == (d, d) and row["gate_macs"] > 0
    assert row["mac_reduction"] == pytest.approx(-row["gate_macs"] / d) and st["mac_reduction_convs"] == 0.0
    assert st["mac_reduction"] == pytest.approx(-st["gate_macs"] / d)
