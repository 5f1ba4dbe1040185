"""Human3.6M in the 3DMPPE / MobileHumanPose annotation layout, iterated as video streams.

Layout (``<data_root>/Human36M``; REFERENCE.md 3.1; upstream ``tool/Human36M/h36m2coco.py`` and
``data/Human36M/Human36M.py`` of mks0601/3DMPPE_POSENET_RELEASE, identical in MobileHumanPose)::

    annotations/Human36M_subject{s}_data.json      COCO-style {images, annotations}
    annotations/Human36M_subject{s}_camera.json    {"<cam>": {R, t, f, c}}
    annotations/Human36M_subject{s}_joint_3d.json  {"<action>": {"<subaction>": {"<frame>": 17x3 world mm}}}
    images/s_XX_act_XX_subact_XX_ca_XX/s_XX_act_XX_subact_XX_ca_XX_%06d.jpg   (frame_idx + 1)

passbench extension (synthetic data only): an image entry may carry ``"camera": {R, t, f, c}``, the
camera of that frame, for a moving camera; it overrides ``camera.json`` for that frame. Real
Human3.6M has no such field (four static cameras) and loads exactly as upstream.

Streams are keyed (subject, action, subaction, camera) and hold *all* frames in frame order, because
temporal gates (PASS, Skip-Conv) need consecutive frames; each frame carries ``evaluate``, true on
the protocol's frames (``frame_idx % stride == 0``: 64 for the MHP/3DMPPE test split, 5 for their
train split, every frame for the VideoPose3D protocols). A model therefore runs on the whole stream
and only the flagged frames are scored.

The two incompatible "protocol" numberings are selectable by unambiguous names (:data:`PROTOCOLS`):

==========  =========  ======================  ==========  ===========================================
name        metric     train subjects          test        frames scored
==========  =========  ======================  ==========  ===========================================
mhp-p1      pa_mpjpe   S1,5,6,7,8,9            S11         every 64th (3DMPPE/MHP "Protocol 1")
mhp-p2      mpjpe      S1,5,6,7,8              S9,S11      every 64th (3DMPPE/MHP "Protocol 2")
vp3d-p1     mpjpe      S1,5,6,7,8              S9,S11      all (VideoPose3D/Martinez "Protocol #1")
vp3d-p2     p_mpjpe    S1,5,6,7,8              S9,S11      all (VideoPose3D "Protocol #2", with scale)
==========  =========  ======================  ==========  ===========================================

The ``metric`` strings are the keys of ``passbench.metrics.pose.METRICS`` (this module does not
import the metrics: ``datasets/`` and ``metrics/`` know nothing of each other; the runner wires them).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from passbench.paths import resolve_data_root

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
# Corrupt video upstream; h36m2coco.py skips it, and so do we (also if a copy of the data has it).
SKIP_FOLDERS = frozenset({"s_11_act_02_subact_02_ca_01"})
CAMERA_FIELD = "camera"  # optional per-image camera (passbench extension for moving cameras; synthetic only)


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


def folder_name(subject: int, action: int, subaction: int, camera: int) -> str:
    return "s_%02d_act_%02d_subact_%02d_ca_%02d" % (subject, action, subaction, camera)


def image_name(folder: str, frame_idx: int) -> str:
    return "%s_%06d.jpg" % (folder, frame_idx + 1)


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


# ------------------------------------------------------------------------------ geometry (3DMPPE loader)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera of the 3DMPPE json: X_cam = R X_world + t (mm); u = X/Z fx + cx, v = Y/Z fy + cy.

    The released ``camera.json`` stores ``t`` as a translation (already -R T of the MATLAB camera
    centre T), and the current upstream ``world2cam`` is ``R X + t``; an older upstream commit
    (1ad40b3) computed ``R (X - t)`` against older json files. We follow the current loader.

    Attributes:
        R: (3, 3) world-to-camera rotation.  t: (3,) mm.  f: (2,) px.  c: (2,) px.
    """

    R: np.ndarray
    t: np.ndarray
    f: np.ndarray
    c: np.ndarray

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str) -> "Camera":
        shapes = {"R": (3, 3), "t": (3,), "f": (2,), "c": (2,)}
        vals = {}
        for k, shape in shapes.items():
            if k not in d:
                raise H36MFormatError(f"{where}: missing field '{k}'")
            try:
                a = np.asarray(d[k], dtype=np.float64).reshape(shape)
            except (ValueError, TypeError):
                raise H36MFormatError(f"{where}: field '{k}' is not a {shape} array of numbers") from None
            vals[k] = a
        return cls(**vals)

    def world_to_cam(self, x_world: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 3) camera mm."""
        return np.asarray(x_world, dtype=np.float64) @ self.R.T + self.t

    def cam_to_pixel(self, x_cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera mm -> (..., 3) [u px, v px, Z mm] (upstream ``cam2pixel``, incl. its +1e-8)."""
        x = np.asarray(x_cam, dtype=np.float64)
        z = x[..., 2] + 1e-8
        return np.stack([x[..., 0] / z * self.f[0] + self.c[0], x[..., 1] / z * self.f[1] + self.c[1], x[..., 2]], -1)

    def pixel_to_cam(self, uvz: np.ndarray) -> np.ndarray:
        """(..., 3) [u px, v px, Z mm] -> (..., 3) camera mm (upstream ``pixel2cam``)."""
        p = np.asarray(uvz, dtype=np.float64)
        return np.stack([(p[..., 0] - self.c[0]) / self.f[0] * p[..., 2],
                         (p[..., 1] - self.c[1]) / self.f[1] * p[..., 2], p[..., 2]], -1)

    def project(self, x_world: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 2) pixel coordinates."""
        return self.cam_to_pixel(self.world_to_cam(x_world))[..., :2]


def add_thorax(joints: np.ndarray) -> np.ndarray:
    """(..., 17, 3) -> (..., 18, 3), appending Thorax = mean of the shoulders (upstream ``add_thorax``)."""
    j = np.asarray(joints, dtype=np.float64)
    thorax = 0.5 * (j[..., L_SHOULDER, :] + j[..., R_SHOULDER, :])
    return np.concatenate([j, thorax[..., None, :]], axis=-2)


def process_bbox(bbox: Sequence[float], width: int, height: int, input_hw: tuple[int, int] = (256, 256),
                 scale: float = 1.25) -> np.ndarray | None:
    """Upstream ``process_bbox``: clip to the image, pad to the input aspect ratio, scale x1.25.

    Args:
        bbox: [x, y, w, h] px.
        width, height: image size, px.
        input_hw: network input (H, W); aspect ratio = W / H (upstream ``cfg.input_shape``).

    Returns:
        [x, y, w, h] px (float), or None for an empty box (as upstream).
    """
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if not (w * h > 0 and x2 >= x1 and y2 >= y1):
        return None
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2.0, y1 + h / 2.0
    aspect = input_hw[1] / input_hw[0]
    if w > aspect * h:
        h = w / aspect
    elif w < aspect * h:
        w = h * aspect
    w, h = w * scale, h * scale
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h])


# ---------------------------------------------------------------------------------------------- loading


class H36MFormatError(ValueError):
    """A Human3.6M annotation file is malformed; the message names the file and the field."""


def load_json(path: Path) -> Any:
    """Read a json file; a missing file or bad json raises naming the file (and line for bad json)."""
    if not path.is_file():
        raise FileNotFoundError(f"Human3.6M: missing annotation file {path}")
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise H36MFormatError(f"{path}: malformed json at line {e.lineno} column {e.colno}: {e.msg}") from None



def _field(d: Any, name: str, where: str) -> Any:
    if not isinstance(d, dict):
        raise H36MFormatError(f"{where}: expected an object, got {type(d).__name__}")
    if name not in d:
        raise H36MFormatError(f"{where}: missing field '{name}'")
    return d[name]


# ---------------------------------------------------------------------------------------------- streams


class StreamKey(NamedTuple):
    """One video: (subject, action_idx 2..16, subaction 1..2, camera 1..4)."""

    subject: int
    action: int
    subaction: int
    camera: int

    @property
    def folder(self) -> str:
        return folder_name(*self)

    @property
    def action_name(self) -> str:
        return action_name(self.action)


@dataclass(frozen=True, eq=False)
class Frame:
    """One annotated frame, with the geometry the 3DMPPE loader derives (``Human36M.load_data``).

    Attributes:
        key: its stream; ``index``: position in the stream; ``frame_idx``: 0-based video frame.
        path: image file.  width, height: px.
        bbox: (4,) annotation box [x, y, w, h] px (projected-joint box x1.2, from the json).
        bbox_processed: (4,) ``process_bbox`` of ``bbox`` (network crop), or None if empty.
        joints_world: (17, 3) world mm.
        joints_cam: (18, 3) camera mm, Thorax appended.
        joints_img: (18, 3) [u px, v px, Z - Z_root mm] (upstream ``joint_img``).
        root_cam: (3,) Pelvis in camera mm (GT root: ``use_gt_info=True``).
        evaluate: whether the protocol scores this frame.
        camera: this frame's camera (the stream's, or the frame's own for a moving camera).
        data_json, json_index: the ``_data.json`` and ``images[json_index]`` entry it came from.
    """

    key: StreamKey
    index: int
    frame_idx: int
    image_id: int
    path: Path
    width: int
    height: int
    camera: Camera
    bbox: np.ndarray
    bbox_processed: np.ndarray | None
    joints_world: np.ndarray
    joints_cam: np.ndarray
    joints_img: np.ndarray
    root_cam: np.ndarray
    evaluate: bool
    data_json: Path | None = None
    json_index: int | None = None

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB; raises if its size differs from the json's width / height."""
        return read_image(self.path, (self.width, self.height), _where(self.data_json, self.json_index))


def _where(data_json: Path | None, index: int | None) -> str | None:
    return None if data_json is None else f"{data_json}: images[{index}]"


def read_image(path: Path, expect_wh: tuple[int, int] | None = None, where: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file.

    Args:
        path: image file.  expect_wh: (width, height) the annotation gives, checked when given.
        where: the annotation entry (``<data json>: images[i]``), for the error message.

    Raises:
        FileNotFoundError: unreadable file.  H36MFormatError: size differs from ``expect_wh``.
    """
    import cv2  # deferred: geometry and annotation work without OpenCV

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"Human3.6M: cannot read image {path}")
    if expect_wh is not None and (img.shape[1], img.shape[0]) != tuple(int(v) for v in expect_wh):
        raise H36MFormatError(f"{path}: image is {img.shape[1]}x{img.shape[0]} px but {where or 'its json'} says "
                              f"width={int(expect_wh[0])}, height={int(expect_wh[1])} (fields 'width', 'height')")
    return img[:, :, ::-1].copy()


@dataclass(frozen=True, eq=False)
class Stream:
    """All frames of one (subject, action, subaction, camera) video, sorted by ``frame_idx``.

    Attributes:
        key: the stream key.  camera: its camera.
        paths: F image paths.  frame_idx: (F,) int.  image_ids: (F,) int.  sizes: (F, 2) [w, h] px.
        bboxes: (F, 4) annotation boxes px.  joints_world: (F, 17, 3) mm.
        eval_mask: (F,) bool, the protocol's frames.
        cameras: F per-frame cameras of a moving camera (the layout's per-image ``camera`` field),
            or None for a fixed camera (``camera`` for every frame; real Human3.6M).
        data_json: the subject's ``_data.json``.  json_index: (F,) each frame's ``images[i]`` index.
    """

    key: StreamKey
    camera: Camera
    paths: tuple[Path, ...]
    frame_idx: np.ndarray
    image_ids: np.ndarray
    sizes: np.ndarray
    bboxes: np.ndarray
    joints_world: np.ndarray
    eval_mask: np.ndarray
    input_hw: tuple[int, int] = (256, 256)
    cameras: tuple[Camera, ...] | None = None
    data_json: Path | None = None
    json_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame_idx)

    @property
    def moving(self) -> bool:
        """True when the stream has per-frame cameras (a moving camera)."""
        return self.cameras is not None

    def camera_at(self, i: int) -> Camera:
        """The camera of frame ``i``."""
        return self.cameras[i] if self.cameras is not None else self.camera

    def _index(self, i: int) -> int | None:
        return None if self.json_index is None else int(self.json_index[i])

    @property
    def contiguous(self) -> bool:
        """True when frames are consecutive (frame_idx steps of 1), as temporal gating assumes."""
        return bool(np.all(np.diff(self.frame_idx) == 1))

    def joints_cam(self) -> np.ndarray:
        """(F, 18, 3) camera mm, Thorax appended."""
        if self.cameras is None:
            return add_thorax(self.camera.world_to_cam(self.joints_world))
        r = np.stack([c.R for c in self.cameras])  # (F, 3, 3)
        t = np.stack([c.t for c in self.cameras])  # (F, 3)
        return add_thorax(np.einsum("fij,fkj->fki", r, self.joints_world) + t[:, None])

    def joints_img(self) -> np.ndarray:
        """(F, 18, 3) [u px, v px, Z - Z_root mm]."""
        cam = self.joints_cam()
        if self.cameras is None:
            img = self.camera.cam_to_pixel(cam)
        else:
            img = np.stack([c.cam_to_pixel(x) for c, x in zip(self.cameras, cam)])
        img[..., 2] -= cam[:, ROOT : ROOT + 1, 2]
        return img

    def __getitem__(self, i: int) -> Frame:
        i = range(len(self))[i]
        camera = self.camera_at(i)
        cam = add_thorax(camera.world_to_cam(self.joints_world[i]))  # (18, 3)
        img = camera.cam_to_pixel(cam)
        img[:, 2] -= cam[ROOT, 2]
        w, h = (int(v) for v in self.sizes[i])
        return Frame(self.key, i, int(self.frame_idx[i]), int(self.image_ids[i]), self.paths[i], w, h,
                     camera, self.bboxes[i], process_bbox(self.bboxes[i], w, h, self.input_hw),
                     self.joints_world[i], cam, img, cam[ROOT].copy(), bool(self.eval_mask[i]), self.data_json,
                     self._index(i))

    def __iter__(self) -> Iterator[Frame]:
        return (self[i] for i in range(len(self)))

    def images(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB images in frame order (each checked against its json width / height)."""
        return (read_image(p, self.sizes[i], _where(self.data_json, self._index(i))) for i, p in enumerate(self.paths))


class Human36M:
    """Human3.6M (3DMPPE layout) for one protocol and split, as video streams.

    Args:
        data_root: folder holding ``Human36M/`` (``passbench.paths.resolve_data_root`` rules).
        protocol: a :data:`PROTOCOLS` name (or alias), e.g. ``"mhp-p2"``.
        split: ``"test"`` or ``"train"``: picks the subjects and the scored-frame stride.
        subjects, actions, subactions, cameras: optional filters (actions by index 2..16 or name).
            Every requested subject and action must be present (an error names the file otherwise).
        input_hw: network input (H, W) for ``process_bbox``.
        check_images: check that every stream's image folder and first image exist (one stat each).

    Attributes:
        root: the ``Human36M`` folder.  synthetic: True for data made by ``synthetic_h36m``.
        protocol: the :class:`Protocol`.  stride: scored-frame stride.  streams: key -> :class:`Stream`.
        settings: action name -> {"background", "camera"}: the synthetic generator's ``info.settings``,
            or for real Human3.6M its lab (indoor, 4 fixed cameras) for every loaded action.

    Raises:
        FileNotFoundError: a missing annotation file (a subject the protocol needs), image folder or image.
        H36MFormatError: a malformed file, or a requested action / subject without images (names the file).
    """

    def __init__(self, data_root: Any = None, protocol: str = PAPER_PROTOCOL, split: str = "test", *,
                 subjects: Sequence[int] | None = None, actions: Sequence[int | str] | None = None,
                 subactions: Sequence[int] | None = None, cameras: Sequence[int] | None = None,
                 input_hw: tuple[int, int] = (256, 256), check_images: bool = True) -> None:
        self.root = resolve_data_root(data_root) / "Human36M"
        if not self.root.is_dir():
            raise FileNotFoundError(f"Human3.6M: {self.root} does not exist (3DMPPE layout expected)")
        self.protocol, self.split = get_protocol(protocol), split
        self.stride = self.protocol.stride(split)
        self.subjects = tuple(subjects) if subjects is not None else self.protocol.subjects(split)
        self.input_hw = input_hw
        self.synthetic = (self.root / "SYNTHETIC").is_file()
        self._filt = (None if actions is None else {a if isinstance(a, int) else action_index(a) for a in actions},
                      None if subactions is None else set(subactions), None if cameras is None else set(cameras))
        self.streams: dict[StreamKey, Stream] = {}
        self.settings: dict[str, dict[str, str]] = {}
        for s in self.subjects:
            self._load_subject(int(s))
        if check_images:
            self._check_images()

    def _check_images(self) -> None:
        for st in self:
            folder = self.root / "images" / st.key.folder
            if not folder.is_dir():
                raise FileNotFoundError(f"Human3.6M: image folder {folder} is missing ({st.data_json} lists "
                                        f"{len(st)} images in it)")
            if not st.paths[0].is_file():
                raise FileNotFoundError(f"Human3.6M: image {st.paths[0]} is missing "
                                        f"(listed in {_where(st.data_json, st._index(0))}, field 'file_name')")

    def _load_subject(self, s: int) -> None:
        ann = self.root / "annotations"
        p_data, p_cam, p_j = (ann / f"Human36M_subject{s}_{k}.json" for k in ("data", "camera", "joint_3d"))
        data, cams, joints = load_json(p_data), load_json(p_cam), load_json(p_j)
        info = data.get("info") if isinstance(data, dict) else None
        if isinstance(info, dict) and info.get("synthetic"):
            self.synthetic = True
        declared = info.get("settings", {}) if isinstance(info, dict) and self.synthetic else {}
        images, annots = _field(data, "images", str(p_data)), _field(data, "annotations", str(p_data))
        bbox_of: dict[int, Any] = {}
        for i, a in enumerate(annots):
            where = f"{p_data}: annotations[{i}]"
            bbox_of[_field(a, "image_id", where)] = _field(a, "bbox", where)
        fa, fs, fc = self._filt
        groups: dict[StreamKey, list[tuple]] = {}
        for i, im in enumerate(images):
            where = f"{p_data}: images[{i}]"
            vals = [_field(im, k, where) for k in ("subject", "action_idx", "subaction_idx", "cam_idx", "frame_idx",
                                                   "id", "width", "height", "file_name")]
            if vals[0] != s:
                raise H36MFormatError(f"{where}: field 'subject' is {vals[0]!r}, expected {s}")
            key = StreamKey(*(int(v) for v in vals[:4]))
            if key.folder in SKIP_FOLDERS or (fa and key.action not in fa) or (fs and key.subaction not in fs) \
                    or (fc and key.camera not in fc):
                continue
            if vals[5] not in bbox_of:
                raise H36MFormatError(f"{where}: image id {vals[5]} has no entry in 'annotations'")
            cam = im.get(CAMERA_FIELD)
            cam = None if cam is None else Camera.from_json(cam, f"{where}: field '{CAMERA_FIELD}'")
            groups.setdefault(key, []).append(vals[4:] + [i, cam])
        if not groups:
            raise H36MFormatError(f"{p_data}: no images of subject {s} match this run (actions "
                                  f"{sorted(fa) if fa else 'all'}, subactions {sorted(fs) if fs else 'all'}, "
                                  f"cameras {sorted(fc) if fc else 'all'})")
        missing = sorted((fa or set()) - {k.action for k in groups})
        if missing:
            names = ", ".join(f"{a} ({action_name(a)})" for a in missing)
            raise H36MFormatError(f"{p_data}: subject {s} has no images of action_idx {names}, which this run needs")
        for key in sorted(groups):
            self.streams[key] = self._build_stream(key, groups[key], cams, joints, bbox_of, p_cam, p_j, p_data)
            name = key.action_name
            self.settings.setdefault(name, dict(declared.get(str(key.action), {})) if self.synthetic else
                                     {"background": "indoor lab", "camera": "fixed (4 static calibrated cameras)"})

    def _build_stream(self, key: StreamKey, rows: list, cams: Any, joints: Any, bbox_of: dict,
                      p_cam: Path, p_j: Path, p_data: Path) -> Stream:
        # rows: [frame_idx, id, width, height, file_name, json index, per-image Camera or None]
        rows.sort(key=lambda r: r[0])
        fidx = np.array([r[0] for r in rows], dtype=np.int64)
        if np.any(np.diff(fidx) == 0):
            raise H36MFormatError(f"{key.folder}: duplicate frame_idx in the data json")
        per_frame = [r[6] for r in rows]
        if any(c is not None for c in per_frame):
            lacking = next(r for r in rows if r[6] is None) if None in per_frame else None
            if lacking is not None:  # a moving camera needs every frame's camera
                raise H36MFormatError(f"{p_data}: images[{lacking[5]}]: missing field '{CAMERA_FIELD}' (other "
                                      f"frames of {key.folder} carry their own camera)")
            frame_cams: tuple[Camera, ...] | None = tuple(per_frame)
            camera = frame_cams[0]
        else:
            frame_cams = None
            camera = Camera.from_json(_field(cams, str(key.camera), str(p_cam)), f"{p_cam}: ['{key.camera}']")
        sub = _field(_field(joints, str(key.action), str(p_j)), str(key.subaction), f"{p_j}: ['{key.action}']")
        jw = np.empty((len(rows), 17, 3))
        for n, f in enumerate(fidx):
            where = f"{p_j}: ['{key.action}']['{key.subaction}']"
            val = _field(sub, str(int(f)), where)
            try:
                jw[n] = np.asarray(val, dtype=np.float64)
            except (ValueError, TypeError):
                raise H36MFormatError(f"{where}['{f}']: expected 17x3 numbers") from None
        bboxes = np.empty((len(rows), 4))
        for n, r in enumerate(rows):
            try:
                bboxes[n] = np.asarray(bbox_of[r[1]], dtype=np.float64)
            except (ValueError, TypeError):
                raise H36MFormatError(f"annotations of image id {r[1]}: field 'bbox' is not [x, y, w, h]") from None
        img_dir = self.root / "images"
        return Stream(key, camera, tuple(img_dir / r[4] for r in rows), fidx,
                      np.array([r[1] for r in rows], dtype=np.int64), np.array([[r[2], r[3]] for r in rows]),
                      bboxes, jw, fidx % self.stride == 0, self.input_hw, frame_cams, p_data,
                      np.array([r[5] for r in rows], dtype=np.int64))

    def __iter__(self) -> Iterator[Stream]:
        return iter(self.streams.values())

    def __len__(self) -> int:
        return len(self.streams)

    def eval_frames(self) -> Iterator[Frame]:
        """The protocol's scored frames, stream by stream in key order."""
        for st in self:
            for i in np.flatnonzero(st.eval_mask):
                yield st[int(i)]

    @property
    def num_frames(self) -> int:
        return sum(len(s) for s in self)

    @property
    def num_eval_frames(self) -> int:
        return int(sum(s.eval_mask.sum() for s in self))

    def summary(self) -> dict[str, Any]:
        """What was loaded, for records and logs (``synthetic`` is always stated)."""
        return {"name": "synthetic_h36m" if self.synthetic else "Human36M", "synthetic": self.synthetic,
                "protocol": self.protocol.name, "metric": self.protocol.metric, "split": self.split,
                "subjects": list(self.subjects), "streams": len(self), "frames": self.num_frames,
                "eval_frames": self.num_eval_frames, "stride": self.stride,
                "moving_camera_streams": sum(st.moving for st in self), "settings": dict(self.settings)}
