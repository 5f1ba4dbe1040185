"""MAC accounting for patch skipping: the PASS paper's Eq. 1-3 and per-layer / per-sequence counts.

Plain formulas (PASS, AAAI-23, "Preliminary"; one channel, no padding, as the paper states them):

* Eq. 1 ``eq1_vanilla_macs``: MAC = K^2 * (Xw - K + S) / S * (Xh - K + S) / S
* Eq. 2 ``eq2_patch_skip_rate``: R_p = N * K^2 / (Xw * Xh)
* Eq. 3 ``eq3_mac_reduction``: R_m = 1 - S^2 (Xw Xh - N K^2) / (K^2 (Xw - K + S)(Xh - K + S))

Per layer and frame (the wrapper records them, ``collect_stats`` sums them):

* dense MACs  = B * Cout * Hout * Wout * (Cin / groups) * kh * kw (REFERENCE.md section 4);
* executed MACs = what was really computed: the sparse path's own report (halo and cropped edge
  patches included); for the reference path, what the sparse path would compute
  (``sparse_equivalent_macs``); for the dense path, the dense MACs;
* gate MACs = the gate counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) once
  per input shape (elementwise ops such as the norm gate's |r| are not counted by it: 0);
* skip rate = skipped output pixels / output pixels, over gated forwards only (Eq. 2 per layer,
  summed over layers and frames; dense first / refresh / ``off`` frames are excluded from the rate
  but counted in the MACs); ``patch_skip_rate_all_frames`` divides by the output pixels of every
  forward instead (dense frames skip nothing), the rate a video stream really gets;
* mask MACs = what the block-sparse kernel computes for the gates' masks whichever path ran (the
  dispatcher may run a layer densely when sparse would not be faster: then executed = dense).
"""

from __future__ import annotations

from torch import nn

__all__ = [
    "eq1_vanilla_macs",
    "eq2_patch_skip_rate",
    "eq3_mac_reduction",
    "conv_dense_macs",
    "sparse_equivalent_macs",
    "collect_stats",
]


def eq1_vanilla_macs(xw: int, xh: int, k: int, s: int) -> float:
    """PASS Eq. 1: MACs of a single-channel K x K conv with stride S on an Xw x Xh input, no padding."""
    return k * k * (xw - k + s) / s * (xh - k + s) / s


def eq2_patch_skip_rate(n_skipped: int, k: int, xw: int, xh: int) -> float:
    """PASS Eq. 2: R_p = N * K^2 / (Xw * Xh), N skipped patches of K x K pixels."""
    return n_skipped * k * k / (xw * xh)


def eq3_mac_reduction(n_skipped: int, k: int, s: int, xw: int, xh: int) -> float:
    """PASS Eq. 3: R_m = 1 - S^2 (Xw Xh - N K^2) / (K^2 (Xw - K + S)(Xh - K + S)), as printed.

    Note: the numerator is the patch-embedding count (Xw Xh - N K^2) and the denominator S^2 times
    Eq. 1, so R_m = R_p only when K = S; the paper's formula is reproduced, not corrected.
    """
    return 1.0 - s * s * (xw * xh - n_skipped * k * k) / (k * k * (xw - k + s) * (xh - k + s))


def conv_dense_macs(conv: nn.Conv2d, out_hw: tuple[int, int], batch: int = 1) -> int:
    """Dense MACs of ``conv`` producing (batch, Cout, Hout, Wout): B Cout Hout Wout (Cin/g) kh kw."""
    cout, cin_g, kh, kw = conv.weight.shape
    return int(batch * cout * out_hw[0] * out_hw[1] * cin_g * kh * kw)


def sparse_equivalent_macs(conv: nn.Conv2d, out_hw: tuple[int, int], batch: int, n_active: int,
                           n_total: int, patch: int) -> int:
    """MACs ``passbench.skip.sparse.sparse_conv2d`` computes for ``n_active`` of ``n_total`` patches.

    Mirrors its rule: nothing active -> 0; all active -> the dense conv; else every active patch is
    computed at full ``patch x patch`` size (cropped edge patches waste the rest).
    """
    if n_active == 0:
        return 0
    if n_active == n_total:
        return conv_dense_macs(conv, out_hw, batch)
    cout, cin_g, kh, kw = conv.weight.shape
    return int(n_active * patch * patch * cout * cin_g * kh * kw)


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
    from passbench.skip.wrapper import skippable_layers  # the wrapper imports this module

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
