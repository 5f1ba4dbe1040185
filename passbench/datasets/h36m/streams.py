"""Human3.6M (3DMPPE layout) as video streams: :class:`Human36M` loads a protocol's split.

Streams are keyed (subject, action, subaction, camera) and hold *all* frames in frame order, because
temporal gates (PASS, Skip-Conv) need consecutive frames; each frame carries ``evaluate``, true on
the protocol's frames. A model runs on the whole stream and only the flagged frames are scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from passbench.datasets.h36m.geometry import Camera, add_thorax, process_bbox
from passbench.datasets.h36m.layout import (CAMERA_FIELD, SKIP_FOLDERS, H36MFormatError, folder_name, json_entry,
                                            json_field, load_json, read_image)
from passbench.datasets.h36m.protocols import PAPER_PROTOCOL, ROOT, action_index, action_name, get_protocol
from passbench.paths import resolve_data_root


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
        return read_image(self.path, (self.width, self.height), json_entry(self.data_json, self.json_index))


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
        return (read_image(p, self.sizes[i], json_entry(self.data_json, self._index(i)))
                for i, p in enumerate(self.paths))


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
                                        f"(listed in {json_entry(st.data_json, st._index(0))}, field 'file_name')")

    def _load_subject(self, s: int) -> None:
        ann = self.root / "annotations"
        p_data, p_cam, p_j = (ann / f"Human36M_subject{s}_{k}.json" for k in ("data", "camera", "joint_3d"))
        data, cams, joints = load_json(p_data), load_json(p_cam), load_json(p_j)
        info = data.get("info") if isinstance(data, dict) else None
        if isinstance(info, dict) and info.get("synthetic"):
            self.synthetic = True
        declared = info.get("settings", {}) if isinstance(info, dict) and self.synthetic else {}
        images, annots = json_field(data, "images", str(p_data)), json_field(data, "annotations", str(p_data))
        bbox_of: dict[int, Any] = {}
        for i, a in enumerate(annots):
            where = f"{p_data}: annotations[{i}]"
            bbox_of[json_field(a, "image_id", where)] = json_field(a, "bbox", where)
        fa, fs, fc = self._filt
        groups: dict[StreamKey, list[tuple]] = {}
        for i, im in enumerate(images):
            where = f"{p_data}: images[{i}]"
            vals = [json_field(im, k, where) for k in ("subject", "action_idx", "subaction_idx", "cam_idx", "frame_idx",
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
            camera = Camera.from_json(json_field(cams, str(key.camera), str(p_cam)), f"{p_cam}: ['{key.camera}']")
        sub = json_field(json_field(joints, str(key.action), str(p_j)), str(key.subaction), f"{p_j}: ['{key.action}']")
        jw = np.empty((len(rows), 17, 3))
        for n, f in enumerate(fidx):
            where = f"{p_j}: ['{key.action}']['{key.subaction}']"
            val = json_field(sub, str(int(f)), where)
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
