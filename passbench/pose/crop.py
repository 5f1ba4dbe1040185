"""Crop a person's box to the pose model's input, as the 3DMPPE / MHP data loader does.

Upstream (``data/dataset.py`` of mks0601/3DMPPE_POSENET_RELEASE, identical in MobileHumanPose):
``generate_patch_image`` warps the image with ``gen_trans_from_patch_cv`` so that the box centre
goes to the patch centre and the box width / height to the patch width / height (times an
augmentation scale, turned by an augmentation rotation), ``cv2.warpAffine`` with bilinear
interpolation and a black border. Without augmentation this is x_patch = (u - x) W_in / w and
y_patch = (v - y) H_in / h for a box [x, y, w, h]. The box is the annotation box passed through
``process_bbox`` (``passbench.datasets.h36m.process_bbox``: clip, pad to the input aspect, x1.25).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def crop_affine(bbox: Sequence[float], input_hw: tuple[int, int], scale: float = 1.0, rot_deg: float = 0.0,
                flip_width: int | None = None) -> np.ndarray:
    """(2, 3) affine from image px to patch px (upstream ``gen_trans_from_patch_cv``, inv=False).

    Args:
        bbox: [x, y, w, h] px, the processed box.
        input_hw: patch (H, W) px.
        scale: augmentation scale (the box is scaled by it before cropping; 1 at test time).
        rot_deg: augmentation rotation, degrees (0 at test time).
        flip_width: image width px to mirror the image first (u -> width - 1 - u, upstream
            ``do_flip``); None: no flip.
    """
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise ValueError(f"crop_affine: empty box {list(bbox)}")
    cx, cy = x + 0.5 * w, y + 0.5 * h
    if flip_width is not None:
        cx = flip_width - cx - 1
    a = np.deg2rad(rot_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    down, right = rot @ [0.0, 0.5 * h * scale], rot @ [0.5 * w * scale, 0.0]
    src = np.array([[cx, cy], [cx + down[0], cy + down[1]], [cx + right[0], cy + right[1]]])
    hi, wi = input_hw
    dst = np.array([[0.5 * wi, 0.5 * hi], [0.5 * wi, hi], [wi, 0.5 * hi]])
    # Solve the affine through the 3 point pairs (what cv2.getAffineTransform does).
    m = np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst)  # (3, 2)
    out = m.T  # (2, 3)
    if flip_width is not None:  # compose with the mirror u -> width - 1 - u applied first
        mirror = np.array([[-1.0, 0.0, flip_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        out = out @ mirror
    return out


def apply_affine(affine: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(..., 2) px -> (..., 2) px through a (2, 3) affine."""
    p = np.asarray(uv, dtype=np.float64)
    return p @ affine[:, :2].T + affine[:, 2]


def crop_image(img: np.ndarray, bbox: Sequence[float], input_hw: tuple[int, int], **aug: float) -> np.ndarray:
    """(H_in, W_in, 3) uint8 patch of ``img`` (H, W, 3) for ``bbox`` (bilinear, black outside).

    ``aug``: ``scale``, ``rot_deg``, ``flip`` (bool) as :func:`crop_affine`.
    """
    import cv2  # noqa: PLC0415

    flip = bool(aug.pop("flip", False))
    affine = crop_affine(bbox, input_hw, flip_width=img.shape[1] if flip else None, **aug)
    return cv2.warpAffine(img, affine, (int(input_hw[1]), int(input_hw[0])), flags=cv2.INTER_LINEAR)


def to_input(patches: np.ndarray | Sequence[np.ndarray]):
    """(B, H, W, 3) uint8 RGB patches -> (B, 3, H, W) float32 tensor in [0, 1] (the models normalise)."""
    import torch  # noqa: PLC0415

    a = np.ascontiguousarray(np.stack(list(patches)) if not isinstance(patches, np.ndarray) else patches)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"to_input: expected (B, H, W, 3) patches, got {a.shape}")
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)
