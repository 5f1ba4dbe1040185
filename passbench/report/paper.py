"""The paper's transcribed numbers (``results/paper/*.csv``), kept apart from measured ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from passbench.paths import RESULTS

PAPER_DIR = RESULTS / "paper"

PAPER_FILES = {
    "table1": "table1_pose_sota.csv",
    "table2": "table2_pose_env.csv",
    "table3": "table3_mot_sota.csv",
    "table4": "table4_mot_env.csv",
    "figure4": "figure4_pose_tradeoff.csv",
    "figure5": "figure5_mot_tradeoff.csv",
}


def load_paper(name: str, paper_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's rows for ``name`` (``table3``, ``figure4``...), indexed by ``row``.

    Paper rows always come from the committed ``results/paper`` (transcription is not a result of a run),
    unless ``paper_dir`` says otherwise.
    """
    if name not in PAPER_FILES:
        raise KeyError(f"no paper data for {name!r} (known: {', '.join(PAPER_FILES)})")
    df = pd.read_csv(Path(paper_dir or PAPER_DIR) / PAPER_FILES[name])
    return df.set_index("row", drop=False)
