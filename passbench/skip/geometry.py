"""Patch geometry of a wrapped convolution: output size, integer padding, patch areas, mask upsampling.

Shared by the wrapper (``skip.wrapper``) and ``make_skippable`` (``skip.make``). Masks are
(B, Hp, Wp) over the output patch grid, ``Hp = ceil(Ho / p)``, ``Wp = ceil(Wo / p)``; edge patches
are cropped where ``p`` does not divide the map.
"""

from __future__ import annotations

import torch
from torch import nn

from passbench.skip.sparse import conv_out_size

__all__ = ["conv_input_sizes", "int_padding", "out_hw", "patch_area", "upsample"]


def out_hw(conv: nn.Conv2d, h: int, w: int) -> tuple[int, int]:
    """(Ho, Wo) of ``conv`` (integer padding) on an (h, w) input."""
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    ph, pw = conv.padding
    return conv_out_size(h, kh, sh, ph, dh), conv_out_size(w, kw, sw, pw, dw)


_AREA: dict[tuple, torch.Tensor] = {}


def patch_area(p: int, ho: int, wo: int, device: torch.device) -> torch.Tensor:
    """(Hp, Wp) int64 output pixels per patch of a ``ceil(ho / p) x ceil(wo / p)`` grid (edge patches
    cropped). Integer on purpose: a float16/bfloat16 product or sum would round the count."""
    key = (p, ho, wo, str(device))
    a = _AREA.get(key)
    if a is None:
        hs = torch.tensor([min(p, ho - i) for i in range(0, ho, p)], dtype=torch.int64, device=device)
        ws = torch.tensor([min(p, wo - j) for j in range(0, wo, p)], dtype=torch.int64, device=device)
        a = _AREA[key] = hs[:, None] * ws[None, :]
    return a


def upsample(m: torch.Tensor, p: int | tuple[int, int], ho: int, wo: int) -> torch.Tensor:
    """(B, 1, Hp, Wp) patch mask -> (B, 1, Ho, Wo) pixel mask (edge patches cropped); ``p`` = patch
    size, or (height, width) for non-square patches."""
    ph, pw = (p, p) if isinstance(p, int) else p
    return m.repeat_interleave(ph, 2).repeat_interleave(pw, 3)[:, :, :ho, :wo]


def int_padding(conv: nn.Conv2d, name: str) -> nn.Conv2d:
    """``conv`` itself, or for string padding an equivalent Conv2d with integer padding that shares
    its Parameter objects (the caller's module is not modified; its state-dict keys are unchanged).

    ``"valid"`` is padding 0. ``"same"`` (stride 1 only, PyTorch's rule) pads ``dilation * (k - 1)``
    per axis, half on each side, the extra pixel of an odd total on the bottom/right
    (``torch.nn.modules.conv._ConvNd``): an integer padding only when the total is even.
    """
    if not isinstance(conv.padding, str):
        return conv
    if conv.padding == "valid":
        pad = (0, 0)
    else:  # "same"
        totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in totals):
            raise ValueError(f"SkipConv2d({name}): padding='same' with kernel {conv.kernel_size} and dilation "
                             f"{conv.dilation} pads asymmetrically (one more pixel bottom/right), which the "
                             "block-sparse path does not support; use an odd kernel or exclude the layer")
        pad = (totals[0] // 2, totals[1] // 2)
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, pad, conv.dilation,
                    conv.groups, bias=conv.bias is not None, device="meta")
    new.weight, new.bias = conv.weight, conv.bias  # the same Parameters: shared storage, same grads
    return new.train(conv.training)


@torch.no_grad()
def conv_input_sizes(model: nn.Module, convs: list[nn.Conv2d], input_shape) -> dict[int, tuple[int, int]]:
    """Input (H, W) of each conv (keyed by ``id``) for one zero input of ``input_shape`` ((C, H, W) or
    (B, C, H, W)), run in eval mode; a conv called more than once keeps its first call, one never called
    is absent."""
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    sizes: dict[int, tuple[int, int]] = {}

    def record(m: nn.Module, args: tuple) -> None:  # a pre-hook must return None (else: new args)
        sizes.setdefault(id(m), tuple(args[0].shape[-2:]))

    hooks = [c.register_forward_pre_hook(record) for c in convs]
    was = model.training
    p = next(model.parameters())
    try:
        model.eval()
        model(torch.zeros(shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return sizes
