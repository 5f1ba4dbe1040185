"""Inference-time BatchNorm folding that also reaches into ``SkipConv2d`` wrappers.

The standard inference-engine step: a BatchNorm after a conv is a per-channel affine map, so it is
folded into the conv's weight and bias and the BN pass over the full map disappears. For patch
skipping it matters twice: an unfolded BN runs densely on every pixel (skipped or not), and a folded
conv + BN is still a conv, so skipping it reuses exactly what the unfolded pair would have produced:

* PASS / norm gates read the conv's *input*, which folding does not change: same decisions;
* Skip-Conv's residual form ``prev_out + W (x_t - x_{t-1})`` stays exact: the BN scale is folded into
  ``W`` and the BN shift lives in ``prev_out`` (the bias-free residual conv never needs it).

Only ``Conv2d``/``SkipConv2d`` immediately followed by a BatchNorm (siblings in module order, as in
``nn.Sequential`` conv-BN-act blocks) are folded, and only BatchNorms whose forward is known:

* ``nn.BatchNorm2d`` itself: replaced by ``nn.Identity``;
* timm's ``BatchNormAct2d`` (``timm.layers.norm_act``: BN, then its ``drop``, then its ``act`` in one
  module; timm's ``ConvNormAct`` blocks, e.g. RegNet, MobileNetV2): replaced by its own ``drop`` and
  ``act`` modules, so the activation survives (``drop`` is a no-op in eval mode but kept as is);
* any other ``BatchNorm2d`` subclass that overrides ``forward`` is left unfolded (its forward may do
  more than BN; folding it would silently change the output), as is anything else.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from passbench.skip.wrapper import SkipConv2d


def _after_bn(bn: nn.Module) -> nn.Module | None:
    """What replaces a folded BN: ``nn.Identity`` for plain BN, ``drop`` + ``act`` for timm's
    ``BatchNormAct2d``; None when the module is not a BN this function knows how to fold."""
    if not isinstance(bn, nn.BatchNorm2d) or bn.training or bn.running_mean is None:
        return None
    if type(bn).forward is nn.BatchNorm2d.forward:
        return nn.Identity()
    try:
        from timm.layers import BatchNormAct2d  # noqa: PLC0415 - timm is optional for this module
    except ImportError:  # pragma: no cover - timm is a declared dependency
        return None
    if isinstance(bn, BatchNormAct2d) and type(bn).forward is BatchNormAct2d.forward:
        rest = [m for m in (bn.drop, bn.act) if not isinstance(m, nn.Identity)]
        return rest[0] if len(rest) == 1 else nn.Sequential(*rest) if rest else nn.Identity()
    return None


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every known BatchNorm that directly follows a (Skip)Conv2d into that conv, in place.

    The model must be in eval mode (BN running statistics are used). A plain ``BatchNorm2d`` becomes
    ``nn.Identity``; timm's ``BatchNormAct2d`` becomes its activation (and drop) module; a
    ``SkipConv2d`` keeps its gate and state and gets the fused conv. Other BN subclasses are left
    alone (see the module docstring).

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
            rest = _after_bn(b)
            if rest is None:
                continue
            if isinstance(a, SkipConv2d):
                a.conv = fuse_conv_bn_eval(a.conv.eval(), b)
            elif isinstance(a, nn.Conv2d) and type(a).forward is nn.Conv2d.forward:
                # (a subclass with its own forward, e.g. weight standardisation, would not fold exactly)
                setattr(parent, n1, fuse_conv_bn_eval(a.eval(), b))
            else:
                continue
            setattr(parent, n2, rest.eval())
            n += 1
    return n
