"""Value checks of a resolved experiment config, run by ``passbench.config.load_config`` before any work.

``passbench.config`` checks the *shape* of a config (known keys, types); this module checks the
*values*: ranges (thresholds in [0, 1], threads >= 1, sizes > 0, frame ranges), closed sets (task,
evaluation backend, model name, skipping method, Human3.6M protocol) and the method's parameters
against the code that takes them (``make_skippable`` and the method's gate builder, found by
signature, and dry-built once on a small conv so the gate's own checks run). A bad value raises
:class:`passbench.config.ConfigError` naming the file (or override) that set the key, the key, the
value and what is allowed; the CLI exits 2 and writes nothing.

What needs the data is checked where the data is read (``passbench.runner.mot``): the frame range
against the sequence's frames, the names in ``dataset.sequences`` and ``dataset.halves`` against the
dataset folder.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

from passbench.config.schema import ConfigError, ExperimentCfg

TASKS = ("mot", "pose")
HALVES = ("train", "val")
# make_skippable's arguments that are not gate parameters, and the runner's own key
_WRAPPER_ONLY = ("model", "method", "gate_params")
_RUNNER_KEYS = ("operating_point", "ungated")
_OPERATING_POINT_KEYS = ("rate", "pairs", "allocation")
# parameters every method builder receives from make_skippable itself (not from the config)
_BUILDER_FIXED = ("conv", "patch_in", "patch_out", "grid", "index")
_FRACTIONS = ("rate", "keep")  # gate parameters that are fractions of patches or frames


Where = Callable[[str], str]


class _Checker:
    """Collects the context (where each key came from) and raises the first error found."""

    def __init__(self, where: Where) -> None:
        self.where = where

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.where(key)}: key '{key}': {msg}")

    def number(self, key: str, v: Any, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, what: str = "") -> None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v <= hi
        if not ok:
            lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}, "
            hi_s = "inf)" if hi is None else f"{hi:g}]"
            raise self.fail(key, f"must be a finite number in {lo_s}{hi_s}{what}, got {v!r}")

    def integer(self, key: str, v: Any, lo: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.fail(key, f"must be an integer >= {lo}, got {v!r}")

    def one_of(self, key: str, v: Any, allowed: tuple | list) -> None:
        if v not in allowed:
            raise self.fail(key, f"{v!r} is not one of: {', '.join(map(str, allowed))}")


def check_config(cfg: ExperimentCfg, where: Where = lambda key: "<config>") -> None:
    """Raise :class:`ConfigError` for the first value of ``cfg`` outside its allowed range or set.

    Args:
        cfg: a config built by ``passbench.config`` (types already checked).
        where: dotted key -> the file or ``override 'k=v'`` that set it (for the message).
    """
    c = _Checker(where)
    if not cfg.name:
        raise c.fail("name", "must not be empty")
    c.one_of("task", cfg.task, TASKS)
    if cfg.max_cpu_gmacs is not None:
        c.number("max_cpu_gmacs", cfg.max_cpu_gmacs, 0, lo_open=True)
    _check_dataset(c, cfg)
    _check_model(c, cfg)
    _check_method(c, cfg)
    _check_eval(c, cfg)
    _check_speed(c, cfg)
    _check_train(c, cfg)


def _check_dataset(c: _Checker, cfg: ExperimentCfg) -> None:
    ds = cfg.dataset
    if not ds.name:
        raise c.fail("dataset.name", "must not be empty")
    if not ds.split:
        raise c.fail("dataset.split", "must not be empty")
    seqs = list(ds.sequences)
    if cfg.task == "mot" and not seqs:
        raise c.fail("dataset.sequences", "names no sequence (e.g. [PETS09-S2L1, TUD-Campus])")
    for i, s in enumerate(seqs):
        if not s or "/" in s or "\\" in s or s in (".", ".."):
            raise c.fail("dataset.sequences", f"entry {i} {s!r} is not a sequence name (a folder name below "
                                              f"<data_root>/{ds.name}/{ds.split}/, not a path)")
    dup = sorted({s for s in seqs if seqs.count(s) > 1})
    if dup:
        raise c.fail("dataset.sequences", f"{', '.join(dup)} named twice (its frames would be scored twice)")
    if ds.frames is not None:
        first, last = ds.frames
        lo = 1 if cfg.task == "mot" else 0  # MOT frame numbers are 1-based, Human3.6M frame_idx 0-based
        if first < lo or last < first:
            unit = "MOT frame numbers, 1-based" if cfg.task == "mot" else "frame_idx, 0-based"
            raise c.fail("dataset.frames", f"[{first}, {last}] is not a range [first, last] with {lo} <= first <= "
                                           f"last ({unit}, inclusive)")
    for seq, half in ds.halves.items():  # the names themselves are checked against the data (runner.mot)
        c.one_of(f"dataset.halves.{seq}", half, HALVES)
    halved = [s for s in seqs if s in ds.halves]
    if ds.frames is not None and halved:
        both = ", ".join(halved)
        raise c.fail("dataset.frames", f"is set while dataset.halves also selects the frames of {both} (the half "
                                       "would win silently); set dataset.halves={} to run dataset.frames")
    if cfg.task == "pose":
        _check_pose_dataset(c, cfg)


def _check_pose_dataset(c: _Checker, cfg: ExperimentCfg) -> None:
    from passbench.datasets.h36m import ACTION_NAMES, get_protocol  # noqa: PLC0415 - numpy only
    from passbench.pose.data import parse_subjects  # noqa: PLC0415

    try:
        get_protocol(cfg.dataset.protocol)
    except KeyError as e:
        raise c.fail("dataset.protocol", str(e.args[0])) from None
    subjects = [s for s in cfg.dataset.sequences if s not in ACTION_NAMES]
    try:
        parse_subjects(subjects, "entries are subjects S<n> or Human3.6M actions")
    except ValueError as e:
        raise c.fail("dataset.sequences", f"{e} (actions: {', '.join(ACTION_NAMES)})") from None


def _check_model(c: _Checker, cfg: ExperimentCfg) -> None:
    from passbench.models import model_spec  # noqa: PLC0415 - cheap: families load when a model is built

    m = cfg.model
    if not m.name:
        raise c.fail("model.name", "must not be empty")
    try:
        model_spec(m.name)
    except (KeyError, ValueError) as e:
        hint = "" if m.name.startswith("timm:") else "; or timm:<arch> (any timm features_only backbone)"
        raise c.fail("model.name", f"{e.args[0] if e.args else e}{hint}") from None
    w, h = m.input_wh
    if w < 1 or h < 1:
        raise c.fail("model.input_wh", f"[{w}, {h}] must be [width, height] with both >= 1 pixel")
    if m.weights is not None and not m.weights.strip():
        raise c.fail("model.weights", "is empty; use null for the builder's own init")


def _check_eval(c: _Checker, cfg: ExperimentCfg) -> None:
    from passbench.metrics.mot_backends import BACKENDS  # noqa: PLC0415 - no pandas / scipy

    c.number("eval.iou_threshold", cfg.eval.iou_threshold, 0, 1, lo_open=True, what=" (IoU of a match)")
    c.number("eval.conf_threshold", cfg.eval.conf_threshold, 0, 1, what=" (detection score)")
    c.one_of("eval.backend", cfg.eval.backend, BACKENDS)


def _check_speed(c: _Checker, cfg: ExperimentCfg) -> None:
    sp = cfg.speed
    c.integer("speed.threads", sp.threads, 1)
    c.integer("speed.warmup", sp.warmup, 0)
    c.integer("speed.iters", sp.iters, 1)
    import torch  # noqa: PLC0415

    try:
        torch.device(sp.device)
    except (RuntimeError, ValueError):
        raise c.fail("speed.device", f"{sp.device!r} is not a torch device (cpu, cuda, cuda:<n>, mps)") from None


def _check_train(c: _Checker, cfg: ExperimentCfg) -> None:
    tr = cfg.train
    c.integer("train.epochs", tr.epochs, 0)
    c.number("train.lr", tr.lr, 0, lo_open=True)
    c.integer("train.batch_size", tr.batch_size, 1)
    c.integer("train.seed", tr.seed, 0)


# ----------------------------------------------------------------------------------------------
# the method and its parameters


def _keyword_params(fn: Callable[..., Any], drop: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """``({name: default}, takes **kwargs)`` of ``fn``'s keyword parameters, minus ``drop``."""
    params, var_kw = {}, False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.name not in drop and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            params[p.name] = p.default
    return params, var_kw


def _check_method(c: _Checker, cfg: ExperimentCfg) -> None:
    from passbench.skip import METHODS  # noqa: PLC0415

    name = cfg.method.name
    if name not in METHODS:
        raise c.fail("method.name", f"{name!r} is not one of: {', '.join(METHODS.names())}")
    _check_params(c, name, dict(cfg.method.params), complete=False)


def check_method_params(method: str, params: dict[str, Any], where: str) -> None:
    """Check the parameters a skipping method is built with after the weights' stored gate spec was merged
    under the config's (``passbench.runner.core``): what the config alone could not show, e.g. a threshold
    outside [0, 1] for the Gumbel gate a ``skipconv`` checkpoint names. Raises ``ConfigError`` (``where``)."""
    _check_params(_Checker(lambda key: where), method, dict(params), complete=True)


def _check_params(c: _Checker, name: str, params: dict[str, Any], complete: bool) -> None:
    """``complete``: ``params`` are all the method gets. Otherwise (the config alone) a builder that
    dispatches on its own arguments (``**kwargs``, e.g. ``skipconv``'s ``gate``) is dry-built only when
    those are set: a checkpoint may supply them (checked again, complete, when the weights load)."""
    from passbench.skip import METHODS, make_skippable  # noqa: PLC0415

    wrapper, _ = _keyword_params(make_skippable, _WRAPPER_ONLY)
    builder, builder_var_kw = _keyword_params(METHODS.get(name), _BUILDER_FIXED)
    known = {**wrapper, **builder}
    for k, v in params.items():
        key = f"method.params.{k}"
        if k in _RUNNER_KEYS:
            continue
        if k not in known and not builder_var_kw:
            raise c.fail(key, f"method {name!r} takes no parameter {k!r} (it takes: "
                              f"{', '.join(sorted([*known, *_RUNNER_KEYS]))})")
        default = known.get(k, inspect.Parameter.empty)
        if k == "patch_size" and isinstance(v, dict):  # {glob: patch} per layer (skip/convplan.py): checked below
            continue
        if default is not inspect.Parameter.empty and default is not None:
            _same_type(c, key, v, default)
    _check_wrapper_params(c, {k: v for k, v in params.items() if k in wrapper})
    if "operating_point" in params:
        _check_operating_point(c, name, params["operating_point"])
    gate_params = {k: v for k, v in params.items() if k not in wrapper and k not in _RUNNER_KEYS}
    if complete or not builder_var_kw or set(builder) <= set(gate_params):
        _dry_build(c, name, gate_params)


def _same_type(c: _Checker, key: str, v: Any, default: Any) -> None:
    """A parameter whose default is a bool / int / float / str takes a value of that type."""
    if isinstance(default, bool):
        ok, what = isinstance(v, bool), "true/false"
    elif isinstance(default, int):
        ok, what = isinstance(v, int) and not isinstance(v, bool), "an integer"
    elif isinstance(default, float):
        ok, what = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a finite number"
    elif isinstance(default, str):
        ok, what = isinstance(v, str), "a string"
    else:
        return
    if not ok:
        raise c.fail(key, f"expected {what} (default {default!r}), got {v!r}")


def _check_wrapper_params(c: _Checker, p: dict[str, Any]) -> None:
    """``make_skippable``'s own arguments; execution / reference / refresh_every by ``SkipConv2d`` itself."""
    from torch import nn  # noqa: PLC0415

    from passbench.skip import SkipConv2d  # noqa: PLC0415

    ps = p.get("patch_size")
    if isinstance(ps, dict):  # one patch size per layer glob (make_skippable; the every-conv plan)
        if not ps:
            raise c.fail("method.params.patch_size", "an empty mapping (give an integer or {glob: patch})")
        for g, v in ps.items():
            if not isinstance(g, str) or not g:
                raise c.fail("method.params.patch_size", f"keys must be layer globs, got {g!r}")
            c.integer(f"method.params.patch_size.{g}", v, 1)
    elif "patch_size" in p:
        c.integer("method.params.patch_size", ps, 1)
    for k in ("layers", "exclude"):
        v = p.get(k)
        if v is not None and not (isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(g, str) and g
                                                                                       for g in v))):
            raise c.fail(f"method.params.{k}", f"expected a glob or a non-empty list of globs, got {v!r}")
    th = p.get("thresholds")
    for i, t in enumerate(th if isinstance(th, list) else [] if th is None else [th]):
        c.number("method.params.thresholds" + (f"[{i}]" if isinstance(th, list) else ""), t, 0)
    shape = p.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) in (3, 4)
                                  and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise c.fail("method.params.input_shape", f"expected [C, H, W] or [B, C, H, W] of positive integers, "
                                                  f"got {shape!r}")
    refresh = p.get("refresh_every")
    if refresh is not None:
        c.integer("method.params.refresh_every", refresh, 1)
    kw = {k: p[k] for k in ("execution", "reference") if k in p}
    try:
        SkipConv2d(nn.Conv2d(1, 1, 1), None, 1, False, refresh_every=refresh, **kw)
    except (TypeError, ValueError) as e:
        key = next((f"method.params.{k}" for k in kw if repr(kw[k]) in str(e)), "method.params")
        raise c.fail(key, str(e).split(": ", 1)[-1]) from None


def _check_operating_point(c: _Checker, method: str, op: Any) -> None:
    from passbench.train.operating_point import ALLOCATIONS  # noqa: PLC0415

    key = "method.params.operating_point"
    if method == "dense":
        raise c.fail(key, "method 'dense' skips nothing: it has no operating point")
    if not isinstance(op, dict) or "rate" not in op or set(op) - set(_OPERATING_POINT_KEYS):
        raise c.fail(key, f"must be {{rate: r[, pairs: n][, allocation: {'|'.join(ALLOCATIONS)}]}}, got {op!r}")
    c.number(f"{key}.rate", op["rate"], 0, 1, what=" (fraction of gated patches skipped)")
    if "pairs" in op:
        c.integer(f"{key}.pairs", op["pairs"], 1)
    if "allocation" in op:
        c.one_of(f"{key}.allocation", op["allocation"], ALLOCATIONS)
        if op["allocation"] != ALLOCATIONS[0] and not method.startswith("pass"):
            raise c.fail(f"{key}.allocation", f"{op['allocation']!r} applies to PASS gates only, not to method "
                                              f"{method!r}")


def _culprit(msg: str, params: dict[str, Any]) -> str:
    """The parameter a gate's error message is about (its value or its name quoted), else the section."""
    for k, v in params.items():
        if repr(v) in msg or f"'{k}'" in msg or f"{k} must" in msg:
            return f"method.params.{k}"
    return "method.params"


def _dry_build(c: _Checker, name: str, params: dict[str, Any]) -> None:
    """Build the method's gate for one small conv with ``params``: an unknown parameter or a value the
    gate refuses raises here, before any work (the gate's own checks, not a copy of them)."""
    from torch import nn  # noqa: PLC0415

    from passbench.skip import METHODS, NormGate  # noqa: PLC0415

    for k in _FRACTIONS:
        if k in params:
            c.number(f"method.params.{k}", params[k], 0, 1)
    rates = params.get("rates")
    for i, r in enumerate(rates if isinstance(rates, list) else [] if rates is None else [rates]):
        c.number("method.params.rates" + (f"[{i}]" if isinstance(rates, list) else ""), r, 0, 1)
    if isinstance(rates, list) and not rates:
        raise c.fail("method.params.rates", "is an empty list (one rate per gated layer, or one for all)")
    try:
        plan = METHODS.get(name)(nn.Conv2d(8, 8, 3, padding=1), patch_in=8, patch_out=8, grid=(4, 4), index=0,
                                 **params)
    except (TypeError, ValueError) as e:
        msg = str(e).replace(f"{getattr(METHODS.get(name), '__name__', name)}()", f"method {name!r}")
        raise c.fail(_culprit(msg, params), msg) from None
    if "threshold" in params:
        if isinstance(plan.gate, NormGate):  # a residual norm: any value >= 0
            c.number("method.params.threshold", params["threshold"], 0, what=" (norm of the residual)")
        else:  # a probability / normalised score
            c.number("method.params.threshold", params["threshold"], 0, 1)
