"""Run a FairMOT-style model + JDE tracker over a MOT sequence and collect the results.

Upstream: ``ifzhang/FairMOT`` ``src/track.py::eval_seq`` (per frame: letterbox -> forward ->
decode -> ``JDETracker.update`` -> output filter -> ``frame,id,x,y,w,h``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from passbench.tracking.decode import Detections, decode_frame
from passbench.tracking.jde import JDETracker, STrack, TrackerConfig, filter_outputs
from passbench.tracking.letterbox import letterbox

RESULT_COLUMNS = ["frame", "id", "x", "y", "w", "h", "conf"]


@dataclass(frozen=True)
class FrameEvent:
    """What ``on_frame`` receives after each frame.

    Attributes:
        frame: 1-based MOT frame number.
        input: (1, 3, H, W) letterboxed network input on ``device``.
        outputs: the model's head dict ``{hm, wh, reg, id}``.
        detections: decoded detections in frame pixels.
        tracks: the tracks written for this frame (after the output filter).
    """

    frame: int
    input: torch.Tensor
    outputs: dict[str, torch.Tensor]
    detections: Detections
    tracks: list[STrack]


@dataclass(frozen=True)
class SequenceTracking:
    """Output of :func:`track_sequence`.

    Attributes:
        results: one row per output box: ``frame, id, x, y, w, h, conf`` (top-left x/y, width,
            height in frame pixels; conf = the track's last matched detection score; FairMOT's
            writer puts 1 there, evaluators ignore it).
        per_frame: one row per frame: ``frame, n_dets, n_tracks, model_ms`` (forward pass),
            ``latency_ms`` (letterbox + transfer + forward + decode + tracker), timed with CUDA
            synchronisation when the device is CUDA.
    """

    results: pd.DataFrame
    per_frame: pd.DataFrame


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _heads(out: Any) -> dict[str, torch.Tensor]:
    # FairMOT's networks return [ {hm, wh, id, reg} ]; the passbench contract is the bare dict.
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if not isinstance(out, dict):
        raise TypeError(f"model must return a dict of FairMOT heads (hm, wh, reg, id); got {type(out).__name__}")
    return out


def track_sequence(
    model: torch.nn.Module,
    seq: Any,
    *,
    img_size: tuple[int, int] = (1088, 608),
    conf_thres: float = 0.4,
    frames: range | None = None,
    device: str | torch.device | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    K: int = 500,
    config: TrackerConfig | None = None,
) -> SequenceTracking:
    """Track one sequence with a FairMOT head model (``track.py::eval_seq``).

    Args:
        model: forward(x (1, 3, H, W) in [0, 1]) -> ``{hm (logits), wh (ltrb), reg, id}`` at stride 4.
            Put in eval mode here. Any per-stream state (skip convolutions) is the caller's to reset.
        seq: a ``passbench.datasets.mot.MOTSequence`` (``.frames(start, stop)`` yielding
            ``(frame_1based, rgb uint8 (h, w, 3))`` and ``.frame_rate``).
        img_size: network input ``(W, H)`` in pixels.
        conf_thres: detection threshold (FairMOT 0.4 for MOT16/17, 0.3 for MOT15/20). Overrides
            ``config.conf_thres``.
        frames: 1-based frame numbers to run, a contiguous ``range`` (e.g. ``range(1, 11)``);
            None = the whole sequence. The tracker starts fresh at the first of them.
        device: where to run; default the model's device.
        on_frame: optional callback, called with a :class:`FrameEvent` after each frame.
        K: peaks decoded per frame (FairMOT 500).
        config: tracker thresholds; default :class:`TrackerConfig` FairMOT values.

    Returns:
        :class:`SequenceTracking` with the result rows and per-frame info.
    """
    if frames is not None and (not isinstance(frames, range) or frames.step != 1 or len(frames) == 0):
        raise ValueError(f"frames must be a non-empty contiguous range of 1-based frame numbers; got {frames!r}")
    cfg = dataclasses.replace(config or TrackerConfig(), conf_thres=conf_thres)
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    model.eval()
    tracker = JDETracker(frame_rate=float(seq.frame_rate), config=cfg)

    rows: list[tuple] = []
    info: list[tuple] = []
    start, last = (1, None) if frames is None else (frames.start, frames.stop - 1)
    for frame, rgb in _iter_frames(seq, start, last):
        _sync(device)
        t0 = time.perf_counter()
        x, tf = letterbox(rgb, img_size)
        x = x.unsqueeze(0).to(device)  # (1, 3, H, W)
        _sync(device)
        t1 = time.perf_counter()
        with torch.no_grad():
            out = _heads(model(x))
        _sync(device)
        t2 = time.perf_counter()
        dets = decode_frame(out, tf, conf_thres=conf_thres, K=K)
        online = filter_outputs(tracker.update(dets.boxes, dets.embeddings), cfg.min_box_area, cfg.max_aspect)
        t3 = time.perf_counter()
        for t in online:
            rows.append((frame, t.track_id, *t.tlwh.tolist(), t.score))
        info.append((frame, len(dets), len(online), (t2 - t1) * 1e3, (t3 - t0) * 1e3))
        if on_frame is not None:
            on_frame(FrameEvent(frame, x, out, dets, online))
    skipped = set(getattr(seq, "skipped_frames", ()))  # left out by the loader (on_corrupt_frame="skip")
    while last is not None and last in skipped:
        last -= 1
    if not info or (last is not None and info[-1][0] != last):
        got = f"frames {info[0][0]}-{info[-1][0]}" if info else "no frames"
        raise ValueError(f"sequence {getattr(seq, 'name', seq)!r} yielded {got}; frames={frames!r} was asked for")
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS).astype({"frame": int, "id": int})
    per_frame = pd.DataFrame(info, columns=["frame", "n_dets", "n_tracks", "model_ms", "latency_ms"])
    return SequenceTracking(results, per_frame)


def _iter_frames(seq: Any, start: int, last: int | None):
    """Frames ``start..last`` (inclusive, 1-based), in order, checked for gaps (a frame the loader
    reports in ``seq.skipped_frames``, a bad frame left out on request, is not a gap)."""
    expected = start
    skipped = getattr(seq, "skipped_frames", [])
    # Ask the loader for one frame past ``last`` so either stop convention covers it; cut here.
    for frame, rgb in seq.frames(start=start, stop=None if last is None else last + 1):
        frame = int(frame)
        if last is not None and frame > last:
            break
        if frame < start:
            continue
        if frame != expected and not all(f in skipped for f in range(expected, frame)):
            raise ValueError(f"sequence {getattr(seq, 'name', seq)!r}: expected frame {expected}, got {frame}")
        expected = frame + 1
        yield frame, np.asarray(rgb)


def save_results(path: str | Path, results: pd.DataFrame) -> Path:
    """Write tracking results as a MOTChallenge txt via ``passbench.datasets.motio.write_mot_results``."""
    from passbench.datasets.motio import write_mot_results

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mot_results(path, results)
    return path


def load_tracking_model(name: str, checkpoint: str | Path | None = None, device: str = "cpu", **kw) -> torch.nn.Module:
    """``passbench.models.build_model(name, **kw)``, optionally loading a checkpoint, on ``device``.

    The checkpoint is loaded by ``passbench.models.checkpoint.load_checkpoint`` (the model
    package's loader, which raises a clear error when the weights do not fit the model).
    """
    from passbench.models import build_model

    model = build_model(name, **kw)
    if checkpoint is not None:
        from passbench.models.checkpoint import load_checkpoint

        load_checkpoint(model, checkpoint)
    return model.to(device).eval()
