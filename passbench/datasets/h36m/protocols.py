"""Human3.6M names and tables: joints, actions, the evaluation protocols, PASS Table 2's action columns.

The two incompatible "protocol" numberings are selectable by unambiguous names (:data:`PROTOCOLS`;
the table is in ``passbench.datasets.h36m``). The ``metric`` strings are the keys of
``passbench.metrics.pose.METRICS`` (``datasets/`` and ``metrics/`` know nothing of each other; the
runner wires them). Imports nothing but the standard library.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

# The 17 Human3.6M joints in 3DMPPE order, plus the loader-derived Thorax (mean of the shoulders),
# joint 18, which is excluded from evaluation (``eval_joint`` in upstream Human36M.py).
JOINT_NAMES = ("Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck",
               "Nose", "Head", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist")
JOINT_NAMES_18 = JOINT_NAMES + ("Thorax",)
ROOT = 0
L_SHOULDER, R_SHOULDER = JOINT_NAMES.index("L_Shoulder"), JOINT_NAMES.index("R_Shoulder")
EVAL_JOINTS = tuple(range(17))
SKELETON = ((0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
            (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6))
FLIP_PAIRS = ((1, 4), (2, 5), (3, 6), (14, 11), (15, 12), (16, 13))

# action_idx 2..16 -> ACTION_NAMES[action_idx - 2] (upstream ``action_name[aid-2]``).
ACTION_NAMES = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Posing", "Purchases", "Sitting",
                "SittingDown", "Smoking", "Photo", "Waiting", "Walking", "WalkDog", "WalkTogether")
SUBJECTS = (1, 5, 6, 7, 8, 9, 11)


def action_name(action_idx: int) -> str:
    """Human3.6M action name of a 3DMPPE ``action_idx`` (2..16)."""
    if not 2 <= int(action_idx) <= 16:
        raise ValueError(f"action_idx {action_idx} outside 2..16")
    return ACTION_NAMES[int(action_idx) - 2]


def action_index(name: str) -> int:
    """Inverse of :func:`action_name`."""
    try:
        return ACTION_NAMES.index(name) + 2
    except ValueError:
        raise KeyError(f"unknown Human3.6M action {name!r} (known: {', '.join(ACTION_NAMES)})") from None


# ---------------------------------------------------------------------------------------------- protocols


@dataclass(frozen=True)
class Protocol:
    """One Human3.6M evaluation protocol (REFERENCE.md 3.1)."""

    name: str
    metric: str  # key of passbench.metrics.pose.METRICS
    train_subjects: tuple[int, ...]
    test_subjects: tuple[int, ...]
    train_stride: int
    test_stride: int
    numbering: str  # which paper family numbers it, and how
    aggregation: str  # "frame" (3DMPPE tot_err) is what the MHP/PASS tables report

    def subjects(self, split: str) -> tuple[int, ...]:
        if split not in ("train", "test"):
            raise ValueError(f"split {split!r}: expected 'train' or 'test'")
        return self.train_subjects if split == "train" else self.test_subjects

    def stride(self, split: str) -> int:
        self.subjects(split)
        return self.train_stride if split == "train" else self.test_stride


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("mhp-p1", "pa_mpjpe", (1, 5, 6, 7, 8, 9), (11,), 5, 64,
             "3DMPPE/MHP/Sun 2018 'Protocol 1': PA-MPJPE, rigid_align without scale", "frame"),
    Protocol("mhp-p2", "mpjpe", (1, 5, 6, 7, 8), (9, 11), 5, 64,
             "3DMPPE/MHP/Sun 2018 'Protocol 2': MPJPE after root alignment", "frame"),
    Protocol("vp3d-p1", "mpjpe", (1, 5, 6, 7, 8), (9, 11), 1, 1,
             "VideoPose3D/Martinez 'Protocol #1': MPJPE, all frames", "frame"),
    Protocol("vp3d-p2", "p_mpjpe", (1, 5, 6, 7, 8), (9, 11), 1, 1,
             "VideoPose3D/Martinez 'Protocol #2': P-MPJPE, Procrustes with scale, all frames", "frame"),
)}
# The configs' earlier label ``h36m_p2`` (configs/_base_/pose_h36m.yaml says "MHP/3DMPPE Protocol 2").
PROTOCOL_ALIASES = {"h36m_p1": "mhp-p1", "h36m_p2": "mhp-p2"}
PAPER_PROTOCOL = "mhp-p2"  # PASS Tables 1-2 report MPJPE and compare with MHP's MPJPE protocol numbers


def get_protocol(name: str) -> Protocol:
    """Protocol by name (or alias); an unknown name raises ``KeyError`` with close matches."""
    key = PROTOCOL_ALIASES.get(name, name)
    if key in PROTOCOLS:
        return PROTOCOLS[key]
    close = difflib.get_close_matches(name, list(PROTOCOLS) + list(PROTOCOL_ALIASES), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise KeyError(f"unknown Human3.6M protocol {name!r}{hint} (known: {', '.join(PROTOCOLS)})")


# ------------------------------------------------------------------------------ the paper's Table 2 split


@dataclass(frozen=True)
class PaperAction:
    """One column of PASS Table 2 and the Human3.6M action it stands for."""

    column: str  # record key suffix (``metrics.per_action.<column>.mpjpe_mm``)
    paper_label: str
    action: str  # Human3.6M action name
    action_idx: int
    paper_setting: str  # what the paper's table header says
    dataset_setting: str  # what Human3.6M actually is
    note: str = ""


_INDOOR_FIXED = "indoor, fixed camera"
_ACTUAL = "indoor lab, 4 static calibrated cameras (as all of Human3.6M)"
_DISCREPANCY = ("the paper groups this column under 'Outdoor, Moving Camera', but every Human3.6M video is "
                "indoors with fixed cameras; the grouping is not a property of the data")
PAPER_TABLE2: tuple[PaperAction, ...] = (
    PaperAction("talking", "Talking", "Discussion", 3, _INDOOR_FIXED, _ACTUAL,
                "Human3.6M has no 'Talking' action; Discussion is the closest"),
    PaperAction("eating", "Eating", "Eating", 4, _INDOOR_FIXED, _ACTUAL),
    PaperAction("greeting", "Greeting", "Greeting", 5, _INDOOR_FIXED, _ACTUAL),
    PaperAction("phoning", "Phoning", "Phoning", 6, _INDOOR_FIXED, _ACTUAL),
    PaperAction("photo", "Photo", "Photo", 12, "outdoor, moving camera", _ACTUAL, _DISCREPANCY),
    PaperAction("walk", "Walk", "Walking", 14, "outdoor, moving camera", _ACTUAL, _DISCREPANCY),
    PaperAction("walkdog", "WalkDog", "WalkDog", 15, "outdoor, moving camera", _ACTUAL, _DISCREPANCY),
)
# Also: the paper's text lists "sitting" among the 7 scenarios, but Table 2 has no Sitting column.
PAPER_TABLE2_NOTE = ("PASS Table 2 headers claim 'Outdoor, Moving Camera' for Photo/Walk/WalkDog; Human3.6M is "
                     "entirely indoor with 4 fixed cameras. The text mentions 'sitting', which no column shows.")


def paper_table2_rows() -> list[dict[str, Any]]:
    """PASS Table 2's action columns as plain dicts (for reports), discrepancies included."""
    return [dict(p.__dict__) for p in PAPER_TABLE2]
