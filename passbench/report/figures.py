"""Records -> the paper's accuracy-vs-MACs figures (Figure 4: MPJPE, Figure 5: MOTA / IDF1).

Measured points are filled markers, one colour per method; the paper's points are hollow markers
under a "paper" legend entry and are never joined to measured ones. Figure 5's own points are not
digitised (results/paper/README.md), so the paper's Table 3 (GMAC, MOTA) pairs stand in, labelled
"paper, Table 3". Imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from passbench.records import read_records, results_dir  # noqa: E402
from passbench.report.paper import load_paper  # noqa: E402

FIGURES = {
    4: dict(task="pose", y="mpjpe_mm", ylabel="MPJPE (mm, lower is better)", tables=("table1", "figure4"),
            paper=[("figure4", "paper, Fig. 4 text"), ("table1", "paper, Table 1")]),
    5: dict(task="mot", y="mota", ylabel="MOTA (higher is better)", tables=("table3", "figure5"),
            paper=[("figure5", "paper, Fig. 5"), ("table3", "paper, Table 3")]),
}


def measured_points(records: list[dict[str, Any]], task: str, y: str, tables: tuple[str, ...]) -> pd.DataFrame:
    """(method, model, input, gmacs_executed, y, dataset) of the latest run of each experiment of
    ``task`` in ``tables`` (a re-run replaces its earlier point, as in the tables)."""
    from passbench.records import latest_by_experiment

    rows = []
    for r in latest_by_experiment(records).values():
        cfg = r.get("config") or {}
        if r["kind"] != "run" or r["task"] != task or cfg.get("table") not in tables:
            continue
        val = (r.get("metrics") or {}).get(y)
        gm = (r.get("cost") or {}).get("gmacs_executed")
        if val is None or gm is None:
            continue
        wh = (cfg.get("model") or {}).get("input_wh")
        rows.append(
            dict(
                experiment=r["experiment"], method=r["method"]["name"], model=r["model"]["name"],
                input=f"{wh[0]}x{wh[1]}" if wh else "", gmacs=gm, value=val,
                dataset=r["dataset"].get("name") + (" (SYNTHETIC, not Human3.6M)" if r["dataset"].get("synthetic") else ""),
                threshold=(r["method"].get("params") or {}).get("threshold"),
            )
        )
    return pd.DataFrame(rows, columns=["experiment", "method", "model", "input", "gmacs", "value", "dataset",
                                       "threshold"])


def series(meas: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Lines to draw: one per method over input sizes (default gate threshold), and one per method and
    input for a gate-threshold sweep (its default-threshold point at that input included)."""
    out = []
    default = meas[meas["threshold"].isna()]
    for method, grp in default.groupby("method"):
        out.append((f"measured: {method}", grp))
    for (method, inp), grp in meas[meas["threshold"].notna()].groupby(["method", "input"]):
        base = default[(default["method"] == method) & (default["input"] == inp)]
        out.append((f"measured: {method}, gate threshold sweep at {inp}", pd.concat([base, grp])))
    return out


def paper_points(n: int, paper_dir: str | Path | None = None) -> pd.DataFrame:
    """The paper's (method, gmacs, value, source) points for figure ``n``."""
    spec = FIGURES[n]
    rows = []
    for name, label in spec["paper"]:
        df = load_paper(name, paper_dir)
        if spec["y"] not in df.columns or "gmacs" not in df.columns:
            continue
        for _, r in df.iterrows():
            if pd.notna(r[spec["y"]]) and pd.notna(r["gmacs"]):
                rows.append(dict(method=r["method"], gmacs=float(r["gmacs"]), value=float(r[spec["y"]]), source=label))
    return pd.DataFrame(rows, columns=["method", "gmacs", "value", "source"])


def plot_figure(n: int, records: list[dict[str, Any]], out_dir: str | Path, y: str | None = None) -> list[Path]:
    """Draw figure ``n`` (4 or 5) into ``out_dir/figure<n>.png`` and ``.pdf``.

    Args:
        n: 4 (MPJPE vs GMACs) or 5 (MOTA vs GMACs).
        records: run records (skip markers are ignored: they carry no numbers).
        out_dir: output folder (created).
        y: metric key overriding the default (e.g. ``idf1`` for Figure 5).
    """
    if n not in FIGURES:
        raise KeyError(f"no figure {n} (known: {sorted(FIGURES)})")
    spec = dict(FIGURES[n])
    if y:
        spec["y"], spec["ylabel"] = y, y.upper()
    meas = measured_points(records, spec["task"], spec["y"], spec["tables"])
    paper = paper_points(n) if not y or y == FIGURES[n]["y"] else pd.DataFrame(columns=["method", "gmacs", "value", "source"])
    pct = spec["y"] in ("mota", "idf1", "idp")
    scale = 100.0 if pct else 1.0

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    markers = {"paper, Table 3": "o", "paper, Table 1": "o", "paper, Fig. 4 text": "s", "paper, Fig. 5": "s"}
    for src, grp in paper.groupby("source"):
        ax.scatter(grp["gmacs"], grp["value"] * scale, facecolors="none", edgecolors="0.35",
                   marker=markers.get(src, "o"), s=46, label=src)
        for _, r in grp.iterrows():
            ax.annotate(r["method"], (r["gmacs"], r["value"] * scale), fontsize=6, color="0.35",
                        xytext=(3, 3), textcoords="offset points")
    cmap = plt.get_cmap("tab10")
    for i, (label, grp) in enumerate(series(meas)):
        grp = grp.sort_values("gmacs")
        ax.plot(grp["gmacs"], grp["value"] * scale, marker="o", linestyle="-" if "sweep" not in label else ":",
                color=cmap(i % 10), label=label)
    if meas.empty:
        ax.text(0.5, 0.5, "no measured records yet", transform=ax.transAxes, ha="center", color="0.5")
    ax.set_xlabel("executed GMACs per frame")
    ax.set_ylabel(spec["ylabel"] + (" [%]" if pct else ""))
    datasets = ", ".join(sorted(set(meas["dataset"].dropna()))) or "none"
    ax.set_title(f"Figure {n}: accuracy vs MACs (measured on {datasets}; hollow = paper)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"figure{n}.png", out / f"figure{n}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def write_figure(n: int, results: str | Path | None = None, y: str | None = None) -> list[Path]:
    """Figure ``n`` from the records under ``results`` into ``results/figures/``."""
    root = results_dir(results)
    rdir = root / "records"
    records = read_records(rdir) if rdir.is_dir() else []
    return plot_figure(n, records, root / "figures", y=y)
