"""A weights file is checked before its tensors reach a model: the committed hash, a readable file, the
right keys.

* ``SHA256SUMS``: a weights folder that holds this file (``weights/sample/``, ``weights/pose/``; lines
  ``<sha256>  <file name>`` as ``sha256sum`` writes them and ``passbench.train.common.publish_final``
  keeps) pins each committed file. A listed file whose bytes hash otherwise is refused, naming the
  file and both hashes: a tensor changed by 1e-3 may move no metric at all, so only the hash tells.
  A file the folder's ``SHA256SUMS`` does not list (or a folder without one, e.g. ``runs/``) is not
  hash-checked. A ``passbench.train`` delta is checked together with its whole base chain.
* a file ``torch.load`` cannot read (truncated, not a checkpoint) is refused naming the file and
  its size, instead of PyTorch's zip / unpickling traceback.
* :func:`first_mismatch` names the first key by which a state dict does not fit a model (weights of
  another model or of other builder arguments).

Every refusal is a :class:`WeightsFileError` (a ``passbench.errors.UserError``: exit 2, nothing written).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from passbench.errors import UserError

SUMS = "SHA256SUMS"


class WeightsFileError(UserError, ValueError):
    """A weights file is missing, unreadable, or not the committed one; the message names the file."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def listed_sha256(path: str | Path) -> str | None:
    """The hash ``SHA256SUMS`` beside ``path`` gives for it, or None (no such file, or not listed).

    Raises:
        WeightsFileError: a malformed line in that ``SHA256SUMS`` (names it and the line).
    """
    path = Path(path)
    sums = path.parent / SUMS
    if not sums.is_file():
        return None
    for lineno, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise WeightsFileError(f"{sums}:{lineno}: not a '<sha256>  <file>' line: {line!r}")
        if parts[1].strip().lstrip("*") == path.name:  # '*name': sha256sum's binary-mode marker
            return digest
    return None


def check_sha256sums(path: str | Path) -> str:
    """The file's sha256, after checking it against its ``SHA256SUMS`` line (when it has one).

    Raises:
        WeightsFileError: the file is not the one ``SHA256SUMS`` pins (both hashes named).
    """
    path = Path(path)
    got = file_sha256(path)
    want = listed_sha256(path)
    if want is not None and got != want:
        raise WeightsFileError(f"{path}: sha256 {got} but {path.parent / SUMS} says {want}: the weights differ from "
                               "the committed ones (restore them: git checkout -- <file>; after retraining, the "
                               "SHA256SUMS line is rewritten by passbench.train.common.publish_final)")
    return got


def load_weights_file(path: str | Path) -> Any:
    """``torch.load`` of a weights file (CPU), hash-checked first.

    Raises:
        WeightsFileError: missing, not the committed bytes, or not readable by ``torch.load``
            (truncated, garbage): names the file and its size.
    """
    import torch  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file {path} does not exist")
    check_sha256sums(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - zip, pickle, EOF, ...: one message naming the file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(f"{path}: not a readable PyTorch checkpoint ({path.stat().st_size} bytes; truncated or "
                               f"not a weights file): {type(e).__name__}: {first}") from None


def load_checked(path: str | Path) -> Any:
    """:func:`load_weights_file`, and the same for each base of a ``passbench.train`` delta chain
    (``{"base": {"path": relative to the file's folder}}``) so a bad base is named before
    ``passbench.train.common.read_final`` merges it. Returns the object loaded from ``path``."""
    path = Path(path)
    obj = load_weights_file(path)
    seen, cur, node = {path.resolve()}, path, obj
    while isinstance(node, Mapping) and isinstance(node.get("base"), Mapping) and node["base"].get("path"):
        base = cur.parent / str(node["base"]["path"])
        if not base.is_file():
            raise WeightsFileError(f"{cur}: stores only what differs from its base {node['base']['path']}, which is "
                                   f"missing ({base})")
        if base.resolve() in seen:
            raise WeightsFileError(f"{cur}: its base chain loops back to {base}")
        seen.add(base.resolve())
        cur, node = base, load_weights_file(base)
    return obj


def first_mismatch(model_state: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """The first way ``state`` does not fit ``model_state`` (a key missing, unexpected, or of another shape),
    with the counts; None when every key and shape matches."""
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shapes = [k for k in model_state if k in state and tuple(model_state[k].shape) != tuple(state[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} shape mismatches, first {k}: file {tuple(state[k].shape)} vs model "
                     f"{tuple(model_state[k].shape)}")
    if missing:
        parts.append(f"{len(missing)} model keys missing from the file, first {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} keys the model does not have, first {unexpected[0]}")
    return "; ".join(parts) or None
