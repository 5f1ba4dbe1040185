"""The matched-rate trade-off figure: MOTA against the measured skip rate and against executed GMACs,
one panel per family (PASS, Skip-Conv, the floors), so that each panel's legend is short.

Readable where the methods differ: the y-axis spans ``floor_points`` MOTA points below the dense
model's MOTA up to the best point; a point below that (a collapsed method) is drawn at the lower
edge as a downward triangle labelled with its value, and its line runs to the edge. Refresh points
(a dense frame every k, ``configs/refresh/``) are hollow squares joined by a dotted line. Where a
point's MOTA has a measured seed spread (seed twins ``seeds/<experiment>_s<k>``, or the seed
deviations its gates borrow, ``noise`` in ``results/claims.yaml``: ``passbench.report.query``), the
spread is drawn as an error bar (min to max over seeds). Legends sit below the panels. Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from passbench.report.claimfile import CLAIMS, load_claims  # noqa: E402
from passbench.report.query import Context, Unmeasured  # noqa: E402
from passbench.report.tradeoff_names import LABELS, ORDER  # noqa: E402

FAMILIES = (("PASS", ("pass_p", "pass_f", "pass_p_uniform", "pass_f_uniform")),
            # passbench's gate-cost variants (every-conv experiment), beside PASS-P as drawn in the first panel
            ("PASS-P gate-cost variants (passbench's)", ("pass_p", "pass_p_half", "pass_p_half_uniform", "pass_p_shared",
                                                       "pass_p_shared_uniform", "pass_p_block", "pass_p_block_uniform",
                                                       "pass_p_half_shared", "pass_p_half_shared_uniform", "pass_p_trim",
                                                       "pass_p_half_trim", "pass_p_half_shared_trim")),
            ("Skip-Conv", ("skipconv_norm", "skipconv_gumbel")),
            ("floors (keyframe, random)", ("keyframe", "random")))


def seed_spreads(records: list[dict[str, Any]], experiments: list[str], y: str = "mota",
                 claims: str | Path = CLAIMS) -> dict[str, tuple[float, float]]:
    """``{experiment: (min, max)}`` of ``metrics.<y>`` over the seeds measured for it (own or borrowed)."""
    noise = load_claims(claims)["noise"] if Path(claims).is_file() else {}
    ctx = Context(records, noise=noise)
    out = {}
    for e in experiments:
        try:
            v = ctx.field(e, f"metrics.{y}", e)
        except Unmeasured:
            continue
        if len(v.variants) >= 2:  # the point itself is one of its seeds (borrowed deviations may all lie on one side)
            out[e] = (min(v.value, *v.variants), max(v.value, *v.variants))
    return out


def _ylim(df: pd.DataFrame, refresh: pd.DataFrame | None, y: str, dense: float | None, floor_points: float) -> tuple[float, float]:
    vals = pd.concat([df[y], refresh[y] if refresh is not None and not refresh.empty else pd.Series(dtype=float)]) * 100
    top = max(vals.max() if not vals.empty else 0.0, dense or 0.0) + 2.0
    low = (dense - floor_points) if dense is not None else (vals.min() if not vals.empty else 0.0) - 2.0
    return min(low, top - 5.0), top


def _label_row(ax: Any, x: float, near: float = 0.05) -> int:
    """The row of a new clipped-value label at ``x`` on ``ax``: the number of labels already placed there
    within ``near`` of the axis' data width (rows stack only where labels would overprint, so a dozen
    methods never push a label out of its panel)."""
    placed = ax.__dict__.setdefault("_clip_label_xs", [])
    tol = near * max(float(ax.dataLim.width), 1e-9)
    row = sum(1 for p in placed if abs(p - float(x)) <= tol)
    placed.append(float(x))
    return row


def _series(ax: Any, x: pd.Series, v: pd.Series, low: float, spread: list[tuple[float, float] | None],
            label: str, color: Any, hollow: bool = False) -> None:
    """One method's line; points under ``low`` clipped to the edge as triangles labelled with their value
    (each label raised one row above those already on ``ax`` near its x, :func:`_label_row`, so that
    methods collapsing at the same x do not overprint); seed error bars."""
    shown = v.clip(lower=low)
    style = dict(color=color, linestyle=":" if hollow else "-", linewidth=1.2)
    ax.plot(x, shown, label=label, marker="s" if hollow else "o", markerfacecolor="none" if hollow else color,
            markersize=5, **style)
    for xi, vi, si in zip(x, v, spread):
        if vi < low:
            ax.plot([xi], [low], marker="v", color=color, markersize=8, clip_on=False, zorder=4)
            ax.annotate(f"{vi:.1f}", (xi, low), xytext=(0, 7 + 8 * _label_row(ax, xi)), textcoords="offset points",
                        ha="center", fontsize=6, color=color)
        elif si is not None:
            ax.errorbar([xi], [vi], yerr=[[vi - max(si[0], low)], [si[1] - vi]], color=color, capsize=3, linewidth=1)


def plot(df: pd.DataFrame, out_dir: str | Path, y: str = "mota", refresh: pd.DataFrame | None = None,
         records: list[dict[str, Any]] | None = None, floor_points: float = 20.0, name: str = "tradeoff",
         source: str = "configs/tradeoff/, configs/refresh/", reference: tuple[str, float] | None = None) -> list[Path]:
    """Draw :func:`figure` into ``out_dir/<name>.png`` and ``.pdf``."""
    fig = figure(df, y, refresh, records, floor_points, source=source, reference=reference)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def figure(df: pd.DataFrame, y: str = "mota", refresh: pd.DataFrame | None = None,
           records: list[dict[str, Any]] | None = None, floor_points: float = 20.0,
           source: str = "configs/tradeoff/, configs/refresh/", reference: tuple[str, float] | None = None) -> Any:
    """The trade-off figure from ``passbench.report.tradeoff.points`` frames (a matplotlib Figure):
    rows x = skip rate / GMACs, columns :data:`FAMILIES` (those with a point in ``df``).

    Args:
        df: the trade-off points (``configs/tradeoff/``), dense included.
        refresh: the refresh points (``configs/refresh/``), drawn hollow; those with a computed reference left out.
        records: the records, for the seed spreads (error bars); None draws none.
        floor_points: the y-axis starts this many points below the dense model's ``y``.
        source: the config folders the points come from (in the title).
        reference: (label, value as a fraction) of a second dotted reference line, e.g. another model's dense
            ``y`` (the every-conv figure draws the light model's); the y range reaches it.
    """
    dense_rows = df[df["method"] == "dense"]
    dense = 100 * float(dense_rows[y].iloc[0]) if not dense_rows.empty else None
    rf = refresh[refresh["reference"] != "computed"] if refresh is not None and not refresh.empty else None
    low, top = _ylim(df, rf, y, dense, floor_points)
    if reference is not None:  # the y range reaches the reference line
        low, top = min(low, 100 * reference[1] - 2.0), max(top, 100 * reference[1] + 2.0)
    exps = list(df["experiment"]) + (list(rf["experiment"]) if rf is not None else [])
    spreads = seed_spreads(records, exps, y) if records else {}
    # colorblind's 10 colours first (the methods keep theirs), then the "dark" set and two more for the variants
    palette = dict(zip(ORDER, sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)[4:]
                       + [(0.86, 0.08, 0.24), (0.45, 0.45, 0.0), (0.1, 0.1, 0.1)]))
    present = set(df["method"])
    # the panels with a method of their own to draw (the light model's trade-off has no gate-cost variants; PASS-P,
    # drawn beside them for reference, does not make that panel), at least one
    families, before = [], set()
    for f in FAMILIES:
        if present & (set(f[1]) - before):
            families.append(f)
        before |= set(f[1])
    families = families or list(FAMILIES[:1])
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(2, len(families), figsize=(4.4 * len(families), 8.2), sharey=True, squeeze=False)
    for col, (title, methods) in enumerate(families):
        for row, (xkey, xlabel) in enumerate((("skip", "measured patch-skip rate, all frames [%]"),
                                              ("gmacs", "executed GMACs per frame, gates included"))):
            ax = axes[row][col]
            scale = 100.0 if xkey == "skip" else 1.0
            for m in [m for m in methods if m in present]:
                g = df[df["method"] == m].sort_values("skip")
                _series(ax, g[xkey] * scale, 100 * g[y], low,
                        [None if e not in spreads else (100 * spreads[e][0], 100 * spreads[e][1]) for e in g["experiment"]],
                        LABELS.get(m, m), palette[m])
                r = rf[rf["method"] == m].sort_values("skip") if rf is not None else None
                if r is not None and not r.empty:
                    _series(ax, r[xkey] * scale, 100 * r[y], low,
                            [None if e not in spreads else (100 * spreads[e][0], 100 * spreads[e][1]) for e in r["experiment"]],
                            f"{LABELS.get(m, m)}, dense frame every {int(r['refresh'].iloc[0])}", palette[m],
                            hollow=True)
            if dense is not None:
                ax.axhline(dense, color="0.25", linestyle="--", linewidth=1, label=f"dense ({dense:.1f})")
            if reference is not None:
                ax.axhline(100 * reference[1], color="0.55", linestyle=":", linewidth=1,
                           label=f"{reference[0]} ({100 * reference[1]:.1f})")
            ax.set_ylim(low, top)
            ax.set_xlabel(xlabel, fontsize=8)
            if row == 0:
                ax.set_title(title, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"{y.upper()} [%]")
        if axes[1][col].get_legend_handles_labels()[0]:
            axes[1][col].legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, frameon=False)
    if df.empty:
        axes[0][0].text(0.5, 0.5, "no trade-off records yet", transform=axes[0][0].transAxes, ha="center", color="0.5")
    fig.suptitle(f"Matched-rate trade-off on the sample eval split ({source}); "
                 f"points below {low:.0f} drawn at the edge with their value; error bars: seed spread where measured",
                 fontsize=9)
    fig.tight_layout()
    return fig
