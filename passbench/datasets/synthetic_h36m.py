"""SYNTHETIC Human3.6M-layout data where PASS Table 2's column conditions hold.

Human3.6M cannot be redistributed, and all of it is indoors with four fixed cameras; PASS Table 2
groups its columns as "indoor, fixed camera" (Talking, Eating, Greeting, Phoning) and "outdoor,
moving camera" (Photo, Walk, WalkDog). This generator makes data where that grouping is true:

=====================  ====================================================  ===================
action (Table 2 col)   scene                                                 camera
=====================  ====================================================  ===================
Discussion ("Talking") indoor: plain wall and floor (``synthetic_scene``)    fixed
Eating, Greeting,      indoor                                                fixed
Phoning
Photo, Walking,        outdoor: buildings, trees, cars, grass, path, sky     moving: pans and
WalkDog                                                                      translates
other actions          indoor                                                fixed
=====================  ====================================================  ===================

with each action's own motion (``synthetic_motion``). It is **synthetic** and labelled so
everywhere: a ``Human36M/SYNTHETIC`` marker file, ``info.synthetic = true`` in every ``_data.json``
(with ``info.settings``: each action's scene and camera), and ``Human36M(...).synthetic`` /
``.summary()["name"] == "synthetic_h36m"``. No number measured on it is a Human3.6M number.

Layout: exactly the 3DMPPE layout read by :mod:`passbench.datasets.h36m` under ``<root>/Human36M``
(per subject ``annotations/Human36M_subject{s}_{data,camera,joint_3d}.json``;
``images/<folder>/<folder>_%06d.jpg``), plus one passbench extension for moving cameras: an image
entry may carry ``"camera": {R, t, f, c}``, that frame's camera, which overrides the subject's
``camera.json`` entry (real Human3.6M has no such field and loads as before). ``camera.json`` holds
the fixed cameras. The 2D positions used for drawing come from ``cv2.projectPoints`` (an
independent implementation of the projection) and are returned so tests can check the loader.

Size: ``generate`` writes ``len(subjects) x len(actions) x len(subactions) x len(cams) x frames``
JPEG images of ``size`` x ``size`` px. :data:`PRESETS` names the standard sizes and
:func:`ensure` generates a preset once into a cache folder (default ``<repo>/.cache/synthetic_h36m``,
git-ignored), atomically; ``python -m passbench.datasets.synthetic_h36m [preset]`` prints where and
how long it took. Deterministic: the same arguments give the same annotations and images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from passbench.datasets import synthetic_scene as S
from passbench.datasets.h36m import (ACTION_NAMES, CAMERA_FIELD, JOINT_NAMES, PAPER_TABLE2, SKELETON, folder_name,
                                     image_name)
from passbench.datasets.synthetic_motion import WALKDOG, dog_world, pose_world

FPS = 50.0  # Human3.6M video rate
GENERATOR_VERSION = 2  # bump when the output of generate() changes for the same arguments
MARKER = "SYNTHETIC"
OUTDOOR_MOVING = frozenset(p.action_idx for p in PAPER_TABLE2 if "moving" in p.paper_setting)  # Photo, Walking, WalkDog
TABLE2_ACTIONS = tuple(p.action_idx for p in PAPER_TABLE2)  # 3, 4, 5, 6, 12, 14, 15
SETTING_TEXT = {"indoor": ("indoor, plain background", "fixed"),
                "outdoor": ("outdoor, cluttered background", "moving (pans and translates)")}

# name -> generate() calls (keyword arguments) filling one root. "table2": PASS Table 2's seven actions on
# the MHP/3DMPPE protocol-2 split: training subjects 1, 5, 6, 7, 8 (one subaction, cameras 1-2) and test
# subjects 9, 11 (two subactions, cameras 1-2: 4 videos per action and subject). 130 frames per video =
# 26 training frames (stride 5) or 3 scored test frames (stride 64) per video: 24 test frames per action.
# Images: 5 x 7 x 1 x 2 x 130 + 2 x 7 x 2 x 2 x 130 = 9,100 + 7,280 = 16,380 (256 x 256 JPEG).
# "tiny" (tests, demos): 2 x 2 x 1 x 1 x 8 = 32 images of 128 x 128.
PRESETS: dict[str, tuple[dict[str, Any], ...]] = {
    "table2": (dict(subjects=(1, 5, 6, 7, 8), actions=TABLE2_ACTIONS, subactions=(1,), frames=130, cams=(1, 2)),
               dict(subjects=(9, 11), actions=TABLE2_ACTIONS, subactions=(1, 2), frames=130, cams=(1, 2))),
    "tiny": (dict(subjects=(1, 9), actions=(3, 14), subactions=(1,), frames=8, cams=(1,), size=128),),
}


@dataclass(frozen=True)
class SyntheticH36M:
    """What :func:`generate` wrote.

    Attributes:
        root: the data root (pass it as ``data_root`` to ``Human36M``).
        drawn_2d: image folder -> (F, 17, 2) px positions the figure was drawn at (cv2.projectPoints).
        seconds: wall time of the generation.
        images: number of images written.
    """

    root: Path
    drawn_2d: dict[str, np.ndarray]
    seconds: float
    images: int = 0


def setting_of(action: int) -> str:
    """``"outdoor"`` (moving camera) for Photo, Walking, WalkDog; ``"indoor"`` (fixed) otherwise."""
    return "outdoor" if action in OUTDOOR_MOVING else "indoor"


def camera(cam: int, size: int) -> dict[str, list]:
    """The fixed camera ``cam`` (1..4) as stored in ``camera.json``: R (3, 3), t (3,) mm, f, c px."""
    return S.fixed_camera(cam, size).as_json()


def video_cameras(subject: int, action: int, subaction: int, cam: int, world: np.ndarray, size: int,
                  seed: int) -> list[S.Cam]:
    """The F per-frame cameras of one video (all equal for a fixed camera)."""
    if setting_of(action) == "indoor":
        return [S.fixed_camera(cam, size)] * len(world)
    times = np.arange(len(world)) / FPS
    return S.moving_cameras(cam, size, world[:, 0], times, seed=_seed(seed, subject, action, subaction, cam))


def _seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


def _bbox(uv: np.ndarray) -> list[float]:
    """Projected-joint box x1.2, as upstream ``h36m2coco.get_bbox`` defines it (w = xmax - xmin - 1)."""
    (x0, y0), (x1, y1) = uv.min(0), uv.max(0)
    w, h = x1 - x0 - 1, y1 - y0 - 1
    return [(x0 + x1) / 2 - w / 2 * 1.2, (y0 + y1) / 2 - h / 2 * 1.2, w * 1.2, h * 1.2]


def _project(cam: S.Cam, pts: np.ndarray) -> np.ndarray:
    """(N, 3) world mm -> (N, 2) px with ``cv2.projectPoints`` (not the loader's formula)."""
    import cv2

    k = np.array([[cam.f[0], 0, cam.c[0]], [0, cam.f[1], cam.c[1]], [0, 0, 1.0]])
    rvec, _ = cv2.Rodrigues(cam.R)
    uv, _ = cv2.projectPoints(np.ascontiguousarray(pts, dtype=np.float64), rvec, cam.t, k, None)
    return uv.reshape(-1, 2)


def _write_video(base: Path, s: int, a: int, sa: int, c: int, frames: int, size: int, seed: int, quality: int,
                 ids: list[int], images: list, annots: list) -> tuple[str, np.ndarray, np.ndarray]:
    """Render and write one video; append its image / annotation entries. Returns (folder, world, uv)."""
    import cv2

    t0 = 3.0 * (sa - 1)  # subaction 2 is a later stretch of the same motion
    world = np.stack([pose_world(t0 + n / FPS, a, s) for n in range(frames)])  # (F, 17, 3)
    cams = video_cameras(s, a, sa, c, world, size, seed)
    setting, moving = setting_of(a), setting_of(a) == "outdoor"
    folder = folder_name(s, a, sa, c)
    (base / "images" / folder).mkdir(parents=True, exist_ok=True)
    bg = None if moving else S.render_background(setting, cams[0], size, seed)
    uvs = np.empty((frames, 17, 2))
    for n in range(frames):
        cam = cams[n]
        uv = uvs[n] = _project(cam, world[n])
        depth = world[n] @ cam.R.T[:, 2] + cam.t[2]  # (17,) camera Z mm
        img = S.render_background(setting, cam, size, seed) if moving else bg.copy()
        dog = None
        if a == WALKDOG:
            dw = dog_world(t0 + n / FPS, s)
            dog = (_project(cam, dw), dw @ cam.R.T[:, 2] + cam.t[2])
        S.draw_figure(img, uv, depth, float(cam.f[0]), SKELETON, JOINT_NAMES.index("Head"), dog)
        name = f"{folder}/{image_name(folder, n)}"
        cv2.imwrite(str(base / "images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        vis = (uv[:, 0] >= 0) & (uv[:, 0] < size) & (uv[:, 1] >= 0) & (uv[:, 1] < size)
        entry = {"id": ids[0], "file_name": name, "width": size, "height": size, "subject": s,
                 "action_name": ACTION_NAMES[a - 2], "action_idx": a, "subaction_idx": sa, "cam_idx": c,
                 "frame_idx": n}
        if moving:
            entry[CAMERA_FIELD] = cam.as_json()
        images.append(entry)
        annots.append({"id": ids[0], "image_id": ids[0], "keypoints_vis": vis.tolist(), "bbox": _bbox(uv)})
        ids[0] += 1
    return folder, world, uvs


def _write_subject(base: Path, s: int, actions: Sequence[int], subactions: Sequence[int], frames: int,
                   cams: Sequence[int], size: int, seed: int, quality: int) -> tuple[dict[str, np.ndarray], int]:
    """Render every video of subject ``s`` and write its three annotation files."""
    drawn: dict[str, np.ndarray] = {}
    ids = [s * 10_000_000]  # image / annotation ids unique across subjects (and parallel workers)
    images: list[dict] = []
    annots: list[dict] = []
    joints3d: dict[str, dict] = {}
    for a in actions:
        for sa in subactions:
            for c in cams:
                folder, world, uv = _write_video(base, s, a, sa, c, frames, size, seed, quality, ids, images, annots)
                drawn[folder] = uv
            joints3d.setdefault(str(a), {})[str(sa)] = {str(n): world[n].round(4).tolist() for n in range(frames)}
    settings = {str(a): {"action": ACTION_NAMES[a - 2], "background": SETTING_TEXT[setting_of(a)][0],
                         "camera": SETTING_TEXT[setting_of(a)][1]} for a in actions}
    info = {"synthetic": True, "description": "SYNTHETIC stick figure, not Human3.6M",
            "generator": "passbench.datasets.synthetic_h36m", "version": GENERATOR_VERSION, "seed": seed,
            "size": size, "fps": FPS, "settings": settings, "camera_field": CAMERA_FIELD}
    out = base / "annotations"
    (out / f"Human36M_subject{s}_data.json").write_text(json.dumps({"info": info, "images": images,
                                                                    "annotations": annots}))
    (out / f"Human36M_subject{s}_camera.json").write_text(json.dumps({str(c): camera(c, size) for c in cams}))
    (out / f"Human36M_subject{s}_joint_3d.json").write_text(json.dumps(joints3d))
    return drawn, len(images)


def generate(root: str | Path, subjects: Sequence[int] = (9, 11), actions: Sequence[int] = (3, 14),
             subactions: Sequence[int] = (1,), frames: int = 130, cams: Sequence[int] = (1, 2), size: int = 256,
             seed: int = 0, quality: int = 90, workers: int = 1) -> SyntheticH36M:
    """Write a SYNTHETIC dataset in the 3DMPPE Human3.6M layout under ``<root>/Human36M``.

    Subjects are written independently (one set of annotation files each), so several calls with
    different subjects (and cameras, subactions, frames) can fill one root.

    Args:
        root: data root to create (use it as ``data_root``); existing files are overwritten.
        subjects: subject ids (9 and 11 are the MHP "Protocol 2" test subjects).
        actions: action indices 2..16 (default Discussion = PASS "Talking", indoor fixed, and
            Walking, outdoor moving).
        subactions: subaction ids.  frames: frames per video (130 gives 3 scored frames at stride 64).
        cams: camera ids 1..4.  size: square image side, px.  seed: texture and camera-shake seed.
        quality: JPEG quality.  workers: processes, one subject each at a time (same output for any).

    Returns:
        :class:`SyntheticH36M` with the 2D positions drawn per image folder.
    """
    t_start = time.perf_counter()
    base = Path(root) / "Human36M"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / "images").mkdir(parents=True, exist_ok=True)
    (base / MARKER).write_text("SYNTHETIC data from passbench.datasets.synthetic_h36m: not Human3.6M.\n")
    args = [(base, s, tuple(actions), tuple(subactions), frames, tuple(cams), size, seed, quality) for s in subjects]
    if workers > 1 and len(subjects) > 1:
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        with ProcessPoolExecutor(min(workers, len(subjects))) as pool:
            parts = list(pool.map(_write_subject, *zip(*args)))
    else:
        parts = [_write_subject(*a) for a in args]
    drawn = {k: v for d, _ in parts for k, v in d.items()}
    return SyntheticH36M(Path(root), drawn, time.perf_counter() - t_start, sum(n for _, n in parts))


def cache_dir() -> Path:
    """Default cache folder: ``$PASSBENCH_CACHE/synthetic_h36m`` or ``<repo>/.cache/synthetic_h36m``."""
    from passbench.paths import REPO_ROOT  # noqa: PLC0415

    env = os.environ.get("PASSBENCH_CACHE")
    return (Path(env) if env else REPO_ROOT / ".cache") / "synthetic_h36m"


def ensure(preset: str = "table2", cache: str | Path | None = None, workers: int | None = None) -> Path:
    """Generate a preset once into the cache and return its data root (``<cache>/<preset>-<hash>``).

    The folder name hashes the preset's arguments and :data:`GENERATOR_VERSION`, so a changed preset
    or generator writes a new folder. Generation goes to a temporary folder renamed into place when
    complete: an interrupted run leaves no half-written dataset behind.

    Args:
        preset: a :data:`PRESETS` name.  cache: cache folder (default :func:`cache_dir`).
        workers: processes (default: the CPU count, at most 4); the output does not depend on it.
    """
    if preset not in PRESETS:
        raise KeyError(f"unknown synthetic_h36m preset {preset!r} (known: {', '.join(PRESETS)})")
    calls = PRESETS[preset]
    spec = json.dumps([{k: list(v) if isinstance(v, tuple) else v for k, v in sorted(c.items())} for c in calls]
                      + [GENERATOR_VERSION])
    key = hashlib.sha256(spec.encode()).hexdigest()[:10]
    root = Path(cache) if cache is not None else cache_dir()
    dst = root / f"{preset}-{key}"
    if (dst / "Human36M" / MARKER).is_file():
        return dst
    tmp = root / f".tmp-{preset}-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    n = workers if workers is not None else min(4, os.cpu_count() or 1)
    for kw in calls:
        generate(tmp, workers=n, **kw)
    try:
        tmp.rename(dst)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dst / "Human36M" / MARKER).is_file():
            raise
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m passbench.datasets.synthetic_h36m [preset]``: generate into the cache, print the root."""
    args = list(sys.argv[1:] if argv is None else argv)
    preset = args[0] if args else "table2"
    t0 = time.perf_counter()
    root = ensure(preset)
    n = sum(1 for _ in (root / "Human36M" / "images").rglob("*.jpg"))
    print(f"synthetic_h36m preset {preset!r}: {n} images under {root} ({time.perf_counter() - t0:.1f} s; "
          "0 s means it was cached)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
