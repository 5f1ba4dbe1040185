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
   (``passbench.pose.evaluate``). With ``eval.flip_test`` (upstream's default, ``main/test.py``; the
   paper-scale configs set it) each crop also runs mirrored and the two coords are averaged
   (``passbench.pose.decode.flip_coords``): the view and its mirror form a batch of two, i.e. two streams
   with their own skip state (``passbench.skip``: one stream per batch row), so the mirrored view's
   gates compare it with the mirrored previous frame, and a dense row runs the same batch. ``cost`` stays
   per view (one forward of one crop, as the paper's MAC columns); ``cost.views_per_frame`` says 2;
5. the record: ``metrics{mpjpe_mm, pa_mpjpe_mm, mpjpe_mm_later, per_action{<action>: {...}},
   per_camera{fixed|moving: {...}}, frames, ...}``, ``cost`` and ``speed`` as the MOT rows.

``mpjpe_mm_later``: over the scored frames that are not their video's first frame. The first frame
of every stream runs dense in every method (there is no previous frame to reuse), so only the later
scored frames show what skipping does (on the synthetic preset: frames 64 and 128 of 0..129).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from passbench.config import ConfigError, ExperimentCfg
from passbench.paths import DataRoot, DataRootError
from passbench.records import file_sha256, new_record
from passbench.runner.core import (SkipRow, build_row_model, cost_from_stats, dense_gmacs, inference_layout,
                                   load_weights, measure_speed, missing_data, need, operating_point, progress_bar, reset_streams,
                                   row_data_root, weights_path)

SYNTHETIC_DEFAULT = "synthetic:table2"  # the preset reproduce falls back to (passbench.datasets.synthetic_h36m)
POSE_TIMED_REGION = "model forward, 1 frame, box crop already on device (no decode / crop / back-projection)"


def reproduce_root(data_root: Any) -> Any:
    """The data root ``passbench reproduce 1|2`` and ``figure 4 --run`` give pose rows: the one named
    (``--data-root``, ``$PASSBENCH_DATA``), else the default root when it holds ``Human36M/``, else the
    SYNTHETIC preset :data:`SYNTHETIC_DEFAULT` (``passbench run`` has no such fallback: a single row
    without Human3.6M is a skip marker saying so)."""
    import os  # noqa: PLC0415

    from passbench.paths import find_data_root  # noqa: PLC0415

    if data_root is not None or os.environ.get("PASSBENCH_DATA"):
        return data_root
    try:
        root = find_data_root(None)
    except DataRootError:
        return SYNTHETIC_DEFAULT
    return None if (root.path / "Human36M").is_dir() else SYNTHETIC_DEFAULT


def _pose_root(cfg: ExperimentCfg, data_root: Any) -> DataRoot:
    """The data root holding ``Human36M/``: ``synthetic:<preset>`` (generated once), or a folder."""
    from passbench.pose.data import is_synthetic_root, resolve_root  # noqa: PLC0415

    given = data_root if data_root is not None else cfg.dataset.data_root
    if is_synthetic_root(given):
        try:
            return DataRoot(resolve_root(given).resolve(), str(given), default=True)
        except KeyError as e:  # an unknown preset (the message lists the known ones)
            raise DataRootError(f"data root {given}: {e.args[0] if e.args else e}") from None
    root = row_data_root(cfg, data_root)
    if not (root.path / "Human36M").is_dir():
        raise missing_data(root, "no Human3.6M: Human36M/", cfg.requires or "Human3.6M")
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
        wanted = {action_index(a) for a in actions}
    elif data.synthetic:
        wanted = set().union(*have.values())
    else:
        wanted = set(range(2, 2 + len(ACTION_NAMES)))
    for s in subjects:
        missing = sorted(wanted - have[s])
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


@dataclass
class Scores:
    """Per-(frame, joint) errors of every frame run that has its own box, with the frame's labels.

    Attributes:
        metrics: the ``passbench.pose.evaluate.joint_errors`` metrics computed (``mpjpe``, ``pa_mpjpe``:
            upstream ``rigid_align``, no scale; ``p_mpjpe`` for the VideoPose3D protocol that asks for it).
        errors: metric -> list of (n, 17) errors mm per video (root-aligned).
        action, camera: N action names and camera kinds (``fixed`` / ``moving``).
        protocol: (N,) the protocol scores this frame.  first: (N,) the frame is its video's first.
    """

    metrics: tuple[str, ...] = ("mpjpe", "pa_mpjpe")
    errors: dict = field(default_factory=dict)
    action: list = field(default_factory=list)
    camera: list = field(default_factory=list)
    protocol: list = field(default_factory=list)
    first: list = field(default_factory=list)

    def add(self, coords: np.ndarray, frames: list[Any], spec: Any, moving: bool) -> None:
        """Score one video's frames (coords (n, 18, 3); NaN / inf raise naming the image and the field)."""
        from passbench.pose.evaluate import camera_joints, joint_errors  # noqa: PLC0415

        pred, keep = camera_joints(coords, frames, spec)
        kept = [fr for fr, k in zip(frames, keep) if k]
        if not kept:
            return
        gt = np.stack([fr.joints_cam for fr in kept])
        for m in self.metrics:
            self.errors.setdefault(m, []).append(joint_errors(pred, gt, m))
        self.action += [fr.key.action_name for fr in kept]
        self.camera += ["moving" if moving else "fixed"] * len(kept)
        self.protocol += [fr.evaluate for fr in kept]
        self.first += [fr.index == 0 for fr in kept]


def _views(x: Any, flip_test: bool) -> Any:
    """(1, 3, H, W) crop -> the model's batch: itself, or itself and its mirror (two streams) for a flip test."""
    import torch  # noqa: PLC0415

    return torch.cat([x, x.flip(-1)]) if flip_test else x


def _run_streams(cfg: ExperimentCfg, model: Any, skippable: bool, data: Any, spec: Any, bar: Any
                 ) -> tuple[Scores, list[tuple[bool, dict[str, Any]]], int, int]:
    """Run every stream; returns (scores of every frame run, per-stream skip stats with the stream's
    moving-camera flag, frames run, frames without their own box among the protocol's)."""
    import torch  # noqa: PLC0415

    from passbench.device import autocast  # noqa: PLC0415
    from passbench.pose.crop import crop_image, to_input  # noqa: PLC0415
    from passbench.pose.data import stream_boxes  # noqa: PLC0415
    from passbench.pose.decode import flip_coords  # noqa: PLC0415

    collect = need("passbench.skip", "collect_stats") if skippable else None
    extra = () if data.protocol.metric in ("mpjpe", "pa_mpjpe") else (data.protocol.metric,)
    scores, stats, n_run, no_box = Scores(("mpjpe", "pa_mpjpe") + extra), [], 0, 0
    for st in data:
        boxes, own = stream_boxes(st, spec.input_hw)
        run = _frame_range(cfg, st)
        scored = np.flatnonzero(st.eval_mask & run)
        if not len(scored):
            continue
        no_box += int((~own[scored]).sum())
        if boxes[0] is None:  # no frame of this video has a box: nothing can be cropped or scored
            continue
        bar.set_postfix_str(st.key.folder)
        reset_streams(model, skippable)  # each video is a new stream: no state (and no counts) carried across
        last = int(scored[-1])
        images = st.images()
        coords, frames = [], []
        for i in range(last + 1):
            img = next(images)  # decoded in order (checked against the json's width / height)
            if not run[i]:
                continue
            x = _views(to_input(crop_image(img, boxes[i], spec.input_hw)[None]), cfg.eval.flip_test)
            with torch.inference_mode(), autocast(cfg.speed.device, cfg.speed.precision):
                out = model(x.to(cfg.speed.device))["coords"].float()  # (V, J, 3)
            if cfg.eval.flip_test:  # upstream main/test.py: mirror x back, swap left / right, average
                out = (out[:1] + flip_coords(out[1:], spec.output_hw[1])) / 2
            c = out[0].cpu().numpy()
            n_run += 1
            bar.update(1)
            if own[i]:
                coords.append(c)
                frames.append(st[i])
        if skippable:
            stats.append((st.moving, collect(model)))
        if frames:
            scores.add(np.stack(coords).astype(np.float64), frames, spec, st.moving)
    if not any(scores.protocol):
        raise ConfigError(f"{cfg.name}: no scored frame (protocol {data.protocol.name}, dataset.frames "
                          f"{cfg.dataset.frames}): the protocol scores none of the frames selected")
    return scores, stats, n_run, no_box


def pose_metrics(scores: Scores, no_box: int) -> dict[str, Any]:
    """``metrics{mpjpe_mm, pa_mpjpe_mm, mpjpe_mm_later, mpjpe_mm_all_frames, per_action, per_camera, ...}``.

    ``mpjpe_mm`` / ``pa_mpjpe_mm``: the protocol's frames (3DMPPE ``evaluate``: MPJPE after root alignment;
    PA with upstream's ``rigid_align``, rotation + translation, no scale; the protocol's own metric is
    named in ``dataset.metric``), mean over all (frame, joint) pairs as 3DMPPE's ``tot_err``, per action
    over its own pairs. ``mpjpe_mm_later``: the protocol's frames that are not their video's first (the
    first frame runs dense in every method). ``mpjpe_mm_all_frames``: every frame run (the protocol
    scores every 64th of the same streams: too few to tell methods apart on a small set, and a periodic
    skip schedule can alias with that stride); ``frames`` / ``frames_all`` count them.
    """
    err = {m: np.concatenate(v) for m, v in scores.errors.items()}
    proto, first = np.array(scores.protocol), np.array(scores.first)
    action, camera = np.array(scores.action), np.array(scores.camera)

    def mean(e: np.ndarray, sel: np.ndarray) -> float | None:
        return float(e[sel].mean()) if sel.any() else None

    def summary(sel: np.ndarray) -> dict[str, Any]:
        out = {f"{m}_mm": mean(e, sel & proto) for m, e in err.items()}
        out.update({f"{m}_mm_all_frames": mean(e, sel) for m, e in err.items()})
        out["mpjpe_mm_later"] = mean(err["mpjpe"], sel & proto & ~first)
        out.update(frames=int((sel & proto).sum()), frames_all=int(sel.sum()))
        return out

    out = summary(np.ones(len(proto), dtype=bool))
    out["per_action"] = {a: summary(action == a) for a in dict.fromkeys(scores.action)}
    out["per_camera"] = {c: summary(camera == c) for c in dict.fromkeys(scores.camera)}
    out["skipped_empty_box"] = no_box
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


def run_pose(cfg: ExperimentCfg, data_root: Any, resolved: dict, show: bool = False) -> dict[str, Any]:
    from passbench.datasets.h36m import get_protocol  # noqa: PLC0415

    root = _pose_root(cfg, data_root)
    weights = weights_path(cfg)
    import torch  # noqa: PLC0415 - heavy imports only when a row really runs

    from passbench.pose.crop import crop_image, to_input  # noqa: PLC0415
    from passbench.pose.data import stream_boxes  # noqa: PLC0415
    from passbench.pose.decode import MapSpec  # noqa: PLC0415

    from passbench.device import check, run_env, set_threads, to_device  # noqa: PLC0415

    protocol = get_protocol(cfg.dataset.protocol)
    dev, _ = check(cfg)
    set_threads(cfg.speed.threads)
    torch.manual_seed(cfg.train.seed)
    w, h = cfg.model.input_wh
    model = to_device(build_row_model(cfg), dev)
    spec = MapSpec.of(model)
    if spec.input_hw != (h, w):
        raise ConfigError(f"{cfg.name}: model.input_wh {w}x{h} but {cfg.model.name} takes "
                         f"{spec.input_hw[1]}x{spec.input_hw[0]} (set model.input_wh or model.kwargs.input_hw)")
    gmacs_dense = dense_gmacs(cfg, model, torch.zeros(1, 3, h, w, device=dev))  # one view, one forward
    if weights is None:
        raise SkipRow(f"no trained weights for {cfg.model.name} (model.weights is null): a pose model from random "
                      "init predicts nothing worth a number; train it (scripts/train_pose.sh) and set model.weights")
    check_input_range(cfg, weights)
    data = load_streams(cfg, root, spec.input_hw)
    model, skippable = load_weights(model, weights, cfg)
    model.eval()
    knob = operating_point(cfg, model, lambda n: [(a.to(dev), b.to(dev)) for a, b in _training_pairs(cfg, root, spec, n)]
                            ) if skippable else None
    model = inference_layout(cfg, model, skippable, h, w, dev)

    timing = []
    if cfg.speed.enabled:  # consecutive crops of the first video with a box, as the stream feeds them
        first, boxes = next(((st, b) for st in data for b in [stream_boxes(st, spec.input_hw)[0]] if b[0] is not None),
                            (None, []))
        for img, box in zip(first.images() if first is not None else [], boxes[: cfg.speed.warmup + cfg.speed.iters]):
            timing.append(_views(to_input(crop_image(img, box, spec.input_hw)[None]), cfg.eval.flip_test))
    total = 0
    for st in data:
        sel = np.flatnonzero(_frame_range(cfg, st) & st.eval_mask)
        total += int((np.flatnonzero(_frame_range(cfg, st)) <= sel[-1]).sum()) if len(sel) else 0
    with progress_bar(show, total, cfg.name) as bar:
        if cfg.speed.enabled:
            bar.set_postfix_str("timing the forward")
        region = POSE_TIMED_REGION + (", both flip-test views (batch 2)" if cfg.eval.flip_test else "")
        speed = measure_speed(cfg, model, skippable, timing, region)
        scores, stats, n_run, no_box = _run_streams(cfg, model, skippable, data, spec, bar)
        metrics = pose_metrics(scores, no_box)
    views = 2 if cfg.eval.flip_test else 1  # the counters sum over the batch's views: per view, per forward
    stats = [(mv, {**s, "frames": s["frames"] * views}) for mv, s in stats]
    cost = cost_from_stats([s for _, s in stats], skippable, gmacs_dense)
    cost["views_per_frame"] = views
    if skippable:  # the skip rate per camera kind (fixed / moving): what the gates do when the camera moves
        for cam, m in metrics["per_camera"].items():
            group = [s for mv, s in stats if ("moving" if mv else "fixed") == cam]
            c = cost_from_stats(group, True, gmacs_dense)
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
                 "frames_run": n_run, "settings": summary["settings"],
                 "note": ("SYNTHETIC stick-figure data (passbench.datasets.synthetic_h36m): not Human3.6M numbers"
                          if summary["synthetic"] else "Human3.6M: indoor lab, 4 fixed cameras")},
        model={"name": cfg.model.name, "tag": "trained", "weights_sha256": file_sha256(weights)},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        metrics=metrics,
        cost=cost,
        speed=speed,
        config=resolved,
        env=run_env(dev, cfg.speed.precision),
    )


UPSTREAM_INPUT_RANGE = 255.0  # 3DMPPE / MobileHumanPose feed (pixel - mean) / std (passbench.models.pose.common)


def check_input_range(cfg: ExperimentCfg, weights: Any) -> None:
    """The input arithmetic a checkpoint was trained with must be the config's ``model.kwargs.input_range``.

    An upstream 3DMPPE / MobileHumanPose snapshot (``{'network': ...}``, ``main/base.py``) saw the 0-255 crop
    minus mean over std: ``input_range: 255``. A ``passbench.train`` ``final.pt`` saw what its own
    ``model_kwargs`` say (1 unless set). A plain state dict says nothing; the config is trusted.

    Raises:
        ValueError: the config and the checkpoint's origin disagree (names the file and the key).
    """
    import torch  # noqa: PLC0415

    ck = torch.load(weights, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict):
        return
    if "network" in ck:
        want, origin = UPSTREAM_INPUT_RANGE, "an upstream 3DMPPE / MobileHumanPose snapshot ('network'), trained on " \
                                              "(pixel - mean) / std of the 0-255 crop"
    elif "model" in ck and "model_name" in ck:
        want = float((ck.get("model_kwargs") or {}).get("input_range", 1.0))
        origin = f"a passbench.train checkpoint trained with input_range {want:g}"
    else:
        return
    got = float(cfg.model.kwargs.get("input_range", 1.0))
    if got != want:
        raise ValueError(f"{cfg.name}: {weights} is {origin}, but model.kwargs.input_range is {got:g}: set "
                         f"model.kwargs.input_range: {want:g} (passbench.models.pose.common)")
