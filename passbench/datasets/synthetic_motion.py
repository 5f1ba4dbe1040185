"""SYNTHETIC stick-figure motion for the Human3.6M actions (used by ``synthetic_h36m``).

A skeleton of the 17 Human3.6M joints with human limb lengths (mm, scaled per subject) is posed by
a few joint angles per frame. Each of PASS Table 2's seven actions has its own motion:

==========  ==================================================================================
action      motion
==========  ==================================================================================
Discussion  standing, weight shifting, both forearms gesturing at chest height, slow turning
Eating      seated (thighs horizontal), one hand repeatedly brought to the mouth
Greeting    standing, one arm raised and waving, a small bow every few seconds
Phoning     pacing slowly on a short line, one hand held at the ear, the other gesturing
Photo       standing, both hands raised in front of the face (holding a camera), leaning
Walking     walking a straight line at 1.2 m/s with arm swing
WalkDog     walking slower with pauses, one arm held forward-down (the leash)
==========  ==================================================================================

The other Human3.6M actions get the generic standing-and-gesturing motion. World frame: Z up, mm.
Nothing here is measured from Human3.6M: it is a deterministic function of (time, action, subject).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from passbench.datasets.h36m import JOINT_NAMES, action_index

DISCUSSION, EATING, GREETING, PHONING = (action_index(a) for a in ("Discussion", "Eating", "Greeting", "Phoning"))
PHOTO, WALKING, WALKDOG = (action_index(a) for a in ("Photo", "Walking", "WalkDog"))
WALKING_ACTIONS = frozenset({WALKING, WALKDOG, action_index("WalkTogether")})
LINE_MM = 3000.0  # walking actions go back and forth on a line this long


@dataclass
class Angles:
    """Joint angles (radians) and the body placement of one frame.

    ``hip_*``: thigh pitch forward from hanging; ``knee_*``: knee flexion; ``sh_*``: upper-arm pitch
    forward; ``ab_*``: upper-arm abduction (outwards); ``elb_*``: elbow flexion (added to the
    forearm pitch); ``fab_*``: forearm abduction (None: as the upper arm); ``lean``: torso pitch forward; ``pos``: pelvis (x, y, z) world mm;
    ``heading``: facing direction about Z.
    """

    hip_l: float = 0.0
    hip_r: float = 0.0
    knee_l: float = 0.08
    knee_r: float = 0.08
    sh_l: float = 0.1
    sh_r: float = 0.1
    ab_l: float = 0.12
    ab_r: float = 0.12
    elb_l: float = 0.2
    elb_r: float = 0.2
    fab_l: float | None = None
    fab_r: float | None = None
    lean: float = 0.0
    pos: tuple[float, float, float] = (0.0, 0.0, 920.0)
    heading: float = 0.0


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_y(a: float) -> np.ndarray:
    """Pitch forward (x towards -z) by ``a``: rotation about the body's y (left) axis."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _limb(length: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Body-frame vector (x forward, y left, z up) of a limb hanging down, swung forward by ``pitch``
    and sideways (outwards for positive ``roll`` on the left side) by ``roll``, radians."""
    return length * np.array([np.sin(pitch) * np.cos(roll), np.sin(roll), -np.cos(pitch) * np.cos(roll)])


def _gait(ph: float, amp: float = 0.45) -> dict[str, float]:
    """Leg and arm angles of a walking gait at phase ``ph`` (radians)."""
    return {"hip_l": amp * np.sin(ph), "hip_r": -amp * np.sin(ph),
            "knee_l": 0.6 * max(0.0, np.sin(ph + 2.2)) + 0.1, "knee_r": 0.6 * max(0.0, np.sin(ph + 2.2 + np.pi)) + 0.1,
            "sh_l": -0.4 * np.sin(ph), "sh_r": 0.4 * np.sin(ph), "elb_l": 0.35, "elb_r": 0.35}


def angles(t: float, action: int, subject: int) -> Angles:
    """The figure's :class:`Angles` at time ``t`` seconds for a Human3.6M action index (2..16)."""
    k = 0.94 + 0.03 * (subject % 4)  # per-subject body scale (also in pose_world)
    ph = 2 * np.pi * t / 1.1 + 0.7 * subject + 0.3 * action  # a per-video phase
    stand = 920.0 * k
    a = Angles(pos=(0.0, 0.0, stand))
    if action == DISCUSSION:
        a.sh_l, a.sh_r = 0.5 + 0.35 * np.sin(1.3 * ph), 0.45 + 0.3 * np.sin(0.9 * ph + 1.0)
        a.elb_l, a.elb_r = 1.3 + 0.4 * np.sin(1.7 * ph), 1.2 + 0.45 * np.sin(1.1 * ph + 0.5)
        a.hip_l, a.hip_r = 0.05 * np.sin(0.5 * ph), -0.05 * np.sin(0.5 * ph)
        a.pos = (150 * np.sin(0.25 * t + subject), 80 * np.sin(0.5 * ph), stand)
        a.heading = 0.5 * np.sin(0.3 * t) + 0.4 * subject
    elif action == EATING:
        seat = 470.0 * k  # seated: thighs forward (hip pitch 90 deg), shins down (knee flexion 90 deg)
        a.hip_l = a.hip_r = np.pi / 2 - 0.05
        a.knee_l = a.knee_r = np.pi / 2 - 0.05
        cyc = 0.5 - 0.5 * np.cos(2 * np.pi * t / 2.2 + subject)  # hand to mouth and back, 2.2 s
        a.sh_r, a.elb_r, a.ab_r = 0.35 + 0.45 * cyc, 1.2 + 1.3 * cyc, -0.15 * cyc
        a.sh_l, a.elb_l = 0.55, 1.0 + 0.1 * np.sin(ph)
        a.lean = 0.15 + 0.1 * cyc
        a.pos, a.heading = (0.0, 0.0, seat), 0.3 * subject
    elif action == GREETING:
        wave = np.sin(2 * np.pi * t / 0.6)  # a 0.6 s wave
        a.ab_r, a.sh_r, a.elb_r = 2.3 + 0.1 * wave, 0.3, 0.5 + 0.5 * wave
        a.sh_l, a.elb_l = 0.1 + 0.1 * np.sin(ph), 0.3
        a.lean = 0.25 * max(0.0, np.sin(2 * np.pi * t / 3.5 + subject)) ** 4  # a small bow every 3.5 s
        a.pos, a.heading = (100 * np.sin(0.2 * t), 0.0, stand), 0.2 * np.sin(0.4 * t) + 0.5 * subject
    elif action == PHONING:
        g = _gait(2 * np.pi * t / 1.4 + subject, amp=0.2)
        a.hip_l, a.hip_r, a.knee_l, a.knee_r = g["hip_l"], g["hip_r"], g["knee_l"], g["knee_r"]
        a.sh_l, a.ab_l, a.elb_l, a.fab_l = 0.9, 0.6, 2.3, -0.9  # left hand held up at the head
        a.sh_r, a.elb_r = 0.4 + 0.3 * np.sin(1.2 * ph), 0.9 + 0.4 * np.sin(ph)
        walk = 600 * np.sin(0.35 * t + subject)  # to and fro on a 1.2 m line
        a.heading = 0.0 if np.cos(0.35 * t + subject) >= 0 else np.pi
        a.pos = (walk, 0.0, stand - 10 * np.cos(2 * ph))
    elif action == PHOTO:
        a.sh_l = a.sh_r = 1.15 + 0.1 * np.sin(0.7 * ph)
        a.elb_l = a.elb_r = 1.75
        a.ab_l = a.ab_r = -0.35  # hands meet in front of the face
        a.lean = 0.1 + 0.1 * np.sin(0.4 * t + subject)
        a.hip_l, a.hip_r = 0.15, -0.1  # a step stance
        a.pos, a.heading = (200 * np.sin(0.15 * t), 100 * np.cos(0.2 * t), stand - 20), 0.3 * np.sin(0.25 * t)
    elif action in WALKING_ACTIONS:
        slow = action == WALKDOG
        speed = 800.0 if slow else 1200.0
        # WalkDog: the dog pulls and stops: the walker pauses (speed modulated, never backwards).
        mod = (0.6 + 0.4 * np.sin(2 * np.pi * t / 3.0 + subject)) if slow else 1.0
        g = _gait(2 * np.pi * t / (1.3 if slow else 1.1) + subject, amp=0.45 * mod)
        for key, val in g.items():
            setattr(a, key, val)
        if slow:  # the leash hand held forward-down
            a.sh_r, a.elb_r, a.ab_r = 0.7 + 0.1 * np.sin(2 * np.pi * t / 0.9), 0.3, 0.05
        w = 2 * np.pi / 3.0
        dist = speed * (0.6 * t - 0.4 * np.cos(w * t + subject) / w) if slow else speed * t
        # Back and forth on a 3 m line through the capture centre (turning at the ends), so the
        # walker stays in view of a fixed camera too.
        m = dist % (2 * LINE_MM)
        along, back = (m, False) if m < LINE_MM else (2 * LINE_MM - m, True)
        axis = 0.4 * subject + 0.2 * action
        x, y = (along - LINE_MM / 2) * np.cos(axis), (along - LINE_MM / 2) * np.sin(axis)
        a.pos, a.heading = (x, y, stand + 15 * np.cos(2 * g["hip_l"])), axis + (np.pi if back else 0.0)
    else:  # the generic motion (earlier versions of this generator): standing, gesturing, turning
        a.hip_l = a.hip_r = 0.05 * np.sin(0.5 * ph)
        a.sh_l, a.sh_r = 0.9 + 0.6 * np.sin(ph), 0.3 + 0.4 * np.sin(0.7 * ph + 1.0)
        a.ab_l = a.ab_r = 0.35 + 0.25 * np.sin(0.5 * ph)
        a.elb_l = a.elb_r = 1.0 + 0.5 * np.sin(ph + 0.5)
        a.pos = (300 * np.sin(0.2 * t + action), 250 * np.cos(0.15 * t), stand)
        a.heading = 0.8 * np.sin(0.4 * t) + 0.6 * action
    return a


def pose_world(t: float, action: int, subject: int) -> np.ndarray:
    """(17, 3) world mm joints of the figure at time ``t`` seconds (Human3.6M joint order)."""
    k = 0.94 + 0.03 * (subject % 4)
    a = angles(t, action, subject)
    lean = _rot_y(a.lean)  # the upper body pitches about the pelvis
    j = {"Pelvis": np.zeros(3)}
    for name, v in (("Torso", (0, 0, 230.0)), ("Neck", (10, 0, 480.0)), ("Nose", (80, 0, 590.0)),
                    ("Head", (30, 0, 700.0))):
        j[name] = lean @ (np.array(v) * k)
    for side, sgn in (("L", 1), ("R", -1)):
        hip, knee = getattr(a, f"hip_{side.lower()}"), getattr(a, f"knee_{side.lower()}")
        sh, ab, elb, fab = (getattr(a, f"{n}_{side.lower()}") for n in ("sh", "ab", "elb", "fab"))
        fab = ab if fab is None else fab
        j[f"{side}_Hip"] = np.array([0, sgn * 130.0, 0]) * k
        j[f"{side}_Knee"] = j[f"{side}_Hip"] + _limb(450 * k, hip)
        j[f"{side}_Ankle"] = j[f"{side}_Knee"] + _limb(440 * k, hip - knee)
        j[f"{side}_Shoulder"] = lean @ (np.array([0, sgn * 170.0, 450]) * k)
        j[f"{side}_Elbow"] = j[f"{side}_Shoulder"] + lean @ _limb(280 * k, sh, sgn * ab)
        j[f"{side}_Wrist"] = j[f"{side}_Elbow"] + lean @ _limb(250 * k, sh + elb, sgn * fab)
    body = np.stack([j[n] for n in JOINT_NAMES])  # (17, 3) body frame
    return body @ _rot_z(a.heading).T + np.asarray(a.pos)


def dog_world(t: float, subject: int) -> np.ndarray:
    """(2, 3) world mm centre of a dog's body and head, walking ahead of the WalkDog figure."""
    walker = pose_world(t, WALKDOG, subject)
    a = angles(t, WALKDOG, subject)
    fwd = np.array([np.cos(a.heading), np.sin(a.heading), 0.0])
    left = np.array([-fwd[1], fwd[0], 0.0])
    body = walker[0] * np.array([1, 1, 0]) + 900 * fwd - 250 * left + np.array([0, 0, 300.0])
    body += 60 * np.sin(2 * np.pi * t / 0.7) * left  # the dog weaves
    return np.stack([body, body + 380 * fwd + np.array([0, 0, 120.0])])
