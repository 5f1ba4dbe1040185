"""Leaderboard: every measured run, method x backbone, accuracy vs executed GMACs vs FPS ratio."""

from __future__ import annotations

from typing import Any

import pandas as pd

from passbench.records import latest_by_experiment


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
            fps=sp.get("fps"),
            fps_ratio_to_dense=(sp["fps"] / sp["fps_dense"]) if sp.get("fps") and sp.get("fps_dense") else None,
            device=sp.get("device"),
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    key, asc = ("mota", False) if task == "mot" else ("mpjpe_mm", True)
    return df.sort_values(key, ascending=asc, na_position="last").reset_index(drop=True)
