"""PASS-P: task-independent gate pre-training (paper, "Task-Independent Pre-training for Gate").

For a pair ``(X_{t-1}, X_t)`` with the backbone frozen (weights and BatchNorm statistics):

1. anchor: dense pass on ``X_t`` (mask mode ``off``) -> ``H_a``;
2. positive: state primed with a dense pass on ``X_{t-1}``, gated pass on ``X_t`` where the patches
   each gate marks 1 reuse the previous output (mode ``normal``) -> ``H_p``;
3. negative: the same primed state restored, gated pass on ``X_t`` where every layer skips the
   *complement of its own positive mask* (mode ``complement``: the patches marked 0 reuse the
   previous output, the gate is not run again) -> ``H_n``. The paper builds both samples from one
   binary mask ("replacing the patches with index 1 and 0"); the authors' code instead re-runs every
   gate in the negative pass, so deeper gates, seeing other inputs, draw other masks
   (``cfg.negative="inverted"`` reproduces that).

**The "heatmap" carries every gated layer's effect**: the model's output heads named in
``cfg.heads`` (default all of FairMOT's: ``hm`` as sigmoid probabilities, ``id`` L2-normalised per
pixel as the tracker reads it, ``wh`` and ``reg`` raw; pose, ``task=pose``: ``heatmaps`` as each joint's
softmax distribution, which the soft-argmax integrates, and ``coords`` raw), each compared on its own scale. A gate on
``wh.0`` can only change ``wh``: a loss on ``hm`` alone gives it exactly zero triplet gradient
(measured on the first sample weights: four of twelve gates learned nothing but the rate term).

Loss (Eq. 6, "we employ the Triplet-Margin-Loss"):

* ``distance="balanced"`` (the default; below, ``pass_p_loss``): each head's distances in the unit of its
  distance under untrained (random-mask) gates, one hinge per head.
* ``distance="mse"`` (the earlier default): per head ``d_h = MSE(H_h, A_h) / mean(A_h^2)`` (the anchor's scale,
  so that each head weighs alike whatever its units), ``d = mean_h d_h``, then
  ``mean_b max(d_p - d_n + margin, 0)``: Eq. 6's ``min L_p + max L_n`` while the hinge is active.
* ``distance="l2"``: ``torch.nn.TripletMarginLoss(margin)`` (p=2) on the concatenated heads, each
  divided by its anchor RMS: the authors' pre-training example (``TripletMarginLoss(margin=200)`` on
  the model outputs; margin 200 suits their raw output scale, not these normalised ones).

Deviation (the paper is silent on it): the triplet loss alone is minimised by skipping nothing (then
``H_p = H_a`` exactly and ``H_n`` is farthest), so a target-rate term
``rate_weight * (mean skip probability - target_rate)^2`` holds the skip rate in range.
``rate_weight=0`` removes it; ``docs/training.md`` shows the ablation on ``PassGate``.

After training, each layer's rate is measured on training pairs (its mean skip probability in
training mode, i.e. the Bernoulli rate Eq. 5 samples) and stored in the skip spec (``rates``): at
inference every gate skips that fraction of its patches, its highest-scoring ones (``PassGate``
``rule="topk"``), so inference runs at the operating point training targeted.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from passbench.train import skiputil as sk
from passbench.train.build import build_stage_model, out_dir, stage_samples, to_device
from passbench.train.common import FINAL, DistEnv, StageCfg, init_distributed, run_loop, save_final, seed_all
from passbench.train.data import FrameStore, StepBatches

NEGATIVES = ("complement", "inverted")
DISTANCES = ("balanced", "mse", "l2")


def head_maps(out: dict[str, torch.Tensor], heads: Sequence[str]) -> dict[str, torch.Tensor]:
    """Model heads -> ``{head: (B, D) per sample}``: ``hm`` through a sigmoid, ``id`` L2-normalised over
    channels (as FairMOT's tracker reads them), pose ``heatmaps`` ((B, J, D, H, W) or (B, J, H, W) logits)
    as each joint's softmax over its map (the distribution the soft-argmax integrates; logits are only
    defined up to a per-joint constant), others raw (``coords``, ``locmaps``)."""
    maps = {}
    for h in heads:
        if h not in out:
            raise KeyError(f"head {h!r} not in the model output (has {sorted(out)})")
        t = out[h]
        if h == "hm":
            t = torch.sigmoid(t)
        elif h == "id":
            t = F.normalize(t, dim=1)
        elif h == "heatmaps":
            t = F.softmax(t.flatten(2), dim=2)
        maps[h] = t.flatten(1)
    return maps


def _scales(anchor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per head and sample, the anchor's mean square (B, 1): the ``mse`` distance's unit."""
    return {h: a.detach().pow(2).mean(1, keepdim=True).clamp_min(1e-12) for h, a in anchor.items()}


def head_mse(a: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per head, the mean squared difference of ``x`` from the anchor ``a``, per sample (B,)."""
    return {h: ((x[h] - a[h]) ** 2).mean(1) for h in a}


def triplet_terms(a: dict[str, torch.Tensor], p: dict[str, torch.Tensor], n: dict[str, torch.Tensor],
                  distance: str, head_scales: dict[str, float] | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per head, the anchor-positive and anchor-negative distances of every sample, ``({h: (B,)}, {h: (B,)})``,
    in the unit of ``distance``: ``balanced``: MSE / ``head_scales[h]``; ``mse``: MSE / the anchor's mean square."""
    mp, mn = head_mse(a, p), head_mse(a, n)
    if distance == "balanced":
        if head_scales is None or set(head_scales) != set(a):
            raise ValueError(f"distance 'balanced' needs one scale per head {sorted(a)}, got "
                             f"{None if head_scales is None else sorted(head_scales)}")
        unit = {h: max(float(head_scales[h]), 1e-12) for h in a}
    elif distance == "mse":
        unit = {h: s[:, 0] for h, s in _scales(a).items()}
    else:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    return {h: mp[h] / unit[h] for h in a}, {h: mn[h] / unit[h] for h in a}


def triplet_loss(a: dict[str, torch.Tensor], p: dict[str, torch.Tensor], n: dict[str, torch.Tensor], margin: float,
                 distance: str, head_scales: dict[str, float] | None = None
                 ) -> tuple[torch.Tensor, float, float]:
    """Eq. 6 as a triplet margin loss over per-head maps (``head_maps``).

    * ``balanced`` (default): one hinge per head, ``mean_h mean_b max(d_p,h - d_n,h + margin, 0)`` with each
      head's distances in the unit ``head_scales[h]`` (:func:`measure_head_scales`), so that every head's
      positive / negative gap is of the same order and each head's hinge binds or not on its own;
    * ``mse``: ``mean_b max(mean_h d_p,h - mean_h d_n,h + margin, 0)`` with each head's MSE relative to the
      anchor's mean square (the objective of the earlier sample weights; see the module doc);
    * ``l2``: ``torch.nn.TripletMarginLoss(margin)`` on the concatenated heads, each over its anchor RMS.

    Returns:
        ``(loss, L_p, L_n)`` with ``L_p`` / ``L_n`` the mean anchor-positive / anchor-negative distances.
    """
    if distance == "l2":
        scale = _scales(a)
        cat = lambda d: torch.cat([d[h] / scale[h].sqrt() for h in a], 1)  # noqa: E731
        ca, cp, cn = cat(a), cat(p), cat(n)
        dp = F.pairwise_distance(ca, cp, p=2.0, eps=1e-6)
        dn = F.pairwise_distance(ca, cn, p=2.0, eps=1e-6)
        loss = F.triplet_margin_loss(ca, cp, cn, margin=margin, p=2.0)
        return loss, float(dp.mean().detach()), float(dn.mean().detach())
    tp, tn = triplet_terms(a, p, n, distance, head_scales)
    if distance == "balanced":
        loss = torch.stack([F.relu(tp[h] - tn[h] + margin).mean() for h in a]).mean()
    else:
        loss = F.relu(torch.stack(list(tp.values())).mean(0) - torch.stack(list(tn.values())).mean(0) + margin).mean()
    dp = torch.stack(list(tp.values())).mean(0)
    dn = torch.stack(list(tn.values())).mean(0)
    return loss, float(dp.mean().detach()), float(dn.mean().detach())


def hinge_active(tp: dict[str, torch.Tensor], tn: dict[str, torch.Tensor], margin: float, distance: str) -> torch.Tensor:
    """Which (head, sample) hinges pass gradient: (H, B) bool for ``balanced`` (one hinge per head), (1, B) for
    ``mse`` (one hinge over the mean of the heads)."""
    dp, dn = torch.stack(list(tp.values())), torch.stack(list(tn.values()))  # (H, B)
    if distance != "balanced":
        dp, dn = dp.mean(0, keepdim=True), dn.mean(0, keepdim=True)
    return (dp - dn + margin) > 0


class PassPObjective(nn.Module):
    """``forward(batch) -> (loss, logs)`` for one PASS-P step; only gate parameters get gradients.

    ``head_scales`` (buffer, saved with the objective so that a resumed run keeps them): each head's unit
    for ``distance="balanced"`` (:func:`measure_head_scales`), in ``cfg.heads`` order; 0 = not measured yet.
    """

    def __init__(self, model: nn.Module, cfg: StageCfg) -> None:
        super().__init__()
        if cfg.negative not in NEGATIVES:
            raise ValueError(f"negative must be one of {NEGATIVES}, got {cfg.negative!r}")
        if cfg.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {cfg.distance!r}")
        self.model, self.cfg = model, cfg
        self.register_buffer("head_scales", torch.zeros(len(cfg.heads), dtype=torch.float64))

    def scales(self) -> dict[str, float] | None:
        """``{head: unit}`` once measured, else None."""
        if not bool((self.head_scales > 0).any()):
            return None
        return {h: float(v) for h, v in zip(self.cfg.heads, self.head_scales)}

    def set_scales(self, scales: dict[str, float]) -> None:
        self.head_scales.copy_(torch.tensor([float(scales[h]) for h in self.cfg.heads], dtype=torch.float64))

    def train(self, mode: bool = True) -> "PassPObjective":
        # Backbone frozen: eval mode (BatchNorm uses running statistics and does not update them).
        super().train(False)
        for m in sk.gate_modules(self.model):
            m.train(mode)  # gates sample (Gumbel + Bernoulli, STE) while training
        self.training = mode
        return self

    def triplet(self, batch: dict[str, torch.Tensor]) -> tuple[dict, dict, dict]:
        """Anchor, positive and negative head maps of one batch (positive first; see the module doc)."""
        cfg, model = self.cfg, self.model
        x_prev, x = batch["prev"], batch["img"]
        with torch.no_grad():
            sk.reset(model)
            sk.set_mask_mode(model, "off")
            h_a = head_maps(model(x), cfg.heads)  # anchor: dense X_t
        sk.prime(model, x_prev)
        primed = sk.stream_states(model)
        sk.set_mask_mode(model, "normal")
        h_p = head_maps(model(x), cfg.heads)
        self._rate = sk.skip_probability(model)
        self._hard_rate = sk.skip_rate(model)
        sk.set_stream_states(model, primed)
        sk.set_mask_mode(model, "complement" if cfg.negative == "complement" else "inverted")
        h_n = head_maps(model(x), cfg.heads)
        sk.set_mask_mode(model, "normal")
        return h_a, h_p, h_n

    def terms(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """``(triplet, rate_term, logs)`` of one batch: the two parts of the loss, unweighted rate term."""
        cfg = self.cfg
        h_a, h_p, h_n = self.triplet(batch)
        scales = self.scales() if cfg.distance == "balanced" else None
        if cfg.distance == "balanced" and scales is None:
            raise RuntimeError("PassPObjective(distance='balanced'): head scales not measured "
                               "(measure_head_scales before the first step)")
        trip, lp, ln = triplet_loss(h_a, h_p, h_n, cfg.margin, cfg.distance, scales)
        rate_term = (self._rate - cfg.target_rate) ** 2
        logs = {"triplet": float(trip.detach()), "L_p": lp, "L_n": ln, "skip_prob": float(self._rate.detach()),
                "skip_rate": self._hard_rate}
        if cfg.distance != "l2":
            with torch.no_grad():
                tp, tn = triplet_terms(h_a, h_p, h_n, cfg.distance, scales)
                logs["active"] = float(hinge_active(tp, tn, cfg.margin, cfg.distance).float().mean())
                for h in cfg.heads:
                    logs[f"L_p.{h}"], logs[f"L_n.{h}"] = float(tp[h].mean()), float(tn[h].mean())
        return trip, rate_term, logs

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        trip, rate_term, logs = self.terms(batch)
        return trip + self.cfg.rate_weight * rate_term, logs


@contextlib.contextmanager
def sampling_gates(model: nn.Module) -> Iterator[None]:
    """PASS gates sample as in training (Gumbel noise, Bernoulli, Eq. 4-5) while their BatchNorm layers use
    and keep their running statistics (eval mode): a measurement that leaves the weights untouched."""
    gates = [m.gate for m in sk.pass_layers(model)]
    was = [(g, g.training) for g in gates] + [(b, b.training) for g in gates for b in g.modules()
                                             if isinstance(b, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for g in gates:
        g.train(True)
        for b in g.modules():
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                b.eval()
    try:
        yield
    finally:
        for m, w in was:
            m.training = w


@torch.no_grad()
def measure_layer_rates(model: nn.Module, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
    """Each PASS-gated layer's training-mode skip rate on ``pairs``: the mean skip probability its gate
    samples from (Eq. 4-5; backbone and the gates' BatchNorm in eval mode, :func:`sampling_gates`, so nothing
    is updated), in module order. A layer whose gate never decides (grid under ``min_patches``) gets 0.

    Returns:
        One rate per PASS-gated layer, for ``passbench.skip.set_rates`` / the skip spec's ``rates``.
    """
    layers = sk.pass_layers(model)
    sums, counts = [0.0] * len(layers), [0] * len(layers)
    with sampling_gates(model):
        for x_prev, x in pairs:
            sk.prime(model, x_prev)
            sk.set_mask_mode(model, "normal")
            model(x)
            for i, m in enumerate(layers):
                if m.last is not None and m.last.active:
                    sums[i] += float(m.last.prob.sum())
                    counts[i] += m.last.prob.numel()
    return [s / c if c else 0.0 for s, c in zip(sums, counts)]


@torch.no_grad()
def measure_head_scales(objective: PassPObjective, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]
                        ) -> dict[str, float]:
    """Each head's unit for ``distance="balanced"``: the mean squared change of the head (``head_maps``) when
    the gates, as they are (before training: untrained, so a roughly random half of every gated layer's
    patches), pick the patches that reuse the previous output: the mean of the anchor-positive and the
    anchor-negative MSE over ``pairs``, gates sampling, nothing updated. A head no gated layer reaches gets 0
    (its distances are then 0 whatever the unit)."""
    model, heads = objective.model, objective.cfg.heads
    tot = {h: 0.0 for h in heads}
    n = 0
    with sampling_gates(model):
        for x_prev, x in pairs:
            a, p, q = objective.triplet({"prev": x_prev, "img": x})
            mp, mn = head_mse(a, p), head_mse(a, q)
            for h in heads:
                tot[h] += float((mp[h] + mn[h]).sum()) / 2
            n += x.shape[0]
    return {h: tot[h] / max(n, 1) for h in heads}


def gate_signal(cfg: StageCfg, batches: int = 8, stores: Sequence[FrameStore] | None = None,
                scales: dict[str, float] | None = None) -> dict[str, Any]:
    """What each deciding PASS gate of ``cfg.init`` (a PASS-P ``final.pt``) learns from, on ``batches``
    training batches (calibration seed, no augmentation): per gate, the mean L2 norm of the gradient of the
    triplet loss on its parameters and of ``rate_weight * rate term``, and their ratio; per head, the raw and
    unit-scaled positive / negative distances; the fraction of hinges that pass gradient (``active``).

    ``scales``: the heads' units for ``balanced`` (default: those stored in the checkpoint, else measured on
    the calibration pairs with the gates as loaded)."""
    samples = stage_samples(cfg, stores, pairs=True, augment=False)
    model, _, extra = build_stage_model(cfg, skippable=True)
    sk.freeze(sk.backbone_parameters(model))
    sk.freeze(sk.gate_parameters(model), False)
    obj = PassPObjective(model, cfg)
    obj.train()
    pairs = calibration_pairs(samples, cfg, torch.device("cpu"), batches)
    if cfg.distance == "balanced":
        scales = scales or extra.get("head_scales") or measure_head_scales(obj, pairs)
        obj.set_scales(scales)
    named = sk.named_pass_layers(model)
    g_t = {n: 0.0 for n, _ in named}
    g_r = {n: 0.0 for n, _ in named}
    prob = {n: 0.0 for n, _ in named}
    seen = {n: 0 for n, _ in named}
    heads = {h: {"mse_p": 0.0, "mse_n": 0.0, "d_p": 0.0, "d_n": 0.0} for h in cfg.heads}
    active, n_pairs = [], 0
    for x_prev, x in pairs:
        a, p, q = obj.triplet({"prev": x_prev, "img": x})
        rate_term = (obj._rate - cfg.target_rate) ** 2
        trip, _, _ = triplet_loss(a, p, q, cfg.margin, cfg.distance, obj.scales())
        # a follower (skip_params.follow) runs no gate: its leader's gradient carries the block's signal
        deciding = [(n, m) for n, m in named if m.positive is not None and m.positive.active and m.leader is None]
        params = [list(m.gate.parameters()) for _, m in deciding]
        flat = [t for ps in params for t in ps]
        gt = torch.autograd.grad(trip, flat, retain_graph=True, allow_unused=True)
        gr = torch.autograd.grad(cfg.rate_weight * rate_term, flat, allow_unused=True)
        i = 0
        for (n, m), ps in zip(deciding, params):
            sl = slice(i, i + len(ps))
            i += len(ps)
            g_t[n] += float(torch.sqrt(sum((g.pow(2).sum() for g in gt[sl] if g is not None), torch.tensor(0.))))
            g_r[n] += float(torch.sqrt(sum((g.pow(2).sum() for g in gr[sl] if g is not None), torch.tensor(0.))))
            prob[n] += float(m.positive.prob.detach().mean())
            seen[n] += 1
        with torch.no_grad():
            mp, mn = head_mse(a, p), head_mse(a, q)
            if cfg.distance != "l2":
                tp, tn = triplet_terms(a, p, q, cfg.distance, obj.scales())
                active.append(hinge_active(tp, tn, cfg.margin, cfg.distance).float().flatten())
            for h in cfg.heads:
                heads[h]["mse_p"] += float(mp[h].sum())
                heads[h]["mse_n"] += float(mn[h].sum())
                if cfg.distance != "l2":
                    heads[h]["d_p"] += float(tp[h].sum())
                    heads[h]["d_n"] += float(tn[h].sum())
        n_pairs += x.shape[0]
    gates = {n: {"triplet": g_t[n] / seen[n], "rate": g_r[n] / seen[n],
                 "ratio": (g_t[n] / g_r[n]) if g_r[n] > 0 else float("inf"), "skip_prob": prob[n] / seen[n]}
             for n, _ in named if seen[n]}
    return {"pairs": n_pairs, "scales": scales,
            "heads": {h: {k: v / max(n_pairs, 1) for k, v in d.items()} for h, d in heads.items()},
            "gates": gates, "active_fraction": float(torch.cat(active).mean()) if active else float("nan")}


def calibration_pairs(samples: Any, cfg: StageCfg, device: torch.device, batches: int | None = None
                      ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``cfg.calib_pairs`` training pairs (a fixed seed apart from the training batches), in batches of
    ``cfg.batch_size``; ``batches``: that many batches instead."""
    calib = StepBatches(samples, max(1, min(cfg.batch_size, cfg.calib_pairs)), cfg.seed + 1)
    n = batches if batches is not None else max(1, cfg.calib_pairs // calib.per_rank)
    return [(b["prev"].to(device), b["img"].to(device)) for b in (calib(s) for s in range(n))]


def train_pass_p(cfg: StageCfg, out: str | Path, *, stores: Sequence[FrameStore] | None = None,
                 env: DistEnv | None = None, stop_at: int | None = None) -> dict[str, Any]:
    """Pre-train the gates of ``cfg.init`` (a task ``final.pt``) with the triplet loss; backbone frozen.

    Returns:
        ``{"history", "final", "skip_rate", "rates"}`` (``skip_rate``: hard-mask rate of the last step;
        ``rates``: per-layer inference rates stored in the final skip spec, None while unfinished).
    """
    env = env or init_distributed()
    seed_all(cfg.seed)
    out = out_dir(out)
    samples = stage_samples(cfg, stores, pairs=True)
    model, skip, extra = build_stage_model(cfg, skippable=True)
    gates = sk.gate_parameters(model)
    if not gates:
        raise ValueError(f"method {cfg.method!r} has no trainable gate parameters; PASS-P needs learnable gates")
    sk.freeze(sk.backbone_parameters(model))
    sk.freeze(gates, False)
    objective = PassPObjective(model, cfg).to(env.device)
    objective.train()
    if cfg.distance == "balanced":  # the heads' units, with the gates as built (before any step; a resumed
        # run measures the same values again and then loads the saved ones)
        objective.set_scales(measure_head_scales(objective, calibration_pairs(samples, cfg, env.device)))
    optimizer = torch.optim.Adam(gates, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = StepBatches(samples, cfg.batch_size, cfg.seed, env.rank, env.world)
    history = run_loop(cfg, out, env, objective, optimizer, lambda s: to_device(batches(s), env), params=gates,
                       stop_at=stop_at)
    final, rates = out / FINAL, None
    if env.is_main and (stop_at is None or stop_at >= cfg.steps):
        rates = measure_layer_rates(model, calibration_pairs(samples, cfg, env.device))
        skip = {**skip, "params": {**skip["params"], "rates": rates}}
        scales = objective.scales()
        save_final(final, cfg=cfg, model=model, skip=skip,
                   extra={**extra, "layer_rates": rates, **({"head_scales": scales} if scales else {})},
                   delta_from=cfg.init, half=cfg.save_half)
    return {"history": history, "final": final, "skip_rate": history[-1]["skip_rate"] if history else None,
            "rates": rates}
