"""``passbench regress``: verdicts, blessing with a recorded reason, and that it fails when the
weights or a gate threshold change (real pipeline, committed weights, a temp copy perturbed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from passbench import regress
from passbench.cli import main
from passbench.paths import REPO_ROOT, DataRootError, resolve_data_root
from test_records import fixture_run

try:
    HAVE_DATA = (resolve_data_root(None) / "MOT15" / "train" / "TUD-Stadtmitte").is_dir()
except DataRootError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="sample data (../shared/data) not present")


def test_verdicts_and_table() -> None:
    rows = [regress.Row("a", "mota", 0.5, 0.5, 0.0), regress.Row("a", "ids", 3, 4, 0.0),
            regress.Row("a", "idf1", 0.5, 0.5004, 0.001), regress.Row("b", "mota", None, 0.5, 0.0),
            regress.Row("b", "idf1", 0.5, None, 0.0)]
    assert [r.verdict for r in rows] == ["ok", "DRIFT", "ok", "NO GOLDEN", "MISSING"]
    table = regress.render(rows)
    assert table.splitlines()[0].split() == ["case", "metric", "golden", "now", "tolerance", "verdict"]
    assert "a     ids     3         4         0          DRIFT" in table


def _fake(monkeypatch, values: dict[str, dict]) -> None:
    """regress.measure returns fixture run records carrying ``values[case]`` (no model is run); the
    cases are those named in ``values`` (the MOT cases; the pose cases have their own record shape)."""
    monkeypatch.setattr(regress, "CASES", tuple(c for c in regress.CASES if c.name in values))
    def measure(case, overrides=(), data_root=None, progress=None):
        v = values[case.name]
        return fixture_run(f"table3/{case.name}", metrics__mota=v["mota"], metrics__idf1=v["idf1"],
                           metrics__ids=v["ids"], cost__patch_skip_rate=v["skip"], cost__gmacs_executed=v["gmacs"])

    monkeypatch.setattr(regress, "measure", measure)


GOOD = {"dense": dict(mota=0.5, idf1=0.6, ids=3, skip=0.0, gmacs=1.0),
        "skipconv": dict(mota=0.49, idf1=0.61, ids=4, skip=0.2, gmacs=0.9),
        "pass_f": dict(mota=0.45, idf1=0.55, ids=5, skip=0.5, gmacs=0.8)}


def test_bless_needs_a_reason_records_it_and_drift_exits_1(tmp_path: Path, monkeypatch, capsys) -> None:
    golden = tmp_path / "golden.json"
    _fake(monkeypatch, GOOD)
    assert main(["regress", "--golden", str(golden)]) == 1  # never blessed: NO GOLDEN fails CI
    assert "NO GOLDEN" in capsys.readouterr().out
    assert main(["regress", "--golden", str(golden), "--update"]) == 2
    assert "--update needs --reason" in capsys.readouterr().err and not golden.exists()
    assert main(["regress", "--golden", str(golden), "--update", "--reason", "first blessing"]) == 0
    data = json.loads(golden.read_text())
    assert data["cases"]["pass_f"]["values"] == {"mota": 0.45, "idf1": 0.55, "ids": 5, "patch_skip_rate": 0.5,
                                                 "gmacs_executed": 0.8}
    blessed = data["cases"]["pass_f"]["blessed"]
    assert blessed["reason"] == "first blessing" and blessed["utc"] and "git_sha" in blessed
    assert data["history"][-1]["reason"] == "first blessing" and data["history"][-1]["cases"] == sorted(GOOD)
    capsys.readouterr()
    assert main(["regress", "--golden", str(golden)]) == 0
    assert "regress: ok (15 metrics of 3 cases" in capsys.readouterr().out

    drifted = {**GOOD, "pass_f": {**GOOD["pass_f"], "mota": 0.40, "skip": 0.6}}
    _fake(monkeypatch, drifted)
    assert main(["regress", "--golden", str(golden)]) == 1
    cap = capsys.readouterr()
    assert "pass_f: mota, patch_skip_rate" in cap.err and "DRIFT" in cap.out
    assert "first blessing" in cap.out  # the blessing it drifted from is shown
    assert main(["regress", "--golden", str(golden), "--case", "pass_f", "--update", "--reason", "retrained"]) == 0
    data = json.loads(golden.read_text())
    assert data["cases"]["pass_f"]["values"]["mota"] == 0.40 and data["cases"]["dense"]["values"]["mota"] == 0.5
    assert data["history"][-1]["changed"] == {"pass_f": {"mota": [0.45, 0.40], "patch_skip_rate": [0.5, 0.6]}}


def test_bad_use_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["regress", "--case", "nope", "--golden", str(tmp_path / "g.json")]) == 2
    assert "unknown regress case(s) nope; known: dense, skipconv, pass_f" in capsys.readouterr().err
    assert main(["regress", "--update", "--reason", "x", "speed.threads=2", "--golden", str(tmp_path / "g.json")]) == 2
    (tmp_path / "bad.json").write_text("{\n  oops")
    assert main(["regress", "--golden", str(tmp_path / "bad.json")]) == 2
    assert "bad.json:2: not valid JSON" in capsys.readouterr().err


def _perturbed_copy(src: Path, dst: Path, scale: float = 0.3) -> Path:
    """A temp copy of a committed checkpoint with multiplicative noise on every float tensor of the
    model (the committed file is never touched). The copy is self-contained: a delta checkpoint is merged
    with its base chain first (``read_final``) and written without a base."""
    from passbench.train.common import read_final

    ck = {**read_final(src), "base": None, "half": False}
    g = torch.Generator().manual_seed(0)
    ck["model"] = {k: v * (1 + scale * torch.randn(v.shape, generator=g)) if v.is_floating_point() else v
                   for k, v in ck["model"].items()}
    torch.save(ck, dst)
    return dst


SHORT = regress.Case("skipconv_short", "configs/table3/skipconv.yaml",
                     ("dataset.sequences=[TUD-Stadtmitte]", "dataset.halves={}", "dataset.frames=[90,114]",
                      "speed.enabled=false", "speed.threads=1", "method.params.execution=sparse"))


@needs_data
def test_real_pipeline_fails_on_perturbed_weights_and_a_changed_gate_threshold(tmp_path: Path, monkeypatch,
                                                                              capsys) -> None:
    """Bless a short real case (Skip-Conv with the committed weights, 25 frames), then: unchanged ->
    exit 0; a perturbed temp copy of the weights or another norm-gate threshold -> exit 1, naming the
    metrics that moved."""
    monkeypatch.setattr(regress, "CASES", (SHORT,))
    golden = tmp_path / "golden.json"
    assert main(["regress", "--golden", str(golden), "--update", "--reason", "test"]) == 0
    assert main(["regress", "--golden", str(golden)]) == 0
    capsys.readouterr()

    weights = _perturbed_copy(REPO_ROOT / "weights/sample/skipconv.pt", tmp_path / "perturbed.pt")
    assert main(["regress", "--golden", str(golden), f"model.weights={weights}"]) == 1
    cap = capsys.readouterr()
    named = cap.err.split("skipconv_short: ")[1]
    assert "mota" in named or "idf1" in named
    assert "weights changed since the golden was blessed" in cap.out

    assert main(["regress", "--golden", str(golden), "method.params.thresholds=0.1"]) == 1
    assert "patch_skip_rate" in capsys.readouterr().err.split("skipconv_short: ")[1]


@pytest.mark.slow
@needs_data
def test_committed_goldens_catch_perturbed_weights(tmp_path: Path, capsys) -> None:
    """The committed goldens themselves (what .ci/run checks) fail on a perturbed Skip-Conv copy."""
    weights = _perturbed_copy(REPO_ROOT / "weights/sample/skipconv.pt", tmp_path / "perturbed.pt", scale=0.1)
    assert main(["regress", "--case", "skipconv", f"model.weights={weights}"]) == 1
    assert "skipconv: " in capsys.readouterr().err
