"""From a pose model's coords to camera-space joints, as 3DMPPE ``Human36M.evaluate`` does.

A model's ``coords`` (N, J, 3) are x, y in output-map pixels and z in depth bins
(``passbench.models.pose.common``). Upstream maps them back through the processed box and the
ground-truth root depth (``cfg.use_gt_info = True``) and back-projects with the frame's f and c:

    u = x / W_out * w + x0        v = y / H_out * h + y0          (box [x0, y0, w, h])
    Z = (z / D * 2 - 1) * depth_range / 2 + Z_root                (depth_range = 2000 mm)
    X = (u - cx) / fx * Z         Y = (v - cy) / fy * Z            (``pixel2cam``)

The optional flip test (``main/test.py``) runs the model on the mirrored input too, mirrors its x
back (x -> W_out - 1 - x), swaps the left / right joints and averages the two coords.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from passbench.datasets.h36m import FLIP_PAIRS


@dataclass(frozen=True)
class MapSpec:
    """What the decoder needs to know about a model's output (its contract attributes).

    Attributes:
        input_hw: input crop (H, W) px.  output_hw: output map (H, W).  depth_dim: depth bins D.
        depth_range_mm: the depth the D bins span (2000 mm upstream).
    """

    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    depth_dim: int
    depth_range_mm: float = 2000.0

    @classmethod
    def of(cls, model: Any) -> "MapSpec":
        """The spec of a ``passbench.models.pose`` model (reads its attributes)."""
        missing = [a for a in ("input_hw", "output_hw", "depth_dim", "depth_range_mm") if not hasattr(model, a)]
        if missing:
            raise TypeError(f"{type(model).__name__} is not a pose model: no attribute(s) {', '.join(missing)}")
        return cls(tuple(model.input_hw), tuple(model.output_hw), int(model.depth_dim), float(model.depth_range_mm))


def flip_coords(coords: np.ndarray, output_w: int, pairs: Sequence[tuple[int, int]] = FLIP_PAIRS) -> np.ndarray:
    """Coords predicted on a mirrored input, mapped back: x -> W_out - 1 - x, left / right swapped.

    Args:
        coords: (N, J, 3) (x px, y px, z bin) on the mirrored input (NumPy or torch).
        output_w: W_out.  pairs: joint index pairs to swap (Human3.6M's 18-joint ``FLIP_PAIRS``).
    """
    out = coords.clone() if hasattr(coords, "clone") else np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = output_w - 1 - out[..., 0]
    for a, b in pairs:
        out[..., [a, b], :] = out[..., [b, a], :]
    return out


def predict(model: Any, x: Any, flip_test: bool = False):
    """coords (B, J, 3) tensor of ``model`` on ``x`` (B, 3, H, W), optionally flip-test averaged.

    Args:
        model: a pose model (eval mode).  x: input batch in [0, 1].
        flip_test: also run ``x`` mirrored left-right and average (upstream ``cfg.flip_test``).
    """
    coords = model(x)["coords"]
    if not flip_test:
        return coords
    flipped = flip_coords(model(x.flip(-1))["coords"], int(model.output_hw[1]))
    return (coords + flipped) / 2


def to_image(coords: np.ndarray, bboxes: np.ndarray, root_z_mm: np.ndarray, spec: MapSpec) -> np.ndarray:
    """(N, J, 3) coords -> (N, J, 3) [u px, v px, Z mm] in the original image (upstream evaluate).

    Args:
        coords: (N, J, 3) x, y in output-map px, z in bins.  bboxes: (N, 4) processed boxes [x, y, w, h].
        root_z_mm: (N,) root depth (the ground truth's, ``use_gt_info``).  spec: the model's :class:`MapSpec`.
    """
    c = np.asarray(coords, dtype=np.float64)
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 1, 4)
    ho, wo = spec.output_hw
    u = c[..., 0] / wo * b[..., 2] + b[..., 0]
    v = c[..., 1] / ho * b[..., 3] + b[..., 1]
    z = (c[..., 2] / spec.depth_dim * 2 - 1) * (spec.depth_range_mm / 2) + np.asarray(root_z_mm, np.float64)[:, None]
    return np.stack([u, v, z], -1)


def to_camera(uvz: np.ndarray, f: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(N, J, 3) [u px, v px, Z mm] -> (N, J, 3) camera mm with per-sample f (N, 2), c (N, 2) (``pixel2cam``)."""
    p = np.asarray(uvz, dtype=np.float64)
    f, c = np.asarray(f, np.float64)[:, None, :], np.asarray(c, np.float64)[:, None, :]
    return np.stack([(p[..., 0] - c[..., 0]) / f[..., 0] * p[..., 2], (p[..., 1] - c[..., 1]) / f[..., 1] * p[..., 2],
                     p[..., 2]], -1)
