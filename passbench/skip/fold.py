"""Inference-time BatchNorm folding that also reaches into ``SkipConv2d`` wrappers.

The standard inference-engine step: a BatchNorm after a conv is a per-channel affine map, so it is
folded into the conv's weight and bias and the BN pass over the full map disappears. For patch
skipping it matters twice: an unfolded BN runs densely on every pixel (skipped or not), and a folded
conv + BN is still a conv, so skipping it reuses exactly what the unfolded pair would have produced:

* PASS / norm gates read the conv's *input*, which folding does not change: same decisions;
* Skip-Conv's residual form ``prev_out + W (x_t - x_{t-1})`` stays exact: the BN scale is folded into
  ``W`` and the BN shift lives in ``prev_out`` (the bias-free residual conv never needs it).

Only ``Conv2d``/``SkipConv2d`` immediately followed by ``BatchNorm2d`` (siblings in module order, as in
``nn.Sequential`` conv-BN-act blocks) are folded; anything else is left alone.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from passbench.skip.wrapper import SkipConv2d


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a (Skip)Conv2d into that conv, in place.

    The model must be in eval mode (BN running statistics are used). The folded BN becomes
    ``nn.Identity``; a ``SkipConv2d`` keeps its gate and state and gets the fused conv.

    Returns:
        the number of BatchNorm layers folded.

    Raises:
        ValueError: the model is in training mode (folding would freeze statistics silently).
    """
    if model.training:
        raise ValueError("fold_batchnorm: put the model in eval mode first (model.eval())")
    n = 0
    for parent in list(model.modules()):
        kids = list(parent.named_children())
        for (n1, a), (n2, b) in zip(kids, kids[1:]):
            if not isinstance(b, nn.BatchNorm2d) or b.training:
                continue
            if isinstance(a, SkipConv2d):
                a.conv = fuse_conv_bn_eval(a.conv.eval(), b)
            elif isinstance(a, nn.Conv2d):
                setattr(parent, n1, fuse_conv_bn_eval(a.eval(), b))
            else:
                continue
            setattr(parent, n2, nn.Identity())
            n += 1
    return n
