"""Engine benchmark plumbing (``passbench.bench``): network names and the end-to-end table, on tiny
synthetic frames (no timing is asserted, only what the rows hold)."""

from __future__ import annotations

import math

import torch

from passbench import bench


def test_build_net_takes_torchvision_and_passbench_names():
    assert not bench.build_net("resnet18").training
    net = bench.build_net("fairmot_mbv2")
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 96))
    assert set(out) == {"hm", "wh", "reg", "id"}


def test_run_e2e_rows(monkeypatch):
    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "sparse")  # no per-shape calibration (seconds per layer)
    g = torch.Generator().manual_seed(0)
    monkeypatch.setattr(bench, "load_frames", lambda n, size, data_root=None: [
        torch.rand(1, 3, size[1], size[0], generator=g) for _ in range(n)])
    rows = bench.run_e2e(frames=4, size=(64, 48), nets=("resnet18",), keeps=(0.5, 1.0), hooks=False, norm=False,
                         fold=True)
    names = [r["variant"] for r in rows]
    assert names == ["dense nchw", "dense channels-last", "fixed k=0.5 sparse", "fixed k=0.5 auto",
                     "fixed k=0.5 auto alias", "fixed k=1.0 sparse", "fixed k=1.0 auto", "fixed k=1.0 auto alias"]
    dense = {r["variant"]: r for r in rows if r["variant"].startswith("dense")}
    assert all(math.isnan(r["ratio"]) and r["mac_reduction"] == 1.0 for r in dense.values())
    assert max(r["speedup"] for r in dense.values()) == 1.0  # the best dense layout is the baseline
    sparse = rows[2]
    # random masks at keep 0.5 on every conv: patch skip rate ~0.5, executed MACs well under dense
    assert 0.3 < sparse["skip"] < 0.7 and sparse["mac_reduction"] > 1.2
    # keep 1.0 computes every patch: executed MACs = dense MACs over the counted frames (a fixed gate costs
    # nothing), so the reduction is exactly 1 and nothing is skipped, on either path
    for r in rows[5:]:
        assert r["skip"] == 0.0 and r["mac_reduction"] == 1.0, r
    # the aliased twin of "auto" runs the same masks: same skip rate and MACs
    assert rows[4]["skip"] == rows[3]["skip"] and rows[4]["mac_reduction"] == rows[3]["mac_reduction"]


def test_engine_hooks_count_kept_outputs_modified_in_place(monkeypatch):
    # The kernel-only hooks keep each conv's returned output as its next reference: exact only when no op
    # writes into it. Behind an in-place ReLU (BatchNorm folded) every later frame finds it modified; behind
    # a BatchNorm (as built) never.
    from torch import nn

    monkeypatch.setenv("PASSBENCH_SPARSE_DISPATCH", "sparse")
    frames = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    for tail, want in ((nn.ReLU(inplace=True), 3), (nn.BatchNorm2d(8).eval(), 0), (nn.ReLU(), 0)):
        net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), tail).eval()
        counters = bench.attach_engine_hooks(net, keep=0.5, patch=8)
        with torch.no_grad():
            for x in frames:
                net(x)
        assert counters[0]["overwritten"] == want, tail
