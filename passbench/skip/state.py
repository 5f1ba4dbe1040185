"""Per-stream state and per-layer counters of one ``SkipConv2d``."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StreamState:
    """What a layer remembers between frames, for B independent streams (one per batch row).

    Attributes:
        prev_in: (B, Cin, H, W) the previous frame's input (a private copy), or None after reset.
        prev_out: (B, Cout, Ho, Wo) the previous frame's output (a private copy), or None.
        t: frames seen since the last reset (frame 0 runs densely).
    """

    prev_in: torch.Tensor | None = None
    prev_out: torch.Tensor | None = None
    t: int = 0


@dataclass
class LayerStats:
    """Counters summed over the forwards since the last reset (see ``skip.macs``).

    Attributes:
        frames: forwards run; gated_frames: forwards where the gate decided (not dense).
        dense_macs / executed_macs / gate_macs: MACs summed over batch and frames.
        px_gated / px_skipped: output pixels in gated forwards / of them skipped (Eq. 2 numerators).
        px_total: output pixels of every forward (dense first / refresh frames included).
        mask_macs: MACs the block-sparse kernel computes for the gate's masks (dense MACs on dense
            frames), whichever path ran; equals executed_macs when every gated forward ran sparse.
    """

    frames: int = 0
    gated_frames: int = 0
    dense_macs: int = 0
    executed_macs: int = 0
    gate_macs: int = 0
    px_gated: int = 0
    px_skipped: int = 0
    px_total: int = 0
    mask_macs: int = 0


def check_same_stream(prev: torch.Tensor | None, x: torch.Tensor, name: str) -> None:
    """ValueError naming layer ``name`` when ``x`` cannot continue the stream whose last input was ``prev``
    (another batch, channel count, resolution, device or dtype): the caller must reset first."""
    if prev is None:
        return
    if prev.shape != x.shape:
        (b0, c0, h0, w0), (b1, c1, h1, w1) = prev.shape, x.shape
        what = [f"{k} {a} -> {b}" for k, a, b in (("batch", b0, b1), ("channels", c0, c1),
                                                   ("resolution", f"{h0}x{w0}", f"{h1}x{w1}")) if a != b]
        raise ValueError(
            f"SkipConv2d '{name}': input changed mid-stream ({', '.join(what)}; shape {tuple(prev.shape)} "
            f"-> {tuple(x.shape)}); call passbench.skip.reset(model) before a new sequence")
    if prev.device != x.device or prev.dtype != x.dtype:
        raise ValueError(f"SkipConv2d '{name}': input moved from {prev.device}/{prev.dtype} to "
                         f"{x.device}/{x.dtype} mid-stream; call passbench.skip.reset(model)")
