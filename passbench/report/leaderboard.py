"""Leaderboard: every measured run, method x backbone, accuracy vs executed GMACs vs FPS ratio.

``leaderboard`` lists every experiment's latest run; ``board`` keeps one row per (backbone, method)
at the leaderboard's protocol (Table 3's rows and ``passbench leaderboard add`` rows);
``pareto_front`` / ``plot_board`` say at a glance whether skipping pays on a backbone (seaborn).
Reads records only; no torch.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from passbench.records import latest_by_experiment, timing_applies

__all__ = ["BOARD_TABLES", "BOARD_COLUMNS", "leaderboard", "board", "pareto_front", "plot_board"]

BOARD_TABLES = ("table3", "leaderboard")  # records (config.table) at the sample-eval protocol, 384x224
BOARD_COLUMNS = ["backbone", "method", "mota", "idf1", "gmacs_executed", "gate_gmacs", "gmacs_dense",
                 "mac_reduction", "patch_skip_rate", "fps", "fps_ratio_to_dense", "device", "input", "protocol",
                 "experiment", "created_utc"]


def _ratio(sp: dict[str, Any]) -> float | None:
    return (sp["fps"] / sp["fps_dense"]) if sp.get("fps") and sp.get("fps_dense") else None


def leaderboard(records: list[dict[str, Any]], task: str = "mot") -> pd.DataFrame:
    """One row per experiment's latest run of ``task``, best accuracy first.

    Columns: experiment, method, backbone, input, dataset, accuracy metrics (``mota``/``idf1`` for
    MOT, ``mpjpe_mm`` for pose), ``gmacs_dense``, ``gmacs_executed``, ``mac_reduction``,
    ``patch_skip_rate``, ``fps``, ``fps_ratio_to_dense``, device.
    """
    runs = [r for r in latest_by_experiment([r for r in records if r["task"] == task]).values() if r["kind"] == "run"]
    rows = []
    for r in runs:
        cfg = r.get("config") or {}
        wh = (cfg.get("model") or {}).get("input_wh")
        sp, co, me = r["speed"], r["cost"], r["metrics"]
        row = dict(
            experiment=r["experiment"], method=r["method"]["name"], backbone=r["model"]["name"],
            input=f"{wh[0]}x{wh[1]}" if wh else "", dataset=r["dataset"].get("name"),
        )
        if task == "mot":
            row.update(mota=me.get("mota"), idf1=me.get("idf1"))
        else:
            row.update(mpjpe_mm=me.get("mpjpe_mm"))
        row.update(
            gmacs_dense=co.get("gmacs_dense"), gmacs_executed=co.get("gmacs_executed"),
            mac_reduction=co.get("mac_reduction"), patch_skip_rate=co.get("patch_skip_rate"),
            fps=sp.get("fps"), fps_ratio_to_dense=_ratio(sp), device=sp.get("device"),
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    key, asc = ("mota", False) if task == "mot" else ("mpjpe_mm", True)
    return df.sort_values(key, ascending=asc, na_position="last").reset_index(drop=True)


def _method_label(rec: dict[str, Any]) -> str:
    """The board's method name: the record's, with Skip-Conv's learned Gumbel gates told apart from its
    norm gates (same method name, other checkpoint) and the random-skip control named as such."""
    name = rec["method"]["name"]
    if name == "skipconv" and rec["experiment"].rstrip("/").endswith("gumbel"):
        return "skipconv_gumbel"
    return "random" if name == "fixed" else name


def board(records: list[dict[str, Any]], tables: tuple[str, ...] = BOARD_TABLES) -> pd.DataFrame:
    """Method x backbone: one row per (backbone, method), the newest MOT run among the experiments of
    ``tables`` (the record's ``config.table``). Sorted by backbone, then dense first.

    Columns: :data:`BOARD_COLUMNS` (``mota``/``idf1``/``patch_skip_rate`` fractions; ``gmacs_executed`` the
    network's MACs the kernels computed per frame, ``gate_gmacs`` the gates' on top; ``mac_reduction`` the
    record's Eq. 3 R_m with the gates charged, ``1 - (executed + gate) / dense``; ``fps_ratio_to_dense``
    the skipped model's FPS over its dense twin's in the same process; ``protocol`` the dataset
    protocol label, e.g. ``sample_val``, so that a smoke run never passes for a real one).
    """
    rows = []
    timed: dict[str, dict[str, Any]] = {}  # newest speed record (`passbench speed`) per experiment
    for r in records:
        if r.get("kind") == "speed" and str(r.get("created_utc")) >= str(timed.get(r["experiment"], {}).get("created_utc", "")):
            timed[r["experiment"]] = r
    for r in latest_by_experiment([r for r in records if r["task"] == "mot"]).values():
        if r["kind"] != "run" or (r.get("config") or {}).get("table") not in tables:
            continue
        wh = r["config"].get("model", {}).get("input_wh")
        sp, co, me = r["speed"], r["cost"], r["metrics"]
        t = timed.get(r["experiment"])
        if timing_applies(t, r) and (not _ratio(sp) or str(t["created_utc"]) > str(r["created_utc"])):
            sp = t["speed"]  # accuracy run untimed, or re-timed later (`passbench speed`): the speed record
        rows.append(dict(backbone=r["model"]["name"], method=_method_label(r), mota=me.get("mota"),
                         idf1=me.get("idf1"), gmacs_executed=co.get("gmacs_executed"), gate_gmacs=co.get("gate_gmacs"),
                         gmacs_dense=co.get("gmacs_dense"), mac_reduction=co.get("mac_reduction"),
                         patch_skip_rate=co.get("patch_skip_rate"), fps=sp.get("fps"), fps_ratio_to_dense=_ratio(sp),
                         device=sp.get("device"), input=f"{wh[0]}x{wh[1]}" if wh else "",
                         protocol=r["dataset"].get("protocol"), experiment=r["experiment"],
                         created_utc=r["created_utc"]))
    df = pd.DataFrame(rows, columns=BOARD_COLUMNS)
    if df.empty:
        return df
    df = df.sort_values("created_utc").drop_duplicates(["backbone", "method"], keep="last")
    df["_dense_last"] = df["method"] != "dense"
    return df.sort_values(["backbone", "_dense_last", "method"]).drop(columns="_dense_last").reset_index(drop=True)


def pareto_front(df: pd.DataFrame, x: str, y: str = "mota", x_lower_is_better: bool = True) -> pd.DataFrame:
    """Rows no other row beats on both ``x`` and ``y`` (higher ``y`` better; ``x`` lower or higher
    better), sorted by ``x``. Rows with a missing ``x`` or ``y`` are left out."""
    d = df.dropna(subset=[x, y])
    sx = d[x] if x_lower_is_better else -d[x]
    keep = []
    for i in d.index:
        dominated = ((sx <= sx[i]) & (d[y] >= d.loc[i, y]) & ((sx < sx[i]) | (d[y] > d.loc[i, y]))).any()
        if not dominated:
            keep.append(i)
    return d.loc[keep].sort_values(x)


def plot_board(df: pd.DataFrame, y: str = "mota"):
    """Three panels (seaborn): ``y`` vs executed GMACs with the gates' MACs charged
    (``gmacs_executed + gate_gmacs``), ``y`` vs FPS ratio to dense (each with its Pareto front over all
    rows dashed), and per backbone the change of ``y`` from its dense row per method.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import seaborn as sns  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.2), constrained_layout=True)
    d = df.assign(**{y: df[y] * 100, "gmacs_charged": df["gmacs_executed"] + df["gate_gmacs"].fillna(0.0)})
    panels = ((axes[0], "gmacs_charged", True, "executed GMACs / frame, gate MACs included"),
              (axes[1], "fps_ratio_to_dense", False, "FPS / dense FPS (same process)"))
    for ax, x, low, label in panels:
        if d.dropna(subset=[x, y]).empty:
            ax.set_axis_off()
            ax.set_title(f"no {x} in the records")
            continue
        sns.scatterplot(data=d, x=x, y=y, hue="backbone", style="method", s=90, ax=ax)
        front = pareto_front(d, x, y, low)
        ax.plot(front[x], front[y], "--", color="grey", lw=1, label="Pareto front", zorder=0)
        if not low:
            ax.axvline(1.0, color="k", lw=0.6, alpha=0.5)  # right of this line skipping is faster than dense
        ax.set(xlabel=label, ylabel=f"{y.upper()} %")
        # outside the axes, below them: inside, the legend covered points
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    dense = d[d.method == "dense"].set_index("backbone")[y]
    delta = d[(d.method != "dense") & d.backbone.isin(dense.index)].copy()
    if delta.empty:
        axes[2].set_axis_off()
        axes[2].set_title("no skipping row with a dense row of its backbone")
    else:
        delta["change"] = delta[y] - delta.backbone.map(dense)
        sns.barplot(data=delta, x="method", y="change", hue="backbone", ax=axes[2])
        axes[2].axhline(0.0, color="k", lw=0.6)
        axes[2].set(ylabel=f"{y.upper()} change from dense (points)", xlabel="")
        # long method names on two lines (at the underscore), so that neighbours do not run together
        axes[2].set_xticks(axes[2].get_xticks(), [t.get_text().replace("_", "\n", 1) if len(t.get_text()) > 8
                                                  else t.get_text() for t in axes[2].get_xticklabels()])
        axes[2].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return fig


