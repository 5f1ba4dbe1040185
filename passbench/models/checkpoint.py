"""Load weights into passbench models: official FairMOT checkpoints and plain state dicts.

Accepted inputs (path or in-memory object):

* a plain ``state_dict`` (``{name: tensor}``);
* FairMOT's training checkpoint ``{'epoch': int, 'state_dict': {...}, 'optimizer': ...}``
  (``src/lib/models/model.py`` ``save_model`` / ``load_model``), keys possibly prefixed ``module.``
  (DataParallel) -- stripped as upstream ``load_model`` does;
* a ``passbench.train`` ``final.pt`` (``{'model': state_dict, 'model_name': ...}``);
* an upstream 3DMPPE / MobileHumanPose training snapshot ``{'epoch': int, 'network': state_dict,
  'optimizer': ...}`` (``main/base.py`` ``Trainer.save_model`` of mks0601/3DMPPE_POSENET_RELEASE, the same
  in SangbumChoi/MobileHumanPose), saved from ``DataParallel`` so every key starts with ``module.``;
  stripped as for FairMOT.

Keys are matched by name and shape. Documented exceptions:

* ``EXPECTED_UNUSED``: keys an official checkpoint holds that the model does not have on purpose --
  ``base.level3.project.*`` and ``base.level4.project.*`` (12 keys): the original DLA
  (``pose_dla_dcn.py`` ``Tree``) builds a 1x1 projection for every tree with in != out channels and
  computes it even for level-2 trees, where the result is never used; timm's DLA (our base) builds it
  only for level-1 trees (REFERENCE.md section 2). They are reported in ``LoadReport.unused``.
* ``base.fc.weight`` / ``base.fc.bias``: the ImageNet classifier of DLA-34. Upstream ``dla34(pretrained=True)``
  (``pose_dla_dcn.py`` ``DLA.load_pretrained_model``, called by ``get_pose_net``) attaches ``self.fc =
  Conv2d(512, 1000, 1)`` to load the ImageNet weights, so every official FairMOT checkpoint
  (``fairmot_dla34.pth``, ``all_dla34.pth``) carries it; ``DLASeg.forward`` never calls it (FairMOT's own
  ``load_model`` drops it too: "Drop parameter base.fc.*"). Also reported in ``LoadReport.unused``.
* ``ALLOWED_MISSING``: BN ``num_batches_tracked`` (absent from pre-1.0 PyTorch checkpoints) and skip
  gates (``*.gate.*``: a dense checkpoint loaded into a skippable model).
* a model made skippable (``passbench.skip.make_skippable``) keeps each conv as child ``conv``: a
  checkpoint key ``<layer>.weight`` loads into ``<layer>.conv.weight``.

Anything else (a missing model key, an unexpected checkpoint key, a shape mismatch) raises
``CheckpointMismatchError`` naming the source and the first offending keys and shapes. A file is
read through ``passbench.models.integrity.load_weights_file``: checked against the ``SHA256SUMS`` of
its folder when that lists it, and a file ``torch.load`` cannot read is a ``WeightsFileError`` naming
it and its size.

The way back: ``export_fairmot_state_dict`` / ``save_fairmot_checkpoint`` write a passbench
``fairmot_dla34`` / ``fairmot_dla34_conv`` in the official key layout, dead keys included, so the
official ``DLASeg`` loads it with ``strict=True``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from passbench.errors import UserError
from passbench.models.integrity import load_weights_file

__all__ = ["ALLOWED_MISSING", "EXPECTED_UNUSED", "CheckpointMismatchError", "LoadReport", "export_fairmot_state_dict",
           "load_checkpoint", "read_state_dict", "save_fairmot_checkpoint"]

EXPECTED_UNUSED: tuple[str, ...] = ("base.level3.project.*", "base.level4.project.*", "base.fc.*")
IMAGENET_CLASSES = 1000  # rows of the official base.fc (DLA-34 ImageNet weights, hash ba72cf86)
ALLOWED_MISSING: tuple[str, ...] = ("*num_batches_tracked", "*.gate.*", "gate.*")
_SHOW = 10  # offending keys listed per category in an error


class CheckpointMismatchError(UserError, ValueError):
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
        passbench.models.integrity.WeightsFileError: the file is not its ``SHA256SUMS`` line, or unreadable.
    """
    name = "<state_dict>"
    obj: Any = src
    if isinstance(src, (str, Path)):
        name = str(src)
        if not Path(src).is_file():
            raise FileNotFoundError(f"checkpoint {src} does not exist")
        obj = load_weights_file(src)  # SHA256SUMS-checked; a truncated / garbage file names itself and its size
    if isinstance(obj, Mapping):
        for wrap in ("state_dict", "model", "network"):  # FairMOT, passbench.train, 3DMPPE / MHP snapshots
            if wrap in obj and isinstance(obj[wrap], Mapping):
                obj = obj[wrap]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointMismatchError(f"{name}: not a state dict (expected {{name: tensor}}, optionally inside "
                                      "'state_dict', 'model' or 'network')")
    # FairMOT load_model / 3DMPPE snapshots: strip 'module.' (DataParallel) but not 'module_list' (yolo).
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


# ----------------------------------------------------------------------------------------------
# export to the official layout


def _unwrapped_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with ``SkipConv2d`` wrappers undone: ``<layer>.conv.<leaf>`` ->
    ``<layer>.<leaf>``, gate tensors dropped (keyed by the wrapper's qualified name, since the
    official ``DeformConv`` has a child legitimately called ``conv``)."""
    from passbench.skip import skippable_layers  # noqa: PLC0415 - models/ may import skip/

    sd = model.state_dict()
    for name, _ in skippable_layers(model):
        pre = f"{name}." if name else ""
        for k in [k for k in sd if k.startswith(pre + "gate.")]:
            del sd[k]
        for k in [k for k in sd if k.startswith(pre + "conv.")]:
            sd[pre + k[len(pre) + 5:]] = sd.pop(k)
    return sd


def export_fairmot_state_dict(model: nn.Module, *, imagenet_fc: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of a passbench FairMOT DLA-34 in the official ``DLASeg`` layout (CPU copies).

    The official model holds tensors ours does not, which its forward never reads: the 12
    ``base.level{3,4}.project.*`` of its level-2 trees (shapes: ``(out, in, 1, 1)`` conv + BN(out) of
    the tree) and, when built by ``get_pose_net`` (``dla34(pretrained=True)``), ``base.fc`` (``(1000, 512,
    1, 1)`` + ``(1000,)``). They are filled with an identity BN (weight 1, bias 0, mean 0, var 1) and
    zeros, so a strict load succeeds and the official forward gives our outputs; values a source
    checkpoint had there are not kept (``load_checkpoint`` drops them).

    Args:
        model: ``fairmot_dla34`` or ``fairmot_dla34_conv`` (``FairMOTDLA``), possibly made skippable
            (wrappers and gates are removed), with its BatchNorms (not folded).
        imagenet_fc: include ``base.fc.*``: True for ``get_pose_net`` / ``create_model`` (what FairMOT's
            ``track.py`` / ``demo.py`` build), False for ``DLASeg(..., pretrained=False)``.

    Returns:
        ``{official key: tensor}``; save with ``save_fairmot_checkpoint`` or wrap as
        ``{"epoch": n, "state_dict": sd}`` (upstream ``save_model``).

    Raises:
        ValueError: not a FairMOT DLA-34, or its keys / shapes differ from a freshly built one (e.g.
            BatchNorm folded into the convs, naming the first differing keys).
    """
    from passbench.models.dcn import DCN  # noqa: PLC0415
    from passbench.models.fairmot_dla import FairMOTDLA  # noqa: PLC0415

    if not isinstance(model, FairMOTDLA):
        raise ValueError(f"export_fairmot_state_dict: expected a FairMOT DLA-34 (fairmot_dla34[_conv]), "
                         f"got {type(model).__name__}")
    sd = {k: v.detach().to("cpu", copy=True) for k, v in _unwrapped_state(model).items()}
    dcn = any(isinstance(m, DCN) for m in model.modules())
    with torch.device("meta"):
        fresh = FairMOTDLA(dcn=dcn, head_conv=int(sd["hm.0.weight"].shape[0]), emb_dim=int(sd["id.2.weight"].shape[0]))
    want = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) + sorted(k for k in set(want) & set(have) if want[k] != have[k])
        raise ValueError(f"export_fairmot_state_dict: the model's tensors differ from a freshly built FairMOTDLA "
                         f"(BatchNorm folded?): {', '.join(diff[:_SHOW])}{' ...' if len(diff) > _SHOW else ''}")
    for level in (3, 4):  # the official level-2 trees' projection (in != out), never used by their forward
        cout, cin = sd[f"base.level{level}.tree1.tree1.conv1.weight"].shape[:2]
        p = f"base.level{level}.project"
        sd[f"{p}.0.weight"] = torch.zeros(cout, cin, 1, 1)
        sd.update({f"{p}.1.weight": torch.ones(cout), f"{p}.1.bias": torch.zeros(cout),
                   f"{p}.1.running_mean": torch.zeros(cout), f"{p}.1.running_var": torch.ones(cout),
                   f"{p}.1.num_batches_tracked": torch.zeros((), dtype=torch.long)})
    if imagenet_fc:
        c5 = sd["base.level5.tree2.conv2.weight"].shape[0]  # 512
        sd["base.fc.weight"] = torch.zeros(IMAGENET_CLASSES, c5, 1, 1)
        sd["base.fc.bias"] = torch.zeros(IMAGENET_CLASSES)
    return sd


def save_fairmot_checkpoint(model: nn.Module, path: str | Path, *, epoch: int = 0, imagenet_fc: bool = True) -> Path:
    """Write ``{"epoch": epoch, "state_dict": export_fairmot_state_dict(model)}`` (upstream ``save_model``
    layout, no ``module.`` prefix), loadable by FairMOT's ``load_model`` and by ``DLASeg.load_state_dict(...,
    strict=True)``. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": int(epoch), "state_dict": export_fairmot_state_dict(model, imagenet_fc=imagenet_fc)}, path)
    return path
