"""What gate training reads from the last forward: the mean skip probability and Skip-Conv's budget term.

Both are differentiable through the gates (the reference path's straight-through masks) and read the
``GateOut`` each ``SkipConv2d`` kept from its last gated forward.
"""

from __future__ import annotations

import torch
from torch import nn

from passbench.skip.control import wrapped_layers
from passbench.skip.macs import conv_dense_macs
from passbench.skip.wrapper import SkipConv2d

__all__ = ["budget_loss", "skip_probability"]


def _gated(model: nn.Module) -> list[SkipConv2d]:
    layers = [m for m in wrapped_layers(model) if m.last is not None and m.last.active]
    if not layers:
        raise RuntimeError("no layer was gated in the last forward (first frame, mask mode 'off', or refresh)")
    return layers


def skip_probability(model: nn.Module) -> torch.Tensor:
    """Mean skip probability over all gated patches of the last forward (scalar, differentiable)."""
    probs = [m.last.prob.flatten() for m in _gated(model)]
    return torch.cat(probs).mean()


def budget_loss(model: nn.Module, target: float) -> torch.Tensor:
    """Skip-Conv sparsity budget (Habibian et al., CVPR-21, "budget"), as implemented here:

    ``sum_l w_l * relu(f_l - target)`` with f_l = mean *compute* (firing) probability of layer l in
    the last forward and w_l = layer l's dense MACs / the sum over gated layers. ``target`` is the
    allowed compute fraction in [0, 1] (skip rate 1 - target). Differentiable through the gates.
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"budget_loss: target must be in [0, 1], got {target}")
    layers = _gated(model)
    w = torch.tensor([float(conv_dense_macs(m.conv, m.state.prev_out.shape[-2:])) for m in layers])
    w = w / w.sum()
    fire = torch.stack([1.0 - m.last.prob.mean() for m in layers])
    return (w.to(fire) * torch.relu(fire - target)).sum()
