"""notebooks/: committed without outputs, and the leaderboard notebook's "Add your backbone" section run
end to end on a tiny timm backbone with a small budget, into a temporary results folder."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from passbench import records as R
from passbench.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.slow
def test_leaderboard_notebook_adds_a_tiny_backbone(tmp_path, monkeypatch):
    """~1 min on 2 cores: 2 training steps per stage on the synthetic store, 4 eval frames per row."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from test_leaderboard import SMOKE_EVAL, SMOKE_TRAIN, TINY
    from test_records import fixture_run

    res = tmp_path / "results"
    for exp in ("table3/dense_light", "table3/pass_f"):  # an existing backbone beside the new one
        r = fixture_run(exp)
        r["method"]["name"] = exp.split("/")[1].replace("_light", "")
        R.append_record(res / "records" / "table3.jsonl", r)
    committed = _digest(REPO_ROOT / "results")
    train = [a for k, v in SMOKE_TRAIN.items() for a in ("--train", f"{k}={json.dumps(v)}")]
    monkeypatch.setenv("PASSBENCH_RESULTS", str(res))
    monkeypatch.setenv("PASSBENCH_LB_BACKBONE", TINY)
    monkeypatch.setenv("PASSBENCH_LB_BUDGET_MIN", "0.2")
    monkeypatch.setenv("PASSBENCH_LB_OUT", str(tmp_path / "train"))
    monkeypatch.setenv("PASSBENCH_LB_ARGS", shlex.join([*SMOKE_EVAL, "--max-steps", "2", *train]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the kernel imports this checkout's passbench
    nb = nbformat.read(REPO_ROOT / "notebooks" / "leaderboard.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outs)
    assert f"{TINY}: 4 leaderboard rows (dense, pass_f, pass_p, skipconv)" in text
    assert text.count(f"leaderboard/{TINY}/") >= 4  # the command's one line per row
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 3  # Pareto plots before and after, Figure 5
    recs = R.read_records(res / "records" / "leaderboard.jsonl")
    assert sorted(r["method"]["name"] for r in recs) == ["dense", "pass_f", "pass_p", "skipconv"]
    assert _digest(REPO_ROOT / "results") == committed  # nothing written into the committed results/
