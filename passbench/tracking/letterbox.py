"""FairMOT input preprocessing: aspect-preserving resize + grey padding ("letterbox").

Upstream: ``ifzhang/FairMOT`` ``src/lib/datasets/dataset/jde.py`` (``letterbox`` and
``LoadImages.__next__``): ``ratio = min(H/h, W/w)``, resize to ``(round(w*ratio), round(h*ratio))``
with ``cv2.INTER_AREA``, pad with 127.5 to ``(W, H)`` (``top = round(dh - 0.1)``,
``left = round(dw - 0.1)``), BGR -> RGB, divide by 255, **no mean/std normalisation**.

Our frames arrive as RGB already (``MOTSequence.frames`` yields RGB uint8); resizing is
per-channel and the pad colour is grey, so letterboxing RGB directly gives the same tensor as
upstream's letterbox-BGR-then-flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

PAD_VALUE = 127.5  # jde.py letterbox(color=(127.5, 127.5, 127.5))


@dataclass(frozen=True)
class LetterboxTransform:
    """How an original frame was placed into the network input.

    A point ``p`` in original pixels sits at ``p * ratio + pad`` in input pixels.

    Attributes:
        ratio: resize factor, ``min(H_in / h, W_in / w)``.
        pad_x: horizontal offset of the resized image in input pixels, ``(W_in - w*ratio)/2``.
        pad_y: vertical offset, ``(H_in - h*ratio)/2``.
        orig_size: ``(w, h)`` of the original frame in pixels.
        input_size: ``(W_in, H_in)`` of the network input in pixels.
    """

    ratio: float
    pad_x: float
    pad_y: float
    orig_size: tuple[int, int]
    input_size: tuple[int, int]

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` x1,y1,x2,y2 boxes from input pixels back to original-frame pixels.

        This is exactly FairMOT's ``ctdet_post_process`` (``utils/post_process.py`` ->
        ``transform_preds`` with the inverse of ``get_affine_transform(c, s, 0, (W/4, H/4))``,
        ``c = (w/2, h/2)``, ``s = max(W_in/H_in * h, w)``): that similarity maps the input centre
        to the frame centre with scale ``1/ratio``, i.e. ``(p - pad) / ratio`` with the
        *unrounded* pad. (The actual pixel padding is rounded by ``round(d -/+ 0.1)``; upstream
        ignores that sub-pixel shift when mapping back, and so do we.)
        """
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) x1,y1,x2,y2; got shape {boxes.shape}")
        out = boxes.copy()
        out[:, 0::2] = (out[:, 0::2] - self.pad_x) / self.ratio
        out[:, 1::2] = (out[:, 1::2] - self.pad_y) / self.ratio
        return out

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_original`: ``(N, 4)`` original pixels -> input pixels."""
        boxes = np.asarray(boxes, dtype=np.float64)
        out = boxes.copy()
        out[:, 0::2] = out[:, 0::2] * self.ratio + self.pad_x
        out[:, 1::2] = out[:, 1::2] * self.ratio + self.pad_y
        return out


def letterbox_transform(orig_size: tuple[int, int], input_size: tuple[int, int]) -> LetterboxTransform:
    """The :class:`LetterboxTransform` for placing a ``(w, h)`` frame into a ``(W, H)`` input."""
    w, h = (int(v) for v in orig_size)
    in_w, in_h = (int(v) for v in input_size)
    if min(w, h, in_w, in_h) <= 0:
        raise ValueError(f"sizes must be positive: frame (w, h)={orig_size}, input (W, H)={input_size}")
    ratio = min(in_h / h, in_w / w)
    return LetterboxTransform(
        ratio=ratio,
        pad_x=(in_w - w * ratio) / 2.0,
        pad_y=(in_h - h * ratio) / 2.0,
        orig_size=(w, h),
        input_size=(in_w, in_h),
    )


def letterbox(rgb: np.ndarray, input_size: tuple[int, int] = (1088, 608)) -> tuple[torch.Tensor, LetterboxTransform]:
    """Letterbox one RGB frame into a FairMOT network input.

    Args:
        rgb: (h, w, 3) uint8 RGB frame.
        input_size: ``(W, H)`` network input in pixels; FairMOT's default is (1088, 608).

    Returns:
        ``(x, transform)``: ``x`` is a (3, H, W) float32 tensor in [0, 1] (RGB / 255, no mean/std),
        ``transform`` maps boxes between input and original pixels.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frame must be (h, w, 3) RGB; got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    in_w, in_h = (int(v) for v in input_size)
    tf = letterbox_transform((w, h), (in_w, in_h))
    new_w, new_h = round(w * tf.ratio), round(h * tf.ratio)
    dw, dh = (in_w - new_w) / 2.0, (in_h - new_h) / 2.0
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    img = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    # copyMakeBorder on uint8 rounds 127.5 -> 128, as upstream does (its img is uint8 too).
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0)
    return x, tf  # (3, H, W)
