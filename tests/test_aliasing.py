"""Output aliasing (``passbench.skip.aliasing``): a skipping layer hands the model its kept output without a
copy only where that cannot change any later frame. Checked against the copying wrapper itself: the same
stream, bit for bit, on hand-built graphs and on the FairMOT models; and the check is shown to see the
difference (aliasing forced onto every layer changes the outputs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from passbench.skip import fold_batchnorm, make_skippable, reset
from passbench.skip.aliasing import probe_output_aliasing, set_output_aliasing
from passbench.skip.wrapper import SkipConv2d


@pytest.fixture(autouse=True)
def _own_rng():
    """These tests seed torch's global RNG; restore it after each, so later tests see what they saw before."""
    with torch.random.fork_rng():
        yield


class Graph(nn.Module):
    """One conv per case: a: relu_ (ok); b: += c (b written by add_; c only read); d: read, then relu_;
    e: the model's output; f: relu_, then a second in-place clamp_; g: read by two convs h, i (all ok)."""

    def __init__(self) -> None:
        super().__init__()
        for n in "abcdefghi":
            setattr(self, n, nn.Conv2d(4, 4, 3, padding=1))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        a = self.act(self.a(x))
        b = self.b(a)
        b += self.c(a)
        d = self.d(a)
        dd = d * 2.0
        d.relu_()
        f = self.f(a).relu_().clamp_(max=0.5)
        g = self.g(a)
        h = self.h(g) + self.i(g)
        return self.e(b + d + dd + f + h)


def _wrapped(net: nn.Module, method: str = "fixed", **kw) -> nn.Module:
    torch.manual_seed(0)
    make_skippable(net, method, patch_size=4, execution="sparse", **kw)
    return net.eval()


def test_probe_names_each_reason():
    v = probe_output_aliasing(_wrapped(Graph()), torch.randn(1, 4, 16, 16))
    assert v["a"] == v["c"] == v["g"] == v["h"] == v["i"] == "ok"
    assert v["b"].startswith("written in place by aten.add_")
    assert v["d"].startswith("read before aten.relu_")
    assert v["e"].startswith("part of the model's output")
    assert v["f"].startswith("written by aten.relu_") and "clamp_" in v["f"]


def test_residual_form_is_never_aliased():
    v = probe_output_aliasing(_wrapped(Graph(), "skipconv", threshold=0.1), torch.randn(1, 4, 16, 16))
    assert set(v.values()) == {"Skip-Conv residual form (needs the raw previous output)"}


def _stream(net: nn.Module, frames: list[torch.Tensor]) -> list[torch.Tensor]:
    """The outputs of a stream, held as returned (a caller may keep a frame's outputs past the next frame)."""
    reset(net)
    with torch.inference_mode():
        return [net(x) for x in frames]


def _frames(shape, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(shape, generator=g)
    out = []
    for _ in range(n):  # a drifting frame (sensor noise everywhere) with local changes, as video
        base = base + 0.02 * torch.randn(shape, generator=g)
        i, j = (int(v) for v in torch.randint(0, shape[-1] // 2, (2,), generator=g))
        base[..., i:i + 6, j:j + 6] = torch.rand(shape[:-2] + (min(6, shape[-2] - i), min(6, shape[-1] - j)),
                                                 generator=g)
        out.append(base)
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


def _compare(net: nn.Module, frames: list[torch.Tensor], example: torch.Tensor) -> tuple[bool, bool, int]:
    """(aliased stream == copying stream, forcing alias everywhere changes it, layers aliased)."""
    copying = _stream(net, frames)
    verdict = set_output_aliasing(net, example)
    aliased = _stream(net, frames)
    n_ok = sum(r == "ok" for r in verdict.values())
    for m in net.modules():
        if isinstance(m, SkipConv2d):
            m.alias_out = True
    forced = _stream(net, frames)
    set_output_aliasing(net, enabled=False)
    return (all(_same(a, b) for a, b in zip(copying, aliased)),
            not all(_same(a, b) for a, b in zip(copying, forced)), n_ok)


def test_hand_built_graph_stream_is_bit_identical():
    net = _wrapped(Graph(), keep=0.5, seed=1)
    same, forced_differs, n_ok = _compare(net, _frames((1, 4, 16, 16)), torch.zeros(1, 4, 16, 16))
    assert n_ok == 5 and same and forced_differs


@pytest.mark.parametrize("name", ["timm:resnet18", "fairmot_mbv2",
                                  pytest.param("fairmot_dla34_conv", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", ["fixed", "pass"])
def test_fairmot_stream_is_bit_identical(name, method):
    from passbench.models import build_model

    torch.manual_seed(0)
    net = build_model(name, pretrained=False).eval()
    kw = {"keep": 0.5, "seed": 3} if method == "fixed" else {"embed_dim": 8, "hidden": 16, "rates": 0.5}
    make_skippable(net, method, patch_size=4, execution="sparse", **kw)
    fold_batchnorm(net)
    net = net.to(memory_format=torch.channels_last)
    frames = [f.contiguous(memory_format=torch.channels_last) for f in _frames((1, 3, 64, 96), n=4)]
    same, forced_differs, n_ok = _compare(net, frames, torch.zeros(1, 3, 64, 96))
    assert n_ok > 0 and same and forced_differs


def test_residual_layers_copy_even_when_told_to_alias():
    """The Skip-Conv residual form adds W (X_t - X_{t-1}) to the raw previous output: the wrapper keeps
    its copy whatever ``alias_out`` says (the Graph's activations would otherwise enter the next frame)."""
    net = _wrapped(Graph(), "skipconv", threshold=0.05)
    frames = _frames((1, 4, 16, 16))
    copying = _stream(net, frames)
    for m in net.modules():
        if isinstance(m, SkipConv2d):
            m.alias_out = True
    assert all(_same(a, b) for a, b in zip(copying, _stream(net, frames)))
