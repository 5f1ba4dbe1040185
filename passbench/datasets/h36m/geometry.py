"""Human3.6M camera geometry, as the 3DMPPE loader computes it: projection, the Thorax joint, the crop box."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from passbench.datasets.h36m.layout import H36MFormatError
from passbench.datasets.h36m.protocols import L_SHOULDER, R_SHOULDER


@dataclass(frozen=True)
class Camera:
    """Pinhole camera of the 3DMPPE json: X_cam = R X_world + t (mm); u = X/Z fx + cx, v = Y/Z fy + cy.

    The released ``camera.json`` stores ``t`` as a translation (already -R T of the MATLAB camera
    centre T), and the current upstream ``world2cam`` is ``R X + t``; an older upstream commit
    (1ad40b3) computed ``R (X - t)`` against older json files. We follow the current loader.

    Attributes:
        R: (3, 3) world-to-camera rotation.  t: (3,) mm.  f: (2,) px.  c: (2,) px.
    """

    R: np.ndarray
    t: np.ndarray
    f: np.ndarray
    c: np.ndarray

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str) -> "Camera":
        shapes = {"R": (3, 3), "t": (3,), "f": (2,), "c": (2,)}
        vals = {}
        for k, shape in shapes.items():
            if k not in d:
                raise H36MFormatError(f"{where}: missing field '{k}'")
            try:
                a = np.asarray(d[k], dtype=np.float64).reshape(shape)
            except (ValueError, TypeError):
                raise H36MFormatError(f"{where}: field '{k}' is not a {shape} array of numbers") from None
            vals[k] = a
        return cls(**vals)

    def world_to_cam(self, x_world: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 3) camera mm."""
        return np.asarray(x_world, dtype=np.float64) @ self.R.T + self.t

    def cam_to_pixel(self, x_cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera mm -> (..., 3) [u px, v px, Z mm] (upstream ``cam2pixel``, incl. its +1e-8)."""
        x = np.asarray(x_cam, dtype=np.float64)
        z = x[..., 2] + 1e-8
        return np.stack([x[..., 0] / z * self.f[0] + self.c[0], x[..., 1] / z * self.f[1] + self.c[1], x[..., 2]], -1)

    def pixel_to_cam(self, uvz: np.ndarray) -> np.ndarray:
        """(..., 3) [u px, v px, Z mm] -> (..., 3) camera mm (upstream ``pixel2cam``)."""
        p = np.asarray(uvz, dtype=np.float64)
        return np.stack([(p[..., 0] - self.c[0]) / self.f[0] * p[..., 2],
                         (p[..., 1] - self.c[1]) / self.f[1] * p[..., 2], p[..., 2]], -1)

    def project(self, x_world: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 2) pixel coordinates."""
        return self.cam_to_pixel(self.world_to_cam(x_world))[..., :2]


def add_thorax(joints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> (..., 18, 3), appending Thorax = mean of the shoulders (upstream ``add_thorax``)."""
    j = np.asarray(joints, dtype=np.float64)
    thorax = 0.5 * (j[..., L_SHOULDER, :] + j[..., R_SHOULDER, :])
    return np.concatenate([j, thorax[..., None, :]], axis=-2)


def process_bbox(bbox: Sequence[float], width: int, height: int, input_hw: tuple[int, int] = (256, 256),
                 scale: float = 1.25) -> np.ndarray | None:
    """Upstream ``process_bbox``: clip to the image, pad to the input aspect ratio, scale x1.25.

    Args:
        bbox: [x, y, w, h] px.
        width, height: image size, px.
        input_hw: network input (H, W); aspect ratio = W / H (upstream ``cfg.input_shape``).

    Returns:
        [x, y, w, h] px (float), or None for an empty box (as upstream).
    """
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2.0, y1 + h / 2.0
    aspect = input_hw[1] / input_hw[0]
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    w, h = w * scale, h * scale
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h])
