"""passbench.report: records -> tables and figures. Reads only records and the transcribed paper
values; imports no torch (tests check this)."""

from passbench.records import read_records
from passbench.report.figures import plot_figure, write_figure
from passbench.report.leaderboard import leaderboard
from passbench.report.paper import load_paper
from passbench.report.tables import build_table, display_frame, render, write_table

__all__ = [
    "build_table", "display_frame", "leaderboard", "load_paper", "plot_figure", "read_records", "render",
    "write_figure", "write_table",
]
