"""passbench.runner on the sample data: a real MOT row end to end, and the record arithmetic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from passbench import records as R
from passbench import runner
from passbench.runner.core import cost_from_stats
from passbench.runner.mot import frames_for
from passbench.config import load_config
from passbench.paths import REPO_ROOT, DataRootError, resolve_data_root

try:
    DATA = resolve_data_root(None)
except DataRootError:
    DATA = None
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "MOT15" / "train" / "TUD-Campus").is_dir(),
                                reason="sample data (../shared/data) not present")


def _cfg(name: str, *overrides: str):
    return load_config(REPO_ROOT / "configs" / name, list(overrides))


def test_sample_split_frames() -> None:
    """PETS09-S2L1 and TUD-Stadtmitte are evaluated on their second halves, TUD-Campus whole."""
    cfg = _cfg("table3/dense_light.yaml")

    class Seq:
        def __init__(self, name, n):
            self.name, self.num_frames = name, n

    assert frames_for(cfg, Seq("PETS09-S2L1", 795)) == range(398, 796)
    assert frames_for(cfg, Seq("TUD-Stadtmitte", 179)) == range(90, 180)
    assert frames_for(cfg, Seq("TUD-Campus", 71)) is None
    with pytest.raises(ValueError, match="halves.TUD-Campus"):  # refused when the config is resolved
        _cfg("table3/dense_light.yaml", "dataset.halves={TUD-Campus: second}")


def test_cost_per_frame_from_layer_counters() -> None:
    """Whole-net executed GMACs = dense - (wrapped dense - wrapped executed), per tracked frame."""
    layer = {"px_gated": 100, "px_skipped": 40, "px_total": 160}
    stats = [{"frames": 2, "dense_macs": 2e9, "executed_macs": 1e9, "gate_macs": 0.2e9, "mask_macs": 0.8e9,
              "layers": [layer]},
             {"frames": 2, "dense_macs": 2e9, "executed_macs": 0.6e9, "gate_macs": 0.2e9, "mask_macs": 0.6e9,
              "layers": [layer]}]
    c = cost_from_stats(stats, True, gmacs_dense=1.5)
    assert c["frames"] == 4
    assert c["gmacs_wrapped_dense"] == pytest.approx(1.0)
    assert c["gmacs_executed"] == pytest.approx(1.5 - (1.0 - 0.4))
    assert c["gate_gmacs"] == pytest.approx(0.1)
    assert c["patch_skip_rate"] == pytest.approx(0.25)  # all frames: 80 of 320 pixels
    assert c["patch_skip_rate_gated_frames"] == pytest.approx(0.4)
    assert c["gmacs_if_all_sparse"] == pytest.approx(1.5 - (1.0 - 0.35))
    assert c["mac_reduction"] == pytest.approx(1 - (0.9 + 0.1) / 1.5)
    d = cost_from_stats([], False, gmacs_dense=1.5)
    assert d["gmacs_executed"] == 1.5 and d["patch_skip_rate"] == 0.0


def test_dense_twin_has_plain_convs_and_same_output() -> None:
    from passbench import skip

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    x = torch.rand(1, 3, 16, 16)
    want = net(x)
    skip.make_skippable(net, "fixed", keep=0.0, patch_size=4)
    twin = skip.dense_twin(net)
    assert not skip.skippable_layers(twin) and skip.skippable_layers(net)
    torch.testing.assert_close(twin(x), want)


@needs_data
def test_skipconv_row_end_to_end_on_tud_campus(tmp_path: Path, capsys) -> None:
    """A real row: untrained light model, norm gates at a fixed threshold, 12 TUD-Campus frames.

    Checks the record is complete and consistent, not the (meaningless, untrained) MOTA; the data
    root is stored as named (relative to the checkout), never as this machine's absolute path; a
    progress bar over the tracked frames goes to stderr when asked for."""
    cfg = _cfg("table3/skipconv.yaml", "model.weights=null", "dataset.sequences=[TUD-Campus]",
               "dataset.frames=[1,12]", "speed.iters=3", "speed.warmup=1", "speed.threads=1",
               "method.params={thresholds: 0.05, layers: ['neck.*', 'hm.*', 'wh.*', 'reg.*', 'id.*']}")
    rec = runner.run(cfg, data_root=DATA, results=tmp_path, progress=True)
    assert "12/12" in capsys.readouterr().err
    (again,) = R.read_records(tmp_path / "records" / "table3.jsonl")
    assert again["run_id"] == rec["run_id"] and rec["kind"] == "run"
    m, c, s = rec["metrics"], rec["cost"], rec["speed"]
    assert m["num_frames"] == 12 and m["num_gt"] > 0 and set(m["per_sequence"]) == {"TUD-Campus"}
    assert c["frames"] == 12
    assert 0 < c["patch_skip_rate"] <= 1 and 0 < c["gmacs_executed"] < c["gmacs_dense"]
    assert s["fps"] > 0 and s["fps_dense"] > 0 and s["speedup"] == pytest.approx(s["fps"] / s["fps_dense"])
    assert s["threads"] == 1 and rec["dataset"]["frames_used"] == {"TUD-Campus": [1, 12]}
    assert rec["dataset"]["data_root"] == os.path.relpath(DATA, REPO_ROOT)
    assert not os.path.isabs(rec["dataset"]["data_root"])
