"""SYNTHETIC scenes for ``synthetic_h36m``: cameras (fixed or moving), backgrounds, and drawing.

Two settings, matching PASS Table 2's column groups:

* ``indoor``: a plain room (one wall colour, a plain floor, faint shading) seen by a **fixed**
  camera, as Human3.6M's lab;
* ``outdoor``: a cluttered street-park (buildings with windows, trees, poles, parked cars, a paved
  path through grass, sky) seen by a **moving** camera that translates (a lateral dolly plus a
  little hand-held shake) and pans (and tilts) to keep the walker in view.

Backgrounds are ray-cast, so a moving camera shows real parallax: each pixel's ray from the camera
centre hits the ground plane z = 0 (floor / grass texture, tiled in mm) or a cylinder of radius
``WALL_MM`` around the capture area (walls / street texture, by azimuth and height) or the sky.
Textures are generated from a seed; nothing is downloaded.

Cameras are pinhole cameras in the loader's convention (X_cam = R X_world + t, f, c in px; image y
points down); a camera looks at a target with world Z up and no roll.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SETTINGS = ("indoor", "outdoor")
WALL_MM = {"indoor": 8000.0, "outdoor": 14000.0}  # radius of the wall cylinder around the capture centre
WALL_H_MM = {"indoor": 3200.0, "outdoor": 9000.0}
PANO_W, PANO_H = 2048, 640  # wall texture: full circle x wall height
GROUND_PX, GROUND_MM = 1024, 8000.0  # ground texture tile: GROUND_PX px for GROUND_MM mm (tiled)
_LIMB_COLOURS = [(230, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30), (200, 40, 200), (30, 200, 200)]


@dataclass(frozen=True)
class Cam:
    """One camera pose: R (3, 3) world-to-camera, t (3,) mm, f (2,) px, c (2,) px."""

    R: np.ndarray
    t: np.ndarray
    f: np.ndarray
    c: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        return -self.R.T @ self.t

    def as_json(self) -> dict[str, list]:
        return {"R": self.R.round(9).tolist(), "t": self.t.round(6).tolist(), "f": self.f.tolist(),
                "c": self.c.tolist()}


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation of a camera at ``centre`` looking at ``target`` (Z up, no roll)."""
    z = target - centre
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image y points down
    return np.stack([x, y, z])


def intrinsics(cam: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """f (2,) and c (2,) px of camera ``cam`` (1..4) for a square image of ``size`` px."""
    f = 1.15 * size
    return np.array([f, f * 1.004]), np.array([size / 2 + 3.3 - cam, size / 2 - 2.1 + cam])


def fixed_camera(cam: int, size: int) -> Cam:
    """Static camera ``cam`` (1..4) on a 5.5 m circle around the capture centre, looking at its middle."""
    az = np.deg2rad(30.0 + 90.0 * (cam - 1))
    centre = np.array([5500.0 * np.cos(az), 5500.0 * np.sin(az), 1500.0 + 120.0 * cam])
    r = look_at(centre, np.array([0.0, 0.0, 900.0]))
    f, c = intrinsics(cam, size)
    return Cam(r, -r @ centre, f, c)


def moving_cameras(cam: int, size: int, pelvis: np.ndarray, times: np.ndarray, seed: int) -> list[Cam]:
    """Per-frame cameras of a moving camera ``cam`` following a subject.

    The centre starts at the fixed camera's place, dollies sideways (up to 1.2 m, along the
    camera's initial x axis) and forward / back (0.4 m), with a hand-held shake (up to 25 mm); the
    view pans and tilts to a smoothed aim point that follows the pelvis (so the figure stays
    roughly central and the background slides).

    Args:
        cam: 1..4.  size: image side px.  pelvis: (F, 3) world mm per frame.  times: (F,) s.
        seed: jitter seed.
    """
    base = fixed_camera(cam, size)
    rng = np.random.default_rng(seed)
    c0, x0 = base.centre, base.R[0]
    fwd0 = np.array([base.R[2, 0], base.R[2, 1], 0.0])
    fwd0 /= np.linalg.norm(fwd0)
    ph = rng.uniform(0, 2 * np.pi, 8)
    out = []
    aim = pelvis[0] + np.array([0.0, 0.0, 100.0])
    for n, t in enumerate(times):
        lateral = 600.0 * np.sin(0.45 * t + ph[0]) - 600.0 * np.sin(ph[0])
        depth = 200.0 * np.sin(0.3 * t + ph[1]) - 200.0 * np.sin(ph[1])
        shake = 25.0 * np.array([np.sin(7.1 * t + ph[2]) * np.sin(1.3 * t + ph[3]),
                                 np.sin(6.3 * t + ph[4]), np.sin(8.9 * t + ph[5]) * np.sin(0.9 * t + ph[6])])
        centre = c0 + lateral * x0 + depth * fwd0 + shake
        aim = 0.85 * aim + 0.15 * (pelvis[n] + np.array([0.0, 0.0, 100.0]))  # the operator lags a little
        r = look_at(centre, aim)
        out.append(Cam(r, -r @ centre, base.f, base.c))
    return out


# ---------------------------------------------------------------------------------------------- textures


def _noise(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    import cv2

    small = rng.normal(0.0, amp, (max(2, h // cell), max(2, w // cell)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@lru_cache(maxsize=8)
def textures(setting: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(wall (PANO_H, PANO_W, 3), ground (GROUND_PX, GROUND_PX, 3)) uint8 BGR textures of a setting."""
    import cv2

    rng = np.random.default_rng([seed, SETTINGS.index(setting)])
    if setting == "indoor":  # plain: one wall colour with faint shading, a plain floor, a skirting line
        wall = np.empty((PANO_H, PANO_W, 3))
        wall[:] = (178.0, 186.0, 192.0)  # BGR light warm grey
        wall += _noise(rng, PANO_H, PANO_W, 256, 4.0)[..., None]
        wall[-12:] = (120.0, 125.0, 130.0)
        floor = np.empty((GROUND_PX, GROUND_PX, 3))
        floor[:] = (115.0, 128.0, 140.0)
        floor += _noise(rng, GROUND_PX, GROUND_PX, 128, 3.0)[..., None]
        return np.clip(wall, 0, 255).astype(np.uint8), np.clip(floor, 0, 255).astype(np.uint8)
    if setting != "outdoor":
        raise ValueError(f"unknown scene setting {setting!r} (known: {', '.join(SETTINGS)})")
    # Wall cylinder: a street of buildings with windows, trees, poles and parked cars.
    wall = np.zeros((PANO_H, PANO_W, 3), np.uint8)
    wall[:] = (235, 206, 160)  # sky-blue gaps between buildings (BGR)
    x = 0
    while x < PANO_W:
        bw, bh = int(rng.integers(80, 260)), int(rng.integers(220, PANO_H))
        colour = tuple(int(v) for v in rng.choice([(70, 90, 150), (120, 120, 125), (90, 140, 190), (60, 70, 90),
                                                   (170, 175, 180), (80, 110, 140)]) + rng.integers(-15, 15, 3))
        cv2.rectangle(wall, (x, PANO_H - bh), (x + bw, PANO_H), colour, -1)
        win = tuple(int(v) for v in rng.choice([(60, 50, 40), (200, 190, 140), (90, 80, 70)]))
        for wy in range(PANO_H - bh + 20, PANO_H - 60, 40):
            for wx in range(x + 12, x + bw - 20, 30):
                cv2.rectangle(wall, (wx, wy), (wx + 14, wy + 22), win, -1)
        x += bw + int(rng.integers(0, 40))
    for _ in range(40):  # trees: trunk + crown
        tx, th = int(rng.integers(0, PANO_W)), int(rng.integers(120, 300))
        cv2.rectangle(wall, (tx - 6, PANO_H - th // 2), (tx + 6, PANO_H), (30, 60, 90), -1)
        crown = tuple(int(v) for v in (rng.integers(20, 60), rng.integers(100, 170), rng.integers(30, 80)))
        cv2.ellipse(wall, (tx, PANO_H - th // 2), (int(th * 0.3), int(th * 0.35)), 0, 0, 360, crown, -1)
    for _ in range(25):  # poles / signs
        px = int(rng.integers(0, PANO_W))
        cv2.line(wall, (px, PANO_H), (px, PANO_H - int(rng.integers(150, 320))), (50, 50, 55), 4)
    for _ in range(30):  # parked cars
        cx, cw = int(rng.integers(0, PANO_W)), int(rng.integers(60, 110))
        colour = tuple(int(v) for v in rng.integers(20, 230, 3))
        cv2.rectangle(wall, (cx, PANO_H - 55), (cx + cw, PANO_H - 8), colour, -1)
        cv2.rectangle(wall, (cx + 12, PANO_H - 80), (cx + cw - 14, PANO_H - 50), colour, -1)
        for wx in (cx + 14, cx + cw - 14):
            cv2.circle(wall, (wx, PANO_H - 8), 9, (20, 20, 20), -1)
    wall = np.clip(wall + _noise(rng, PANO_H, PANO_W, 8, 10.0)[..., None] + rng.normal(0, 6, wall.shape), 0, 255)
    # Ground: grass with a paved path, stones and leaves.
    g = np.empty((GROUND_PX, GROUND_PX, 3))
    g[:] = (50.0, 130.0, 80.0)
    g += _noise(rng, GROUND_PX, GROUND_PX, 16, 18.0)[..., None] * np.array([0.5, 1.0, 0.7])
    yy, xx = np.mgrid[:GROUND_PX, :GROUND_PX]
    path = np.abs((xx - yy * 0.35) % GROUND_PX - GROUND_PX / 2) < 90
    g[path] = (150.0, 155.0, 160.0)
    g[path & (((xx // 40) + (yy // 40)) % 2 == 0)] -= 18.0  # paving slabs
    for _ in range(600):
        cv2.circle(g, (int(rng.integers(0, GROUND_PX)), int(rng.integers(0, GROUND_PX))), int(rng.integers(2, 6)),
                   tuple(float(v) for v in rng.integers(30, 200, 3)), -1)
    g = np.clip(g + rng.normal(0, 8, g.shape), 0, 255)
    return wall.astype(np.uint8), g.astype(np.uint8)


@lru_cache(maxsize=16)
def _rays(size: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(size*size, 3) float32 camera-frame ray directions (x, y, 1) of the pixel centres."""
    v, u = np.mgrid[:size, :size].astype(np.float32)
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3)


def render_background(setting: str, cam: Cam, size: int, seed: int) -> np.ndarray:
    """(size, size, 3) uint8 BGR background seen by ``cam``: ground plane, wall cylinder, sky."""
    import cv2

    wall, ground = textures(setting, seed)
    radius, height = WALL_MM[setting], WALL_H_MM[setting]
    d = _rays(size, *(float(v) for v in (*cam.f, *cam.c))) @ cam.R.astype(np.float32)  # (P, 3) world = R^T d_cam
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    o = cam.centre.astype(np.float32)
    # Wall cylinder |o_xy + s d_xy| = radius (the camera is inside it: the positive root).
    a = dx * dx + dy * dy + 1e-12
    b = 2 * (o[0] * dx + o[1] * dy)
    s_wall = (-b + np.sqrt(np.maximum(b * b - 4 * a * (o[0] ** 2 + o[1] ** 2 - radius**2), 0.0))) / (2 * a)
    # Ground plane z = 0 where the ray goes down and meets it before the wall.
    s_ground = np.where(dz < -1e-6, -o[2] / np.minimum(dz, -1e-6), np.inf).astype(np.float32)
    on_ground = s_ground < s_wall
    hz = o[2] + s_wall * dz
    on_wall = ~on_ground & (hz < height)
    sg = np.where(on_ground, s_ground, 0.0)
    scale = GROUND_PX / GROUND_MM
    gx = ((o[0] + sg * dx) * scale % GROUND_PX).reshape(size, size)
    gy = ((o[1] + sg * dy) * scale % GROUND_PX).reshape(size, size)
    wx = (np.arctan2(o[1] + s_wall * dy, o[0] + s_wall * dx) * (PANO_W / (2 * np.pi)) % PANO_W).reshape(size, size)
    wy = ((1.0 - np.clip(hz, 0, height) / height) * (PANO_H - 1)).reshape(size, size)
    img = cv2.remap(wall, wx.astype(np.float32), wy.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP).reshape(-1, 3)
    img_g = cv2.remap(ground, gx.astype(np.float32), gy.astype(np.float32), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_WRAP).reshape(-1, 3)
    img[on_ground] = img_g[on_ground]
    sky = ~on_ground & ~on_wall
    if setting == "indoor":
        img[sky] = (200, 205, 208)  # a plain ceiling
    else:  # BGR gradient: pale at the horizon, deeper blue upwards
        elev = np.clip(dz[sky] / np.sqrt(a[sky] + dz[sky] ** 2), 0, 1)[:, None]
        img[sky] = (np.array([245.0, 225.0, 200.0]) * (1 - elev) + np.array([225.0, 160.0, 95.0]) * elev).astype(np.uint8)
    return img.reshape(size, size, 3)


# ---------------------------------------------------------------------------------------------- figure


def draw_figure(img: np.ndarray, uv: np.ndarray, depth: np.ndarray, f: float, skeleton, head: int,
                dog: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Draw the stick figure (thick limbs, far first, thickness ~ 1/depth, a head disc) in place.

    Args:
        img: (S, S, 3) uint8 BGR, modified.  uv: (17, 2) px.  depth: (17,) camera Z mm.  f: focal px.
        skeleton: limb pairs.  head: index of the Head joint.
        dog: optional ((2, 2) px, (2,) mm) body / head centres of the WalkDog dog.
    """
    import cv2

    shift = 4  # sub-pixel drawing: coordinates in 1/16 px
    pt = lambda p: (int(round(p[0] * 16)), int(round(p[1] * 16)))  # noqa: E731

    def draw_dog() -> None:
        (b, h), (zb, zh) = dog
        cv2.ellipse(img, pt(b), (int(round(f * 300.0 / zb * 16)), int(round(f * 150.0 / zb * 16))), 0, 0, 360,
                    (40, 90, 150), -1, cv2.LINE_AA, shift)
        cv2.circle(img, pt(h), int(round(f * 110.0 / zh * 16)), (30, 70, 120), -1, cv2.LINE_AA, shift)

    if dog is not None and dog[1].mean() > depth.mean():
        draw_dog()
    order = sorted(range(len(skeleton)), key=lambda k: -depth[list(skeleton[k])].mean())  # far limbs first
    for k in order:
        i, j = skeleton[k]
        thick = max(2, int(round(f * 70.0 / depth[[i, j]].mean())))
        colour = _LIMB_COLOURS[k % len(_LIMB_COLOURS)]
        cv2.line(img, pt(uv[i]), pt(uv[j]), colour[::-1], thick, cv2.LINE_AA, shift)
    cv2.circle(img, pt(uv[head]), int(round(f * 90.0 / depth[head] * 16)), (40, 160, 250)[::-1], -1, cv2.LINE_AA,
               shift)
    if dog is not None and dog[1].mean() <= depth.mean():
        draw_dog()
    return img
