"""The generated tables as cells, for ``passbench regress``'s table golden.

Table 3, the matched-rate trade-off table and Table 2 are regenerated in memory from the committed records
(``results/records``) exactly as ``invoke table`` / ``invoke figure -n tradeoff`` write them (markdown), and
split into cells keyed by row and column. ``passbench regress`` compares every cell with the golden
(``results/golden/regress.json``, case ``tables``): a column that reads another field, a changed rounding, a
different newest-record choice or a lost row shows up as the cells that moved, while the records stay fixed.
When the records change on purpose (a re-measurement), re-bless: ``passbench regress tables --update --reason``.

Reads records only; imports no torch (the report layer's rule).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from passbench.records import read_records, records_dir

TABLES = ("table3", "tradeoff", "table2")


def render_tables(records: list[dict]) -> dict[str, str]:
    """``{name: markdown}`` of the golden's tables, from ``records``."""
    from passbench.report import tradeoff  # noqa: PLC0415
    from passbench.report.tables import build_table, render  # noqa: PLC0415

    return {"table3": render(3, build_table(3, records), "md"),
            "tradeoff": tradeoff.render(tradeoff.points(records), "md"),
            "table2": render(2, build_table(2, records), "md")}


def markdown_cells(md: str) -> dict[str, str]:
    """Cells of a GitHub markdown table: ``"r<i> <first cell> | <header>" -> cell`` (i = body row, from 0;
    the first cell names the row, the index keeps rows apart that share it, e.g. one method at four rates)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return {}
    split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    head = split(lines[0])
    out: dict[str, str] = {}
    for i, ln in enumerate(lines[2:]):
        cells = split(ln)
        for h, c in zip(head, cells):
            out[f"r{i:02d} {cells[0]} | {h}"] = c
    return out


def table_cells(records_path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """``{table: {cell key: cell}}`` regenerated from the records under ``records_path`` (default: the
    committed ``results/records``)."""
    recs = read_records(Path(records_path) if records_path is not None else records_dir())
    return {name: markdown_cells(md) for name, md in render_tables(recs).items()}


def records_digest(records_path: str | Path | None = None) -> str:
    """SHA-256 over the records files (names and bytes, sorted): which records a table golden was made from."""
    root = Path(records_path) if records_path is not None else records_dir()
    h = hashlib.sha256()
    for f in sorted(root.glob("*.jsonl")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cell_changes(golden: dict[str, str] | None, now: dict[str, str] | None, limit: int = 12) -> list[str]:
    """Human-readable differences of two cell dicts (at most ``limit`` lines, then a count)."""
    golden, now = golden or {}, now or {}
    out = []
    for key in sorted(set(golden) | set(now)):
        g, n = golden.get(key, "(no cell)"), now.get(key, "(no cell)")
        if g != n:
            out.append(f"{key}: golden {g!r}, now {n!r}")
    return out[:limit] + ([f"... and {len(out) - limit} more cells"] if len(out) > limit else [])
