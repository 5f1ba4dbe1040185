"""The 3D pose pipeline (Tables 1-2, Figure 4 rows), over ``passbench.runner.core``.

1. data: ``dataset.data_root`` (or ``--data-root``) holding ``Human36M/`` in the 3DMPPE layout, or
   ``synthetic:<preset>`` (``passbench.datasets.synthetic_h36m``, generated once into the cache;
   records say ``synthetic``). ``dataset.sequences`` names the subjects (``S9``, ``S11``) and, optionally,
   actions (``Discussion``, ...); every named subject and action must be there (an error names the
   file otherwise). Without named actions a real root must hold all 15 Human3.6M actions for every
   subject (the protocol averages over them) and a synthetic root the same actions for every subject.
   ``dataset.frames``: an optional ``[first, last]`` ``frame_idx`` range (0-based) run per video;
2. model: built, dense MACs under the CPU cap (``max_cpu_gmacs``), trained weights required (a pose
   model from random init predicts nothing worth a number: without ``model.weights`` the row is a
   skip marker "no trained weights");
3. streams: every (subject, action, subaction, camera) video in frame order is one stream: the skip
   state is reset at its start, each frame is cropped from its own box (``passbench.pose.data``:
   consecutive crops of a moving person are not pixel-aligned, the honest setting; a frame with an
   empty box is fed with the last box seen and not scored) and run through the model up to the
   stream's last scored frame (later frames cannot change a score);
4. scores on the protocol's frames (``frame_idx % 64 == 0`` for the MHP/3DMPPE test split): coords
   decoded through the frame's box with the ground-truth root depth, back-projected with f and c
   (``passbench.pose.evaluate``); no flip test (a mirrored view would be a second stream with its
   own skip state; dense rows run the same way, so all rows compare alike);
5. the record: ``metrics{mpjpe_mm, pa_mpjpe_mm, mpjpe_mm_later, per_action{<action>: {...}},
   per_camera{fixed|moving: {...}}, frames, ...}``, ``cost`` and ``speed`` as the MOT rows.

``mpjpe_mm_later``: over the scored frames that are not their video's first frame. The first frame
of every stream runs dense in every method (there is no previous frame to reuse), so only the later
scored frames show what skipping does (on the synthetic preset: frames 64 and 128 of 0..129).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from passbench.config import ExperimentCfg
from passbench.paths import DataRoot, DataRootError
from passbench.records import new_record
from passbench.runner.core import (SkipRow, _absent, _cost, _data_root, _dense_gmacs, _load_weights, _measure_speed,
                                   _need, _operating_point, _progress_bar, _reset, _sha256, _weights_path)

POSE_TIMED_REGION = "model forward, 1 frame, box crop already on device (no decode / crop / back-projection)"


def _pose_root(cfg: ExperimentCfg, data_root: Any) -> DataRoot:
    """The data root holding ``Human36M/``: ``synthetic:<preset>`` (generated once), or a folder."""
    from passbench.pose.data import is_synthetic_root, resolve_root  # noqa: PLC0415

    given = data_root if data_root is not None else cfg.dataset.data_root
    if is_synthetic_root(given):
        return DataRoot(resolve_root(given).resolve(), str(given), default=True)
    root = _data_root(cfg, data_root)
    if not (root.path / "Human36M").is_dir():
        raise _absent(root, "no Human3.6M: Human36M/", cfg.requires or "Human3.6M")
    return root


def _selection(cfg: ExperimentCfg) -> tuple[tuple[int, ...], list[str]]:
    """``dataset.sequences`` -> (subjects, action names); an unknown entry names the field."""
    from passbench.datasets.h36m import ACTION_NAMES  # noqa: PLC0415
    from passbench.pose.data import parse_subjects  # noqa: PLC0415

    subjects = [s for s in cfg.dataset.sequences if s not in ACTION_NAMES]
    actions = [s for s in cfg.dataset.sequences if s in ACTION_NAMES]
    return parse_subjects(subjects, f"{cfg.name}: dataset.sequences"), actions


def load_streams(cfg: ExperimentCfg, root: DataRoot, input_hw: tuple[int, int]) -> Any:
    """The ``Human36M`` split of the row, every subject and action it needs checked (module docstring).

    Raises:
        DataRootError: a subject's annotation file or an image folder is missing under a given root.
        H36MFormatError: a malformed file, or a subject without a required action (names the file).
    """
    from passbench.datasets.h36m import ACTION_NAMES, H36MFormatError, Human36M, action_index  # noqa: PLC0415

    subjects, actions = _selection(cfg)
    try:
        data = Human36M(root.path, cfg.dataset.protocol, cfg.dataset.split, subjects=subjects,
                        actions=actions or None, input_hw=input_hw)
    except FileNotFoundError as e:
        raise (SkipRow(str(e)) if root.default and not root.label.startswith("synthetic:") else DataRootError(str(e)))
    have: dict[int, set[int]] = {s: set() for s in subjects}
    for key in data.streams:
        have[key.subject].add(key.action)
    if actions:
        need = {action_index(a) for a in actions}
    elif data.synthetic:
        need = set().union(*have.values())
    else:
        need = set(range(2, 2 + len(ACTION_NAMES)))
    for s in subjects:
        missing = sorted(need - have[s])
        if missing:
            names = ", ".join(f"{a} ({ACTION_NAMES[a - 2]})" for a in missing)
            raise H36MFormatError(f"{data.root}/annotations/Human36M_subject{s}_data.json: subject {s} has no images "
                                  f"of action_idx {names} (field 'action_idx'), which protocol {data.protocol.name} "
                                  "averages over; name the actions in dataset.sequences to run a subset")
    return data


def _frame_range(cfg: ExperimentCfg, stream: Any) -> np.ndarray:
    """(F,) bool: the frames of ``stream`` inside ``dataset.frames`` ([first, last] frame_idx) or all."""
    if not cfg.dataset.frames:
        return np.ones(len(stream), dtype=bool)
    first, last = cfg.dataset.frames
    return (stream.frame_idx >= first) & (stream.frame_idx <= last)


def _check_finite(coords: np.ndarray, frame_path: Any, stream: Any, i: int) -> None:
    """A NaN / inf prediction stops the row before anything is scored (names the image and the field)."""
    from passbench.datasets.h36m import JOINT_NAMES_18  # noqa: PLC0415
    from passbench.pose.evaluate import PredictionError  # noqa: PLC0415

    bad = ~np.isfinite(coords)
    if bad.any():
        j, k = (int(v) for v in np.argwhere(bad)[0])
        raise PredictionError(f"{frame_path}: prediction field 'coords' is {coords[j, k]} at joint {j} "
                              f"({JOINT_NAMES_18[j]}), axis {'xyz'[k]} (video {stream.key.folder}, frame_idx "
                              f"{int(stream.frame_idx[i])}); nothing scored, no record written")


def _run_streams(cfg: ExperimentCfg, model: Any, skippable: bool, data: Any, input_hw: tuple[int, int],
                 bar: Any) -> tuple[list[Any], np.ndarray, list[tuple[bool, dict[str, Any]]], int]:
    """Run every stream; returns (scored frames, their coords (N, J, 3), per-stream skip stats with the
    stream's moving-camera flag, frames run)."""
    import torch  # noqa: PLC0415

    from passbench.pose.crop import crop_image, to_input  # noqa: PLC0415
    from passbench.pose.data import stream_boxes  # noqa: PLC0415

    collect = _need("passbench.skip", "collect_stats") if skippable else None
    frames, coords, stats, n_run = [], [], [], 0
    for st in data:
        boxes, own = stream_boxes(st, input_hw)
        run = _frame_range(cfg, st)
        scored = np.flatnonzero(st.eval_mask & run)
        if not len(scored):
            continue
        if boxes[0] is None:  # no frame of this video has a box: nothing can be cropped or scored
            frames += [st[int(i)] for i in scored]
            coords += [np.zeros((model.num_joints, 3))] * len(scored)
            continue
        bar.set_postfix_str(st.key.folder)
        _reset(model, skippable)  # each video is a new stream: no state (and no counts) carried across
        todo = np.flatnonzero(run)
        todo = todo[todo <= scored[-1]]
        images = st.images()
        for i in range(todo[-1] + 1):
            img = next(images)  # decoded in order (checked against the json's width / height)
            if not run[i]:
                continue
            x = to_input(crop_image(img, boxes[i], input_hw)[None])
            with torch.inference_mode():
                c = model(x)["coords"][0].float().numpy()
            n_run += 1
            bar.update(1)
            if st.eval_mask[i]:
                if own[i]:
                    _check_finite(c, st.paths[i], st, i)
                frames.append(st[i])
                coords.append(c)
        if skippable:
            stats.append((st.moving, collect(model)))
    if not frames:
        raise ValueError(f"{cfg.name}: no scored frame (protocol {data.protocol.name}, frames {cfg.dataset.frames})")
    return frames, np.stack(coords).astype(np.float64), stats, n_run


def pose_metrics(coords: np.ndarray, frames: list[Any], spec: Any, protocol: Any, moving: dict[str, bool]
                 ) -> dict[str, Any]:
    """``metrics{mpjpe_mm, pa_mpjpe_mm, mpjpe_mm_later, per_action, per_camera, frames, skipped_empty_box}``.

    Both errors on the same scored frames (the 3DMPPE ``evaluate`` pipeline): MPJPE after root alignment
    and PA-MPJPE with upstream's ``rigid_align`` (rotation + translation, no scale); the protocol's own
    metric is named in the record's ``dataset.metric``. Means over all (frame, joint) pairs, per action
    over its own pairs (3DMPPE ``tot_err``).

    Args:
        coords: (N, 18, 3) model coords of the N scored frames.  moving: video folder -> moving camera.
    """
    from passbench.metrics.pose import aggregate  # noqa: PLC0415
    from passbench.pose.evaluate import camera_joints, joint_errors  # noqa: PLC0415

    pred, keep = camera_joints(coords, frames, spec)
    kept = [fr for fr, k in zip(frames, keep) if k]
    if not kept:
        raise ValueError("no scored frame has a box: nothing to score")
    gt = np.stack([fr.joints_cam for fr in kept])
    errs = {m: joint_errors(pred, gt, m) for m in ("mpjpe", "pa_mpjpe")}
    later = np.array([fr.index > 0 for fr in kept])
    actions = [fr.key.action_name for fr in kept]
    cams = ["moving" if moving[fr.key.folder] else "fixed" for fr in kept]

    def summary(sel: np.ndarray) -> dict[str, Any]:
        out = {f"{m}_mm": float(e[sel].mean()) for m, e in errs.items()}
        out["mpjpe_mm_later"] = float(errs["mpjpe"][sel & later].mean()) if (sel & later).any() else None
        out["frames"] = int(sel.sum())
        return out

    everything = np.ones(len(kept), dtype=bool)
    out = summary(everything)
    if protocol.aggregation != "frame":  # the record's means are 3DMPPE's tot_err; another average is stated
        out["mpjpe_mm_protocol_average"] = aggregate(errs["mpjpe"], actions, how=protocol.aggregation).overall
    out["per_action"] = {a: summary(np.array([x == a for x in actions])) for a in dict.fromkeys(actions)}
    out["per_camera"] = {c: summary(np.array([x == c for x in cams])) for c in dict.fromkeys(cams)}
    out["skipped_empty_box"] = int((~keep).sum())
    return out


def _training_pairs(cfg: ExperimentCfg, root: DataRoot, spec: Any, n: int) -> list[Any]:
    """``n`` consecutive training pairs (protocol train split of the same root), cropped as a stream feeds
    them, for a content-adaptive operating point (Skip-Conv thresholds)."""
    from passbench.datasets.h36m import Human36M  # noqa: PLC0415
    from passbench.pose.samples import PoseSamples  # noqa: PLC0415
    from passbench.train.data import StepBatches  # noqa: PLC0415

    samples = PoseSamples(Human36M(root.path, cfg.dataset.protocol, "train", input_hw=spec.input_hw), spec,
                          pairs=True, flip=False, scale_jitter=0.0)
    batches = StepBatches(samples, 4, seed=1)
    return [(b["prev"], b["img"]) for b in (batches(s) for s in range(max(1, -(-n // 4))))]


def _run_pose(cfg: ExperimentCfg, data_root: Any, resolved: dict, show: bool = False) -> dict[str, Any]:
    from passbench.datasets.h36m import get_protocol  # noqa: PLC0415

    root = _pose_root(cfg, data_root)
    weights = _weights_path(cfg)
    import torch  # noqa: PLC0415 - heavy imports only when a row really runs

    from passbench.pose.crop import crop_image, to_input  # noqa: PLC0415
    from passbench.pose.data import stream_boxes  # noqa: PLC0415
    from passbench.pose.decode import MapSpec  # noqa: PLC0415

    protocol = get_protocol(cfg.dataset.protocol)
    torch.set_num_threads(cfg.speed.threads)
    torch.manual_seed(cfg.train.seed)
    w, h = cfg.model.input_wh
    model = _need("passbench.models", "build_model")(cfg.model.name, pretrained=False, **cfg.model.kwargs).eval()
    spec = MapSpec.of(model)
    if spec.input_hw != (h, w):
        raise ValueError(f"{cfg.name}: model.input_wh {w}x{h} but {cfg.model.name} takes "
                         f"{spec.input_hw[1]}x{spec.input_hw[0]} (set model.input_wh or model.kwargs.input_hw)")
    gmacs_dense = _dense_gmacs(cfg, model, torch.zeros(1, 3, h, w))
    if weights is None:
        raise SkipRow(f"no trained weights for {cfg.model.name} (model.weights is null): a pose model from random "
                      "init predicts nothing worth a number; train it (scripts/train_pose.sh) and set model.weights")
    data = load_streams(cfg, root, spec.input_hw)
    model, skippable = _load_weights(model, weights, cfg)
    model.eval()
    knob = _operating_point(cfg, model, lambda n: _training_pairs(cfg, root, spec, n)) if skippable else None
    if cfg.model.fold_bn:
        _need("passbench.skip", "fold_batchnorm")(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)

    timing = []
    if cfg.speed.enabled:  # consecutive crops of the first video with a box, as the stream feeds them
        first, boxes = next(((st, b) for st in data for b in [stream_boxes(st, spec.input_hw)[0]] if b[0] is not None),
                            (None, []))
        for img, box in zip(first.images() if first is not None else [], boxes[: cfg.speed.warmup + cfg.speed.iters]):
            timing.append(to_input(crop_image(img, box, spec.input_hw)[None]))
    total = 0
    for st in data:
        sel = np.flatnonzero(_frame_range(cfg, st) & st.eval_mask)
        total += int((np.flatnonzero(_frame_range(cfg, st)) <= sel[-1]).sum()) if len(sel) else 0
    with _progress_bar(show, total, cfg.name) as bar:
        if cfg.speed.enabled:
            bar.set_postfix_str("timing the forward")
        speed = _measure_speed(cfg, model, skippable, timing, POSE_TIMED_REGION)
        frames, coords, stats, n_run = _run_streams(cfg, model, skippable, data, spec.input_hw, bar)
        bar.set_postfix_str("evaluating")
        moving = {st.key.folder: st.moving for st in data}
        metrics = pose_metrics(coords, frames, spec, protocol, moving)
    cost = _cost([s for _, s in stats], skippable, gmacs_dense)
    if skippable:  # the skip rate per camera kind (fixed / moving): what the gates do when the camera moves
        for cam, m in metrics["per_camera"].items():
            group = [s for mv, s in stats if ("moving" if mv else "fixed") == cam]
            c = _cost(group, True, gmacs_dense)
            m.update(patch_skip_rate=c["patch_skip_rate"], gmacs_executed=c["gmacs_executed"])
    summary = data.summary()
    return new_record(
        experiment=cfg.name,
        task="pose",
        dataset={"name": summary["name"], "split": cfg.dataset.split, "protocol": protocol.name,
                 "metric": protocol.metric, "numbering": protocol.numbering,
                 "frames": list(cfg.dataset.frames) if cfg.dataset.frames else None,
                 "sequences": list(cfg.dataset.sequences), "subjects": summary["subjects"],
                 "synthetic": bool(summary["synthetic"]), "data_root": root.label, "streams": summary["streams"],
                 "frames_run": n_run, "scored_frames": len(frames), "settings": summary["settings"],
                 "note": ("SYNTHETIC stick-figure data (passbench.datasets.synthetic_h36m): not Human3.6M numbers"
                          if summary["synthetic"] else "Human3.6M: indoor lab, 4 fixed cameras")},
        model={"name": cfg.model.name, "tag": "trained", "weights_sha256": _sha256(weights)},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        metrics=metrics,
        cost=cost,
        speed=speed,
        config=resolved,
    )
