"""Load weights into passbench models: official FairMOT checkpoints and plain state dicts.

Accepted inputs (path or in-memory object):

* a plain ``state_dict`` (``{name: tensor}``);
* FairMOT's training checkpoint ``{'epoch': int, 'state_dict': {...}, 'optimizer': ...}``
  (``src/lib/models/model.py`` ``save_model`` / ``load_model``), keys possibly prefixed ``module.``
  (DataParallel) -- stripped as upstream ``load_model`` does;
* a ``passbench.train`` ``final.pt`` (``{'model': state_dict, 'model_name': ...}``).

Keys are matched by name and shape. Documented exceptions:

* ``EXPECTED_UNUSED``: keys an official checkpoint holds that the model does not have on purpose --
  ``base.level3.project.*`` and ``base.level4.project.*`` (12 keys): the original DLA
  (``pose_dla_dcn.py`` ``Tree``) builds a 1x1 projection for every tree with in != out channels and
  computes it even for level-2 trees, where the result is never used; timm's DLA (our base) builds it
  only for level-1 trees (REFERENCE.md section 2). They are reported in ``LoadReport.unused``.
* ``ALLOWED_MISSING``: BN ``num_batches_tracked`` (absent from pre-1.0 PyTorch checkpoints) and skip
  gates (``*.gate.*``: a dense checkpoint loaded into a skippable model).
* a model made skippable (``passbench.skip.make_skippable``) keeps each conv as child ``conv``: a
  checkpoint key ``<layer>.weight`` loads into ``<layer>.conv.weight``.

Anything else (a missing model key, an unexpected checkpoint key, a shape mismatch) raises
``CheckpointMismatchError`` naming the source and the first offending keys and shapes.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

__all__ = ["ALLOWED_MISSING", "EXPECTED_UNUSED", "CheckpointMismatchError", "LoadReport", "load_checkpoint",
           "read_state_dict"]

EXPECTED_UNUSED: tuple[str, ...] = ("base.level3.project.*", "base.level4.project.*")
ALLOWED_MISSING: tuple[str, ...] = ("*num_batches_tracked", "*.gate.*", "gate.*")
_SHOW = 10  # offending keys listed per category in an error


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the model (message names the source, keys and shapes)."""


@dataclass(frozen=True)
class LoadReport:
    """What ``load_checkpoint`` did.

    Attributes:
        source: file path or "<state_dict>".
        loaded: number of tensors copied into the model.
        unused: checkpoint keys dropped as documented unused (``EXPECTED_UNUSED``).
        missing: model keys not in the checkpoint but allowed (``ALLOWED_MISSING``).
    """

    source: str
    loaded: int
    unused: tuple[str, ...]
    missing: tuple[str, ...]


def read_state_dict(src: str | Path | Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, source_name)`` from a path or object, unwrapped and with ``module.`` stripped.

    Raises:
        CheckpointMismatchError: the object holds no tensor dict.
    """
    name = "<state_dict>"
    obj: Any = src
    if isinstance(src, (str, Path)):
        name = str(src)
        if not Path(src).is_file():
            raise FileNotFoundError(f"checkpoint {src} does not exist")
        obj = torch.load(src, map_location="cpu", weights_only=False)
    if isinstance(obj, Mapping):
        for wrap in ("state_dict", "model"):
            if wrap in obj and isinstance(obj[wrap], Mapping):
                obj = obj[wrap]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{name}: not a state dict (expected {{name: tensor}}, optionally inside "
                                      "'state_dict' or 'model')")
    # FairMOT load_model: strip 'module.' (DataParallel) but not 'module_list' (yolo).
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}
    return sd, name


def _match(patterns: Iterable[str], key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _target(key: str, model_keys: Mapping[str, Any]) -> str | None:
    """Model key a checkpoint key loads into (itself, or ``<layer>.conv.<leaf>`` in a skippable model)."""
    if key in model_keys:
        return key
    prefix, _, leaf = key.rpartition(".")
    alt = f"{prefix}.conv.{leaf}" if prefix else f"conv.{leaf}"
    return alt if alt in model_keys else None


def load_checkpoint(model: nn.Module, src: str | Path | Mapping[str, Any], *,
                    expected_unused: Iterable[str] = EXPECTED_UNUSED,
                    allowed_missing: Iterable[str] = ALLOWED_MISSING) -> LoadReport:
    """Copy a checkpoint's tensors into ``model`` (all or nothing).

    Args:
        model: the built model (dense or already skippable).
        src: path to a ``.pth``/``.pt`` file, or a (possibly wrapped) state dict.
        expected_unused: globs of checkpoint keys the model lacks on purpose (dropped, reported).
        allowed_missing: globs of model keys the checkpoint may lack (left as initialised).

    Returns:
        LoadReport.

    Raises:
        CheckpointMismatchError: missing / unexpected keys or shape mismatches, listing the first ones.
        FileNotFoundError: ``src`` is a path that does not exist.
    """
    sd, name = read_state_dict(src)
    msd = model.state_dict()
    expected_unused, allowed_missing = tuple(expected_unused), tuple(allowed_missing)
    mapped: dict[str, torch.Tensor] = {}
    unused, unexpected, shapes = [], [], []
    for k, v in sd.items():
        t = _target(k, msd)
        if t is None:
            (unused if _match(expected_unused, k) else unexpected).append(k)
        elif tuple(msd[t].shape) != tuple(v.shape):
            shapes.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(msd[t].shape)}")
        else:
            mapped[t] = v
    absent = [k for k in msd if k not in mapped]
    missing = [k for k in absent if not _match(allowed_missing, k)]
    if unexpected or shapes or missing:
        parts = []
        for label, items in (("shape mismatches", shapes), ("missing in checkpoint", missing),
                             ("unexpected in checkpoint", unexpected)):
            if items:
                more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
        raise CheckpointMismatchError(f"{name} does not fit {type(model).__name__}: " + "; ".join(parts))
    result = model.load_state_dict(mapped, strict=False)
    if result.unexpected_keys:  # cannot happen unless a load hook renames keys: say so, do not hide it
        raise CheckpointMismatchError(f"{name}: load hooks of {type(model).__name__} rejected "
                                      f"{result.unexpected_keys[:_SHOW]}")
    return LoadReport(name, len(mapped), tuple(unused), tuple(k for k in absent))
