"""FairMOT head decoding: heatmap peaks -> boxes, scores and re-ID embeddings.

Upstream: ``ifzhang/FairMOT`` ``src/lib/models/decode.py`` (``_nms``, ``_topk``, ``mot_decode``),
``src/lib/utils/post_process.py`` (``ctdet_post_process``) and the first lines of
``src/lib/tracker/multitracker.py::JDETracker.update`` (sigmoid, ``F.normalize(id)``,
``_tranpose_and_gather_feat``, ``remain_inds = dets[:, 4] > conf_thres``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from passbench.tracking.letterbox import LetterboxTransform

HEADS = ("hm", "wh", "reg", "id")


@dataclass(frozen=True)
class Detections:
    """Decoded detections of one frame, in original-frame pixels.

    Attributes:
        boxes: (N, 5) float64 ``x1, y1, x2, y2, score``, sorted by score, descending.
        embeddings: (N, D) float32 L2-normalised re-ID embeddings at the same peaks.
    """

    boxes: np.ndarray
    embeddings: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def heatmap_nms(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Keep only local maxima of ``heat`` (B, C, h, w): 3x3 max-pool equality (``decode.py::_nms``).

    Plateaus (equal neighbours) keep every tied cell, as upstream does.
    """
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (hmax == heat).to(heat.dtype)


def _gather(feat: torch.Tensor, inds: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) features at flat indices (B, K) -> (B, K, C) (``_tranpose_and_gather_feat``)."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)  # (B, C, h*w)
    return flat.gather(2, inds.unsqueeze(1).expand(b, c, inds.shape[1])).transpose(1, 2)


def mot_decode(
    hm: torch.Tensor,
    wh: torch.Tensor,
    reg: torch.Tensor | None,
    *,
    K: int = 500,
    ltrb: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K centre peaks -> boxes in output-grid units (``decode.py::mot_decode``).

    Args:
        hm: (B, 1, h, w) centre heatmap **after** sigmoid.
        wh: (B, 4, h, w) left/top/right/bottom distances (``ltrb``) or (B, 2, h, w) width/height,
            in output-grid cells.
        reg: (B, 2, h, w) sub-cell centre offset, or None (then +0.5 is used, as upstream).
        K: number of peaks kept (FairMOT ``--K 500``); clamped to ``h*w`` for tiny inputs
            (upstream would raise in ``torch.topk``).
        ltrb: box parametrisation (FairMOT default True).

    Returns:
        ``(dets, inds)``: dets (B, K, 5) ``x1, y1, x2, y2, score`` in output-grid units; inds (B, K)
        flat peak indices into the h*w grid, for gathering embeddings.
    """
    if hm.ndim != 4 or hm.shape[1] != 1:
        raise ValueError(f"hm must be (B, 1, h, w); got {tuple(hm.shape)}")
    b, _, h, w = hm.shape
    k = min(int(K), h * w)
    scores, inds = torch.topk(heatmap_nms(hm).reshape(b, -1), k)  # (B, K), sorted descending
    ys = torch.div(inds, w, rounding_mode="floor").to(hm.dtype)
    xs = (inds % w).to(hm.dtype)
    if reg is not None:
        off = _gather(reg, inds)  # (B, K, 2)
        xs, ys = xs + off[..., 0], ys + off[..., 1]
    else:
        xs, ys = xs + 0.5, ys + 0.5
    size = _gather(wh, inds)  # (B, K, 4 or 2)
    if ltrb:
        if size.shape[-1] != 4:
            raise ValueError(f"ltrb wh head must have 4 channels; got {size.shape[-1]}")
        boxes = torch.stack([xs - size[..., 0], ys - size[..., 1], xs + size[..., 2], ys + size[..., 3]], -1)
    else:
        if size.shape[-1] != 2:
            raise ValueError(f"wh head must have 2 channels when ltrb=False; got {size.shape[-1]}")
        boxes = torch.stack([xs - size[..., 0] / 2, ys - size[..., 1] / 2, xs + size[..., 0] / 2, ys + size[..., 1] / 2], -1)
    return torch.cat([boxes, scores.unsqueeze(-1)], -1), inds


def decode_frame(
    out: dict[str, torch.Tensor],
    transform: LetterboxTransform,
    *,
    conf_thres: float = 0.4,
    K: int = 500,
    ltrb: bool = True,
) -> Detections:
    """Decode one frame's FairMOT head outputs into detections in original-frame pixels.

    Args:
        out: head dict with ``hm`` (1, 1, h, w) **logits**, ``wh`` (1, 4, h, w), ``reg`` (1, 2, h, w)
            and ``id`` (1, D, h, w), at the output stride of the input the model saw.
        transform: the letterbox used to make that input.
        conf_thres: keep detections with score > this (FairMOT: 0.4 for MOT16/17, 0.3 for MOT15/20).
        K: peaks decoded before thresholding (FairMOT 500).
        ltrb: whether ``wh`` is left/top/right/bottom (FairMOT default) or width/height.

    Returns:
        :class:`Detections` with boxes (N, 5) and L2-normalised embeddings (N, D).
    """
    missing = [k for k in HEADS if k not in out]
    if missing:
        raise KeyError(f"model output lacks FairMOT head(s) {missing}; has {sorted(out)}")
    hm = out["hm"]
    if hm.shape[0] != 1:
        raise ValueError(f"decode_frame decodes one frame; got batch {hm.shape[0]}")
    in_w, in_h = transform.input_size
    out_h, out_w = hm.shape[-2:]
    if in_w % out_w or in_h % out_h or in_w // out_w != in_h // out_h:
        raise ValueError(f"input {in_w}x{in_h} is not an integer multiple of the head grid {out_w}x{out_h}")
    stride = in_w // out_w  # FairMOT down_ratio, 4
    with torch.no_grad():
        dets, inds = mot_decode(hm.float().sigmoid(), out["wh"].float(), out["reg"].float(), K=K, ltrb=ltrb)
        emb = _gather(F.normalize(out["id"].float(), dim=1), inds)[0]  # (K, D)
    dets = dets[0].cpu().double().numpy()  # (K, 5) grid units
    emb = emb.cpu().numpy().astype(np.float32)
    # ctdet_post_process: grid -> input pixels (x stride) -> original pixels (letterbox inverse).
    boxes = transform.to_original(dets[:, :4] * stride)
    keep = dets[:, 4] > conf_thres  # multitracker.py: remain_inds = dets[:, 4] > conf_thres
    # Deviation: also drop boxes with non-positive width or height. Upstream keeps them; an untrained
    # or diverged wh head makes them, and h = 0 turns the Kalman state (x, y, w/h, h) into NaN/inf.
    # Boxes from a trained ltrb head (distances > 0) are never affected.
    keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Detections(np.concatenate([boxes, dets[:, 4:5]], 1)[keep], emb[keep])
