"""Training checkpoints: the resumable ``last.pt`` and the deployable ``final.pt``, and publishing the latter.

``final.pt`` of a later stage may store only what differs from its base (``save_final(delta_from=)``),
sha256-checked when read back (``read_final`` merges the chain); ``publish_final`` copies one into a
committed weights folder with its ``SHA256SUMS`` line.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from passbench.train.stage_config import StageCfg, cfg_dict, config_diff

CKPT_VERSION = 1
LAST = "last.pt"
FINAL = "final.pt"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not belong to this model / config; the message names the file and the fields."""


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

