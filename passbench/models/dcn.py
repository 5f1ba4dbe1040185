"""Modulated deformable conv (DCNv2) with the parameter names of FairMOT's ``DCN``, on torchvision ops.

FairMOT (``src/lib/models/networks/pose_dla_dcn.py``) uses ``dcn_v2.DCN`` from ``ifzhang/DCNv2``
(branch ``pytorch_1.7``): parameters ``weight`` (O, I, 3, 3), ``bias`` (O) and a child
``conv_offset_mask`` (Conv I -> 3*k*k, zero-initialised); forward
``o1, o2, mask = chunk(conv_offset_mask(x), 3); offset = cat(o1, o2); mask = sigmoid(mask)``.
Here the sampling runs in ``torchvision.ops.deform_conv2d(x, offset, weight, bias, mask=mask)``
(modulated since torchvision 0.9), so an official checkpoint's keys load unchanged.

Deviation (documented): numerical equality with the compiled DCNv2 kernel is not verified here
(no CUDA extension on this machine); both implement the same bilinear sampling (DCNv2 paper Eq. 3).

Skipping: the whole DCN stays **dense** under ``passbench.skip.make_skippable``. The per-layer wrapper
handles ``nn.Conv2d`` only (dense conv + blend, block-sparse gather-conv-scatter); a deformable conv
samples its input at learned offsets, which a block-sparse conv kernel does not implement. Making only
the offset conv skippable would feed stale offsets into a dense deformable conv while saving just
27/O of the layer's MACs, so ``conv_offset_mask`` is deliberately *not* an ``nn.Conv2d`` instance
(``_OffsetConv`` holds the same ``weight``/``bias`` keys). Use ``fairmot_dla34_conv`` (plain convs,
fully skippable) for skipping experiments on the DLA-34 architecture.

MACs: ``torch.utils.flop_counter`` has no formula for ``torchvision::deform_conv2d``; importing this
module registers one (conv-equivalent B*O*Ho*Wo*(I/g)*k*k MACs, i.e. the multiply-adds of the
modulated conv; the bilinear interpolation is not counted, as REFERENCE.md section 1.3 does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import register_flop_formula
from torchvision.ops import deform_conv2d

__all__ = ["DCN"]


class _OffsetConv(nn.Module):
    """3x3 conv producing (2*k*k offsets + k*k mask logits); keys ``weight``, ``bias`` as DCNv2's
    ``conv_offset_mask``. Not an ``nn.Conv2d`` on purpose (see module docstring)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k))  # DCNv2 init_offset: zeros
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class DCN(nn.Module):
    """Modulated deformable conv, DCNv2 ``DCN`` layout (deformable_groups = 1).

    Args:
        cin, cout: channels. k, stride, padding, dilation: as Conv2d (square).

    Forward: x (B, cin, H, W) -> (B, cout, Ho, Wo).
    """

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = cin, cout, k
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        # DCNv2 ``reset_parameters``: uniform(-1/sqrt(n), 1/sqrt(n)), n = cin*k*k; bias zero.
        stdv = 1.0 / math.sqrt(cin * k * k)
        nn.init.uniform_(self.weight, -stdv, stdv)
        self.conv_offset_mask = _OffsetConv(cin, 3 * k * k, k, stride, padding, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        om = self.conv_offset_mask(x)  # (B, 3*k*k, Ho, Wo)
        o1, o2, mask = torch.chunk(om, 3, dim=1)
        # (B, 2*k*k, Ho, Wo); both DCNv2's kernel and torchvision read channel 2j as the y and 2j+1 as
        # the x offset of tap j, so cat(o1, o2) keeps its meaning (o1/o2 are not the y/x halves).
        offset = torch.cat((o1, o2), dim=1)
        # torchvision's CPU kernel segfaults on NaN offsets (floor(NaN) -> garbage index; measured with
        # torchvision 0.29.1); a diverged network must give NaN outputs, not kill the process.
        offset = torch.nan_to_num(offset, nan=0.0)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=torch.sigmoid(mask))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.kernel_size}, stride={self.stride}"


@register_flop_formula(torch.ops.torchvision.deform_conv2d)
def _deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, bias_shape, *args, out_shape=None,
                         **kwargs) -> int:
    """FLOPs (= 2 x MACs) of a deformable conv: as a dense conv of the same shapes (sampling not counted)."""
    b = input_shape[0]
    cout, cin_g, kh, kw = weight_shape
    ho, wo = offset_shape[2], offset_shape[3]
    return 2 * b * cout * ho * wo * cin_g * kh * kw
