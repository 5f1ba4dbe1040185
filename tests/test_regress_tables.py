"""``passbench regress``'s table golden (``passbench.report.golden``): markdown tables split into cells, and a
moved cell reported by name. (That the committed golden equals the regeneration from the committed records is
what ``passbench regress --case tables`` itself checks in CI.)"""

from __future__ import annotations

import json

from passbench import regress
from passbench.paths import REPO_ROOT
from passbench.report import golden as G


def test_markdown_cells_hand_example():
    md = "| row | MOTA % |\n|:--|:--|\n| a | 51.6 |\n| a | – |\n"
    assert G.markdown_cells(md) == {"r00 a | row": "a", "r00 a | MOTA %": "51.6", "r01 a | row": "a",
                                    "r01 a | MOTA %": "–"}
    assert G.markdown_cells("no trade-off records yet\n") == {}


def test_a_moved_cell_is_a_drift_that_names_the_cell():
    case = next(c for c in regress.CASES if c.name == "tables")
    now = G.table_cells(REPO_ROOT / "results" / "records")
    gold = {"values": json.loads(json.dumps(now))}
    key = next(k for k in gold["values"]["table3"] if k.endswith("| MOTA %") and "dense_light" in k)
    gold["values"]["table3"][key] = "51.7"  # e.g. a changed rounding or another field read
    rows = {r.metric: r for r in regress.compare(case, now, gold)}
    assert rows["table3"].verdict == "DRIFT" and rows["tradeoff"].verdict == "ok" and rows["table2"].verdict == "ok"
    assert G.cell_changes(gold["values"]["table3"], now["table3"]) == [f"{key}: golden '51.7', now '51.6'"]
