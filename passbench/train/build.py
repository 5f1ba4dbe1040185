"""Build the network of a stage: registry model (or ``module:function``), optional init, skip wrapping."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from passbench.train.common import DistEnv, StageCfg, load_state_strict, read_final
from passbench.train.data import (TRAIN_SEQUENCES, FrameStore, MotSamples, assert_disjoint, eval_frames, load_store,
                                   synthetic_store)


def build_net(name: str, **kw: Any) -> nn.Module:
    """``passbench.models.build_model(name, **kw)``; a ``"pkg.module:function"`` name imports a factory
    instead (used by tests for a tiny stand-in with the same output contract); ``timm:<arch>`` is a
    registered model name (``passbench.models.timm_fairmot``), not a factory."""
    if ":" in name and not name.startswith("timm:"):
        mod, fn = name.split(":", 1)
        return getattr(importlib.import_module(mod), fn)(**kw)
    from passbench.models import build_model

    return build_model(name, **kw)


def pose_map_spec(name: str, kwargs: dict[str, Any] | None = None) -> Any:
    """The ``passbench.pose.decode.MapSpec`` of a pose model (input crop, output map, depth bins), read
    from an instance built on the meta device (no weights), by the same ``build_net`` as the stage's model."""
    from passbench.pose.decode import MapSpec  # noqa: PLC0415

    with torch.device("meta"):
        model = build_net(name, **{"pretrained": False, **(kwargs or {})})
    return MapSpec.of(model)


def skip_spec(cfg: StageCfg) -> dict[str, Any]:
    """How ``make_skippable`` is called for this stage (also stored in ``final.pt``)."""
    return {"method": cfg.method, "params": {"patch_size": cfg.patch_size, **cfg.skip_params}}


def make_skippable(model: nn.Module, spec: dict[str, Any]) -> nn.Module:
    """Wrap convolutions with gates in reference execution (the STE path used for training)."""
    from passbench.train import skiputil

    params = dict(spec["params"])
    params.setdefault("execution", "reference")
    return skiputil.make_skippable(model, spec["method"], **params)


def build_stage_model(cfg: StageCfg, *, skippable: bool) -> tuple[nn.Module, dict[str, Any] | None, dict[str, Any]]:
    """The model for a stage, initialised from ``cfg.init`` when given.

    Returns:
        ``(model, skip, init_extra)``: ``skip`` the ``make_skippable`` spec or None; ``init_extra`` the
        ``extra`` dict of the init checkpoint (e.g. ``num_ids``), ``{}`` without init.

    Raises:
        CheckpointMismatchError: the init checkpoint's weights do not fit the model (names the file).
    """
    init = read_final(cfg.init) if cfg.init else None
    kwargs = dict(cfg.model_kwargs)
    if init is None and cfg.pretrained is not None:
        kwargs.setdefault("pretrained", cfg.pretrained)
    elif ":" not in cfg.model:
        kwargs.setdefault("pretrained", False)
    model = build_net(cfg.model, **kwargs)
    if init is not None and init["model_name"] != cfg.model:
        from passbench.train.common import CheckpointMismatchError

        raise CheckpointMismatchError(f"{cfg.init}: weights of model {init['model_name']!r}, config says {cfg.model!r}")
    skip = None
    if init is not None and init.get("skip") and skippable:
        # Gates come from the init checkpoint (pass_p -> pass_f): wrap the same way before loading.
        skip = init["skip"]
        model = make_skippable(model, skip)
        load_state_strict(model, init["model"], cfg.init, "model weights")
    else:
        if init is not None:
            load_state_strict(model, init["model"], cfg.init, "model weights")
        if skippable:
            skip = skip_spec(cfg)
            model = make_skippable(model, skip)
    return model, skip, (init or {}).get("extra", {})


def training_stores(cfg: StageCfg, stores: Sequence[FrameStore] | None) -> list[FrameStore]:
    """The training stores: given (tests) or the first halves of ``cfg.sequences``, split-checked."""
    if stores is not None:
        return list(stores)
    loaded = [synthetic_store(n=16, wh=cfg.input_wh) if n == "synthetic" else load_store(n, cfg.input_wh, cfg.data_root)
              for n in cfg.sequences]
    train = {s.name: [int(f) for f in s.frame_ids] for s in loaded}
    if set(cfg.sequences) & (set(TRAIN_SEQUENCES) | {"TUD-Campus"}):
        assert_disjoint(train, {k: list(v) for k, v in eval_frames(cfg.data_root).items()})
    return loaded


def stage_samples(cfg: StageCfg, stores: Sequence[FrameStore] | None = None, *, pairs: bool, augment: bool = True,
                  like: Any = None) -> Any:
    """The stage's training samples: ``MotSamples`` of :func:`training_stores` (``cfg.task == "mot"``) or
    ``passbench.pose.samples.PoseSamples`` (``"pose"``), frames or consecutive pairs.

    Args:
        augment: ``cfg.flip`` / ``cfg.scale_jitter`` (False: none, e.g. for calibration pairs).
        like: samples of the same stage whose data (and MOT identity labels) to reuse.
    """
    flip, jitter = (cfg.flip, cfg.scale_jitter) if augment else (False, 0.0)
    if cfg.task == "pose":
        from passbench.pose.samples import PoseSamples  # noqa: PLC0415

        if like is not None:
            return like.with_augmentation(flip, jitter)
        return PoseSamples.from_stage(cfg, pose_map_spec(cfg.model, cfg.model_kwargs), pairs=pairs, flip=flip,
                                      scale_jitter=jitter)
    if like is not None:
        return MotSamples(like.stores, pairs=pairs, max_objs=cfg.max_objs, flip=flip, scale_jitter=jitter,
                          labels=like.labels, max_gap=cfg.pair_gap)
    return MotSamples(training_stores(cfg, stores), pairs=pairs, max_objs=cfg.max_objs, flip=flip, scale_jitter=jitter,
                      max_gap=cfg.pair_gap)


def task_loss(samples: Any, extra: dict[str, Any] | None = None) -> nn.Module:
    """The task loss as ``loss(outputs, batch) -> (loss, logs)``: the pose coordinate L1 for pose samples,
    else the FairMOT loss, its classifier / uncertainty weights carried from ``extra`` (a previous
    stage's ``final.pt``) when they fit."""
    if getattr(samples, "task", "mot") == "pose":
        from passbench.pose.samples import CoordL1Loss  # noqa: PLC0415

        return CoordL1Loss()
    from passbench.train.losses import FairMOTLoss  # noqa: PLC0415

    loss = FairMOTLoss(samples.num_ids)
    state = (extra or {}).get("classifier")
    if state is not None and (extra or {}).get("num_ids") == samples.num_ids:
        loss.load_state_dict(state)
    return loss


def to_device(batch: dict[str, torch.Tensor], env: DistEnv) -> dict[str, torch.Tensor]:
    return {k: v.to(env.device, non_blocking=True) for k, v in batch.items()}


def out_dir(path: str | Path) -> Path:
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p
