"""passbench.tracking: FairMOT letterbox + decoding, the JDE tracker, and sequence inference.

Upstream: ``ifzhang/FairMOT`` (MIT), ``src/lib/tracker/``, ``src/lib/models/decode.py``,
``src/lib/datasets/dataset/jde.py``, ``src/track.py``. Clean reimplementation; see each module.
"""

import importlib
from typing import Any

# Imported on first use (PEP 562), so that ``passbench speed`` (letterbox only) imports without the tracker's
# dependencies (lap, scipy): the speed path on a Jetson needs torch, torchvision, timm, numpy, pandas, cv2.
_EXPORTS = {
    "decode": ("Detections", "decode_frame", "mot_decode"),
    "infer": ("FrameEvent", "SequenceTracking", "load_tracking_model", "save_results", "track_sequence"),
    "jde": ("JDETracker", "STrack", "TrackerConfig", "TrackState", "filter_outputs"),
    "kalman": ("CHI2INV95", "KalmanFilter"),
    "letterbox": ("LetterboxTransform", "letterbox", "letterbox_transform"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'passbench.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"passbench.tracking.{_WHERE[name]}"), name)
