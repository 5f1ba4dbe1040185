"""MAC accounting for patch skipping: the PASS paper's Eq. 1-3 and per-layer / per-sequence counts.

Plain formulas (PASS, AAAI-23, "Preliminary"; one channel, no padding, as the paper states them):

* Eq. 1 ``eq1_vanilla_macs``: MAC = K^2 * (Xw - K + S) / S * (Xh - K + S) / S
* Eq. 2 ``eq2_patch_skip_rate``: R_p = N * K^2 / (Xw * Xh)
* Eq. 3 ``eq3_mac_reduction``: R_m = 1 - S^2 (Xw Xh - N K^2) / (K^2 (Xw - K + S)(Xh - K + S))

Per layer and frame (the wrapper records them, ``skip.stats.collect_stats`` sums them):

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
