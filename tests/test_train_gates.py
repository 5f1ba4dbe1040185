"""A stand-in skip engine (same contract as ``passbench.skip`` for the calls the Skip-Conv stage makes)
and the fixtures ``tests/test_train_skipconv.py`` uses: it tests the *training* code (which parameters
move, the calibration) independently of the real engine. The PASS stages are tested with the real
engine in ``tests/test_pass_p.py`` and ``tests/test_train_engine.py``.
"""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from passbench.train import skiputil
from passbench.train.common import make_cfg
from passbench.train.task import train_task
from tests.test_train_task import TINY, synthetic_store


class FakeGate(nn.Module):
    def __init__(self, c, patch):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(2 * c, 1, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)  # p = 0.5 at start

    def forward(self, x, prev):
        logit = F.avg_pool2d(self.proj(torch.cat([x, prev], 1)), self.patch, ceil_mode=True)  # (B,1,hp,wp)
        p = torch.sigmoid(logit)
        hard = torch.bernoulli(p.detach()) if self.training else (p > 0.5).float()
        return hard + p - p.detach(), p


class NormGate(nn.Module):
    """Skip-Conv norm gate stand-in: skip where the patch residual L2 norm is below the threshold."""

    def __init__(self, patch, threshold=0.0):
        super().__init__()
        self.patch, self.threshold, self.norms = patch, threshold, None

    def residual_norm(self, x, prev):
        return F.avg_pool2d(((x - prev) ** 2).sum(1, keepdim=True), self.patch, ceil_mode=True).sqrt()

    def forward(self, x, prev):
        m = (self.residual_norm(x, prev) < self.threshold).float()
        return m, m


class FakeSkipConv(nn.Module):
    def __init__(self, conv, patch, gate="learned", threshold=0.0):
        super().__init__()
        self.conv = conv
        self.gate = FakeGate(conv.in_channels, patch) if gate == "learned" else NormGate(patch, threshold)
        self.mode, self.prev_in, self.prev_out, self.last, self.norms = "normal", None, None, None, None

    def forward(self, x):
        y = self.conv(x)
        if isinstance(self.gate, NormGate) and self.prev_in is not None:
            self.norms = self.gate.residual_norm(x, self.prev_in)
        if self.mode != "off" and self.prev_in is not None:
            m, p = self.gate(x, self.prev_in)
            self.last = (m.detach().mean(), p.mean())
            if self.mode == "inverted":
                m = 1 - m
            m = F.interpolate(m, size=y.shape[-2:], mode="nearest")
            y = y * (1 - m) + self.prev_out * m
        self.prev_in, self.prev_out = x.detach(), y.detach()
        return y


def _layers(model):
    return [m for m in model.modules() if isinstance(m, FakeSkipConv)]


def make_skippable(model, method, *, patch_size=8, execution="reference", gate="learned", thresholds=None, **_):
    i = 0
    for name, mod in list(model.body.named_children()):
        if isinstance(mod, nn.Conv2d):
            th = thresholds[i] if thresholds else 0.0
            model.body._modules[name] = FakeSkipConv(mod, patch_size // (1 if name == "0" else 2), gate, th)
            i += 1
    return model


def set_thresholds(model, th):
    for m, t in zip(_layers(model), th if isinstance(th, list) else [th] * len(_layers(model))):
        m.gate.threshold = t


fake = types.ModuleType("fake_skip")
fake.make_skippable = make_skippable
fake.reset = lambda model: [setattr(m, "prev_in", None) or setattr(m, "last", None) for m in _layers(model)]
fake.set_mask_mode = lambda model, mode: [setattr(m, "mode", mode) for m in _layers(model)]
fake.gate_parameters = lambda model: [p for m in _layers(model) for p in m.gate.parameters()]
fake.skip_probability = lambda model: torch.stack([m.last[1] for m in _layers(model) if m.last is not None]).mean()
fake.budget_loss = lambda model, compute: torch.relu((1 - fake.skip_probability(model)) - compute)
fake.residual_norms = lambda model: [m.norms for m in _layers(model)]
fake.set_thresholds = set_thresholds
fake.collect_stats = lambda model: {"patch_skip_rate": float(torch.stack([m.last[0] for m in _layers(model) if m.last is not None]).mean())}


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setitem(sys.modules, "fake_skip", fake)
    monkeypatch.setattr(skiputil, "ENGINE", "fake_skip")


def cfg(stage, **kw):
    base = dict(model=TINY, pretrained=None, input_wh=[64, 48], steps=6, batch_size=2, log_every=1, ckpt_every=3,
                scale_jitter=0.0, method="fake")
    base.update(kw)
    return make_cfg(stage, base)


@pytest.fixture
def task_final(tmp_path):
    return train_task(cfg("task", lr=1e-2, steps=4), tmp_path / "task", stores=[synthetic_store(n=8)])["final"]
