"""The 3DMPPE annotation layout on disk: folder and image names, the json reader, the image reader.

Every malformed file raises :class:`H36MFormatError` naming the file and the field (and the line,
for bad json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

# Corrupt video upstream; h36m2coco.py skips it, and so do we (also if a copy of the data has it).
SKIP_FOLDERS = frozenset({"s_11_act_02_subact_02_ca_01"})
CAMERA_FIELD = "camera"  # optional per-image camera (passbench extension for moving cameras; synthetic only)


def folder_name(subject: int, action: int, subaction: int, camera: int) -> str:
    return "s_%02d_act_%02d_subact_%02d_ca_%02d" % (subject, action, subaction, camera)


def image_name(folder: str, frame_idx: int) -> str:
    return "%s_%06d.jpg" % (folder, frame_idx + 1)


class H36MFormatError(ValueError):
    """A Human3.6M annotation file is malformed; the message names the file and the field."""


def load_json(path: Path) -> Any:
    """Read a json file; a missing file or bad json raises naming the file (and line for bad json)."""
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M: missing annotation file {path}")
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise H36MFormatError(f"{path}: malformed json at line {e.lineno} column {e.colno}: {e.msg}") from None


def json_field(d: Any, name: str, where: str) -> Any:
    """``d[name]``; a non-object ``d`` or a missing field raises naming ``where``."""
    if not isinstance(d, dict):
        raise H36MFormatError(f"{where}: expected an object, got {type(d).__name__}")
    if name not in d:
        raise H36MFormatError(f"{where}: missing field '{name}'")
    return d[name]


def json_entry(data_json: Path | None, index: int | None) -> str | None:
    """``"<data json>: images[i]"``, for error messages (None without a json)."""
    return None if data_json is None else f"{data_json}: images[{index}]"


def read_image(path: Path, expect_wh: tuple[int, int] | None = None, where: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file.

    Args:
        path: image file.  expect_wh: (width, height) the annotation gives, checked when given.
        where: the annotation entry (``<data json>: images[i]``), for the error message.

    Raises:
        FileNotFoundError: unreadable file.  H36MFormatError: size differs from ``expect_wh``.
    """
    import cv2  # deferred: geometry and annotation work without OpenCV

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"Human3.6M: cannot read image {path}")
    if expect_wh is not None and (img.shape[1], img.shape[0]) != tuple(int(v) for v in expect_wh):
        raise H36MFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]} px but {where or 'its json'} says "
                              f"width={int(expect_wh[0])}, height={int(expect_wh[1])} (fields 'width', 'height')")
    return img[:, :, ::-1].copy()
