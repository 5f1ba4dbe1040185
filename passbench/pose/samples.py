"""Pose training samples and loss for ``passbench.train`` (``task=pose``): the MOT stages' code, pose data.

:class:`PoseSamples` has the interface ``passbench.train.data.StepBatches`` reads (``len``, ``get(i, rng)``)
and yields, per item, ``img`` (3, H, W) in [0, 1], ``target`` (J, 3) and ``vis`` (J,) from
:func:`passbench.pose.targets.coord_targets` (output-map px and depth bins, upstream's ``DatasetLoader``),
and for pairs ``prev``, the stream's previous frame.

* Frames: the protocol's training frames (``Human36M(split="train")``: MHP/3DMPPE protocol 2, subjects
  S1, 5, 6, 7, 8, every 5th frame, ``frame_idx % 5 == 0``, as upstream trains); frames whose processed
  box is empty are left out (upstream drops them too).
* Pairs ``(t-1, t)`` for the gate stages: ``t`` a training frame, ``t-1`` the frame before it in the
  same stream. Each frame is cropped with **its own** box (``passbench.pose.data``), exactly as the
  evaluation stream feeds them, so the gates train on the frame-to-frame change they will see at test
  time (crop jitter included); a pair cropped with one shared box would show only the body motion.
* Augmentation (upstream: scale, rotation, flip, colour): a flip (p = 0.5, left / right joints
  swapped) and an isotropic scale in 1 +- ``scale_jitter``, the same for both frames of a pair; no
  rotation or colour jitter (short CPU schedules).

:class:`CoordL1Loss` is upstream's coordinate L1 as a ``loss(outputs, batch) -> (loss, logs)`` module,
the interface of ``passbench.train.losses.FairMOTLoss``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from passbench.datasets.h36m import PAPER_PROTOCOL, Human36M, get_protocol
from passbench.pose.crop import crop_image
from passbench.pose.data import parse_subjects, resolve_root, stream_boxes
from passbench.pose.decode import MapSpec
from passbench.pose.targets import coord_l1_loss, coord_targets


def _tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float in [0, 1] (the pose models normalise inside)."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


class PoseSamples:
    """Training frames (``pairs=False``) or consecutive pairs (``pairs=True``) of Human3.6M-layout streams.

    Args:
        dataset: the training split (``Human36M(root, protocol, "train", ...)``).
        spec: the model's :class:`MapSpec` (input crop, output map, depth bins).
        pairs: consecutive pairs for the gate stages.  flip, scale_jitter: augmentation (module docstring).
    """

    task = "pose"
    num_ids = 0  # the MOT samples' re-ID count (passbench.train stores it in final.pt's extra)

    def __init__(self, dataset: Human36M, spec: MapSpec, *, pairs: bool, flip: bool = True,
                 scale_jitter: float = 0.0) -> None:
        self.dataset, self.spec, self.pairs = dataset, spec, pairs
        self.flip, self.jitter = flip, scale_jitter
        self.streams = list(dataset)
        self.boxes, self.items = [], []
        for si, st in enumerate(self.streams):
            boxes, own = stream_boxes(st, spec.input_hw)
            self.boxes.append(boxes)
            for j in np.flatnonzero(st.eval_mask & own):
                if pairs and (j == 0 or st.frame_idx[j] - st.frame_idx[j - 1] != 1):
                    continue
                self.items.append((si, int(j)))
        if not self.items:
            raise ValueError(f"no pose training samples in {dataset.root} (subjects {list(dataset.subjects)})")

    @classmethod
    def from_stage(cls, cfg: Any, spec: MapSpec, *, pairs: bool, flip: bool, scale_jitter: float) -> "PoseSamples":
        """Samples of a ``passbench.train`` stage config (``task=pose``): ``data_root``, ``sequences``
        (training subjects; any of the protocol's test subjects is refused), ``input_wh``; ``spec`` is the
        stage model's map spec (``passbench.train.build.pose_map_spec``: the model is built by the stage)."""
        subjects = parse_subjects(cfg.sequences, "training key 'sequences'")
        proto = get_protocol(PAPER_PROTOCOL)
        both = sorted(set(subjects) & set(proto.test_subjects))
        if both:
            raise ValueError(f"training key 'sequences': subject(s) {both} are test subjects of protocol "
                             f"{proto.name} (train on {list(proto.train_subjects)})")
        w, h = cfg.input_wh
        data = Human36M(resolve_root(cfg.data_root), proto.name, "train", subjects=subjects, input_hw=(h, w))
        return cls(data, spec, pairs=pairs, flip=flip, scale_jitter=scale_jitter)

    def with_augmentation(self, flip: bool, scale_jitter: float) -> "PoseSamples":
        """The same items with other augmentation settings."""
        return PoseSamples(self.dataset, self.spec, pairs=self.pairs, flip=flip, scale_jitter=scale_jitter)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, i: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Item ``i`` augmented with ``rng``: ``img``, ``target``, ``vis`` (and ``prev`` for pairs)."""
        si, j = self.items[i]
        st, boxes = self.streams[si], self.boxes[si]
        scale = float(rng.uniform(1 - self.jitter, 1 + self.jitter)) if self.jitter > 0 else 1.0
        flip = bool(self.flip and rng.random() < 0.5)
        fr = st[j]
        aug = {"scale": scale, "flip": flip}
        target, vis = coord_targets(fr.joints_img, boxes[j], self.spec, scale=scale,
                                    flip_width=fr.width if flip else None)
        out = {"img": _tensor(crop_image(fr.image(), boxes[j], self.spec.input_hw, **aug)),
               "target": torch.from_numpy(target), "vis": torch.from_numpy(vis)}
        if self.pairs:
            prev = st[j - 1].image()
            out["prev"] = _tensor(crop_image(prev, boxes[j - 1], self.spec.input_hw, **aug))
        return out


class CoordL1Loss(nn.Module):
    """``forward(outputs, batch) -> (loss, logs)``: upstream's L1 on ``outputs["coords"]`` against
    ``batch["target"]`` masked by ``batch["vis"]`` (:func:`passbench.pose.targets.coord_l1_loss`)."""

    def forward(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        loss = coord_l1_loss(outputs["coords"], batch["target"], batch["vis"])
        return loss, {"coord_l1": float(loss.detach())}
