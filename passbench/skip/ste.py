"""``SelectSTE``: the reference path's blend of the previous and the new output, with the gradient of the
arithmetic blend (so a mask's straight-through gradient reaches its gate); ``skip.wrapper`` uses it."""

from __future__ import annotations

import torch

__all__ = ["SelectSTE"]


class SelectSTE(torch.autograd.Function):
    """The reference path's blend: forward ``where(mu skips, prev, new)``, backward as the blend
    ``mu * prev + (1 - mu) * new`` (so the mask's straight-through gradient reaches the gate).

    Why not the arithmetic blend itself: with a 0/1 mask it gives the same values except where
    ``prev`` or ``new`` is NaN/inf (``0 * NaN = NaN``), where the reference path then stayed NaN for
    ever while the sparse path, which never touches the other operand, recovered. The select makes
    both paths one behaviour: a skipped patch is ``prev`` exactly, a computed one ``new`` exactly. A
    pixel skips where ``mu < 0.5`` is false, the wrapper's ``compute = mask < 0.5`` rule (a NaN mask
    entry skips).

    Args (forward): mu (B, 1, Ho, Wo) 0/1 skip mask (may carry the STE gradient); prev, new
    (B, C, Ho, Wo).
    """

    @staticmethod
    def forward(ctx, mu: torch.Tensor, prev: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mu, prev, new)
        return torch.where(mu < 0.5, new, prev)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        mu, prev, new = ctx.saved_tensors
        g_mu = (g * (prev - new)).sum_to_size(mu.shape) if ctx.needs_input_grad[0] else None
        g_prev = (g * mu).sum_to_size(prev.shape) if ctx.needs_input_grad[1] else None
        g_new = (g * (1.0 - mu)).sum_to_size(new.shape) if ctx.needs_input_grad[2] else None
        return g_mu, g_prev, g_new
