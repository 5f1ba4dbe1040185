"""The leaderboard notebook as its users open it: the Jupyter front end the `notebook` extra installs is there
(`jupyter lab`, `jupyter nbconvert`), and `jupyter nbconvert --execute --to html` runs the notebook on a copy of
the committed records and exports it with the paper claims' ids linked to results/claims.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from passbench.paths import REPO_ROOT, RESULTS

JUPYTER = Path(sys.executable).parent / "jupyter"
needs_jupyter = pytest.mark.skipif(not JUPYTER.exists(), reason="no jupyter in this environment (./dev installs it)")


@needs_jupyter
def test_the_front_end_is_installed():
    for sub in ("lab", "nbconvert"):
        res = subprocess.run([str(JUPYTER), sub, "--version"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and re.match(r"\d+\.\d+", res.stdout.strip()), (sub, res.stderr[-500:])


@needs_jupyter
def test_nbconvert_executes_the_notebook_and_links_claim_ids(tmp_path):
    res_dir = tmp_path / "results"
    shutil.copytree(RESULTS / "records", res_dir / "records", ignore=shutil.ignore_patterns("*.lock"))
    work = tmp_path / "notebooks"  # beside results/: the notebook's ../results/claims.md links resolve there
    work.mkdir()
    shutil.copy(REPO_ROOT / "notebooks" / "leaderboard.ipynb", work)
    env = {**os.environ, "PASSBENCH_RESULTS": str(res_dir), "MPLBACKEND": "Agg",
           "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}  # this checkout's passbench
    env.pop("PASSBENCH_LB_BACKBONE", None)  # add no backbone
    committed = {p: p.read_bytes() for p in (RESULTS / "figures").iterdir()}
    res = subprocess.run([str(JUPYTER), "nbconvert", "--to", "html", "--execute", "--ExecutePreprocessor.timeout=600",
                          str(work / "leaderboard.ipynb"), "--output-dir", str(tmp_path / "html")],
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    html = (tmp_path / "html" / "leaderboard.html").read_text()
    for cid in ("t3-f-mota", "t3-p-mota", "abs-mot-speedup", "gate-plug-and-play", "our-leaderboard-no-speedup"):
        assert f'href="../results/claims.md#{cid}"' in html, cid  # the claim id, linked to its verdict
    assert "Traceback" not in html  # (and nbconvert --execute stops with an error on a failing cell)
    assert html.count("data:image/png;base64") >= 2  # the Pareto plots and Figure 5
    assert {p: p.read_bytes() for p in committed} == committed  # the committed figures untouched
