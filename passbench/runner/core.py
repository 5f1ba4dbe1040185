"""What every task's pipeline shares: data root, weights and method, operating point, speed, cost.

* data root: ``row_data_root`` / ``missing_data`` (a given root lacking data is the user's error; the
  default root lacking it makes the row "not runnable here");
* weights: ``weights_path``, ``load_weights`` (``passbench.train`` ``final.pt`` with its gates, delta
  chain merged; or ``passbench.models.checkpoint``); every file hash-checked against
  its folder's ``SHA256SUMS`` and refused when unreadable or of another model, naming the file and the
  first offending key (``passbench.models.integrity``);
* dense cost and the CPU cap: ``dense_gmacs``;
* operating point: ``operating_point`` (``method.params.operating_point: {rate}``);
* speed: ``measure_speed`` (the dense twin, ``passbench.skip.dense_twin``, vs skipped, alternating rounds,
  same process);
* cost: ``cost_from_stats`` (executed / dense / gate MACs and patch skip rate from ``collect_stats``).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from passbench.config import ConfigError, ExperimentCfg
from passbench.errors import UserError
from passbench.paths import REPO_ROOT, DataRoot, DataRootError, find_data_root
from passbench.records import records_dir


class SkipRow(Exception):
    """This row cannot run here; the message is the reason stored in the skip marker."""


class WeightsNotFoundError(UserError, FileNotFoundError):
    """A configured weights file does not exist (a user's error, not a skip)."""


def need(module: str, name: str | None = None) -> Any:
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


def row_data_root(cfg: ExperimentCfg, data_root: Any) -> DataRoot:
    try:
        return find_data_root(data_root if data_root is not None else cfg.dataset.data_root)
    except DataRootError as e:
        if e.given:  # the user named a root that does not exist: their error, not this machine's limit
            raise
        raise SkipRow(str(e)) from None


def missing_data(root: DataRoot, what: str, hint: str = "") -> Exception:
    """The error for data missing under ``root``: a skip marker under the default root (this machine
    has no such data), the user's error under a root they named."""
    msg = f"{what} not under {root.describe()}" + (f" ({hint})" if hint else "")
    return SkipRow(msg) if root.default else DataRootError(msg)


def weights_path(cfg: ExperimentCfg) -> Path | None:
    if cfg.model.weights is None:
        return None
    from passbench.paths import expand_vars  # noqa: PLC0415

    try:  # ``${FAIRMOT_DLA34}``: a checkpoint the user holds (configs/paper/); records keep the unexpanded text
        p = Path(expand_vars(cfg.model.weights)).expanduser()
    except KeyError as e:
        raise WeightsNotFoundError(f"{cfg.name}: model.weights {cfg.model.weights}: environment variable {e.args[0]} "
                                   "is not set; export it with the checkpoint's path (docs/paper-scale.md) or "
                                   "override model.weights=PATH") from None
    p = p if p.is_absolute() else REPO_ROOT / p
    if not p.is_file():
        raise WeightsNotFoundError(f"{cfg.name}: model.weights {cfg.model.weights} not found ({p}); train them "
                                   "first (python -m passbench.train, docs/training.md) or fix the path")
    return p


def build_row_model(cfg: ExperimentCfg) -> Any:
    """``build_model(model.name, pretrained=False, **model.kwargs)`` in eval mode; a keyword the builder does
    not take is a ``ConfigError`` naming ``model.kwargs`` (builders take ``**kw``: only building can tell)."""
    try:
        model = need("passbench.models", "build_model")(cfg.model.name, pretrained=False, **cfg.model.kwargs)
    except TypeError as e:
        if not cfg.model.kwargs:
            raise
        raise ConfigError(f"{cfg.name}: model.kwargs {dict(cfg.model.kwargs)} do not fit {cfg.model.name}: "
                          f"{e}") from None
    return model.eval()


def progress_bar(show: bool, total: int, desc: str) -> Any:
    """A tqdm bar on stderr over ``total`` frames (a disabled one when ``show`` is False)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, desc=desc, unit="frame", disable=not show, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def dense_gmacs(cfg: ExperimentCfg, model: Any, x: Any) -> float:
    """Dense GMACs of ``model`` on ``x`` (FlopCounterMode / 2, REFERENCE.md 4); a skip marker when over the
    configured CPU cap (``max_cpu_gmacs``)."""
    gmacs = need("passbench.metrics.cost", "count_macs")(model, x) / 1e9
    if cfg.max_cpu_gmacs is not None and cfg.speed.device == "cpu" and gmacs > cfg.max_cpu_gmacs:
        h, w = x.shape[-2:]
        raise SkipRow(
            f"dense {cfg.model.name} costs {gmacs:.1f} GMACs/frame at {w}x{h}, over this CPU budget "
            f"(max_cpu_gmacs={cfg.max_cpu_gmacs})"
        )
    return gmacs


def load_weights(model: Any, weights: Path | None, cfg: ExperimentCfg) -> tuple[Any, bool]:
    """Load ``weights`` and apply the configured method; returns ``(model, skippable)``.

    A ``passbench.train`` ``final.pt`` (keys ``model``, ``model_name``, ``skip``) carries the gates with
    the weights: the model is wrapped with its ``skip`` spec (config ``method.params`` on top) before
    the strict load. Other files go through ``passbench.models.checkpoint.load_checkpoint``.
    """
    from passbench.models.checkpoint import CheckpointMismatchError  # noqa: PLC0415
    from passbench.models.integrity import first_mismatch, load_checked  # noqa: PLC0415

    method = cfg.method.name
    if weights is not None:
        ck = load_checked(weights)  # SHA256SUMS of the file and its base chain; a readable checkpoint
        if isinstance(ck, dict) and ck.get("base"):  # a passbench.train delta checkpoint: merge its base chain
            from passbench.train.common import CheckpointMismatchError as BaseMismatch  # noqa: PLC0415

            try:
                ck = need("passbench.train.common", "read_final")(weights)
            except BaseMismatch as e:  # the base holds other weights than the delta was made on
                raise CheckpointMismatchError(str(e)) from None
        if isinstance(ck, dict) and "model" in ck and "model_name" in ck:
            if ck["model_name"] != cfg.model.name:
                raise CheckpointMismatchError(f"{weights}: weights of model {ck['model_name']!r}, but model.name is "
                                              f"{cfg.model.name!r}")
            spec = ck.get("skip")
            if spec:
                if spec["method"] != method:
                    raise CheckpointMismatchError(f"{weights}: gates of method {spec['method']!r}, but method.name is "
                                                  f"{method!r}")
                trained_follow = spec.get("params", {}).get("follow") or {}
                if trained_follow and cfg.method.params.get("follow", trained_follow) != trained_follow:
                    raise CheckpointMismatchError(
                        f"{weights}: gates trained with shared decisions (follow {trained_follow}); method.params.follow "
                        "must match it (a follower's own gate was never trained)")
                model = _make_skippable(model, method, {**spec.get("params", {}), **cfg.method.params}, cfg.name)
            elif method in ("pass_p", "pass_f"):
                raise SkipRow(f"{weights} holds no {method} gates (train them: python -m passbench.train {method})")
            bad = first_mismatch(model.state_dict(), ck["model"])
            if bad:
                raise CheckpointMismatchError(f"{weights} does not fit {cfg.model.name} (model.kwargs "
                                              f"{dict(cfg.model.kwargs)}): {bad}")
            model.load_state_dict(ck["model"], strict=True)
            if not spec and method != "dense":  # gates without trained state (fixed masks, given thresholds)
                return _ungate(_make_skippable(model, method, dict(cfg.method.params), cfg.name), cfg).eval(), True
            return (_ungate(model, cfg) if spec else model).eval(), bool(spec)
        need("passbench.models.checkpoint", "load_checkpoint")(model, weights)
    if method == "dense":
        return model, False
    if method in ("pass_p", "pass_f"):
        # Untrained PASS gates are not PASS: never report numbers for them.
        raise SkipRow(f"{method} needs trained gates: set model.weights to a passbench.train {method} final.pt")
    return _ungate(_make_skippable(model, method, dict(cfg.method.params), cfg.name), cfg).eval(), True


def _ungate(model: Any, cfg: ExperimentCfg) -> Any:
    """``method.params.ungated``: drop those layers' gates once the weights are in (``skip.ungate``)."""
    names = cfg.method.params.get("ungated")
    if names:
        try:
            need("passbench.skip", "ungate")(model, names)
        except ValueError as e:
            raise ConfigError(f"{cfg.name}: method.params.ungated: {e}") from None
    return model


def _make_skippable(model: Any, method: str, params: dict[str, Any], name: str = "") -> Any:
    """``make_skippable`` with the row's parameters; what only the model can refute (a ``layers`` glob that
    matches no conv, one ``rates`` / ``thresholds`` entry per gated layer) is a ``ConfigError``."""
    from passbench.config.check import check_method_params  # noqa: PLC0415

    check_method_params(method, params, f"{name}: method.params with the weights' gate parameters {params}")
    params = {k: v for k, v in params.items() if k not in ("operating_point", "ungated")}  # the runner's, not make_skippable's
    try:
        res = need("passbench.skip", "make_skippable")(model, method, **params)
    except (TypeError, ValueError) as e:  # make_skippable raises these for its arguments only (its docstring)
        raise ConfigError(f"{name}: method.params {params}: {e}") from None
    return res if res is not None else model  # in-place wrappers may return None


def operating_point(cfg: ExperimentCfg, model: Any, training_pairs: Callable[[int], list]) -> dict[str, Any] | None:
    """``method.params.operating_point: {rate: r, pairs: n, allocation: learned|uniform}``: move the method's knob so that it skips a
    fraction r of gated patches on n training pairs (``passbench.train.operating_point``); returns the
    knob values set, for the record. None without an operating point.

    Args:
        training_pairs: ``n -> [(x_prev, x), ...]`` consecutive training frames of the task, called only
            for the content-adaptive knobs (norm and Gumbel gates).
    """
    op = cfg.method.params.get("operating_point")
    if not op:
        return None
    if not isinstance(op, dict) or "rate" not in op or set(op) - {"rate", "pairs", "allocation"}:
        raise ConfigError(f"{cfg.name}: method.params.operating_point must be "
                          f"{{rate: r[, pairs: n][, allocation: learned|uniform]}}, got {op!r}")
    mod = "passbench.train.operating_point"
    try:  # ValueError: a knob this method / these gates do not have (the message says which)
        kind = need(mod, "knob_kind")(cfg.method.name, dict(cfg.method.params), model)
    except ValueError as e:
        raise ConfigError(f"{cfg.name}: method.params.operating_point {op}: {e}") from None
    pairs = None
    if kind in ("norm", "gumbel"):  # content-adaptive gates: calibrated on the training split
        pairs = training_pairs(int(op.get("pairs", 16)))
    try:
        return need(mod, "set_operating_point")(model, cfg.method.name, dict(cfg.method.params), float(op["rate"]),
                                                 pairs, allocation=str(op.get("allocation", "learned")))
    except ValueError as e:
        raise ConfigError(f"{cfg.name}: method.params.operating_point {op}: {e}") from None


MOT_TIMED_REGION = "model forward, 1 frame, input letterboxed on device (no decode / tracking)"


def measure_speed(cfg: ExperimentCfg, model: Any, skippable: bool, frames: list[Any],
                   region: str = MOT_TIMED_REGION, device: str | None = None, precision: str | None = None
                  ) -> dict[str, Any]:
    """FPS / latency of the model forward, dense and with the method, in this process.

    Contract (STYLE.md): ``speed{fps, fps_dense, speedup, latency_ms_p50, latency_ms_p90, device, threads,
    precision, batch, timed_region}``. The dense reference is the same network with every
    ``SkipConv2d`` replaced by its plain ``Conv2d`` (same weights), so ``speedup = fps / fps_dense``
    compares like with like. The skipping model is timed as a video stream: ``reset``, then
    consecutive frames (frame 0 dense, later frames gated), cycling the frames again after a
    ``reset`` when more timed calls are asked than frames given. Dense and skipped timings
    alternate in ``cfg.speed.rounds`` rounds so that machine noise hits both alike (medians are
    quoted); ``speedup_rounds`` keeps each round's ratio and ``speedup_spread`` their max - min (the
    timing noise of this record), and ``others_cpu_cores`` / ``load_1m_before`` / ``load_1m_after`` /
    ``cpu_cores`` / ``loaded`` the machine load around the timing (``passbench.metrics.load``: ``loaded`` =
    other processes kept busy cores the timing's threads needed, the timing not to be trusted).

    Args:
        frames: consecutive model inputs, (1, 3, H, W) each.  region: what the timed region holds.
        device: where to time (default ``cfg.speed.device``); off the CPU a copy of the model and the
            frames are moved there (the caller's model stays put), and CUDA is timed with events after a
            synchronisation (``passbench.metrics.speed``).
        precision: "fp32", or "fp16" / "bf16" under ``torch.autocast`` (the record says so); default
            ``cfg.speed.precision``.
    """
    dev = str(device or cfg.speed.device)
    precision = precision or cfg.speed.precision
    if not cfg.speed.enabled:  # the schema's keys, no numbers: tables show the row without speed
        return {"fps": None, "fps_dense": None, "speedup": None, "latency_ms_p50": None, "latency_ms_p90": None,
                "device": dev, "threads": cfg.speed.threads,
                "precision": need("passbench.metrics.speed", "precision_label")(precision), "batch": 1,
                "timed_region": "not timed (speed.enabled=false)"}
    import copy  # noqa: PLC0415

    import torch  # noqa: PLC0415

    measure = need("passbench.metrics.speed", "measure")
    if not frames:
        raise ValueError(f"{cfg.name}: no frames to time")
    if dev != "cpu":  # time a copy on the device: the caller's model (tracking, scoring) stays where it is
        model = copy.deepcopy(model).to(dev) if device_of(model) != torch.device(dev) else model
        frames = [f.to(dev) for f in frames]
    dense = need("passbench.skip", "dense_twin")(model) if skippable else model

    def stream(net: Any, is_skip: bool):
        state = {"i": 0}

        def step() -> Any:
            if is_skip and state["i"] % len(frames) == 0:
                reset_streams(net, True)  # a new pass over the clip is a new stream: frame 0 dense again
            x = frames[state["i"] % len(frames)]
            state["i"] += 1
            with torch.inference_mode():
                return net(x)
        return step

    rounds = max(1, cfg.speed.rounds)
    per = max(1, cfg.speed.iters // rounds)
    d_res, s_res = [], []
    load_before = need("passbench.metrics.load", "load_1m")()
    cpu_before = need("passbench.metrics.load", "cpu_sample")()
    for _ in range(rounds):
        d_res.append(measure(stream(dense, False), warmup=cfg.speed.warmup, iters=per, device=dev,
                             precision=precision, timed_region=region))
        if skippable:
            s_res.append(measure(stream(model, True), warmup=cfg.speed.warmup, iters=per, device=dev,
                                 precision=precision, timed_region=region))
    reset_streams(model, skippable)

    def merged(res: list[Any]) -> dict[str, Any]:
        pct = need("passbench.metrics.speed", "percentile_ms")
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
    # each round's ratio (dense median latency over skipping median latency): their spread is the timing noise
    per_round = [dr.latency_ms_p50 / sr.latency_ms_p50 for dr, sr in zip(d_res, s_res)] if skippable else [1.0] * rounds
    out.update(rounds=rounds, speedup_rounds=per_round, speedup_spread=max(per_round) - min(per_round))
    others = need("passbench.metrics.load", "others_cores")(cpu_before, need("passbench.metrics.load", "cpu_sample")())
    out.update(need("passbench.metrics.load", "load_fields")(load_before, need("passbench.metrics.load", "load_1m")(),
                                                             others=others, threads=cfg.speed.threads))
    return out


def device_of(model: Any) -> Any:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    import torch  # noqa: PLC0415

    return next(iter(model.parameters()), torch.empty(0)).device


def inference_layout(cfg: ExperimentCfg, model: Any, skippable: bool, h: int, w: int, dev: Any) -> Any:
    """The loaded model as rows run it: BatchNorm folded, channels-last, then output aliasing probed on a
    (1, 3, h, w) zero frame (``passbench.skip.aliasing``; after folding: the graph around the convs as it runs),
    each as configured. Returns the model (channels-last moves it)."""
    import torch  # noqa: PLC0415

    if cfg.model.fold_bn:
        need("passbench.skip", "fold_batchnorm")(model)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if skippable and cfg.model.alias_outputs:
        example = torch.zeros(1, 3, h, w, device=dev)
        need("passbench.skip.aliasing", "set_output_aliasing")(
            model, example.to(memory_format=torch.channels_last) if cfg.model.channels_last else example)
    return model


def reset_streams(model: Any, skippable: bool) -> None:
    if skippable:
        need("passbench.skip", "reset")(model)


def cost_from_stats(stats: list[dict[str, Any]], skippable: bool, gmacs_dense: float) -> dict[str, Any]:
    """``cost{gmacs_dense, gmacs_executed, gate_gmacs, patch_skip_rate, mac_reduction}`` per frame.

    ``gmacs_dense`` is the whole network (FlopCounterMode / 2, deformable / linear layers included);
    the skip counters (``collect_stats``, one dict per stream: a tracked MOT sequence, a pose video)
    cover the wrapped Conv2d layers only, so ``gmacs_executed`` = whole network - MACs the wrapped
    convs did not execute. Frame 0 of every stream (and every refresh frame) is dense and is counted.
    ``patch_skip_rate`` is Eq. 2 over the output pixels of all wrapped layers in *all* frames (dense
    frames skip nothing); ``patch_skip_rate_gated_frames`` over gated frames only (the per-frame rate
    the gate chose); ``mac_reduction`` is Eq. 3's ``R_m`` with the gate cost charged:
    ``1 - (executed + gate) / dense``.
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
