"""The one place that wires model + data + metrics: ``run(config) -> record``.

MOT pipeline (Table 3 / Table 4 / Figure 5 rows):

1. check the row can run here (dense MACs under the CPU cap, its dataset under the *default* data
   root); otherwise write a skip marker with the reason and return it (no numbers, nothing from the
   paper). A user's mistake is an error that writes nothing: a given data root (``--data-root``,
   ``PASSBENCH_DATA``, ``dataset.data_root``) that does not exist or lacks the row's data, or a
   configured weights file that does not exist;
2. build the model (``passbench.models.build_model``, ``pretrained=False``: no downloads), load the
   configured weights (``passbench.models.checkpoint``);
3. time the dense forward, then apply the method (``passbench.skip.make_skippable``; ``dense`` leaves
   the model untouched) and time it on the same consecutive frames in the same process;
4. track every sequence (``passbench.tracking.infer.track_sequence``) and evaluate
   (``passbench.metrics.mot.evaluate_sequences``);
5. gather executed / dense / gate MACs and the patch skip rate (``passbench.skip.collect_stats``),
   and append the record (``passbench.records``) only once everything above finished. The record
   names the data root as given (``passbench.paths.DataRoot.label``), never the machine's path.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from passbench.config import ExperimentCfg, to_dict
from passbench.paths import REPO_ROOT, DataRoot, DataRootError, find_data_root
from passbench.records import append_record, new_record, records_dir, skip_marker


class SkipRow(Exception):
    """This row cannot run here; the message is the reason stored in the skip marker."""


class WeightsNotFoundError(FileNotFoundError):
    """A configured weights file does not exist (a user's error, not a skip)."""


def _need(module: str, name: str | None = None) -> Any:
    """Import ``module`` (and attribute ``name``) or raise NotImplementedError naming the missing piece."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise NotImplementedError(f"runner needs {module}{'.' + name if name else ''}, which is not available: {e}") from e
    if name is None:
        return mod
    if not hasattr(mod, name):
        raise NotImplementedError(f"runner needs {module}.{name}, which does not exist yet")
    return getattr(mod, name)


def records_file(cfg: ExperimentCfg, results: str | os.PathLike[str] | None = None) -> Path:
    """Where a config's records go: ``results/records/<table>.jsonl`` (``misc.jsonl`` without a table)."""
    return records_dir(results) / f"{cfg.table or 'misc'}.jsonl"


def run(
    cfg: ExperimentCfg,
    data_root: str | os.PathLike[str] | None = None,
    results: str | os.PathLike[str] | None = None,
    write: bool = True,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run one experiment and return its record (or a skip marker saying why it cannot run here).

    Args:
        cfg: resolved experiment config (``passbench.config.load_config``).
        data_root: overrides ``cfg.dataset.data_root``; resolved by ``passbench.paths.find_data_root``.
        results: results folder (default ``$PASSBENCH_RESULTS`` or ``<repo>/results``).
        write: append the record / marker to ``results/records/<table>.jsonl``.
        progress: a tqdm bar on stderr over the tracked frames; None = only when stderr is a terminal.

    Raises:
        DataRootError: a given data root does not exist or lacks the row's data (nothing written).
        WeightsNotFoundError: ``model.weights`` names a file that does not exist (nothing written).
        NotImplementedError: a pipeline piece (module or function) this row needs does not exist.
        Any error of the run itself: nothing is written then.
    """
    resolved = to_dict(cfg)
    show = sys.stderr.isatty() if progress is None else bool(progress)
    try:
        if cfg.task == "mot":
            rec = _run_mot(cfg, data_root, resolved, show)
        elif cfg.task == "pose":
            rec = _run_pose(cfg, data_root, resolved)
        else:
            raise ValueError(f"{cfg.name}: unknown task {cfg.task!r} (mot, pose)")
    except SkipRow as why:
        rec = skip_marker(experiment=cfg.name, task=cfg.task, reason=str(why), config=resolved)
    if write:
        append_record(records_file(cfg, results), rec)
    return rec


# ----------------------------------------------------------------------------------------------
# shared pieces


def _data_root(cfg: ExperimentCfg, data_root: Any) -> DataRoot:
    try:
        return find_data_root(data_root if data_root is not None else cfg.dataset.data_root)
    except DataRootError as e:
        if e.given:  # the user named a root that does not exist: their error, not this machine's limit
            raise
        raise SkipRow(str(e)) from None


def _absent(root: DataRoot, what: str, hint: str = "") -> Exception:
    """The error for data missing under ``root``: a skip marker under the default root (this machine
    has no such data), the user's error under a root they named."""
    msg = f"{what} not under {root.describe()}" + (f" ({hint})" if hint else "")
    return SkipRow(msg) if root.default else DataRootError(msg)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_path(cfg: ExperimentCfg) -> Path | None:
    if cfg.model.weights is None:
        return None
    p = Path(cfg.model.weights)
    p = p if p.is_absolute() else REPO_ROOT / p
    if not p.is_file():
        raise WeightsNotFoundError(f"{cfg.name}: model.weights {cfg.model.weights} not found ({p}); train them "
                                   "first (python -m passbench.train, docs/training.md) or fix the path")
    return p


def _run_pose(cfg: ExperimentCfg, data_root: Any, resolved: dict) -> dict[str, Any]:
    root = _data_root(cfg, data_root)
    if cfg.dataset.name == "Human36M" and not (root.path / "Human36M").is_dir():
        raise _absent(root, "no Human3.6M: Human36M/", cfg.requires or "Human3.6M")
    # Human3.6M present (or the synthetic set): the pose pipeline is not wired yet.
    raise NotImplementedError(
        "runner: the pose pipeline (Human3.6M streams -> pose model -> passbench.metrics.pose) is not wired "
        "in passbench.runner yet; Tables 1-2 cannot be measured"
    )


# ----------------------------------------------------------------------------------------------
# MOT


def _mot_sequences(cfg: ExperimentCfg, root: DataRoot) -> list[Path]:
    if not cfg.dataset.sequences:
        raise ValueError(f"{cfg.name}: dataset.sequences is empty")
    out = []
    for s in cfg.dataset.sequences:
        p = root.path / cfg.dataset.name / cfg.dataset.split / s
        if not p.is_dir():
            raise _absent(root, f"sequence {cfg.dataset.name}/{cfg.dataset.split}/{s}")
        out.append(p)
    return out


def _progress_bar(show: bool, total: int, desc: str) -> Any:
    """A tqdm bar on stderr over ``total`` frames (a disabled one when ``show`` is False)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="frame", disable=not show, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def _run_mot(cfg: ExperimentCfg, data_root: Any, resolved: dict, show: bool = False) -> dict[str, Any]:
    root = _data_root(cfg, data_root)
    seq_dirs = _mot_sequences(cfg, root)
    weights = _weights_path(cfg)
    import torch  # noqa: PLC0415 - heavy imports only when a row really runs

    build_model = _need("passbench.models", "build_model")
    count_macs = _need("passbench.metrics.cost", "count_macs")
    torch.set_num_threads(cfg.speed.threads)
    torch.manual_seed(cfg.train.seed)
    w, h = cfg.model.input_wh
    model = build_model(cfg.model.name, pretrained=False, **cfg.model.kwargs).eval()
    # MACs of the dense network at the configured input (FlopCounterMode / 2, REFERENCE.md 4).
    gmacs_dense = count_macs(model, torch.zeros(1, 3, h, w)) / 1e9
    if cfg.max_cpu_gmacs is not None and cfg.speed.device == "cpu" and gmacs_dense > cfg.max_cpu_gmacs:
        raise SkipRow(
            f"dense {cfg.model.name} costs {gmacs_dense:.1f} GMACs/frame at {w}x{h}, over this CPU budget "
            f"(max_cpu_gmacs={cfg.max_cpu_gmacs})"
        )
    model, skippable = _load_weights(model, weights, cfg)
    model.eval()
    knob = _operating_point(cfg, model, root) if skippable else None
    if cfg.model.fold_bn:
        _need("passbench.skip", "fold_batchnorm")(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)

    sequences = [_need("passbench.datasets.mot", "load_sequence")(str(p)) for p in seq_dirs]
    seq_frames = {seq.name: _frames_for(cfg, seq) for seq in sequences}
    n_frames = sum(len(r) if r is not None else seq.num_frames for seq, r in zip(sequences, seq_frames.values()))
    track_sequence = _need("passbench.tracking.infer", "track_sequence")
    evaluate_sequences = _need("passbench.metrics.mot", "evaluate_sequences")
    with _progress_bar(show, n_frames, cfg.name) as bar:
        if cfg.speed.enabled:
            bar.set_postfix_str("timing the forward")
        speed = _measure_speed(cfg, model, skippable, _timing_inputs(cfg, sequences[0]) if cfg.speed.enabled else [])
        results = {}
        stats = []  # one collect_stats per sequence: counters cover the tracked frames, not the timing run
        for seq in sequences:
            bar.set_postfix_str(f"tracking {seq.name}")
            _reset(model, skippable)  # each sequence is a new stream: no state (and no counts) carried across
            tracked = track_sequence(model, seq, img_size=(w, h), frames=seq_frames[seq.name],
                                     conf_thres=cfg.eval.conf_threshold, on_frame=lambda _ev: bar.update(1))
            results[seq.name] = tracked.results
            if skippable:
                stats.append(_need("passbench.skip", "collect_stats")(model))
        bar.set_postfix_str("evaluating")
        scores = evaluate_sequences({s.name: s for s in sequences}, results, iou_threshold=cfg.eval.iou_threshold,
                                    backend=cfg.eval.backend, frames=seq_frames)
    cost = _cost(stats, skippable, gmacs_dense)
    return new_record(
        experiment=cfg.name,
        task="mot",
        dataset={"name": cfg.dataset.name, "split": cfg.dataset.split, "protocol": cfg.dataset.protocol,
                 "frames": list(cfg.dataset.frames) if cfg.dataset.frames else None,
                 "sequences": list(cfg.dataset.sequences), "synthetic": False, "data_root": root.label,
                 "frames_used": {n: [r.start, r.stop - 1] if r is not None else None for n, r in seq_frames.items()}},
        model={"name": cfg.model.name, "tag": "trained" if weights else "init",
               "weights_sha256": _sha256(weights) if weights else None},
        method={"name": cfg.method.name, "params": dict(cfg.method.params), "knob": knob},
        metrics=_mot_metrics(scores),
        cost=cost,
        speed=speed,
        config=resolved,
    )


def _load_weights(model: Any, weights: Path | None, cfg: ExperimentCfg) -> tuple[Any, bool]:
    """Load ``weights`` and apply the configured method; returns ``(model, skippable)``.

    A ``passbench.train`` ``final.pt`` (keys ``model``, ``model_name``, ``skip``) carries the gates with
    the weights: the model is wrapped with its ``skip`` spec (config ``method.params`` on top) before
    the strict load. Other files go through ``passbench.models.checkpoint.load_checkpoint``.
    """
    import torch  # noqa: PLC0415

    method = cfg.method.name
    if weights is not None:
        ck = torch.load(weights, map_location="cpu", weights_only=False)
        if isinstance(ck, dict) and ck.get("base"):  # a passbench.train delta checkpoint: merge its base chain
            ck = _need("passbench.train.common", "read_final")(weights)
        if isinstance(ck, dict) and "model" in ck and "model_name" in ck:
            if ck["model_name"] != cfg.model.name:
                raise ValueError(f"{weights}: weights of model {ck['model_name']!r}, config says {cfg.model.name!r}")
            spec = ck.get("skip")
            if spec:
                if spec["method"] != method:
                    raise ValueError(f"{weights}: gates of method {spec['method']!r}, config says {method!r}")
                params = dict(spec.get("params", {}))
                if method in ("pass_p", "pass_f") and "rates" not in params:
                    # A PASS checkpoint from before per-layer rates were stored (TEMPORARY, until the sample
                    # weights are retrained): the engine it was made with thresholded at 0.5 on every grid.
                    params.update(rule="threshold", min_patches=1)
                model = _make_skippable(model, method, {**params, **cfg.method.params})
            elif method in ("pass_p", "pass_f"):
                raise SkipRow(f"{weights} holds no {method} gates (train them: python -m passbench.train {method})")
            model.load_state_dict(ck["model"], strict=True)
            if not spec and method != "dense":  # gates without trained state (fixed masks, given thresholds)
                return _make_skippable(model, method, dict(cfg.method.params)).eval(), True
            return model.eval(), bool(spec)
        _need("passbench.models.checkpoint", "load_checkpoint")(model, weights)
    if method == "dense":
        return model, False
    if method in ("pass_p", "pass_f"):
        # Untrained PASS gates are not PASS: never report numbers for them.
        raise SkipRow(f"{method} needs trained gates: set model.weights to a passbench.train {method} final.pt")
    return _make_skippable(model, method, dict(cfg.method.params)).eval(), True


def _make_skippable(model: Any, method: str, params: dict[str, Any]) -> Any:
    params = {k: v for k, v in params.items() if k != "operating_point"}  # not a make_skippable argument
    res = _need("passbench.skip", "make_skippable")(model, method, **params)
    return res if res is not None else model  # in-place wrappers may return None


def _operating_point(cfg: ExperimentCfg, model: Any, root: Any) -> dict[str, Any] | None:
    """``method.params.operating_point: {rate: r, pairs: n}``: move the method's knob so that it skips a
    fraction r of gated patches on n training pairs (``passbench.train.operating_point``); returns the
    knob values set, for the record. None without an operating point."""
    op = cfg.method.params.get("operating_point")
    if not op:
        return None
    if not isinstance(op, dict) or "rate" not in op or set(op) - {"rate", "pairs"}:
        raise ValueError(f"{cfg.name}: method.params.operating_point must be {{rate: r[, pairs: n]}}, got {op!r}")
    mod = "passbench.train.operating_point"
    kind = _need(mod, "knob_kind")(cfg.method.name, dict(cfg.method.params))
    pairs = None
    if kind in ("norm", "gumbel"):  # content-adaptive gates: calibrated on the training split
        pairs = _need(mod, "training_pairs")(tuple(cfg.model.input_wh), str(root.path), n=int(op.get("pairs", 16)))
    return _need(mod, "set_operating_point")(model, cfg.method.name, dict(cfg.method.params), float(op["rate"]), pairs)


def _timing_inputs(cfg: ExperimentCfg, seq: Any) -> list[Any]:
    """The first ``warmup + iters`` frames of ``seq``, letterboxed: (1, 3, H, W) in [0, 1] each."""
    letterbox = _need("passbench.tracking.letterbox", "letterbox")
    n = cfg.speed.warmup + cfg.speed.iters
    out = []
    for item in seq.frames():
        rgb = item[-1] if isinstance(item, tuple) else item  # (frame_id, rgb) or rgb
        x, _ = letterbox(rgb, tuple(cfg.model.input_wh))
        out.append(x.unsqueeze(0))
        if len(out) == n:
            break
    return out


def _measure_speed(cfg: ExperimentCfg, model: Any, skippable: bool, frames: list[Any]) -> dict[str, Any]:
    """FPS / latency of the model forward, dense and with the method, in this process.

    Contract (STYLE.md): ``speed{fps, fps_dense, speedup, latency_ms_p50, latency_ms_p90, device, threads,
    precision, batch, timed_region}``. The dense reference is the same network with every
    ``SkipConv2d`` replaced by its plain ``Conv2d`` (same weights), so ``speedup = fps / fps_dense``
    compares like with like. The skipping model is timed as a video stream: ``reset``, then
    consecutive frames (frame 0 dense, later frames gated), cycling the frames again after a
    ``reset`` when more timed calls are asked than frames given. Dense and skipped timings
    alternate in rounds so that machine noise hits both alike (medians are quoted).
    """
    if not cfg.speed.enabled:  # the schema's keys, no numbers: tables show the row without speed
        return {"fps": None, "fps_dense": None, "speedup": None, "latency_ms_p50": None, "latency_ms_p90": None,
                "device": cfg.speed.device, "threads": cfg.speed.threads, "precision": "fp32", "batch": 1,
                "timed_region": "not timed (speed.enabled=false)"}
    import torch  # noqa: PLC0415

    measure = _need("passbench.metrics.speed", "measure")
    dense = _dense_twin(model) if skippable else model
    region = "model forward, 1 frame, input letterboxed on device (no decode / tracking)"
    if not frames:
        raise ValueError(f"{cfg.name}: no frames to time")

    def stream(net: Any, is_skip: bool):
        state = {"i": 0}

        def step() -> Any:
            if is_skip and state["i"] % len(frames) == 0:
                _reset(net, True)  # a new pass over the clip is a new stream: frame 0 dense again
            x = frames[state["i"] % len(frames)]
            state["i"] += 1
            with torch.inference_mode():
                return net(x)
        return step

    rounds = 3
    per = max(1, cfg.speed.iters // rounds)
    d_res, s_res = [], []
    for _ in range(rounds):
        d_res.append(measure(stream(dense, False), warmup=cfg.speed.warmup, iters=per, device=cfg.speed.device,
                             timed_region=region))
        if skippable:
            s_res.append(measure(stream(model, True), warmup=cfg.speed.warmup, iters=per, device=cfg.speed.device,
                                 timed_region=region))
    _reset(model, skippable)

    def merged(res: list[Any]) -> dict[str, Any]:
        pct = _need("passbench.metrics.speed", "percentile_ms")
        lat = [v for r in res for v in r.latencies_ms]
        out = res[0].as_dict()
        out["latency_ms_p50"] = pct(lat, 50)
        out["latency_ms_p90"] = pct(lat, 90)
        out["fps"] = out["batch"] * 1000.0 / out["latency_ms_p50"]
        out["peak_mem_mb"] = max((r.peak_mem_mb or 0.0) for r in res)
        return out

    d = merged(d_res)
    out = merged(s_res) if skippable else dict(d)
    out["fps_dense"] = d["fps"]
    out["latency_ms_p50_dense"] = d["latency_ms_p50"]
    out["speedup"] = out["fps"] / d["fps"]
    out["iters"] = rounds * per
    return out


def _dense_twin(model: Any) -> Any:
    """A deep copy of ``model`` with every ``SkipConv2d`` replaced by its own ``Conv2d`` (no gates, no state)."""
    import copy  # noqa: PLC0415

    skip_conv = _need("passbench.skip", "SkipConv2d")
    twin = copy.deepcopy(model)
    for m in list(twin.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, skip_conv):
                setattr(m, child_name, child.conv)
    return twin.eval()


def _frames_for(cfg: ExperimentCfg, seq: Any) -> range | None:
    """The contiguous MOT frames of ``seq`` this row tracks and scores (``dataset.halves`` / ``frames``)."""
    half = cfg.dataset.halves.get(seq.name)
    if half is not None:
        if half not in ("train", "val"):
            raise ValueError(f"{cfg.name}: dataset.halves.{seq.name} must be 'train' or 'val', got {half!r}")
        tr, va = _need("passbench.datasets.mot", "half_split")(seq)
        return va if half == "val" else tr
    if cfg.dataset.frames:
        return range(cfg.dataset.frames[0], cfg.dataset.frames[1] + 1)
    return None


def _reset(model: Any, skippable: bool) -> None:
    if skippable:
        _need("passbench.skip", "reset")(model)


def _cost(stats: list[dict[str, Any]], skippable: bool, gmacs_dense: float) -> dict[str, Any]:
    """``cost{gmacs_dense, gmacs_executed, gate_gmacs, patch_skip_rate, mac_reduction}`` per frame.

    ``gmacs_dense`` is the whole network (FlopCounterMode / 2, deformable / linear layers included);
    the skip counters (``collect_stats``, one dict per tracked sequence) cover the wrapped Conv2d
    layers only, so ``gmacs_executed`` = whole network - MACs the wrapped convs did not execute.
    Frame 0 of every sequence (and every refresh frame) is dense and is counted. ``patch_skip_rate`` is
    Eq. 2 over the output pixels of all wrapped layers in *all* frames (dense frames skip nothing);
    ``patch_skip_rate_gated_frames`` over gated frames only (the per-frame rate the gate chose); ``mac_reduction`` is Eq. 3's ``R_m`` with the gate cost
    charged: ``1 - (executed + gate) / dense``.
    """
    if not skippable:
        return {"gmacs_dense": gmacs_dense, "gmacs_executed": gmacs_dense, "gate_gmacs": 0.0,
                "patch_skip_rate": 0.0, "mac_reduction": 0.0, "frames": None}
    frames = sum(s["frames"] for s in stats)
    if frames == 0:
        raise ValueError("skip counters saw no frame: nothing was tracked")
    conv_dense = sum(s["dense_macs"] for s in stats) / frames / 1e9
    conv_exec = sum(s["executed_macs"] for s in stats) / frames / 1e9
    gate = sum(s["gate_macs"] for s in stats) / frames / 1e9
    px_all = sum(r["px_total"] for s in stats for r in s["layers"])
    px_gated = sum(r["px_gated"] for s in stats for r in s["layers"])
    px_skip = sum(r["px_skipped"] for s in stats for r in s["layers"])
    conv_mask = sum(s["mask_macs"] for s in stats) / frames / 1e9
    executed = gmacs_dense - (conv_dense - conv_exec)
    return {"gmacs_dense": gmacs_dense, "gmacs_executed": executed, "gate_gmacs": gate,
            "gmacs_wrapped_dense": conv_dense,
            # if every gated layer had run its sparse kernel (the dispatcher ran some densely: slower there)
            "gmacs_if_all_sparse": gmacs_dense - (conv_dense - conv_mask),
            "patch_skip_rate": px_skip / px_all if px_all else 0.0,
            "patch_skip_rate_gated_frames": px_skip / px_gated if px_gated else 0.0,
            "mac_reduction": 1.0 - (executed + gate) / gmacs_dense, "frames": frames}


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
