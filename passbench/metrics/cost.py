"""Whole-model MAC counts with ``torch.utils.flop_counter.FlopCounterMode`` (REFERENCE.md section 4).

FlopCounterMode reports FLOPs = 2 x MACs for conv / linear / matmul ops (transposed and grouped
convs included) and counts no elementwise, BN or pooling ops; ``count_macs`` halves it. It counts
what runs: a masked conv computed densely is counted densely (patch skipping is accounted by
``passbench.skip.collect_stats``, not here).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs", "macs_by_module"]


def _run(model: nn.Module, inputs: tuple, depth: int | None) -> FlopCounterMode:
    fc = FlopCounterMode(display=False, depth=depth)
    with torch.no_grad(), fc:
        model(*inputs)
    return fc


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """MACs of one forward ``model(*inputs)`` (FlopCounterMode FLOPs / 2), summed over the batch."""
    if not inputs:
        raise ValueError("count_macs: pass the model's input tensor(s)")
    return int(_run(model, inputs, None).get_total_flops()) // 2


def macs_by_module(model: nn.Module, *inputs: torch.Tensor) -> dict[str, int]:
    """Per-module MACs of one forward: ``{qualified module name: MACs}`` (every level; a parent's
    count includes its children; the root is ``""``, FlopCounterMode's "Global")."""
    if not inputs:
        raise ValueError("macs_by_module: pass the model's input tensor(s)")
    counts = _run(model, inputs, None).get_flop_counts()
    out = {}
    for key, ops in counts.items():
        name = "" if key == "Global" else key.split(".", 1)[1] if "." in key else ""
        out[name] = int(sum(ops.values())) // 2
    return out
