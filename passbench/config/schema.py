"""The typed shape of an experiment config (``ExperimentCfg`` and its sections) and ``ConfigError``.

Kept apart from the loader (``passbench.config``) so that the value checks (``passbench.config.check``)
and the loader both build on it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from passbench.errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the key and where it came from."""


@dataclass(frozen=True)
class DatasetCfg:
    """Which data to run on.

    Attributes:
        name: dataset family: ``MOT15``, ``MOT17``, ``MOT17-mini``, ``Human36M``, ``synthetic_h36m``.
        sequences: sequence names below ``<data_root>/<name>/<split>/``.
        split: ``train`` / ``test`` (folder name).
        frames: ``[first, last]`` MOT frame numbers (1-based, inclusive), or None for all frames.
        data_root: data root; None resolves via ``passbench.paths.resolve_data_root``.
        protocol: evaluation protocol label (e.g. ``mhp-p2`` for Human3.6M; ``full`` / ``half_val`` for MOT).
        halves: per-sequence FairMOT half split (``passbench.datasets.mot.half_split``): ``{seq: val}``
            tracks and evaluates only the second half of ``seq`` (its first half trains the models),
            ``{seq: train}`` only the first half; sequences not named run whole (or on ``frames``).
    """

    name: str = "MOT15"
    sequences: tuple[str, ...] = ()
    split: str = "train"
    frames: tuple[int, int] | None = None
    data_root: str | None = None
    protocol: str = "full"
    halves: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelCfg:
    """Which network.

    Attributes:
        name: a name in ``passbench.models.MODELS``.
        weights: checkpoint path (relative to the repo root) or None for the builder's own init.
        input_wh: network input ``(width, height)`` in pixels.
        kwargs: extra keyword arguments for the model builder.
        fold_bn: fold BatchNorm into the preceding conv for inference (``passbench.skip.fold_batchnorm``),
            in the dense reference and the skipping model alike; outputs equal to float tolerance.
        channels_last: run the model in ``torch.channels_last`` memory format (the layout of the
            sparse engine's fast gather path), dense reference and skipping model alike.
        alias_outputs: skipping layers hand the model their kept output without a copy where a probe
            forward shows that what the model does to it cannot change the next frame
            (``passbench.skip.aliasing``); outputs are bit-identical either way, only the time differs.
    """

    name: str = ""
    weights: str | None = None
    input_wh: tuple[int, int] = (576, 320)
    kwargs: dict[str, Any] = field(default_factory=dict)
    fold_bn: bool = True
    channels_last: bool = True
    alias_outputs: bool = True


@dataclass(frozen=True)
class MethodCfg:
    """How patches are skipped: ``dense`` (untouched), ``skipconv``, ``pass_p``, ``pass_f``; params go to
    ``passbench.skip.make_skippable``."""

    name: str = "dense"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalCfg:
    """Evaluation settings.

    Attributes:
        iou_threshold: MOT match threshold (CLEAR / Identity use 0.5).
        conf_threshold: detection score threshold of the tracker.
        backend: MOT metric backend understood by ``passbench.metrics.mot``: ``trackeval`` (the official
            evaluator's code, default) or ``motmetrics`` (same numbers; kept for the motmetrics oracle).
        flip_test: pose rows: also run each crop mirrored and average the two predictions, as upstream
            3DMPPE / MobileHumanPose evaluate (``cfg.flip_test = True``, ``main/test.py``); the mirrored view
            is a second stream with its own skip state (``passbench.runner.pose``).
    """

    iou_threshold: float = 0.5
    conf_threshold: float = 0.4
    backend: str = "trackeval"
    flip_test: bool = False


@dataclass(frozen=True)
class SpeedCfg:
    """Where and how the row runs, and its model-forward timing.

    Attributes:
        enabled: time ``warmup`` untimed + ``iters`` timed forwards, split over ``rounds`` alternating
            dense / skipping rounds (the record keeps each round's ratio).
        threads: torch intra-op threads (CPU).
        device: where the whole row runs (model, gates, skip state, the block-sparse engine, decoding) and
            is timed: ``cpu``, ``cuda``, ``cuda:N`` (``--device`` / ``$PASSBENCH_DEVICE``; ``passbench.device``).
            The CPU budget ``max_cpu_gmacs`` applies only on the CPU.
        precision: ``fp32``, or ``fp16`` / ``bf16``: every forward (accuracy and timing) under
            ``torch.autocast`` (``--precision``).
    """

    enabled: bool = True
    warmup: int = 2
    iters: int = 5
    threads: int = 1
    device: str = "cpu"
    rounds: int = 3
    precision: str = "fp32"


@dataclass(frozen=True)
class TrainCfg:
    """Training settings (used by ``passbench.train``; recorded for provenance)."""

    epochs: int = 0
    lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class ExperimentCfg:
    """One runnable experiment (one row of a table).

    Attributes:
        name: id of the experiment; defaults to the config path below ``configs/`` without suffix.
        task: ``mot`` or ``pose``.
        table: which paper artefact this row belongs to (``table3``, ``figure5``...).
        paper_row: key of the row in ``results/paper/*.csv`` shown beside the measured one, or None.
        requires: what must exist to run; a short reason string shown when it cannot run here.
        max_cpu_gmacs: skip (with a marker, no metrics) when the dense model exceeds this on CPU; None = no cap.
    """

    name: str = ""
    task: str = "mot"
    table: str = ""
    paper_row: str | None = None
    requires: str | None = None
    max_cpu_gmacs: float | None = None
    dataset: DatasetCfg = field(default_factory=DatasetCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    method: MethodCfg = field(default_factory=MethodCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    speed: SpeedCfg = field(default_factory=SpeedCfg)
    train: TrainCfg = field(default_factory=TrainCfg)


# ----------------------------------------------------------------------------------------------
# loading and merging
