"""What a pose stream feeds the model: the data root, the subjects, and each frame's crop box.

Shared by the runner (evaluation streams) and ``passbench.pose.samples`` (training), so that both
crop a frame the same way.

* Data root: a folder holding ``Human36M/`` (real, 3DMPPE layout) or ``synthetic:<preset>``, a preset
  of ``passbench.datasets.synthetic_h36m`` generated once into the cache (``ensure``).
* Subjects: ``S<n>`` strings (``dataset.sequences`` of a pose config, ``sequences`` of a pose stage).
* Crop box of frame i: its own annotation box through ``process_bbox`` (upstream 3DMPPE: every frame
  is cropped around its person, so consecutive crops of a moving person are *not* pixel-aligned: the
  temporal gates see the person roughly still and the background sliding, the honest setting for a
  top-down pose model on video). A frame whose processed box is empty (upstream drops it from its
  data list, so it is never scored) still has to be fed to keep the stream going: it gets the box of
  the most recent frame that had one (the crop holds still where the person was last seen), or,
  before any, the stream's first non-empty box.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from passbench.datasets.h36m import process_bbox

SYNTHETIC = "synthetic:"  # data_root prefix naming a synthetic_h36m preset


def is_synthetic_root(data_root: Any) -> bool:
    """True for ``synthetic:<preset>``."""
    return isinstance(data_root, str) and data_root.startswith(SYNTHETIC)


def resolve_root(data_root: str | Path) -> Path:
    """The folder holding ``Human36M/``: ``synthetic:<preset>`` is generated (once) into the cache.

    Raises:
        KeyError: an unknown preset (lists the known ones).
    """
    if is_synthetic_root(data_root):
        from passbench.datasets.synthetic_h36m import ensure  # noqa: PLC0415

        return ensure(str(data_root)[len(SYNTHETIC):])
    return Path(data_root)


def parse_subjects(items: Sequence[str], where: str) -> tuple[int, ...]:
    """``["S9", "S11"]`` -> ``(9, 11)``.

    Raises:
        ValueError: an item that is not ``S<n>`` (the message names ``where``, the config field).
    """
    out = []
    for it in items:
        m = re.fullmatch(r"S(\d+)", str(it))
        if not m:
            raise ValueError(f"{where}: {it!r} is not a Human3.6M subject (expected S1, S5, ..., S11)")
        out.append(int(m.group(1)))
    if not out:
        raise ValueError(f"{where}: no subject given (e.g. [S9, S11])")
    return tuple(out)


def stream_boxes(stream: Any, input_hw: tuple[int, int]) -> tuple[list[np.ndarray | None], np.ndarray]:
    """The crop box of every frame of a ``passbench.datasets.h36m.Stream`` (module docstring).

    Args:
        stream: a Human3.6M stream (``bboxes`` (F, 4) px, ``sizes`` (F, 2) [w, h] px).
        input_hw: the model's input (H, W) (``process_bbox`` pads the box to its aspect ratio).

    Returns:
        ``(boxes, own)``: F processed boxes [x, y, w, h] px (None for every frame when no frame of the
        stream has a box), and (F,) bool, True where the box is the frame's own (the frames that can
        be scored).
    """
    own = [process_bbox(b, int(s[0]), int(s[1]), input_hw) for b, s in zip(stream.bboxes, stream.sizes)]
    has = np.array([b is not None for b in own], dtype=bool)
    if not has.any():
        return [None] * len(own), has
    last = own[int(np.flatnonzero(has)[0])]
    boxes = []
    for b in own:
        last = b if b is not None else last
        boxes.append(last)
    return boxes, has
