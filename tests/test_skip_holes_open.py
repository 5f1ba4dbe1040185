"""A skip-engine hole that gives a silent wrong output, reproduced; the fix belongs in
``passbench/skip/stacking.py`` (``GateGroups``).

The test asserts what correct code does and is marked ``xfail(strict=True)``: it fails now, and the day a
fix lands it passes, so strict xfail turns the run red until the marker is removed.

Two PASS-gated convs that read one tensor share a stacked gate decision (``GateGroups``); the second takes
the stored result when it is called with the same tensor *object* (identity only), even when the tensor
was changed in place between the two calls, so it skips on stale content. (A version-counter check would
catch it under ``no_grad`` only: inference tensors keep no version counter.)

The other hole once listed here, a shared conv in a submodule called directly, is fixed
(``tests/test_skip_holes.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from passbench import skip


class _TwoReaders(nn.Module):
    """``a`` and ``b`` read one tensor ``f``; between them ``f`` is negated, in place or not."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Conv2d(3, 8, 3, padding=1)
        self.a, self.b = nn.Conv2d(8, 4, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.inplace = True

    def forward(self, x):
        f = torch.relu(self.trunk(x))
        ya = self.a(f)
        f = f.mul_(-1.0) if self.inplace else f * -1.0
        return ya, self.b(f)


def _outputs(model: nn.Module, frames: list[torch.Tensor], mode) -> list[tuple]:
    skip.reset(model)
    out = []
    with mode():
        for x in frames:
            ya, yb = model(x)
            masks = tuple(m.last.mask.clone() if m.last is not None else None for _, m in skip.skippable_layers(model))
            out.append((ya.clone(), yb.clone(), masks))
    return out


@pytest.mark.xfail(strict=True, reason="a stacked PASS gate decision is reused for a tensor changed in place "
                                       "between its two readers (identity compared, not content)")
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_stacked_gate_decision_follows_an_in_place_change(mode):
    torch.manual_seed(0)
    inplace = skip.make_skippable(_TwoReaders(), "pass_p", patch_size=4, embed_dim=8, hidden=8, rates=0.5,
                                  min_patches=4, layers=["a", "b"], execution="sparse").eval()
    apart = copy.deepcopy(inplace)
    apart.inplace = False  # b reads a new tensor: never stacked with a, each gate decides alone
    g = torch.Generator().manual_seed(2)
    frames = [torch.randn(1, 3, 32, 32, generator=g) for _ in range(5)]
    got, want = _outputs(inplace, frames, mode), _outputs(apart, frames, mode)
    for t, ((ga, gb, gm), (wa, wb, wm)) in enumerate(zip(got, want)):
        for name, m1, m2 in zip(("a", "b"), gm, wm):
            assert (m1 is None) == (m2 is None), (t, name)
            if m1 is not None:
                assert torch.equal(m1, m2), f"frame {t}, layer {name}: {int((m1 != m2).sum())} decisions differ"
        torch.testing.assert_close(ga, wa, rtol=0, atol=0)
        torch.testing.assert_close(gb, wb, rtol=0, atol=0)
