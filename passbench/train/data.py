"""Training samples from MOT sequences: letterboxed frames cached as uint8, FairMOT targets.

Split on the sample data (``docs/training.md``): train on the first halves (``half_split``) of
PETS09-S2L1 and TUD-Stadtmitte; evaluation uses their second halves and all of TUD-Campus.
:func:`assert_disjoint` checks that no (sequence, frame) is in both.

Decoding video is slow-ish, so the letterboxed training frames are stored once per
(sequence, frames, size) as ``.cache/train_frames/<seq>_<W>x<H>_<first>-<last>.npy`` (git-ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DistributedSampler

from passbench.paths import REPO_ROOT
from passbench.train.targets import build_targets

TRAIN_SEQUENCES = ("PETS09-S2L1", "TUD-Stadtmitte")
EVAL_ONLY_SEQUENCES = ("TUD-Campus",)
CACHE = REPO_ROOT / ".cache" / "train_frames"
DOWN_RATIO = 4
PAD_VALUE = 127.5  # FairMOT letterbox pad colour


@dataclass
class FrameStore:
    """Letterboxed frames of one sequence with their boxes.

    Attributes:
        name: sequence name.
        frame_ids: (N,) 1-based MOT frame numbers, ascending and consecutive within a run.
        images: (N, H, W, 3) uint8 RGB at the network input size.
        boxes: N arrays (n_i, 4) xyxy in input pixels (letterboxed coordinates).
        ids: N arrays (n_i,) track ids as in the gt file (mapped to global labels by the datasets).
    """

    name: str
    frame_ids: np.ndarray
    images: np.ndarray
    boxes: list[np.ndarray]
    ids: list[np.ndarray]

    def __post_init__(self) -> None:
        n = len(self.frame_ids)
        if not (self.images.shape[0] == n == len(self.boxes) == len(self.ids)):
            raise ValueError(f"FrameStore {self.name}: {n} frame ids, {self.images.shape[0]} images, "
                             f"{len(self.boxes)} box lists, {len(self.ids)} id lists")


def _letterbox_u8(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``passbench.tracking.letterbox`` (FairMOT's, the one inference uses) kept as uint8 for the cache.

    Its float output is ``uint8 / 255`` exactly, so ``round(x * 255)`` recovers the uint8 image.
    """
    from passbench.tracking.letterbox import letterbox

    x, _ = letterbox(rgb, (width, height))  # (3, H, W) float in [0, 1]
    return (x * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def gt_boxes(gt, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Pedestrian boxes (xywh, original pixels) and ids of one frame; drops conf == 0 and distractor classes.

    MOT15 gt has no class column (the loader fills it); MOT17 class 1 is pedestrian.
    """
    rows = gt[gt["frame"] == frame]
    if "conf" in rows:
        rows = rows[rows["conf"] > 0]
    if "cls" in rows:
        cls = rows["cls"].to_numpy(dtype=float)
        rows = rows[np.isnan(cls) | (cls <= 0) | (cls == 1)]
    return rows[["x", "y", "w", "h"]].to_numpy(np.float32), rows["id"].to_numpy(np.int64)


def train_frames(name: str, data_root: str | None = None) -> tuple[object, range]:
    """``(sequence, frames)`` for training: the first half by ``half_split``."""
    from passbench.datasets.mot import half_split, load_sequence

    seq = load_sequence(name, data_root=data_root)
    first, _ = half_split(seq)
    return seq, range(first[0], first[-1] + 1) if not isinstance(first, range) else first


def eval_frames(data_root: str | None = None) -> dict[str, range]:
    """Evaluation frames: second halves of :data:`TRAIN_SEQUENCES`, all of :data:`EVAL_ONLY_SEQUENCES`."""
    from passbench.datasets.mot import half_split, load_sequence

    out = {}
    for name in TRAIN_SEQUENCES:
        _, second = half_split(load_sequence(name, data_root=data_root))
        out[name] = second if isinstance(second, range) else range(second[0], second[-1] + 1)
    for name in EVAL_ONLY_SEQUENCES:
        seq = load_sequence(name, data_root=data_root)
        n = int(seq.gt["frame"].max()) if len(seq.gt) else 0
        n = int(getattr(seq, "length", 0) or getattr(seq, "num_frames", 0) or n)
        out[name] = range(1, n + 1)
    return out


def assert_disjoint(train: dict[str, Iterable[int]], evaluation: dict[str, Iterable[int]]) -> None:
    """Raise ``AssertionError`` naming the sequence if any frame is in both splits."""
    for name, frames in train.items():
        both = set(frames) & set(evaluation.get(name, ()))
        if both:
            raise AssertionError(f"{name}: {len(both)} frames both in training and evaluation, e.g. {sorted(both)[:5]}")


def load_store(name: str, input_wh: tuple[int, int], data_root: str | None = None, cache: Path | None = CACHE) -> FrameStore:
    """The training half of ``name`` letterboxed to ``input_wh``, decoded once and cached on disk."""
    seq, frames = train_frames(name, data_root)
    w, h = input_wh
    first, last = frames[0], frames[-1]
    images = None
    path = None
    if cache is not None:
        path = Path(cache) / f"{name}_{w}x{h}_{first}-{last}.npy"
        if path.exists():
            images = np.load(path, mmap_mode="r")
    boxes, ids, decoded = [], [], []
    if images is None:
        for f, rgb in seq.frames(start=first, stop=last + 1):
            if f > last:
                break
            decoded.append(_letterbox_u8(np.ascontiguousarray(rgb), w, h))
        if len(decoded) != len(frames):
            raise ValueError(f"{name}: decoded {len(decoded)} frames for {first}..{last}")
        images = np.stack(decoded)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, images)
            tmp.replace(path)
    from passbench.tracking.letterbox import letterbox_transform

    # Box mapping needs only the original size: same ratio / pad for every frame.
    tf = letterbox_transform((int(seq.width), int(seq.height)), (w, h))
    for f in frames:
        xywh, tid = gt_boxes(seq.gt, f)
        xyxy = np.stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], 1) if len(xywh) else np.zeros((0, 4), np.float32)
        boxes.append(tf.to_input(xyxy).astype(np.float32))
        ids.append(tid)
    return FrameStore(name, np.arange(first, last + 1), np.asarray(images), boxes, ids)


def synthetic_store(name: str = "synthetic", n: int = 8, wh: tuple[int, int] = (64, 48), seed: int = 0) -> FrameStore:
    """A tiny made-up sequence for tests and smoke runs (``sequences=[synthetic]`` on the CLI).

    Grey noisy frames of size ``wh`` with two red boxes (ids 1, 2) moving right by 1 px per frame.
    """
    rng = np.random.default_rng(seed)
    w, h = wh
    imgs, boxes, ids = [], [], []
    for t in range(n):
        im = np.full((h, w, 3), 100, np.uint8) + rng.integers(0, 10, (h, w, 3), dtype=np.uint8)
        b = np.array([[w * 0.06 + t, h * 0.17, w * 0.25 + t, h * 0.67],
                      [w * 0.56 + t, h * 0.21, w * 0.75 + t, h * 0.83]], np.float32)
        for x1, y1, x2, y2 in b.astype(int):
            im[y1:y2, x1:x2] = (230, 60, 60)
        imgs.append(im)
        boxes.append(b)
        ids.append(np.array([1, 2]))
    return FrameStore(name, np.arange(1, n + 1), np.stack(imgs), boxes, ids)


def identity_labels(stores: Sequence[FrameStore]) -> dict[tuple[str, int], int]:
    """Contiguous labels 0..nID-1 over all (sequence, track id) in the training stores (FairMOT offsets
    each dataset's ids the same way, ``JointDataset.tid_start_index``)."""
    labels: dict[tuple[str, int], int] = {}
    for s in stores:
        for tid in sorted({int(t) for arr in s.ids for t in arr if t >= 0}):
            labels[(s.name, tid)] = len(labels)
    return labels


def augment(images: list[np.ndarray], boxes: np.ndarray, rng: np.random.Generator, flip: bool, jitter: float) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Apply the same random isotropic scale about the centre and horizontal flip to all ``images``.

    Light augmentation (short CPU training schedules): FairMOT itself uses a stronger random affine + HSV
    jitter.

    Args:
        images: frames (H, W, 3) uint8, all the same size; boxes: (n, 4) xyxy input pixels.

    Returns:
        ``(images, boxes, keep)``: boxes clipped to the image (as FairMOT's ``random_affine``) and
        ``keep`` the indices of the input boxes that stay >= 2 px wide and tall.
    """
    h, w = images[0].shape[:2]
    out = [np.asarray(im) for im in images]
    b = boxes.copy()
    if jitter > 0:
        s = float(rng.uniform(1 - jitter, 1 + jitter))
        m = np.array([[s, 0, (1 - s) * w / 2], [0, s, (1 - s) * h / 2]], np.float32)
        out = [cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3) for im in out]
        b = b * s + np.array([(1 - s) * w / 2, (1 - s) * h / 2] * 2, np.float32)
    if flip and rng.random() < 0.5:
        out = [np.ascontiguousarray(im[:, ::-1]) for im in out]
        b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1) if len(b) else b
    if len(b):
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
        keep = np.nonzero(((b[:, 2] - b[:, 0]) >= 2) & ((b[:, 3] - b[:, 1]) >= 2))[0]
    else:
        keep = np.zeros(0, np.int64)
    return out, b[keep], keep


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float in [0, 1] (FairMOT: ``/255``, no mean/std)."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


class MotSamples:
    """Training samples: single frames (``pairs=False``, the task) or consecutive pairs (gates).

    A pair is ``(t-1, t)`` with both frames in the same store (the training half); targets are those of
    frame ``t``. With ``max_gap`` k > 1 a pair is ``(t-g, t)`` with the gap g drawn uniformly from 1..k per
    sample (never before the store's first frame): the previous frame as a patch's stored output may be
    several frames old at inference. Item ``i`` with a per-sample generator gives a dict of tensors.
    """

    def __init__(self, stores: Sequence[FrameStore], *, pairs: bool, max_objs: int = 128, flip: bool = True,
                 scale_jitter: float = 0.1, labels: dict[tuple[str, int], int] | None = None,
                 max_gap: int = 1) -> None:
        if max_gap < 1:
            raise ValueError(f"MotSamples: max_gap must be >= 1, got {max_gap}")
        self.stores = list(stores)
        self.pairs, self.max_gap = pairs, int(max_gap)
        self.max_objs, self.flip, self.jitter = max_objs, flip, scale_jitter
        self.labels = labels if labels is not None else identity_labels(self.stores)
        self.items: list[tuple[int, int]] = []
        for si, s in enumerate(self.stores):
            for j in range(len(s.frame_ids)):
                if pairs and (j == 0 or s.frame_ids[j] - s.frame_ids[j - 1] != 1):
                    continue
                self.items.append((si, j))
        if not self.items:
            raise ValueError("no training samples: empty stores (or no consecutive frame pairs)")

    @property
    def num_ids(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        si, j = self.items[i]
        s = self.stores[si]
        gap = 1
        if self.pairs and self.max_gap > 1:
            back = 1  # consecutive frames before j within its run (a pair item has at least one)
            while back < self.max_gap and j - back - 1 >= 0 and s.frame_ids[j - back - 1] == s.frame_ids[j] - back - 1:
                back += 1
            gap = int(rng.integers(1, back + 1))
        frames = [s.images[j - gap], s.images[j]] if self.pairs else [s.images[j]]
        imgs, boxes, keep = augment(frames, s.boxes[j], rng, self.flip, self.jitter)
        lab = np.array([self.labels.get((s.name, int(t)), -1) for t in s.ids[j][keep]], np.int64)
        h, w = imgs[0].shape[:2]
        t = build_targets(boxes / DOWN_RATIO, lab, (h // DOWN_RATIO, w // DOWN_RATIO), self.max_objs)
        out = {k: torch.from_numpy(v) for k, v in t.items()}
        out["img"] = to_tensor(imgs[-1])
        if self.pairs:
            out["prev"] = to_tensor(imgs[0])
        return out


class StepBatches:
    """Deterministic per-step batches for one rank: ``DistributedSampler(seed)`` order, epoch after epoch.

    ``batch_size`` is the global batch; each of ``world`` ranks takes ``batch_size // world`` samples.
    Sample ``k`` of step ``s`` is augmented with ``default_rng((seed, s, rank, k))``, so a batch depends
    only on (seed, step, rank): resuming replays the same batches.
    """

    def __init__(self, samples: MotSamples, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes")
        self.samples, self.per_rank, self.seed, self.rank = samples, batch_size // world, seed, rank
        self.sampler = DistributedSampler(range(len(samples)), num_replicas=world, rank=rank, shuffle=True,
                                          seed=seed, drop_last=len(samples) >= world)
        self.n = len(self.sampler)
        self._epochs: dict[int, list[int]] = {}

    def _epoch(self, e: int) -> list[int]:
        if e not in self._epochs:
            self.sampler.set_epoch(e)
            self._epochs = {e: list(iter(self.sampler))}
        return self._epochs[e]

    def indices(self, step: int) -> list[int]:
        pos = step * self.per_rank
        return [self._epoch((pos + k) // self.n)[(pos + k) % self.n] for k in range(self.per_rank)]

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        items = [self.samples.get(i, np.random.default_rng((self.seed, step, self.rank, k)))
                 for k, i in enumerate(self.indices(step))]
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
