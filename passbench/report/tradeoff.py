"""Records -> the matched-rate trade-off: every skipping method at the same target skip rates.

The points come from ``configs/tradeoff/`` (``scripts/make_tradeoff_configs.py``): one record per
(method, target rate), ``experiment = tradeoff/<method>_r<NN>``, plus ``tradeoff/dense``. The table
gives, per point, the measured all-frames patch-skip rate (Eq. 2 over every frame, dense first frames
included), MOTA / IDF1 / IDs, the executed GMACs with the gate's MACs added, and the FPS ratio to the
dense twin timed in the same process; under the markdown tables, the paper claims those points are
tested in (``results/claims.md``). The figure is ``passbench.report.tradeoff_plot``. Imports no torch.

The every-conv experiment (``configs/everyconv/``, ``docs/everyconv.md``: every method on every conv of a
plain-conv FairMOT) is the same kind of table from the records of table ``everyconv``; its accuracy rows are
untimed and its FPS ratios come from ``passbench speed`` at 1 and at 2 threads, so its table has one
``FPS / dense`` column per thread count timed (:func:`render` ``by_threads``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from passbench.records import latest_by_experiment, read_records, results_dir, timing_applies
from passbench.report.claimfile import claim_links
from passbench.report.tradeoff_names import LABELS, ORDER

TABLE = "tradeoff"
EVERYCONV = "everyconv"
_POINT = re.compile(r"^(?:.*/)?(?P<method>[a-z][a-z0-9_]*?)(?:_r(?P<rate>\d\d)(?:_(?P<variant>[a-z]+))?)?$")


def points(records: list[dict[str, Any]], table: str = TABLE) -> pd.DataFrame:
    """One row per experiment of ``table`` (its latest run): method, target rate, measured numbers."""
    rows = []
    timed: dict[str, dict[str, Any]] = {}  # newest speed record (`passbench speed`) per experiment, any setup
    by_threads: dict[str, dict[int, dict[str, Any]]] = {}  # ... and per thread count, per experiment
    for r in records:
        if r.get("kind") == "speed" and (r.get("config") or {}).get("table") == table:
            for key, store in ((r["experiment"], timed), (_threads(r), by_threads.setdefault(r["experiment"], {}))):
                cur = store.get(key)
                if cur is None or str(r.get("created_utc")) >= str(cur.get("created_utc")):
                    store[key] = r
    for r in latest_by_experiment(records).values():
        if r.get("kind") != "run" or (r.get("config") or {}).get("table") != table:
            continue
        m = _POINT.match(r["experiment"])
        if not m:
            continue
        cost, met, speed = r.get("cost") or {}, r.get("metrics") or {}, r.get("speed") or {}
        fps, fps_d = speed.get("fps"), speed.get("fps_dense")
        if not (fps and fps_d) and timing_applies(timed.get(r["experiment"]), r):  # untimed run: its speed record
            speed = timed[r["experiment"]].get("speed") or {}
            fps, fps_d = speed.get("fps"), speed.get("fps_dense")
        rows.append(dict(
            experiment=r["experiment"], method=m["method"], target=int(m["rate"]) / 100 if m["rate"] else 0.0,
            skip=cost.get("patch_skip_rate", 0.0), skip_gated=cost.get("patch_skip_rate_gated_frames"),
            mota=met.get("mota"), idf1=met.get("idf1"), ids=met.get("ids"),
            gmacs=(cost.get("gmacs_executed") or 0.0) + (cost.get("gate_gmacs") or 0.0),
            gate_gmacs=cost.get("gate_gmacs", 0.0), fps_ratio=(fps / fps_d) if fps and fps_d else None,
            fps_ratio_threads={t: _ratio(s) for t, s in sorted(by_threads.get(r["experiment"], {}).items())
                               if timing_applies(s, r) and _ratio(s) is not None},
            refresh=((r.get("method") or {}).get("params") or {}).get("refresh_every"),
            reference=((r.get("method") or {}).get("params") or {}).get("reference", "previous"),
            created=r.get("created_utc")))
    cols = ["experiment", "method", "target", "skip", "skip_gated", "mota", "idf1", "ids", "gmacs", "gate_gmacs",
            "fps_ratio", "fps_ratio_threads", "refresh", "reference", "created"]
    df = pd.DataFrame(rows, columns=cols)
    rank = {m: i for i, m in enumerate(["dense", *ORDER])}
    return df.sort_values(["method", "target"], key=lambda s: s.map(rank) if s.name == "method" else s,
                          ignore_index=True)


def _threads(speed_rec: dict[str, Any]) -> int:
    """The intra-op threads a speed record was timed with (``speed.threads``, else its config's)."""
    return int((speed_rec.get("speed") or {}).get("threads")
               or ((speed_rec.get("config") or {}).get("speed") or {}).get("threads") or 0)


def _ratio(speed_rec: dict[str, Any]) -> float | None:
    """FPS over the dense twin's FPS timed in the same process, or None when either is missing."""
    sp = speed_rec.get("speed") or {}
    return sp["fps"] / sp["fps_dense"] if sp.get("fps") and sp.get("fps_dense") else None


def render(df: pd.DataFrame, fmt: str = "md", show_experiment: bool = False, by_threads: bool = False) -> str:
    """The trade-off table (percentages with one decimal); ``show_experiment`` adds the config name;
    ``by_threads``: one ``FPS / dense`` column per thread count timed (the newest matching speed record of
    each) instead of the newest timing of any setup."""
    if df.empty:
        return "no trade-off records yet (run `invoke figure -n tradeoff`)\n"
    fps_cols = {"FPS / dense": df["fps_ratio"].map(lambda v: "-" if v is None or pd.isna(v) else f"{v:.2f}x")}
    if by_threads:
        counts = sorted({t for d in df["fps_ratio_threads"] for t in d})
        fps_cols = {f"FPS / dense, {t} thread{'s' * (t != 1)}":
                    df["fps_ratio_threads"].map(lambda d, t=t: f"{d[t]:.2f}x" if t in d else "-") for t in counts}
    out = pd.DataFrame({
        **({"config": df["experiment"]} if show_experiment else {}),
        "method": df["method"].map(lambda m: LABELS.get(m, m)),
        **({"refresh": df["variant"]} if "variant" in df.columns else {}),
        "target skip %": df["target"].map(lambda v: f"{100 * v:.0f}" if v else "-"),
        "measured skip % (all frames)": df["skip"].map(lambda v: f"{100 * v:.1f}"),
        "MOTA %": df["mota"].map(lambda v: f"{100 * v:.1f}"),
        "IDF1 %": df["idf1"].map(lambda v: f"{100 * v:.1f}"),
        "IDs": df["ids"].map(lambda v: f"{int(v)}"),
        "GMACs (executed + gate)": df["gmacs"].map(lambda v: f"{v:.3f}"),
        "of which gate": df["gate_gmacs"].map(lambda v: f"{v:.3f}"),
        **fps_cols,
    })
    if fmt == "csv":  # per-thread ratios as "threads:ratio;..." where the table shows them
        if not by_threads:
            return df.drop(columns="fps_ratio_threads").to_csv(index=False)
        return df.assign(fps_ratio_threads=df["fps_ratio_threads"].map(
            lambda d: ";".join(f"{t}:{v:.4f}" for t, v in sorted(d.items())))).to_csv(index=False)
    links = claim_links(list(df["experiment"]))  # the paper claims these points are tested in
    return out.to_markdown(index=False, disable_numparse=True) + "\n" + (f"\n{links}" if links else "")


def refresh_frame(df: pd.DataFrame, refresh: pd.DataFrame, target: float = 0.4) -> pd.DataFrame:
    """Each method at ``target`` without a dense refresh (``df``, the trade-off points) beside the same
    method and target with one (``refresh``: ``configs/refresh/``)."""
    def variant(row: pd.Series) -> str:
        out = f"refresh every {int(row['refresh'])}" if row["refresh"] and not pd.isna(row["refresh"]) else "no refresh"
        return out + (", computed reference" if row["reference"] == "computed" else "")

    rows = pd.concat([df[df["target"] == target], refresh])
    rows = rows.assign(variant=rows.apply(variant, axis=1)) if not rows.empty else rows.assign(variant=[])
    rank = {m: i for i, m in enumerate(ORDER)}
    return rows.sort_values(["method", "variant"], key=lambda s: s.map(rank) if s.name == "method" else s,
                            ignore_index=True)


def texts(records: list[dict[str, Any]]) -> dict[str, str]:
    """``{file name: text}`` of the trade-off, refresh and ablation tables (md, csv) from ``records``:
    what :func:`write` puts under ``results/tables/`` (the refresh and ablation tables only when they
    have points)."""
    df = points(records)
    out = {"tradeoff.md": render(df, "md"), "tradeoff.csv": render(df, "csv") if not df.empty else ""}
    rf = points(records, table="refresh")
    if not rf.empty:
        both = refresh_frame(df, rf)
        out.update({"refresh.md": render(both, "md"), "refresh.csv": render(both, "csv")})
    ab = points(records, table="ablation")  # configs/ablation/ (run with `passbench run`; needs runs/ weights)
    if not ab.empty:
        out.update({"ablation.md": render(ab, "md", show_experiment=True), "ablation.csv": render(ab, "csv")})
    ev = points(records, table=EVERYCONV)  # configs/everyconv/ (every conv of a plain-conv FairMOT)
    if not ev.empty:
        out.update({"everyconv.md": render(ev, "md", by_threads=True), "everyconv.csv": render(ev, "csv", by_threads=True)})
    return out


def write(results: str | Path | None = None, y: str = "mota", table: str = TABLE) -> list[Path]:
    """Trade-off table (md, csv) and figure (png, pdf), the refresh table, the PASS-P ablation table
    (``configs/ablation/``) and the every-conv table, from the records under ``results``. ``table``: whose
    figure to draw, ``"tradeoff"`` (the light model) or ``"everyconv"`` (drawn with the light model's dense
    MOTA as a second reference line)."""
    from passbench.report.tradeoff_plot import plot  # noqa: PLC0415 - seaborn / matplotlib only when drawing

    if table not in (TABLE, EVERYCONV):  # before anything is written
        raise ValueError(f"table {table!r}: expected {TABLE!r} or {EVERYCONV!r}")
    root = results_dir(results)
    rdir = root / "records"
    records = read_records(rdir) if rdir.is_dir() else []
    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in texts(records).items():
        (tables / name).write_text(text)
        out.append(tables / name)
    if table == EVERYCONV:
        light = points(records)
        light_dense = light[light["method"] == "dense"]
        return out + plot(points(records, table=EVERYCONV), root / "figures", y, records=records, name=EVERYCONV,
                          source="configs/everyconv/, every conv of the plain-conv FairMOT",
                          reference=None if light_dense.empty else ("light model's dense", float(light_dense[y].iloc[0])))
    return out + plot(points(records), root / "figures", y, refresh=points(records, table="refresh"), records=records)
