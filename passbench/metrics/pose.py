"""3D pose errors: the MPJPE family, with the alignment each protocol uses, and their aggregation.

Two different "Procrustes" errors exist in the literature and both are implemented, labelled
(REFERENCE.md 3.1):

* :func:`pa_mpjpe` is the 3DMPPE / MobileHumanPose ``rigid_align``
  (``common/utils/pose_utils.py``, ``rigid_transform_3D``): rotation + translation, **no scale**,
  with the reflection fix. That is what the MHP/3DMPPE "Protocol 1" table reports.
* :func:`p_mpjpe` is VideoPose3D's ``p_mpjpe`` (``common/loss.py``): rotation, translation **and
  the optimal scale** (orthogonal Procrustes on Frobenius-normalised point sets), with the
  reflection fix. That is the VideoPose3D/Martinez "Protocol #2".

All functions take ``(N, J, 3)`` arrays in mm (NumPy or torch, converted to float64 NumPy) and return
a :class:`PoseErrors` with the per-(sample, joint) errors, the per-sample mean and the overall mean.
Root alignment (subtract the Pelvis) is a separate step, :func:`root_align`, exactly as the 3DMPPE
evaluation does it before any of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np

FRAME_WEIGHTED = "frame-weighted mean over (sample, joint)"
MEAN_OF_ACTIONS = "mean of per-action means"
AGGREGATIONS = {"frame": FRAME_WEIGHTED, "action": MEAN_OF_ACTIONS}


@dataclass(frozen=True)
class PoseErrors:
    """Errors of one metric on N samples of J joints.

    Attributes:
        metric: metric name (``mpjpe``, ``pa_mpjpe``, ``p_mpjpe``, ``n_mpjpe``).
        per_joint: (N, J) Euclidean error per sample and joint, mm.
        per_sample: (N,) mean over joints, mm.
        mean: mean over all (sample, joint), mm (= mean of ``per_sample``: J is fixed).
    """

    metric: str
    per_joint: np.ndarray
    per_sample: np.ndarray
    mean: float


def _as_np(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (N, J, 3) in mm, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_np(pred, "pred"), _as_np(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    return p, g


def _errors(metric: str, pred: np.ndarray, gt: np.ndarray) -> PoseErrors:
    per_joint = np.linalg.norm(pred - gt, axis=-1)  # (N, J)
    per_sample = per_joint.mean(axis=1)  # (N,)
    return PoseErrors(metric, per_joint, per_sample, float(per_joint.mean()) if per_joint.size else float("nan"))


def root_align(joints: Any, root: int = 0) -> np.ndarray:
    """Subtract the root joint (Pelvis = 0 in Human3.6M) from every joint.

    Args:
        joints: (N, J, 3) mm.
        root: index of the root joint.

    Returns:
        (N, J, 3) root-relative joints, mm; the root row is exactly 0.
    """
    a = _as_np(joints, "joints")
    return a - a[:, root : root + 1]


def mpjpe(pred: Any, gt: Any) -> PoseErrors:
    """Mean per-joint position error, no alignment (VideoPose3D ``mpjpe``; 3DMPPE "Protocol 2").

    Args:
        pred, gt: (N, J, 3) mm, already root-aligned if the protocol asks for it.
    """
    p, g = _pair(pred, gt)
    return _errors("mpjpe", p, g)


def rigid_transform_3d(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and translation t (3,) minimising sum ||R a_j + t - b_j||², no scale.

    Kabsch via the SVD of the cross-covariance, as 3DMPPE's ``rigid_transform_3D``
    (``common/utils/pose_utils.py``): H = (A - mean A)^T (B - mean B) = U S V^T, R = V U^T; when
    det R < 0 the sign of V's last column is flipped so that R is a proper rotation (no reflection).

    Args:
        a: (J, 3) source points (the prediction), mm.
        b: (J, 3) target points (the ground truth), mm.
    """
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    h = (a - ca).T @ (b - cb)  # (3, 3)
    u, _, vt = np.linalg.svd(h)
    r = vt.T @ u.T
    if np.linalg.det(r) < 0:
        vt = vt.copy()
        vt[2] = -vt[2]  # last row of V^T = last column of V
        r = vt.T @ u.T
    t = cb - r @ ca
    return r, t


def rigid_align(pred: Any, gt: Any) -> np.ndarray:
    """Apply :func:`rigid_transform_3d` per sample: (N, J, 3) prediction aligned onto gt, mm."""
    p, g = _pair(pred, gt)
    out = np.empty_like(p)
    for i in range(len(p)):
        r, t = rigid_transform_3d(p[i], g[i])
        out[i] = p[i] @ r.T + t
    return out


def pa_mpjpe(pred: Any, gt: Any) -> PoseErrors:
    """3DMPPE/MHP "PA-MPJPE": MPJPE after rotation + translation alignment, NO scale.

    The error reported as "Protocol 1" by Sun et al. 2018, 3DMPPE (Moon 2019) and MHP (Choi 2021):
    ``Human36M.evaluate`` calls ``rigid_align`` after root alignment. Not the same number as
    :func:`p_mpjpe`, which also fits a scale.

    Args:
        pred, gt: (N, J, 3) mm.
    """
    p, g = _pair(pred, gt)
    return _errors("pa_mpjpe", rigid_align(p, g), g)


def procrustes_align(pred: Any, gt: Any) -> np.ndarray:
    """VideoPose3D similarity alignment (rotation, translation, scale) of pred onto gt, per sample.

    Follows the steps of VideoPose3D ``common/loss.py::p_mpjpe`` (described in REFERENCE.md 3.1,
    re-implemented, not copied): centre both sets, divide each by its Frobenius norm, H = X0^T Y0 =
    U S V^T, R = V U^T; if det R < 0 flip the sign of V's last column and of the last singular value;
    scale a = (sum S) nX / nY; t = mu_G - a mu_P R; aligned = a P R + t.

    Args:
        pred, gt: (N, J, 3) mm.

    Returns:
        (N, J, 3) aligned prediction, mm.
    """
    p, g = _pair(pred, gt)
    mu_g, mu_p = g.mean(axis=1, keepdims=True), p.mean(axis=1, keepdims=True)
    x0, y0 = g - mu_g, p - mu_p  # (N, J, 3)
    nx = np.sqrt((x0**2).sum(axis=(1, 2), keepdims=True))
    ny = np.sqrt((y0**2).sum(axis=(1, 2), keepdims=True))
    # A set whose joints all sit at one point has norm 0 up to the rounding of its mean (1e-13 of the coordinates
    # far from the origin), not exactly 0: dividing by that amplifies rounding into an arbitrary fit.
    # (VideoPose3D does not check; it returns NaN for an exact 0.)
    tiny_g = 1e-9 * (1.0 + np.abs(g).max(axis=(1, 2), keepdims=True))
    tiny_p = 1e-9 * (1.0 + np.abs(p).max(axis=(1, 2), keepdims=True))
    if np.any(ny <= tiny_p) or np.any(nx <= tiny_g):
        raise ValueError("p_mpjpe: a sample has all joints at one point (zero norm); scale is undefined")
    x0, y0 = x0 / nx, y0 / ny
    h = np.einsum("nji,njk->nik", x0, y0)  # (N, 3, 3) = X0^T Y0
    u, s, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, 1, 2)
    r = v @ np.swapaxes(u, 1, 2)  # (N, 3, 3)
    neg = np.linalg.det(r) < 0
    if np.any(neg):
        v[neg, :, -1] *= -1
        s[neg, -1] *= -1
        r = v @ np.swapaxes(u, 1, 2)
    # With row vectors, P R maps the prediction onto the gt (R = V U^T rotates Y0 onto X0).
    a = s.sum(axis=1)[:, None, None] * nx / ny  # (N, 1, 1)
    t = mu_g - a * (mu_p @ r)
    return a * (p @ r) + t


def p_mpjpe(pred: Any, gt: Any) -> PoseErrors:
    """VideoPose3D "P-MPJPE" (Protocol #2 there): MPJPE after similarity Procrustes (with scale).

    Args:
        pred, gt: (N, J, 3) mm.
    """
    p, g = _pair(pred, gt)
    return _errors("p_mpjpe", procrustes_align(p, g), g)


def n_mpjpe(pred: Any, gt: Any) -> PoseErrors:
    """VideoPose3D "N-MPJPE" (Protocol #3): MPJPE after the optimal per-sample scale only.

    s = sum(P * G) / sum(P * P) over joints and xyz (least-squares scale of P onto G), about the
    coordinate origin, so callers root-align first (:func:`root_align`), as VideoPose3D does.

    Args:
        pred, gt: (N, J, 3) mm.
    """
    p, g = _pair(pred, gt)
    num = (p * g).sum(axis=(1, 2), keepdims=True)
    den = (p * p).sum(axis=(1, 2), keepdims=True)
    if np.any(den == 0):
        raise ValueError("n_mpjpe: a prediction is all zeros; scale is undefined")
    return _errors("n_mpjpe", p * (num / den), g)


METRICS: dict[str, Callable[[Any, Any], PoseErrors]] = {
    "mpjpe": mpjpe,
    "pa_mpjpe": pa_mpjpe,
    "p_mpjpe": p_mpjpe,
    "n_mpjpe": n_mpjpe,
}


@dataclass(frozen=True)
class Aggregate:
    """Overall and per-group (per-action) means of per-(sample, joint) errors.

    Attributes:
        overall: the overall error, mm, computed as ``aggregation`` says.
        aggregation: ``FRAME_WEIGHTED`` (3DMPPE ``tot_err``; VideoPose3D's frame-weighted mean) or
            ``MEAN_OF_ACTIONS`` (VideoPose3D's "action-wise average").
        per_group: group label -> mean over that group's (sample, joint), mm.
        counts: group label -> number of samples.
    """

    overall: float
    aggregation: str
    per_group: dict[Hashable, float]
    counts: dict[Hashable, int]

    def as_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "aggregation": self.aggregation,
                "per_group": dict(self.per_group), "counts": dict(self.counts)}


def aggregate(errors: PoseErrors | np.ndarray, groups: Sequence[Hashable], how: str = "frame") -> Aggregate:
    """Aggregate per-(sample, joint) errors overall and per group (e.g. per action).

    Args:
        errors: a :class:`PoseErrors` or an (N, J) array of errors, mm.
        groups: N group labels (e.g. action names), one per sample.
        how: ``"frame"`` for the mean over all (sample, joint) pairs (3DMPPE ``tot_err``), or
            ``"action"`` for the unweighted mean of the per-group means.
    """
    e = errors.per_joint if isinstance(errors, PoseErrors) else np.asarray(errors, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"errors: expected (N, J), got {e.shape}")
    labels = list(groups)
    if len(labels) != len(e):
        raise ValueError(f"groups: {len(labels)} labels for {len(e)} samples")
    if how not in AGGREGATIONS:
        raise ValueError(f"how={how!r}: expected one of {sorted(AGGREGATIONS)}")
    if len(e) == 0:
        raise ValueError("aggregate: no samples")
    order = list(dict.fromkeys(labels))  # first-seen order
    idx = {g: [i for i, lab in enumerate(labels) if lab == g] for g in order}
    per_group = {g: float(e[ix].mean()) for g, ix in idx.items()}
    counts = {g: len(ix) for g, ix in idx.items()}
    overall = float(e.mean()) if how == "frame" else float(np.mean(list(per_group.values())))
    return Aggregate(overall, AGGREGATIONS[how], per_group, counts)
