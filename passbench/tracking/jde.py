"""The JDE / FairMOT online tracker, driven by per-frame detections + re-ID embeddings.

Upstream: ``ifzhang/FairMOT`` ``src/lib/tracker/multitracker.py`` (``STrack``, ``JDETracker.update``,
``joint_stracks``, ``sub_stracks``, ``remove_duplicate_stracks``), ``tracker/basetrack.py`` and the
output filter of ``src/track.py::eval_seq``. The network forward / decoding that upstream does
inside ``update`` lives in :mod:`passbench.tracking.decode`; :meth:`JDETracker.update` takes the
decoded ``(N, 5)`` boxes and ``(N, D)`` embeddings, so oracle detections can drive it too.

Deviations from upstream (none changes the association logic):
* Track ids come from a per-tracker counter starting at 1 (upstream: a class-level counter shared
  by every tracker in the process, so ids keep growing across sequences).
* ``det_thresh`` is a parameter (upstream ``det_thresh = conf_thres``; that is our default).
* Every quirk of ``update`` is kept on purpose, e.g. a lost track removed at frame t stays in the
  lost pool until the list bookkeeping of frame t+1 (upstream subtracts ``self.removed_stracks``
  before extending it), so it can still be re-found one frame after its timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from passbench.tracking import matching
from passbench.tracking.kalman import KalmanFilter


class TrackState(IntEnum):
    """``basetrack.py::TrackState``."""

    New = 0
    Tracked = 1
    Lost = 2
    Removed = 3


@dataclass(frozen=True)
class TrackerConfig:
    """JDETracker thresholds (FairMOT defaults; ``opts.py`` and ``multitracker.py``).

    Attributes:
        conf_thres: detection score threshold; also the default ``det_thresh`` (0.4 MOT16/17,
            0.3 MOT15/20 in FairMOT's run scripts).
        det_thresh: minimum score to start a new track; None -> ``conf_thres``.
        track_buffer: frames a lost track is kept at 30 fps (``--track_buffer 30``).
        match_thresh_emb: first association (fused cosine+motion cost) threshold, 0.4.
        match_thresh_iou: second association (IoU distance) threshold, 0.5.
        match_thresh_unconfirmed: unconfirmed-track (IoU distance) threshold, 0.7.
        duplicate_thresh: tracked/lost pairs with IoU distance below this are duplicates, 0.15.
        lambda_: weight of the appearance cost in ``fuse_motion``, 0.98.
        min_box_area: output filter, keep ``w*h > min_box_area`` px^2 (``--min-box-area 100``).
        max_aspect: output filter, keep ``w/h <= max_aspect`` (track.py ``vertical`` test, 1.6).
    """

    conf_thres: float = 0.4
    det_thresh: float | None = None
    track_buffer: int = 30
    match_thresh_emb: float = 0.4
    match_thresh_iou: float = 0.5
    match_thresh_unconfirmed: float = 0.7
    duplicate_thresh: float = 0.15
    lambda_: float = 0.98
    min_box_area: float = 100.0
    max_aspect: float = 1.6


def tlwh_to_xyah(tlwh: np.ndarray) -> np.ndarray:
    """(..., 4) top-left x, y, w, h -> centre x, y, aspect w/h, h."""
    t = np.array(tlwh, dtype=np.float64)
    t[..., :2] += t[..., 2:] / 2
    t[..., 2] /= t[..., 3]
    return t


class STrack:
    """One tracklet: Kalman state on (x, y, a, h) + an EMA of its L2-normalised embedding."""

    alpha = 0.9  # embedding EMA (multitracker.py STrack.alpha)

    def __init__(self, tlwh: np.ndarray, score: float, feat: np.ndarray) -> None:
        self._tlwh = np.asarray(tlwh, dtype=np.float64)
        self.score = float(score)
        self.mean: np.ndarray | None = None
        self.covariance: np.ndarray | None = None
        self.kalman: KalmanFilter | None = None
        self.is_activated = False
        self.state = TrackState.New
        self.track_id = 0
        self.tracklet_len = 0
        self.frame_id = 0
        self.start_frame = 0
        self.smooth_feat: np.ndarray | None = None
        self.curr_feat: np.ndarray | None = None
        self.update_features(feat)

    def update_features(self, feat: np.ndarray) -> None:
        """``smooth = normalise(alpha * smooth + (1 - alpha) * normalise(feat))``."""
        feat = np.asarray(feat, dtype=np.float64)
        feat = feat / np.linalg.norm(feat)
        self.curr_feat = feat
        s = feat if self.smooth_feat is None else self.alpha * self.smooth_feat + (1 - self.alpha) * feat
        self.smooth_feat = s / np.linalg.norm(s)

    @property
    def end_frame(self) -> int:
        return self.frame_id

    @property
    def tlwh(self) -> np.ndarray:
        """(4,) top-left x, y, width, height: the Kalman mean once started, else the detection."""
        if self.mean is None:
            return self._tlwh.copy()
        x, y, a, h = self.mean[:4]
        return np.array([x - a * h / 2, y - h / 2, a * h, h])

    @property
    def tlbr(self) -> np.ndarray:
        t = self.tlwh
        t[2:] += t[:2]
        return t

    def activate(self, kf: KalmanFilter, frame_id: int, track_id: int) -> None:
        """Start a new tracklet; only tracks born in the first frame are confirmed at once."""
        self.kalman = kf
        self.track_id = track_id
        self.mean, self.covariance = kf.initiate(tlwh_to_xyah(self._tlwh))
        self.tracklet_len = 0
        self.state = TrackState.Tracked
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def re_activate(self, det: "STrack", frame_id: int) -> None:
        """A lost track found again (keeps its id; its score is *not* updated, as upstream)."""
        self.mean, self.covariance = self.kalman.update(self.mean, self.covariance, tlwh_to_xyah(det.tlwh))
        self.update_features(det.curr_feat)
        self.tracklet_len = 0
        self.state = TrackState.Tracked
        self.is_activated = True
        self.frame_id = frame_id

    def update(self, det: "STrack", frame_id: int) -> None:
        """A tracked track matched to a detection."""
        self.frame_id = frame_id
        self.tracklet_len += 1
        self.mean, self.covariance = self.kalman.update(self.mean, self.covariance, tlwh_to_xyah(det.tlwh))
        self.state = TrackState.Tracked
        self.is_activated = True
        self.score = det.score
        self.update_features(det.curr_feat)

    def __repr__(self) -> str:
        return f"STrack(id={self.track_id}, state={self.state.name}, frames={self.start_frame}-{self.end_frame})"


def _joint(a: list[STrack], b: list[STrack]) -> list[STrack]:
    seen = {t.track_id for t in a}
    out = list(a)
    for t in b:
        if t.track_id not in seen:
            seen.add(t.track_id)
            out.append(t)
    return out


def _sub(a: list[STrack], b: list[STrack]) -> list[STrack]:
    drop = {t.track_id for t in b}
    return [t for t in {t.track_id: t for t in a}.values() if t.track_id not in drop]


def _tlbrs(tracks: list[STrack]) -> np.ndarray:
    return np.array([t.tlbr for t in tracks]).reshape(-1, 4)


class JDETracker:
    """FairMOT's ``JDETracker`` without the network: feed it one frame of detections at a time.

    Args:
        frame_rate: sequence frame rate; the lost-track buffer is ``int(frame_rate/30 * track_buffer)``.
        config: thresholds, see :class:`TrackerConfig`.
    """

    def __init__(self, frame_rate: float = 30.0, config: TrackerConfig = TrackerConfig()) -> None:
        self.cfg = config
        self.det_thresh = config.conf_thres if config.det_thresh is None else config.det_thresh
        self.max_time_lost = int(frame_rate / 30.0 * config.track_buffer)
        self.kalman = KalmanFilter()
        self.frame_id = 0
        self.tracked: list[STrack] = []
        self.lost: list[STrack] = []
        self.removed: list[STrack] = []
        self._next_id = 0

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _predict(self, tracks: list[STrack]) -> None:
        """``STrack.multi_predict``: non-tracked (lost) tracks get their height velocity zeroed."""
        if not tracks:
            return
        means = np.stack([t.mean for t in tracks])  # (N, 8)
        covs = np.stack([t.covariance for t in tracks])  # (N, 8, 8)
        for i, t in enumerate(tracks):
            if t.state != TrackState.Tracked:
                means[i, 7] = 0
        means, covs = self.kalman.predict(means, covs)
        for t, m, p in zip(tracks, means, covs):
            t.mean, t.covariance = m, p

    def update(self, dets: np.ndarray, embeddings: np.ndarray) -> list[STrack]:
        """Advance one frame (``JDETracker.update`` steps 2-5).

        Args:
            dets: (N, 5) ``x1, y1, x2, y2, score`` in frame pixels, already score-thresholded.
            embeddings: (N, D) re-ID embeddings (normalised here).

        Returns:
            The activated tracked tracks of this frame (before the output filter).
        """
        cfg = self.cfg
        self.frame_id += 1
        fid = self.frame_id
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if len(embeddings) != len(dets):
            raise ValueError(f"frame {fid}: {len(dets)} detections but {len(embeddings)} embeddings")
        detections = [STrack(np.r_[d[:2], d[2:4] - d[:2]], d[4], f) for d, f in zip(dets, embeddings)]
        activated, refound, lost, removed = [], [], [], []

        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]

        # Step 2: first association, embeddings fused with Kalman motion.
        pool = _joint(confirmed, self.lost)
        self._predict(pool)
        dists = matching.embedding_distance(
            np.array([t.smooth_feat for t in pool]), np.array([d.curr_feat for d in detections]))
        det_xyah = tlwh_to_xyah(np.array([d.tlwh for d in detections]).reshape(-1, 4))
        dists = matching.fuse_motion(self.kalman, dists, [t.mean for t in pool], [t.covariance for t in pool],
                                     det_xyah, lambda_=cfg.lambda_)
        matches, u_track, u_det = matching.linear_assignment(dists, cfg.match_thresh_emb)
        for it, idet in matches:
            track, det = pool[it], detections[idet]
            if track.state == TrackState.Tracked:
                track.update(det, fid)
                activated.append(track)
            else:
                track.re_activate(det, fid)
                refound.append(track)

        # Step 3: second association, IoU, on the still-tracked leftovers only.
        detections = [detections[i] for i in u_det]
        r_tracked = [pool[i] for i in u_track if pool[i].state == TrackState.Tracked]
        dists = matching.iou_distance(_tlbrs(r_tracked), _tlbrs(detections))
        matches, u_track, u_det = matching.linear_assignment(dists, cfg.match_thresh_iou)
        for it, idet in matches:
            r_tracked[it].update(detections[idet], fid)  # all are Tracked; upstream's else is dead
            activated.append(r_tracked[it])
        for it in u_track:
            track = r_tracked[it]
            if track.state != TrackState.Lost:
                track.state = TrackState.Lost
                lost.append(track)

        # Unconfirmed (born last frame, not yet matched): IoU to the remaining detections.
        detections = [detections[i] for i in u_det]
        dists = matching.iou_distance(_tlbrs(unconfirmed), _tlbrs(detections))
        matches, u_unconf, u_det = matching.linear_assignment(dists, cfg.match_thresh_unconfirmed)
        for it, idet in matches:
            unconfirmed[it].update(detections[idet], fid)
            activated.append(unconfirmed[it])
        for it in u_unconf:
            unconfirmed[it].state = TrackState.Removed
            removed.append(unconfirmed[it])

        # Step 4: new tracks (upstream skips score < det_thresh).
        for idet in u_det:
            det = detections[idet]
            if det.score < self.det_thresh:
                continue
            det.activate(self.kalman, fid, self._new_id())
            activated.append(det)

        # Step 5: time out lost tracks, then the list bookkeeping in upstream's order.
        for track in self.lost:
            if fid - track.end_frame > self.max_time_lost:
                track.state = TrackState.Removed
                removed.append(track)
        self.tracked = [t for t in self.tracked if t.state == TrackState.Tracked]
        self.tracked = _joint(_joint(self.tracked, activated), refound)
        self.lost = _sub(self.lost, self.tracked)
        self.lost.extend(lost)
        self.lost = _sub(self.lost, self.removed)
        self.removed.extend(removed)
        self.tracked, self.lost = self._remove_duplicates(self.tracked, self.lost)
        return [t for t in self.tracked if t.is_activated]

    def _remove_duplicates(self, a: list[STrack], b: list[STrack]) -> tuple[list[STrack], list[STrack]]:
        """Tracked/lost pairs overlapping with IoU distance < 0.15: keep the longer-lived one."""
        pdist = matching.iou_distance(_tlbrs(a), _tlbrs(b))
        dup_a, dup_b = set(), set()
        for p, q in zip(*np.where(pdist < self.cfg.duplicate_thresh)):
            if a[p].frame_id - a[p].start_frame > b[q].frame_id - b[q].start_frame:
                dup_b.add(q)
            else:
                dup_a.add(p)
        return ([t for i, t in enumerate(a) if i not in dup_a], [t for i, t in enumerate(b) if i not in dup_b])


def filter_outputs(tracks: list[STrack], min_box_area: float = 100.0, max_aspect: float = 1.6) -> list[STrack]:
    """``track.py::eval_seq`` output filter: keep ``w*h > min_box_area`` and ``w/h <= max_aspect``."""
    keep = []
    for t in tracks:
        _, _, w, h = t.tlwh
        if w * h > min_box_area and not w / h > max_aspect:
            keep.append(t)
    return keep
