"""``collect_stats``: the MAC and skip counters of every ``SkipConv2d`` of a model, per layer and in total.

The counters are kept per layer by the wrapper (``skip.state.LayerStats``); what they count and the
formulas behind them are in ``skip.macs``.
"""

from __future__ import annotations

from torch import nn

from passbench.skip.control import skippable_layers

__all__ = ["collect_stats"]


def collect_stats(model: nn.Module) -> dict:
    """Per-layer rows and totals of the MAC / skip counters since the last ``reset``.

    Returns:
        ``{"layers": [row, ...], "frames", "dense_macs", "executed_macs", "gate_macs",
        "patch_skip_rate", "mac_reduction", "mac_reduction_convs"}``; each row has ``name``, the same
        counters per layer, ``patch`` (output patch size), ``frames`` and ``gated_frames``.
        ``mac_reduction`` = 1 - (executed + gate) / dense (gate cost charged);
        ``mac_reduction_convs`` = 1 - executed / dense (the wrapped convs only). MACs are summed over
        the batch and the frames; divide by ``frames`` for per-frame numbers (``frames`` is the
        number of forwards of the first layer).
    """
    rows = []
    for name, m in skippable_layers(model):
        s = m.stats
        rows.append({
            "name": name,
            "patch": m.patch_size,
            "frames": s.frames,
            "gated_frames": s.gated_frames,
            "dense_macs": s.dense_macs,
            "executed_macs": s.executed_macs,
            "gate_macs": s.gate_macs,
            "patch_skip_rate": s.px_skipped / s.px_gated if s.px_gated else 0.0,
            "mac_reduction": 1.0 - (s.executed_macs + s.gate_macs) / s.dense_macs if s.dense_macs else 0.0,
            "px_gated": s.px_gated,
            "px_skipped": s.px_skipped,
            "px_total": s.px_total,
            "mask_macs": s.mask_macs,
        })
    dense = sum(r["dense_macs"] for r in rows)
    exe = sum(r["executed_macs"] for r in rows)
    gate = sum(r["gate_macs"] for r in rows)
    px = sum(r["px_gated"] for r in rows)
    px_skip = sum(r["px_skipped"] for r in rows)
    return {
        "layers": rows,
        "frames": rows[0]["frames"] if rows else 0,
        "dense_macs": dense,
        "executed_macs": exe,
        "gate_macs": gate,
        "patch_skip_rate": px_skip / px if px else 0.0,
        "patch_skip_rate_all_frames": px_skip / sum(r["px_total"] for r in rows) if rows and px else 0.0,
        "mask_macs": sum(r["mask_macs"] for r in rows),
        "mac_reduction": 1.0 - (exe + gate) / dense if dense else 0.0,
        "mac_reduction_convs": 1.0 - exe / dense if dense else 0.0,
    }
