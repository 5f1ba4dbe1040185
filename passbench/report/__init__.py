"""passbench.report: records -> tables and figures. Reads only records and the transcribed paper
values; imports no torch (tests check this). The figure functions load matplotlib on first use, so that
the commands that only read or write tables (``passbench claims``, ``passbench speed``'s parser) run
without the plotting packages."""

from typing import Any

from passbench.records import read_records
from passbench.report.leaderboard import leaderboard
from passbench.report.paper import load_paper
from passbench.report.tables import build_table, display_frame, render, write_table

__all__ = [
    "build_table", "display_frame", "leaderboard", "load_paper", "plot_figure", "read_records", "render",
    "write_figure", "write_table",
]


def __getattr__(name: str) -> Any:
    if name in ("plot_figure", "write_figure"):
        from passbench.report import figures  # noqa: PLC0415 - matplotlib on first use

        return getattr(figures, name)
    raise AttributeError(f"module 'passbench.report' has no attribute {name!r}")
