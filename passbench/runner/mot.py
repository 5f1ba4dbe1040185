"""The MOT pipeline (Table 3 / Table 4 / Figure 5 rows), over ``passbench.runner.core``.

1. check the row can run here (dense MACs under the CPU cap, its dataset under the *default* data
   root); otherwise a skip marker with the reason (no numbers, nothing from the paper). A user's
   mistake is an error that writes nothing: a given data root (``--data-root``, ``PASSBENCH_DATA``,
   ``dataset.data_root``) that does not exist or lacks the row's data, a sequence name in
   ``dataset.sequences`` / ``dataset.halves`` that the dataset folder does not hold (under any root:
   the error lists the ones it holds), ``dataset.frames`` outside a sequence's frames, a malformed or
   missing ``gt/gt.txt`` (checked before the model is built), or a configured weights file that does
   not exist or fails its checks (``passbench.models.integrity``). Every frame is checked as it is
   decoded (complete file, ``seqinfo.ini``'s size): a bad one is an error naming the file, or, with
   ``PASSBENCH_ON_CORRUPT_FRAME=skip`` (``passbench run --on-corrupt-frame skip``), is left out of
   tracking and scoring and listed in the record (``dataset.corrupt_frames``);
2. build the model (``passbench.models.build_model``, ``pretrained=False``: no downloads), load the
   configured weights (``core.load_weights``);
3. time the dense forward, then apply the method (``passbench.skip.make_skippable``; ``dense`` leaves
   the model untouched) and time it on the same consecutive frames in the same process;
4. track every sequence (``passbench.tracking.infer.track_sequence``) and evaluate
   (``passbench.metrics.mot.evaluate_sequences``);
5. gather executed / dense / gate MACs and the patch skip rate (``passbench.skip.collect_stats``),
   and return the record (``passbench.records.new_record``); ``passbench.runner.run`` appends it only
   once everything above finished. The record names the data root as given
   (``passbench.paths.DataRoot.label``), never the machine's path.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from passbench.config import ConfigError, ExperimentCfg
from passbench.paths import DataRoot
from passbench.records import file_sha256, new_record
from passbench.runner.core import (build_row_model, cost_from_stats, dense_gmacs, inference_layout, load_weights,
                                   measure_speed, missing_data, need, operating_point, progress_bar, reset_streams, row_data_root,
                                   weights_path)


def corrupt_frame_policy() -> str:
    """What a bad frame does (``$PASSBENCH_ON_CORRUPT_FRAME``, set by ``--on-corrupt-frame``): ``error``
    (default) or ``skip`` (``passbench.datasets.mot.MOTSequence``)."""
    from passbench.datasets import CORRUPT_FRAME_ENV, ON_CORRUPT_FRAME  # noqa: PLC0415

    policy = os.environ.get(CORRUPT_FRAME_ENV) or "error"
    if policy not in ON_CORRUPT_FRAME:
        raise ConfigError(f"{CORRUPT_FRAME_ENV}={policy!r} is not one of: {', '.join(ON_CORRUPT_FRAME)}")
    return policy


def mot_sequences(cfg: ExperimentCfg, root: DataRoot) -> list[Path]:
    """The folders of ``dataset.sequences``. A name the dataset folder does not hold is the user's error
    (listing the names it holds), under any root, and so is a split folder the dataset does not have or,
    under the default root, a dataset name that is neither there nor a MOTChallenge benchmark; only a
    benchmark absent from the default root is "not runnable here" (``core.missing_data``)."""
    from passbench.datasets.mot import BENCHMARK_DIRS, SequenceError  # noqa: PLC0415

    if not cfg.dataset.sequences:
        raise ConfigError(f"{cfg.name}: dataset.sequences is empty")
    where = f"{cfg.dataset.name}/{cfg.dataset.split}"
    folder = root.path / where
    known = sorted(p.name for p in folder.iterdir() if (p / "seqinfo.ini").is_file()) if folder.is_dir() else []
    if not folder.is_dir() and (root.path / cfg.dataset.name).is_dir():
        splits = sorted(p.name for p in (root.path / cfg.dataset.name).iterdir() if p.is_dir())
        raise SequenceError(f"{cfg.name}: dataset.split: {cfg.dataset.name} under {root.describe()} has no split "
                            f"{cfg.dataset.split!r} (it has: {', '.join(splits) or 'none'})")
    if not folder.is_dir() and root.default and cfg.dataset.name not in BENCHMARK_DIRS:
        there = sorted(p.name for p in root.path.iterdir() if p.is_dir())
        raise SequenceError(f"{cfg.name}: dataset.name: {cfg.dataset.name!r} is neither a dataset under "
                            f"{root.describe()} (it holds: {', '.join(there)}) nor a MOTChallenge benchmark "
                            f"({', '.join(BENCHMARK_DIRS)})")
    out = []
    for s in cfg.dataset.sequences:
        p = folder / s
        if not p.is_dir():
            if not known:
                raise missing_data(root, f"sequence {where}/{s}")
            raise SequenceError(f"{cfg.name}: dataset.sequences: {s!r} is not a sequence of {where} under "
                                f"{root.describe()}{_close(s, known)} (it holds: {', '.join(known)})")
        out.append(p)
    for s in cfg.dataset.halves:  # a misspelt name here would run that sequence whole, training half included
        if known and s not in known:
            raise SequenceError(f"{cfg.name}: dataset.halves: {s!r} is not a sequence of {where} under "
                                f"{root.describe()}{_close(s, known)} (it holds: {', '.join(known)})")
    return out


def _close(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=2)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


def _training_pairs(cfg: ExperimentCfg, root: DataRoot, n: int) -> list[Any]:
    """``n`` consecutive-frame pairs of the sample training split, for a content-adaptive operating point
    (on the row's device)."""
    pairs = need("passbench.train.operating_point", "training_pairs")(tuple(cfg.model.input_wh), str(root.path), n=n)
    return [(a.to(cfg.speed.device), b.to(cfg.speed.device)) for a, b in pairs]


def prepare_model(cfg: ExperimentCfg, root: DataRoot, weights: Any) -> tuple[Any, bool, dict | None, float]:
    """The row's model as it is evaluated and timed: built, dense MACs counted (and the CPU cap checked on
    the CPU), moved to ``speed.device``, weights loaded, operating point set, BatchNorm folded, channels-last
    and output aliasing (``passbench.skip.aliasing``) as configured.

    Returns:
        ``(model, skippable, knob, gmacs_dense)``: ``knob`` the operating point set (None without one).
    """
    import torch  # noqa: PLC0415 - heavy imports only when a row really runs

    from passbench.device import check, set_threads, to_device  # noqa: PLC0415

    dev, _ = check(cfg)
    set_threads(cfg.speed.threads)
    torch.manual_seed(cfg.train.seed)
    w, h = cfg.model.input_wh
    model = build_row_model(cfg)
    # MACs of the dense network at the configured input (FlopCounterMode / 2, REFERENCE.md 4).
    model = to_device(model, dev)  # gates made later follow the convs' device; the weights are copied in
    gmacs_dense = dense_gmacs(cfg, model, torch.zeros(1, 3, h, w, device=dev))
    model, skippable = load_weights(model, weights, cfg)
    model.eval()
    knob = operating_point(cfg, model, lambda n: _training_pairs(cfg, root, n)) if skippable else None
    model = inference_layout(cfg, model, skippable, h, w, dev)
    return model, skippable, knob, gmacs_dense


def _load_checked(cfg: ExperimentCfg, seq_dirs: list[Path], policy: str) -> tuple[list[Any], dict[str, Any]]:
    """The sequences and their frame ranges, checked before any work: ``dataset.frames`` inside every
    sequence, ``gt/gt.txt`` present and well-formed (``MOTFormatError`` names file and line)."""
    from passbench.datasets.mot import SequenceError  # noqa: PLC0415

    sequences = [need("passbench.datasets.mot", "load_sequence")(str(p), on_corrupt_frame=policy) for p in seq_dirs]
    seq_frames = {seq.name: frames_for(cfg, seq) for seq in sequences}
    for seq in sequences:
        if seq.gt is None:
            raise SequenceError(f"{cfg.name}: sequence {seq.name} has no ground truth ({seq.path / 'gt' / 'gt.txt'} "
                                "is missing): it cannot be scored")
    return sequences, seq_frames


def run_mot(cfg: ExperimentCfg, data_root: Any, resolved: dict, show: bool = False) -> dict[str, Any]:
    from passbench.device import autocast, run_env  # noqa: PLC0415

    if cfg.eval.flip_test:
        raise ConfigError(f"{cfg.name}: eval.flip_test is a pose evaluation option (MOT rows track one view)")
    root = row_data_root(cfg, data_root)
    seq_dirs = mot_sequences(cfg, root)
    weights = weights_path(cfg)
    policy = corrupt_frame_policy()
    sequences, seq_frames = _load_checked(cfg, seq_dirs, policy)
    model, skippable, knob, gmacs_dense = prepare_model(cfg, root, weights)

    n_frames = sum(len(r) if r is not None else seq.num_frames for seq, r in zip(sequences, seq_frames.values()))
    track_sequence = need("passbench.tracking.infer", "track_sequence")
    evaluate_sequences = need("passbench.metrics.mot", "evaluate_sequences")
    with progress_bar(show, n_frames, cfg.name) as bar:
        if cfg.speed.enabled:
            bar.set_postfix_str("timing the forward")
        speed = measure_speed(cfg, model, skippable, timing_inputs(cfg, sequences[0]) if cfg.speed.enabled else [])
        results = {}
        stats = []  # one collect_stats per sequence: counters cover the tracked frames, not the timing run
        for seq in sequences:
            bar.set_postfix_str(f"tracking {seq.name}")
            reset_streams(model, skippable)  # each sequence is a new stream: no state (and no counts) carried across
            with autocast(cfg.speed.device, cfg.speed.precision):  # the forward at the row's precision
                tracked = track_sequence(model, seq, img_size=tuple(cfg.model.input_wh), frames=seq_frames[seq.name],
                                         conf_thres=cfg.eval.conf_threshold, on_frame=lambda _ev: bar.update(1))
            results[seq.name] = tracked.results
            if skippable:
                stats.append(need("passbench.skip", "collect_stats")(model))
        bar.set_postfix_str("evaluating")
        scored = {s.name: _scored_frames(s, seq_frames[s.name]) for s in sequences}  # bad frames left out (skip)
        scores = evaluate_sequences({s.name: s for s in sequences}, results, iou_threshold=cfg.eval.iou_threshold,
                                    backend=cfg.eval.backend, frames=scored)
    cost = cost_from_stats(stats, skippable, gmacs_dense)
    dataset = {"name": cfg.dataset.name, "split": cfg.dataset.split, "protocol": cfg.dataset.protocol,
               "frames": list(cfg.dataset.frames) if cfg.dataset.frames else None,
               "sequences": list(cfg.dataset.sequences), "synthetic": False, "data_root": root.label,
               "frames_used": {n: [r.start, r.stop - 1] if r is not None else None for n, r in seq_frames.items()}}
    dropped = {s.name: len(s.dropped_rows["gt"]) for s in sequences if s.dropped_rows.get("gt")}
    if dropped:  # gt rows of non-positive size the evaluator never scores (passbench.datasets.motio)
        dataset["gt_rows_dropped"] = dropped
    if policy != "error":  # frames left out of tracking and scoring, on the user's request
        dataset["corrupt_frames"] = {"policy": policy, "skipped": {s.name: sorted(s.skipped_frames) for s in sequences}}
    return new_record(
        experiment=cfg.name,
        task="mot",
        dataset=dataset,
        model={"name": cfg.model.name, "tag": "trained" if weights else "init",
               "weights_sha256": file_sha256(weights) if weights else None},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        metrics=_mot_metrics(scores),
        cost=cost,
        speed=speed,
        config=resolved,
        env=run_env(cfg.speed.device, cfg.speed.precision),
    )


def timing_inputs(cfg: ExperimentCfg, seq: Any) -> list[Any]:
    """The first ``warmup + iters`` frames of ``seq``, letterboxed: (1, 3, H, W) in [0, 1] each."""
    letterbox = need("passbench.tracking.letterbox", "letterbox")
    n = cfg.speed.warmup + cfg.speed.iters
    out = []
    for item in seq.frames():
        rgb = item[-1] if isinstance(item, tuple) else item  # (frame_id, rgb) or rgb
        x, _ = letterbox(rgb, tuple(cfg.model.input_wh))
        out.append(x.unsqueeze(0))
        if len(out) == n:
            break
    return out


def frames_for(cfg: ExperimentCfg, seq: Any) -> range | None:
    """The contiguous MOT frames of ``seq`` this row tracks and scores (``dataset.halves`` / ``frames``).

    Raises:
        ConfigError: ``dataset.frames`` reaches outside the frames present in ``seq``.
    """
    half = cfg.dataset.halves.get(seq.name)
    if half is not None:
        if half not in ("train", "val"):
            raise ConfigError(f"{cfg.name}: dataset.halves.{seq.name} must be 'train' or 'val', got {half!r}")
        tr, va = need("passbench.datasets.mot", "half_split")(seq)
        return va if half == "val" else tr
    if cfg.dataset.frames:
        first, last = cfg.dataset.frames
        if not 1 <= first <= last <= seq.num_frames:
            raise ConfigError(f"{cfg.name}: dataset.frames [{first}, {last}] is outside sequence {seq.name}, which has "
                              f"frames 1..{seq.num_frames} ({seq.path / 'seqinfo.ini'}: seqLength {seq.seq_length})")
        return range(first, last + 1)
    return None


def _scored_frames(seq: Any, frames: range | None) -> Any:
    """The frames scored: ``frames`` (None: the whole sequence) minus those the loader left out."""
    if not seq.skipped_frames:
        return frames
    bad = set(seq.skipped_frames)
    return [f for f in (frames if frames is not None else range(1, seq.num_frames + 1)) if f not in bad]


def _mot_metrics(scores: dict[str, Any]) -> dict[str, Any]:
    """``metrics{mota, idf1, idp, idr, ids, ..., per_sequence{seq: {...}}}`` (fractions in [0, 1]).

    ``evaluate_sequences`` already combines sequences as TrackEval does (counts summed, then ratios);
    ``ids`` is the record's name for identity switches (``idsw``).
    """
    def rename(d: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in d.items() if k != "per_sequence"}
        out["ids"] = out.pop("idsw")
        return out

    out = rename(scores)
    out["per_sequence"] = {n: rename(v) for n, v in scores.get("per_sequence", {}).items()}
    return out
