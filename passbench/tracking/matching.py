"""Association costs and the thresholded linear assignment of the JDE tracker.

Upstream: ``ifzhang/FairMOT`` ``src/lib/tracker/matching.py`` (``ious``, ``iou_distance``,
``embedding_distance``, ``fuse_motion``, ``linear_assignment``).
"""

from __future__ import annotations

import lap
import numpy as np

from passbench.tracking.kalman import CHI2INV95, KalmanFilter

# Upstream computes IoU with ``cython_bbox.bbox_overlaps`` (py-faster-rcnn's ``bbox.pyx``), which
# counts pixels inclusively: width = x2 - x1 + 1. We keep that convention so the 0.5 / 0.7 / 0.15
# IoU thresholds mean what they mean upstream; it is the only reason for the +1.
PIXEL_OFFSET = 1.0


def box_iou(a: np.ndarray, b: np.ndarray, offset: float = PIXEL_OFFSET) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) x1,y1,x2,y2 boxes -> (N, M).

    Args:
        offset: added to widths/heights (1 = upstream ``cython_bbox``, 0 = continuous boxes).
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + offset
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + offset
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0] + offset) * (a[:, 3] - a[:, 1] + offset)
    area_b = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    # bbox.pyx only computes the ratio where iw > 0 and ih > 0, else 0; np.clip gives the same.
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_distance(a_tlbr: np.ndarray, b_tlbr: np.ndarray) -> np.ndarray:
    """``1 - IoU`` cost matrix (N, M) between two sets of x1,y1,x2,y2 boxes."""
    return 1.0 - box_iou(a_tlbr, b_tlbr)


def embedding_distance(track_feats: np.ndarray, det_feats: np.ndarray) -> np.ndarray:
    """Cosine distance ``max(0, 1 - cos)`` between (N, D) track and (M, D) detection embeddings.

    Upstream uses ``scipy.spatial.distance.cdist(..., 'cosine')`` on the tracks' smoothed and the
    detections' current features, clipped at 0.
    """
    if len(track_feats) == 0 or len(det_feats) == 0:
        return np.zeros((len(track_feats), len(det_feats)))
    t = np.asarray(track_feats, dtype=np.float64).reshape(len(track_feats), -1)
    d = np.asarray(det_feats, dtype=np.float64).reshape(len(det_feats), -1)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    return np.maximum(0.0, 1.0 - tn @ dn.T)


def fuse_motion(kf: KalmanFilter, cost: np.ndarray, means: list[np.ndarray], covs: list[np.ndarray],
                det_xyah: np.ndarray, *, lambda_: float = 0.98, only_position: bool = False) -> np.ndarray:
    """Gate an appearance cost by the Kalman Mahalanobis distance and blend it in (``fuse_motion``).

    For track ``i``: entries whose squared Mahalanobis distance exceeds ``chi2inv95[4]`` become
    ``inf``; then ``cost_i = lambda * cost_i + (1 - lambda) * maha_i``.

    Args:
        cost: (N, M) appearance cost; a modified copy is returned.
        means, covs: the N tracks' predicted Kalman states.
        det_xyah: (M, 4) detections as centre x, y, aspect w/h, height.
    """
    cost = np.array(cost, dtype=np.float64, copy=True)
    if cost.size == 0:
        return cost
    gate = CHI2INV95[2 if only_position else 4]
    for i, (m, p) in enumerate(zip(means, covs)):
        maha = kf.gating_distance(m, p, det_xyah, only_position)
        cost[i, maha > gate] = np.inf
        cost[i] = lambda_ * cost[i] + (1 - lambda_) * maha
    return cost


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching keeping only pairs with cost <= ``thresh`` (``lap.lapjv``, cost_limit).

    Returns:
        ``(matches (K, 2) int [row, col], unmatched_rows, unmatched_cols)``.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.size == 0:
        return np.empty((0, 2), dtype=int), np.arange(cost.shape[0]), np.arange(cost.shape[1])
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    rows = np.flatnonzero(x >= 0)
    matches = np.stack([rows, x[rows]], 1).astype(int) if len(rows) else np.empty((0, 2), dtype=int)
    return matches, np.flatnonzero(x < 0), np.flatnonzero(y < 0)
