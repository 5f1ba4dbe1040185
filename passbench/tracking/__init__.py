"""passbench.tracking: FairMOT letterbox + decoding, the JDE tracker, and sequence inference.

Upstream: ``ifzhang/FairMOT`` (MIT), ``src/lib/tracker/``, ``src/lib/models/decode.py``,
``src/lib/datasets/dataset/jde.py``, ``src/track.py``. Clean reimplementation; see each module.
"""

from passbench.tracking.decode import Detections, decode_frame, mot_decode
from passbench.tracking.infer import FrameEvent, SequenceTracking, load_tracking_model, save_results, track_sequence
from passbench.tracking.jde import JDETracker, STrack, TrackerConfig, TrackState, filter_outputs
from passbench.tracking.kalman import CHI2INV95, KalmanFilter
from passbench.tracking.letterbox import LetterboxTransform, letterbox, letterbox_transform

__all__ = [
    "CHI2INV95", "Detections", "FrameEvent", "JDETracker", "KalmanFilter", "LetterboxTransform",
    "STrack", "SequenceTracking", "TrackState", "TrackerConfig", "decode_frame", "filter_outputs",
    "letterbox", "letterbox_transform", "load_tracking_model", "mot_decode", "save_results", "track_sequence",
]
