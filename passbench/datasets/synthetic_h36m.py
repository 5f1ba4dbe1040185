"""SYNTHETIC Human3.6M-layout data: a moving stick figure seen by calibrated pinhole cameras.

Human3.6M cannot be redistributed, so tests, demos and CI use this instead. It is **synthetic** and
labelled so everywhere: a ``Human36M/SYNTHETIC`` marker file, ``info.synthetic = true`` in every
``_data.json``, and ``Human36M(...).synthetic`` / ``.summary()["name"] == "synthetic_h36m"``. No number
measured on it is a Human3.6M number.

What it writes (exactly the 3DMPPE layout of :mod:`passbench.datasets.h36m`) under
``<root>/Human36M``: per subject ``annotations/Human36M_subject{s}_{data,camera,joint_3d}.json`` and
``images/<folder>/<folder>_%06d.jpg`` (JPEG). The figure has the 17 Human3.6M joints with human limb
lengths (mm), a walking gait with arm swing and global translation for the walking actions
(Walking, WalkDog, WalkTogether) and a standing, gesturing, slowly turning pose for the others. It
is drawn as thick limbs (thickness falls with depth) plus a head disc over a static textured
background (checkerboard + smooth noise, fixed per camera, like Human3.6M's fixed cameras).

Cameras are real pinhole cameras: world Z up (mm), each camera on a circle around the capture
area looking at its centre, stored as the loader expects (X_cam = R X_world + t, f, c in px). The
2D positions used for drawing come from ``cv2.projectPoints`` (an independent implementation of
the projection), and are returned so tests can check the loader's projection against them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from passbench.datasets.h36m import ACTION_NAMES, JOINT_NAMES, SKELETON, folder_name, image_name

WALKING_ACTIONS = frozenset({14, 15, 16})  # Walking, WalkDog, WalkTogether
FPS = 50.0  # Human3.6M video rate
MARKER = "SYNTHETIC"
_LIMB_COLOURS = [(230, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30), (200, 40, 200), (30, 200, 200)]


@dataclass(frozen=True)
class SyntheticH36M:
    """What :func:`generate` wrote.

    Attributes:
        root: the data root (pass it as ``data_root`` to ``Human36M``).
        drawn_2d: image folder -> (F, 17, 2) px positions the figure was drawn at (cv2.projectPoints).
        seconds: wall time of the generation.
    """

    root: Path
    drawn_2d: dict[str, np.ndarray]
    seconds: float


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _limb(length: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Body-frame vector (x forward, y left, z up) of a limb hanging down, swung forward by ``pitch``
    and sideways (outwards for positive ``roll`` on the left side) by ``roll``, radians."""
    return length * np.array([np.sin(pitch) * np.cos(roll), np.sin(roll), -np.cos(pitch) * np.cos(roll)])


def pose_world(t: float, action: int, subject: int) -> np.ndarray:
    """(17, 3) world mm joints of the figure at time ``t`` seconds (Human3.6M joint order)."""
    k = 0.94 + 0.03 * (subject % 4)  # per-subject body scale
    walk = action in WALKING_ACTIONS
    ph = 2 * np.pi * t / 1.1 + 0.7 * subject + 0.3 * action  # gait / gesture phase
    if walk:
        hip_l, hip_r = 0.45 * np.sin(ph), -0.45 * np.sin(ph)
        knee_l, knee_r = 0.6 * max(0.0, np.sin(ph + 2.2)) + 0.1, 0.6 * max(0.0, np.sin(ph + 2.2 + np.pi)) + 0.1
        sh_l, sh_r, ab, elb = -0.4 * np.sin(ph), 0.4 * np.sin(ph), 0.12, 0.35
        radius, speed = 1200.0, 1200.0  # walk on an arc around the capture centre, 1.2 m/s
        ang = speed * t / radius + 0.5 * action
        pos = np.array([radius * np.cos(ang), radius * np.sin(ang), 920.0 * k + 15 * np.cos(2 * ph)])
        heading = ang + np.pi / 2
    else:
        hip_l = hip_r = 0.05 * np.sin(0.5 * ph)
        knee_l = knee_r = 0.08
        sh_l, sh_r = 0.9 + 0.6 * np.sin(ph), 0.3 + 0.4 * np.sin(0.7 * ph + 1.0)
        ab, elb = 0.35 + 0.25 * np.sin(0.5 * ph), 1.0 + 0.5 * np.sin(ph + 0.5)
        pos = np.array([300 * np.sin(0.2 * t + action), 250 * np.cos(0.15 * t), 920.0 * k])
        heading = 0.8 * np.sin(0.4 * t) + 0.6 * action
    j = {"Pelvis": np.zeros(3), "Torso": np.array([0, 0, 230.0]) * k, "Neck": np.array([10, 0, 480.0]) * k,
         "Nose": np.array([80, 0, 590.0]) * k, "Head": np.array([30, 0, 700.0]) * k}
    for side, sgn, hip, knee, sh in (("L", 1, hip_l, knee_l, sh_l), ("R", -1, hip_r, knee_r, sh_r)):
        j[f"{side}_Hip"] = np.array([0, sgn * 130.0, 0]) * k
        j[f"{side}_Knee"] = j[f"{side}_Hip"] + _limb(450 * k, hip)
        j[f"{side}_Ankle"] = j[f"{side}_Knee"] + _limb(440 * k, hip - knee)
        j[f"{side}_Shoulder"] = np.array([0, sgn * 170.0, 450]) * k
        j[f"{side}_Elbow"] = j[f"{side}_Shoulder"] + _limb(280 * k, sh, sgn * ab)
        j[f"{side}_Wrist"] = j[f"{side}_Elbow"] + _limb(250 * k, sh + elb, sgn * ab)
    body = np.stack([j[n] for n in JOINT_NAMES])  # (17, 3) body frame
    return body @ _rot_z(heading).T + pos


def camera(cam: int, size: int) -> dict[str, list]:
    """Pinhole camera ``cam`` (1..4) as stored in ``camera.json``: R (3, 3), t (3,) mm, f, c px."""
    az = np.deg2rad(30.0 + 90.0 * (cam - 1))
    centre = np.array([5500.0 * np.cos(az), 5500.0 * np.sin(az), 1500.0 + 120.0 * cam])
    target = np.array([0.0, 0.0, 900.0])
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image y points down
    r = np.stack([x, y, z])
    f = 1.15 * size
    return {"R": r.tolist(), "t": (-r @ centre).tolist(), "f": [f, f * 1.004],
            "c": [size / 2 + 3.3 - cam, size / 2 - 2.1 + cam]}


def _background(size: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    checker = (((yy // 32) + (xx // 32)) % 2) * 40.0 + 90.0
    noise = cv2.resize(rng.normal(0, 25, (size // 16, size // 16)), (size, size), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 6, (size, size))
    grey = checker + noise + grain
    tint = np.array([1.0, 0.97, 0.92])  # muted: channel spread stays small (limbs are saturated)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def _render(bg: np.ndarray, uv: np.ndarray, depth: np.ndarray, f: float) -> np.ndarray:
    import cv2

    img = bg.copy()
    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    pt = lambda p: (int(round(p[0] * 16)), int(round(p[1] * 16)))  # noqa: E731
    order = sorted(range(len(SKELETON)), key=lambda b: -depth[list(SKELETON[b])].mean())  # far limbs first
    for b in order:
        i, k = SKELETON[b]
        thick = max(2, int(round(f * 70.0 / depth[[i, k]].mean())))
        colour = _LIMB_COLOURS[b % len(_LIMB_COLOURS)]
        cv2.line(img, pt(uv[i]), pt(uv[k]), colour[::-1], thick, cv2.LINE_AA, shift)
    head = JOINT_NAMES.index("Head")
    cv2.circle(img, pt(uv[head]), int(round(f * 90.0 / depth[head] * 16)), (40, 160, 250)[::-1], -1, cv2.LINE_AA,
               shift)
    return img


def _bbox(uv: np.ndarray) -> list[float]:
    """Projected-joint box x1.2, as upstream ``h36m2coco.get_bbox`` defines it (w = xmax - xmin - 1)."""
    (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
    w, h = x1 - x0 - 1, y1 - y0 - 1
    return [(x0 + x1) / 2 - w / 2 * 1.2, (y0 + y1) / 2 - h / 2 * 1.2, w * 1.2, h * 1.2]


def generate(root: str | Path, subjects: Sequence[int] = (9, 11), actions: Sequence[int] = (3, 14),
             subactions: Sequence[int] = (1,), frames: int = 130, cams: Sequence[int] = (1, 2), size: int = 256,
             seed: int = 0, quality: int = 90) -> SyntheticH36M:
    """Write a small SYNTHETIC dataset in the 3DMPPE Human3.6M layout under ``<root>/Human36M``.

    Args:
        root: data root to create (use it as ``data_root``); existing files are overwritten.
        subjects: subject ids (9 and 11 are the MHP "Protocol 2" test subjects).
        actions: action indices 2..16 (default Discussion = PASS "Talking", and Walking).
        subactions: subaction ids.  frames: frames per video (130 gives 3 scored frames at stride 64).
        cams: camera ids 1..4.  size: square image side, px.  seed: background texture seed.
        quality: JPEG quality.

    Returns:
        :class:`SyntheticH36M` with the 2D positions drawn per image folder.
    """
    import cv2

    t0 = time.perf_counter()
    base = Path(root) / "Human36M"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / MARKER).write_text("SYNTHETIC data from passbench.datasets.synthetic_h36m: not Human3.6M.\n")
    bgs = {c: _background(size, seed * 10 + c) for c in cams}
    drawn: dict[str, np.ndarray] = {}
    img_id = ann_id = 0
    for s in subjects:
        cam_json = {str(c): camera(c, size) for c in cams}
        images, annots, joints3d = [], [], {}
        for a in actions:
            for sa in subactions:
                world = np.stack([pose_world(n / FPS + 3.0 * (sa - 1), a, s) for n in range(frames)])  # (F, 17, 3)
                joints3d.setdefault(str(a), {})[str(sa)] = {str(n): world[n].round(4).tolist() for n in range(frames)}
                for c in cams:
                    cj = cam_json[str(c)]
                    r, t = np.array(cj["R"]), np.array(cj["t"])
                    k = np.array([[cj["f"][0], 0, cj["c"][0]], [0, cj["f"][1], cj["c"][1]], [0, 0, 1.0]])
                    rvec, _ = cv2.Rodrigues(r)
                    uv, _ = cv2.projectPoints(world.reshape(-1, 3), rvec, t, k, None)
                    uv = uv.reshape(frames, 17, 2)
                    depth = (world @ r.T + t)[..., 2]  # (F, 17) mm
                    folder = folder_name(s, a, sa, c)
                    (base / "images" / folder).mkdir(exist_ok=True)
                    drawn[folder] = uv
                    for n in range(frames):
                        name = f"{folder}/{image_name(folder, n)}"
                        img = _render(bgs[c], uv[n], depth[n], cj["f"][0])
                        cv2.imwrite(str(base / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
                        vis = (uv[n, :, 0] >= 0) & (uv[n, :, 0] < size) & (uv[n, :, 1] >= 0) & (uv[n, :, 1] < size)
                        images.append({"id": img_id, "file_name": name, "width": size, "height": size, "subject": s,
                                       "action_name": ACTION_NAMES[a - 2], "action_idx": a, "subaction_idx": sa,
                                       "cam_idx": c, "frame_idx": n})
                        annots.append({"id": ann_id, "image_id": img_id, "keypoints_vis": vis.tolist(),
                                       "bbox": _bbox(uv[n])})
                        img_id += 1
                        ann_id += 1
        info = {"synthetic": True, "description": "SYNTHETIC stick figure, not Human3.6M",
                "generator": "passbench.datasets.synthetic_h36m", "seed": seed}
        out = base / "annotations"
        (out / f"Human36M_subject{s}_data.json").write_text(json.dumps({"info": info, "images": images,
                                                                        "annotations": annots}))
        (out / f"Human36M_subject{s}_camera.json").write_text(json.dumps(cam_json))
        (out / f"Human36M_subject{s}_joint_3d.json").write_text(json.dumps(joints3d))
    return SyntheticH36M(Path(root), drawn, time.perf_counter() - t0)
