"""CenterNet / FairMOT training targets: centre heatmap, ltrb box sizes, centre offsets, identities.

Formulas follow ``ifzhang/FairMOT@4aa6297`` ``src/lib/utils/image.py`` (``gaussian_radius``,
``gaussian2D``, ``draw_umich_gaussian``, copied from CenterNet) and the target construction in
``src/lib/datasets/dataset/jde.py`` (``JointDataset.__getitem__``, ``--ltrb True``).
"""

from __future__ import annotations

import math

import numpy as np


def gaussian_radius(det_size: tuple[float, float], min_overlap: float = 0.7) -> float:
    """CenterNet's ``gaussian_radius``: the centre displacement keeping IoU >= ``min_overlap``.

    Kept exactly as upstream (``utils/image.py``), including its well-known slip of dividing the
    quadratic roots by 2 instead of ``2a`` for cases 2 and 3; FairMOT trains with this version and
    the radius only sets the heatmap's spread, so we reproduce it rather than "fix" it.

    Args:
        det_size: ``(height, width)`` of the box in output-stride pixels.
        min_overlap: IoU that a box displaced by the radius must still reach.

    Returns:
        The radius in output-stride pixels (float; callers take ``max(0, int(r))``).
    """
    height, width = det_size
    a1 = 1
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian2d(shape: tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """Unnormalised 2-D gaussian of ``shape`` (odd sizes), peak 1 at the centre (``gaussian2D``)."""
    m, n = [(ss - 1.0) / 2.0 for ss in shape]
    y, x = np.ogrid[-m : m + 1, -n : n + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return h


def draw_umich_gaussian(heatmap: np.ndarray, center: tuple[int, int], radius: int, k: float = 1.0) -> np.ndarray:
    """Max-paste a gaussian of ``radius`` (sigma = diameter / 6) at integer ``center`` (x, y), in place.

    Args:
        heatmap: (H, W) float array, modified in place.
        center: integer ``(x, y)`` in heatmap pixels.
        radius: integer radius in heatmap pixels.
    """
    diameter = 2 * radius + 1
    gaussian = gaussian2d((diameter, diameter), sigma=diameter / 6)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    masked_heatmap = heatmap[y - top : y + bottom, x - left : x + right]
    masked_gaussian = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    if min(masked_gaussian.shape) > 0 and min(masked_heatmap.shape) > 0:
        np.maximum(masked_heatmap, masked_gaussian * k, out=masked_heatmap)
    return heatmap


def build_targets(
    boxes_xyxy: np.ndarray,
    ids: np.ndarray,
    out_hw: tuple[int, int],
    max_objs: int = 128,
) -> dict[str, np.ndarray]:
    """FairMOT targets for one image (``JointDataset.__getitem__`` with ``ltrb=True``).

    Args:
        boxes_xyxy: (N, 4) boxes in **output-stride** pixels (input pixels / down_ratio); they may
            extend past the map, the centre is clipped into it as upstream does.
        ids: (N,) integer identity labels (contiguous, >= 0), or -1 for "no identity" (ignored by the
            ID loss, ``CrossEntropyLoss(ignore_index=-1)``).
        out_hw: ``(H/4, W/4)`` of the output maps.
        max_objs: object slots (upstream uses 500); extra objects are dropped.

    Returns:
        ``hm`` (1, Ho, Wo) float32 in [0, 1]; ``wh`` (max_objs, 4) ltrb distances from the (unrounded)
        centre to the box sides; ``reg`` (max_objs, 2) centre minus its integer cell; ``ind``
        (max_objs,) int64 flat index ``y * Wo + x``; ``reg_mask`` (max_objs,) uint8; ``ids``
        (max_objs,) int64.
    """
    out_h, out_w = out_hw
    hm = np.zeros((1, out_h, out_w), np.float32)
    wh = np.zeros((max_objs, 4), np.float32)
    reg = np.zeros((max_objs, 2), np.float32)
    ind = np.zeros((max_objs,), np.int64)
    reg_mask = np.zeros((max_objs,), np.uint8)
    id_t = np.full((max_objs,), -1, np.int64)
    boxes_xyxy = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    for k, (box, pid) in enumerate(zip(boxes_xyxy[:max_objs], np.asarray(ids).reshape(-1)[:max_objs])):
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        cx = float(np.clip((x1 + x2) / 2, 0, out_w - 1))
        cy = float(np.clip((y1 + y2) / 2, 0, out_h - 1))
        if not (h > 0 and w > 0):
            continue
        radius = max(0, int(gaussian_radius((math.ceil(h), math.ceil(w)))))
        ct = np.array([cx, cy], np.float32)
        ct_int = ct.astype(np.int32)
        draw_umich_gaussian(hm[0], (int(ct_int[0]), int(ct_int[1])), radius)
        wh[k] = (ct[0] - x1, ct[1] - y1, x2 - ct[0], y2 - ct[1])
        ind[k] = int(ct_int[1]) * out_w + int(ct_int[0])
        reg[k] = ct - ct_int
        reg_mask[k] = 1
        id_t[k] = int(pid)
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask, "ids": id_t}
