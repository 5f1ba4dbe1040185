"""Score pose predictions on Human3.6M frames the way 3DMPPE ``Human36M.evaluate`` does, per protocol.

For each scored frame (``passbench.datasets.h36m.Frame``): decode the model's coords through the
frame's processed box with the ground-truth root depth and back-project with its f and c
(``passbench.pose.decode``); subtract the root (Pelvis) from prediction and ground truth; then

* ``mhp-p2`` / ``vp3d-p1`` (metric ``mpjpe``): the Euclidean error of the 17 joints (Thorax dropped);
* ``mhp-p1`` (``pa_mpjpe``): upstream ``rigid_align`` (rotation + translation, no scale) of all 18
  joints (Thorax included, as upstream aligns before dropping it), then the 17 joints' error;
* ``vp3d-p2`` (``p_mpjpe``): VideoPose3D's similarity Procrustes on the 17 joints.

Aggregation as upstream: the overall error is the mean over all (frame, joint) pairs; each action's
is the mean over its own (frame, joint) pairs (``passbench.metrics.pose.aggregate``, "frame").
Frames whose annotation box is empty after ``process_bbox`` are not scored (upstream drops them
from its data list) and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from passbench.datasets.h36m import EVAL_JOINTS, JOINT_NAMES_18, ROOT, Frame, Protocol, get_protocol, process_bbox
from passbench.metrics import pose as P
from passbench.pose.decode import MapSpec, to_camera, to_image


class PredictionError(ValueError):
    """A prediction cannot be scored (NaN, wrong shape); the message names the frame's file and the field."""


@dataclass(frozen=True)
class PoseResult:
    """Scores of one run on one protocol.

    Attributes:
        protocol: protocol name (``mhp-p2`` ...).  metric: ``mpjpe`` / ``pa_mpjpe`` / ``p_mpjpe``.
        value_mm: the overall error, mm (mean over all scored (frame, joint) pairs).
        per_action: action name -> error mm.  counts: action name -> scored frames.
        frames: scored frames.  skipped_empty_box: frames not scored (empty processed box).
        numbering: which paper family names the protocol so.  aggregation: how ``value_mm`` averages.
        per_joint: (N, 17) errors mm, frames in input order (without the skipped ones).
    """

    protocol: str
    metric: str
    value_mm: float
    per_action: dict[str, float]
    counts: dict[str, int]
    frames: int
    skipped_empty_box: int
    numbering: str
    aggregation: str
    per_joint: np.ndarray = field(repr=False)

    def as_metrics(self) -> dict[str, Any]:
        """Record-ready dict: ``{<metric>_mm, per_action: {name: {<metric>_mm, frames}}, frames, ...}``."""
        key = f"{self.metric}_mm"
        return {key: self.value_mm, "per_action": {a: {key: v, "frames": self.counts[a]} for a, v in self.per_action.items()},
                "frames": self.frames, "skipped_empty_box": self.skipped_empty_box, "protocol": self.protocol,
                "numbering": self.numbering, "aggregation": self.aggregation}


def _check(coords: np.ndarray, frames: Sequence[Frame]) -> None:
    if coords.ndim != 3 or coords.shape[1:] != (len(JOINT_NAMES_18), 3) or len(coords) != len(frames):
        raise PredictionError(f"coords: expected ({len(frames)}, {len(JOINT_NAMES_18)}, 3) for {len(frames)} frames "
                              f"(the 18-joint Human3.6M set), got {tuple(coords.shape)}")
    bad = ~np.isfinite(coords)
    if bad.any():
        n, j, k = (int(v) for v in np.argwhere(bad)[0])
        raise PredictionError(f"{frames[n].path}: prediction field 'coords' is {coords[n, j, k]} at joint {j} "
                              f"({JOINT_NAMES_18[j]}), axis {'xyz'[k]} (frame {n} of {len(frames)}); nothing scored")


def camera_joints(coords: Any, frames: Sequence[Frame], spec: MapSpec) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (N, 18, 3) camera mm of the frames whose processed box is not empty, and their mask.

    Args:
        coords: (N, 18, 3) model coords (NumPy or torch), one row per frame.
        frames: the N frames.  spec: the model's :class:`MapSpec`.

    Returns:
        (pred (M, 18, 3) camera mm, keep (N,) bool) with M = keep.sum().

    Raises:
        PredictionError: a NaN / inf coordinate or a wrong shape (names the frame's image file).
    """
    c = coords.detach().cpu().numpy() if hasattr(coords, "detach") else np.asarray(coords)
    c = c.astype(np.float64)
    _check(c, frames)
    boxes = [process_bbox(fr.bbox, fr.width, fr.height, spec.input_hw) for fr in frames]
    keep = np.array([b is not None for b in boxes], dtype=bool)
    idx = np.flatnonzero(keep)
    if not len(idx):
        return np.zeros((0, len(JOINT_NAMES_18), 3)), keep
    sel = [frames[i] for i in idx]
    uvz = to_image(c[idx], np.stack([boxes[i] for i in idx]), np.array([fr.root_cam[2] for fr in sel]), spec)
    pred = to_camera(uvz, np.stack([fr.camera.f for fr in sel]), np.stack([fr.camera.c for fr in sel]))
    return pred, keep


def joint_errors(pred_cam: np.ndarray, gt_cam: np.ndarray, metric: str) -> np.ndarray:
    """(N, 17) errors mm of (N, 18, 3) camera-mm predictions against ground truth, for a protocol metric."""
    pred, gt = P.root_align(pred_cam, ROOT), P.root_align(gt_cam, ROOT)
    ev = list(EVAL_JOINTS)
    if metric == "mpjpe":
        return P.mpjpe(pred[:, ev], gt[:, ev]).per_joint
    if metric == "pa_mpjpe":  # upstream aligns all 18 joints, then drops the Thorax
        return P.mpjpe(P.rigid_align(pred, gt)[:, ev], gt[:, ev]).per_joint
    if metric == "p_mpjpe":
        return P.p_mpjpe(pred[:, ev], gt[:, ev]).per_joint
    raise ValueError(f"metric {metric!r}: not a Human3.6M protocol metric (mpjpe, pa_mpjpe, p_mpjpe)")


def evaluate(coords: Any, frames: Sequence[Frame], protocol: str | Protocol, spec: MapSpec) -> PoseResult:
    """Score model coords on Human3.6M frames (3DMPPE ``evaluate`` with ``use_gt_info``).

    Args:
        coords: (N, 18, 3) model coords (x, y output-map px, z bins; NumPy or torch), one per frame,
            flip-test averaged or not (``passbench.pose.decode.predict``).
        frames: the N scored frames (``Human36M.eval_frames()`` or a subset).
        protocol: a protocol name (``mhp-p2``, ``mhp-p1``, ``vp3d-p1``, ``vp3d-p2``, aliases) or object.
        spec: the model's :class:`MapSpec` (``MapSpec.of(model)``).

    Raises:
        PredictionError: NaN / inf or wrong-shaped coords (the message names the image file and field).
        ValueError: no frame left to score.
    """
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    frames = list(frames)
    pred, keep = camera_joints(coords, frames, spec)
    scored = [fr for fr, k in zip(frames, keep) if k]
    if not scored:
        raise ValueError(f"evaluate: none of the {len(frames)} frames can be scored (no frames, or every processed "
                         "box is empty)")
    gt = np.stack([fr.joints_cam for fr in scored])  # (M, 18, 3)
    err = joint_errors(pred, gt, proto.metric)
    agg = P.aggregate(err, [fr.key.action_name for fr in scored], how=proto.aggregation)
    return PoseResult(proto.name, proto.metric, agg.overall, dict(agg.per_group), dict(agg.counts), len(scored),
                      int((~keep).sum()), proto.numbering, agg.aggregation, err)
